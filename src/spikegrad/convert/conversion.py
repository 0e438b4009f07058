"""ANN -> SNN conversion by weight normalisation (Diehl et al. 2015; Rueckauer et al. 2017;
QCFS of Bu et al. 2022).

A ReLU unit with activation ``a`` becomes a non-leaky integrate-and-fire neuron with
threshold 1 and reset by subtraction, driven by the same weighted input every step; its
rate (spikes per step) approaches ``clamp(a / lambda, 0, 1)``, ``lambda`` being the layer's
scale (:mod:`spikegrad.convert.scales`). Rescaling the weights layer by layer,

    W_l <- W_l * lambda_{l-1} / lambda_l,      b_l <- b_l / lambda_l      (lambda_0 = 1),

makes each layer's rates the ANN's activations in units of ``lambda_l``; the output layer
gets ``W_L * lambda_{L-1}`` and its own bias, and a non-leaky integrator accumulates its
currents, so ``output_T / T`` approaches the ANN's output. Biases are constant currents and
the analog input is injected as a current every step
(:func:`spikegrad.convert.repeat_input`).
"""

from __future__ import annotations

import math
from typing import Dict, List

import torch
from torch import Tensor, nn

from .. import nn as snn
from .. import surrogate as _surrogate
from .._validate import check_choice
from .maxpool import SpikingMaxPool1d, SpikingMaxPool2d
from .plan import Layer, read_ann
from .qcfs import QCFS
from .scales import calibrate, check_norm

MAX_POOLS = ("gate", "avg")

# QCFS's shift: its IF neurons start at half threshold (Bu et al. 2022, Theorem 2)
QCFS_V_INIT = 0.5


def convert(ann: nn.Sequential, calibration: Tensor, *, norm: str = "percentile",
            percentile: float = 99.9, max_pool: str = "gate",
            surrogate: _surrogate.SurrogateLike = "fast_sigmoid",
            beta: float | None = None) -> snn.Sequential:
    """Convert a ReLU (or QCFS) ANN into an SNN of IF neurons with normalised weights.

    Args:
        ann: a ``torch.nn.Sequential`` of nn.Linear, nn.Conv1d/2d, nn.AvgPool1d/2d,
            nn.MaxPool1d/2d, nn.BatchNorm1d/2d (directly after a Linear/Conv: folded into
            it), nn.Flatten, nn.Dropout (dropped), and nn.ReLU or :class:`QCFS` activations.
            It ends with an output layer: a Linear/Conv without activation (optionally
            followed by AvgPool, Flatten or Dropout). Not modified.
        calibration: static ANN inputs ``[B, ...]`` (same dtype and device as the weights),
            e.g. a few hundred training samples; the ANN runs on them without gradient to
            measure each activation layer's scale and each layer's output shape.
        norm: ``"percentile"`` (the ``percentile``-th percentile of a layer's positive
            activations, Rueckauer et al.) or ``"max"`` (the maximum, Diehl et al.). A QCFS
            layer's scale is always its trained clip value.
        percentile: in (0, 100].
        max_pool: ``"gate"``: :class:`SpikingMaxPool1d`/``2d``, passing the spikes of each
            window's unit with the highest count so far; ``"avg"``: average pooling instead
            (an approximation: the window's mean rate instead of its largest, good where the
            ANN was trained with average pooling or the windows' rates are alike).
        surrogate, beta: the IF neurons' surrogate gradient and its slope, for fine-tuning
            the converted SNN with surrogate gradients.

    Returns:
        :class:`spikegrad.nn.Sequential` of spikegrad layers: time-folded Linear/Conv with the
        rescaled weights, ``IF(shape, threshold=1, reset="subtract")`` per activation (starting
        at ``v_init = 0.5`` for QCFS, 0 for ReLU), pooling and Flatten, and a final
        ``LI(out_shape, tau_mem=inf)`` that sums the output layer's currents. On
        ``repeat_input(x, T)`` its output ``vs [T, B, *out]`` gives ``vs[-1] / T``, which
        approaches the ANN's output (prediction: ``vs[-1].argmax(-1)``); on the same device
        and in the same dtype as the ANN.

    Raises:
        TypeError / ValueError: for a layer that does not convert (the message names its
        index and type, and what is supported), or a bad argument (named).

    Example:
        >>> import torch
        >>> from spikegrad.convert import convert, repeat_input
        >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
        ...                           torch.nn.Linear(8, 3))
        >>> x = torch.rand(16, 4)
        >>> snn = convert(ann, x)
        >>> vs, _ = snn(repeat_input(x, 32))
        >>> (vs[-1] / 32).shape
        torch.Size([16, 3])
    """
    check_norm(norm, percentile)
    check_choice(max_pool, "max_pool", MAX_POOLS)
    surr = _surrogate.get(surrogate, beta)
    layers = read_ann(ann)
    cal = calibrate(layers, calibration, norm, percentile)
    fed = _fed_scales(layers, cal.scales)
    modules: List[nn.Module] = []
    in_scale = 1.0  # what one unit of the signal at this point stands for in the ANN
    for k, (layer, shape) in enumerate(zip(layers, cal.shapes)):
        if layer.kind == "weight":
            modules.append(_spiking_weight(layer.module, in_scale / fed[k], 1.0 / fed[k]))
            in_scale = fed[k]
        elif layer.kind == "activation":
            v_init = QCFS_V_INIT if isinstance(layer.module, QCFS) else 0.0
            modules.append(snn.IF(shape, threshold=1.0, reset="subtract", surrogate=surr,
                                  v_init=v_init))
        else:
            modules.append(_spiking_pool_or_flatten(layer, max_pool))
    modules.append(snn.LI(cal.shapes[-1], tau_mem=math.inf))
    return snn.Sequential(*modules).to(calibration.device)


