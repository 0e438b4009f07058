"""Readout losses and activity regularisers. Inputs are time-major ``[T, B, ...]``.

Count cross-entropy (the classification seed): logits ``s * c_k`` with spike counts
``c_k = sum_t z[t, k]``; the gradient reaching every spike of output ``k`` is the same,
``s (p_k - y_k) / B``: the error is spread evenly over the spikes of the sequence, and reaches
the membrane through the surrogate, ``dL/dv_t = s (p_k - y_k) / B * phi(v_t - theta)``
(plus the leak's carry from later steps). ``tests/test_losses.py`` checks both.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_choice, check_sequence, check_tensor
from .functional.leaky import lowpass
from .functional.readout import membrane

__all__ = ["count_cross_entropy", "membrane_cross_entropy", "mse", "filtered_mse", "nmse",
           "spike_count_l1", "spike_count_l2", "rate_band"]

PER = ("neuron", "layer")


def _check_labels(y, B: int, n_classes: int) -> Tensor:
    check_tensor(y, "y", floating=False)
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (B,):
        raise ValueError(f"y must have shape [B] = [{B}], got {list(y.shape)}")
    if B and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"y: class labels must lie in [0, {n_classes - 1}], got range "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.long()


def count_cross_entropy(zs: Tensor, y: Tensor, scale: float = 1.0) -> Tensor:
    """Softmax cross-entropy over output spike counts.

    Args:
        zs: output spikes ``[T, B, C]``.
        y: labels ``[B]``.
        scale: count-to-logit factor ``s`` (logits ``s * counts``).

    Returns:
        Mean loss over the batch (scalar).
    """
    check_sequence(zs, "zs")
    if zs.dim() != 3:
        raise ValueError(f"zs must have shape [T, B, C], got {list(zs.shape)}")
    y = _check_labels(y, zs.shape[1], zs.shape[2])
    return F.cross_entropy(scale * zs.sum(0), y)


def membrane_cross_entropy(vs: Tensor, y: Tensor, reduce: str = "max") -> Tensor:
    """Cross-entropy on a readout membrane reduced over time (``max``, ``mean``, ``last``,
    ``sum``). ``vs [T, B, C]``, ``y [B]``; mean over the batch."""
    check_sequence(vs, "vs")
    if vs.dim() != 3:
        raise ValueError(f"vs must have shape [T, B, C], got {list(vs.shape)}")
    y = _check_labels(y, vs.shape[1], vs.shape[2])
    return F.cross_entropy(membrane(vs, reduce), y)


def _check_pair(out: Tensor, target: Tensor) -> None:
    check_sequence(out, "output")
    check_tensor(target, "target")
    if out.shape != target.shape:
        raise ValueError(f"output {list(out.shape)} and target {list(target.shape)} must have "
                         "the same shape [T, B, ...]")


def mse(out: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all steps, samples and channels."""
    _check_pair(out, target)
    return F.mse_loss(out, target)


def nmse(out: Tensor, target: Tensor) -> Tensor:
    """Normalised MSE ``mean((out - target)^2) / var(target)``: 1.0 for predicting the mean."""
    _check_pair(out, target)
    return F.mse_loss(out, target) / target.var(unbiased=False).clamp_min(1e-12)


def filtered_mse(zs: Tensor, target: Tensor, decay: Union[float, Tensor],
                 gain: float = 1.0) -> Tensor:
    """MSE between ``gain * lowpass(zs)`` (exponential filter, ``y_t = decay y_{t-1} + z_t``)
    and ``target``, both ``[T, B, ...]``."""
    return mse(gain * lowpass(check_sequence(zs, "zs"), decay), target)


def _counts(zs: Tensor, per: str) -> Tensor:
    check_sequence(zs, "zs")
    check_choice(per, "per", PER)
    counts = zs.sum(0).flatten(1)  # [B, N]
    return counts if per == "neuron" else counts.mean(1, keepdim=True)


def spike_count_l1(zs: Tensor, per: str = "neuron") -> Tensor:
    """Mean over batch and neurons of the spike count (L1; counts are >= 0).

    ``per="layer"`` uses the layer's mean count per neuron instead of each neuron's."""
    return _counts(zs, per).mean()


def spike_count_l2(zs: Tensor, per: str = "neuron") -> Tensor:
    """Mean over batch (and neurons) of the squared spike count."""
    return _counts(zs, per).pow(2).mean()


def rate_band(zs: Tensor, low: Optional[float] = None, high: Optional[float] = None,
              per: str = "neuron", power: int = 2) -> Tensor:
    """Penalty for spike counts outside ``[low, high]`` (spikes per neuron per sequence).

    ``relu(low - c)^power + relu(c - high)^power`` averaged over batch (and neurons), with
    ``c`` each neuron's count (``per="neuron"``) or the layer's mean count (``per="layer"``).
    Zenke & Vogels (2021) use a per-neuron lower bound with a per-layer upper bound: sum two
    calls.
    """
    if low is None and high is None:
        raise ValueError("rate_band: give low, high, or both (spikes per neuron per sequence)")
    if low is not None and high is not None and low > high:
        raise ValueError(f"rate_band: low ({low}) must not exceed high ({high})")
    if power not in (1, 2):
        raise ValueError(f"rate_band: power must be 1 or 2, got {power!r}")
    c = _counts(zs, per)
    pen = torch.zeros_like(c)
    if low is not None:
        pen = pen + F.relu(low - c).pow(power)
    if high is not None:
        pen = pen + F.relu(c - high).pow(power)
    return pen.mean()
