"""Loaders for real motor-cortex reaching recordings, binned like :func:`simulate_cortex`.

Both return :class:`~spikegrad.data.cortex.ReachingData` (counts ``[T, N]``, velocity
``[T, 2]`` in cm/s, ``dt``, a chronological ``split``), so decoders and apps take a recording
or the simulation alike. The files are downloaded by the user; nothing is fetched here.

**O'Doherty et al. 2017** ("Nonhuman primate reaching with multichannel sensorimotor cortex
electrophysiology", Zenodo 583331; the NeuroBench "primate reaching" sessions such as
``indy_20160622_01.mat``). MATLAB v7.3 files, which are HDF5: h5py reads them. The variables
(MATLAB shapes; HDF5 stores every array transposed, so an ``n x k`` MATLAB matrix is a
``(k, n)`` HDF5 dataset)::

    t           n x 1    sample times, s (250 Hz)
    cursor_pos  n x 2    cursor position (x, y), mm
    finger_pos  n x 3    fingertip (z, -x, -y), cm; some sessions n x 6 (+ azimuth,
                         elevation, roll)
    target_pos  n x 2    target position (x, y), mm
    spikes      C x U    cell array: spike times (s) of unit u on channel c; u = 1 holds the
                         unsorted threshold crossings, u >= 2 the sorted units
    chan_names  C x 1    cell array of channel names (e.g. 'M1 001')
    wf          C x U    cell array of waveforms (optional, not read)

A cell array is an HDF5 dataset of object references (attribute ``MATLAB_class = 'cell'``)
to one dataset per cell, kept in the ``#refs#`` group; an empty cell refers to a dataset
holding its dimensions with attribute ``MATLAB_empty = 1``; a char array is ``uint16`` code
points. Bins start at ``t[0]``; velocity is the finite difference of the position
(interpolated linearly at the bin edges) over each bin, in cm/s, with the cursor's
``(x, y)`` or the fingertip's ``(x, y) = (-col2, -col3)``.

**Neural Latents Benchmark MC_Maze** (DANDI 000128, ``sub-Jenkins_ses-full_desc-train_
behavior+ecephys.nwb``), read with pynwb (``pip install 'spikegrad[bci]'``): the units table
(``spike_times`` in s per unit, a boolean ``heldout`` column), the behaviour processing
module ``behavior`` with TimeSeries ``hand_vel`` (and ``hand_pos``) sampled at 1 kHz with
timestamps, and the trials table. Bin velocity is the mean of the ``hand_vel`` samples in the
bin, or, without ``hand_vel``, the finite difference of ``hand_pos``.
"""

from __future__ import annotations

import math
import os
import re
from numbers import Real
from typing import Optional, Sequence

import numpy as np
import torch

from .._validate import check_choice
from .cortex import ReachingData
from .splits import require

__all__ = ["load_odoherty", "load_nlb_mc_maze", "bin_spike_times"]

ODOHERTY_UNITS = ("channel", "sorted", "all")
ODOHERTY_VELOCITY = ("cursor", "finger")
# cm per unit of length, for the units a file may state
_CM = {"m": 100.0, "cm": 1.0, "mm": 0.1, "um": 1e-4}
_PER_S = {"s": 1.0, "ms": 1e3}


