"""The reaching loaders on small files written in the true formats: MATLAB v7.3 (HDF5 with
MATLAB's cell-array encoding) for O'Doherty et al. 2017, and NWB (pynwb) for NLB MC_Maze."""

import datetime

import numpy as np
import pytest
import torch

from spikegrad.data import ReachingData, bin_spike_times, load_nlb_mc_maze, load_odoherty

h5py = pytest.importorskip("h5py")

# --- a MATLAB v7.3 writer: what `save(name, ..., '-v7.3')` produces -----------------------


class MatV73:
    """Writes variables the way MATLAB v7.3 does: a 512-byte user block with the MAT header,
    arrays transposed (MATLAB is column-major), a MATLAB_class attribute on each variable,
    cells as datasets of object references to datasets in ``#refs#``, empty arrays as their
    dimensions with MATLAB_empty = 1, chars as uint16."""

    def __init__(self, path):
        self.path = path
        self.f = h5py.File(path, "w", userblock_size=512)
        self.refs = self.f.create_group("#refs#")
        self.n = 0
        # MATLAB keeps one canonical empty array in #refs#/a
        self._empty(self.refs, "a")

    def _name(self):
        self.n += 1
        name, k = "", self.n
        while k:
            k, r = divmod(k, 26)
            name = chr(ord("a") + r) + name
        return name

    @staticmethod
    def _class(ds, cls):
        ds.attrs.create("MATLAB_class", np.bytes_(cls))

    def _empty(self, group, name):
        ds = group.create_dataset(name, data=np.array([0, 0], dtype=np.uint64))
        self._class(ds, "double")
        ds.attrs.create("MATLAB_empty", np.uint8(1))
        return ds

    def _numeric(self, group, name, matrix):
        matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        if matrix.size == 0:
            return self._empty(group, name)
        ds = group.create_dataset(name, data=matrix.T)      # MATLAB n x k -> HDF5 (k, n)
        self._class(ds, "double")
        return ds

    def _char(self, group, name, text):
        codes = np.array([[ord(c) for c in text]], dtype=np.uint16)   # MATLAB 1 x L
        ds = group.create_dataset(name, data=codes.T)
        self._class(ds, "char")
        ds.attrs.create("MATLAB_int_decode", np.int32(2))
        return ds

    def numeric(self, name, matrix):
        self._numeric(self.f, name, matrix)

    def cell(self, name, items, kind="numeric"):
        """``items``: a 2-D list in MATLAB's orientation (rows x columns)."""
        rows, cols = len(items), len(items[0])
        refs = np.empty((cols, rows), dtype=h5py.ref_dtype)        # transposed
        for r in range(rows):
            for c in range(cols):
                value, key = items[r][c], self._name()
                if kind == "char":
                    ds = self._char(self.refs, key, value)
                else:   # a column vector n x 1, as the spike-time cells are
                    ds = self._numeric(self.refs, key, np.asarray(value, float).reshape(-1, 1))
                refs[c, r] = ds.ref
        ds = self.f.create_dataset(name, data=refs)
        self._class(ds, "cell")

    def close(self):
        self.f.close()
        stamp = ("MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
                 "HDF5 schema 1.00 .")
        header = stamp.ljust(116).encode() + b"\0" * 8 + b"\x00\x02" + b"IM"
        with open(self.path, "r+b") as fh:
            fh.write(header)


DT = 0.004
N_SAMPLES = 251                          # t = 10.0 .. 11.0 s at 250 Hz -> 250 bins of 4 ms
T0 = 10.0
T = T0 + DT * np.arange(N_SAMPLES)
CURSOR = np.stack([30.0 * (T - T0) ** 2, 50.0 * (T - T0)], 1)        # mm
FINGER = np.stack([np.zeros(N_SAMPLES), -2.0 * (T - T0), 4.0 * (T - T0)], 1)  # (z, -x, -y) cm
# 3 channels x 3 units (unit 0 = unsorted); spike times away from bin edges (bins 4 ms)
SPIKES = [
    [[10.0010, 10.0021, 10.5001], [10.0030], []],
    [[10.0121], [], [10.9999, 11.2]],          # 11.2 s: after the last bin, dropped
    [[], [9.5, 10.0050], [10.0051, 10.0052]],  # 9.5 s: before t[0], dropped
]
NAMES = ["M1 001", "M1 002", "S1 097"]


