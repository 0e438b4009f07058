"""Neuron modules: thin shells that own parameters and call the functional core."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import functional as F
from .. import surrogate as _surrogate
from .._validate import check_choice, check_positive, check_real, check_sequence, check_size
from ._params import Decay, Positive
from .base import StatefulModule


def _check_v_reset(v_reset) -> float:
    if isinstance(v_reset, bool) or not isinstance(v_reset, (int, float)) \
            or not math.isfinite(v_reset):
        raise ValueError(f"v_reset must be a finite number, got {v_reset!r}")
    return float(v_reset)


class ResetPotential(nn.Module):
    """The reset target ``v_reset + r``: a trainable potential shared by the layer and a
    trainable per-neuron offset ``r`` (initialised at 0). Fixed: the float ``v_reset``."""

    def __init__(self, v_reset: float, shape: tuple, learn: bool):
        super().__init__()
        self.learn = bool(learn)
        if self.learn:
            self.v_reset = nn.Parameter(torch.tensor(float(v_reset)))
            self.offset = nn.Parameter(torch.zeros(shape))
        else:
            self.value = float(v_reset)

    def forward(self):
        return self.v_reset + self.offset if self.learn else self.value


def _reset_options(reset: str, v_reset, learn_reset: bool, features: tuple):
    reset = check_choice(reset, "reset", F.RESET_MODES)
    v_reset = _check_v_reset(v_reset)
    if learn_reset and reset != "to_value":
        raise ValueError(f"learn_reset=True trains the reset potential, which only reset="
                         f"'to_value' uses; got reset={reset!r}. Pass reset='to_value'")
    return reset, ResetPotential(v_reset, features, learn_reset)


class LeakyNeuron(StatefulModule):
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

    def cuts_gradients(self) -> bool:
        # lif_seq / li_seq cut the adjoint themselves: the fused kernels and the reference loop
        return type(self) in (LI, LIF, IF)

    def _name(self) -> str:
        return f"{type(self).__name__}({', '.join(map(str, self.features))})"

    def initial_state(self, x: Tensor):
        """Zero state for one input step ``x [B, *features]``."""
        return F.leaky.initial_state(x, self.params(), self.state_type)


class LI(LeakyNeuron):
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
    step = staticmethod(F.leaky.li_update)

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
        """Low-pass filter a sequence: ``v_t = a v_{t-1} + g i_t`` at every step.

        Args:
            xs: input currents ``[T, B, *n]`` (e.g. a :class:`Linear`'s output), in the
                membrane's units per step (times ``g = 1 - a`` with ``scale_input``; through
                the synaptic current ``i_t = a_syn i_{t-1} + x_t`` with ``tau_syn``).
            state: :class:`~spikegrad.functional.LIState` to continue from (e.g. the one the
                previous chunk returned), or None for a zero membrane and current.

        Returns:
            ``(vs, state)``: the membrane at every step ``vs [T, B, *n]`` (the output: LI
            does not spike, there is no threshold or reset) and the final
            :class:`~spikegrad.functional.LIState` ``(v [B, *n], i [B, *n] or None)``.
        """
        return F.li_seq(self._check(xs), state, self.params(), backend=self.backend)


class LIF(LeakyNeuron):
    """Leaky integrate-and-fire neurons (voltage-based, or current-based with ``tau_syn``).

    Args:
        n: number of neurons (or a feature shape tuple, e.g. ``(C, H, W)``).
        tau_mem: membrane time constant, same unit as ``dt`` (default 20 ms).
        tau_syn: synaptic-current time constant (current-based LIF), or None.
        dt: time step (default 1 ms).
        threshold: firing threshold (> 0).
        reset: ``"subtract"`` (default), ``"to_value"`` (to ``v_reset``) or ``"none"``.
        v_reset: reset potential for ``reset="to_value"``.
        learn_reset: train the reset target ``v_reset + r`` (a layer-wide ``v_reset`` and a
            per-neuron offset ``r``, initialised at 0); needs ``reset="to_value"``. Runs on
            every backend (the fused kernels take a per-neuron reset potential).
        detach_reset: no gradient through the reset (default True).
        surrogate: registered name or :class:`spikegrad.surrogate.Surrogate`.
        beta: surrogate slope; None keeps the surrogate's own.
        learn_tau, learn_threshold: train per-neuron time constants / thresholds.
        scale_input: multiply the input by ``1 - a_mem``.
        v_init: initial membrane as a fraction of the threshold, used where ``state`` is
            None: ``v_0 = v_init * threshold`` (a finite number; default 0, the zero state).
            0.5 starts half way to the threshold, the shift of QCFS conversion
            (:mod:`spikegrad.convert`). A state passed in is used as it is.
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
    step = staticmethod(F.lif.lif_update)
    v_init: float = 0.0  # class default: modules pickled before the option existed start at 0

    def __init__(self, n, *, tau_mem: float = 20e-3, tau_syn: Optional[float] = None,
                 dt: float = 1e-3, threshold: float = 1.0, reset: str = "subtract",
                 v_reset: float = 0.0, detach_reset: bool = True,
                 surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta: Optional[float] = None, learn_tau: bool = False,
                 learn_threshold: bool = False, scale_input: bool = False,
                 learn_reset: bool = False, v_init: float = 0.0, backend: str = "auto"):
        super().__init__(n, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, learn_tau=learn_tau,
                         scale_input=scale_input)
        self.threshold = Positive(threshold, self.features, learn_threshold, "threshold")
        self.v_init = float(check_real(v_init, "v_init", hint="the initial membrane as a "
                                       "fraction of the threshold, e.g. 0.5"))
        self.reset, self.reset_potential = _reset_options(reset, v_reset, learn_reset,
                                                          self.features)
        self.detach_reset = bool(detach_reset)
        self.surrogate = _surrogate.get(surrogate, beta)
        self.backend = check_choice(backend, "backend", F.BACKENDS)

    def params(self) -> F.LIFParams:
        return F.LIFParams(threshold=self.threshold(), v_reset=self.reset_potential(),
                           reset=self.reset,
                           detach_reset=self.detach_reset, surrogate=self.surrogate,
                           **self._leak())

    @property
    def v_reset(self):
        """The reset target (a float, or the tensor ``v_reset + r`` when trained)."""
        return self.reset_potential()

    def initial_state(self, x: Tensor) -> F.LIFState:
        """The state that ``state=None`` stands for, for one input step ``x [B, *features]``:
        membrane ``v_init * threshold``, synaptic current zero."""
        state = super().initial_state(x)
        if self.v_init == 0.0:
            return state
        return state._replace(v=state.v + self.v_init * self.threshold())

    def _start(self, state: Optional[F.LIFState], x0: Tensor) -> Optional[F.LIFState]:
        # None stays None for the zero start (the functional core builds zeros itself);
        # only a shifted start needs an explicit state
        if state is None and self.v_init != 0.0:
            return self.initial_state(x0)
        return state

    def forward(self, xs: Tensor, state: Optional[F.LIFState] = None
                ) -> Tuple[Tensor, F.LIFState]:
        """Run the neurons over a sequence: integrate, fire, reset at every step (the
        equations of :mod:`spikegrad.functional.lif`; IF is the case ``a_mem = 1``).

        Args:
            xs: input currents ``[T, B, *n]`` (e.g. a :class:`Linear`'s output), added to
                the membrane each step (times ``1 - a_mem`` with ``scale_input``; through the
                synaptic current ``i_t = a_syn i_{t-1} + x_t`` with ``tau_syn``). The membrane
                has the threshold's units (default threshold 1).
            state: :class:`~spikegrad.functional.LIFState` to continue from (e.g. the one the
                previous TBPTT chunk returned, detached), or None: membrane
                ``v_init * threshold`` (0 by default), synaptic current 0.

        Returns:
            ``(zs, state)``: spikes ``zs [T, B, *n]`` (0 or 1, in the dtype of ``xs``; the
            backward pass uses the surrogate derivative) and the
            :class:`~spikegrad.functional.LIFState` after the last step: membrane after reset
            ``v [B, *n]`` and synaptic current ``i [B, *n]`` (None without ``tau_syn``).
        """
        xs = self._check(xs)
        return F.lif_seq(xs, self._start(state, xs[0]), self.params(), backend=self.backend)

    def trace(self, xs: Tensor, state: Optional[F.LIFState] = None
              ) -> Tuple[Tensor, F.LIFState]:
        """``(zs, states)`` with every step's state stacked (membrane traces for plots)."""
        xs = self._check(xs)
        return F.lif_trace(xs, self._start(state, xs[0]), self.params())

    def forward_projected(self, xs: Tensor, weight: Tensor, bias: Optional[Tensor],
                          state: Optional[F.LIFState] = None, linear_backend: str = "auto",
                          keep: float = 0.0) -> Optional[Tuple[Tensor, F.LIFState]]:
        """``self(F.linear(xs, weight, bias), state)`` fused (:mod:`spikegrad.kernels.projected`):
        the membrane of the leading ``keep`` fraction of the sequence is kept (written over
        the input current), the rest is run chunk by chunk in time and recomputed in backward;
        or None where the fused path does not apply (the kernel registry decides; then call
        the two layers).
        ``xs [T, B, in]``; ``linear_backend`` as :class:`Linear`'s."""
        if type(self) is not LIF or len(self.features) != 1:
            return None
        if weight.dim() != 2 or weight.shape[0] != self.features[0] or xs.dim() != 3:
            return None
        state = self._start(state, xs.new_zeros(xs.shape[1], *self.features))
        return F.projected_lif_seq(xs, weight, bias, state, self.params(), self.backend,
                                   linear_backend, keep)

    def extra_repr(self) -> str:
        shift = f", v_init={self.v_init:g}" if self.v_init else ""
        return (f"{self.features}, reset={self.reset!r}, surrogate={self.surrogate.name}"
                f"(beta={self.surrogate.beta:g}){shift}")


