"""A plain PyTorch training loop for stateful (spiking) models.

The loop knows nothing about the model's loss: the user writes an *objective*::

    def objective(model, inputs, targets, state) -> ObjectiveOutput:
        ys, state = model(inputs, state)          # inputs time-major [T, B, ...]
        loss = ...                                # scalar tensor
        return ObjectiveOutput(loss, state, {"acc": acc, "n": batch_size})

and :class:`Trainer` runs it batch by batch, with optional truncated BPTT, gradient
clipping, a NaN/Inf guard, an epoch-wise LR scheduler, evaluation, a JSON-lines log,
atomic checkpoints and exact resume (weights, optimizer, scheduler, history and every RNG),
also from the middle of an epoch: SIGINT/SIGTERM finish the current batch, save a checkpoint
and raise :class:`~spikegrad.train.interrupt.TrainingInterrupted`.

Epoch metrics are averages of the per-batch numbers. A batch's weight is the value of its
``"n"`` metric when the objective reports one (e.g. the batch size, making the average
per-sample) and 1 otherwise (a plain mean over batches). ``train_loss`` and every objective
metric are averaged with these weights; a metric only some batches report is averaged over
those batches. ``"n"`` itself is a weight and is not logged.

Example:
    >>> import torch
    >>> from spikegrad.train import Trainer, ObjectiveOutput, make_optimizer
    >>> model = torch.nn.Linear(3, 1)
    >>> def objective(model, x, y, state):
    ...     return ObjectiveOutput(torch.nn.functional.mse_loss(model(x), y))
    >>> data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(2)]
    >>> trainer = Trainer(model, make_optimizer("sgd", model, lr=0.1), objective, progress=False)
    >>> [r["epoch"] for r in trainer.fit(data, epochs=2)]
    [1, 2]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from numbers import Real
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import check_int
from ..functional.state import detach_state
from .checkpoint import (
    latest_valid,
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from .interrupt import StopSignals, TrainingInterrupted
from .progress import Progress

__all__ = ["ObjectiveOutput", "Objective", "Trainer", "NotLearningWarning"]

PathLike = Union[str, "os.PathLike[str]"]

# Keys every epoch record has; user metrics may not reuse them.
_RECORD_KEYS = ("epoch", "step", "train_loss", "lr", "grad_norm_mean", "grad_norm_max", "seconds")
_NONFINITE = ("raise", "skip")
_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "history", "rng")
# Epochs after the first within which train_loss must have fallen below the first epoch's.
_NOT_LEARNING_AFTER = 3


class NotLearningWarning(UserWarning):
    """The training loss has not fallen below its first-epoch value after a few epochs."""


class ObjectiveOutput(NamedTuple):
    """What an objective returns for one batch (or one TBPTT chunk).

    Attributes:
        loss: scalar (0-dim) floating tensor to minimise.
        state: the model state after this chunk, carried (detached) into the next TBPTT
            chunk; ignored without TBPTT. ``None`` for stateless models.
        metrics: numbers (floats or 1-element tensors) to average over the epoch; they are
            logged as ``train_<name>``. A metric named ``"n"`` is the batch's weight in the
            epoch averages (usually the batch size) and is not logged itself.
    """

    loss: Tensor
    state: Any = None
    metrics: Mapping[str, float] = MappingProxyType(
        {}
    )  # read-only: a shared default must not be mutated


Objective = Callable[[nn.Module, Any, Any, Any], ObjectiveOutput]


class Trainer:
    """Train a model with a user-supplied objective.

    Args:
        model: the module; its ``forward`` is called by the objective, not the trainer.
        optimizer: any ``torch.optim.Optimizer`` over the trainable parameters.
        objective: ``objective(model, inputs, targets, state) -> ObjectiveOutput``; ``state``
            is ``None`` at the start of each batch.
        scheduler: any ``torch.optim.lr_scheduler`` scheduler, stepped once per epoch after
            training (``ReduceLROnPlateau`` is stepped with the epoch's ``train_loss``).
        grad_clip: if given, clip the global gradient norm to this value
            (``torch.nn.utils.clip_grad_norm_``). The logged norms are pre-clip either way.
        tbptt: truncated BPTT chunk length ``K``. Inputs must then be a time-major tensor
            ``[T, B, ...]``; they are split into chunks of ``K`` steps along dim 0. Targets
            are split too when they are a tensor of shape ``[T, B, ...]`` (per-step targets),
            otherwise every chunk gets them whole. The state is carried across chunks,
            detached; gradients of all chunks accumulate and the optimizer steps once per
            batch. ``K >= T`` is exactly full BPTT.
        evaluate: ``evaluate(model) -> dict`` of numbers, run after each epoch under
            ``torch.no_grad()`` and ``model.eval()``; its keys are logged as given.
        log_path: JSON-lines file with one record per epoch. It always mirrors
            :attr:`history`: ``fit`` rewrites it from the history (empty on a fresh run),
            then appends each new epoch.
        checkpoint_dir: folder for ``ckpt_epoch{E:05d}.pt`` files; ``None``: no checkpoints.
        checkpoint_every: save every this many epochs, and always after the last epoch of
            a ``fit`` call.
        keep_checkpoints: keep this many newest checkpoints (``None``: keep all).
        checkpoint_every_steps: also save every this many optimizer steps, mid-epoch (for
            long epochs; ``None``: only at epoch ends). Mid-epoch checkpoints resume exactly:
            the loader is rewound to the epoch's start and the done batches are skipped
            (loaded but not trained on), so the data order and every RNG match.
        nonfinite: what a NaN/Inf loss or gradient does. ``"raise"`` (default): raise
            ``FloatingPointError`` naming the epoch, batch, quantity and the first layer
            whose output (or parameter, or gradient) is not finite; the optimizer is not
            stepped, so the last checkpoint holds good weights. ``"skip"``: warn, drop that
            batch's update and go on; the epoch record counts them in ``skipped_steps``.
        progress: ``True``: print one line per epoch to stdout (loss, evaluate's metrics,
            elapsed time and the ETA of this ``fit``), and on a terminal also a tqdm bar over
            the batches if tqdm is installed. A :class:`~spikegrad.train.progress.Progress`:
            count each epoch as one unit of that (whole-run) progress instead, so a run of
            several trainings shows one ETA. ``False``: silent.
        device: if given, the model is moved there at construction and every tensor of each
            batch (also inside tuples/lists/dicts) before the objective sees it.

    Attributes:
        history: list of epoch records (dicts), as returned by :meth:`fit`.
        epoch: number of completed epochs.
        step: number of optimizer steps taken (one per batch).

    An epoch record holds ``epoch`` (1-based), ``step`` (global optimizer steps so far),
    ``train_loss`` (weighted mean of batch losses; with TBPTT a batch's loss is the sum of
    its chunk losses), ``lr`` (of the first parameter group, as used during the epoch, i.e.
    before the scheduler step), ``grad_norm_mean`` and ``grad_norm_max`` (of the pre-clip
    global gradient norms of the epoch's steps), ``seconds`` (wall time of training and
    evaluation), then ``train_<metric>`` for objective metrics and the evaluate metrics.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        objective: Objective,
        *,
        scheduler: Any = None,
        grad_clip: Optional[float] = None,
        tbptt: Optional[int] = None,
        evaluate: Optional[Callable[[nn.Module], Mapping[str, float]]] = None,
        log_path: Optional[PathLike] = None,
        checkpoint_dir: Optional[PathLike] = None,
        checkpoint_every: int = 1,
        keep_checkpoints: Optional[int] = 3,
        progress: Union[bool, Progress] = True,
        device: Union[str, torch.device, None] = None,
        checkpoint_every_steps: Optional[int] = None,
        nonfinite: str = "raise",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                "optimizer must be a torch.optim.Optimizer, e.g. "
                f"make_optimizer('adam', model, lr=1e-3); got {type(optimizer).__name__}"
            )
        if not callable(objective):
            raise TypeError(
                "objective must be a callable "
                "objective(model, inputs, targets, state) -> ObjectiveOutput; "
                f"got {type(objective).__name__}"
            )
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
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be one of {_NONFINITE}; got {nonfinite!r}")

        self.device = None if device is None else torch.device(device)
        if self.device is not None:
            model.to(self.device)
        self.model = model
        self.optimizer = optimizer
        self.objective = objective
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.tbptt = tbptt
        self.evaluate = evaluate
        self.log_path = None if log_path is None else Path(log_path)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_every_steps = checkpoint_every_steps
        self.nonfinite = nonfinite
        self._shared_progress = progress if isinstance(progress, Progress) else None
        self.progress = bool(progress.enabled if isinstance(progress, Progress) else progress)
        self.history: list[dict] = []
        self.epoch = 0
        self.step = 0
        # A mid-epoch checkpoint restored by resume: (RNG states at the epoch's start, the
        # epoch's running sums, RNG states at the save). Consumed by the next _run_epoch.
        self._pending: Optional[tuple[dict, "_EpochSums", dict]] = None
        self._signals: Optional[StopSignals] = None

    # ------------------------------------------------------------------ public API

    def fit(
        self, train_loader: Iterable, epochs: int, resume: Optional[PathLike] = None
    ) -> list[dict]:
        """Train until ``epochs`` epochs are complete.

        Args:
            train_loader: iterable of ``(inputs, targets)`` batches, re-iterated every epoch
                (a ``DataLoader``, or a list). Inputs are time-major ``[T, B, ...]``; a
                ``DataLoader`` over per-sample sequences yields ``[B, T, ...]``, so give it a
                ``collate_fn`` that transposes (the objective may transpose instead, but
                TBPTT splits dim 0 of the batch as the loader yields it).
            epochs: total number of epochs, counting those already done (restored by
                ``resume`` or by an earlier ``fit``); e.g. ``fit(loader, 10, resume="latest")``
                after a crash at epoch 7 trains epochs 8..10. Must be >= 1.
            resume: ``None`` (continue from this trainer's current state, which is the
                start for a new trainer), ``"latest"`` (newest valid checkpoint in
                ``checkpoint_dir``; start fresh if there is none), or a checkpoint path.
                Restores model, optimizer, scheduler, epoch, step, history and the torch,
                CUDA, NumPy, Python and loader-generator RNG states.

        Returns:
            A copy of :attr:`history`: one record per epoch (see the class docstring).

        Warns:
            NotLearningWarning: after epoch ``1 + 3`` of a run, when no epoch since the first
                had a ``train_loss`` below the first epoch's (e.g. a learning rate far too
                high or too low).

        Raises:
            FloatingPointError: a loss or gradient is NaN/Inf (with ``nonfinite="raise"``);
                the optimizer is not stepped for that batch.
            TrainingInterrupted: SIGINT or SIGTERM arrived; the current batch was finished
                and a checkpoint saved (a ``KeyboardInterrupt`` subclass).
        """
        check_int(epochs, "epochs", hint="e.g. epochs=10")
        before = self.epoch
        if resume is not None:
            self._resume(resume, train_loader)
        self._rewrite_log()
        end = epochs
        progress = self._shared_progress
        if progress is None and self.progress and self.epoch < end:
            progress = Progress(end, "epoch")
            progress.skip(self.epoch)
        elif progress is not None:
            progress.skip(max(0, self.epoch - before))  # restored by resume
        with StopSignals() as self._signals:
            while self.epoch < end:
                record = self._run_epoch(train_loader)
                self.history.append(record)
                self._append_log(record)
                if progress is not None:
                    shared = progress is self._shared_progress
                    progress.update(1, _progress_info(record, end if shared else None))
                self._check_learning()
                if self.checkpoint_dir is not None and (
                    self.epoch % self.checkpoint_every == 0 or self.epoch == end
                ):
                    self._save(train_loader)
        return list(self.history)

    def _check_learning(self) -> None:
        """Warn once, at epoch 1 + _NOT_LEARNING_AFTER, if the loss never beat epoch 1's."""
        if len(self.history) != 1 + _NOT_LEARNING_AFTER:
            return
        first = self.history[0]["train_loss"]
        later = [r["train_loss"] for r in self.history[1:]]
        if not all(math.isfinite(v) for v in [first, *later]) or min(later) < first:
            return
        warnings.warn(
            f"not learning: train_loss has not fallen below its first-epoch value {first:.4g} "
            f"in the {len(later)} epochs since (best {min(later):.4g}); check lr (epoch 1: "
            f"{self.history[0]['lr']:.3g}): far too high overshoots, far too low stalls",
            NotLearningWarning,
            stacklevel=3,
        )

    # ------------------------------------------------------------------ one epoch

    def _run_epoch(self, train_loader: Iterable) -> dict:
        epoch = self.epoch + 1
        self.model.train()
        if self._pending is None:
            epoch_rng = _rng_state(train_loader)
            sums = _EpochSums(lr=float(self.optimizer.param_groups[0]["lr"]))
            resume_rng = None
        else:
            # Rewind to the epoch's start so the loader draws the same order, skip the batches
            # already trained on, then continue from the RNG states of the save.
            epoch_rng, sums, saved_rng = self._pending
            self._pending = None
            _set_rng_state(epoch_rng, train_loader, Path("<mid-epoch checkpoint>"))
            # Only the global RNGs: the loader's generators advance by replaying the skipped
            # batches (fetching a batch may draw from them, e.g. RandomSampler at its end).
            resume_rng = {k: v for k, v in saved_rng.items() if k != "generators"}
        skip = sums.batches
        start = time.perf_counter() - sums.seconds
        bar = _progress_bar(train_loader, epoch) if self.progress else None
        try:
            for batch_index, batch in enumerate(train_loader if bar is None else bar):
                if batch_index < skip:
                    if batch_index == skip - 1:  # the next fetch is the first to train on
                        _set_rng_state(resume_rng, None, Path("<mid-epoch checkpoint>"))
                        resume_rng = None
                    continue
                inputs, targets = _unpack(batch)
                if self.device is not None:
                    inputs, targets = _to_device(inputs, self.device), _to_device(
                        targets, self.device
                    )
                result = self._train_batch(inputs, targets, epoch, batch_index)
                if result is None:  # non-finite, skipped
                    sums.skipped += 1
                    sums.batches += 1
                else:
                    loss, metrics, grad_norm = result
                    weight = metrics.pop("n", 1.0)
                    if not math.isfinite(weight) or weight <= 0:
                        raise ValueError(
                            "metric 'n' is the batch weight (e.g. the batch size) and must be "
                            f"> 0; got {weight} at epoch {epoch}, batch index {batch_index}"
                        )
                    sums.add(loss, weight, metrics, grad_norm)
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                self._maybe_save_mid_epoch(train_loader, epoch_rng, sums, start)
        finally:
            if bar is not None:
                bar.close()
        if resume_rng is not None:  # saved after the epoch's last batch: nothing was left
            _set_rng_state(resume_rng, None, Path("<mid-epoch checkpoint>"))
        if sums.batches == 0:
            raise ValueError(
                "train_loader yielded no batches; check the dataset size and batch_size/drop_last"
            )
        if sums.weight == 0:
            raise FloatingPointError(
                f"every batch of epoch {epoch} had a non-finite loss or gradient and was "
                "skipped; lower the learning rate or check the data"
            )
        train_loss = sums.loss / sums.weight

        eval_metrics = self._evaluate()
        self._step_scheduler(train_loss)
        trained = sums.batches - sums.skipped
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": self.step,
            "train_loss": train_loss,
            "lr": sums.lr,
            "grad_norm_mean": sums.norm_sum / trained,
            "grad_norm_max": sums.norm_max,
            "seconds": time.perf_counter() - start,
        }
        if self.nonfinite == "skip":
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
        self.epoch = epoch
        return record

    def _train_batch(
        self, inputs: Any, targets: Any, epoch: int, batch_index: int
    ) -> Optional[tuple[float, dict, float]]:
        """Forward/backward over the batch (chunk by chunk with TBPTT), guard, clip, step.

        Returns ``(loss, metrics, pre-clip grad norm)``, or ``None`` when a non-finite loss
        or gradient was skipped (``nonfinite="skip"``).
        """
        self.optimizer.zero_grad(set_to_none=True)
        chunks = (
            [(inputs, targets)]
            if self.tbptt is None
            else list(_tbptt_chunks(inputs, targets, self.tbptt))
        )
        n_chunks = len(chunks)
        state = None
        loss_total = 0.0
        metric_sums: dict[str, float] = {}
        metric_counts: dict[str, int] = {}
        for chunk_index, (x, y) in enumerate(chunks):
            # Kept so a failing chunk can be replayed with the same random numbers to find
            # the layer that produced the first NaN/Inf.
            rng = torch.get_rng_state()
            out = self._call_objective(x, y, state)
            loss_value = float(out.loss.detach())
            if not math.isfinite(loss_value):
                where = f"epoch {epoch}, batch index {batch_index}" + (
                    "" if self.tbptt is None else f", TBPTT chunk {chunk_index}"
                )
                culprit = _first_nonfinite(self, x, y, state, rng)
                return self._nonfinite(
                    f"loss is {loss_value} at {where}{culprit}; the optimizer was not stepped "
                    "for this batch. Lower the learning rate, clip gradients (grad_clip=...) or "
                    "check the inputs and the loss for log(0) or division by zero."
                )
            out.loss.backward()
            if self.tbptt is not None and out.state is None and chunk_index + 1 < n_chunks:
                raise ValueError(
                    f"tbptt={self.tbptt}: the objective returned state=None after TBPTT chunk "
                    f"{chunk_index}, so chunk {chunk_index + 1} would start from zeros and "
                    "nothing would be carried across chunks. Return the model's state: "
                    "`ys, state = model(inputs, state); return ObjectiveOutput(loss, state)`, "
                    "or use tbptt=None for a stateless model."
                )
            state = detach_state(out.state)
            loss_total += loss_value
            for name, value in _numeric_metrics(out.metrics, "objective metrics").items():
                metric_sums[name] = metric_sums.get(name, 0.0) + value
                metric_counts[name] = metric_counts.get(name, 0) + 1
        # Chunks of one batch see the same samples, so their metrics are averaged (a per-chunk
        # 'n' stays the batch size) while the losses, each already a gradient term, add up.
        metrics = {name: metric_sums[name] / metric_counts[name] for name in metric_sums}
        grad_norm = self._clip_gradients()
        if not math.isfinite(grad_norm):
            bad = [
                name
                for name, p in self.model.named_parameters()
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())
            ]
            return self._nonfinite(
                f"gradient norm is {grad_norm} at epoch {epoch}, batch index {batch_index} "
                f"although the loss is finite (non-finite gradient of {', '.join(bad) or '?'}); "
                "the optimizer was not stepped for this batch. Check the surrogate slope and "
                "the model for overflow, or lower the learning rate."
            )
        self.optimizer.step()
        self.step += 1
        return loss_total, metrics, grad_norm

    def _nonfinite(self, message: str) -> None:
        if self.nonfinite == "raise":
            raise FloatingPointError(message)
        self.optimizer.zero_grad(set_to_none=True)
        warnings.warn(f"skipped a step: {message}", RuntimeWarning, stacklevel=3)
        return None

    def _call_objective(self, inputs: Any, targets: Any, state: Any) -> ObjectiveOutput:
        out = self.objective(self.model, inputs, targets, state)
        if not isinstance(out, ObjectiveOutput):
            raise TypeError(
                f"objective must return spikegrad.train.ObjectiveOutput(loss, state, metrics); got "
                f"{type(out).__name__}. Wrap the result, e.g. "
                "`return ObjectiveOutput(loss, state)`."
            )
        loss = out.loss
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"ObjectiveOutput.loss must be a torch.Tensor; got {type(loss).__name__}"
            )
        if loss.ndim != 0:
            raise ValueError(
                "ObjectiveOutput.loss must be a scalar (0-dim) tensor; got shape "
                f"{list(loss.shape)}. Reduce it in the objective, e.g. loss.mean() or loss.sum()."
            )
        if not loss.is_floating_point():
            raise TypeError(
                f"ObjectiveOutput.loss must be a floating tensor; got dtype {loss.dtype}"
            )
        if not loss.requires_grad:
            raise ValueError(
                "ObjectiveOutput.loss does not require grad, so there is nothing to train: the "
                "objective ran under torch.no_grad(), detached the loss, or the model has no "
                "trainable parameters."
            )
        return out

    def _clip_gradients(self) -> float:
        """Global pre-clip gradient norm of the optimizer's parameters; clips in place if asked."""
        params = [
            p
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not params:
            return 0.0
        if self.grad_clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        # Same formula as clip_grad_norm_ (norm of per-tensor norms) so logs agree with and
        # without clipping.
        device = params[0].grad.device
        norms = [torch.linalg.vector_norm(p.grad.detach()).to(device) for p in params]
        return float(torch.linalg.vector_norm(torch.stack(norms)))

    def _evaluate(self) -> dict[str, float]:
        if self.evaluate is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                result = self.evaluate(self.model)
        finally:
            self.model.train(was_training)
        return _numeric_metrics(result, "evaluate's result")

    def _step_scheduler(self, train_loss: float) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(train_loss)
        else:
            self.scheduler.step()

    # ------------------------------------------------------------------ log

    def _rewrite_log(self) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w", encoding="utf-8") as f:
            for record in self.history:
                f.write(json.dumps(record) + "\n")

    def _append_log(self, record: dict) -> None:
        if self.log_path is None:
            return
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints

    def _maybe_save_mid_epoch(
        self, train_loader: Iterable, epoch_rng: dict, sums: "_EpochSums", start: float
    ) -> None:
        signum = None if self._signals is None else self._signals.signum
        every = self.checkpoint_every_steps
        due = every is not None and self.step > 0 and self.step % every == 0
        if signum is None and not due:
            return
        path = None
        if self.checkpoint_dir is not None:
            sums.seconds = time.perf_counter() - start
            path = self._save(
                train_loader, partial={"epoch_rng": epoch_rng, "sums": sums.as_dict()}
            )
        if signum is not None:
            raise TrainingInterrupted(signum, path)

    def _save(self, train_loader: Iterable, partial: Optional[dict] = None) -> Path:
        """Checkpoint after ``self.epoch`` epochs, plus ``partial`` batches into the next."""
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": [dict(r) for r in self.history],
            "rng": _rng_state(train_loader),
            "partial": partial,
        }
        batch = 0 if partial is None else partial["sums"]["batches"]
        path = save_checkpoint(checkpoint_path(self.checkpoint_dir, self.epoch, batch), payload)
        if self.keep_checkpoints is not None:
            prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints, upto=self.epoch)
        return path

    def _resume(self, resume: PathLike, train_loader: Iterable) -> None:
        if isinstance(resume, str) and resume == "latest":
            if self.checkpoint_dir is None:
                raise ValueError(
                    'resume="latest" needs checkpoint_dir=... in Trainer(...), or pass a '
                    "checkpoint path"
                )
            found = latest_valid(self.checkpoint_dir)
            if found is None:
                # Nothing saved yet: start fresh, so a preemptible job can always pass "latest".
                return
            path, payload = found
        else:
            path = Path(resume)
            payload = load_checkpoint(path)
        missing = [k for k in _CHECKPOINT_KEYS if k not in payload]
        if missing:
            raise ValueError(f"{path} is not a Trainer checkpoint: it lacks {missing}")
        if (payload["scheduler"] is None) != (self.scheduler is None):
            has = "has" if payload["scheduler"] is not None else "has no"
            raise ValueError(
                f"checkpoint {path} {has} scheduler state but this Trainer was built "
                f"{'without' if self.scheduler is None else 'with'} a scheduler; build it as in "
                "the checkpointed run to resume exactly."
            )
        self.model.load_state_dict(payload["model"])
        # The optimizer first: building the scheduler wrote 'initial_lr' into its groups, and
        # the checkpointed groups carry the values the scheduler state refers to.
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        self.epoch = int(payload["epoch"])
        self.step = int(payload["step"])
        self.history = [dict(r) for r in payload["history"]]
        _set_rng_state(payload["rng"], train_loader, path)
        partial = payload.get("partial")  # absent in checkpoints of older versions
        self._pending = (
            None
            if partial is None
            else (partial["epoch_rng"], _EpochSums.from_dict(partial["sums"]), payload["rng"])
        )


