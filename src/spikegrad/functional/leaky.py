"""Leaky integration, shared by every neuron model, and the leaky-integrator (LI) readout.

One step, with optional synaptic current (current-based model) and optional input scaling::

    i_t = a_syn * i_{t-1} + x_t                    (only if decay_syn is not None; else i_t = x_t)
    v_t = a_mem * v_{t-1} + g * i_t,   g = 1 - a_mem if scale_input else 1

with ``a = exp(-dt / tau)``. The LI neuron outputs ``v_t``: a low-pass filter of its input.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from .._validate import (ParamCheck, check_choice, check_decay, check_sequence,
                         check_state_like, check_state_type, check_tensor)
from ..kernels.leaky import leaky_sequence
from ..kernels.registry import BACKENDS
from .scan import scan
from .truncation import cut_every

Scalar = Union[float, Tensor]


class LIParams(NamedTuple):
    """Leaky-integrator parameters. Decays are in [0, 1] (1: no leak; 0: no memory); numbers
    or per-neuron tensors."""

    decay_mem: Scalar = 0.95
    decay_syn: Optional[Scalar] = None
    scale_input: bool = False


class LIState(NamedTuple):
    """``v``: membrane ``[B, *features]``; ``i``: synaptic current, or None without one."""

    v: Tensor
    i: Optional[Tensor] = None


def integrate(x: Tensor, v: Tensor, i: Optional[Tensor], p) -> Tuple[Tensor, Optional[Tensor]]:
    """One step of leaky integration (the equations above). ``p`` has the LIParams fields."""
    if p.decay_syn is not None:
        i = p.decay_syn * i + x
        x = i
    if p.scale_input:
        x = (1.0 - p.decay_mem) * x
    return p.decay_mem * v + x, i


def initial_state(x: Tensor, p, state_type=LIState):
    """Zeros shaped like one input step ``x`` ``[B, *features]``."""
    zeros = torch.zeros_like(x)
    return state_type(zeros, torch.zeros_like(x) if p.decay_syn is not None else None)


def check_leak(p, check: ParamCheck) -> None:
    """The decays shared by LI, LIF and ALIF (``p`` has the LIParams fields)."""
    check_decay(p.decay_mem, "decay_mem", check)
    if p.decay_syn is not None:
        check_decay(p.decay_syn, "decay_syn", check)


def check_li_params(p, x0: Tensor, tensor_values: bool = True) -> None:
    """Every constant of ``p`` for one input step ``x0 [B, *features]``. ``tensor_values``:
    also the values of tensor constants (one sync; see :class:`spikegrad._validate.ParamCheck`)."""
    if not isinstance(p, LIParams):
        raise TypeError(f"p must be LIParams, got {type(p).__name__}; build it as "
                        "LIParams(decay_mem=0.95, decay_syn=None, scale_input=False)")
    check = ParamCheck(shape=x0.shape, tensor_values=tensor_values)
    check_leak(p, check)
    check.done()


def check_state(x: Tensor, state, p, name: str = "state", state_type: type = None) -> None:
    """A state of ``state_type`` (if given) whose tensors are shaped like one input step."""
    if state_type is not None:
        check_state_type(state, state_type, name)
    elif not hasattr(state, "v"):
        raise TypeError(f"{name} must be a state NamedTuple with a membrane v (or None for "
                        f"zeros), got {type(state).__name__}")
    check_state_like(state.v, x, f"{name}.v")
    if p.decay_syn is not None:
        if state.i is None:
            raise ValueError(f"{name}.i is None but the neuron has a synaptic current "
                             "(decay_syn is set); pass state=None to start from zeros")
        check_state_like(state.i, x, f"{name}.i")


def li_update(x: Tensor, state: LIState, p: LIParams) -> Tuple[Tensor, LIState]:
    """One step without checks (the loops' step; :func:`li_step` checks first)."""
    v, i = integrate(x, state.v, state.i, p)
    return v, LIState(v, i)


def li_step(x: Tensor, state: Optional[LIState], p: LIParams = LIParams()
            ) -> Tuple[Tensor, LIState]:
    """One LI step. ``x``: ``[B, *features]``. Returns ``(v_t, state_t)``.

    Checks every constant but the values inside tensor constants (that would cost a device
    sync per step in a Python loop); :func:`li_seq` checks those too."""
    check_tensor(x, "x")
    check_li_params(p, x, tensor_values=False)
    if state is None:
        state = initial_state(x, p)
    check_state(x, state, p, state_type=LIState)
    return li_update(x, state, p)


def li_seq(xs: Tensor, state: Optional[LIState] = None, p: LIParams = LIParams(),
           backend: str = "auto") -> Tuple[Tensor, LIState]:
    """LI over a sequence. ``xs``: ``[T, B, *features]`` -> ``(vs [T, B, *features], state)``.

    ``backend``: as for :func:`spikegrad.functional.lif_seq`.

    Example:
        >>> import torch
        >>> vs, _ = li_seq(torch.ones(3, 1, 1), p=LIParams(decay_mem=0.5))
        >>> vs.flatten().tolist()
        [1.0, 1.5, 1.75]
    """
    check_sequence(xs, "xs")
    check_choice(backend, "backend", BACKENDS)
    check_li_params(p, xs[0])
    if state is None:
        state = initial_state(xs[0], p)
    check_state(xs[0], state, p, state_type=LIState)
    if backend == "reference":
        return scan(li_update, xs, state, p)
    vs, v, i = leaky_sequence(xs, state.v, state.i, p, spiking=False, backend=backend,
                              cut=cut_every())
    return vs, LIState(v, i)


def lowpass(xs: Tensor, decay: Scalar) -> Tensor:
    """Exponential filter ``y_t = decay * y_{t-1} + x_t`` over time, from zero. ``[T, ...]``."""
    check_decay(decay, "decay")
    return li_seq(xs, None, LIParams(decay_mem=decay), backend="reference")[0]
