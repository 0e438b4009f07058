"""The contract between :class:`~spikegrad.train.Trainer` and a learner: a training rule that
computes its own gradients (e-prop, a three-factor rule, a delta rule) instead of calling
``loss.backward()``, and may apply them several times per batch (online learning).

A learner is ``learner(model, inputs, targets, update) -> ObjectiveOutput``. It writes the
gradients into the parameters' ``.grad`` and calls ``update()`` whenever they should be
applied. ``update`` is the trainer's: it clips the global gradient norm (``grad_clip``),
applies the NaN/Inf guard, steps the optimizer and clears ``.grad``, so a learner never
handles the optimizer itself. A learner that does not call ``update`` gets one update after
it returns. The returned loss is for the log only and need not require grad.

A learner with ``state_dict()`` / ``load_state_dict(d)`` (e.g. a learned feedback matrix) has
that state saved in the trainer's checkpoints and restored on resume.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, List, Optional, Protocol

import torch
from torch import nn

from .diagnose import nonfinite_gradients
from .objective import ObjectiveOutput, global_grad_norm

__all__ = ["Learner", "Updates"]


class Learner(Protocol):
    """A training rule that writes its own gradients (see the module docstring).

    ``learner(model, inputs, targets, update) -> ObjectiveOutput``: ``inputs`` time-major
    ``[T, B, ...]``; it fills the parameters' ``.grad`` and calls ``update()`` (the trainer's
    clip, guard, optimizer step and zero-grad) whenever the gradient should be applied.
    A learner typically runs :class:`spikegrad.learning.EProp` or
    :class:`spikegrad.learning.ThreeFactor` step by step (their ``step`` and ``flush``) and
    calls ``update()`` after each flush.
    """

    def __call__(self, model: nn.Module, inputs: Any, targets: Any,
                 update: Callable[[], None]) -> ObjectiveOutput: ...


class Updates:
    """The ``update()`` the trainer hands a learner for one batch.

    Each call takes the global gradient norm of the optimizer's parameters (clipping it to
    ``grad_clip`` if given), steps the optimizer and clears the gradients. A non-finite norm
    raises ``FloatingPointError`` (``nonfinite="raise"``) or drops that update with a warning
    (``"skip"``). ``norms`` holds the pre-clip norms of the applied updates; ``calls`` counts
    all calls. ``sync``, if given, is called with the parameters first (a data-parallel job
    averages the gradients over its processes there).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module,
                 grad_clip: Optional[float], nonfinite: str, where: str,
                 sync: Optional[Callable[[List[torch.Tensor]], None]] = None):
        self.optimizer, self.model, self.grad_clip = optimizer, model, grad_clip
        self.nonfinite, self.where = nonfinite, where
        self.sync = sync
        self.norms: List[float] = []
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.sync is not None:
            self.sync([p for g in self.optimizer.param_groups for p in g["params"]])
        norm = global_grad_norm(self.optimizer, self.grad_clip)
        if norm != norm or norm in (float("inf"), float("-inf")):
            bad = nonfinite_gradients(self.model)
            message = (f"gradient norm is {norm} at update {self.calls} of {self.where} "
                       f"(non-finite gradient of {', '.join(bad) or '?'}); the optimizer was "
                       "not stepped for this update. Lower the learning rate, or check the "
                       "learner's error signal for overflow.")
            self.optimizer.zero_grad(set_to_none=True)
            if self.nonfinite == "raise":
                raise FloatingPointError(message)
            warnings.warn(f"skipped an update: {message}", RuntimeWarning, stacklevel=2)
            return
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.norms.append(norm)


def learner_state(learner: Any) -> Optional[dict]:
    """The learner's ``state_dict()`` for a checkpoint, or None (no learner, or no state)."""
    if learner is None or not callable(getattr(learner, "state_dict", None)):
        return None
    return learner.state_dict()


def load_learner_state(learner: Any, state: Optional[dict], path: Any) -> None:
    """Restore a checkpoint's learner state; ValueError when the checkpoint and the learner
    disagree on having one (resuming would then not continue the checkpointed run)."""
    has = learner is not None and callable(getattr(learner, "load_state_dict", None))
    if state is None and not has:
        return
    if state is None or not has:
        raise ValueError(
            f"checkpoint {path} {'has no' if state is None else 'has'} learner state but this "
            f"Trainer's learner {'has' if has else 'has none'}; build the Trainer as in the "
            "checkpointed run to resume exactly.")
    learner.load_state_dict(state)