class IF(LIF):
    """Integrate-and-fire: an LIF without leak (``a_mem = 1``). Same arguments as LIF minus
    the membrane time constant."""

    def __init__(self, n, *, tau_syn: Optional[float] = None, dt: float = 1e-3,
                 threshold: float = 1.0, reset: str = "subtract", v_reset: float = 0.0,
                 detach_reset: bool = True,
                 surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta: Optional[float] = None, learn_threshold: bool = False,
                 v_init: float = 0.0, backend: str = "auto"):
        super().__init__(n, tau_mem=math.inf, tau_syn=tau_syn, dt=dt, threshold=threshold,
                         reset=reset, v_reset=v_reset, detach_reset=detach_reset,
                         surrogate=surrogate, beta=beta, learn_threshold=learn_threshold,
                         v_init=v_init, backend=backend)


class AdaptationStrength(nn.Module):
    """Per-neuron ``beta_a >= 0``; trained as ``softplus(rho)`` where it starts > 0. Neurons
    that start at 0 stay plain LIF (a fixed mask), so one layer can mix LIF and ALIF."""

    def __init__(self, beta, shape: tuple, learn: bool):
        super().__init__()
        if isinstance(beta, bool) or not isinstance(beta, (int, float, list, tuple, Tensor)):
            raise TypeError(f"beta_adapt must be a number >= 0 or a per-neuron sequence / "
                            f"tensor of them, got {type(beta).__name__} {beta!r}")
        try:
            beta = torch.as_tensor(beta, dtype=torch.float64).expand(shape).clone()
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"beta_adapt must be a number or one value per neuron (shape "
                             f"{tuple(shape)}), got {beta!r}: {e}") from None
        if bool((beta < 0).any()) or not bool(torch.isfinite(beta).all()):
            raise ValueError(f"beta_adapt must be finite and >= 0, got "
                             f"{beta.flatten()[:5].tolist()}...")
        self.learn = bool(learn)
        self.register_buffer("mask", (beta > 0).to(torch.get_default_dtype()))
        if self.learn:
            b = beta.clamp_min(1e-6)  # softplus^-1 needs > 0; masked neurons ignore it
            self.rho = nn.Parameter((b + torch.log(-torch.expm1(-b))).to(
                torch.get_default_dtype()))
        else:
            # per-neuron, so in the default dtype: a float64 [N] buffer would upcast the layer
            self.register_buffer("value", beta.to(torch.get_default_dtype()))

    def forward(self) -> Tensor:
        if self.learn:
            return nn.functional.softplus(self.rho) * self.mask
        return self.value