def bin_spike_times(spike_times: Sequence[np.ndarray], t_start: float, dt: float,
                    n_bins: int) -> torch.Tensor:
    """Count spikes in bins ``[t_start + k dt, t_start + (k + 1) dt)``, ``k = 0..n_bins-1``.

    Spikes outside ``[t_start, t_start + n_bins * dt)`` are dropped. A spike within float
    error of an inner edge may land on either side of it.

    Args:
        spike_times: one array of spike times (s) per unit.
        t_start: first bin edge, s.
        dt: bin width, s.
        n_bins: number of bins.

    Returns:
        float32 ``[n_bins, len(spike_times)]`` counts.

    Example:
        >>> bin_spike_times([np.array([0.001, 0.0025, 0.009]), np.array([])], 0.0, 0.004, 3)
        tensor([[2., 0.],
                [0., 0.],
                [1., 0.]])
    """
    n_units = len(spike_times)
    flat = []
    for u, times in enumerate(spike_times):
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        k = np.floor((times - t_start) / dt)
        k = k[(k >= 0) & (k < n_bins)].astype(np.int64)
        flat.append(k * n_units + u)
    idx = np.concatenate(flat) if flat else np.zeros(0, np.int64)
    counts = np.bincount(idx, minlength=n_bins * n_units).astype(np.float32)
    return torch.from_numpy(counts.reshape(n_bins, n_units))


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, Real) or not 0 < float(dt) < math.inf:
        raise ValueError(f"dt must be a finite number > 0 (seconds), got {dt!r}")
    return float(dt)


def _check_fraction(train_fraction) -> float:
    if (isinstance(train_fraction, bool) or not isinstance(train_fraction, Real)
            or not 0.0 <= float(train_fraction) <= 1.0):
        raise ValueError(f"train_fraction must be a number in [0, 1], got {train_fraction!r}")
    return float(train_fraction)


def _bin_grid(t_first: float, t_last: float, dt: float, path: str) -> tuple[int, np.ndarray]:
    """Bins from ``t_first`` whose right edge is not after ``t_last`` (1e-9 bins of slack so
    that samples exactly on the grid close the last bin)."""
    n_bins = int(math.floor((t_last - t_first) / dt + 1e-9))
    if n_bins < 2:
        raise ValueError(f"{path!r}: the behaviour spans {t_last - t_first:.6g} s, fewer than "
                         f"2 bins of dt={dt} s; pass a smaller dt or a longer recording")
    return n_bins, t_first + dt * np.arange(n_bins + 1)


def _velocity_from_position(t: np.ndarray, pos: np.ndarray, edges: np.ndarray, dt: float):
    """Position at the bin edges (linear interpolation) and the finite-difference velocity
    over each bin: ``([n_bins, D] position at bin starts, [n_bins, D] velocity)``."""
    at_edges = np.stack([np.interp(edges, t, pos[:, d]) for d in range(pos.shape[1])], 1)
    return at_edges[:-1], np.diff(at_edges, axis=0) / dt


# --- O'Doherty / NeuroBench .mat v7.3 -------------------------------------------------------

def _mat_class(obj) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _mat_numeric(f, name: str, path: str) -> np.ndarray:
    """A MATLAB numeric matrix as a NumPy array in MATLAB's orientation (rows = samples)."""
    obj = f[name]
    if _mat_class(obj) in ("cell", "char", "struct"):
        raise ValueError(f"{path!r}: variable {name!r} is a MATLAB {_mat_class(obj)}, expected a "
                         "numeric matrix; is this an O'Doherty reaching session?")
    return np.asarray(obj[()], dtype=np.float64).T   # HDF5 holds MATLAB arrays transposed


def _mat_cell_item(f, ref) -> Optional[np.ndarray]:
    obj = f[ref]
    if obj.attrs.get("MATLAB_empty", 0):
        return None                                 # the dataset holds dimensions, not data
    return np.asarray(obj[()])


def _mat_string(f, ref) -> str:
    item = _mat_cell_item(f, ref)
    if item is None:
        return ""
    return "".join(chr(int(c)) for c in item.T.reshape(-1))


