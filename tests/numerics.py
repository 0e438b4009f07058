"""Tolerances derived from floating-point error analysis, not tuned on one processor.

Two computations of the same quantity that sum in different orders (a fused kernel and the
reference loop, a chunked and a whole GEMM, one thread and three, event-driven and dense,
AVX-512, AVX2 or SSE code) differ by rounding. How much depends on the numerics: a sum of
``n`` terms rounded in precision ``u`` (the unit roundoff, eps / 2) has error at most

    gamma_n * sum |terms|,        gamma_n = n u / (1 - n u) ~ n u        (Higham, ASNA 2nd ed.,
                                                                           sec. 3.1 and 4.2)

whatever order it was summed in, on any processor, with or without fused multiply-adds. A
recurrence of ``T`` such steps feeds each step's error into the next: the errors add up along
the dependency chain, so ``n`` counts the roundings on the longest chain from the inputs to a
result. The helpers here turn that into tolerances:

* ``n``: given by each test from its shapes, with :func:`chain` for the usual "sequence of
  length T, reduced over B rows, F-wide sums per step" (``T * (B + F + STEP_ROUNDINGS)``);
* ``scale``: the magnitude of the summed terms. Where a test can compute it exactly (a GEMM:
  ``|x| @ |w|^T``) it passes it; otherwise the largest ``|entry|`` of the float64 reference
  stands for it (a norm-wise bound). An element-wise relative tolerance is the wrong tool here:
  an entry that is a sum cancelling to near zero keeps the absolute error of its large terms
  (a recurrent weight gradient entry of 21 in a tensor whose largest entry is 5e3 failed a
  1e-5 rtol on an AVX2 machine with an error of 1.6 u * 5e3).

A fast float32 path is compared with the float64 reference run on the same (float32-exact)
inputs: the reference's own error is ~1e-9 of the float32 bound, so the test bounds the fast
path's error itself, not its distance from another float32 path. Two paths of one dtype are
each within the bound of the exact result, so they are compared at twice it.

Margin. The bound is first order and its norm-wise scale is an estimate; measured on an
AVX-512 Xeon, the largest error of any kernel or nn parity test is 0.47 of its bound (float64
recurrent ALIF without reset, a non-contracting adjoint whose sums cancel), float32 tests at
most 0.3 and mostly below 0.1. A processor with a different summation order has that room
before a test flakes, while a real bug shows as an error of the order of the result itself:
dropping one chunk's share of the fused weight gradient, or flipping the sign of the reset's
gradient path, fails by 1e3-1e4 times the float32 bound, and even a 1e-3 relative error in
the surrogate term of the numba adjoint fails the float32 tests.

Spikes are a threshold decision: a fast path whose membrane is within rounding of the
threshold may decide otherwise than the float64 reference. :func:`spike_margins` records
``|v - theta|`` at every decision of a reference run, and :func:`assert_decisions_clear`
asserts that none of them lies within the membrane's error bound, so the spikes must agree
exactly; a case that fails it needs other inputs (another seed), not a looser test. A run
makes thousands of decisions, and the worst-case bound, attained only when every rounding
errs the same way, would rule out nearly every seed; decisions use the probabilistic bound of
Higham & Mary (SIAM J. Sci. Comput. 41(5), 2019, Thm. 2.4): with independent rounding errors,
``lambda sqrt(n) u * sum |terms|`` holds with probability at least ``1 - 2 n exp(-lambda^2/2)``
(lambda = 5 here; a decision that lands between that bound and the actual error still agrees,
so a flip needs both an improbable error and a near tie). The membrane's chain is short: a
decay ``a < 1`` damps an error made ``k`` steps ago by ``a^k``, so at most ``1 / (1 - a)``
steps of errors add up (:func:`membrane_chain`).
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional, Union

import torch
from torch import Tensor

# roundings in one step of a neuron update or of its adjoint (decay, input, reset, surrogate
# and their products): a handful; 8 leaves room for an extra synapse or refractory term
STEP_ROUNDINGS = 8


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = eps / 2: the relative error of one rounding to nearest (2^-24 float32, 2^-53
    float64)."""
    return torch.finfo(dtype).eps / 2


