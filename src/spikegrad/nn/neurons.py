"""Neuron modules: thin shells that own parameters and call the functional core."""

from __future__ import annotations

import math
from typing import Optional, Tuple

from torch import Tensor

from .. import functional as F
from .. import surrogate as _surrogate
from .._validate import check_choice, check_sequence, check_size
from ._params import Decay, Positive
from .base import StatefulModule


class _Leaky(StatefulModule):
    """Shared by LI and LIF: feature shape and the (trainable) membrane/synaptic decays."""

    def __init__(self, n, *, tau_mem: float, tau_syn: Optional[float], dt: float,
                 learn_tau: bool, scale_input: bool):
        super().__init__()
        self.features = check_size(n, "n")
        self.decay_mem = Decay(tau_mem, dt, self.features, learn_tau, "tau_mem")
        self.decay_syn = (None if tau_syn is None
                          else Decay(tau_syn, dt, self.features, learn_tau, "tau_syn"))
        self.scale_input = bool(scale_input)

    def _leak(self) -> dict:
        return dict(decay_mem=self.decay_mem(),
                    decay_syn=None if self.decay_syn is None else self.decay_syn(),
                    scale_input=self.scale_input)

    def _check(self, xs: Tensor) -> Tensor:
        return check_sequence(xs, "xs", self.features, owner=self._name())

    def _name(self) -> str:
        return f"{type(self).__name__}({', '.join(map(str, self.features))})"

    def initial_state(self, x: Tensor):
        """Zero state for one input step ``x [B, *features]``."""
        return F.leaky.initial_state(x, self.params(), self.state_type)


class LI(_Leaky):
    """Leaky integrator (non-spiking): ``v_t = a v_{t-1} + x_t``; a low-pass readout.

    Args:
        n: number of neurons (or a feature shape tuple).
        tau_mem: membrane time constant, same unit as ``dt`` (default 20 ms).
        tau_syn: synaptic time constant for a current-based filter, or None.
        dt: time step.
        learn_tau: train per-neuron time constants (kept in range by a sigmoid map).
        scale_input: multiply the input by ``1 - a`` (unit DC gain).
        backend: see :func:`spikegrad.functional.li_seq`.

    Shapes: ``xs [T, B, n] -> (vs [T, B, n], LIState)``.
    """

    state_type = F.LIState
    step = staticmethod(F.leaky._li_step)

    def __init__(self, n, *, tau_mem: float = 20e-3, tau_syn: Optional[float] = None,
                 dt: float = 1e-3, learn_tau: bool = False, scale_input: bool = False,
                 backend: str = "auto"):
        super().__init__(n, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, learn_tau=learn_tau,
                         scale_input=scale_input)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def params(self) -> F.LIParams:
        return F.LIParams(**self._leak())

    def forward(self, xs: Tensor, state: Optional[F.LIState] = None
                ) -> Tuple[Tensor, F.LIState]:
        return F.li_seq(self._check(xs), state, self.params(), backend=self.backend)


class LIF(_Leaky):
    """Leaky integrate-and-fire neurons (voltage-based, or current-based with ``tau_syn``).

    Args:
        n: number of neurons (or a feature shape tuple, e.g. ``(C, H, W)``).
        tau_mem: membrane time constant, same unit as ``dt`` (default 20 ms).
        tau_syn: synaptic-current time constant (current-based LIF), or None.
        dt: time step (default 1 ms).
        threshold: firing threshold (> 0).
        reset: ``"subtract"`` (default), ``"to_value"`` (to ``v_reset``) or ``"none"``.
        v_reset: reset potential for ``reset="to_value"``.
        detach_reset: no gradient through the reset (default True).
        surrogate: registered name or :class:`spikegrad.surrogate.Surrogate`.
        beta: surrogate slope; None keeps the surrogate's own.
        learn_tau, learn_threshold: train per-neuron time constants / thresholds.
        scale_input: multiply the input by ``1 - a_mem``.
        backend: see :func:`spikegrad.functional.lif_seq`.

    Shapes: ``xs [T, B, *n] -> (zs [T, B, *n], LIFState)``.

    Example:
        >>> import torch, spikegrad as sg
        >>> lif = sg.nn.LIF(3, tau_mem=10e-3, dt=1e-3)
        >>> zs, state = lif(torch.rand(5, 2, 3))
        >>> zs.shape, state.v.shape
        (torch.Size([5, 2, 3]), torch.Size([2, 3]))
    """

    state_type = F.LIFState
    step = staticmethod(F.lif._lif_step)

    def __init__(self, n, *, tau_mem: float = 20e-3, tau_syn: Optional[float] = None,
                 dt: float = 1e-3, threshold: float = 1.0, reset: str = "subtract",
                 v_reset: float = 0.0, detach_reset: bool = True,
                 surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta: Optional[float] = None, learn_tau: bool = False,
                 learn_threshold: bool = False, scale_input: bool = False,
                 backend: str = "auto"):
        super().__init__(n, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, learn_tau=learn_tau,
                         scale_input=scale_input)
        self.threshold = Positive(threshold, self.features, learn_threshold, "threshold")
        self.reset = check_choice(reset, "reset", F.RESET_MODES)
        if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)) \
                or not math.isfinite(v_reset):
            raise ValueError(f"v_reset must be a finite number, got {v_reset!r}")
        self.v_reset = float(v_reset)
        self.detach_reset = bool(detach_reset)
        self.surrogate = _surrogate.get(surrogate, beta)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def params(self) -> F.LIFParams:
        return F.LIFParams(threshold=self.threshold(), v_reset=self.v_reset, reset=self.reset,
                           detach_reset=self.detach_reset, surrogate=self.surrogate,
                           **self._leak())

    def forward(self, xs: Tensor, state: Optional[F.LIFState] = None
                ) -> Tuple[Tensor, F.LIFState]:
        return F.lif_seq(self._check(xs), state, self.params(), backend=self.backend)

    def trace(self, xs: Tensor, state: Optional[F.LIFState] = None
              ) -> Tuple[Tensor, F.LIFState]:
        """``(zs, states)`` with every step's state stacked (membrane traces for plots)."""
        return F.lif_trace(self._check(xs), state, self.params())

    def extra_repr(self) -> str:
        return (f"{self.features}, reset={self.reset!r}, surrogate={self.surrogate.name}"
                f"(beta={self.surrogate.beta:g})")


class IF(LIF):
    """Integrate-and-fire: an LIF without leak (``a_mem = 1``). Same arguments as LIF minus
    the membrane time constant."""

    def __init__(self, n, *, tau_syn: Optional[float] = None, dt: float = 1e-3,
                 threshold: float = 1.0, reset: str = "subtract", v_reset: float = 0.0,
                 detach_reset: bool = True,
                 surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta: Optional[float] = None, learn_threshold: bool = False,
                 backend: str = "auto"):
        super().__init__(n, tau_mem=math.inf, tau_syn=tau_syn, dt=dt, threshold=threshold,
                         reset=reset, v_reset=v_reset, detach_reset=detach_reset,
                         surrogate=surrogate, beta=beta, learn_threshold=learn_threshold,
                         backend=backend)
