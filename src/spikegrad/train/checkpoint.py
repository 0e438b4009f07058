"""Checkpoint files that survive crashes and say so when they did not.

A checkpoint is one file, ``torch.save`` of a small wrapper::

    {"format": "spikegrad.checkpoint", "version": 1,
     "sha256": <hex digest of the serialized payload>,
     "payload": <uint8 tensor: the payload serialized by torch.save>}

so ``torch.load(path, weights_only=True)`` can always open it, and a truncated or
bit-flipped file is detected by the hash rather than loaded as garbage. Writes are atomic:
a temporary file in the same folder is written, flushed, fsync'ed and ``os.replace``'d onto
the target, then the folder itself is fsync'ed, so a crash leaves either the old file or the
new one, never half of one.

The payload must hold only what ``torch.load(..., weights_only=True)`` accepts: tensors and
plain Python containers/scalars (dict, list, tuple, str, int, float, bool, None).
:func:`save_checkpoint` checks this before writing, so an unloadable checkpoint is reported
at save time, not at resume time.

Trainer checkpoints are named ``ckpt_epoch{E:05d}.pt`` after ``E`` complete epochs, and
``ckpt_epoch{E:05d}_batch{b:07d}.pt`` when saved ``b`` batches into epoch ``E + 1`` (on
SIGINT/SIGTERM or every N steps; see :func:`checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import torch

from .._validate import check_int

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "checkpoint_path",
    "list_checkpoints",
    "prune_checkpoints",
    "latest_valid",
    "check_trainer_payload",
]

PathLike = Union[str, "os.PathLike[str]"]

_FORMAT = "spikegrad.checkpoint"
_VERSION = 1
_NAME = re.compile(r"^ckpt_epoch(\d{5,})(?:_batch(\d{7,}))?\.pt$")


def checkpoint_path(directory: PathLike, epoch: int, batch: int = 0) -> Path:
    """Path of a checkpoint in ``directory``.

    Args:
        directory: the folder.
        epoch: number of complete epochs.
        batch: batches done in the epoch after those (0: saved at an epoch's end).

    Returns:
        ``ckpt_epoch{E:05d}.pt``, or ``ckpt_epoch{E:05d}_batch{b:07d}.pt`` for ``batch > 0``.
    """
    suffix = f"_batch{batch:07d}" if batch else ""
    return Path(directory) / f"ckpt_epoch{epoch:05d}{suffix}.pt"


def list_checkpoints(directory: PathLike) -> list[tuple[int, Path]]:
    """List the ``ckpt_epoch*.pt`` files in ``directory``, oldest first.

    Args:
        directory: the folder; a missing folder holds no checkpoints.

    Returns:
        ``[(epoch, path), ...]`` in training order: by complete epochs, then by batches into
        the next epoch (a mid-epoch file comes after its epoch's end file). Files are not
        opened or validated.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), int(match.group(2) or 0), entry))
    return [(epoch, path) for epoch, _, path in sorted(found)]


