"""Refractoriness: pieces that a spiking step composes around integrate / fire / reset.

Two mechanisms, each optional (see :func:`spikegrad.functional.alif_step`, which uses them)::

    absolute (n_ref steps):  after a spike at step t, steps t+1 .. t+n_ref are refractory:
                             the membrane is clamped (u_t = v_{t-1}: no leak, no input),
                             no spike is emitted (z_t = 0) and nothing is reset.
                             ref_t = n_ref * z_t          if the neuron was free at t
                                   = ref_{t-1} - 1         if it was refractory
                             (``ref`` counts the refractory steps still ahead).
    relative (trainable):    a spike-triggered, decaying hyperpolarising current
                             q_t = d_ref * q_{t-1} + z_t,
                             u_t <- u_t - w_ref * q_{t-1}        (after integrating)
                             so right after a spike the membrane is pushed down by w_ref and
                             keeps receiving a decaying push; d_ref = exp(-dt / tau_ref).

The absolute period is a discrete count (no gradient); the relative one is smooth in
``w_ref`` and ``d_ref`` (both trainable per neuron in :class:`spikegrad.nn.ALIF`). The
synaptic current (if any) keeps integrating during the absolute period: the synapse is not
part of the refractory membrane. With the clamp the surrogate gradient sees ``dv_t/dv_{t-1} =
1`` and no spike during refractory steps (the mask is a constant of the forward pass).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np
from torch import Tensor

from .._validate import ParamCheck, check_decay
from .leaky import Scalar


class RefractoryParams(NamedTuple):
    """``n_ref``: absolute refractory steps (int >= 0); ``decay``/``strength``: the relative
    refractory current's decay ``d_ref`` in [0, 1] and amplitude ``w_ref`` (0 switches it
    off). Tensors may be per-neuron."""

    n_ref: int = 0
    decay: Scalar = 0.0
    strength: Scalar = 0.0


def has_relative(p: RefractoryParams) -> bool:
    return not (isinstance(p.strength, (int, float)) and p.strength == 0)


def check_refractory(p: RefractoryParams, check: Optional[ParamCheck] = None) -> None:
    """``n_ref`` an int >= 0, ``decay`` in [0, 1], ``strength`` finite and >= 0. Tensor values
    are left to ``check`` (read once per call by its ``done()``)."""
    if not isinstance(p, RefractoryParams):
        raise TypeError(f"refractory must be RefractoryParams, got {type(p).__name__}")
    if (isinstance(p.n_ref, bool) or not isinstance(p.n_ref, (int, np.integer))
            or p.n_ref < 0):
        raise ValueError(f"n_ref must be an int >= 0 (refractory steps), got {p.n_ref!r}; "
                         "convert a duration with round(t_ref / dt)")
    own = check is None
    check = ParamCheck() if own else check
    check_decay(p.decay, "refractory decay", check)
    check.real(p.strength, "refractory strength", low=0.0, hint="0 switches it off")
    if own:
        check.done()


def free_mask(ref: Optional[Tensor]) -> Optional[Tensor]:
    """1 where the neuron may integrate and fire (``ref == 0``), 0 while refractory."""
    return None if ref is None else (ref <= 0).to(ref.dtype)


def clamp(u: Tensor, v_prev: Tensor, free: Optional[Tensor]) -> Tensor:
    """The membrane compared to the threshold: ``u`` where free, ``v_{t-1}`` while refractory."""
    if free is None:
        return u
    return free * u + (1.0 - free) * v_prev


def relative_push(u: Tensor, q_prev: Optional[Tensor], p: RefractoryParams) -> Tensor:
    """``u - w_ref * q_{t-1}`` (the relative refractory current)."""
    return u if q_prev is None else u - p.strength * q_prev


def after_spike(z: Tensor, ref: Optional[Tensor], q: Optional[Tensor], free: Optional[Tensor],
                p: RefractoryParams) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Refractory state after step t's spike ``z``: ``(ref_t, q_t)``."""
    if ref is not None:
        # the counter is piecewise constant: no gradient flows through it
        zd = z.detach()
        ref = free * (p.n_ref * zd) + (1.0 - free) * (ref - 1.0)
    if q is not None:
        q = p.decay * q + z
    return ref, q
