"""Spiking Heidelberg Digits (SHD; Cramer et al. 2022, IEEE TNNLS).

The data set must be downloaded by the user (``shd_train.h5``, ``shd_test.h5`` from the
Zenke lab, zenkelab.org); h5py is imported lazily. The HDF5 layout is::

    spikes/times   variable-length float arrays, spike times in seconds (one per sample)
    spikes/units   variable-length int arrays, the channel (0..699) of each spike
    labels         int class of each sample (20 classes)
"""

from __future__ import annotations

import math
import os
from numbers import Real

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .._validate import check_int
from .splits import require

__all__ = ["SHDDataset"]

_KEYS = ("spikes/times", "spikes/units", "labels")


class SHDDataset(Dataset):
    """SHD samples as dense spike rasters, binned on access.

    The spike events of all samples are read into memory once (the training file is a
    few hundred MB of events); each ``__getitem__`` bins one sample. Step ``k`` covers
    times ``[k * dt, (k + 1) * dt)`` with ``dt = max_time_s / n_steps``; the last step is
    closed, so a spike at exactly ``max_time_s`` is kept, and later spikes are dropped.
    Several spikes of one unit can fall into one step: the raster holds their count
    (possibly > 1) unless ``binary=True``, which clips counts to 1.

    Args:
        path: path of an SHD HDF5 file.
        n_steps: number of time steps T (>= 1).
        max_time_s: length of the binned window in seconds (> 0).
        n_units: number of input channels (700 for SHD); every unit index in the file
            must be smaller.
        binary: clip counts to 1 so the raster holds spikes in {0, 1}.

    Returns (``dataset[i]``):
        ``(raster, label)``: float32 raster ``[n_steps, n_units]`` and int label. Batch
        with :func:`spikegrad.data.time_major_collate` to get ``[T, B, n_units]``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KeyError: the file lacks ``spikes/times``, ``spikes/units`` or ``labels``.
        ValueError: inconsistent lengths, negative times or unit indices outside
            ``[0, n_units)``.
        ImportError: h5py is not installed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        n_steps: int = 100,
        max_time_s: float = 1.4,
        n_units: int = 700,
        *,
        binary: bool = False,
    ) -> None:
        check_int(n_steps, "n_steps")
        if (
            isinstance(max_time_s, bool)
            or not isinstance(max_time_s, Real)
            or not 0 < max_time_s < math.inf
        ):
            raise ValueError(
                f"max_time_s must be a finite number > 0 (seconds), got {max_time_s!r}"
            )
        check_int(n_units, "n_units")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"SHD file not found: {path!r}; download shd_train.h5 / shd_test.h5 "
                "(Cramer et al. 2022, from zenkelab.org) and unzip them first"
            )
        h5py = require("h5py")

        self.path = path
        self.n_steps = n_steps
        self.max_time_s = float(max_time_s)
        self.n_units = n_units
        self.binary = bool(binary)

        with h5py.File(path, "r") as f:
            missing = [k for k in _KEYS if k not in f]
            if missing:
                raise KeyError(
                    f"{path!r} is not an SHD file: missing dataset(s) {missing}; "
                    f"expected keys {list(_KEYS)}"
                )
            times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][()]]
            units = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][()]]
            labels = np.asarray(f["labels"][()], dtype=np.int64).reshape(-1)

        if not len(times) == len(units) == len(labels):
            raise ValueError(
                f"{path!r}: spikes/times, spikes/units and labels must have one entry per "
                f"sample, got {len(times)}, {len(units)} and {len(labels)}"
            )
        for i, (t, u) in enumerate(zip(times, units)):
            if t.shape != u.shape:
                raise ValueError(
                    f"{path!r}: sample {i} has {t.size} spike times but {u.size} unit indices"
                )
            if u.size and (u.min() < 0 or u.max() >= n_units):
                raise ValueError(
                    f"{path!r}: sample {i} has unit indices in [{u.min()}, {u.max()}], "
                    f"expected [0, {n_units}) for n_units={n_units}; pass the right n_units"
                )
            if t.size and not (t.min() >= 0):
                raise ValueError(
                    f"{path!r}: sample {i} has a negative or NaN spike time ({t.min()} s); "
                    "times must be >= 0 seconds"
                )
        self._times = times
        self._units = units
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self._times)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        times, units = self._times[index], self._units[index]
        keep = times <= self.max_time_s
        # Multiply before dividing rather than dividing by a pre-rounded dt: fewer
        # roundings. A spike within float error of an inner bin edge may still land on
        # either side; the clip below folds t == max_time_s into the last (closed) bin.
        steps = np.floor(times[keep] * self.n_steps / self.max_time_s).astype(np.int64)
        np.minimum(steps, self.n_steps - 1, out=steps)
        flat = steps * self.n_units + units[keep]  # [n_spikes], index into [T * U]
        counts = np.bincount(flat, minlength=self.n_steps * self.n_units)
        raster = torch.from_numpy(counts.astype(np.float32)).view(self.n_steps, self.n_units)
        if self.binary:
            raster.clamp_(max=1.0)
        return raster, int(self.labels[index])