class ALIF(LIF):
    """Adaptive LIF (Bellec et al. 2018/2020) with optional refractoriness; equations in
    :mod:`spikegrad.functional.adaptation`. ``beta_adapt = 0`` is an LIF with refractoriness.

    Args (beyond :class:`LIF`'s):
        tau_adapt: adaptation time constant ``tau_a`` (same unit as ``dt``; default 2 s).
        beta_adapt: adaptation strength ``beta_a`` (>= 0): a float or a per-neuron sequence /
            tensor; neurons with 0 are plain LIF and stay so when trained.
        learn_adapt: train per-neuron ``tau_a`` (sigmoid map of ``rho``) and ``beta_a``
            (softplus, where it starts > 0).
        t_ref: absolute refractory period (same unit as ``dt``): ``n_ref = round(t_ref/dt)``
            steps (half up; at least 1 when ``t_ref > 0``).
        ref_strength, tau_ref: relative refractoriness, a decaying hyperpolarising current
            ``w_ref`` with time constant ``tau_ref`` after each spike (0 switches it off).
        learn_refractory: train per-neuron ``w_ref`` (softplus) and ``tau_ref``.
        backend: ``"auto"`` (the fused numba kernel where it applies: everywhere but
            trained constants of a refractory ALIF; else the reference loop),
            ``"reference"`` or ``"numba"`` (raises ValueError where it does not apply); see
            :mod:`spikegrad.functional.adaptation`. ``"torch"`` raises ValueError.

    Shapes: ``xs [T, B, *n] -> (zs [T, B, *n], ALIFState)``.

    Example:
        >>> import torch, spikegrad as sg
        >>> alif = sg.nn.ALIF(4, tau_adapt=2.0, beta_adapt=[0, 0, 1.8, 1.8], t_ref=5e-3)
        >>> zs, state = alif(torch.rand(10, 2, 4))
        >>> zs.shape, state.a.shape, state.ref.shape
        (torch.Size([10, 2, 4]), torch.Size([2, 4]), torch.Size([2, 4]))
    """

    state_type = F.ALIFState
    step = staticmethod(F.adaptation.alif_update)

    def __init__(self, n, *, tau_mem: float = 20e-3, tau_syn: Optional[float] = None,
                 dt: float = 1e-3, threshold: float = 1.0, reset: str = "subtract",
                 v_reset: float = 0.0, detach_reset: bool = True,
                 surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta: Optional[float] = None, tau_adapt: float = 2.0, beta_adapt=1.8,
                 t_ref: float = 0.0, ref_strength: float = 0.0, tau_ref: float = 5e-3,
                 learn_tau: bool = False, learn_threshold: bool = False,
                 learn_adapt: bool = False, learn_refractory: bool = False,
                 learn_reset: bool = False, scale_input: bool = False,
                 backend: str = "auto"):
        super().__init__(n, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, threshold=threshold,
                         reset=reset, v_reset=v_reset, detach_reset=detach_reset,
                         surrogate=surrogate, beta=beta, learn_tau=learn_tau,
                         learn_threshold=learn_threshold, scale_input=scale_input,
                         learn_reset=learn_reset, backend="reference")
        self.backend = F.adaptation.check_backend(backend)
        self.decay_adapt = Decay(tau_adapt, dt, self.features, learn_adapt, "tau_adapt")
        self.beta_adapt = AdaptationStrength(beta_adapt, self.features, learn_adapt)
        if isinstance(t_ref, bool) or not isinstance(t_ref, (int, float)) or t_ref < 0 \
                or not math.isfinite(t_ref):
            raise ValueError(f"t_ref must be a finite duration >= 0 (same unit as dt), got "
                             f"{t_ref!r}")
        # half-up rounding, and at least one step for any positive period (a 5 ms period at
        # dt = 10 ms blocks the next step rather than vanishing)
        self.n_ref = max(1, int(math.floor(t_ref / dt + 0.5))) if t_ref > 0 else 0
        if isinstance(ref_strength, bool) or not isinstance(ref_strength, (int, float)) \
                or ref_strength < 0 or not math.isfinite(ref_strength):
            raise ValueError(f"ref_strength must be a finite number >= 0 (0 switches the "
                             f"relative refractory current off), got {ref_strength!r}")
        if learn_refractory and ref_strength == 0:
            raise ValueError("learn_refractory=True trains the relative refractory current, "
                             "which ref_strength=0 switches off; pass ref_strength > 0")
        # checked even when ref_strength = 0 leaves it unused: a bad value is a mistake
        check_positive(tau_ref, "tau_ref", allow_inf=not learn_refractory)
        self.ref_strength = (Positive(ref_strength, self.features, learn_refractory,
                                      "ref_strength") if ref_strength > 0 else None)
        self.decay_ref = (Decay(tau_ref, dt, self.features, learn_refractory, "tau_ref")
                          if ref_strength > 0 else None)

    def params(self) -> F.ALIFParams:
        refr = F.RefractoryParams(
            n_ref=self.n_ref,
            decay=self.decay_ref() if self.decay_ref is not None else 0.0,
            strength=self.ref_strength() if self.ref_strength is not None else 0.0)
        return F.ALIFParams(super().params(), decay_adapt=self.decay_adapt(),
                            beta_adapt=self.beta_adapt(), refractory=refr)

    def initial_state(self, x: Tensor) -> F.ALIFState:
        return F.adaptation.initial_state(x, self.params())

    def forward(self, xs: Tensor, state: Optional[F.ALIFState] = None
                ) -> Tuple[Tensor, F.ALIFState]:
        """Run the adaptive neurons over a sequence (the step of
        :mod:`spikegrad.functional.adaptation`: integrate, refractory clamp, fire against the
        adaptive threshold ``theta + beta_a a_{t-1}``, reset, update the traces).

        Args:
            xs: input currents ``[T, B, *n]``, in the threshold's units per step, as for
                :class:`LIF`.
            state: :class:`~spikegrad.functional.ALIFState` to continue from, or None for
                zeros (membrane, adaptation trace, current, refractory counters).

        Returns:
            ``(zs, state)``: spikes ``zs [T, B, *n]`` (0 or 1, dtype of ``xs``; surrogate
            backward) and the :class:`~spikegrad.functional.ALIFState` after the last step,
            every field ``[B, *n]``: membrane ``v``, adaptation trace ``a``, current ``i``
            (None without ``tau_syn``), refractory steps left ``ref`` (None when ``t_ref =
            0``), relative refractory trace ``q`` (None when ``ref_strength = 0``).
        """
        return F.alif_seq(self._check(xs), state, self.params(), backend=self.backend)

    def trace(self, xs: Tensor, state: Optional[F.ALIFState] = None
              ) -> Tuple[Tensor, F.ALIFState]:
        """``(zs, states)`` with every step's state stacked; the threshold compared at step t
        is ``theta + beta_a * a_{t-1}``."""
        return F.alif_trace(self._check(xs), state, self.params())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_ref={self.n_ref}"
