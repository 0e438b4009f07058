"""What a :class:`~spikegrad.train.Trainer` checkpoint holds, and putting it back, so that a
resumed run continues exactly: weights, optimizer, scheduler, counters, history, every RNG,
a learner's state and the running sums of an unfinished epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from .checkpoint import check_trainer_payload
from .epoch import EpochSums
from .learner import learner_state, load_learner_state
from .rng import rng_state, set_rng_state

__all__ = ["trainer_payload", "restore_trainer"]


def trainer_payload(trainer: Any, train_loader: Iterable, partial: Optional[dict]) -> dict:
    """The checkpoint of ``trainer`` after ``trainer.epoch`` epochs, plus ``partial`` (the
    epoch's start RNG and running sums) for a save in the middle of an epoch."""
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": None if trainer.scheduler is None else trainer.scheduler.state_dict(),
        "epoch": trainer.epoch,
        "step": trainer.step,
        "history": [dict(r) for r in trainer.history],
        "rng": rng_state(train_loader),
        "partial": partial,
        "learner": learner_state(trainer.learner),
    }


def restore_trainer(trainer: Any, payload: dict, path: Path, train_loader: Iterable
                    ) -> Optional[tuple[dict, EpochSums, dict]]:
    """Load ``payload`` into ``trainer``; returns what the next epoch needs to finish a
    mid-epoch checkpoint's epoch (its start RNG, running sums, RNG at the save), or None."""
    check_trainer_payload(payload, path, has_scheduler=trainer.scheduler is not None)
    trainer.model.load_state_dict(payload["model"])
    # The optimizer first: building the scheduler wrote 'initial_lr' into its groups, and
    # the checkpointed groups carry the values the scheduler state refers to.
    trainer.optimizer.load_state_dict(payload["optimizer"])
    if trainer.scheduler is not None:
        trainer.scheduler.load_state_dict(payload["scheduler"])
    trainer.epoch = int(payload["epoch"])
    trainer.step = int(payload["step"])
    trainer.history = [dict(r) for r in payload["history"]]
    load_learner_state(trainer.learner, payload.get("learner"), path)
    set_rng_state(payload["rng"], train_loader, path)
    partial = payload.get("partial")  # absent in checkpoints of older versions
    if partial is None:
        return None
    return partial["epoch_rng"], EpochSums.from_dict(partial["sums"]), payload["rng"]
