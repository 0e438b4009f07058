"""What the training loop does to a batch before the objective sees it: unpack, move to the
device, cut into TBPTT chunks; and the metrics it gets back, as floats."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch import Tensor

__all__ = ["unpack_batch", "to_device", "tbptt_chunks", "numeric_metrics"]


def unpack_batch(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a loader's batch, or a ValueError that says what to yield."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        f"train_loader must yield (inputs, targets) pairs; got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        + ". Yield (inputs, None) when there are no targets."
    )


def to_device(obj: Any, device: torch.device) -> Any:
    """Every tensor in ``obj`` (also inside tuples, named tuples, lists, dicts) on ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def tbptt_chunks(inputs: Any, targets: Any, k: int) -> Iterator[tuple[Any, Any]]:
    """``(inputs, targets)`` chunks of ``k`` steps along dim 0; per-step targets
    ``[T, B, ...]`` are split too, others go whole with every chunk."""
    if not isinstance(inputs, Tensor) or inputs.ndim < 2:
        got = (
            f"a tensor of shape {list(inputs.shape)}"
            if isinstance(inputs, Tensor)
            else type(inputs).__name__
        )
        raise ValueError(
            f"tbptt={k} needs inputs as one time-major tensor [T, B, ...] to split along dim 0; "
            f"got {got}. Transpose batch-major data with xs.transpose(0, 1) (e.g. in the "
            "DataLoader's collate_fn), or use tbptt=None."
        )
    steps, batch = inputs.shape[0], inputs.shape[1]
    # Per-step targets are [T, B, ...]; requiring the batch axis too keeps per-sample targets
    # [B] or [B, D] whole even when B happens to equal T.
    split_targets = (
        isinstance(targets, Tensor) and targets.ndim >= 2 and targets.shape[:2] == (steps, batch)
    )
    xs = inputs.split(k, dim=0)
    ys = targets.split(k, dim=0) if split_targets else [targets] * len(xs)
    return zip(xs, ys)


def numeric_metrics(metrics: Any, what: str) -> dict[str, float]:
    """``metrics`` as ``name -> float``, or a TypeError that names ``what`` returned it."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{what} must be a dict of name -> number; got {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str):
            raise TypeError(f"{what}: metric names must be strings; got {name!r}")
        try:
            out[name] = float(value.detach()) if isinstance(value, Tensor) else float(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{what}: metric {name!r} must be a number or a 1-element tensor; got "
                f"{type(value).__name__}"
            ) from exc
    return out
