"""Recurrence as a wrapper around any neuron, not a copy of each neuron class."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as F
from .._validate import check_real
from .base import StatefulModule


class Recurrent(StatefulModule):
    """Adds recurrent weights to a neuron: its input becomes ``x_t + W_rec y_{t-1}``.

    Args:
        neuron: a neuron module (LIF, IF, LI, ...) with a 1-D feature shape ``(N,)``.
        autapses: allow self-connections (the diagonal of ``W_rec``).
        init_gain: ``W_rec ~ U(-g/sqrt(N), g/sqrt(N))``, a finite ``g >= 0``.

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
        if getattr(neuron, "v_init", 0.0):
            raise ValueError(f"Recurrent does not apply the neuron's v_init="
                             f"{neuron.v_init:g} (it builds its own start state); pass the "
                             "initial state explicitly, or use v_init=0")
        self.neuron = neuron
        n = neuron.features[0]
        init_gain = float(check_real(init_gain, "init_gain", low=0.0,
                                     hint="W_rec ~ U(-g/sqrt(N), g/sqrt(N))"))
        bound = init_gain / math.sqrt(n)
        self.weight = nn.Parameter(torch.empty(n, n).uniform_(-bound, bound))
        self.autapses = bool(autapses)
        if not self.autapses:
            self.register_buffer("mask", 1.0 - torch.eye(n))

    def cuts_gradients(self) -> bool:
        # recurrent_seq cuts LIF/IF/LI sequences itself (the kernels or the reference loop)
        return self.neuron.cuts_gradients()

    def recurrent_weight(self) -> Tensor:
        return self.weight if self.autapses else self.weight * self.mask

    def forward(self, xs: Tensor, state: Optional[F.RecurrentState] = None
                ) -> Tuple[Tensor, F.RecurrentState]:
        """Run the recurrent layer: at step ``t`` the neuron gets ``x_t + W_rec y_{t-1}``.

        Args:
            xs: input currents ``[T, B, N]`` (already projected, e.g. by a :class:`Linear`),
                in the neuron's units, as for the wrapped neuron.
            state: :class:`~spikegrad.functional.RecurrentState` ``(inner, y)`` to continue
                from: the neuron's own state and its previous output ``y [B, N]``; or None:
                the neuron's zero state and ``y = 0``.

        Returns:
            ``(ys, state)``: the neuron's output at every step ``ys [T, B, N]`` (spikes for
            LIF/IF/ALIF, the membrane for LI) and the final
            :class:`~spikegrad.functional.RecurrentState` (the neuron's state, ``y =
            ys[-1]``). Runs on the neuron's ``backend``: the fused kernels include the
            recurrent product for LIF/IF/LI and fixed-constant ALIF.
        """
        self.neuron._check(xs)
        if state is None:
            state = F.RecurrentState(None, torch.zeros_like(xs[0]))  # inner None: zeros
        rp = F.RecurrentParams(self.recurrent_weight(), type(self.neuron).step,
                               self.neuron.params())
        return F.recurrent_seq(xs, state, rp, getattr(self.neuron, "backend", "reference"))

    def forward_projected(self, xs: Tensor, weight: Tensor, bias: Optional[Tensor],
                          state: Optional[F.RecurrentState] = None,
                          linear_backend: str = "auto", keep: float = 0.0
                          ) -> Optional[Tuple[Tensor, F.RecurrentState]]:
        """``self(F.linear(xs, weight, bias), state)`` fused chunk by chunk in time, the
        membrane kept for the leading ``keep`` fraction of the chunks and recomputed in
        backward for the others (:mod:`spikegrad.kernels.projected`), or None where that does
        not apply (a neuron other than LIF, trained neuron constants, a state that needs a
        gradient...). ``xs [T, B, in]``."""
        from .neurons import LIF
        neuron = self.neuron
        if type(neuron) is not LIF or len(neuron.features) != 1:
            return None
        if weight.dim() != 2 or weight.shape[0] != neuron.features[0]:
            return None
        return F.projected_recurrent_lif_seq(xs, weight, bias, self.recurrent_weight(), state,
                                             neuron.params(), neuron.backend, linear_backend,
                                             keep)
