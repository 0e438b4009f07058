"""Leaky integrate-and-fire neuron (voltage- or current-based). IF is the case a_mem = 1.

One step t, in this order (see docs/conventions.md)::

    i_t, v_t = integrate(x_t, v_{t-1}, i_{t-1})        (functional.leaky)
    z_t      = H(v_t - theta)                          H(0) = 0; backward: phi(v_t - theta)
    v_t     <- v_t - z_t * theta                       reset="subtract"
             | v_t - z_t * (v_t - v_reset)             reset="to_value"
             | v_t                                     reset="none"

With ``detach_reset=True`` the ``z_t`` inside the reset is detached: the reset changes the
membrane but carries no gradient (Zenke & Vogels 2021 found this trains better).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

from torch import Tensor

from .. import surrogate as _surrogate
from .._validate import ParamCheck, check_choice, check_sequence, check_tensor
from ..kernels.leaky import leaky_sequence
from ..kernels.registry import BACKENDS
from ..surrogate import Surrogate, spike
from .leaky import Scalar, check_leak, check_state, initial_state, integrate
from .scan import scan, scan_trace
from .truncation import cut_every

RESET_MODES = ("subtract", "to_value", "none")


class LIFParams(NamedTuple):
    """LIF parameters; tensors may be per-neuron (broadcast against ``[B, *features]``)."""

    decay_mem: Scalar = 0.95
    decay_syn: Optional[Scalar] = None
    scale_input: bool = False
    threshold: Scalar = 1.0
    v_reset: Scalar = 0.0
    reset: str = "subtract"
    detach_reset: bool = True
    surrogate: Surrogate = _surrogate.get("fast_sigmoid")


class LIFState(NamedTuple):
    """``v``: membrane after reset ``[B, *features]``; ``i``: synaptic current or None."""

    v: Tensor
    i: Optional[Tensor] = None


def fire(v: Tensor, p: LIFParams) -> Tensor:
    """Spikes ``z = H(v - theta)`` (``H(0) = 0``) of a membrane ``v [B, *features]``,
    backward through ``p.surrogate``'s derivative."""
    return spike(v - p.threshold, p.surrogate)


def reset(v: Tensor, z: Tensor, p: LIFParams) -> Tensor:
    """The membrane after this step's spikes ``z`` under ``p.reset`` (``"subtract"``:
    ``v - z theta``; ``"to_value"``: ``v - z (v - v_reset)``; ``"none"``: ``v``), with ``z``
    detached when ``p.detach_reset``. All ``[B, *features]``."""
    zr = z.detach() if p.detach_reset else z
    if p.reset == "subtract":
        return v - zr * p.threshold
    if p.reset == "to_value":
        return v - zr * (v - p.v_reset)
    return v


def lif_update(x: Tensor, state: LIFState, p: LIFParams) -> Tuple[Tensor, LIFState]:
    """One step without checks (the loops' step; :func:`lif_step` checks first)."""
    v, i = integrate(x, state.v, state.i, p)
    z = fire(v, p)
    return z, LIFState(reset(v, z, p), i)


def check_lif(p: LIFParams, check: ParamCheck, name: str = "p") -> None:
    """The LIF constants (also the LIF part of ALIF and a dendritic soma)."""
    if not isinstance(p, LIFParams):
        raise TypeError(f"{name} must be LIFParams, got {type(p).__name__}; build it as "
                        "LIFParams(decay_mem=0.95, threshold=1.0, ...)")
    check_leak(p, check)
    check.real(p.threshold, "threshold", low=0.0, low_open=True)
    check.real(p.v_reset, "v_reset")
    check_choice(p.reset, "reset", RESET_MODES)
    if not isinstance(p.surrogate, _surrogate.Surrogate):
        raise TypeError(f"surrogate must be a spikegrad.surrogate.Surrogate, got "
                        f"{type(p.surrogate).__name__}; use surrogate.get({p.surrogate!r})")


def prepare_state(x0: Tensor, state, p: LIFParams, tensor_values: bool = True):
    """Checks the constants (and, with ``tensor_values``, the values of tensor constants: one
    sync) and the state; returns the state, zeros for None."""
    check = ParamCheck(shape=x0.shape, tensor_values=tensor_values)
    check_lif(p, check)
    check.done()
    if state is None:
        return initial_state(x0, p, LIFState)
    check_state(x0, state, p, state_type=LIFState)
    return state


def lif_step(x: Tensor, state: Optional[LIFState], p: LIFParams = LIFParams()
             ) -> Tuple[Tensor, LIFState]:
    """One LIF step. ``x``: input current ``[B, *features]``; ``state=None`` means zeros.

    Returns:
        ``(z_t, state_t)``: spikes ``[B, *features]`` in {0, 1} and the state after reset.

    Checks every constant but the values inside tensor constants (that would cost a device
    sync per step in a Python loop); :func:`lif_seq` checks those too.
    """
    check_tensor(x, "x")
    return lif_update(x, prepare_state(x, state, p, tensor_values=False), p)


def lif_seq(xs: Tensor, state: Optional[LIFState] = None, p: LIFParams = LIFParams(),
            backend: str = "auto") -> Tuple[Tensor, LIFState]:
    """LIF over a sequence.

    Args:
        xs: input currents ``[T, B, *features]``.
        state: initial :class:`LIFState`, or None for zeros.
        p: :class:`LIFParams`.
        backend: ``"reference"`` (this module's Python time loop, the definition),
            ``"torch"`` (one fused autograd Function, torch ops), ``"numba"`` (the fused
            Function with compiled CPU loops), ``"triton"`` (its GPU kernels; CUDA tensors,
            no recurrence) or ``"auto"`` (the fastest of these that applies: numba on CPU
            when installed, triton on CUDA when installed, else torch). All are tested equal.
            ``nn.Recurrent`` uses its neuron's backend for the whole recurrent sequence.

    Returns:
        ``(zs [T, B, *features], final state)``.

    Raises:
        ValueError / TypeError: before any step, on every backend alike, for a constant out
        of range (decays in [0, 1], threshold finite and > 0, v_reset finite; NaN and inf
        rejected) or a state that is not a :class:`LIFState` shaped like one input step.

    Example:
        >>> import torch
        >>> zs, s = lif_seq(torch.full((4, 1, 1), 0.6), p=LIFParams(decay_mem=1.0))
        >>> zs.flatten().tolist(), round(s.v.item(), 2)
        ([0.0, 1.0, 0.0, 1.0], 0.4)
    """
    check_sequence(xs, "xs")
    check_choice(backend, "backend", BACKENDS)
    state = prepare_state(xs[0], state, p)
    if backend == "reference":
        return scan(lif_update, xs, state, p)
    zs, v, i = leaky_sequence(xs, state.v, state.i, p, spiking=True, backend=backend,
                              cut=cut_every())
    return zs, LIFState(v, i)


def lif_trace(xs: Tensor, state: Optional[LIFState] = None, p: LIFParams = LIFParams()
              ) -> Tuple[Tensor, LIFState]:
    """Like :func:`lif_seq` but returns every state: ``(zs, LIFState(v [T, ...], i))``.

    ``v`` is the membrane after reset; add ``zs * threshold`` back for subtract-reset to see
    the pre-reset value that was compared to the threshold.
    """
    check_sequence(xs, "xs")
    return scan_trace(lif_update, xs, prepare_state(xs[0], state, p), p)