def load_odoherty(
    path: str | os.PathLike,
    dt: float = 0.004,
    *,
    units: str = "channel",
    velocity_from: str = "cursor",
    train_fraction: float = 0.75,
) -> ReachingData:
    """Load an O'Doherty et al. (2017) reaching session (MATLAB v7.3 ``.mat``) and bin it.

    Args:
        path: the ``.mat`` file (e.g. ``indy_20160622_01.mat``).
        dt: bin width in seconds (4 ms = the 250 Hz behaviour sampling).
        units: ``"channel"``: one column per channel, all its units summed (threshold
            crossings, as NeuroBench decodes without spike sorting); ``"sorted"``: one
            column per sorted unit (the unsorted first unit of each channel left out);
            ``"all"``: one column per unit, unsorted ones included. Units without any spike
            are left out in ``"sorted"`` and ``"all"``.
        velocity_from: ``"cursor"`` (``cursor_pos``, as NeuroBench) or ``"finger"``
            (``finger_pos``).
        train_fraction: the first ``round(train_fraction * T)`` bins form the training part.

    Returns:
        :class:`ReachingData`: ``counts [T, N]``, ``velocity [T, 2]`` in cm/s, ``position``
        ``[T, 2]`` in cm at each bin's start, ``t_start = t[0]``, ``channel_names`` (with
        ``" u<k>"`` appended per unit for ``"sorted"``/``"all"``; ``u0`` is unsorted).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a MATLAB v7.3 (HDF5) file, or inconsistent variables.
        KeyError: a required variable (``t``, ``spikes``, the position) is missing.
        ImportError: h5py is not installed.
    """
    dt = _check_dt(dt)
    check_choice(units, "units", ODOHERTY_UNITS)
    check_choice(velocity_from, "velocity_from", ODOHERTY_VELOCITY)
    train_fraction = _check_fraction(train_fraction)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"O'Doherty session not found: {path!r}; download a session (e.g. "
            "indy_20160622_01.mat) from Zenodo record 583331 first")
    h5py = require("h5py")
    if not h5py.is_hdf5(path):
        raise ValueError(
            f"{path!r} is not a MATLAB v7.3 (HDF5) file; the O'Doherty sessions are v7.3. An "
            "older .mat can be re-saved in MATLAB with save(name, '-v7.3')")
    pos_name = "cursor_pos" if velocity_from == "cursor" else "finger_pos"
    with h5py.File(path, "r") as f:
        missing = [k for k in ("t", "spikes", pos_name) if k not in f]
        if missing:
            raise KeyError(f"{path!r} is not an O'Doherty reaching session: missing variable(s) "
                           f"{missing}; expected t, spikes, {pos_name} (and chan_names)")
        t = _mat_numeric(f, "t", path).reshape(-1)
        pos = _mat_numeric(f, pos_name, path)
        if pos.ndim != 2 or pos.shape[0] != t.size:
            raise ValueError(f"{path!r}: {pos_name} has MATLAB shape {list(pos.shape)}, expected "
                             f"[{t.size}, k] (one row per sample of t)")
        if velocity_from == "cursor":
            xy = pos[:, :2] / 10.0                       # mm -> cm
        else:
            if pos.shape[1] < 3:
                raise ValueError(f"{path!r}: finger_pos has {pos.shape[1]} columns, expected 3 "
                                 "(z, -x, -y) or 6")
            xy = -pos[:, 1:3]                            # (z, -x, -y) cm -> (x, y)
        spikes = f["spikes"]
        if _mat_class(spikes) != "cell" or spikes.dtype != h5py.ref_dtype:
            raise ValueError(f"{path!r}: spikes must be a MATLAB cell array (HDF5 object "
                             f"references), got class {_mat_class(spikes)!r}")
        refs = spikes[()].T                              # [channels, units] as in MATLAB
        n_chan, n_unit = refs.shape
        if "chan_names" in f:
            names = [_mat_string(f, r) for r in f["chan_names"][()].T.reshape(-1)]
            if len(names) != n_chan:
                raise ValueError(f"{path!r}: chan_names has {len(names)} entries but spikes "
                                 f"has {n_chan} channels")
        else:
            names = [f"ch{c:03d}" for c in range(n_chan)]
        cells = [[_mat_cell_item(f, refs[c, u]) for u in range(n_unit)] for c in range(n_chan)]

    if t.size < 2 or not np.all(np.diff(t) > 0):
        raise ValueError(f"{path!r}: t must hold at least 2 increasing sample times (s)")
    if not np.isfinite(xy).all():
        raise ValueError(f"{path!r}: {pos_name} has NaN or inf samples; fill or cut them "
                         "before binning")
    n_bins, edges = _bin_grid(float(t[0]), float(t[-1]), dt, path)
    position, velocity = _velocity_from_position(t, xy, edges, dt)

    def times(cell):
        return np.zeros(0) if cell is None else cell.reshape(-1).astype(np.float64)

    if units == "channel":
        columns = [np.concatenate([times(cell) for cell in row]) for row in cells]
        col_names = names
    else:
        first = 1 if units == "sorted" else 0
        columns, col_names = [], []
        for c, row in enumerate(cells):
            for u in range(first, n_unit):
                if times(row[u]).size:
                    columns.append(times(row[u]))
                    col_names.append(f"{names[c]} u{u}")
        if not columns:
            raise ValueError(f"{path!r}: no {units} unit has any spike; try units='channel'")
    counts = bin_spike_times(columns, float(t[0]), dt, n_bins)
    return ReachingData(
        counts=counts, velocity=torch.from_numpy(velocity).float(), dt=dt,
        split=int(round(train_fraction * n_bins)), position=torch.from_numpy(position).float(),
        channel_names=tuple(col_names), t_start=float(t[0]),
        source=f"odoherty:{path}")


