"""Recurrence as a wrapper around any neuron, not a copy of each neuron class."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as F
from .base import StatefulModule


class Recurrent(StatefulModule):
    """Adds recurrent weights to a neuron: its input becomes ``x_t + W_rec y_{t-1}``.

    Args:
        neuron: a neuron module (LIF, IF, LI, ...) with a 1-D feature shape ``(N,)``.
        autapses: allow self-connections (the diagonal of ``W_rec``).
        init_gain: ``W_rec ~ U(-g/sqrt(N), g/sqrt(N))``.

    Shapes: ``xs [T, B, N]`` (input currents, e.g. from a Linear) ``-> (ys [T, B, N], state)``
    with ``state = RecurrentState(neuron state, y [B, N])``.
    """

    def __init__(self, neuron: StatefulModule, *, autapses: bool = True,
                 init_gain: float = 1.0):
        super().__init__()
        if not (isinstance(neuron, StatefulModule) and hasattr(type(neuron), "step")):
            raise TypeError("Recurrent wraps a spikegrad neuron module (LIF, IF, LI, ...), "
                            f"got {type(neuron).__name__}")
        if len(neuron.features) != 1:
            raise ValueError("Recurrent needs neurons with a 1-D feature shape (N,), got "
                             f"{neuron.features}; flatten the features first")
        self.neuron = neuron
        n = neuron.features[0]
        bound = init_gain / math.sqrt(n)
        self.weight = nn.Parameter(torch.empty(n, n).uniform_(-bound, bound))
        self.autapses = bool(autapses)
        if not self.autapses:
            self.register_buffer("mask", 1.0 - torch.eye(n))

    def recurrent_weight(self) -> Tensor:
        return self.weight if self.autapses else self.weight * self.mask

    def forward(self, xs: Tensor, state: Optional[F.RecurrentState] = None
                ) -> Tuple[Tensor, F.RecurrentState]:
        self.neuron._check(xs)
        if state is None:
            state = F.RecurrentState(self.neuron.initial_state(xs[0]), torch.zeros_like(xs[0]))
        elif not isinstance(state, F.RecurrentState):
            raise TypeError("state must be the RecurrentState returned by a previous call, "
                            f"or None; got {type(state).__name__}")
        w = self.recurrent_weight()
        params = self.neuron.params()
        backend = getattr(self.neuron, "backend", "reference")
        if isinstance(params, F.ALIFParams):
            if F.adaptation.resolve_backend(backend, xs, params) == "numba":
                ys, inner = F.adaptation.fused_alif_seq(xs, state.inner, params, w_rec=w,
                                                        y0=state.y)
                return ys, F.RecurrentState(inner, ys[-1])
        elif backend != "reference":
            # the leaky family has a fused path that includes the recurrent product
            from ..kernels.leaky import leaky_sequence
            inner = state.inner
            ys, v, i = leaky_sequence(xs, inner.v, inner.i, params,
                                      spiking=isinstance(params, F.LIFParams),
                                      backend=backend, w_rec=w, y0=state.y)
            return ys, F.RecurrentState(type(inner)(v, i), ys[-1])
        return F.recurrent_seq(xs, state, F.RecurrentParams(w, type(self.neuron).step, params))
