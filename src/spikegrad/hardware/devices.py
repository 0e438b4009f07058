"""Pulsed update models of one crossbar cross-point, after IBM aihwkit's documented equations.

Units: the device state ``w`` is a weight in aihwkit's normalised units, between per-device
bounds ``b_min < 0 < b_max``; :class:`~spikegrad.hardware.crossbar.CrossbarLinear` maps it to a
differential pair of conductances in microsiemens.

Every model is a frozen dataclass that (1) draws its hidden per-device parameters once
(:meth:`PulsedDevice.draw`) and (2) gives the size of one pulse at state ``w``
(:meth:`~PulsedDevice.step_up`, :meth:`~PulsedDevice.step_down`: non-negative magnitudes).
:func:`spikegrad.hardware.pulse.pulse` is the one function that applies pulses: it adds the
cycle-to-cycle noise and clips to the bounds, so every update scheme goes through the same
device physics.

Device-to-device variation, common to all models (aihwkit ``PulsedDevice``; Rasch et al.,
"A flexible and fast PyTorch toolkit for simulating training and inference on analog
crossbar arrays", AICAS 2021), drawn once per cross-point ``ij`` with standard Gaussians xi::

    dw_ij^d  = dw_min (1 + d beta_ij + dw_min_dtod xi)        d = +1 (up), -1 (down)
    beta_ij  = up_down + up_down_dtod xi'                      (up/down asymmetry)
    b_max_ij = w_max (1 + w_max_dtod xi''),   b_min_ij = w_min (1 + w_min_dtod xi''')

and, per pulse, cycle-to-cycle noise multiplies the step by ``(1 + dw_min_std xi)`` (a fresh xi
per pulse and device), then ``w <- clip(w, b_min_ij, b_max_ij)``.

Defaults differ from aihwkit's on purpose: all variation and noise is 0 here (aihwkit uses
``dw_min_dtod = dw_min_std = w_max_dtod = w_min_dtod = 0.3``), so a bare config is exactly
the equation in its docstring; pass aihwkit's values to reproduce its presets.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from .._validate import check_int, check_real

__all__ = ["DeviceParams", "PulsedDevice", "ConstantStep", "SoftBounds", "LinearStep",
           "PowStep"]


class DeviceParams(NamedTuple):
    """Hidden per-device parameters, drawn once; every field has the array's shape
    ``[out, in]``, in weight units (``gamma_*`` are dimensionless shape parameters; models that
    have none hold zeros)."""

    dw_up: Tensor      # nominal size of one up pulse (>= 0)
    dw_down: Tensor    # nominal size of one down pulse (>= 0)
    b_min: Tensor      # lower bound (<= 0)
    b_max: Tensor      # upper bound (>= 0)
    gamma_up: Tensor
    gamma_down: Tensor


def _normal(shape: Sequence[int], generator: torch.Generator) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64)


@dataclass(frozen=True, kw_only=True)
class PulsedDevice(ABC):
    """Common parameters of every pulsed device (aihwkit ``PulsedDevice``).

    Args:
        dw_min: mean step of one pulse, in weight units (aihwkit's ``dw_min``).
        w_max, w_min: mean bounds of the weight (``w_min`` defaults to ``-w_max``); the pair
            needs ``w_min < 0 < w_max`` so that ``w = 0`` is ``G+ = G-``.
        up_down: systematic up/down asymmetry ``beta``: up steps are ``dw_min (1 + beta)``,
            down steps ``dw_min (1 - beta)``; in (-1, 1).
        dw_min_dtod, up_down_dtod, w_max_dtod, w_min_dtod: device-to-device standard
            deviations (relative to ``dw_min``, ``dw_min``, ``w_max``, ``w_min``), drawn once.
        dw_min_std: cycle-to-cycle standard deviation of each pulse, relative to its size.
        read_noise: standard deviation of the weight noise of each read (each MVM draws a fresh
            one), in weight units: ``y = (W + read_noise xi) x`` (aihwkit's forward ``w_noise``).
    """

    dw_min: float = 0.001
    w_max: float = 1.0
    w_min: Optional[float] = None
    up_down: float = 0.0
    dw_min_dtod: float = 0.0
    up_down_dtod: float = 0.0
    w_max_dtod: float = 0.0
    w_min_dtod: float = 0.0
    dw_min_std: float = 0.0
    read_noise: float = 0.0

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_real(self.w_max, f"{name}: w_max", low=0.0, low_open=True)
        if self.w_min is None:
            object.__setattr__(self, "w_min", -float(self.w_max))
        check_real(self.w_min, f"{name}: w_min", high=0.0, high_open=True,
                   hint="the differential pair needs w_min < 0 < w_max")
        check_real(self.dw_min, f"{name}: dw_min", low=0.0, high=self.w_max - self.w_min,
                   low_open=True,
                   hint="a pulse must be a positive fraction of the range w_max - w_min")
        check_real(self.up_down, f"{name}: up_down", low=-1.0, high=1.0, low_open=True,
                   high_open=True, hint="|up_down| >= 1 makes one direction's step vanish")
        for field in ("dw_min_dtod", "up_down_dtod", "w_max_dtod", "w_min_dtod",
                      "dw_min_std", "read_noise"):
            check_real(getattr(self, field), f"{name}: {field}", low=0.0,
                       hint="a standard deviation is >= 0")

    @property
    def granularity(self) -> float:
        """The nominal step ``dw_min`` that an update controller counts pulses in."""
        return float(self.dw_min)

    def draw(self, shape: Sequence[int], generator: torch.Generator,
             dtype: torch.dtype = torch.float32) -> DeviceParams:
        """Draw the hidden parameters of an array of ``shape`` devices once (fixed order of
        draws, so one seed gives one array). Steps are clamped at 0 and the bounds at 0 from
        their side (aihwkit swaps inconsistent values instead)."""
        xi_dw, xi_beta = _normal(shape, generator), _normal(shape, generator)
        xi_max, xi_min = _normal(shape, generator), _normal(shape, generator)
        beta = self.up_down + self.up_down_dtod * xi_beta
        spread = self.dw_min_dtod * xi_dw
        dw_up = (self.dw_min * (1 + beta + spread)).clamp(min=0.0)
        dw_down = (self.dw_min * (1 - beta + spread)).clamp(min=0.0)
        b_max = (self.w_max * (1 + self.w_max_dtod * xi_max)).clamp(min=0.0)
        b_min = (self.w_min * (1 + self.w_min_dtod * xi_min)).clamp(max=0.0)
        g_up, g_down = self.draw_shape(shape, generator)
        return DeviceParams(*(t.to(dtype) for t in (dw_up, dw_down, b_min, b_max, g_up,
                                                     g_down)))

    def draw_shape(self, shape: Sequence[int], generator: torch.Generator):
        """Per-device shape parameters ``(gamma_up, gamma_down)``; zeros for models without."""
        zeros = torch.zeros(tuple(shape), dtype=torch.float64)
        return zeros, zeros.clone()

    @abstractmethod
    def step_up(self, w: Tensor, p: DeviceParams) -> Tensor:
        """Size (>= 0, weight units) of one noiseless up pulse at state ``w``."""

    @abstractmethod
    def step_down(self, w: Tensor, p: DeviceParams) -> Tensor:
        """Size (>= 0, weight units) of one noiseless down pulse at state ``w``."""

    def snap(self, w: Tensor) -> Tensor:
        """Map a state after a pulse onto the device's allowed values (continuous: itself)."""
        return w


@dataclass(frozen=True, kw_only=True)
class ConstantStep(PulsedDevice):
    """Constant step up to hard bounds (aihwkit ``ConstantStepDevice``)::

        up:   w <- clip(w + dw_ij^+ (1 + dw_min_std xi), b_min_ij, b_max_ij)
        down: w <- clip(w - dw_ij^- (1 + dw_min_std xi), b_min_ij, b_max_ij)

    Finite states: with ``n_states`` the weight takes ``n_states`` evenly spaced levels
    ``w_min + k (w_max - w_min) / (n_states - 1)`` (16 levels for a 4-bit device, 64 for 6-bit)
    and ``dw_min`` *is* the level spacing, so one pulse moves one level: pass ``n_states`` or
    ``dw_min``, not two values that disagree. After every pulse and every programming the
    state snaps to the nearest level, so an asymmetry or cycle-to-cycle noise below half a
    level is absorbed and a larger one skips a level. With an even ``n_states``, 0 is not a
    level. The levels lie between the mean bounds, so bound variation is refused with it.

    Example:
        >>> dev = ConstantStep(n_states=16)          # 4 bits on [-1, 1]
        >>> round(dev.dw_min, 6)
        0.133333
    """

    dw_min: Optional[float] = None
    n_states: Optional[int] = None

    def __post_init__(self) -> None:
        w_min = -self.w_max if self.w_min is None else self.w_min
        if self.n_states is not None:
            check_int(self.n_states, "ConstantStep: n_states", minimum=2)
            spacing = (self.w_max - w_min) / (self.n_states - 1)
            if self.dw_min is not None and not math.isclose(self.dw_min, spacing,
                                                            rel_tol=1e-9):
                raise ValueError(
                    f"ConstantStep: dw_min={self.dw_min!r} disagrees with n_states="
                    f"{self.n_states} (one pulse moves one level: dw_min = (w_max - w_min) / "
                    f"(n_states - 1) = {spacing!r}); pass only one of dw_min and n_states")
            if self.w_max_dtod or self.w_min_dtod:
                raise ValueError("ConstantStep: n_states puts the levels between the mean "
                                 "bounds; set w_max_dtod=0 and w_min_dtod=0 with it")
            object.__setattr__(self, "dw_min", spacing)
        elif self.dw_min is None:
            object.__setattr__(self, "dw_min", 0.001)   # aihwkit's default
        super().__post_init__()

    def step_up(self, w: Tensor, p: DeviceParams) -> Tensor:
        return p.dw_up.expand_as(w)

    def step_down(self, w: Tensor, p: DeviceParams) -> Tensor:
        return p.dw_down.expand_as(w)

    def levels(self) -> Optional[Tensor]:
        """The ``n_states`` allowed weights (float64), or None for a continuous device."""
        if self.n_states is None:
            return None
        return torch.linspace(self.w_min, self.w_max, self.n_states, dtype=torch.float64)

    def snap(self, w: Tensor) -> Tensor:
        if self.n_states is None:
            return w
        k = torch.round((w - self.w_min) / self.dw_min).clamp(0, self.n_states - 1)
        return (self.w_min + k * self.dw_min).to(w.dtype)


@dataclass(frozen=True, kw_only=True)
class SoftBounds(PulsedDevice):
    """Soft bounds: the step shrinks linearly to 0 at the device's own bound (aihwkit
    ``SoftBoundsDevice``, i.e. ``LinearStepDevice`` with ``gamma = 1``)::

        up:   w <- w + dw_ij^+ (1 - w / b_max_ij) (1 + dw_min_std xi)
        down: w <- w - dw_ij^- (1 - w / b_min_ij) (1 + dw_min_std xi)     (b_min_ij < 0)

    ``n`` noiseless up pulses from ``w0`` approach ``b_max`` geometrically:
    ``w_n = b_max - (b_max - w0) (1 - dw^+ / b_max)^n`` (and never pass it).
    """

    # a bound that variation clamped to 0 leaves no room in that direction: step 0, not 0/0
    def step_up(self, w: Tensor, p: DeviceParams) -> Tensor:
        room = torch.where(p.b_max > 0, 1 - w / p.b_max, 0.0)
        return (p.dw_up * room).clamp(min=0.0)

    def step_down(self, w: Tensor, p: DeviceParams) -> Tensor:
        room = torch.where(p.b_min < 0, 1 - w / p.b_min, 0.0)
        return (p.dw_down * room).clamp(min=0.0)


@dataclass(frozen=True, kw_only=True)
class LinearStep(PulsedDevice):
    """Step linear in the weight (aihwkit ``LinearStepDevice``, multiplicative noise, bounds
    of the slope referenced to the mean bounds: ``mean_bound_reference=True``)::

        up:   w <- w + dw_ij^+ (1 - g_ij^+ w / w_max) (1 + dw_min_std xi)
        down: w <- w - dw_ij^- (1 - g_ij^- w / w_min) (1 + dw_min_std xi)
        g_ij^+ = |gamma_up + gamma_up_dtod xi|,   g_ij^- = |gamma_down + gamma_down_dtod xi|

    ``gamma = 0`` is :class:`ConstantStep`; ``gamma = 1`` with no bound variation is
    :class:`SoftBounds`. With the device-to-device parameters of :class:`PulsedDevice` every
    cross-point has its own step, bounds, asymmetry and slope, drawn once from the generator.
    Steps are clamped at 0 (aihwkit's ``allow_increasing=False``).
    """

    gamma_up: float = 0.0
    gamma_down: float = 0.0
    gamma_up_dtod: float = 0.0
    gamma_down_dtod: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("gamma_up", "gamma_down", "gamma_up_dtod", "gamma_down_dtod"):
            check_real(getattr(self, field), f"LinearStep: {field}", low=0.0)

    def draw_shape(self, shape, generator):
        g_up = (self.gamma_up + self.gamma_up_dtod * _normal(shape, generator)).abs()
        g_down = (self.gamma_down + self.gamma_down_dtod * _normal(shape, generator)).abs()
        return g_up, g_down

    def step_up(self, w: Tensor, p: DeviceParams) -> Tensor:
        return (p.dw_up * (1 - p.gamma_up * w / self.w_max)).clamp(min=0.0)

    def step_down(self, w: Tensor, p: DeviceParams) -> Tensor:
        return (p.dw_down * (1 - p.gamma_down * w / self.w_min)).clamp(min=0.0)


@dataclass(frozen=True, kw_only=True)
class PowStep(PulsedDevice):
    """Power-law step (aihwkit ``PowStepDevice``; Fusi & Abbott 2007, Frascaroli et al. 2018).
    With ``omega = (b_max_ij - w) / (b_max_ij - b_min_ij)``, the relative distance to the
    upper bound::

        up:   w <- w + dw_ij^+ omega^gamma_ij^+        (1 + dw_min_std xi)
        down: w <- w - dw_ij^- (1 - omega)^gamma_ij^-  (1 + dw_min_std xi)
        gamma_ij^d = pow_gamma (1 + d beta_ij + pow_gamma_dtod xi),
        beta_ij = pow_up_down + pow_up_down_dtod xi'

    As aihwkit notes, the step at ``w = 0`` is not ``dw_min`` (it is
    ``dw_min * (b_max / (b_max - b_min))^gamma``). Exponents are clamped at 0.
    """

    pow_gamma: float = 1.0
    pow_gamma_dtod: float = 0.0
    pow_up_down: float = 0.0
    pow_up_down_dtod: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real(self.pow_gamma, "PowStep: pow_gamma", low=0.0)
        check_real(self.pow_up_down, "PowStep: pow_up_down")
        for field in ("pow_gamma_dtod", "pow_up_down_dtod"):
            check_real(getattr(self, field), f"PowStep: {field}", low=0.0)

    def draw_shape(self, shape, generator):
        beta = self.pow_up_down + self.pow_up_down_dtod * _normal(shape, generator)
        spread = self.pow_gamma_dtod * _normal(shape, generator)
        g_up = (self.pow_gamma * (1 + beta + spread)).clamp(min=0.0)
        g_down = (self.pow_gamma * (1 - beta + spread)).clamp(min=0.0)
        return g_up, g_down

    @staticmethod
    def omega(w: Tensor, p: DeviceParams) -> Tensor:
        span = p.b_max - p.b_min
        safe = torch.where(span > 0, span, 1.0)          # a zero-width device stays put
        return torch.where(span > 0, (p.b_max - w) / safe, 0.5).clamp(0.0, 1.0)

    def step_up(self, w: Tensor, p: DeviceParams) -> Tensor:
        return p.dw_up * self.omega(w, p) ** p.gamma_up

    def step_down(self, w: Tensor, p: DeviceParams) -> Tensor:
        return p.dw_down * (1 - self.omega(w, p)) ** p.gamma_down
