"""How well a proxy predicts its scorer: R² and calibration.

``r2_score``: ``R^2 = 1 - sum (y - yhat)^2 / sum (y - mean y)^2``: 1 for a perfect proxy, 0
for one that predicts the mean, negative for worse.

``calibration``: whether a prediction can be read as a value of the score. The ordinary
least-squares line of the targets on the predictions, ``y ~ slope * yhat + intercept``, has
slope 1 and intercept 0 for a calibrated proxy; a slope below 1 means predictions spread
wider than the targets they predict (over-confident extremes: exactly what an optimiser
that climbs the proxy exploits). The binned view sorts the points by prediction, cuts them
into ``bins`` groups of equal count (deciles for 10) and compares the mean prediction with
the mean target in each.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._validate import check_int

__all__ = ["r2_score", "calibration", "Calibration"]


class Calibration(NamedTuple):
    """Calibration of predictions against targets.

    Attributes:
        slope: OLS slope of targets on predictions (1 when calibrated; NaN when the
            predictions are constant).
        intercept: OLS intercept, in score units (0 when calibrated; NaN with the slope).
        bin_pred: ``[bins]`` mean prediction of each bin, increasing.
        bin_target: ``[bins]`` mean target of each bin (equal to ``bin_pred`` when calibrated).
        bin_count: ``[bins]`` points in each bin (equal up to one).
    """

    slope: float
    intercept: float
    bin_pred: Tensor
    bin_target: Tensor
    bin_count: Tensor


def _pair(pred, target, owner: str, minimum: int = 2):
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 1:
            got = (f"dtype {x.dtype}, shape {list(x.shape)}" if isinstance(x, Tensor)
                   else type(x).__name__)
            raise ValueError(f"{owner}: {name} must be a 1-D floating tensor [N], got {got}")
    if pred.shape != target.shape:
        raise ValueError(f"{owner}: pred and target must have the same shape [N], got "
                         f"{list(pred.shape)} and {list(target.shape)}")
    if pred.shape[0] < minimum:
        raise ValueError(f"{owner}: pred and target need at least {minimum} points, got "
                         f"{pred.shape[0]}")
    # float64 on the host: sums of squares of N points lose digits in float32
    pred, target = pred.detach().double().cpu(), target.detach().double().cpu()
    if not bool(torch.isfinite(pred).all() & torch.isfinite(target).all()):
        raise ValueError(f"{owner}: pred and target must be finite, got non-finite values")
    return pred, target


def r2_score(pred: Tensor, target: Tensor) -> float:
    """Coefficient of determination of ``pred`` for ``target``, both ``[N]``, ``N >= 2``.

    Raises ValueError for a constant target (``R^2`` is undefined: there is no variance to
    explain).

    Example:
        >>> import torch
        >>> r2_score(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))
        0.5
    """
    pred, target = _pair(pred, target, "r2_score")
    ss_tot = (target - target.mean()).pow(2).sum().item()
    if ss_tot == 0.0:
        raise ValueError("r2_score: target is constant, so R^2 is undefined; use a split "
                         "whose targets vary, or report the mean squared error")
    return 1.0 - (target - pred).pow(2).sum().item() / ss_tot


def calibration(pred: Tensor, target: Tensor, bins: int = 10) -> Calibration:
    """OLS line of ``target`` on ``pred`` and mean target per equal-count prediction bin.

    Args:
        pred: ``[N]`` predictions, in score units.
        target: ``[N]`` true scores.
        bins: number of bins, ``1 <= bins <= N`` (10: deciles). Points are sorted by
            prediction (stable, so ties keep their order) and cut into ``bins`` groups whose
            sizes differ by at most one.

    Returns:
        A :class:`Calibration` (float64 tensors on the CPU).

    Example:
        >>> import torch
        >>> c = calibration(torch.tensor([0.0, 1.0, 2.0, 3.0]),
        ...                 torch.tensor([1.0, 3.0, 5.0, 7.0]), bins=2)
        >>> c.slope, c.intercept, c.bin_target.tolist()
        (2.0, 1.0, [2.0, 6.0])
    """
    bins = check_int(bins, "calibration: bins", hint="the number of prediction bins")
    pred, target = _pair(pred, target, "calibration", minimum=max(bins, 1))
    dp = pred - pred.mean()
    var = dp.pow(2).sum().item()
    if var == 0.0:
        slope = intercept = float("nan")   # a vertical cloud: no line of target on pred
    else:
        slope = (dp * (target - target.mean())).sum().item() / var
        intercept = target.mean().item() - slope * pred.mean().item()
    order = torch.sort(pred, stable=True).indices
    groups = torch.tensor_split(order, bins)
    bin_pred = torch.stack([pred[g].mean() for g in groups])
    bin_target = torch.stack([target[g].mean() for g in groups])
    bin_count = torch.tensor([len(g) for g in groups])
    return Calibration(slope, intercept, bin_pred, bin_target, bin_count)
