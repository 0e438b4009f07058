"""PCM-like inference noise: programming noise, conductance drift and 1/f read noise.

The statistical model fitted on phase-change memory devices by Nandakumar et al., "Phase-change
memory models for deep learning training and inference", ICECS 2019, as implemented in IBM
aihwkit's ``PCMLikeNoiseModel`` (Rasch et al. 2021/2023). Conductances ``g`` are in
microsiemens, ``g_max`` is the array's largest conductance, times in seconds; ``t_inference``
counts from the end of programming and ``t = t_inference + t0``:

programming (per device, once)::

    g_prog = g_target + prog_noise_scale * sigma_prog(g_target) * xi
    sigma_prog(g) = (c0 + c1 (g/g_max) + c2 (g/g_max)^2) * g_max / g_ref     [uS]

with ``(c0, c1, c2) = (0.26348, 1.9650, -1.1731)`` fitted at ``g_ref = 25 uS``;

drift exponent (per device, drawn once from the *target* conductance, ``g_r = g_target/g_max``
clipped below at 1e-7)::

    nu = drift_scale * |mu(g_r) + sigma(g_r) xi|
    mu(g_r)    = clip(-0.0155 ln g_r + 0.0244, 0.049, 0.1)
    sigma(g_r) = clip(-0.0125 ln g_r - 0.0059, 0.008, 0.045)

drift and accumulated 1/f read noise at inference time (a fresh xi per call)::

    g_drift(t) = g_prog (t / t0)^(-nu)                          (t > t0; else g_prog)
    q_s        = clip(0.0088 / max((g_prog/g_max)^0.65, 1e-3), max 0.2)
    g(t)       = g_drift + |g_drift| * read_noise_scale * q_s sqrt(ln((t + t_read)/(2 t_read))) xi

clipped at 0 (no negative conductance). The pair is then clipped to ``[g_min, g_max]`` by the
crossbar (aihwkit only clips at 0; here each device stays in the array's range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validate import check_real

__all__ = ["PCMNoise"]


def _randn_like(g: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    return torch.randn(g.shape, generator=generator, dtype=g.dtype).to(g.device)


@dataclass(frozen=True, kw_only=True)
class PCMNoise:
    """Configuration of the PCM-like inference noise (aihwkit ``PCMLikeNoiseModel``).

    Args:
        prog_coeff: polynomial coefficients ``c_i`` of ``sigma_prog`` in powers of ``g/g_max``
            (uS at ``g_max = prog_coeff_g_max_reference``).
        prog_coeff_g_max_reference: the ``g_max`` (uS) the coefficients were fitted at.
        t_read: read duration of the 1/f fit (s). t0: first read after programming (s).
        prog_noise_scale, read_noise_scale, drift_scale: factors on the three effects
            (0 switches one off).

    Example:
        >>> import torch
        >>> pcm = PCMNoise(read_noise_scale=0.0, prog_noise_scale=0.0)
        >>> g = torch.full((3,), 10.0)
        >>> nu = torch.full((3,), 0.05)
        >>> pcm.at_time(g, nu, 20.0 * (2**20 - 1), g_max=25.0).tolist()   # (2^20)^-0.05 = 1/2
        [5.0, 5.0, 5.0]
    """

    prog_coeff: Tuple[float, ...] = (0.26348, 1.9650, -1.1731)
    prog_coeff_g_max_reference: float = 25.0
    t_read: float = 250e-9
    t0: float = 20.0
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.prog_coeff, (tuple, list)) or not self.prog_coeff:
            raise ValueError(f"PCMNoise: prog_coeff must be a non-empty tuple of polynomial "
                             f"coefficients, got {self.prog_coeff!r}")
        object.__setattr__(self, "prog_coeff", tuple(float(c) for c in self.prog_coeff))
        for field in ("prog_coeff_g_max_reference", "t_read", "t0"):
            check_real(getattr(self, field), f"PCMNoise: {field}", low=0.0, low_open=True)
        for field in ("prog_noise_scale", "read_noise_scale", "drift_scale"):
            check_real(getattr(self, field), f"PCMNoise: {field}", low=0.0,
                       hint="a scale is >= 0 (0 switches the effect off)")

    def programming_std(self, g_target: Tensor, g_max: float) -> Tensor:
        """``sigma_prog(g_target)`` in uS, shaped like ``g_target``."""
        rel = g_target / g_max
        sigma = torch.zeros_like(g_target)
        for power, c in enumerate(self.prog_coeff):
            sigma = sigma + c * rel ** power
        return sigma * (g_max / self.prog_coeff_g_max_reference)

    def program(self, g_target: Tensor, g_max: float,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Programmed conductances ``g_prog`` (uS, clipped at 0) for targets ``g_target``."""
        if self.prog_noise_scale == 0:
            return g_target.clone()
        noise = self.programming_std(g_target, g_max) * _randn_like(g_target, generator)
        return (g_target + self.prog_noise_scale * noise).clamp(min=0.0)

    def drift_moments(self, g_target: Tensor, g_max: float) -> Tuple[Tensor, Tensor]:
        """``(mu, sigma)`` of the drift exponent before the absolute value and the scale."""
        log_g = torch.log((g_target.abs() / g_max).clamp(min=1e-7))
        mu = (-0.0155 * log_g + 0.0244).clamp(0.049, 0.1)
        sigma = (-0.0125 * log_g - 0.0059).clamp(0.008, 0.045)
        return mu, sigma

    def drift_coefficients(self, g_target: Tensor, g_max: float,
                           generator: Optional[torch.Generator] = None) -> Tensor:
        """Per-device drift exponents ``nu >= 0``, drawn once from the target conductances."""
        mu, sigma = self.drift_moments(g_target, g_max)
        return self.drift_scale * (mu + sigma * _randn_like(g_target, generator)).abs()

    def read_std(self, g_prog: Tensor, g_max: float, t_inference: float) -> Tensor:
        """Relative std of the accumulated 1/f noise at ``t_inference`` (times ``|g_drift|``)."""
        q_s = (0.0088 / ((g_prog.abs() / g_max) ** 0.65).clamp(min=1e-3)).clamp(max=0.2)
        t = t_inference + self.t0
        return q_s * math.sqrt(math.log((t + self.t_read) / (2 * self.t_read)))

    def at_time(self, g_prog: Tensor, nu: Tensor, t_inference: float, g_max: float,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Conductances (uS, >= 0) read ``t_inference`` seconds after programming: drift, then
        the 1/f noise accumulated since programming (a fresh draw per call)."""
        check_real(t_inference, "t_inference", low=0.0, hint="seconds since programming")
        t = t_inference + self.t0
        g = g_prog * (t / self.t0) ** (-nu) if t > self.t0 else g_prog.clone()
        if self.read_noise_scale > 0:
            sigma = self.read_std(g_prog, g_max, t_inference)
            g = g + g.abs() * self.read_noise_scale * sigma * _randn_like(g, generator)
        return g.clamp(min=0.0)
