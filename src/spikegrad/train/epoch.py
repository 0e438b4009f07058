"""One epoch's bookkeeping: the running sums a mid-epoch checkpoint saves, and the record
that the log and :attr:`Trainer.history` hold."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Mapping

__all__ = ["RECORD_KEYS", "EpochSums", "epoch_record", "NotLearningWarning", "check_learning"]

# Keys every epoch record has; user metrics may not reuse them.
RECORD_KEYS = ("epoch", "step", "train_loss", "lr", "grad_norm_mean", "grad_norm_max",
               "seconds")


@dataclass
class EpochSums:
    """Running sums of one epoch; saved in mid-epoch checkpoints (plain floats and dicts)."""

    lr: float
    seconds: float = 0.0
    loss: float = 0.0
    weight: float = 0.0
    norm_sum: float = 0.0
    norm_max: float = 0.0
    batches: int = 0  # consumed from the loader, including skipped ones
    skipped: int = 0
    metrics: dict = field(default_factory=dict)
    metric_weights: dict = field(default_factory=dict)

    def add(self, loss: float, weight: float, metrics: dict, grad_norm: float) -> None:
        self.loss += weight * loss
        self.weight += weight
        for name, value in metrics.items():
            self.metrics[name] = self.metrics.get(name, 0.0) + weight * value
            self.metric_weights[name] = self.metric_weights.get(name, 0.0) + weight
        self.norm_sum += grad_norm
        self.norm_max = max(self.norm_max, grad_norm)
        self.batches += 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EpochSums":
        return cls(**d)

    @classmethod
    def merged(cls, parts: List["EpochSums"]) -> "EpochSums":
        """The sums of one epoch whose batches were split over data-parallel ranks: losses,
        metrics and their weights add up over ``parts``; the steps (lr, gradient norms of the
        averaged gradients, batch and skip counts) are the same on every rank, so the first
        part's are kept."""
        first = parts[0]
        out = cls(lr=first.lr, seconds=first.seconds, norm_sum=first.norm_sum,
                  norm_max=first.norm_max, batches=first.batches, skipped=first.skipped)
        for part in parts:
            out.loss += part.loss
            out.weight += part.weight
            for name, value in part.metrics.items():
                out.metrics[name] = out.metrics.get(name, 0.0) + value
                out.metric_weights[name] = (out.metric_weights.get(name, 0.0)
                                            + part.metric_weights[name])
        return out


def epoch_record(epoch: int, step: int, sums: EpochSums, seconds: float,
                 eval_metrics: Mapping[str, float], count_skipped: bool) -> dict:
    """The epoch's record: the built-in keys, ``skipped_steps`` if ``count_skipped``, then
    ``train_<metric>`` for the objective's metrics and the evaluation's metrics as given.
    Raises ValueError for a metric name that clashes with a key already in the record."""
    trained = sums.batches - sums.skipped
    record: dict[str, Any] = {
        "epoch": epoch,
        "step": step,
        "train_loss": sums.loss / sums.weight,
        "lr": sums.lr,
        "grad_norm_mean": sums.norm_sum / trained,
        "grad_norm_max": sums.norm_max,
        "seconds": seconds,
    }
    if count_skipped:
        record["skipped_steps"] = sums.skipped
    for name in sums.metrics:
        key = f"train_{name}"
        if key in record:
            raise ValueError(
                f"objective metric {name!r} would be logged as {key!r}, a built-in key; "
                "rename it"
            )
        record[key] = sums.metrics[name] / sums.metric_weights[name]
    for name, value in eval_metrics.items():
        if name in record:
            raise ValueError(
                f"evaluate returned metric {name!r}, which clashes with a key of the "
                f"epoch record ({sorted(record)}); rename it, e.g. 'val_{name}'"
            )
        record[name] = value
    return record


# Epochs after the first within which train_loss must have fallen below the first epoch's.
NOT_LEARNING_AFTER = 3


class NotLearningWarning(UserWarning):
    """The training loss has not fallen below its first-epoch value after a few epochs."""


def check_learning(history: List[dict]) -> None:
    """Warn once, at epoch ``1 + NOT_LEARNING_AFTER``, if the loss never beat epoch 1's."""
    if len(history) != 1 + NOT_LEARNING_AFTER:
        return
    first = history[0]["train_loss"]
    later = [r["train_loss"] for r in history[1:]]
    if not all(math.isfinite(v) for v in [first, *later]) or min(later) < first:
        return
    warnings.warn(
        f"not learning: train_loss has not fallen below its first-epoch value {first:.4g} "
        f"in the {len(later)} epochs since (best {min(later):.4g}); check lr (epoch 1: "
        f"{history[0]['lr']:.3g}): far too high overshoots, far too low stalls",
        NotLearningWarning,
        stacklevel=3,
    )