def chain(T: int, B: int = 1, F: int = 0) -> int:
    """Roundings on the longest dependency chain of a BPTT gradient: T steps of a recurrence
    (each with ``F``-wide sums, e.g. a recurrent or projection fan-in, plus
    :data:`STEP_ROUNDINGS`), then a sum over the ``T * B`` steps and rows of a parameter's
    gradient."""
    return T * (B + F + STEP_ROUNDINGS)


def membrane_chain(T: int, F: int = 0, decay: Optional[float] = None) -> int:
    """Roundings that reach one membrane value: ``F + STEP_ROUNDINGS`` per step over the steps
    whose errors survive, ``T`` or, with a membrane decay ``a < 1`` (the largest of a layer's),
    ``ceil(1 / (1 - a))`` (the geometric sum of the damping, sum_k a^k)."""
    steps = T if decay is None or decay >= 1 else min(T, math.ceil(1 / (1 - decay)))
    return steps * (F + STEP_ROUNDINGS)


# lambda of the probabilistic bound for spike decisions (module docstring)
DECISION_LAMBDA = 5.0


def bound(dtype: torch.dtype, n: int, scale: Union[float, Tensor]) -> Union[float, Tensor]:
    """gamma_n * scale in precision ``dtype`` (n u / (1 - n u); n u < 1 is asserted)."""
    nu = n * unit_roundoff(dtype)
    assert nu < 0.5, f"n = {n} roundings exceed what precision {dtype} can bound"
    return nu / (1 - nu) * scale


def _scale_of(reference: Tensor) -> float:
    return reference.abs().max().item() if reference.numel() else 0.0


def assert_close_to_reference(actual: Tensor, reference: Tensor, n: int,
                              scale: Optional[Union[float, Tensor]] = None, msg: str = "",
                              dtype: Optional[torch.dtype] = None,
                              paths: Optional[int] = None):
    """``|actual - reference| <= paths * gamma_n(u of dtype) * scale`` element-wise.

    Args:
        actual: the fast path's result (its dtype sets ``u`` unless ``dtype`` is given).
        reference: the float64 reference on the same inputs (or, with ``paths=2``, another
            path of the same dtype).
        n: roundings on the longest chain to a result entry (see :func:`chain`).
        scale: the magnitude of the summed terms, a number or a tensor broadcastable to the
            result (e.g. ``|x| @ |w|^T`` for a GEMM); default the largest ``|reference|``.
        paths: 1 against a reference of higher precision, 2 for two paths that both round
            in ``dtype``; default from the dtypes.
    """
    assert actual.shape == reference.shape, f"{msg}: shape {actual.shape} != {reference.shape}"
    dtype = dtype or actual.dtype
    if paths is None:
        paths = 1 if unit_roundoff(reference.dtype) < unit_roundoff(dtype) else 2
    if scale is None:
        scale = _scale_of(reference)
    tol = paths * bound(dtype, n, scale)
    err = (actual.to(torch.float64) - reference.to(torch.float64)).abs()
    if isinstance(tol, Tensor):
        tol = tol.to(torch.float64)
        bad = err > tol
    else:
        bad = err > tol
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        limit = tol[idx].item() if isinstance(tol, Tensor) and tol.dim() else float(tol)
        raise AssertionError(
            f"{msg}: {int(bad.sum())} of {err.numel()} entries beyond the rounding bound; "
            f"first at {idx}: |{actual[idx].item():.9g} - {reference[idx].item():.9g}| = "
            f"{err[idx].item():.3g} > {limit:.3g} (n = {n}, {dtype}, max error "
            f"{err.max().item():.3g})")


def assert_same_up_to_order(a: Tensor, b: Tensor, n: int,
                            scale: Optional[Union[float, Tensor]] = None, msg: str = ""):
    """Two paths of one dtype summing the same terms in different orders: each is within
    gamma_n * scale of the exact result, so they are within twice that of each other."""
    assert a.dtype == b.dtype, f"{msg}: {a.dtype} != {b.dtype}"
    assert_close_to_reference(a, b, n, scale, msg, paths=2)


