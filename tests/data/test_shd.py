import numpy as np
import pytest
import torch

from spikegrad.data import SHDDataset

h5py = pytest.importorskip("h5py")


def write_shd(path, times, units, labels, skip=()):
    """Write a file in the SHD layout: vlen float times (s), vlen int units, int labels."""
    with h5py.File(path, "w") as f:
        if "spikes/times" not in skip:
            d = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
            for i, t in enumerate(times):
                d[i] = np.asarray(t, dtype=np.float32)
        if "spikes/units" not in skip:
            d = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, u in enumerate(units):
                d[i] = np.asarray(u, dtype=np.uint16)
        if "labels" not in skip:
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
    return path


# dt = 1.0 s / 10 steps = 0.1 s; times chosen away from inner bin edges
TIMES = [
    [0.0, 0.05, 0.06, 0.55, 1.0, 1.2],  # two spikes of unit 3 in bin 0; one at max_time; one after
    [0.95, 0.31],
    [],
]
UNITS = [
    [3, 3, 1, 4, 0, 2],
    [4, 0],
    [],
]
LABELS = [7, 2, 19]


@pytest.fixture
def shd_file(tmp_path):
    return write_shd(tmp_path / "shd.h5", TIMES, UNITS, LABELS)


def test_len_labels_and_shape(shd_file):
    ds = SHDDataset(shd_file, n_steps=10, max_time_s=1.0, n_units=5)
    assert len(ds) == 3
    assert ds.labels.tolist() == LABELS
    x, y = ds[0]
    assert x.shape == (10, 5) and x.dtype == torch.float32
    assert y == 7 and isinstance(y, int)


def test_binned_rasters_exact(shd_file):
    ds = SHDDataset(shd_file, n_steps=10, max_time_s=1.0, n_units=5)
    expected0 = torch.zeros(10, 5)
    expected0[0, 3] = 2  # t = 0.0 and 0.05, both in [0, 0.1)
    expected0[0, 1] = 1  # t = 0.06
    expected0[5, 4] = 1  # t = 0.55
    expected0[9, 0] = 1  # t = 1.0 == max_time_s: kept, in the last (closed) bin
    # t = 1.2 > max_time_s (unit 2) is dropped
    assert torch.equal(ds[0][0], expected0)

    expected1 = torch.zeros(10, 5)
    expected1[9, 4] = 1
    expected1[3, 0] = 1
    assert torch.equal(ds[1][0], expected1)
    assert torch.equal(ds[2][0], torch.zeros(10, 5))  # a sample without spikes


def test_binary_clips_counts(shd_file):
    ds = SHDDataset(shd_file, n_steps=10, max_time_s=1.0, n_units=5, binary=True)
    x = ds[0][0]
    assert x[0, 3] == 1 and x.sum() == 4
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_coarser_bins_and_defaults(tmp_path):
    path = write_shd(tmp_path / "d.h5", [[0.0, 0.71, 1.39]], [[699, 0, 5]], [0])
    ds = SHDDataset(path)  # 100 steps of 14 ms over 1.4 s, 700 units; 0.71 s -> step 50
    x, _ = ds[0]
    assert x.shape == (100, 700)
    assert x[0, 699] == 1 and x[50, 0] == 1 and x[99, 5] == 1 and x.sum() == 3


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SHD file not found: .*nope\.h5"):
        SHDDataset(tmp_path / "nope.h5")


def test_missing_keys(tmp_path):
    path = write_shd(tmp_path / "bad.h5", TIMES, UNITS, LABELS, skip=("spikes/units", "labels"))
    with pytest.raises(KeyError, match=r"missing dataset\(s\) \['spikes/units', 'labels'\]"):
        SHDDataset(path)


def test_unit_out_of_range(shd_file):
    match = r"sample 0 has unit indices in \[0, 4\].*\[0, 4\).*n_units=4"
    with pytest.raises(ValueError, match=match):
        SHDDataset(shd_file, n_steps=10, max_time_s=1.0, n_units=4)


def test_inconsistent_lengths(tmp_path):
    path = write_shd(tmp_path / "len.h5", [[0.1, 0.2]], [[1]], [0])
    with pytest.raises(ValueError, match=r"sample 0 has 2 spike times but 1 unit indices"):
        SHDDataset(path, n_units=5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_steps": 0}, r"n_steps must be an int >= 1, got 0"),
        ({"max_time_s": 0.0}, r"max_time_s must be a finite number > 0 \(seconds\), got 0\.0"),
        ({"n_units": -3}, r"n_units must be an int >= 1, got -3"),
    ],
)
def test_bad_arguments(shd_file, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SHDDataset(shd_file, **kwargs)
