"""tonic's event data sets as time-major spikegrad batches.

`tonic <https://tonic.readthedocs.io>`_ reads the neuromorphic data sets (N-MNIST, SHD,
DVS Gesture, ...) and yields ``(events, label)`` with events a structured array
(``x, [y,] t, p``), or, with a transform such as ``tonic.transforms.ToFrame``, frames
``[T, P, (H,) W]``. :func:`from_tonic` turns either into a DataLoader of ``[T, B, ...]``
float32 inputs and int64 labels: raw events are binned into ``n_steps`` frames here
(:func:`spikegrad.data.events_to_frames`, every event kept), frames are taken as they are,
and samples of different length (``ToFrame(time_window=...)``) are zero-padded at the end
to the longest in the batch. spikegrad does not import tonic: anything indexable that
yields such pairs works.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .._validate import check_int
from .collate import time_major_collate
from .nmnist import events_to_frames

__all__ = ["TonicFrames", "pad_time_collate", "from_tonic"]


def _is_events(x) -> bool:
    names = getattr(getattr(x, "dtype", None), "names", None) or ()
    return "t" in names


def _as_xytp(events: np.ndarray, sensor_size: Sequence[int]) -> Tuple[np.ndarray, tuple]:
    """1-D sensors (SHD's ``x, t, p``, sensor ``(700, 1, 1)``) as 2-D events with ``y = 0``."""
    names = events.dtype.names
    if "y" in names:
        return events, tuple(sensor_size)
    out = np.zeros(len(events), dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64),
                                        ("p", np.int64)])
    out["x"], out["t"] = events["x"], events["t"]
    out["p"] = events["p"] if "p" in names else 0
    return out, tuple(sensor_size)


class TonicFrames(Dataset):
    """A tonic data set whose samples are ``(frames [T, ...] float32, label int)``.

    Args:
        dataset: a tonic data set (or any indexable of ``(events or frames, label)``).
        n_steps: frames per sample when the data set yields raw events (required then);
            ignored for frames.
        sensor_size: ``(width, height, polarities)``, tonic's order; default
            ``dataset.sensor_size``.
        duration: binning window from each sample's first event, in the events' time unit
            (microseconds for most tonic data sets); ``None``: the whole sample.
        binary: clip counts to 1.
        flatten: flatten the features: ``[T, P*H*W]`` instead of ``[T, P, H, W]``.
    """

    def __init__(self, dataset, n_steps: Optional[int] = None, *,
                 sensor_size: Optional[Sequence[int]] = None, duration: Optional[float] = None,
                 binary: bool = False, flatten: bool = False):
        if n_steps is not None:
            check_int(n_steps, "n_steps", hint="frames per sample, e.g. n_steps=25")
        self.dataset = dataset
        self.n_steps = n_steps
        self.sensor_size = sensor_size or getattr(dataset, "sensor_size", None)
        self.duration = duration
        self.binary = binary
        self.flatten = flatten

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        x, y = self.dataset[i]
        if _is_events(x):
            if self.n_steps is None:
                raise ValueError("the data set yields raw events: pass n_steps=... (frames per "
                                 "sample), or give it a tonic.transforms.ToFrame transform")
            if self.sensor_size is None:
                raise ValueError("the data set has no sensor_size: pass sensor_size=(width, "
                                 "height, polarities)")
            ev, size = _as_xytp(x, self.sensor_size)
            frames = events_to_frames(ev, self.n_steps, size, duration=self.duration,
                                      binary=self.binary)
        else:
            frames = torch.as_tensor(np.asarray(x), dtype=torch.float32)
            if frames.dim() < 2:
                raise ValueError(f"sample {i}: frames must be [T, ...] with a time axis first; "
                                 f"got shape {tuple(frames.shape)}")
            if self.binary:
                frames = frames.clamp(max=1.0)
        if self.flatten:
            frames = frames.reshape(frames.shape[0], -1)
        return frames, int(y)


def pad_time_collate(batch: Sequence[Tuple[Any, Any]]) -> Tuple[Tensor, Tensor]:
    """:func:`time_major_collate` for samples of different lengths: each ``[T_i, ...]``
    zero-padded at the end to the longest ``T``; returns ``([T, B, ...], labels [B])``."""
    if len(batch) == 0:
        raise ValueError("batch must contain at least one (x, label) pair, got an empty batch")
    xs = [torch.as_tensor(x) for x, _ in batch]
    t_max = max(x.shape[0] for x in xs)
    padded = []
    for x, (_, y) in zip(xs, batch):
        if x.shape[0] < t_max:
            x = torch.cat([x, x.new_zeros((t_max - x.shape[0],) + tuple(x.shape[1:]))])
        padded.append((x, y))
    return time_major_collate(padded)


def from_tonic(dataset, batch_size: int = 32, n_steps: Optional[int] = None, *,
               shuffle: bool = False, sensor_size: Optional[Sequence[int]] = None,
               duration: Optional[float] = None, binary: bool = False, flatten: bool = False,
               generator: Optional[torch.Generator] = None, **loader_kwargs: Any) -> DataLoader:
    """A DataLoader of time-major batches from a tonic data set.

    Shapes:
        yields ``(x [T, B, P, H, W] or [T, B, F] with flatten, labels [B])``, float32 and
        int64; ``T = n_steps`` for raw events, the longest sample's for frames.

    Example:
        >>> ds = tonic.datasets.NMNIST("data", train=False)           # doctest: +SKIP
        >>> for x, y in sg.data.from_tonic(ds, 64, n_steps=25, flatten=True):
        ...     out = model(x)                                          # [25, 64, 2312]
    """
    check_int(batch_size, "batch_size")
    frames = TonicFrames(dataset, n_steps, sensor_size=sensor_size, duration=duration,
                         binary=binary, flatten=flatten)
    return DataLoader(frames, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      collate_fn=pad_time_collate, **loader_kwargs)