def _fed_scales(layers: List[Layer], scales: List[float]) -> Dict[int, float]:
    """For the weight layer at each position, the scale of the activation its currents feed
    (the next activation before the next weight layer), or 1 where none does: the output
    layer, or a weight layer feeding another directly."""
    fed: Dict[int, float] = {}
    following = 1.0
    remaining = len(scales)
    for k in reversed(range(len(layers))):
        if layers[k].kind == "activation":
            remaining -= 1
            following = scales[remaining]
        elif layers[k].kind == "weight":
            fed[k], following = following, 1.0
    return fed


def _spiking_weight(layer: nn.Module, w_factor: float, b_factor: float) -> nn.Module:
    """The time-folded spikegrad twin of an nn.Linear / nn.Conv1d / nn.Conv2d with weight
    ``W * w_factor`` and bias ``b * b_factor``."""
    w = layer.weight
    kw = dict(bias=layer.bias is not None, device=w.device, dtype=w.dtype)
    if isinstance(layer, nn.Linear):
        new = snn.Linear(layer.in_features, layer.out_features, **kw)
    else:
        cls = snn.Conv1d if isinstance(layer, nn.Conv1d) else snn.Conv2d
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                  padding_mode=layer.padding_mode, **kw)
    with torch.no_grad():
        new.weight.copy_(w.detach().to(torch.float64) * w_factor)
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach().to(torch.float64) * b_factor)
    return new


def _spiking_pool_or_flatten(layer: Layer, max_pool: str) -> nn.Module:
    m = layer.module
    if layer.kind == "flatten":
        return snn.Flatten()
    one_d = isinstance(m, (nn.AvgPool1d, nn.MaxPool1d))
    if layer.kind == "avgpool":
        if one_d:
            return snn.AvgPool1d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                 m.count_include_pad)
        return snn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                             m.count_include_pad, m.divisor_override)
    if max_pool == "gate":
        cls = SpikingMaxPool1d if one_d else SpikingMaxPool2d
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    if any(d != 1 for d in (m.dilation if isinstance(m.dilation, tuple) else (m.dilation,))):
        raise ValueError(f"{layer.name}: max_pool='avg' replaces it by average pooling, which "
                         f"has no dilation (got dilation={m.dilation}); use max_pool='gate'")
    # padding is ignored by max pooling, so the average leaves it out too
    cls = snn.AvgPool1d if one_d else snn.AvgPool2d
    return cls(m.kernel_size, m.stride, m.padding, m.ceil_mode, count_include_pad=False)
