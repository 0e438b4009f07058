"""The trainer's epoch log, in the formats users read it with: JSON lines (always, the
mirror of :attr:`Trainer.history`), CSV and TensorBoard event files.

A logger has two writes: :meth:`~Logger.rewrite` puts the whole history down (at the start of
``fit``, so a resumed run's log holds exactly the epochs it kept, none twice) and
:meth:`~Logger.append` adds one epoch's record. ``Trainer(..., loggers=[CsvLogger("log.csv"),
TensorBoardLogger("tb")])``; an app's ``--set log=csv,tensorboard`` picks them by name
(:func:`loggers_for`).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

__all__ = ["Logger", "JsonLinesLogger", "CsvLogger", "TensorBoardLogger", "FORMATS",
           "loggers_for", "check_formats", "rewrite_log", "append_log"]

PathLike = Union[str, Path]


def rewrite_log(path: Optional[Path], history: Iterable[Mapping]) -> None:
    """Write ``history`` to ``path`` as JSON lines (nothing if ``path`` is None), replacing
    the file."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")


def append_log(path: Optional[Path], record: Mapping) -> None:
    """Add one record to ``path`` (nothing if ``path`` is None)."""
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


class Logger:
    """Base of the epoch loggers; subclasses implement :meth:`rewrite` and :meth:`append`."""

    def rewrite(self, history: Sequence[Mapping]) -> None:
        raise NotImplementedError

    def append(self, record: Mapping) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release files (the trainer calls it when ``fit`` returns or fails)."""


class JsonLinesLogger(Logger):
    """One JSON object per epoch: every key of the record, nested values included."""

    def __init__(self, path: PathLike):
        self.path = Path(path)

    def rewrite(self, history: Sequence[Mapping]) -> None:
        rewrite_log(self.path, history)

    def append(self, record: Mapping) -> None:
        append_log(self.path, record)


def _cell(value):
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


class CsvLogger(Logger):
    """One row per epoch. The columns are the keys in order of first appearance; a record
    with a new key rewrites the file with the wider header (earlier rows leave it empty)."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._rows: List[Mapping] = []
        self._columns: List[str] = []

    def rewrite(self, history: Sequence[Mapping]) -> None:
        self._rows = [dict(r) for r in history]
        self._columns = []
        for r in self._rows:
            self._columns += [k for k in r if k not in self._columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, self._columns)
            w.writeheader()
            w.writerows({k: _cell(v) for k, v in r.items()} for r in self._rows)

    def append(self, record: Mapping) -> None:
        if not self.path.exists() or any(k not in self._columns for k in record):
            self.rewrite(self._rows + [record])
            return
        self._rows.append(dict(record))
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self._columns).writerow({k: _cell(v) for k, v in record.items()})


def _scalars(record: Mapping, prefix: str = "") -> Dict[str, float]:
    out: Dict[str, float] = {}
    for k, v in record.items():
        if isinstance(v, Mapping):
            out.update(_scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = float(v)
    return out


class TensorBoardLogger(Logger):
    """Every numeric value of a record as a TensorBoard scalar at step ``record["epoch"]``
    (nested dicts as ``outer/inner`` tags), written with ``torch.utils.tensorboard`` (extra
    ``log``: the ``tensorboard`` package). A rewrite starts a new event file that purges
    the earlier files' steps, so a resumed run shows each epoch once."""

    def __init__(self, log_dir: PathLike):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("TensorBoardLogger needs the tensorboard package: pip install "
                              "'spikegrad[log]' (or pip install tensorboard)") from e
        self._writer_cls = SummaryWriter
        self.log_dir = Path(log_dir)
        self._writer = None
        self._count = 0

    def _write(self, record: Mapping, index: int) -> None:
        step = int(record.get("epoch", index + 1))
        for tag, value in _scalars({k: v for k, v in record.items() if k != "epoch"}).items():
            if math.isfinite(value):
                self._writer.add_scalar(tag, value, step)

    def rewrite(self, history: Sequence[Mapping]) -> None:
        self.close()
        self._writer = self._writer_cls(str(self.log_dir), purge_step=0)
        for i, r in enumerate(history):
            self._write(r, i)
        self._writer.flush()
        self._count = len(history)

    def append(self, record: Mapping) -> None:
        if self._writer is None:
            self.rewrite([])
        self._write(record, self._count)
        self._count += 1
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


#: names an app's ``log`` key accepts -> the logger and its path next to ``log.jsonl``
FORMATS = ("csv", "tensorboard")


def check_formats(spec: str) -> List[str]:
    """``"csv,tensorboard"`` -> the names, each checked (``""``: none); a ``ValueError`` names
    an unknown one, an ``ImportError`` the missing extra."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise ValueError(f"log must be a comma-separated list of {', '.join(FORMATS)} (the "
                         f"JSON-lines log is always written); got {spec!r}")
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError as e:
            raise ImportError("log=tensorboard needs the tensorboard package: pip install "
                              "'spikegrad[log]' (or pip install tensorboard)") from e
    return names


def loggers_for(spec: str, jsonl_path: PathLike) -> List[Logger]:
    """The extra loggers an app's ``log`` key names, beside its JSON-lines log
    ``.../NAME.jsonl``: ``csv`` -> ``.../NAME.csv``, ``tensorboard`` -> ``.../tb/NAME/``."""
    path = Path(jsonl_path)
    out: List[Logger] = []
    for name in check_formats(spec):
        out.append(CsvLogger(path.with_suffix(".csv")) if name == "csv"
                   else TensorBoardLogger(path.parent / "tb" / path.stem))
    return out
