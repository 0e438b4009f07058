"""Stop a training run cleanly on SIGINT/SIGTERM: finish the batch, checkpoint, then exit.

A scheduler (SLURM, Kubernetes, a laptop lid) sends SIGTERM before it kills a job; Ctrl-C
sends SIGINT. Either only sets a flag here; the trainer checks it after each optimizer step,
writes a mid-epoch checkpoint and raises :class:`TrainingInterrupted`, so the run resumes
exactly where it stopped. A second SIGINT while the first is being handled raises
``KeyboardInterrupt`` at once (the user insists; the previous checkpoint is still valid,
because checkpoint writes are atomic).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

__all__ = ["TrainingInterrupted", "StopSignals"]


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint.

    Attributes:
        signum: the signal number (``signal.SIGINT`` or ``signal.SIGTERM``).
        checkpoint: the checkpoint written before stopping, or ``None`` when the trainer has
            no ``checkpoint_dir``.
    """

    def __init__(self, signum: int, checkpoint: Optional[Path]):
        self.signum = int(signum)
        self.checkpoint = checkpoint
        where = (
            f"checkpoint saved to {checkpoint}; resume with fit(..., resume='latest')"
            if checkpoint is not None
            else "no checkpoint_dir was given, so nothing was saved"
        )
        super().__init__(f"training stopped by {signal.Signals(signum).name}: {where}")

    @property
    def exit_code(self) -> int:
        """The shell convention for death by this signal: 128 + signal number."""
        return 128 + self.signum


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM set :attr:`signum` instead of killing.

    Handlers can only be installed from the main thread; elsewhere (a trainer driven from a
    worker thread) this is a no-op and signals keep their default behaviour.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
