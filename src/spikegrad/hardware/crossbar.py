"""An analog crossbar array as a time-folded linear layer, with on-chip pulsed updates.

One cross-point ``ij`` holds a differential pair of conductances (uS) ``G+_ij, G-_ij`` in
``[g_min, g_max]``; its weight, in the device model's normalised units, is

    w_ij = (G+_ij - G-_ij) / g_scale,        g_scale = (g_max - g_min) / w_bound

with ``w_bound`` the largest ``|bound|`` of any device, so every weight the devices can hold
maps into the conductance range (aihwkit's ``SinglePairConductanceConverter``: the positive
part of ``w`` on ``G+``, the negative part on ``G-``, the other at ``g_min``).

A read (forward) is::

    x -> DAC (clip to +-dac_range, dac_bits) -> y = W(t) x  [+ read noise]  -> + out_noise
      -> ADC (clip to +-adc_range, adc_bits) -> * alpha (global drift compensation) -> + bias

where ``W(t)`` are the weights read at the current inference time (:meth:`drift_to`). An
update is a number of up/down pulses per device applied through the device model
(:func:`spikegrad.hardware.pulse.pulse`), chosen by a scheme of
:mod:`spikegrad.hardware.updates`. Pulses act on the programmed conductances and end an
inference period (drift is modelled for inference after programming, not during training).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_real, check_tensor
from .converters import check_converter, quantize
from .devices import ConstantStep, DeviceParams, PulsedDevice
from .pcm import PCMNoise
from .pulse import pulse
from .updates import UPDATE_SCHEMES, mixed_precision_pulses, naive_pulses, stochastic_pulses

__all__ = ["CrossbarLinear"]

COUNTERS = ("reads", "pulses", "writes", "updates")


class CrossbarLinear(nn.Module):
    """Analog crossbar ``y = W x`` on ``[..., in] -> [..., out]`` (so ``[T, B, in]`` in one MVM
    call for all steps), with devices, noise, drift, DAC/ADC and pulsed on-chip updates.

    Args:
        in_features, out_features: array size (``W`` is ``[out, in]``).
        device: the pulsed device model of every cross-point (default ``ConstantStep()``:
            continuous, noiseless, bounds +-1), its per-device parameters drawn once.
        bias: a digital bias (a float ``nn.Parameter`` added after the ADC; the analog update
            schemes do not touch it).
        dac_bits, dac_range: input converter (:func:`~spikegrad.hardware.converters.quantize`);
            None: ideal. adc_bits, adc_range: output converter, the same way.
        out_noise: std of Gaussian noise added to every output before the ADC (output units).
        noise: :class:`~spikegrad.hardware.pcm.PCMNoise` for programming noise, drift and
            1/f read noise, or None.
        compensation: global drift compensation (aihwkit ``GlobalDriftCompensation``, on by
            default there too): after :meth:`drift_to`, outputs are scaled by
            ``alpha = mean|W(t0)| / mean|W(t)|``, the ratio of a reference read of the array
            with one-hot inputs right after programming to the same read at time ``t``.
        g_min, g_max: conductance range in microsiemens (aihwkit's PCM default 0 and 25 uS).
        generator: CPU generator for the device draws, initial weights and all noise; None
            seeds one from torch's global RNG (so ``torch.manual_seed`` makes it reproducible).
        dtype: of the conductances and weights.

    Attributes:
        counters: ``{"reads", "pulses", "writes", "updates"}`` for an energy proxy: input
            vectors read (one MVM each, drift-compensation reads included), pulses fired,
            devices written (touched by at least one pulse, or programmed), update calls;
            :meth:`reset_counters` zeroes them.

    Shapes: ``x [..., in] -> [..., out]``; ``weights()`` and each conductance ``[out, in]``.

    Example:
        >>> import torch
        >>> from spikegrad.hardware import CrossbarLinear
        >>> xbar = CrossbarLinear(3, 2, generator=torch.Generator().manual_seed(0))
        >>> xs = torch.rand(5, 4, 3)                                   # [T, B, in]
        >>> torch.testing.assert_close(xbar(xs), torch.nn.functional.linear(xs, xbar.weights()))
    """

    def __init__(self, in_features: int, out_features: int, *,
                 device: Optional[PulsedDevice] = None, bias: bool = False,
                 dac_bits: Optional[int] = None, dac_range: Optional[float] = None,
                 adc_bits: Optional[int] = None, adc_range: Optional[float] = None,
                 out_noise: float = 0.0, noise: Optional[PCMNoise] = None,
                 compensation: bool = True, g_min: float = 0.0, g_max: float = 25.0,
                 generator: Optional[torch.Generator] = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.in_features = check_int(in_features, "CrossbarLinear: in_features")
        self.out_features = check_int(out_features, "CrossbarLinear: out_features")
        self.device_model = ConstantStep() if device is None else device
        self._check_options(noise, generator, dtype)
        check_converter(dac_bits, dac_range, "dac")
        check_converter(adc_bits, adc_range, "adc")
        self.dac_bits, self.dac_range, self.adc_bits, self.adc_range = (
            dac_bits, dac_range, adc_bits, adc_range)
        self.out_noise = float(check_real(out_noise, "out_noise", low=0.0))
        check_real(g_min, "g_min", low=0.0, hint="conductances in uS are >= 0")
        check_real(g_max, "g_max", low=g_min, low_open=True, hint="g_max > g_min (uS)")
        self.g_min, self.g_max = float(g_min), float(g_max)
        self.noise, self.compensation = noise, bool(compensation)
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        self.generator = generator
        self._init_state(dtype)
        self.reset_counters()
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None
        bound = 1.0 / math.sqrt(in_features)                  # nn.Linear's init range
        w0 = (torch.rand(out_features, in_features, generator=generator, dtype=torch.float64)
              * 2 - 1) * bound
        if self.bias is not None:
            with torch.no_grad():
                self.bias.copy_((torch.rand(out_features, generator=generator,
                                            dtype=torch.float64) * 2 - 1) * bound)
        self.program(w0.to(dtype))
        self.reset_counters()

    def _check_options(self, noise, generator, dtype) -> None:
        if not isinstance(self.device_model, PulsedDevice):
            raise TypeError("CrossbarLinear: device must be a device config such as "
                            f"ConstantStep() or SoftBounds(), got {type(self.device_model)}")
        if noise is not None and not isinstance(noise, PCMNoise):
            raise TypeError(f"CrossbarLinear: noise must be a PCMNoise or None, got "
                            f"{type(noise).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"CrossbarLinear: generator must be a torch.Generator or None, "
                            f"got {type(generator).__name__}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"CrossbarLinear: dtype must be torch.float32 or torch.float64, "
                             f"got {dtype}")

    def _init_state(self, dtype: torch.dtype) -> None:
        shape = (self.out_features, self.in_features)
        params = self.device_model.draw(shape, self.generator, dtype)
        for name, value in zip(DeviceParams._fields, params):
            self.register_buffer("device_" + name, value)
        w_bound = max(float(params.b_max.max()), float(-params.b_min.min()))
        self.g_scale = (self.g_max - self.g_min) / w_bound     # uS per weight unit
        zeros = lambda: torch.zeros(shape, dtype=dtype)         # noqa: E731
        for name in ("g_plus", "g_minus", "g_plus_read", "g_minus_read", "nu_plus",
                     "nu_minus", "chi"):
            self.register_buffer(name, zeros())
        self.register_buffer("alpha", torch.ones((), dtype=dtype))
        self.register_buffer("inference_s", torch.full((), math.nan, dtype=torch.float64))

    # --- state ---------------------------------------------------------------------------

    @property
    def params(self) -> DeviceParams:
        """The hidden per-device parameters (drawn once at construction)."""
        return DeviceParams(*(getattr(self, "device_" + f) for f in DeviceParams._fields))

    @property
    def inference_time(self) -> Optional[float]:
        """Seconds since programming of the current read state (None: not drifted)."""
        t = float(self.inference_s)
        return None if math.isnan(t) else t

    def weights(self) -> Tensor:
        """Effective weights ``(G+ - G-) / g_scale`` ``[out, in]`` as read now (weight units)."""
        return (self.g_plus_read - self.g_minus_read) / self.g_scale

    def conductances(self) -> Tuple[Tensor, Tensor]:
        """``(G+, G-)`` ``[out, in]`` in uS as read now (after :meth:`drift_to`: drifted)."""
        return self.g_plus_read.clone(), self.g_minus_read.clone()

    def programmed_weights(self) -> Tensor:
        """The device states ``[out, in]`` the pulses act on: the weights at programming."""
        return (self.g_plus - self.g_minus) / self.g_scale

    def reset_counters(self) -> None:
        self.counters: Dict[str, int] = {k: 0 for k in COUNTERS}

    def _pair(self, w: Tensor) -> Tuple[Tensor, Tensor]:
        """Target conductances of weights ``w``: positive part on G+, negative on G-."""
        return (self.g_min + self.g_scale * w.clamp(min=0.0),
                self.g_min + self.g_scale * (-w).clamp(min=0.0))

    def _end_inference(self) -> None:
        self.g_plus_read.copy_(self.g_plus)
        self.g_minus_read.copy_(self.g_minus)
        self.alpha.fill_(1.0)
        self.inference_s.fill_(math.nan)

    @torch.no_grad()
    def program(self, w: Tensor) -> None:
        """Write target weights ``w [out, in]`` (weight units): clipped to each device's
        bounds, snapped to its levels, mapped to the pair, then, with a ``noise`` model,
        perturbed by programming noise and given drift exponents. Counts one write per device.
        """
        check_tensor(w, "w")
        shape = (self.out_features, self.in_features)
        if tuple(w.shape) != shape:
            raise ValueError(f"program: w must have shape {list(shape)} [out, in], got "
                             f"{list(w.shape)}")
        p = self.params
        w = w.to(self.g_plus.dtype)
        w = self.device_model.snap(torch.minimum(torch.maximum(w, p.b_min), p.b_max))
        for stored, nu, target in zip((self.g_plus, self.g_minus), (self.nu_plus, self.nu_minus),
                                      self._pair(w)):
            g = target
            if self.noise is not None:
                nu.copy_(self.noise.drift_coefficients(target, self.g_max, self.generator))
                g = self.noise.program(target, self.g_max, self.generator)
            stored.copy_(g.clamp(self.g_min, self.g_max))
        self._end_inference()
        self.counters["writes"] += w.numel()

    @torch.no_grad()
    def drift_to(self, t_inference: float) -> None:
        """Read the array ``t_inference`` seconds after programming: each conductance drifts
        and gathers 1/f noise (:class:`~spikegrad.hardware.pcm.PCMNoise`, a fresh noise draw
        per call; drift exponents fixed per device), and with ``compensation`` the outputs are
        rescaled by ``alpha``. ``t_inference = 0`` is the first read at ``t0``."""
        if self.noise is None:
            raise ValueError("drift_to: this crossbar has no drift model; construct it with "
                             "noise=PCMNoise() to model drift and read noise")
        check_real(t_inference, "t_inference", low=0.0, hint="seconds since programming")
        for read, prog, nu in ((self.g_plus_read, self.g_plus, self.nu_plus),
                               (self.g_minus_read, self.g_minus, self.nu_minus)):
            g = self.noise.at_time(prog, nu, float(t_inference), self.g_max, self.generator)
            read.copy_(g.clamp(self.g_min, self.g_max))
        self.inference_s.fill_(float(t_inference))
        self.alpha.fill_(1.0)
        if self.compensation:
            # reads of one-hot inputs give the columns of W: mean |output| = mean |W|
            ref = self.programmed_weights().abs().mean()
            now = self.weights().abs().mean().clamp(min=torch.finfo(self.alpha.dtype).tiny)
            self.alpha.copy_(ref / now)
            self.counters["reads"] += 2 * self.in_features

    # --- read ----------------------------------------------------------------------------

    def _randn(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., in] -> y [..., out]``; differentiable in ``x`` (and the bias): the
        conductances are constants, the converters pass gradients straight through."""
        check_tensor(x, "x")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"CrossbarLinear({self.in_features}, {self.out_features}): x must "
                             f"be [..., {self.in_features}] (e.g. [T, B, {self.in_features}]), "
                             f"got shape {list(x.shape)}")
        x = quantize(x, self.dac_bits, self.dac_range)
        y = F.linear(x, self.weights().to(x.dtype))
        if self.device_model.read_noise > 0:
            # fresh weight noise per read, sum_j xi_ij x_j ~ N(0, ||x||^2): drawn on the output
            std = self.device_model.read_noise * x.detach().norm(dim=-1, keepdim=True)
            y = y + std * self._randn(y)
        if self.out_noise > 0:
            y = y + self.out_noise * self._randn(y)
        y = quantize(y, self.adc_bits, self.adc_range)
        if self.inference_time is not None and self.compensation:
            y = y * self.alpha.to(y.dtype)          # digital, after the ADC (as in aihwkit)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        self.counters["reads"] += x.numel() // self.in_features
        return y

    # --- updates -------------------------------------------------------------------------

    @torch.no_grad()
    def pulse(self, n_up: Tensor, n_down: Tensor) -> None:
        """Apply integer pulse counts ``[out, in]`` through the device model (every scheme
        ends here). Devices with no pulse keep their conductances exactly; touched ones are
        re-written as a pair (and, with a noise model, get new drift exponents)."""
        w = pulse(self.device_model, self.params, self.programmed_weights(), n_up, n_down,
                  self.generator)
        touched = (n_up + n_down) > 0
        for stored, nu, target in zip((self.g_plus, self.g_minus), (self.nu_plus, self.nu_minus),
                                      self._pair(w)):
            if self.noise is not None:
                fresh = self.noise.drift_coefficients(target, self.g_max, self.generator)
                nu.copy_(torch.where(touched, fresh, nu))
            stored.copy_(torch.where(touched, target.clamp(self.g_min, self.g_max), stored))
        self._end_inference()
        self.counters["pulses"] += int((n_up + n_down).sum())
        self.counters["writes"] += int(touched.sum())
        self.counters["updates"] += 1

    @torch.no_grad()
    def write(self, dw: Tensor, *, scheme: str = "naive") -> None:
        """Apply a desired update ``dw [out, in]`` (weight units) with ``scheme`` ``"naive"``
        (round to whole pulses) or ``"mixed_precision"`` (accumulate in the digital buffer
        ``chi``, write whole pulses of ``device.granularity``, keep the remainder)."""
        check_tensor(dw, "dw")
        if tuple(dw.shape) != tuple(self.chi.shape):
            raise ValueError(f"write: dw must have shape {list(self.chi.shape)} [out, in], got "
                             f"{list(dw.shape)}")
        step = self.device_model.granularity
        if scheme == "naive":
            n_up, n_down = naive_pulses(dw, step)
        elif scheme == "mixed_precision":
            self.chi += dw.to(self.chi.dtype)
            n_up, n_down, residual = mixed_precision_pulses(self.chi, step)
            self.chi.copy_(residual)
        else:
            raise ValueError(f"write: scheme must be 'naive' or 'mixed_precision', got "
                             f"{scheme!r}; the stochastic scheme needs the two factors: "
                             "update(x, d, lr, scheme='stochastic')")
        self.pulse(n_up, n_down)

    @torch.no_grad()
    def update(self, x: Tensor, d: Tensor, lr: float, *, scheme: str = "naive", bl: int = 31,
               update_management: bool = True, bl_management: bool = True) -> None:
        """The rank-1 update ``dW = -lr sum_b d_b x_b^T`` of inputs ``x [..., in]`` and errors
        ``d [..., out]`` (``e * phi(u)``; leading dimensions are flattened into the batch) with
        ``scheme`` in ``UPDATE_SCHEMES``; ``bl``, ``update_management`` and ``bl_management``
        configure the stochastic scheme (:func:`~spikegrad.hardware.updates.stochastic_pulses`).
        """
        if scheme not in UPDATE_SCHEMES:
            raise ValueError(f"update: scheme must be one of {', '.join(map(repr, UPDATE_SCHEMES))}"
                             f"; got {scheme!r}")
        check_tensor(x, "x")
        check_tensor(d, "d")
        if x.shape[-1:] != (self.in_features,) or d.shape[-1:] != (self.out_features,) \
                or x.shape[:-1] != d.shape[:-1]:
            raise ValueError(f"update: x must be [..., {self.in_features}] and d "
                             f"[..., {self.out_features}] with the same leading dimensions, got "
                             f"{list(x.shape)} and {list(d.shape)}")
        check_real(lr, "lr", low=0.0, low_open=True)
        x2, d2 = x.reshape(-1, self.in_features), d.reshape(-1, self.out_features)
        if scheme == "stochastic":
            n_up, n_down = stochastic_pulses(
                x2, d2, lr, self.device_model.granularity, bl=bl,
                update_management=update_management, bl_management=bl_management,
                generator=self.generator)
            self.pulse(n_up, n_down)
        else:
            dt = self.chi.dtype
            self.write(-lr * (d2.to(dt).t() @ x2.to(dt)), scheme=scheme)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, device={self.device_model!r}, "
                f"bias={self.bias is not None}, dac=({self.dac_bits}, {self.dac_range}), "
                f"adc=({self.adc_bits}, {self.adc_range}), out_noise={self.out_noise}, "
                f"noise={self.noise!r}, compensation={self.compensation}, "
                f"g=[{self.g_min}, {self.g_max}] uS")