def write_session(path, *, skip=(), spikes=SPIKES, finger_cols=3):
    m = MatV73(path)
    if "t" not in skip:
        m.numeric("t", T.reshape(-1, 1))
    if "cursor_pos" not in skip:
        m.numeric("cursor_pos", CURSOR)
    finger = FINGER if finger_cols == 3 else np.concatenate([FINGER, np.ones((N_SAMPLES, 3))], 1)
    m.numeric("finger_pos", finger)
    m.numeric("target_pos", np.tile([[10.0, -20.0]], (N_SAMPLES, 1)))
    if "spikes" not in skip:
        m.cell("spikes", spikes)
    if "chan_names" not in skip:
        m.cell("chan_names", [[n] for n in NAMES], kind="char")
    m.close()
    return path


@pytest.fixture
def session(tmp_path):
    return write_session(tmp_path / "indy_test.mat")


def expected_counts(columns, n_bins=250):
    out = torch.zeros(n_bins, len(columns))
    for j, times in enumerate(columns):
        for s in times:
            k = int((s - T0) // DT)
            if 0 <= k < n_bins:
                out[k, j] += 1
    return out


def test_writer_produces_a_matlab_v73_layout(session):
    with open(session, "rb") as fh:
        assert fh.read(19) == b"MATLAB 7.3 MAT-file"
    with h5py.File(session, "r") as f:
        assert f["spikes"].shape == (3, 3) and f["spikes"].dtype == h5py.ref_dtype
        assert f["t"].shape == (1, N_SAMPLES) and f["cursor_pos"].shape == (2, N_SAMPLES)
        assert f["spikes"].attrs["MATLAB_class"] == b"cell"
        assert f[f["spikes"][2, 0]].attrs["MATLAB_empty"] == 1   # channel 0, unit 2 is []


def test_channel_counts_and_cursor_velocity(session):
    d = load_odoherty(session)
    assert isinstance(d, ReachingData)
    assert d.counts.shape == (250, 3) and d.velocity.shape == (250, 2)
    assert d.channel_names == tuple(NAMES) and d.t_start == T0 and d.split == 188
    per_channel = [sum(row, []) for row in SPIKES]
    assert torch.equal(d.counts, expected_counts(per_channel))
    assert d.counts.sum() == 9                        # 11 spikes, 2 outside the session
    # x = 30 (t - t0)^2 mm: mean velocity over bin k is 30 (e_{k+1}^2 - e_k^2) / dt mm/s
    e = DT * np.arange(251)
    vx = 30.0 * (e[1:] ** 2 - e[:-1] ** 2) / DT / 10.0
    assert np.allclose(d.velocity[:, 0].numpy(), vx, rtol=1e-5, atol=1e-5)
    assert np.allclose(d.velocity[:, 1].numpy(), 5.0, atol=1e-4)        # 50 mm/s = 5 cm/s
    assert np.allclose(d.position[:, 1].numpy(), 5.0 * e[:-1], atol=1e-5)  # cm at bin starts


def test_sorted_and_all_units(session):
    d = load_odoherty(session, units="sorted")
    assert d.channel_names == ("M1 001 u1", "M1 002 u2", "S1 097 u1", "S1 097 u2")
    cols = [SPIKES[0][1], SPIKES[1][2], SPIKES[2][1], SPIKES[2][2]]
    assert torch.equal(d.counts, expected_counts(cols))
    d = load_odoherty(session, units="all")
    assert d.channel_names[:2] == ("M1 001 u0", "M1 001 u1") and d.n_channels == 6


def test_finger_velocity_and_six_columns(tmp_path):
    for cols in (3, 6):
        d = load_odoherty(write_session(tmp_path / f"f{cols}.mat", finger_cols=cols),
                          velocity_from="finger")
        # finger (z, -x, -y) = (0, -2 t, 4 t) cm: x = 2 t, y = -4 t -> (2, -4) cm/s
        assert np.allclose(d.velocity.numpy(), [[2.0, -4.0]], atol=1e-4)


def test_coarser_bins_interpolate_position(session):
    d = load_odoherty(session, dt=0.006)              # edges between the samples
    assert d.counts.shape[0] == 166                   # floor(1.0 / 0.006)
    assert np.allclose(d.velocity[:, 1].numpy(), 5.0, atol=1e-4)
    assert d.counts.sum() == 8                        # 10.9999 s is after the last edge, 10.996 s


def test_missing_variables_are_named(tmp_path):
    path = write_session(tmp_path / "bad.mat", skip=("spikes", "cursor_pos"))
    with pytest.raises(KeyError, match=r"missing variable\(s\) \['spikes', 'cursor_pos'\]"):
        load_odoherty(path)


def test_chan_names_optional(tmp_path):
    d = load_odoherty(write_session(tmp_path / "nonames.mat", skip=("chan_names",)))
    assert d.channel_names == ("ch000", "ch001", "ch002")


def test_not_a_v73_file(tmp_path):
    path = tmp_path / "old.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    with pytest.raises(ValueError, match=r"not a MATLAB v7.3 \(HDF5\) file.*-v7.3"):
        load_odoherty(path)


def test_spikes_must_be_a_cell_array(tmp_path):
    path = tmp_path / "numeric_spikes.mat"
    m = MatV73(path)
    m.numeric("t", T.reshape(-1, 1))
    m.numeric("cursor_pos", CURSOR)
    m.numeric("spikes", np.zeros((3, 2)))
    m.close()
    with pytest.raises(ValueError, match=r"spikes must be a MATLAB cell array"):
        load_odoherty(path)


def test_missing_file_and_bad_arguments(tmp_path, session):
    with pytest.raises(FileNotFoundError, match=r"O'Doherty session not found.*Zenodo"):
        load_odoherty(tmp_path / "nope.mat")
    with pytest.raises(ValueError, match=r"units must be one of"):
        load_odoherty(session, units="mua")
    with pytest.raises(ValueError, match=r"dt must be a finite number > 0"):
        load_odoherty(session, dt=0.0)


def test_bin_spike_times_edges():
    counts = bin_spike_times([np.array([0.0, 0.0039, 0.004, 0.0119, 0.012])], 0.0, 0.004, 3)
    assert counts[:, 0].tolist() == [2.0, 1.0, 1.0]   # [0, 4) ms, [4, 8) ms, [8, 12) ms


# --- NLB MC_Maze NWB ------------------------------------------------------------------


def write_nwb(path, *, behaviour=("hand_vel", "hand_pos"), vel_unit="mm/s", units=None,
              ts=None, vel=None, pos=None, trials=None):
    """An MC_Maze-like NWB file. Defaults: 3 units, 40 ms of behaviour at 1 kHz, 2 trials;
    ``units`` (spike-time arrays, ``heldout`` False), ``ts`` with ``vel`` [n, 2] (mm/s) and
    ``pos`` [n, 2] (mm), and ``trials`` ((start, stop, split), ...) replace them."""
    pynwb = pytest.importorskip("pynwb")
    nwb = pynwb.NWBFile(session_description="MC_Maze test", identifier="mc-maze-test",
                        session_start_time=datetime.datetime(2024, 1, 1,
                                                             tzinfo=datetime.timezone.utc))
    nwb.add_unit_column(name="heldout", description="held out by the benchmark")
    if units is None:
        nwb.add_unit(spike_times=[0.0011, 0.0012, 0.0095, 0.5], heldout=False)
        nwb.add_unit(spike_times=[0.0041, 0.03], heldout=True)
        nwb.add_unit(spike_times=[], heldout=False)
    else:
        for times in units:
            nwb.add_unit(spike_times=list(times), heldout=False)
    if ts is None:
        ts = np.arange(40) * 0.001                    # 1 kHz, 40 ms -> 9 bins of 4 ms
        vel = np.stack([np.arange(40.0), np.full(40, -10.0)], 1)     # mm/s
        pos = np.stack([20.0 * ts, -30.0 * ts], 1)                   # mm: (20, -30) mm/s
    mod = nwb.create_processing_module(name="behavior", description="hand kinematics")
    if "hand_vel" in behaviour:
        mod.add(pynwb.TimeSeries(name="hand_vel", data=vel, unit=vel_unit, timestamps=ts))
    if "hand_pos" in behaviour:
        mod.add(pynwb.TimeSeries(name="hand_pos", data=pos, unit="mm", timestamps=ts))
    nwb.add_trial_column(name="split", description="benchmark split")
    for start, stop, split in trials or ((0.0, 0.02, "train"), (0.02, 0.039, "val")):
        nwb.add_trial(start_time=start, stop_time=stop, split=split)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_nlb_units_velocity_and_trials(tmp_path):
    path = write_nwb(tmp_path / "mc_maze.nwb")
    d = load_nlb_mc_maze(path)
    assert d.counts.shape == (9, 3) and d.channel_names == ("unit0", "unit1", "unit2")
    expected = torch.zeros(9, 3)
    expected[0, 0], expected[2, 0] = 2, 1             # 1.1, 1.2 ms; 9.5 ms (0.5 s dropped)
    expected[1, 1], expected[7, 1] = 1, 1             # 4.1 ms, 30 ms
    assert torch.equal(d.counts, expected)
    # bin k holds samples 4k..4k+3 ms of vx = t_ms mm/s: mean 4k + 1.5 mm/s -> / 10 cm/s
    assert np.allclose(d.velocity[:, 0].numpy(), (4 * np.arange(9) + 1.5) / 10.0)
    assert np.allclose(d.velocity[:, 1].numpy(), -1.0) and d.velocity_unit == "cm/s"
    assert np.allclose(d.position[:, 0].numpy(), 2.0 * 0.004 * np.arange(9), atol=1e-6)
    assert d.trials["split"].tolist() in (["train", "val"], [b"train", b"val"])
    assert np.allclose(d.trials["stop_time"], [0.02, 0.039])
    held_in = load_nlb_mc_maze(path, include_heldout=False)
    assert held_in.channel_names == ("unit0", "unit2")


def test_nlb_velocity_from_position(tmp_path):
    d = load_nlb_mc_maze(write_nwb(tmp_path / "pos.nwb", behaviour=("hand_pos",)))
    assert np.allclose(d.velocity.numpy(), [[2.0, -3.0]], atol=1e-4)   # (20, -30) mm/s


def test_nlb_unknown_unit_is_kept(tmp_path):
    d = load_nlb_mc_maze(write_nwb(tmp_path / "u.nwb", vel_unit="a.u."))
    assert d.velocity_unit == "a.u." and np.isclose(float(d.velocity[0, 0]), 1.5)


def test_nlb_without_behaviour(tmp_path):
    path = write_nwb(tmp_path / "test_split.nwb", behaviour=())
    with pytest.raises(KeyError, match=r"no behaviour to decode.*hand_vel"):
        load_nlb_mc_maze(path)


def test_nlb_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MC_Maze NWB file not found.*DANDI"):
        load_nlb_mc_maze(tmp_path / "nope.nwb")


def test_nlb_without_pynwb_names_the_extra(tmp_path, monkeypatch):
    import sys

    path = tmp_path / "any.nwb"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(ImportError, match=r"pynwb.*pip install 'spikegrad\[bci\]'"):
        load_nlb_mc_maze(path)
