"""Batch collation into the time-major layout used throughout spikegrad."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["time_major_collate"]


def time_major_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[Tensor, Tensor]:
    """Stack ``(x, label)`` samples into a time-major batch; a DataLoader ``collate_fn``.

    Args:
        batch: sequence of ``(x, label)`` pairs; each ``x`` is a tensor (or array) whose
            first axis is time, all of the same shape; each label an int or a 0-d tensor.

    Returns:
        ``(xs, labels)``: the inputs stacked along a new batch axis 1, and int64 labels.

    Shapes:
        x: ``[T, *F]`` each -> xs ``[T, B, *F]``; labels ``[B]``.

    Example:
        >>> xs, ys = time_major_collate([(torch.zeros(5, 3), 0), (torch.ones(5, 3), 1)])
        >>> xs.shape, ys.tolist()
        (torch.Size([5, 2, 3]), [0, 1])
    """
    if len(batch) == 0:
        raise ValueError("batch must contain at least one (x, label) pair, got an empty batch")
    xs, labels = [], []
    for i, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(
                f"batch[{i}] must be an (x, label) pair, got {type(item).__name__}"
                + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
            )
        x, y = item
        x = torch.as_tensor(x)
        if x.dim() < 1:
            raise ValueError(f"batch[{i}][0] must have a leading time axis, got a scalar")
        if xs and x.shape != xs[0].shape:
            raise ValueError(
                f"all inputs in a batch must have the same shape [T, ...]; batch[0] has "
                f"{tuple(xs[0].shape)} but batch[{i}] has {tuple(x.shape)} (pad or crop to a "
                "common length first)"
            )
        xs.append(x)
        labels.append(y.item() if isinstance(y, (Tensor, np.ndarray)) else y)
    return torch.stack(xs, dim=1), torch.as_tensor(labels, dtype=torch.int64)
