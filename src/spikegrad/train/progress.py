"""Whole-run progress as plain lines: one per epoch (or sweep point) with a whole-run ETA.

Lines, not a redrawn bar, because long runs end up in log files and batch-job outputs,
where every redraw of a bar becomes a line of its own and an ETA is what one looks for.
A run made of several trainings (several models, a sweep) shares one :class:`Progress`
so that its ETA covers the whole run, not the current training.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(2, "demo", stream=out)
    >>> p.update(info="loss 0.5"); p.update(info="loss 0.25")
    >>> [line.split(" | ")[0] for line in out.getvalue().splitlines()]
    ['demo 1/2 loss 0.5', 'demo 2/2 loss 0.25']
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any, Iterable, Optional

from .epoch import RECORD_KEYS

__all__ = ["Progress", "format_seconds", "epoch_line", "batch_bar"]


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1m15s'``; ``4000`` -> ``'1h06m'``; ``3.2`` -> ``'3.2s'``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Counts units of work (epochs, sweep points) and prints a line per unit with an ETA.

    Args:
        total: units in the whole run.
        desc: what a line starts with (e.g. the app's name).
        enabled: ``False`` prints nothing (the counting still works).
        stream: where lines go; ``None``: ``sys.stdout`` at the time of each line (so
            redirections made after construction, e.g. by pytest, are honoured).
        every: print every this many units (and always the first and the last); ``None``:
            about 50 lines per run at most.

    The ETA is the mean time per unit done *in this process* times the units left: units
    restored from a checkpoint (:meth:`skip`) count as done but not in the rate.
    """

    def __init__(self, total: int, desc: str = "", *, enabled: bool = True,
                 stream: Optional[IO[str]] = None, every: Optional[int] = None) -> None:
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total must be an int >= 1 (units of work in the run); got "
                             f"{total!r}")
        self.total = total
        self.desc = desc
        self.enabled = bool(enabled)
        self.stream = stream
        self.every = every if every is not None else max(1, math.ceil(total / 50))
        self.done = 0
        self._timed = 0
        self._start = time.perf_counter()

    def skip(self, n: int = 1) -> None:
        """``n`` units were done before this process (restored on resume): no line, no rate."""
        self.done = min(self.total, self.done + n)
        self._start = time.perf_counter()
        self._timed = 0

    def update(self, n: int = 1, info: str = "") -> None:
        """``n`` more units done; print a line if one is due. ``info``: e.g. the loss."""
        self.done = min(self.total, self.done + n)
        self._timed += n
        if not self.enabled:
            return
        if self._timed == n or self.done == self.total or self.done % self.every == 0:
            self._print(info)

    def eta_seconds(self) -> float:
        if self._timed == 0:
            return math.nan
        per_unit = (time.perf_counter() - self._start) / self._timed
        return per_unit * (self.total - self.done)

    def line(self, info: str = "") -> str:
        head = " ".join(s for s in (self.desc, f"{self.done}/{self.total}", info) if s)
        elapsed = time.perf_counter() - self._start
        tail = f"elapsed {format_seconds(elapsed)}"
        if self.done < self.total:
            tail += f" | ETA {format_seconds(self.eta_seconds())}"
        return f"{head} | {tail}"

    def _print(self, info: str) -> None:
        stream = self.stream if self.stream is not None else sys.stdout
        print(self.line(info), file=stream, flush=True)

    def close(self) -> None:
        """Nothing to release (lines are already written); kept so a tqdm bar's callers fit."""


def epoch_line(record: dict, epochs: Optional[int]) -> str:
    """``'epoch 3/30 train_loss 0.4321 val_accuracy 0.95'`` (the epoch when shared)."""
    parts = [] if epochs is None else [f"epoch {record['epoch']}/{epochs}"]
    parts.append(f"train_loss {record['train_loss']:.4g}")
    shown = [k for k in record if k not in RECORD_KEYS and not k.startswith("train_")]
    for key in shown[:3]:
        value = record[key]
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


def batch_bar(loader: Iterable, epoch: int) -> Any:
    """A tqdm bar over the epoch's batches, or None (tqdm missing, or not a terminal)."""
    try:  # tqdm is an optional dependency (the 'apps' extra)
        from tqdm import tqdm
    except ImportError:
        return None
    total = len(loader) if hasattr(loader, "__len__") else None
    # disable=None: no bar when stderr is not a terminal (batch jobs, CI logs), where every
    # refresh would be a new line
    return tqdm(loader, total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True,
                disable=None)