def save_checkpoint(path: PathLike, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically, with a SHA-256 of its serialized bytes.

    Args:
        path: target file; its folder is created if missing. An existing file is replaced
            only once the new one is completely on disk.
        payload: a dict of tensors and plain Python types (loadable with
            ``torch.load(weights_only=True)``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``payload`` is not a dict, or holds objects that
            ``torch.load(weights_only=True)`` would refuse (nothing is written then).
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict; got {type(payload).__name__}")
    path = Path(path)
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
        data = buffer.getvalue()
        # Catch unloadable content now: finding out only when resuming after a crash is
        # exactly when it hurts.
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TypeError(
            f"cannot save checkpoint {path}: the payload must round-trip through "
            f"torch.load(weights_only=True) ({type(exc).__name__}: {exc}). Store only tensors and "
            "dict/list/tuple/str/int/float/bool/None; convert numpy arrays with torch.from_numpy "
            "and objects to their state_dict()."
        ) from exc
    wrapper = {
        "format": _FORMAT,
        "version": _VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    _atomic_write(path, lambda f: torch.save(wrapper, f))
    return path


def load_checkpoint(path: PathLike, *, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and verify its hash.

    Args:
        path: the file.
        map_location: where tensors are put, as in ``torch.load`` (default CPU, so a GPU
            checkpoint opens on any machine; ``load_state_dict`` moves values to the model).

    Returns:
        The payload dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, corrupt, or not a spikegrad checkpoint. The
            message names the file; resume from an earlier checkpoint instead
            (:func:`latest_checkpoint` skips corrupt files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    advice = (
        "Delete it and resume from an earlier checkpoint; latest_checkpoint(folder) skips "
        "corrupt files and falls back to the previous one."
    )
    try:
        wrapper = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"checkpoint {path} is truncated or corrupt and cannot be read "
            f"({type(exc).__name__}: {exc}). {advice}"
        ) from exc
    if not isinstance(wrapper, dict) or wrapper.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not a spikegrad checkpoint (no {_FORMAT!r} header): it was not written by "
            "save_checkpoint. Open plain torch files with torch.load instead."
        )
    version = wrapper.get("version")
    if not isinstance(version, int) or version > _VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {version!r}, newer than this spikegrad reads "
            f"({_VERSION}); upgrade spikegrad to load it."
        )
    blob, digest = wrapper.get("payload"), wrapper.get("sha256")
    if (
        not isinstance(blob, torch.Tensor)
        or blob.dtype != torch.uint8
        or not isinstance(digest, str)
    ):
        raise ValueError(
            f"checkpoint {path} is corrupt: its payload or hash entry is malformed. {advice}"
        )
    data = blob.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(
            f"checkpoint {path} is corrupt: the SHA-256 of its payload does not match the one "
            f"stored when it was written. {advice}"
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # hash matched, so this is not disk corruption
        raise ValueError(
            f"checkpoint {path} is intact but its payload cannot be loaded with "
            f"weights_only=True ({type(exc).__name__}: {exc})."
        ) from exc


def latest_checkpoint(directory: PathLike) -> Optional[Path]:
    """Return the newest valid checkpoint in ``directory``, or ``None`` if there is none.

    Corrupt or truncated files are skipped with a :func:`warnings.warn` naming them, falling
    back to the previous epoch's file. Every candidate is fully read and hash-checked.

    Args:
        directory: folder holding ``ckpt_epoch*.pt`` files (a missing folder gives ``None``).

    Returns:
        The path, or ``None``.
    """
    found = latest_valid(directory)
    return None if found is None else found[0]


def prune_checkpoints(directory: PathLike, keep: int, upto: Optional[int] = None) -> list[Path]:
    """Delete all but the ``keep`` newest ``ckpt_epoch*.pt`` files.

    Args:
        directory: the folder.
        keep: how many to keep (>= 1).
        upto: if given, only files of epochs ``<= upto`` are considered, so a run resumed
            from an older checkpoint never deletes the file it has just written because
            stale later epochs sit in the same folder.

    Returns:
        The deleted paths.
    """
    check_int(keep, "keep")
    candidates = [(e, p) for e, p in list_checkpoints(directory) if upto is None or e <= upto]
    doomed = [p for _, p in candidates[:-keep]]
    for p in doomed:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return doomed


def latest_valid(directory: PathLike, map_location: Any = "cpu") -> Optional[tuple[Path, dict]]:
    """Newest checkpoint that loads, with its payload (so callers need not read it twice)."""
    for _, path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location=map_location)
        except ValueError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=3)
    return None


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is only atomic within one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the folder entry is on disk. Windows cannot open a
    # folder for fsync; there the rename is as durable as the OS makes it.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


TRAINER_KEYS = ("model", "optimizer", "scheduler", "epoch", "step", "history", "rng")


def check_trainer_payload(payload: dict, path: Path, has_scheduler: bool) -> None:
    """ValueError unless ``payload`` is a :class:`~spikegrad.train.Trainer` checkpoint that a
    trainer with (or without) a scheduler can resume exactly."""
    missing = [k for k in TRAINER_KEYS if k not in payload]
    if missing:
        raise ValueError(f"{path} is not a Trainer checkpoint: it lacks {missing}")
    if (payload["scheduler"] is None) == has_scheduler:
        has = "has" if payload["scheduler"] is not None else "has no"
        raise ValueError(
            f"checkpoint {path} {has} scheduler state but this Trainer was built "
            f"{'with' if has_scheduler else 'without'} a scheduler; build it as in "
            "the checkpointed run to resume exactly."
        )
