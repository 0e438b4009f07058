"""Folding batch normalisation into the preceding Linear or convolution.

In eval mode a BatchNorm is an affine map per channel,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``; after ``x = W u + b`` it folds into the
weight layer exactly: ``W' = s W``, ``b' = s (b - mean) + beta`` with ``s = gamma / sqrt(var +
eps)`` per output channel (Rueckauer et al. 2017, sec. 2.2).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

# which BatchNorm may follow which weight layer (BatchNorm1d normalises [B, C] and [B, C, L])
_PAIRS = {nn.Linear: nn.BatchNorm1d, nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d}


def _kind(layer: nn.Module) -> Optional[type]:
    return next((t for t in WEIGHT_LAYERS if isinstance(layer, t)), None)


def fold_into(layer: nn.Module, bn: nn.Module, where: str = "") -> nn.Module:
    """A copy of ``layer`` (nn.Linear, nn.Conv1d or nn.Conv2d) with the eval-mode ``bn`` folded
    in; a layer without bias gets one. Computed in float64, stored in the layer's dtype.
    ``where`` names the BatchNorm in error messages (e.g. ``"layer 3 (BatchNorm1d)"``)."""
    where = where or type(bn).__name__
    kind = _kind(layer)
    if kind is None or not isinstance(bn, BATCH_NORMS):
        raise TypeError(f"{where}: only a BatchNorm1d/2d directly after an nn.Linear, nn.Conv1d "
                        f"or nn.Conv2d can be folded, got {type(bn).__name__} after "
                        f"{type(layer).__name__}")
    n_out = layer.out_features if kind is nn.Linear else layer.out_channels
    if not isinstance(bn, _PAIRS[kind]) or bn.num_features != n_out:
        raise ValueError(f"{where}: {type(bn).__name__}({bn.num_features}) does not fit the "
                         f"preceding {type(layer).__name__} with {n_out} outputs; it needs "
                         f"{_PAIRS[kind].__name__}({n_out})")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{where}: the BatchNorm has no running statistics "
                         "(track_running_stats=False), so its eval output depends on the batch "
                         "and cannot be folded; train it with track_running_stats=True")
    w = layer.weight.detach()
    f64 = dict(dtype=torch.float64, device=w.device)
    ones, zeros = torch.ones(n_out, **f64), torch.zeros(n_out, **f64)
    gamma = bn.weight.detach().to(**f64) if bn.weight is not None else ones
    beta = bn.bias.detach().to(**f64) if bn.bias is not None else zeros
    b = layer.bias.detach().to(**f64) if layer.bias is not None else zeros
    s = gamma / torch.sqrt(bn.running_var.to(**f64) + bn.eps)      # [C_out]
    shift = s * (b - bn.running_mean.to(**f64)) + beta              # [C_out]
    folded = copy.deepcopy(layer)
    with torch.no_grad():
        folded.weight.copy_(w.to(**f64) * s.view(-1, *(1,) * (w.dim() - 1)))
        folded.bias = nn.Parameter(shift.to(w.dtype))
    return folded


def misplaced(ann: nn.Sequential, i: int) -> ValueError:
    """The error for the BatchNorm ``ann[i]`` that does not directly follow a weight layer."""
    before = f"layer {i - 1} ({type(ann[i - 1]).__name__})" if i else "the input"
    return ValueError(f"layer {i} ({type(ann[i]).__name__}): a BatchNorm is only supported "
                      "directly after an nn.Linear, nn.Conv1d or nn.Conv2d (it is folded into "
                      f"it), but it follows {before}; move it right after a weight layer or "
                      "remove it")


def fold_batchnorm(ann: nn.Sequential) -> nn.Sequential:
    """A copy of ``ann`` with each BatchNorm1d/2d folded into the Linear or Conv1d/Conv2d right
    before it (its running statistics, i.e. the eval-mode function); every other layer is
    copied unchanged. In eval mode the copy computes the same function as ``ann`` (up to
    rounding) with the BatchNorms gone.

    Raises:
        ValueError / TypeError: for a BatchNorm that does not directly follow a weight layer,
        does not fit it, or has no running statistics; the message names its index.

    Example:
        >>> import torch
        >>> ann = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> [type(m).__name__ for m in fold_batchnorm(ann)]
        ['Linear']
    """
    if not isinstance(ann, nn.Sequential):
        raise TypeError(f"ann must be a torch.nn.Sequential, got {type(ann).__name__}")
    out = []
    prev_is_weight = False
    for i, module in enumerate(ann):
        if isinstance(module, BATCH_NORMS):
            if not prev_is_weight:
                raise misplaced(ann, i)
            out[-1] = fold_into(out[-1], module, f"layer {i} ({type(module).__name__})")
            prev_is_weight = False
            continue
        out.append(copy.deepcopy(module))
        prev_is_weight = _kind(module) is not None
    return nn.Sequential(*out)