# ---------------------------------------------------------------------- helpers


@dataclass
class _EpochSums:
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
    def from_dict(cls, d: dict) -> "_EpochSums":
        return cls(**d)


def _first_nonfinite(trainer: Trainer, inputs: Any, targets: Any, state: Any, rng: Tensor) -> str:
    """Replay the objective with forward hooks; name the first module output that is not finite.

    Returns a phrase to append to the error message ("" if the replay finds nothing).
    """
    for name, p in trainer.model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f" (parameter {name!r} is not finite)"
    found: list[str] = []

    def hook(module: nn.Module, args: Any, output: Any, name: str) -> None:
        if found:
            return
        for i, t in enumerate(_tensors(output)):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                what = "output" if i == 0 else f"output tensor #{i} (e.g. its state)"
                found.append(f" (first non-finite value: {what} of layer {name!r}, "
                             f"{type(module).__name__})")
                return

    handles = [
        m.register_forward_hook(lambda mod, a, out, n=name: hook(mod, a, out, n))
        for name, m in trainer.model.named_modules()
        if name
    ]
    saved = torch.get_rng_state()
    try:
        torch.set_rng_state(rng)
        with torch.no_grad():
            trainer.objective(trainer.model, inputs, targets, state)
    except Exception:  # diagnostics must never hide the original error
        pass
    finally:
        torch.set_rng_state(saved)
        for h in handles:
            h.remove()
    return found[0] if found else " (every layer's output is finite: the loss itself overflowed)"