# --- Neural Latents Benchmark MC_Maze (NWB) -------------------------------------------------

def _to_cm_per_s(unit: str) -> Optional[float]:
    """Factor from a velocity unit such as ``'mm/s'`` to cm/s, or None if not recognised."""
    m = re.fullmatch(r"\s*([a-zµ]+)\s*/\s*([a-z]+)\s*", (unit or "").lower().replace("µ", "u"))
    if not m or m.group(1) not in _CM or m.group(2) not in _PER_S:
        return None
    return _CM[m.group(1)] * _PER_S[m.group(2)]


def _to_cm(unit: str) -> Optional[float]:
    return _CM.get((unit or "").strip().lower().replace("µ", "u"))


def _series_times(ts) -> np.ndarray:
    if ts.timestamps is not None:
        return np.asarray(ts.timestamps[()], dtype=np.float64)
    n = ts.data.shape[0]
    return ts.starting_time + np.arange(n, dtype=np.float64) / ts.rate


def load_nlb_mc_maze(
    path: str | os.PathLike,
    dt: float = 0.004,
    *,
    include_heldout: bool = True,
    train_fraction: float = 0.75,
) -> ReachingData:
    """Load a Neural Latents Benchmark MC_Maze NWB file and bin it.

    Bins run from the first behaviour sample for as long as the behaviour lasts. Velocity is
    the mean of the ``hand_vel`` samples in each bin (NaN where a bin has none, or where the
    file has NaN: drop those bins before fitting a decoder), or the finite difference of
    ``hand_pos`` if the file has no ``hand_vel``; it is converted to cm/s when the series'
    unit is a length per time (``'mm/s'``, ``'m/s'``, ...), else kept as written and named in
    ``velocity_unit``.

    Args:
        path: the ``.nwb`` file with behaviour (the ``desc-train`` file; the ``desc-test``
            file has no behaviour).
        dt: bin width in seconds.
        include_heldout: keep the units the benchmark holds out (``heldout`` column); False
            keeps the held-in units only, the feature space of the benchmark's test file.
        train_fraction: the first ``round(train_fraction * T)`` bins form the training part.

    Returns:
        :class:`ReachingData` with ``counts [T, N]``, ``velocity [T, 2]``, ``position``
        (``hand_pos`` at each bin's start, cm, or None), ``trials`` (every 1-D column of the
        trials table, e.g. ``start_time``, ``stop_time``, ``split``).

    Raises:
        FileNotFoundError: no file at ``path``.
        KeyError: no units table, no ``spike_times``, or no ``behavior`` module with
            ``hand_vel`` or ``hand_pos``.
        ImportError: pynwb is not installed (``pip install 'spikegrad[bci]'``).
    """
    dt = _check_dt(dt)
    train_fraction = _check_fraction(train_fraction)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"MC_Maze NWB file not found: {path!r}; download it from DANDI (dandiset 000128, "
            "the desc-train behavior+ecephys file) first")
    try:
        import pynwb
    except ImportError as err:
        raise ImportError("load_nlb_mc_maze needs the optional package 'pynwb'; install it "
                          "with `pip install 'spikegrad[bci]'`") from err

    with pynwb.NWBHDF5IO(path, "r") as io:
        nwb = io.read()
        table = nwb.units
        if table is None or "spike_times" not in table.colnames:
            raise KeyError(f"{path!r} has no units table with spike_times; is this an NLB "
                           "MC_Maze file?")
        n_units = len(table.id[:])
        keep = np.ones(n_units, dtype=bool)
        if not include_heldout and "heldout" in table.colnames:
            keep = ~np.asarray(table["heldout"].data[:], dtype=bool)
        spike_times = [np.asarray(table.get_unit_spike_times(int(i)), dtype=np.float64)
                       for i in np.flatnonzero(keep)]
        unit_ids = [int(i) for i in np.asarray(table.id[:])[keep]]

        behavior = nwb.processing.get("behavior") if nwb.processing else None
        series = {} if behavior is None else dict(behavior.data_interfaces)
        if "hand_vel" not in series and "hand_pos" not in series:
            raise KeyError(f"{path!r} has no behaviour to decode: expected TimeSeries hand_vel "
                           "or hand_pos in processing['behavior'] (the desc-test files have "
                           "none; use the desc-train file)")
        pos = None
        if "hand_pos" in series:
            ts = series["hand_pos"]
            pos_t, pos = _series_times(ts), np.asarray(ts.data[()], dtype=np.float64)[:, :2]
            pos_unit = ts.unit
        if "hand_vel" in series:
            ts = series["hand_vel"]
            vel_t, vel = _series_times(ts), np.asarray(ts.data[()], dtype=np.float64)[:, :2]
            vel_unit = ts.unit
        else:
            vel_t, vel, vel_unit = None, None, None

        trials = None
        if nwb.trials is not None:
            trials = {}
            for name in nwb.trials.colnames:
                col = nwb.trials[name]
                if type(col).__name__ == "VectorIndex" or hasattr(col, "target"):
                    continue                              # ragged column
                values = np.asarray(col.data[:])
                if values.ndim == 1:
                    trials[name] = values

    ref_t = vel_t if vel_t is not None else pos_t
    n_bins, edges = _bin_grid(float(ref_t[0]), float(ref_t[-1]), dt, path)
    position = None
    if pos is not None:
        scale = _to_cm(pos_unit)
        pos_cm = pos * (scale if scale is not None else 1.0)
        position, pos_vel = _velocity_from_position(pos_t, pos_cm, edges, dt)
    if vel is not None:
        k = np.floor((vel_t - edges[0]) / dt).astype(np.int64)
        inside = (k >= 0) & (k < n_bins)
        k, v = k[inside], vel[inside]
        sums = np.zeros((n_bins, 2))
        np.add.at(sums, k, v)
        n = np.bincount(k, minlength=n_bins)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            velocity = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        factor = _to_cm_per_s(vel_unit)
        if factor is not None:
            velocity, unit = velocity * factor, "cm/s"
        else:
            unit = vel_unit or "unknown"
    else:
        velocity = pos_vel
        unit = "cm/s" if _to_cm(pos_unit) is not None else f"({pos_unit or 'unknown'})/s"

    counts = bin_spike_times(spike_times, float(edges[0]), dt, n_bins)
    return ReachingData(
        counts=counts, velocity=torch.from_numpy(velocity).float(), dt=dt,
        split=int(round(train_fraction * n_bins)),
        position=None if position is None else torch.from_numpy(position).float(),
        channel_names=tuple(f"unit{i}" for i in unit_ids), t_start=float(edges[0]),
        source=f"nlb_mc_maze:{path}", trials=trials, velocity_unit=unit)
