"""The one place where pulses change device states: every update scheme ends here.

A scheme (naive rounding, stochastic bit streams, mixed precision) only decides *how many*
up and down pulses each cross-point gets; :func:`pulse` applies them through the device model
(:mod:`spikegrad.hardware.devices`), so non-linearity, asymmetry, bounds, variation and noise
act the same way whatever scheme produced the counts.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validate import check_tensor
from .devices import DeviceParams, PulsedDevice

__all__ = ["pulse"]


def _check_counts(n: Tensor, name: str, w: Tensor) -> None:
    if not isinstance(n, Tensor) or n.is_floating_point() or n.is_complex() \
            or n.dtype == torch.bool:
        got = n.dtype if isinstance(n, Tensor) else type(n).__name__
        raise TypeError(f"pulse: {name} must be an integer tensor of pulse counts, got {got}; "
                        f"convert float counts with {name}.round().long()")
    if n.shape != w.shape:
        raise ValueError(f"pulse: {name} must have the weights' shape {list(w.shape)} (one "
                         f"count per device), got {list(n.shape)}")
    if n.numel() and int(n.min()) < 0:
        raise ValueError(f"pulse: {name} must be >= 0 (counts; the direction is which of "
                         f"n_up / n_down holds it), got a minimum of {int(n.min())}")


def _one_pulse(device: PulsedDevice, p: DeviceParams, w: Tensor, mask: Tensor, up: bool,
               generator: Optional[torch.Generator]) -> Tensor:
    step = device.step_up(w, p) if up else device.step_down(w, p)
    if device.dw_min_std > 0:
        xi = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        step = step * (1 + device.dw_min_std * xi)
    moved = w + step if up else w - step
    moved = device.snap(torch.minimum(torch.maximum(moved, p.b_min), p.b_max))
    return torch.where(mask, moved, w)


@torch.no_grad()
def pulse(device: PulsedDevice, params: DeviceParams, w: Tensor, n_up: Tensor, n_down: Tensor,
          generator: Optional[torch.Generator] = None) -> Tensor:
    """Apply ``n_up[ij]`` up and ``n_down[ij]`` down pulses to every device ``ij``.

    Pulses are applied one at a time and alternate, up then down, while a device has both
    left (so an asymmetric device that gets as many ups as downs drifts, as it does in
    hardware); the loop runs ``max(n_up, n_down)`` times, each step vectorised over the array.
    Each pulse: the model's step at the current state, times ``(1 + dw_min_std xi)``, then
    clip to ``[b_min_ij, b_max_ij]`` and snap to the device's levels.

    Args:
        device: the device model; params: its per-device parameters (``device.draw``).
        w: device states ``[out, in]`` (weight units). Not modified.
        n_up, n_down: integer pulse counts ``>= 0``, shaped like ``w``.
        generator: for the cycle-to-cycle noise (CPU generator).

    Returns:
        The new states, shaped like ``w``.

    Example:
        >>> import torch
        >>> from spikegrad.hardware import ConstantStep, pulse
        >>> dev = ConstantStep(dw_min=0.1)
        >>> p = dev.draw((1, 2), torch.Generator().manual_seed(0))
        >>> pulse(dev, p, torch.zeros(1, 2), torch.tensor([[3, 0]]), torch.tensor([[0, 1]]))
        tensor([[ 0.3000, -0.1000]])
    """
    check_tensor(w, "pulse: w")
    _check_counts(n_up, "n_up", w)
    _check_counts(n_down, "n_down", w)
    if not isinstance(device, PulsedDevice):
        raise TypeError(f"pulse: device must be a PulsedDevice config (e.g. ConstantStep()), "
                        f"got {type(device).__name__}")
    p = DeviceParams(*(t.to(w.dtype) for t in params))
    n_max = int(torch.maximum(n_up, n_down).max()) if w.numel() else 0
    for k in range(n_max):
        for counts, up in ((n_up, True), (n_down, False)):
            mask = counts > k
            if bool(mask.any()):
                w = _one_pulse(device, p, w, mask, up, generator)
    return w