def _tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _unpack(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        f"train_loader must yield (inputs, targets) pairs; got {type(batch).__name__}"
        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        + ". Yield (inputs, None) when there are no targets."
    )


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_to_device(o, device) for o in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def _tbptt_chunks(inputs: Any, targets: Any, k: int) -> Iterator[tuple[Any, Any]]:
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


def _numeric_metrics(metrics: Any, what: str) -> dict[str, float]:
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


def _progress_info(record: dict, epochs: Optional[int]) -> str:
    """``'epoch 3/30 train_loss 0.4321 val_accuracy 0.95'`` (the epoch when shared)."""
    parts = [] if epochs is None else [f"epoch {record['epoch']}/{epochs}"]
    parts.append(f"train_loss {record['train_loss']:.4g}")
    shown = [k for k in record if k not in _RECORD_KEYS and not k.startswith("train_")]
    for key in shown[:3]:
        value = record[key]
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


def _progress_bar(loader: Iterable, epoch: int) -> Any:
    try:  # tqdm is an optional dependency (the 'apps' extra)
        from tqdm import tqdm
    except ImportError:
        return None
    total = len(loader) if hasattr(loader, "__len__") else None
    # disable=None: no bar when stderr is not a terminal (batch jobs, CI logs), where every
    # refresh would be a new line
    return tqdm(loader, total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
                disable=None)


