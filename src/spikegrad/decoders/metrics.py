"""Decoding scores per output dimension: R² and Pearson correlation.

``r2_score``: ``R^2_d = 1 - sum_t (y_td - yhat_td)^2 / sum_t (y_td - mean_t y_td)^2`` for each
dimension ``d`` (e.g. x and y velocity): 1 for a perfect decoder, 0 for one that predicts the
target's mean, negative for worse. ``correlation``: Pearson's r per dimension, which ignores
the decoder's scale and offset (a decoder can correlate well and still have a poor R²).
Both are computed in float64 on the evaluated segment; a dimension whose target (or, for the
correlation, prediction) is constant over the segment scores NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Score", "r2_score", "correlation"]


class Score(NamedTuple):
    """A score per output dimension and their mean.

    Attributes:
        per_dim: float64 ``[D]``, one score per dimension.
        mean: the mean over the dimensions (a Python float).
    """

    per_dim: Tensor
    mean: float


def _pair(pred, target, owner: str) -> tuple[Tensor, Tensor]:
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor [T, D] or [T], got "
                            f"{type(x).__name__}")
        if not x.is_floating_point() or x.dim() not in (1, 2):
            raise ValueError(f"{owner}: {name} must be a floating tensor [T, D] or [T], got "
                             f"dtype {x.dtype}, shape {list(x.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"{owner}: pred and target must have the same shape, got "
                         f"{list(pred.shape)} and {list(target.shape)}")
    if pred.shape[0] < 2:
        raise ValueError(f"{owner}: need at least 2 time steps, got {pred.shape[0]}")
    pred, target = pred.detach().double().cpu(), target.detach().double().cpu()
    if not bool(torch.isfinite(pred).all() & torch.isfinite(target).all()):
        raise ValueError(f"{owner}: pred and target must be finite (no NaN or inf); drop or "
                         "fill the bins without data first")
    if pred.dim() == 1:
        pred, target = pred[:, None], target[:, None]
    return pred, target


def r2_score(pred: Tensor, target: Tensor) -> Score:
    """Coefficient of determination per dimension.

    Args:
        pred: ``[T, D]`` (or ``[T]``) decoded values, e.g. velocity in cm/s.
        target: the true values, same shape and units.

    Returns:
        :class:`Score`: ``per_dim [D]`` and their mean.

    Example:
        >>> y = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
        >>> r2_score(y, y).per_dim.tolist(), r2_score(y.mean(0).expand(3, 2), y).mean
        ([1.0, 1.0], 0.0)
    """
    pred, target = _pair(pred, target, "r2_score")
    resid = ((target - pred) ** 2).sum(0)
    total = ((target - target.mean(0)) ** 2).sum(0)
    per_dim = torch.where(total > 0, 1.0 - resid / total.clamp(min=1e-300),
                          torch.full_like(total, float("nan")))
    return Score(per_dim, float(per_dim.mean()))


def correlation(pred: Tensor, target: Tensor) -> Score:
    """Pearson correlation per dimension.

    Args:
        pred: ``[T, D]`` (or ``[T]``) decoded values.
        target: the true values, same shape.

    Returns:
        :class:`Score`: ``per_dim [D]`` in [-1, 1] and their mean.

    Example:
        >>> y = torch.tensor([0.0, 1.0, 2.0, 4.0])
        >>> round(correlation(3 * y + 1, y).mean, 6)
        1.0
    """
    pred, target = _pair(pred, target, "correlation")
    p, t = pred - pred.mean(0), target - target.mean(0)
    denom = torch.sqrt((p ** 2).sum(0) * (t ** 2).sum(0))
    per_dim = torch.where(denom > 0, (p * t).sum(0) / denom.clamp(min=1e-300),
                          torch.full_like(denom, float("nan")))
    return Score(per_dim, float(per_dim.mean()))
