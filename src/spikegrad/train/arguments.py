"""Checks of :class:`~spikegrad.train.Trainer`'s arguments, each error saying what to pass."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Optional

import torch
from torch import nn

from .._validate import check_int

NONFINITE = ("raise", "skip")


#: how the Trainer runs truncated BPTT (``Trainer(tbptt_mode=...)``)
TBPTT_MODES = ("chunks", "whole")


def check_trainer_args(model: Any, optimizer: Any, objective: Any, learner: Any,
                       scheduler: Any, grad_clip: Any, tbptt: Any, evaluate: Any,
                       checkpoint_every: Any, keep_checkpoints: Any,
                       checkpoint_every_steps: Any, nonfinite: Any,
                       tbptt_mode: Any = "chunks") -> Optional[float]:
    """TypeError/ValueError for a bad argument; returns ``grad_clip`` as a float (or None)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, e.g. "
            f"make_optimizer('adam', model, lr=1e-3); got {type(optimizer).__name__}"
        )
    if (objective is None) == (learner is None):
        raise TypeError(
            "pass exactly one of objective=objective(model, inputs, targets, state) (trained "
            "by backpropagation) and learner=learner(model, inputs, targets, update) (a rule "
            "that computes its own gradients); got "
            f"{'both' if objective is not None else 'neither'}"
        )
    for name, fn, signature in (("objective", objective, "(model, inputs, targets, state)"),
                                ("learner", learner, "(model, inputs, targets, update)")):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a callable {name}{signature} -> ObjectiveOutput; "
                            f"got {type(fn).__name__}")
    if learner is not None and tbptt is not None:
        raise ValueError("tbptt splits the batches for an objective's backward pass; a learner "
                         "runs the whole sequence itself (give it its own update interval). "
                         "Use tbptt=None with learner=...")
    if scheduler is not None and not (
        hasattr(scheduler, "step") and hasattr(scheduler, "state_dict")
    ):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler scheduler "
            f"(with step() and state_dict()); got {type(scheduler).__name__}"
        )
    if grad_clip is not None:
        if isinstance(grad_clip, bool) or not isinstance(grad_clip, Real):
            raise TypeError(
                f"grad_clip must be a number > 0 or None; got {type(grad_clip).__name__}"
            )
        if not math.isfinite(grad_clip) or grad_clip <= 0:
            raise ValueError(
                "grad_clip must be a finite number > 0 (e.g. grad_clip=1.0) or None; got "
                f"{grad_clip!r}"
            )
        grad_clip = float(grad_clip)
    if tbptt is not None:
        check_int(tbptt, "tbptt",
                  hint="tbptt=50 for 50-step chunks, or None for full BPTT")
    if tbptt_mode not in TBPTT_MODES:
        raise ValueError(f"tbptt_mode must be one of {', '.join(map(repr, TBPTT_MODES))} "
                         "('chunks': forward and backward chunk by chunk, memory of one chunk; "
                         "'whole': one pass with the gradient cut every tbptt steps); got "
                         f"{tbptt_mode!r}")
    if evaluate is not None and not callable(evaluate):
        raise TypeError(
            "evaluate must be a callable evaluate(model) -> dict, or None; got "
            f"{type(evaluate).__name__}"
        )
    check_int(checkpoint_every, "checkpoint_every")
    if keep_checkpoints is not None:
        check_int(keep_checkpoints, "keep_checkpoints", hint="or None to keep all")
    if checkpoint_every_steps is not None:
        check_int(checkpoint_every_steps, "checkpoint_every_steps",
                  hint="or None for epoch ends only")
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}; got {nonfinite!r}")

    return grad_clip