def _loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The loader's own generator and, if it is another object, its sampler's."""
    found: dict[str, torch.Generator] = {}
    for key, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found.values()):
            found[key] = gen
    return found


def _rng_state(loader: Any) -> dict:
    """Every RNG state, as tensors and plain Python types (loadable with weights_only=True)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),  # uint32 -> int64: lossless
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "generators": {k: g.get_state() for k, g in _loader_generators(loader).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, loader: Any, path: Path) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (
            py_state["version"],
            tuple(int(v) for v in py_state["internal"].tolist()),
            py_state["gauss_next"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn(
                f"checkpoint {path} holds CUDA RNG states of {len(state['cuda'])} devices but "
                f"{torch.cuda.device_count()} are visible; CUDA random numbers will differ from "
                "the original run",
                stacklevel=3,
            )
    saved, current = state.get("generators", {}), _loader_generators(loader)
    for key in saved.keys() | current.keys():
        if key in saved and key in current:
            current[key].set_state(saved[key])
        else:
            warnings.warn(
                f"checkpoint {path} {'has' if key in saved else 'has no'} a {key} generator state "
                "but the "
                f"train_loader {'has no' if key in saved else 'has a'} {key} generator; the data "
                "order "
                "after resuming will differ from the original run. Build the loader as in that "
                "run.",
                stacklevel=3,
            )
