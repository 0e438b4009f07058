"""Recurrence around any neuron step: ``y_t, s_t = step(x_t + W_rec y_{t-1}, s_{t-1})``."""

from __future__ import annotations

from typing import Any, NamedTuple, Tuple

import torch.nn.functional as F
from torch import Tensor

from .scan import Step, scan


class RecurrentParams(NamedTuple):
    weight: Tensor   # [N, N]; row j holds the weights onto neuron j
    step: Step       # the wrapped neuron's step function
    inner: Any       # the wrapped neuron's params


class RecurrentState(NamedTuple):
    inner: Any       # the wrapped neuron's state
    y: Tensor        # its previous output [B, N] (spikes for spiking neurons)


def recurrent_step(x: Tensor, state: RecurrentState, p: RecurrentParams
                   ) -> Tuple[Tensor, RecurrentState]:
    y, inner = p.step(x + F.linear(state.y, p.weight), state.inner, p.inner)
    return y, RecurrentState(inner, y)


def recurrent_seq(xs: Tensor, state: RecurrentState, p: RecurrentParams
                  ) -> Tuple[Tensor, RecurrentState]:
    """``xs [T, B, N]`` (already projected input currents) -> ``(ys [T, B, N], state)``."""
    return scan(recurrent_step, xs, state, p)
