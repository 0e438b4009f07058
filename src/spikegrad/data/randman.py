"""Random manifold ("Randman") spike-timing data set.

After Zenke & Vogels (2021), "The remarkable robustness of surrogate gradient learning
for instilling complex function in spiking neural networks", Neural Computation 33(4).
Written from the paper's description; this is not the authors' generator, so samples
differ from theirs for the same seed while the statistics match.

Each class is a smooth random manifold of dimension ``D = dim_manifold`` embedded in
``n_units`` dimensions. Embedding coordinate ``j`` of class ``k`` is a product of 1-D
random functions of the intrinsic coordinates ``x in [0, 1]^D``::

    y_j(x) = prod_{d=1..D} f_{j,d}(x_d)
    f(x)   = sum_{r=0}^{R-1} a_r * s_r * sin(2 pi (r * b_r * x + c_r))
    s_r    = 1 / (r**alpha + 1),    a_r, b_r, c_r ~ U(0, 1),    a_0 = 0
    R      = min(ceil(prec ** (-1 / alpha)), 1000),    prec = 1e-3

``alpha`` sets the smoothness (larger = smoother, fewer terms; alpha = 1 gives R = 1000).
The r = 0 term would only add a constant offset, so its amplitude is zero.

A sample draws ``x ~ U(0, 1)^D``; each coordinate is min-max standardised over the
samples of its class (to [0, 1]) and becomes the spike time ``value * n_steps *
step_frac`` (a float, in steps) of one input unit. With ``n_spikes > 1``, every unit
fires once per spike copy, each copy from its own independent manifold evaluated at the
same ``x``. Every unit fires exactly ``n_spikes`` times in every sample, so spike
counts carry no class information: the classes differ only in spike timing.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validate import check_int
from .splits import split_in_order

__all__ = ["RandmanData", "make_randman", "randman_raster", "split_in_order"]

_PREC = 1e-3
_MAX_TERMS = 1000
# Elements per chunk of the [samples, units, dims, terms] phase tensor: 1 MB in float32,
# large enough to amortise the per-call overhead, small enough to stay in the L2 cache
# (the passes over it are memory-bound; 8 MB chunks measured slower).
_CHUNK_ELEMENTS = 250_000


class RandmanData(NamedTuple):
    """Randman spike events, one row per sample.

    Attributes:
        times: float32 ``[N, n_units * n_spikes]``, spike times in steps (not rounded).
        units: int64 ``[N, n_units * n_spikes]``, the input unit of each spike;
            column ``i * n_units + j`` is copy ``i`` of unit ``j``.
        labels: int64 ``[N]``, class indices.
        n_steps: number of steps of a trial.
        n_units: number of input units.
    """

    times: Tensor
    units: Tensor
    labels: Tensor
    n_steps: int
    n_units: int


def n_fourier_terms(alpha: float) -> int:
    """Number of Fourier terms R used for smoothness ``alpha``.

    ``R = min(ceil(1e-3 ** (-1 / alpha)), 1000)``: the terms whose spectrum would fall
    below about 1e-3 are cut. A tolerance of 1e-9 guards ``ceil`` against float error
    (so alpha = 3 gives 10, not 11).
    """
    return int(min(math.ceil(_PREC ** (-1.0 / alpha) - 1e-9), _MAX_TERMS))


def _eval_manifold(
    x: np.ndarray, amp: np.ndarray, freq: np.ndarray, phase: np.ndarray
) -> np.ndarray:
    """Evaluate embedding coordinates at intrinsic coordinates ``x``.

    ``freq`` and ``phase`` are in cycles. The sines run in float32, which halves the
    cost of the 10^8-10^9 sine evaluations of a default data set; the phase error grows
    like ``r * eps32`` while the amplitude falls like ``1 / r``, so each term is off by
    less than about 4e-7 and a coordinate by less than 1e-3 of its range in the worst
    case (about 1e-5 typically), i.e. below 0.05 steps of spike time at 50 steps.
    numpy, not torch: it is single-threaded, and many small multi-threaded torch ops
    stall badly when the cores are shared.

    Shapes:
        x: ``[S, D]``; amp, freq, phase: ``[J, D, R]`` -> ``[S, J]`` (float64).
    """
    two_pi = 2.0 * math.pi
    x32 = x.astype(np.float32)
    amp32 = amp.astype(np.float32)
    omega = (two_pi * freq).astype(np.float32)  # rad per unit of x
    phase_rad = (two_pi * phase).astype(np.float32)
    n_samples = x.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // amp.size)
    out = np.empty((n_samples, amp.shape[0]), dtype=np.float64)
    for lo in range(0, n_samples, chunk):
        arg = x32[lo : lo + chunk, None, :, None] * omega  # [s, J, D, R]
        arg += phase_rad
        np.sin(arg, out=arg)
        f = np.einsum("sjdr,jdr->sjd", arg, amp32)  # [s, J, D]
        out[lo : lo + chunk] = f.prod(axis=-1)
    return out


def make_randman(
    n_classes: int = 10,
    n_units: int = 20,
    n_steps: int = 100,
    dim_manifold: int = 1,
    alpha: float = 1.0,
    n_spikes: int = 1,
    samples_per_class: int = 1000,
    step_frac: float = 0.5,
    seed: int = 1,
    shuffle: bool = True,
) -> RandmanData:
    """Generate a Randman classification data set (see the module docstring for the maths).

    Uses its own ``numpy.random.Generator(seed)``; global RNGs are untouched. The
    manifolds are drawn before the samples, so for a fixed seed they do not depend on
    ``samples_per_class``.

    Args:
        n_classes: number of classes (one manifold, or ``n_spikes`` manifolds, each).
        n_units: embedding dimension = number of input units.
        n_steps: trial length in steps; spike times fall in ``[0, n_steps * step_frac]``.
        dim_manifold: intrinsic dimension D of each manifold.
        alpha: smoothness exponent of the spectrum (> 0).
        n_spikes: spikes per unit per sample (independent manifold copies).
        samples_per_class: samples drawn per class (>= 2, for the min-max scaling).
        step_frac: fraction of the trial that carries spikes, in (0, 1].
        seed: seed of the generator.
        shuffle: shuffle the samples (otherwise grouped by class, class 0 first).

    Returns:
        :class:`RandmanData` with ``N = n_classes * samples_per_class`` rows.

    Shapes:
        times, units: ``[N, n_units * n_spikes]``; labels: ``[N]``.

    Example:
        >>> data = make_randman(n_classes=2, n_units=3, samples_per_class=4, seed=0)
        >>> data.times.shape, data.labels.tolist().count(1)
        (torch.Size([8, 3]), 4)
    """
    n_classes = check_int(n_classes, "n_classes")
    n_units = check_int(n_units, "n_units")
    n_steps = check_int(n_steps, "n_steps")
    dim_manifold = check_int(dim_manifold, "dim_manifold")
    n_spikes = check_int(n_spikes, "n_spikes")
    samples_per_class = check_int(samples_per_class, "samples_per_class", minimum=2)
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
    if isinstance(step_frac, bool) or not isinstance(step_frac, Real) or not 0 < step_frac <= 1:
        raise ValueError(f"step_frac must be a number in (0, 1], got {step_frac!r}")

    rng = np.random.default_rng(seed)
    n_cols = n_spikes * n_units  # one embedding coordinate per (copy, unit)
    times = _spike_times(rng, n_classes, samples_per_class, n_cols, dim_manifold, alpha)
    times *= n_steps * step_frac

    times = times.reshape(n_classes * samples_per_class, n_cols)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), samples_per_class)
    if shuffle:
        order = rng.permutation(labels.shape[0])
        times, labels = times[order], labels[order]
    units = np.broadcast_to(np.tile(np.arange(n_units, dtype=np.int64), n_spikes), times.shape)
    return RandmanData(
        times=torch.from_numpy(times.astype(np.float32)),
        units=torch.from_numpy(units.copy()),
        labels=torch.from_numpy(labels),
        n_steps=n_steps,
        n_units=n_units,
    )


def _spike_times(rng, n_classes: int, samples: int, n_cols: int, dim: int,
                 alpha: float) -> np.ndarray:
    """``[n_classes, samples, n_cols]`` points on each class's random smooth manifold,
    min-max scaled to [0, 1] per coordinate (the manifolds drawn before the samples)."""
    n_terms = n_fourier_terms(alpha)
    r = np.arange(n_terms, dtype=np.float64)
    spectrum = 1.0 / (r**alpha + 1.0)
    spectrum[0] = 0.0  # the r = 0 term is a constant offset
    a, b, c = rng.random((3, n_classes, n_cols, dim, n_terms))
    x = rng.random((n_classes, samples, dim))
    times = np.empty((n_classes, samples, n_cols), dtype=np.float64)
    for k in range(n_classes):
        y = _eval_manifold(x[k], a[k] * spectrum, b[k] * r, c[k])  # [S, n_cols]
        lo, hi = y.min(axis=0), y.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)  # a flat coordinate would divide by zero
        times[k] = (y - lo) / span
    return times


def randman_raster(data: RandmanData) -> Tensor:
    """Bin Randman spike events into a dense, sample-major raster.

    A spike at time ``t`` (in steps) lands in step ``floor(t)``; a spike at exactly
    ``t = n_steps`` (possible when ``step_frac = 1``) lands in the last step. With
    ``n_spikes > 1`` two copies of a unit can share a step, and the raster then holds
    their count (2); with ``n_spikes = 1`` it is binary.

    Args:
        data: the output of :func:`make_randman`.

    Returns:
        float32 spike raster.

    Shapes:
        ``[N, n_steps, n_units]`` (transpose to time-major ``[T, B, U]`` per batch, e.g.
        with :func:`spikegrad.data.time_major_collate`).
    """
    if not isinstance(data, RandmanData):
        raise TypeError(
            f"data must be the RandmanData returned by make_randman, got {type(data).__name__}"
        )
    n_samples = data.times.shape[0]
    steps = data.times.floor().long().clamp_(0, data.n_steps - 1)
    rows = torch.arange(n_samples).unsqueeze(1).expand_as(steps)
    raster = torch.zeros((n_samples, data.n_steps, data.n_units), dtype=torch.float32)
    raster.index_put_(
        (rows.reshape(-1), steps.reshape(-1), data.units.reshape(-1)),
        torch.ones(steps.numel(), dtype=torch.float32),
        accumulate=True,
    )
    return raster
