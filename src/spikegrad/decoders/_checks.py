"""Input checks shared by the decoders (errors name the argument and the fix)."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor


def as_counts(counts, owner: str, n_channels: int | None = None) -> Tensor:
    """``counts [T, N]`` (float or int tensor) as float64 on the host."""
    if not isinstance(counts, Tensor):
        raise TypeError(f"{owner}: counts must be a torch.Tensor [T, N] of spike counts per "
                        f"bin, got {type(counts).__name__}")
    if counts.dim() != 2:
        raise ValueError(f"{owner}: counts must have shape [T, N] (time bins, channels), got "
                         f"{list(counts.shape)}; for one channel use counts[:, None]")
    if n_channels is not None and counts.shape[1] != n_channels:
        raise ValueError(f"{owner}: counts has {counts.shape[1]} channels but the decoder was "
                         f"fitted on {n_channels}; pass the same channels in the same order")
    x = counts.detach().double().cpu()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{owner}: counts must be finite (no NaN or inf)")
    return x


def as_targets(velocity, counts: Tensor, owner: str, name: str = "velocity") -> Tensor:
    """``velocity [T, D]`` (floating) with the same T as ``counts``, as float64."""
    if not isinstance(velocity, Tensor) or not velocity.is_floating_point():
        got = f"dtype {velocity.dtype}" if isinstance(velocity, Tensor) else type(velocity).__name__
        raise TypeError(f"{owner}: {name} must be a floating torch.Tensor [T, D], got {got}")
    if velocity.dim() != 2 or velocity.shape[0] != counts.shape[0]:
        raise ValueError(f"{owner}: {name} must have shape [T, D] with the T = "
                         f"{counts.shape[0]} bins of counts, got {list(velocity.shape)}")
    y = velocity.detach().double().cpu()
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{owner}: {name} must be finite (no NaN or inf); drop the bins "
                         "without behaviour first")
    return y


def check_nonneg(value, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a number >= 0, got {type(value).__name__} "
                        f"{value!r}")
    if not (math.isfinite(float(value)) and value >= 0):
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)
