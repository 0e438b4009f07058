"""N-MNIST (Orchard et al. 2015): event-camera recordings of MNIST digits, and event binning.

spikegrad never downloads; a user with the extracted data set (``Train/<digit>/<id>.bin``,
``Test/<digit>/<id>.bin``) points :class:`NMNISTDataset` at it.

Binary format: a sequence of 40-bit events, 5 bytes each::

    byte 0      x address (0..33)
    byte 1      y address (0..33)
    byte 2      bit 7: polarity (1 on, 0 off); bits 6..0: timestamp bits 22..16
    bytes 3, 4  timestamp bits 15..0                      (microseconds, big-endian)

An event with ``y == 240`` is a timestamp-overflow marker, not a spike: every later timestamp
is increased by 2^13, as in the data set's reference reader (Orchard's ``eventvision.py``,
also used by tonic). Events are returned as a tonic-style structured array with fields
``x, y, t, p`` (:func:`make_events`), and :func:`events_to_frames` bins any such array
(tonic's included) into frames ``[T, P, H, W]`` = ``[T, 2, 34, 34]`` for N-MNIST.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._validate import check_int

__all__ = ["EVENT_DTYPE", "SENSOR_SIZE", "make_events", "read_nmnist_events",
           "write_nmnist_events", "events_to_frames", "NMNISTDataset"]

EVENT_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
SENSOR_SIZE = (34, 34, 2)  # tonic's convention: (width = x range, height = y range, polarities)
_OVERFLOW_Y = 240
_OVERFLOW_US = 2 ** 13


def make_events(x, y, t, p) -> np.ndarray:
    """A structured event array (fields ``x, y, t, p``, int64) from four equal-length arrays.

    Example:
        >>> ev = make_events([1, 2], [0, 3], [10, 20], [1, 0])
        >>> ev["t"].tolist(), ev.dtype.names
        ([10, 20], ('x', 'y', 't', 'p'))
    """
    cols = [np.asarray(v).reshape(-1) for v in (x, y, t, p)]
    if len({len(c) for c in cols}) != 1:
        raise ValueError(f"x, y, t and p must have the same length, got {[len(c) for c in cols]}")
    events = np.empty(len(cols[0]), dtype=EVENT_DTYPE)
    for name, col in zip("xytp", cols):
        events[name] = col
    return events


def read_nmnist_events(source: str | os.PathLike | bytes) -> np.ndarray:
    """Decode an N-MNIST ``.bin`` file (or its bytes) into a structured event array.

    Returns:
        Events (:data:`EVENT_DTYPE`) in file order, overflow markers removed and their 2^13 us
        added to every later timestamp.

    Raises:
        ValueError: the length is not a multiple of 5 bytes (not an N-MNIST file, or truncated).
    """
    raw = bytes(source) if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    if len(raw) % 5:
        raise ValueError(f"N-MNIST data must be a whole number of 5-byte events, got {len(raw)} "
                         "bytes (truncated file, or not the N-MNIST binary format?)")
    b = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = b[:, 0], b[:, 1]
    p = b[:, 2] >> 7
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    overflow = y == _OVERFLOW_Y
    t = t + _OVERFLOW_US * np.cumsum(overflow)  # each marker shifts itself and everything after
    keep = ~overflow
    return make_events(x[keep], y[keep], t[keep], p[keep])


def write_nmnist_events(path: str | os.PathLike, events: np.ndarray) -> None:
    """Write events in the N-MNIST binary format (40 bits each: x, y, polarity, 23-bit
    timestamp in us); :func:`read_nmnist_events` reads them back unchanged. For converting
    recordings, and for tests that need N-MNIST files.

    Raises:
        ValueError: a field is out of the format's range (x, y in [0, 255], y != 240 (the
            overflow marker), p in {0, 1}, t in [0, 2**23) us: longer recordings would need
            overflow markers, which this writer does not emit).
    """
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not {"x", "y", "t", "p"} <= set(names):
        raise TypeError("events must be a structured array with fields x, y, t, p (see "
                        "make_events)")
    x, y, t, p = (np.asarray(events[k], dtype=np.int64) for k in "xytp")
    for name, v, hi in (("x", x, 255), ("y", y, 255), ("p", p, 1), ("t", t, 2**23 - 1)):
        if v.size and (v.min() < 0 or v.max() > hi):
            raise ValueError(f"events[{name!r}] must lie in [0, {hi}] for the N-MNIST format; "
                             f"got [{v.min()}, {v.max()}]")
    if (y == _OVERFLOW_Y).any():
        raise ValueError(f"events['y'] == {_OVERFLOW_Y} marks a timestamp overflow in the "
                         "N-MNIST format and cannot be an event row")
    b = np.empty((len(x), 5), dtype=np.uint8)
    b[:, 0], b[:, 1] = x, y
    b[:, 2] = (p << 7) | (t >> 16)
    b[:, 3], b[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).write_bytes(b.tobytes())


def events_to_frames(events: np.ndarray, n_steps: int,
                     sensor_size: Sequence[int] = SENSOR_SIZE, *,
                     t_start: Optional[int] = None, duration: Optional[float] = None,
                     binary: bool = False) -> Tensor:
    """Bin events into ``n_steps`` frames of equal duration: event counts per pixel and polarity.

    Step ``k`` covers ``[t_start + k w, t_start + (k + 1) w)`` with ``w = duration / n_steps``;
    events outside ``[t_start, t_start + duration)`` are dropped. Defaults: ``t_start`` = the
    first timestamp, ``duration = t_last - t_start + 1``, so every event lands in a bin.
    (tonic's ``ToFrame(n_time_bins=...)`` uses integer-width windows and may drop the last
    events; pass ``duration`` explicitly for a fixed window across samples.)

    Args:
        events: structured array with fields ``x, y, t, p`` (:func:`make_events`, tonic).
        n_steps: number of frames T (>= 1).
        sensor_size: ``(width, height, polarities)``, tonic's order.
        binary: clip counts to 1 (spikes in {0, 1}).

    Returns:
        float32 frames ``[T, P, H, W]`` (polarity, then row ``y``, column ``x``).

    Example:
        >>> ev = make_events([0, 1, 1], [0, 0, 1], [0, 5, 9], [1, 0, 1])
        >>> f = events_to_frames(ev, 2, (2, 2, 2))
        >>> f.shape, f[0, 1, 0, 0].item(), f[1, 0, 0, 1].item(), f[1, 1, 1, 1].item()
        (torch.Size([2, 2, 2, 2]), 1.0, 1.0, 1.0)
    """
    check_int(n_steps, "n_steps")
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not {"x", "y", "t", "p"} <= set(names):
        raise TypeError("events must be a structured array with fields x, y, t, p (see "
                        f"spikegrad.data.make_events); got fields {names or 'none'}")
    width, height, n_pol = (int(v) for v in sensor_size)
    frames = np.zeros((n_steps, n_pol, height, width), dtype=np.float32)
    if len(events) == 0:
        return torch.from_numpy(frames)
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    t, p = events["t"].astype(np.float64), events["p"].astype(np.int64)
    if (x.min() < 0 or x.max() >= width or y.min() < 0 or y.max() >= height
            or p.min() < 0 or p.max() >= n_pol):
        raise ValueError(f"event addresses outside sensor_size={tuple(sensor_size)}: x in "
                         f"[{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}], p in "
                         f"[{p.min()}, {p.max()}] (polarities must be 0..P-1)")
    t0 = float(t.min()) if t_start is None else float(t_start)
    span = float(t.max()) - t0 + 1.0 if duration is None else float(duration)
    if not (math.isfinite(span) and span > 0):
        raise ValueError(f"duration must be a finite number > 0 (same unit as t), got {duration!r}")
    k = np.floor((t - t0) * n_steps / span).astype(np.int64)
    inside = (k >= 0) & (k < n_steps)
    np.add.at(frames, (k[inside], p[inside], y[inside], x[inside]), 1.0)
    if binary:
        np.minimum(frames, 1.0, out=frames)
    return torch.from_numpy(frames)


class NMNISTDataset(Dataset):
    """N-MNIST samples from an extracted folder, binned into frames on access.

    Args:
        root: folder holding ``Train/`` and ``Test/`` (each with ``0/`` .. ``9/`` of ``.bin``).
        train: read ``Train`` (True) or ``Test``.
        n_steps: frames per sample.
        duration: window length in microseconds from each sample's first event (None: the
            whole recording; N-MNIST samples last about 300 ms).
        binary: clip counts to 1.

    Returns (``dataset[i]``):
        ``(frames [n_steps, 2, 34, 34] float32, label)``; batch with
        :func:`spikegrad.data.time_major_collate` to get ``[T, B, 2, 34, 34]``.
    """

    def __init__(self, root: str | os.PathLike, train: bool = True, n_steps: int = 10,
                 duration: Optional[float] = None, binary: bool = False):
        folder = Path(root) / ("Train" if train else "Test")
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found: root must hold the extracted N-MNIST "
                                    "Train/ and Test/ folders (spikegrad does not download)")
        self.files: list[Tuple[Path, int]] = [
            (f, int(d.name)) for d in sorted(folder.iterdir()) if d.is_dir() and d.name.isdigit()
            for f in sorted(d.glob("*.bin"))]
        if not self.files:
            raise FileNotFoundError(f"no <digit>/*.bin files under {folder}")
        check_int(n_steps, "n_steps")
        self.n_steps, self.duration, self.binary = n_steps, duration, bool(binary)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        path, label = self.files[i]
        frames = events_to_frames(read_nmnist_events(path), self.n_steps, SENSOR_SIZE,
                                  duration=self.duration, binary=self.binary)
        return frames, label
