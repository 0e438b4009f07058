"""Activation scales for weight normalisation, measured on calibration data.

Each activation layer ``l`` gets a scale ``lambda_l``, the activation that its IF neurons
will represent by firing at every step (rate 1):

* ``norm="max"``: the largest activation on the calibration data (Diehl et al. 2015,
  data-based normalisation);
* ``norm="percentile"``: the ``p``-th percentile of its positive activations (Rueckauer et al.
  2017; robust to rare outliers, which then saturate at rate 1). Like their toolbox, zeros are
  left out: in a sparse ReLU layer they would pull a percentile over all entries to 0.
* a :class:`~spikegrad.convert.QCFS` layer's scale is always its trained clip value.

A layer that is never positive on the calibration data gets scale 1 (whatever the scale,
its neurons stay silent on these data).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import check_choice, check_real, check_tensor
from .plan import Layer, read_ann
from .qcfs import QCFS

NORMS = ("percentile", "max")


def check_norm(norm: str, percentile: float) -> None:
    """ValueError naming the argument for a ``norm`` or ``percentile`` out of range."""
    check_choice(norm, "norm", NORMS)
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise ValueError(f"percentile must be a number in (0, 100], got "
                         f"{type(percentile).__name__} {percentile!r}")
    check_real(percentile, "percentile", low=0.0, high=100.0, low_open=True,
               hint="e.g. 99.9 (Rueckauer et al.) or 100 for the maximum")


def percentile_of(values: Tensor, q: float) -> float:
    """The ``q``-th percentile of all entries of ``values`` (linear interpolation between
    order statistics, as ``numpy.percentile`` and ``torch.quantile``). Exact for tensors of
    any size: the two order statistics come from ``numpy.partition`` (introselect, linear
    time), where ``torch.quantile`` refuses inputs of more than 2^24 entries (and
    ``torch.kthvalue`` can stall on inputs with many ties)."""
    flat = values.detach().flatten().cpu().numpy()
    n = flat.size
    if n == 0:
        raise ValueError("percentile of an empty tensor")
    pos = q / 100.0 * (n - 1)
    lo = min(int(math.floor(pos)), n - 1)
    hi = min(lo + 1, n - 1)
    part = np.partition(flat, (lo, hi))
    v_lo, v_hi = float(part[lo]), float(part[hi])
    return v_lo + (pos - lo) * (v_hi - v_lo)


def layer_scale(acts: Tensor, norm: str, percentile: float) -> float:
    """``lambda`` of one ReLU layer from its activations ``[B, ...]`` (see the module doc)."""
    positive = acts[acts > 0]
    if positive.numel() == 0:
        return 1.0
    if norm == "max":
        return float(positive.max())
    return percentile_of(positive, percentile)


class Calibration(NamedTuple):
    """``scales``: ``lambda`` per activation layer, in order; ``shapes``: the per-sample
    output shape of each layer of the plan (e.g. ``(C, H, W)`` or ``(N,)``)."""

    scales: List[float]
    shapes: List[Tuple[int, ...]]


def check_calibration(calibration, layers: List[Layer]) -> Tensor:
    check_tensor(calibration, "calibration")
    if calibration.dim() < 2 or calibration.shape[0] < 1:
        raise ValueError(f"calibration must be a batch of static ANN inputs [B, ...] with "
                         f"B >= 1, got shape {list(calibration.shape)}")
    w = next(layer.module.weight for layer in layers if layer.kind == "weight")
    if calibration.dtype != w.dtype or calibration.device != w.device:
        raise TypeError(f"calibration is {calibration.dtype} on {calibration.device} but the "
                        f"ANN's weights are {w.dtype} on {w.device}; pass "
                        f"calibration.to({w.dtype}, {str(w.device)!r}) (or convert the ANN)")
    return calibration


def calibrate(layers: List[Layer], calibration: Tensor, norm: str,
              percentile: float) -> Calibration:
    """Run the checked layers (:func:`~spikegrad.convert.plan.read_ann`) as an ANN on
    ``calibration [B, ...]`` (no gradient; BatchNorms are folded and Dropouts gone, so the
    modules' train/eval mode does not matter) and measure each activation layer's scale."""
    check_calibration(calibration, layers)
    scales, shapes = [], []
    x = calibration
    with torch.no_grad():
        for layer in layers:
            try:
                x = layer.module(x)
            except RuntimeError as e:
                raise ValueError(f"{layer.name} failed on the calibration data (input shape "
                                 f"{list(x.shape)}): {e}") from None
            shapes.append(tuple(x.shape[1:]))
            if layer.kind == "activation":
                scales.append(_scale(layer, x, norm, percentile))
    return Calibration(scales, shapes)


def _scale(layer: Layer, acts: Tensor, norm: str, percentile: float) -> float:
    if isinstance(layer.module, QCFS):
        lam = float(layer.module.threshold.detach())
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"{layer.name} has clip value threshold={lam}, which cannot be a "
                             "firing threshold (it must be finite and > 0); retrain it, e.g. "
                             "with the clip value kept positive")
        return lam
    lam = layer_scale(acts, norm, percentile)
    if not math.isfinite(lam):
        raise ValueError(f"{layer.name}: its activations on the calibration data are not "
                         f"finite (scale {lam}); check the calibration inputs and weights")
    return lam


def activation_scales(ann: nn.Sequential, calibration: Tensor, norm: str = "percentile",
                      percentile: float = 99.9) -> List[float]:
    """``lambda_l`` of each activation layer (ReLU or QCFS) of ``ann``, in order: the scales
    :func:`~spikegrad.convert.convert` normalises the weights with (see the module doc).

    Args:
        ann: as for :func:`~spikegrad.convert.convert`.
        calibration: static ANN inputs ``[B, ...]``.
        norm: ``"percentile"`` or ``"max"``.
        percentile: in (0, 100], for ``norm="percentile"``.

    Returns:
        One float per activation layer, in units of that layer's activation.

    Example:
        >>> import torch
        >>> ann = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.ReLU(),
        ...                           torch.nn.Linear(1, 1))
        >>> with torch.no_grad():
        ...     _ = ann[0].weight.fill_(2.0), ann[0].bias.zero_()
        >>> activation_scales(ann, torch.tensor([[0.5], [1.0], [-1.0]]), norm="max")
        [2.0]
    """
    check_norm(norm, percentile)
    return calibrate(read_ann(ann), calibration, norm, percentile).scales
