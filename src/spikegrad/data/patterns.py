"""Generated sequence-regression tasks: spike trains in, a real-valued trajectory out.

Both generators are deterministic functions of their ``seed`` (a private
``torch.Generator``; the global RNG is untouched) and return time-major tensors::

    inputs  [T, B, n_inputs]   spikes in {0, 1} (float32)
    targets [T, B, n_outputs]  the trajectory to produce (float32)

Time is in steps of ``dt`` seconds; rates are in Hz; periods in milliseconds.

- :func:`pattern_generation_task`: the e-prop pattern-generation task (Bellec et al. 2020,
  Nat. Commun. 11:3625): one frozen Poisson input pattern, a sum of four sinusoids as target.
- :func:`noisy_signal_task`: filtering (denoising) or ``horizon``-step-ahead prediction of a
  random smooth signal that reaches the network only as noisy population-coded spikes.

Example:
    >>> from spikegrad.data.patterns import pattern_generation_task
    >>> xs, ys = pattern_generation_task(n_inputs=100, T=1000, seed=0)
    >>> xs.shape, ys.shape, float(ys.min()), float(ys.max())
    (torch.Size([1000, 1, 100]), torch.Size([1000, 1, 1]), -1.0, 1.0)
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Sequence, Tuple

import torch
from torch import Tensor

from .._validate import check_int
from .encoders import population

__all__ = ["PATTERN_PERIODS_MS", "pattern_generation_task", "noisy_signal_task",
           "sum_of_sines", "normalise_minmax"]

#: Periods of the four sinusoids of Bellec et al. (2020), in ms.
PATTERN_PERIODS_MS: Tuple[float, ...] = (1000.0, 500.0, 333.0, 200.0)


def _check_pos(name: str, value: object, allow_zero: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                         f"got {value!r}")
    return float(value)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return seed


def normalise_minmax(ys: Tensor) -> Tensor:
    """Map each trajectory linearly onto ``[-1, 1]`` (its min to -1, its max to 1).

    ``ys [T, ...]``: the min and max are taken over time, separately for every other index.
    A constant trajectory (no range) maps to 0.
    """
    lo, hi = ys.min(0, keepdim=True).values, ys.max(0, keepdim=True).values
    span = hi - lo
    out = 2 * (ys - lo) / span.clamp_min(torch.finfo(ys.dtype).tiny) - 1
    return torch.where(span > 0, out, torch.zeros_like(out))


def sum_of_sines(T: int, dt: float, periods_ms: Sequence[float], amplitudes: Tensor,
                 phases: Tensor) -> Tensor:
    """``y_t = sum_k A_k sin(2 pi t dt / P_k + phi_k)`` for ``t = 0..T-1``.

    Args:
        T: number of steps; dt: step in seconds; periods_ms: ``K`` periods in ms.
        amplitudes, phases: ``[..., K]`` (phases in radians).

    Returns:
        ``[T, ...]`` (float64 when the inputs are; the generators below cast to float32).
    """
    periods_s = torch.tensor([p * 1e-3 for p in periods_ms], dtype=amplitudes.dtype)
    t = torch.arange(T, dtype=amplitudes.dtype) * dt                       # [T] seconds
    arg = 2 * math.pi * t.view(T, *([1] * amplitudes.dim())) / periods_s + phases  # [T, ..., K]
    return (amplitudes * torch.sin(arg)).sum(-1)


def pattern_generation_task(n_inputs: int = 100, T: int = 1000, rate_hz: float = 50.0,
                            dt: float = 1e-3, n_outputs: int = 1, seed: int = 0,
                            periods_ms: Sequence[float] = PATTERN_PERIODS_MS
                            ) -> Tuple[Tensor, Tensor]:
    """The pattern-generation task of e-prop (Bellec et al. 2020): learn to replay a fixed
    trajectory from a fixed ("frozen") Poisson input pattern.

    Each input neuron spikes independently with probability ``rate_hz * dt`` per step. Each
    output channel's target is ``sum_k A_k sin(2 pi t / P_k + phi_k)`` with the periods
    ``P_k`` (default 1000, 500, 333, 200 ms), ``A_k ~ U(0.5, 2)`` and ``phi_k ~ U(0, 2 pi)``,
    then mapped linearly onto ``[-1, 1]`` (its minimum becomes -1, its maximum 1; the paper
    instead shifts to start at 0 and scales to ``max |y| = 1``: the same shape up to an
    offset).

    Args:
        n_inputs: input neurons (>= 1).
        T: steps (>= 2).
        rate_hz: input firing rate in Hz (``rate_hz * dt <= 1``).
        dt: step in seconds.
        n_outputs: target channels, each with its own amplitudes and phases.
        seed: the pattern and the targets are a function of ``seed`` alone (the amplitudes
            and phases are drawn first, then the spikes).
        periods_ms: the sinusoids' periods in ms.

    Returns:
        ``(inputs [T, 1, n_inputs], targets [T, 1, n_outputs])``, float32.
    """
    check_int(n_inputs, "n_inputs")
    check_int(T, "T", minimum=2)
    check_int(n_outputs, "n_outputs")
    dt = _check_pos("dt", dt)
    rate_hz = _check_pos("rate_hz", rate_hz, allow_zero=True)
    if rate_hz * dt > 1:
        raise ValueError(f"rate_hz * dt must be <= 1 (a spike probability per step), got "
                         f"rate_hz={rate_hz} with dt={dt}; lower the rate or the step")
    periods = [_check_pos("periods_ms entries", p) for p in periods_ms]
    if not periods:
        raise ValueError("periods_ms must hold at least one period, e.g. (1000, 500, 333, 200)")
    g = torch.Generator().manual_seed(_check_seed(seed))
    amplitudes = 0.5 + 1.5 * torch.rand(n_outputs, len(periods), generator=g,
                                        dtype=torch.float64)
    phases = 2 * math.pi * torch.rand(n_outputs, len(periods), generator=g, dtype=torch.float64)
    targets = normalise_minmax(sum_of_sines(T, dt, periods, amplitudes, phases))  # [T, n_out]
    inputs = (torch.rand(T, 1, n_inputs, generator=g) < rate_hz * dt).float()
    return inputs, targets.float().unsqueeze(1)


def noisy_signal_task(n_inputs: int = 100, T: int = 500, batch: int = 32, dt: float = 1e-3,
                      n_outputs: int = 1, seed: int = 0, max_rate_hz: float = 100.0,
                      noise_std: float = 0.3, horizon: int = 0, n_components: int = 4,
                      freq_range_hz: Tuple[float, float] = (1.0, 6.0),
                      tuning_width: float = 0.3) -> Tuple[Tensor, Tensor]:
    """Filter a noisy real-valued signal seen only through spikes (or predict it ahead).

    Every sequence has its own clean signal ``s`` (per output channel): a sum of
    ``n_components`` sinusoids with frequencies ``U(freq_range_hz)``, amplitudes ``U(0.5,
    1)`` and phases ``U(0, 2 pi)``, mapped onto ``[-1, 1]``. The network sees the noisy
    signal ``x_t = s_t + noise_std * N(0, 1)`` (white noise, independent per step), encoded
    by ``n_inputs`` Gaussian tuning curves (:func:`spikegrad.data.population`, centres over
    ``[-1.5, 1.5]``, standard deviation ``tuning_width``) per channel, each spiking with probability ``max_rate_hz * dt *
    tuning(x_t)`` per step. The target is the clean signal ``horizon`` steps later,
    ``s_{t + horizon}`` (``horizon = 0``: denoising). Signals are drawn for ``T + horizon``
    steps so every target exists.

    Args:
        n_inputs: input neurons per channel (>= 2); the input has ``n_inputs * n_outputs``.
        T: steps (>= 2); batch: number of sequences (>= 1); dt: step in seconds.
        n_outputs: independent signal channels.
        seed: everything is a function of ``seed``.
        max_rate_hz: rate of a neuron at the centre of its tuning curve (``* dt <= 1``).
        noise_std: standard deviation of the additive white noise (signal range is [-1, 1]).
        horizon: prediction horizon in steps (>= 0).
        n_components: sinusoids per signal; freq_range_hz: their frequency range.
        tuning_width: width of each tuning curve in signal units (> 0); the default 0.3 keeps
            many inputs active at every value (about ``n_inputs / 5`` above half maximum).

    Returns:
        ``(inputs [T, batch, n_inputs * n_outputs], targets [T, batch, n_outputs])``, float32.
    """
    check_int(n_inputs, "n_inputs", minimum=2)
    check_int(T, "T", minimum=2)
    check_int(batch, "batch")
    check_int(n_outputs, "n_outputs")
    check_int(horizon, "horizon", minimum=0)
    check_int(n_components, "n_components")
    dt = _check_pos("dt", dt)
    max_rate_hz = _check_pos("max_rate_hz", max_rate_hz)
    noise_std = _check_pos("noise_std", noise_std, allow_zero=True)
    if max_rate_hz * dt > 1:
        raise ValueError(f"max_rate_hz * dt must be <= 1, got max_rate_hz={max_rate_hz}, dt={dt}")
    tuning_width = _check_pos("tuning_width", tuning_width)
    f_lo, f_hi = (_check_pos("freq_range_hz entries", f) for f in freq_range_hz)
    if f_lo > f_hi:
        raise ValueError(f"freq_range_hz must be (low, high) with low <= high, got "
                         f"{tuple(freq_range_hz)}")
    g = torch.Generator().manual_seed(_check_seed(seed))
    shape = (batch, n_outputs, n_components)
    freqs = f_lo + (f_hi - f_lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    amplitudes = 0.5 + 0.5 * torch.rand(shape, generator=g, dtype=torch.float64)
    phases = 2 * math.pi * torch.rand(shape, generator=g, dtype=torch.float64)
    steps = T + horizon
    t = torch.arange(steps, dtype=torch.float64).view(steps, 1, 1, 1) * dt
    clean = normalise_minmax((amplitudes * torch.sin(2 * math.pi * freqs * t + phases)).sum(-1))
    clean = clean.float()                                           # [T + h, batch, n_out]
    noisy = clean[:T] + noise_std * torch.randn(T, batch, n_outputs, generator=g)
    p = max_rate_hz * dt * population(noisy, n_inputs, -1.5, 1.5, width=tuning_width)    # [T, batch, n_out, n_in]
    inputs = (torch.rand(p.shape, generator=g) < p).float().flatten(2)
    return inputs, clean[horizon:]
