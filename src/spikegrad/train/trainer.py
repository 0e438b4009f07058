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

Under ``torchrun`` (or in a process group the user initialised) the same loop trains
data-parallel: DDP around the objective's forward, a ``DistributedSampler`` for a
``DataLoader``, epoch metrics summed over the ranks, checkpoints, logs, progress and
``evaluate`` on rank 0, exact resume of every rank (see :mod:`spikegrad.train.distributed`
and docs/tutorials/distributed.md). In one process nothing of this runs.

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

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .._validate import check_int
from ..functional.state import detach_state
from ..functional.truncation import truncate_gradients
from ..nn.base import StatefulModule
from .checkpoint import (
    latest_valid,
    checkpoint_path,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from .arguments import check_trainer_args
from .objective import Objective, ObjectiveOutput, checked_output, global_grad_norm
from .batches import numeric_metrics, tbptt_chunks, to_device, unpack_batch
from .diagnose import first_nonfinite, nonfinite_gradients
from .learner import Learner, Updates
from .epoch import EpochSums, NotLearningWarning, check_learning, epoch_record
from .interrupt import StopSignals, TrainingInterrupted
from .progress import Progress, batch_bar, epoch_line
from .log import JsonLinesLogger, Logger
from .rng import rng_state, set_rng_state
from .distributed import init_from_env
from .snapshot import restore_trainer, trainer_payload

__all__ = ["ObjectiveOutput", "Objective", "Learner", "Trainer", "NotLearningWarning"]

PathLike = Union[str, "os.PathLike[str]"]


class Trainer:
    """Train a model with a user-supplied objective.

    Args:
        model: the module; its ``forward`` is called by the objective, not the trainer.
        optimizer: any ``torch.optim.Optimizer`` over the trainable parameters.
        objective: ``objective(model, inputs, targets, state) -> ObjectiveOutput``; ``state``
            is ``None`` at the start of each batch. The trainer calls ``loss.backward()``.
        learner: instead of an objective, a training rule that computes its own gradients
            and applies them through the ``update()`` it is given, possibly several times per
            batch: ``learner(model, inputs, targets, update) -> ObjectiveOutput`` (see
            :mod:`spikegrad.train.learner`). Clipping, the NaN/Inf guard, checkpoints and
            resume are the same as with an objective.
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
        tbptt_mode: how ``tbptt`` runs. ``"chunks"`` (default): as above, the objective
            called once per chunk; memory is that of one chunk. ``"whole"``: the objective
            is called once on the whole sequence under
            :func:`spikegrad.functional.truncate_gradients` (``tbptt``): the same gradient when
            the objective's loss is a sum of per-chunk terms (e.g. a per-step loss summed or
            averaged over the whole sequence), in one pass, without the per-chunk cost of
            the chunked loop; memory is that of the whole sequence. Every stateful layer
            must be a :class:`spikegrad.nn.StatefulModule` (see
            :mod:`spikegrad.functional.truncation`).
        evaluate: ``evaluate(model) -> dict`` of numbers, run after each epoch under
            ``torch.no_grad()`` and ``model.eval()``; its keys are logged as given.
        log_path: JSON-lines file with one record per epoch. It always mirrors
            :attr:`history`: ``fit`` rewrites it from the history (empty on a fresh run),
            then appends each new epoch.
        loggers: more formats of the same log, written the same way (rewrite, then append):
            :class:`~spikegrad.train.log.CsvLogger`, :class:`~spikegrad.train.log.TensorBoardLogger`
            or your own :class:`~spikegrad.train.log.Logger`; closed when ``fit`` returns.
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
        step: number of optimizer steps taken (one per batch; a learner may take several).

    An epoch record holds ``epoch`` (1-based), ``step`` (global optimizer steps so far),
    ``train_loss`` (weighted mean of batch losses; with TBPTT a batch's loss is the sum of
    its chunk losses), ``lr`` (of the first parameter group, as used during the epoch, i.e.
    before the scheduler step), ``grad_norm_mean`` and ``grad_norm_max`` (of the pre-clip
    global gradient norms of the epoch's batches; a batch with several learner updates counts
    its largest), ``seconds`` (wall time of training and
    evaluation), then ``train_<metric>`` for objective metrics and the evaluate metrics.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        objective: Optional[Objective] = None,
        *,
        learner: Optional[Learner] = None,
        scheduler: Any = None,
        grad_clip: Optional[float] = None,
        tbptt: Optional[int] = None,
        evaluate: Optional[Callable[[nn.Module], Mapping[str, float]]] = None,
        log_path: Optional[PathLike] = None,
        loggers: Sequence[Logger] = (),
        checkpoint_dir: Optional[PathLike] = None,
        checkpoint_every: int = 1,
        keep_checkpoints: Optional[int] = 3,
        progress: Union[bool, Progress] = True,
        device: Union[str, torch.device, None] = None,
        checkpoint_every_steps: Optional[int] = None,
        nonfinite: str = "raise",
        tbptt_mode: str = "chunks",
    ) -> None:
        grad_clip = check_trainer_args(model, optimizer, objective, learner, scheduler,
                                       grad_clip, tbptt, evaluate, checkpoint_every,
                                       keep_checkpoints, checkpoint_every_steps, nonfinite,
                                       tbptt_mode)
        if tbptt is not None and tbptt_mode == "whole" and not any(
                isinstance(m, StatefulModule) for m in model.modules()):
            raise ValueError(
                "tbptt_mode='whole' cuts the gradient inside spikegrad's stateful modules "
                f"(spikegrad.nn.StatefulModule), and {type(model).__name__} contains none, so "
                "nothing would be cut. Use tbptt_mode='chunks', or build the model's stateful "
                "parts as StatefulModules.")
        # a job's backend follows where training happens: gloo on CPU, nccl on CUDA
        self._ranks = init_from_env(device if device is not None else
                                    next(model.parameters(), torch.empty(0)).device)
        self._ranks.check_same({
            "objective or learner": "learner" if learner is not None else "objective",
            "scheduler": scheduler is not None, "grad_clip": grad_clip, "tbptt": tbptt,
            "tbptt_mode": tbptt_mode, "evaluate": evaluate is not None,
            "checkpoint_dir": checkpoint_dir is not None,
            "checkpoint_every": checkpoint_every, "checkpoint_every_steps": checkpoint_every_steps,
            "nonfinite": nonfinite})
        self.device = self._ranks.device(None if device is None else torch.device(device))
        if self.device is not None:
            model.to(self.device)
        self.model = model
        # DDP around the objective's forward (None in one process or for a learner, whose
        # gradients do not come from backward and are averaged in its update() instead)
        self._ddp = None if learner is not None else self._ranks.wrap(model)
        if learner is not None:
            self._ranks.broadcast_module(model)
        self.optimizer = optimizer
        self.objective = objective
        self.learner = learner
        self.scheduler = scheduler
        self.grad_clip = grad_clip
        self.tbptt = tbptt
        self.tbptt_mode = tbptt_mode
        self.evaluate = evaluate
        self.log_path = None if log_path is None else Path(log_path)
        self.loggers = ([] if log_path is None else [JsonLinesLogger(log_path)]) + list(loggers)
        for lg in self.loggers:
            if not all(callable(getattr(lg, m, None)) for m in ("rewrite", "append", "close")):
                raise TypeError(f"loggers: {type(lg).__name__} is not a logger (it needs "
                                "rewrite(history), append(record) and close(); see "
                                "spikegrad.train.log)")
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_every_steps = checkpoint_every_steps
        self.nonfinite = nonfinite
        self._shared_progress = progress if isinstance(progress, Progress) else None
        self.progress = (bool(progress.enabled if isinstance(progress, Progress) else progress)
                         and self._ranks.main)
        self.history: list[dict] = []
        self.epoch = 0
        self.step = 0
        # A mid-epoch checkpoint restored by resume: (RNG states at the epoch's start, the
        # epoch's running sums, RNG states at the save). Consumed by the next _run_epoch.
        self._pending: Optional[tuple[dict, "EpochSums", dict]] = None
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
                TBPTT splits dim 0 of the batch as the loader yields it). Under torchrun a
                ``DataLoader`` is sharded over the ranks with a ``DistributedSampler`` (the
                same ``batch_size`` per rank); any other iterable must be the rank's share.
            epochs: total number of epochs, counting those already done (restored by
                ``resume`` or by an earlier ``fit``); e.g. ``fit(loader, 10, resume="latest")``
                after a crash at epoch 7 trains epochs 8..10. Must be >= 1.
            resume: ``None`` (continue from this trainer's current state, which is the
                start for a new trainer), ``"latest"`` (newest valid checkpoint in
                ``checkpoint_dir``; start fresh if there is none), or a checkpoint path.
                Restores model, optimizer, scheduler, epoch, step, history and the torch,
                CUDA, NumPy, Python and loader-generator RNG states (each rank's own, under
                torchrun; the checkpoint is read by rank 0 and sent to the others).

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
        train_loader = self._ranks.shard(train_loader)
        self._ranks.check_same_length(train_loader)
        if resume is not None:
            self._resume(resume, train_loader)
        loggers = self.loggers if self._ranks.main else []
        for lg in loggers:
            lg.rewrite(self.history)
        try:
            return self._fit(train_loader, epochs, before, loggers)
        finally:
            for lg in loggers:
                lg.close()

    def _fit(self, train_loader: Iterable, epochs: int, before: int,
             loggers: Sequence[Logger]) -> list[dict]:
        end = epochs
        progress = self._shared_progress if self._ranks.main else None
        if progress is None and self.progress and self.epoch < end:
            progress = Progress(end, "epoch")
            progress.skip(self.epoch)
        elif progress is not None:
            progress.skip(max(0, self.epoch - before))  # restored by resume
        with StopSignals() as self._signals:
            while self.epoch < end:
                record = self._run_epoch(train_loader)
                self.history.append(record)
                for lg in loggers:
                    lg.append(record)
                if progress is not None:
                    shared = progress is self._shared_progress
                    progress.update(1, epoch_line(record, end if shared else None))
                if self._ranks.main:
                    check_learning(self.history)
                if self.checkpoint_dir is not None and (
                    self.epoch % self.checkpoint_every == 0 or self.epoch == end
                ):
                    self._save(train_loader)
        return list(self.history)

    # ------------------------------------------------------------------ one epoch

    def _run_epoch(self, train_loader: Iterable) -> dict:
        epoch = self.epoch + 1
        self.model.train()
        self._ranks.set_epoch(train_loader, self.epoch)
        epoch_rng, sums, resume_rng = self._epoch_start(train_loader)
        skip = sums.batches
        start = time.perf_counter() - sums.seconds
        bar = batch_bar(train_loader, epoch) if self.progress else None
        try:
            for batch_index, batch in enumerate(train_loader if bar is None else bar):
                if batch_index < skip:
                    if batch_index == skip - 1:  # the next fetch is the first to train on
                        set_rng_state(resume_rng, None, Path("<mid-epoch checkpoint>"))
                        resume_rng = None
                    continue
                self._train_and_count(batch, epoch, batch_index, sums, bar)
                self._maybe_save_mid_epoch(train_loader, epoch_rng, sums, start)
        finally:
            if bar is not None:
                bar.close()
        if resume_rng is not None:  # saved after the epoch's last batch: nothing was left
            set_rng_state(resume_rng, None, Path("<mid-epoch checkpoint>"))
        if sums.batches == 0:
            raise ValueError(
                "train_loader yielded no batches; check the dataset size and batch_size/drop_last"
            )
        if self._ranks.active:  # every rank's share of the epoch, summed
            sums = EpochSums.merged(self._ranks.all_gather(sums))
        if sums.weight == 0:
            raise FloatingPointError(
                f"every batch of epoch {epoch} had a non-finite loss or gradient and was "
                "skipped; lower the learning rate or check the data"
            )
        train_loss = sums.loss / sums.weight
        eval_metrics = self._ranks.on_main(self._evaluate)
        self._step_scheduler(train_loss)
        record = epoch_record(epoch, self.step, sums, time.perf_counter() - start, eval_metrics,
                              count_skipped=self.nonfinite == "skip")
        self.epoch = epoch
        return record

    def _epoch_start(self, train_loader: Iterable) -> tuple[dict, EpochSums, Optional[dict]]:
        """``(RNG states at the epoch's start, running sums, RNG states to continue from after
        the skipped batches or None)``; a fresh epoch, or the one a mid-epoch checkpoint
        left, rewound to its start so the loader draws the same order."""
        if self._pending is None:
            sums = EpochSums(lr=float(self.optimizer.param_groups[0]["lr"]))
            return rng_state(train_loader), sums, None
        epoch_rng, sums, saved_rng = self._pending
        self._pending = None
        set_rng_state(epoch_rng, train_loader, Path("<mid-epoch checkpoint>"))
        # Only the global RNGs: the loader's generators advance by replaying the skipped
        # batches (fetching a batch may draw from them, e.g. RandomSampler at its end).
        return epoch_rng, sums, {k: v for k, v in saved_rng.items() if k != "generators"}

    def _train_and_count(self, batch: Any, epoch: int, batch_index: int, sums: EpochSums,
                         bar: Any) -> None:
        """Train on one batch and add it to the epoch's sums (a skipped one counted)."""
        inputs, targets = unpack_batch(batch)
        if self.device is not None:
            inputs, targets = to_device(inputs, self.device), to_device(targets, self.device)
        result = self._train_batch(inputs, targets, epoch, batch_index)
        if result is None:  # non-finite, skipped
            sums.skipped += 1
            sums.batches += 1
            return
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

    def _train_batch(
        self, inputs: Any, targets: Any, epoch: int, batch_index: int
    ) -> Optional[tuple[float, dict, float]]:
        """Forward/backward over the batch (chunk by chunk with TBPTT), guard, clip, step.

        Returns ``(loss, metrics, pre-clip grad norm)``, or ``None`` when a non-finite loss
        or gradient was skipped (``nonfinite="skip"``).
        """
        self.optimizer.zero_grad(set_to_none=True)
        if self.learner is not None:
            where = f"epoch {epoch}, batch index {batch_index}"
            return self._learner_batch(inputs, targets, where)
        whole = self.tbptt is not None and self.tbptt_mode == "whole"
        chunks = None if self.tbptt is None else list(tbptt_chunks(inputs, targets, self.tbptt))
        if chunks is None or whole:  # whole: split above only to check the inputs' layout
            chunks = [(inputs, targets)]
        with truncate_gradients(self.tbptt) if whole else contextlib.nullcontext():
            return self._backward_chunks(chunks, epoch, batch_index)

    def _backward_chunks(self, chunks: list, epoch: int, batch_index: int
                         ) -> Optional[tuple[float, dict, float]]:
        n_chunks = len(chunks)
        state = None
        loss_total = 0.0
        metric_sums: dict[str, float] = {}
        metric_counts: dict[str, int] = {}
        for chunk_index, (x, y) in enumerate(chunks):
            # Kept so a failing chunk can be replayed with the same random numbers to find
            # the layer that produced the first NaN/Inf.
            rng = torch.get_rng_state()
            with self._gradient_sync(last=chunk_index + 1 == n_chunks):
                out = self._call_objective(x, y, state)
                loss_value = float(out.loss.detach())
                if not self._ranks.all_true(math.isfinite(loss_value)):
                    where = f"epoch {epoch}, batch index {batch_index}" + (
                        "" if self.tbptt is None else f", TBPTT chunk {chunk_index}"
                    )
                    culprit = first_nonfinite(self.model, self.objective, x, y, state, rng)
                    what = (f"loss is {loss_value}" if not math.isfinite(loss_value)
                            else "another rank's loss is not finite")
                    return self._nonfinite(
                        f"{what} at {where}{culprit}; the optimizer was not stepped "
                        "for this batch. Lower the learning rate, clip gradients (grad_clip=...) "
                        "or check the inputs and the loss for log(0) or division by zero."
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
            for name, value in numeric_metrics(out.metrics, "objective metrics").items():
                metric_sums[name] = metric_sums.get(name, 0.0) + value
                metric_counts[name] = metric_counts.get(name, 0) + 1
        # Chunks of one batch see the same samples, so their metrics are averaged (a per-chunk
        # 'n' stays the batch size) while the losses, each already a gradient term, add up.
        metrics = {name: metric_sums[name] / metric_counts[name] for name in metric_sums}
        grad_norm = self._clip_gradients()
        if not math.isfinite(grad_norm):
            bad = nonfinite_gradients(self.model)
            return self._nonfinite(
                f"gradient norm is {grad_norm} at epoch {epoch}, batch index {batch_index} "
                f"although the loss is finite (non-finite gradient of {', '.join(bad) or '?'}); "
                "the optimizer was not stepped for this batch. Check the surrogate slope and "
                "the model for overflow, or lower the learning rate."
            )
        self.optimizer.step()
        self.step += 1
        return loss_total, metrics, grad_norm

    def _learner_batch(self, inputs: Any, targets: Any, where: str
                       ) -> Optional[tuple[float, dict, float]]:
        update = Updates(self.optimizer, self.model, self.grad_clip, self.nonfinite, where,
                         sync=self._ranks.average_gradients if self._ranks.active else None)
        try:
            out = checked_output(self.learner(self.model, inputs, targets, update),
                                 needs_grad=False)
            if update.calls == 0:
                update()
        finally:
            self.step += len(update.norms)
        loss = float(out.loss.detach())
        if not math.isfinite(loss):
            return self._nonfinite(
                f"loss is {loss} at {where}; the learner's {len(update.norms)} update(s) of "
                "this batch were applied. Lower the learning rate or clip gradients "
                "(grad_clip=...).")
        if not update.norms:  # every update was non-finite and skipped
            return None
        return loss, numeric_metrics(out.metrics, "learner metrics"), max(update.norms)

    def _nonfinite(self, message: str) -> None:
        if self.nonfinite == "raise":
            raise FloatingPointError(message)
        self.optimizer.zero_grad(set_to_none=True)
        warnings.warn(f"skipped a step: {message}", RuntimeWarning, stacklevel=3)
        return None

    def _call_objective(self, inputs: Any, targets: Any, state: Any) -> ObjectiveOutput:
        if self._ddp is not None:
            return checked_output(self._ddp(self.objective, inputs, targets, state))
        return checked_output(self.objective(self.model, inputs, targets, state))

    def _gradient_sync(self, last: bool) -> Any:
        """DDP averages the gradients in the backward of a batch's last TBPTT chunk only: the
        earlier chunks' gradients accumulate locally and are averaged with it, once."""
        if self._ddp is None or last:
            return contextlib.nullcontext()
        return self._ddp.no_sync()

    def _clip_gradients(self) -> float:
        return global_grad_norm(self.optimizer, self.grad_clip)

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
        return numeric_metrics(result, "evaluate's result")

    def _step_scheduler(self, train_loss: float) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(train_loss)
        else:
            self.scheduler.step()

    # ------------------------------------------------------------------ checkpoints

    def _maybe_save_mid_epoch(
        self, train_loader: Iterable, epoch_rng: dict, sums: "EpochSums", start: float
    ) -> None:
        signum = None if self._signals is None else self._signals.signum
        # a signal reaches the ranks at different batches; all stop after the same one
        signum = self._ranks.max_int(signum or 0) or None
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
        """Checkpoint after ``self.epoch`` epochs, plus ``partial`` batches into the next.
        Rank 0 writes it, with every rank's RNG states and running sums."""
        per_rank = (self._ranks.gather({"rng": rng_state(train_loader), "partial": partial})
                    if self._ranks.active else None)

        def write() -> Path:
            payload = trainer_payload(self, train_loader, partial)
            if self._ranks.active:
                payload["ranks"] = per_rank
            batch = 0 if partial is None else partial["sums"]["batches"]
            path = save_checkpoint(checkpoint_path(self.checkpoint_dir, self.epoch, batch),
                                   payload)
            if self.keep_checkpoints is not None:
                prune_checkpoints(self.checkpoint_dir, self.keep_checkpoints, upto=self.epoch)
            return path

        return self._ranks.on_main(write)

    def _resume(self, resume: PathLike, train_loader: Iterable) -> None:
        if isinstance(resume, str) and resume == "latest":
            if self.checkpoint_dir is None:
                raise ValueError(
                    'resume="latest" needs checkpoint_dir=... in Trainer(...), or pass a '
                    "checkpoint path"
                )
            # rank 0's folder is the run's: the other ranks may not even see it
            found = self._ranks.on_main(lambda: latest_valid(self.checkpoint_dir))
            if found is None:
                # Nothing saved yet: start fresh, so a preemptible job can always pass "latest".
                return
            path, payload = found
        else:
            path = Path(resume)
            payload = self._ranks.on_main(lambda: load_checkpoint(path))
        payload = self._ranks.own_part(payload, path)
        self._pending = restore_trainer(self, payload, path, train_loader)
