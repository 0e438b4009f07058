"""Adaptive LIF (ALIF, Bellec et al. 2018, 2020) with optional refractoriness.

Spike-triggered threshold adaptation, composed around the LIF pieces (``leaky.integrate``,
``lif.reset``) and the refractory pieces of :mod:`spikegrad.functional.refractory`.
One step t, in this order (voltages relative to rest; ``a_{-1} = 0``)::

    i_t, u_t = integrate(x_t, v_{t-1}, i_{t-1})           synaptic current, then membrane
    u_t     <- u_t - w_ref * q_{t-1}                        relative refractory current (opt.)
    u_t     <- v_{t-1}            while ref_{t-1} > 0      absolute refractory clamp (opt.)
    A_t      = theta + beta_a * a_{t-1}                    adaptive threshold
    z_t      = H(u_t - A_t)       (0 while refractory)     backward: phi(u_t - A_t)
    v_t      = reset(u_t, z_t)                              subtract theta (the *baseline*, as
                                                            in Bellec et al. 2020), to_value
                                                            v_reset, or none
    a_t      = rho * a_{t-1} + z_t,   rho = exp(-dt / tau_a)
    q_t      = d_ref * q_{t-1} + z_t;  ref_t = n_ref z_t (free) | ref_{t-1} - 1 (refractory)

In Bellec et al. 2020 (e-prop) notation: ``A_t = v_th + beta a_t``, ``a_{t+1} = rho a_t +
z_t``; our ``a_{t-1}`` is their ``a_t`` (the state before this step's spike). ``beta_a = 0``
gives a plain LIF with refractoriness (same state layout). With ``detach_reset`` the reset
carries no gradient (as in LIF); ``a`` and ``q`` always carry the surrogate gradient of ``z``.

State :class:`ALIFState` ``(v, a, i, ref, q)``: ``v`` membrane after reset, ``a`` adaptation
trace, ``i`` synaptic current (None without ``decay_syn``), ``ref`` refractory steps left
(None when ``n_ref = 0``), ``q`` relative refractory trace (None when it is off). All
``[B, *features]``.

Backends: ``"reference"`` is this module's loop (the definition). ``"numba"`` runs the fused
kernel of :mod:`spikegrad.kernels.adaptive` (CPU; equal to the reference: spikes and states
bit-identical, gradients up to summation order), which covers ALIF refractory or not, and
trains its constants when it is not refractory; for anything else (trained constants of a
refractory ALIF, or under torch.compile / torch.func) it raises ValueError saying why.
``"auto"`` takes it where it applies (numba installed, CPU tensors) and the reference loop
otherwise. There is no ``"torch"`` or ``"triton"`` fused ALIF (ValueError).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._validate import (ParamCheck, check_decay, check_sequence,
                         check_state_like, check_state_type, check_tensor)
from ..surrogate import spike
from .leaky import Scalar, check_state, integrate
from ..kernels import ops, registry
from ..kernels.registry import Call
from ..kernels.spec import Spec
from .lif import LIFParams, check_lif, reset
from .refractory import (RefractoryParams, after_spike, check_refractory, clamp, free_mask,
                         has_relative, relative_push)
from .scan import scan, scan_trace



class ALIFParams(NamedTuple):
    """``lif``: the LIF part (decays, baseline threshold ``theta``, reset, surrogate);
    ``decay_adapt``: ``rho = exp(-dt/tau_a)``; ``beta_adapt``: adaptation strength (0 turns
    adaptation off); ``refractory``: :class:`RefractoryParams`. Tensors may be per-neuron."""

    lif: LIFParams = LIFParams()
    decay_adapt: Scalar = 0.995
    beta_adapt: Scalar = 1.0
    refractory: RefractoryParams = RefractoryParams()


class ALIFState(NamedTuple):
    """See the module docstring; every tensor is ``[B, *features]``."""

    v: Tensor
    a: Tensor
    i: Optional[Tensor] = None
    ref: Optional[Tensor] = None
    q: Optional[Tensor] = None


def adaptive_threshold(state: ALIFState, p: ALIFParams) -> Tensor:
    """``A_t = theta + beta_a * a_{t-1}`` (for plots: the threshold the step compares to)."""
    return p.lif.threshold + p.beta_adapt * state.a


def alif_update(x: Tensor, s: ALIFState, p: ALIFParams) -> Tuple[Tensor, ALIFState]:
    """One step without checks (the loops' step; :func:`alif_step` checks first)."""
    u, i = integrate(x, s.v, s.i, p.lif)
    u = relative_push(u, s.q, p.refractory)
    free = free_mask(s.ref)
    u = clamp(u, s.v, free)
    z = spike(u - adaptive_threshold(s, p), p.lif.surrogate)
    if free is not None:
        z = z * free  # no spike (and no surrogate gradient) while refractory
    v = reset(u, z, p.lif)
    a = p.decay_adapt * s.a + z
    ref, q = after_spike(z, s.ref, s.q, free, p.refractory)
    return z, ALIFState(v, a, i, ref, q)


def initial_state(x: Tensor, p: ALIFParams) -> ALIFState:
    """Zeros shaped like one input step ``x [B, *features]``."""
    def z():
        return torch.zeros_like(x)
    return ALIFState(z(), z(), z() if p.lif.decay_syn is not None else None,
                     z() if p.refractory.n_ref > 0 else None,
                     z() if has_relative(p.refractory) else None)


def check_alif(p: ALIFParams, check: ParamCheck, name: str = "p") -> None:
    """The ALIF constants: the LIF part, ``decay_adapt`` in [0, 1], ``beta_adapt`` finite and
    >= 0 (as the ALIF module requires), the refractory constants."""
    if not isinstance(p, ALIFParams):
        raise TypeError(f"{name} must be ALIFParams, got {type(p).__name__}; build it as "
                        "ALIFParams(LIFParams(...), decay_adapt=0.995, beta_adapt=1.0)")
    check_lif(p.lif, check, "ALIFParams.lif")
    check_decay(p.decay_adapt, "decay_adapt", check)
    check.real(p.beta_adapt, "beta_adapt", low=0.0, hint="0 turns adaptation off")
    check_refractory(p.refractory, check)


def prepare_state(x0: Tensor, state, p: ALIFParams, tensor_values: bool = True) -> ALIFState:
    """Checks the constants (tensor values too with ``tensor_values``: one sync) and the
    state; returns the state, zeros for None."""
    check = ParamCheck(shape=x0.shape, tensor_values=tensor_values)
    check_alif(p, check)
    check.done()
    if state is None:
        return initial_state(x0, p)
    check_state_type(state, ALIFState)
    check_state(x0, state, p.lif)
    check_state_like(state.a, x0, "state.a")
    for name, needed in (("ref", p.refractory.n_ref > 0), ("q", has_relative(p.refractory))):
        value = getattr(state, name)
        if needed and value is None:
            raise ValueError(f"state.{name} is None but the neuron uses it; pass state=None "
                             "to start from zeros")
        if needed:
            check_state_like(value, x0, f"state.{name}")
    return state


def _trained_constants(p: ALIFParams, xs: Tensor) -> Tuple[str, ...]:
    """Constants that need a gradient in this call and that the fused kernel cannot train:
    every trained one of a refractory ALIF, or under torch.compile / torch.func (whose
    operator keeps the constants fixed); none otherwise (kernels.adaptive.trained_grads)."""
    if not torch.is_grad_enabled():
        return ()
    consts = {"decay_mem": p.lif.decay_mem, "decay_syn": p.lif.decay_syn,
              "threshold": p.lif.threshold, "v_reset": p.lif.v_reset,
              "decay_adapt": p.decay_adapt, "beta_adapt": p.beta_adapt,
              "refractory decay": p.refractory.decay,
              "refractory strength": p.refractory.strength}
    trained = tuple(k for k, v in consts.items() if isinstance(v, Tensor) and v.requires_grad)
    refractory = p.refractory.n_ref > 0 or has_relative(p.refractory)
    if trained and (refractory or ops.compiling(xs) or ops.transformed()):
        return trained
    return ()


def check_backend(backend: str) -> str:
    """``backend`` if some input could run ALIF with it (ValueError for a fused backend
    without an ALIF kernel: checked at a module's construction, before any input)."""
    return registry.check_model(backend, "alif")


def resolve_backend(backend: str, xs: Tensor, p: ALIFParams, recurrent: bool = False) -> str:
    """``"reference"`` or ``"numba"`` for this call (the kernel registry's choice): ``auto``
    picks the fused kernel where it applies, an explicit fused backend that cannot run
    raises saying why."""
    return registry.choose(backend, Call("alif", xs, recurrent=recurrent,
                                         trained=_trained_constants(p, xs)))


def fused_alif_seq(xs: Tensor, state: ALIFState, p: ALIFParams,
                   w_rec: Optional[Tensor] = None, y0: Optional[Tensor] = None):
    """The fused kernel (see :func:`resolve_backend`); with ``w_rec [N, N]`` the input of step
    t is ``xs_t + W y_{t-1}`` (``y_{-1} = y0``). Returns ``(zs, ALIFState)``."""
    from ..kernels.adaptive import Constants, adaptive_sequence
    lif, r = p.lif, p.refractory
    spec = Spec(spiking=True, reset=lif.reset, detach_reset=lif.detach_reset,
                scale_input=bool(lif.scale_input), has_syn=lif.decay_syn is not None,
                surrogate=lif.surrogate, backend="numba")
    detached = (c.detach() if isinstance(c, Tensor) else c
                for c in (lif.decay_mem, lif.decay_syn, lif.threshold, lif.v_reset,
                          p.decay_adapt, p.beta_adapt, r.n_ref, r.decay, r.strength))
    k = Constants(*detached)
    q0 = state.q if has_relative(r) else None
    trained = (lif.decay_mem, lif.decay_syn, lif.threshold, lif.v_reset, p.decay_adapt,
               p.beta_adapt)
    zs, v, i, a, ref, q = adaptive_sequence(spec, k, xs, state.v, state.i, state.a, state.ref,
                                            q0, w_rec, y0, trained=trained)
    return zs, ALIFState(v, a, i, ref, q)


def alif_step(x: Tensor, state: Optional[ALIFState], p: ALIFParams = ALIFParams()
              ) -> Tuple[Tensor, ALIFState]:
    """One ALIF step. ``x``: input current ``[B, *features]``; ``state=None`` means zeros.

    Returns ``(z_t, state_t)``. Checks every constant but the values inside tensor constants
    (a device sync per step in a Python loop); :func:`alif_seq` checks those too.
    """
    check_tensor(x, "x")
    return alif_update(x, prepare_state(x, state, p, tensor_values=False), p)


def alif_seq(xs: Tensor, state: Optional[ALIFState] = None, p: ALIFParams = ALIFParams(),
             backend: str = "auto") -> Tuple[Tensor, ALIFState]:
    """ALIF over a sequence: ``xs [T, B, *features] -> (zs [T, B, *features], state)``.

    ``backend``: ``"auto"``, ``"reference"`` or ``"numba"`` (see the module docstring).

    Example:
        >>> import torch
        >>> p = ALIFParams(LIFParams(decay_mem=1.0, threshold=1.0), decay_adapt=1.0,
        ...                beta_adapt=1.0)
        >>> zs, s = alif_seq(torch.full((6, 1, 1), 0.75), p=p)
        >>> zs.flatten().tolist(), s.a.item()
        ([0.0, 1.0, 0.0, 0.0, 1.0, 0.0], 2.0)
    """
    check_sequence(xs, "xs")
    state = prepare_state(xs[0], state, p)
    if resolve_backend(backend, xs, p) == "numba":
        return fused_alif_seq(xs, state, p)
    return scan(alif_update, xs, state, p)


def alif_trace(xs: Tensor, state: Optional[ALIFState] = None, p: ALIFParams = ALIFParams()
               ) -> Tuple[Tensor, ALIFState]:
    """Like :func:`alif_seq` but returns every state stacked ``[T, ...]`` (for plots; the
    threshold each step compared to is ``theta + beta_a * a`` of the previous state)."""
    check_sequence(xs, "xs")
    return scan_trace(alif_update, xs, prepare_state(xs[0], state, p), p)
