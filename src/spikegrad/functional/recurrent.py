"""Recurrence around any neuron step: ``y_t, s_t = step(x_t + W_rec y_{t-1}, s_{t-1})``."""

from __future__ import annotations

from typing import Any, NamedTuple, Tuple

import torch.nn.functional as F
from torch import Tensor

from .._validate import check_like, check_sequence, check_state_type, check_tensor
from ..kernels import registry
from ..kernels.leaky import leaky_sequence
from ..kernels.registry import Call
from . import adaptation, dendrite, leaky, lif
from .scan import Step, scan
from .truncation import cut_every


class RecurrentParams(NamedTuple):
    """``weight [N, N]`` (row ``j`` holds the weights onto neuron ``j``), ``step`` the wrapped
    neuron's step function and ``inner`` its params."""

    weight: Tensor   # [N, N]; row j holds the weights onto neuron j
    step: Step       # the wrapped neuron's step function
    inner: Any       # the wrapped neuron's params


class RecurrentState(NamedTuple):
    """``inner`` the wrapped neuron's state, ``y [B, N]`` its previous output (spikes for
    spiking neurons), fed back through ``weight`` at the next step."""

    inner: Any       # the wrapped neuron's state
    y: Tensor        # its previous output [B, N] (spikes for spiking neurons)


def prepare_inner(x0: Tensor, state, p, tensor_values: bool = True):
    """Checks a wrapped neuron's constants and state for one input step ``x0 [B, N]``, by the
    type of its params (LI, LIF, ALIF, dendritic); returns the state (zeros for None)."""
    if isinstance(p, adaptation.ALIFParams):
        return adaptation.prepare_state(x0, state, p, tensor_values)
    if isinstance(p, lif.LIFParams):
        return lif.prepare_state(x0, state, p, tensor_values)
    if isinstance(p, leaky.LIParams):
        leaky.check_li_params(p, x0, tensor_values)
        if state is None:
            return leaky.initial_state(x0, p)
        leaky.check_state(x0, state, p, state_type=leaky.LIState)
        return state
    if isinstance(p, dendrite.DendriteParams):
        n_k = state.d.shape[1:] if isinstance(state, dendrite.DendriteState) else None
        if n_k is None or len(n_k) != 2 or n_k.numel() != x0.shape[-1]:
            check_state_type(state, dendrite.DendriteState, "state.inner")
            raise ValueError(f"state.inner.d has shape {list(state.d.shape)}, which does not "
                             f"match one input step {list(x0.shape)} (= [B, N*K]); pass the "
                             "state returned by the previous call or None")
        return dendrite.prepare_state(x0.unflatten(-1, tuple(n_k)), state, p, tensor_values)
    return state  # a user's own step: its params are its own business


def check_recurrent(xs: Tensor, state, p: RecurrentParams, tensor_values: bool = True
                    ) -> RecurrentState:
    """``weight [N_in, N]`` fits ``xs [T, B, N_in]``, ``state.y`` is ``[B, N]`` and the wrapped
    neuron's constants and state are valid; returns the state (the inner one zeros for None)."""
    if not isinstance(p, RecurrentParams):
        raise TypeError(f"p must be RecurrentParams(weight, step, inner), got "
                        f"{type(p).__name__}")
    w = check_tensor(p.weight, "weight")
    if w.dim() != 2 or w.shape[0] != xs.shape[-1]:
        raise ValueError(f"weight must be [N_in, N] with N_in = {xs.shape[-1]} (the input "
                         f"features), got shape {list(w.shape)}")
    check_state_type(state, RecurrentState, build="RecurrentState(inner=<the neuron's state>, "
                     "y=torch.zeros(B, N))")
    check_like(state.y, "state.y", (xs.shape[1], w.shape[1]), xs)
    return RecurrentState(prepare_inner(xs[0], state.inner, p.inner, tensor_values), state.y)


def recurrent_step(x: Tensor, state: RecurrentState, p: RecurrentParams
                   ) -> Tuple[Tensor, RecurrentState]:
    """One step, without checks: the wrapped neuron's step on ``x + W y_{t-1}``.

    ``x [B, N]`` (this step's input current), ``state.y [B, N]`` (the previous output) ->
    ``(y [B, N], RecurrentState(inner state, y))``."""
    y, inner = p.step(x + F.linear(state.y, p.weight), state.inner, p.inner)
    return y, RecurrentState(inner, y)


def recurrent_seq(xs: Tensor, state: RecurrentState, p: RecurrentParams,
                  backend: str = "reference") -> Tuple[Tensor, RecurrentState]:
    """``xs [T, B, N]`` (already projected input currents) -> ``(ys [T, B, N], state)``.

    The weight, the state and the wrapped neuron's constants are checked once, before the
    first step (:func:`check_recurrent`). ``backend``: ``"reference"`` (default: the loop over
    ``p.step``) or as for :func:`~spikegrad.functional.lif_seq`; the fused kernels include the
    recurrent product for LIF/IF/LI and ALIF params (the kernel registry decides), any other
    step runs the reference loop under ``auto``."""
    check_sequence(xs, "xs")
    state = check_recurrent(xs, state, p)
    inner, w = state.inner, p.weight
    if isinstance(p.inner, adaptation.ALIFParams):
        if adaptation.resolve_backend(backend, xs, p.inner, recurrent=True) == "numba":
            ys, inner = adaptation.fused_alif_seq(xs, inner, p.inner, w_rec=w, y0=state.y)
            return ys, RecurrentState(inner, ys[-1])
    elif isinstance(p.inner, (lif.LIFParams, leaky.LIParams)):
        if backend != "reference":
            ys, v, i = leaky_sequence(xs, inner.v, inner.i, p.inner,
                                      spiking=isinstance(p.inner, lif.LIFParams),
                                      backend=backend, w_rec=w, y0=state.y, cut=cut_every())
            return ys, RecurrentState(type(inner)(v, i), ys[-1])
    else:
        # another step (dendritic or a user's): the reference loop; a fused backend raises
        registry.choose(backend, Call("step", xs, recurrent=True))
    return scan(recurrent_step, xs, state, p)
