"""The trainer's JSON-lines log: one record per epoch, always a mirror of its history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Optional

__all__ = ["rewrite_log", "append_log"]


def rewrite_log(path: Optional[Path], history: Iterable[Mapping]) -> None:
    """Write ``history`` to ``path`` (nothing if ``path`` is None), replacing the file."""
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
