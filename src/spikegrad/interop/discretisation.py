"""One step of ``dt`` of NIR's continuous-time neurons: decay <-> time constant, gain <-> r.

NIR's leaky nodes are ODEs ``tau dv/dt = (v_leak - v) + r I``. Run in steps of ``dt`` with the
input held over each step, every such ODE becomes

    v_t = a v_{t-1} + (1 - a) (v_leak + r I_t)

with ``a = exp(-dt / tau)`` (``"exp"``: the exact solution for an input held constant over the
step) or ``a = 1 - dt / tau`` (``"euler"``: one forward-Euler step). The integrators (IF, I:
``dv/dt = r I``) become ``v_t = v_{t-1} + dt r I_t`` under both. spikegrad's neurons step
``v_t = a v_{t-1} + g x_t`` with ``g = 1`` (or ``1 - a`` with ``scale_input``), so an input gain
``g`` is ``r = g / (1 - a)`` (integrators: ``r = g / dt``) under either discretisation; only the
time constant of a decay differs.

The inverses here are exact where floating point allows: :func:`tau_of_decay` returns the
float64 time constant that :func:`decay_of_tau` maps back onto the decay bit for bit, and
:func:`float32_preimage` finds the trainable float32 parameter whose smooth map (sigmoid,
softplus) gives a float32 constant exactly, so that a model exported and imported again runs
the same arithmetic.
"""

from __future__ import annotations

import math
import struct
from typing import Callable

import numpy as np
import torch
from torch import Tensor

DISCRETISATIONS = ("exp", "euler")

def decay_of_tau(tau: float, dt: float, discretisation: str) -> float:
    """The decay ``a`` of one step of ``dt`` for time constant ``tau`` (same unit; ``inf``
    gives 1). ``"euler"`` gives ``a < 0`` for ``tau < dt``: the caller rejects it."""
    if discretisation == "exp":
        return math.exp(-dt / tau)
    return 1.0 - dt / tau


def tau_of_decay(a: float, dt: float, discretisation: str) -> float:
    """The time constant of decay ``a`` in (0, 1] (``inf`` for 1): the float64 nearest the
    closed form (``-dt / ln a`` for ``"exp"``, ``dt / (1 - a)`` for ``"euler"``) for which
    :func:`decay_of_tau` returns ``a`` exactly, where one exists."""
    if not 0.0 < a <= 1.0:
        raise ValueError(f"a decay must lie in (0, 1] to have a time constant, got {a!r}")
    if a == 1.0:
        return math.inf
    tau = -dt / math.log(a) if discretisation == "exp" else dt / (1.0 - a)
    return _exact_preimage(lambda t: decay_of_tau(t, dt, discretisation), a, tau)


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _exact_preimage(f: Callable[[float], float], y: float, x: float) -> float:
    """A float64 near ``x > 0`` with ``f(x) == y`` (``f`` non-decreasing), or the closest
    found where the floats step over ``y``: gallops in ulps (positive floats order like their
    bit patterns) to bracket ``y``, then bisects the bracket."""
    fx = f(x)
    if fx == y:
        return x
    up = fx < y
    lo, step = _bits(x), 1
    for _ in range(62):
        hi = lo + step if up else max(lo - step, 1)
        fh = f(_float(hi))
        if fh == y:
            return _float(hi)
        if (fh > y) == up:
            break
        lo, step = hi, 2 * step
    else:
        return x
    while abs(hi - lo) > 1:
        mid = (lo + hi) // 2
        fm = f(_float(mid))
        if fm == y:
            return _float(mid)
        lo, hi = (mid, hi) if (fm < y) == up else (lo, mid)
    return min((_float(lo), _float(hi)), key=lambda t: abs(f(t) - y))


def elementwise(fn: Callable[[float], float], values: np.ndarray) -> np.ndarray:
    """``fn`` on every element of a float64 array (once per distinct value)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    out = np.array([fn(float(v)) for v in uniq], dtype=np.float64)
    return out[inverse].reshape(values.shape)


def gain_of_r(r: np.ndarray, a: np.ndarray, dt: float) -> np.ndarray:
    """Per-step input gain ``(1 - a) r`` of a leaky node, ``dt r`` where ``a = 1`` (an
    integrator, whose ODE has no time constant)."""
    return np.where(a == 1.0, dt * r, (1.0 - a) * r)


def r_of_gain(g: np.ndarray, a: np.ndarray, dt: float) -> np.ndarray:
    """The NIR resistance ``r`` giving per-step input gain ``g`` (inverse of
    :func:`gain_of_r`)."""
    safe = np.where(a == 1.0, 0.5, a)  # no division by zero in the branch np.where drops
    return np.where(a == 1.0, g / dt, g / (1.0 - safe))


def float32_preimage(fn: Callable[[Tensor], Tensor], target: Tensor, x0: Tensor,
                     max_steps: int = 64) -> Tensor:
    """Per element, the float32 nearest ``x0`` (in ulp steps) with ``fn(x) == target``
    exactly; ``x0`` where none lies within ``max_steps`` ulp.

    ``fn`` is applied to whole tensors shaped like ``x0`` (as the module applies it to its
    parameter), so that vectorised and scalar code paths match element by element.
    """
    x = x0.clone()
    done = fn(x) == target
    up, down = x0.clone(), x0.clone()
    inf = torch.full_like(x0, math.inf)
    for _ in range(max_steps):
        if bool(done.all()):
            break
        up, down = torch.nextafter(up, inf), torch.nextafter(down, -inf)
        for candidate in (up, down):
            hit = (fn(candidate) == target) & ~done
            x = torch.where(hit, candidate, x)
            done = done | hit
    return x


def logit_float32(a: np.ndarray) -> Tensor:
    """The float32 ``rho`` with ``sigmoid(rho) == float32(a)`` (a trainable decay's
    parameter, :class:`spikegrad.nn._params.Decay`)."""
    target = torch.from_numpy(a).float()
    x0 = torch.from_numpy(np.log(a / (1.0 - a))).float()
    return float32_preimage(torch.sigmoid, target, x0)


def softplus_inverse_float32(value: np.ndarray) -> Tensor:
    """The float32 ``rho`` with ``softplus(rho) == float32(value)`` (a trainable threshold's
    parameter)."""
    target = torch.from_numpy(value).float()
    x0 = torch.from_numpy(value + np.log(-np.expm1(-value))).float()
    return float32_preimage(torch.nn.functional.softplus, target, x0)
