"""Neuron constants that may be trained, each kept in its range by a smooth map."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validate import check_positive


class Decay(nn.Module):
    """``a = exp(-dt / tau)`` in (0, 1]; trained as ``a = sigmoid(rho)`` (per neuron).

    Args:
        tau: time constant (s, or any unit shared with ``dt``); ``inf`` gives ``a = 1``.
        dt: step (same unit).
        shape: per-neuron shape of the trainable parameter.
        learn: train ``rho``; otherwise ``a`` is a fixed buffer.
    """

    def __init__(self, tau: float, dt: float, shape: tuple, learn: bool, name: str = "tau"):
        super().__init__()
        tau = check_positive(tau, name, allow_inf=not learn)
        self.dt = check_positive(dt, "dt")
        a = math.exp(-self.dt / tau)
        self.learn = learn
        if learn:
            if not 0.0 < a < 1.0:
                raise ValueError(f"{name}={tau} with dt={dt} gives decay {a}, which cannot be "
                                 "trained (it must lie strictly in (0, 1)); use a finite "
                                 "time constant or learn=False")
            self.rho = nn.Parameter(torch.full(shape, math.log(a / (1.0 - a))))
        else:
            # float64: a module moved to .double() keeps the exact decay; a 0-dim tensor does
            # not upcast float32 computation
            self.register_buffer("value", torch.tensor(a, dtype=torch.float64))

    def forward(self) -> Tensor:
        return torch.sigmoid(self.rho) if self.learn else self.value

    @property
    def tau(self) -> Tensor:
        """The time constant(s) the decay corresponds to, ``-dt / log(a)``."""
        return -self.dt / torch.log(self().detach())


class Positive(nn.Module):
    """A value > 0 (e.g. a threshold); trained as ``softplus(rho)`` (per neuron)."""

    def __init__(self, value: float, shape: tuple, learn: bool, name: str = "value"):
        super().__init__()
        value = check_positive(value, name)
        self.learn = learn
        if learn:
            self.rho = nn.Parameter(torch.full(shape, value + math.log(-math.expm1(-value))))
        else:
            self.register_buffer("value", torch.tensor(value, dtype=torch.float64))

    def forward(self) -> Tensor:
        return nn.functional.softplus(self.rho) if self.learn else self.value