def matmul_scale(a: Tensor, b: Tensor) -> Tensor:
    """sum_k |a_ik b_kj| in float64: the exact magnitude of the terms of ``a @ b``."""
    return a.abs().to(torch.float64) @ b.abs().to(torch.float64)


class Margins:
    """Smallest and largest ``|v - theta|`` met at a spike decision (see spike_margins)."""

    def __init__(self):
        self.smallest = float("inf")
        self.largest = 0.0
        self.count = 0

    def add(self, d: Tensor):
        d = d.detach().abs()
        if d.numel():
            self.smallest = min(self.smallest, d.min().item())
            self.largest = max(self.largest, d.max().item())
            self.count += d.numel()


@contextlib.contextmanager
def spike_margins():
    """Record ``|v - theta|`` at every spike decision of the reference loops run inside."""
    from spikegrad.functional import adaptation, dendrite, lif
    margins = Margins()
    saved = [(mod, mod.spike) for mod in (lif, adaptation, dendrite)]

    def recording(real):
        def spike(x, surrogate):
            margins.add(x)
            return real(x, surrogate)
        return spike
    for mod, real in saved:
        mod.spike = recording(real)
    try:
        yield margins
    finally:
        for mod, real in saved:
            mod.spike = real


def assert_decisions_clear(margins: Margins, dtype: torch.dtype, n: int,
                           scale: Optional[float] = None, paths: int = 1):
    """No membrane of the reference run lies within ``paths`` times the probabilistic
    rounding bound of a ``dtype`` path's membrane (``lambda sqrt(n) u * scale``; scale default:
    the largest |v - theta| met, at least 1, the thresholds' order) from its threshold, so both
    must spike alike. ``paths=2`` when the reference itself ran in ``dtype``."""
    assert margins.count, "no spike decision was recorded: run the reference inside"
    if scale is None:
        scale = max(1.0, margins.largest)
    tol = paths * DECISION_LAMBDA * math.sqrt(n) * unit_roundoff(dtype) * scale
    assert margins.smallest > tol, (
        f"a membrane lies {margins.smallest:.3g} from its threshold, within the {dtype} "
        f"rounding bound {tol:.3g} (n = {n}, {margins.count} decisions): the spikes may "
        f"legitimately differ; pick inputs (a seed) whose decisions are clear")


def linear_terms(x: Tensor, w: Tensor, b: Optional[Tensor], g: Tensor):
    """``(n, scale)`` for each result of ``y = x w^T + b`` and its backward with output
    gradient ``g``: ``y``, ``dW = g^T x``, ``db = sum_rows g``, ``dX = g w``; scale is the exact
    sum of |terms| of each entry, so the bound is Higham's, entry by entry."""
    x2 = x.reshape(-1, x.shape[-1])
    g2 = g.expand(*x.shape[:-1], w.shape[0]).reshape(-1, w.shape[0])
    rows = x2.shape[0]
    y = matmul_scale(x2, w.t()) + (0 if b is None else b.abs().to(torch.float64))
    return [(x2.shape[1] + 1, y.reshape(*x.shape[:-1], w.shape[0])),
            (rows, matmul_scale(g2.t(), x2)),
            (rows, g2.abs().to(torch.float64).sum(0)),
            (w.shape[0], matmul_scale(g2, w).reshape(x.shape))]


def random_spikes(shape, p: float, dtype: torch.dtype, seed: int = 0) -> Tensor:
    """Binary spikes of density ``p`` (a seeded generator)."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen, dtype=dtype) < p).to(dtype)


def assert_matmul_up_to_order(actual: Tensor, a: Tensor, b: Tensor) -> None:
    """``actual`` equals the GEMM ``a @ b`` to summation order: each entry within twice
    Higham's bound of its own sum of |terms|."""
    assert_same_up_to_order(actual, a @ b, a.shape[-1], matmul_scale(a, b))
