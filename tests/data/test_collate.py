import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import spikegrad.data as data
from spikegrad.data import time_major_collate


def test_collate_time_major():
    batch = [(torch.full((4, 3), float(i)), i) for i in range(5)]
    xs, ys = time_major_collate(batch)
    assert xs.shape == (4, 5, 3)
    assert ys.dtype == torch.int64 and ys.tolist() == [0, 1, 2, 3, 4]
    for b in range(5):
        assert torch.equal(xs[:, b], batch[b][0])


def test_collate_tensor_and_numpy_labels():
    batch = [(np.zeros((2, 1), dtype=np.float32), np.int64(3)), (torch.ones(2, 1), torch.tensor(4))]
    xs, ys = time_major_collate(batch)
    assert xs.shape == (2, 2, 1) and ys.tolist() == [3, 4]


def test_collate_with_dataloader_over_randman_raster():
    d = data.make_randman(n_classes=3, n_units=5, n_steps=20, samples_per_class=8, seed=0)
    ds = TensorDataset(data.randman_raster(d), d.labels)  # items: ([T, U], label)
    loader = DataLoader(ds, batch_size=6, collate_fn=time_major_collate)
    xs, ys = next(iter(loader))
    assert xs.shape == (20, 6, 5)
    assert torch.equal(ys, d.labels[:6])
    assert torch.equal(xs[:, 2], ds[2][0])


@pytest.mark.parametrize(
    "batch, exc, match",
    [
        ([], ValueError, r"batch must contain at least one \(x, label\) pair"),
        ([torch.zeros(3)], TypeError, r"batch\[0\] must be an \(x, label\) pair, got Tensor"),
        ([(torch.zeros(3), 0, 1)], TypeError, r"batch\[0\].*of length 3"),
        ([(torch.zeros(3, 2), 0), (torch.zeros(4, 2), 1)], ValueError,
         r"batch\[0\] has \(3, 2\) but batch\[1\] has \(4, 2\)"),
        ([(torch.tensor(1.0), 0)], ValueError, r"batch\[0\]\[0\] must have a leading time axis"),
    ],
)
def test_collate_bad_input(batch, exc, match):
    with pytest.raises(exc, match=match):
        time_major_collate(batch)


def test_public_names():
    expected = {
        "rate", "poisson", "latency", "latency_times", "delta", "make_randman",
        "randman_raster", "split_in_order", "RandmanData", "load_digits_split",
        "load_mnist1d", "SHDDataset", "time_major_collate", "Split", "population",
        "load_mnist_files", "read_idx", "NMNISTDataset", "events_to_frames", "make_events",
        "read_nmnist_events", "write_nmnist_events", "pattern_generation_task", "noisy_signal_task", "make_yinyang",
        "encode_yinyang", "load_yinyang_splits", "cue_accumulation", "delayed_xor", "random_roll",
        "ReachingData", "CortexTruth", "Disruption", "simulate_cortex", "load_odoherty",
        "load_nlb_mc_maze", "bin_spike_times", "from_tonic", "TonicFrames", "pad_time_collate",
    }
    assert set(data.__all__) == expected
    assert all(hasattr(data, name) for name in expected)


def test_import_does_not_pull_optional_packages():
    code = (
        "import sys, spikegrad, spikegrad.data; "
        "print(sorted(m for m in ('sklearn', 'mnist1d', 'h5py', 'tonic', 'tensorboard', "
        "'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_h5py_names_the_extra(monkeypatch, tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"h5py.*pip install 'spikegrad\[apps\]'"):
        data.SHDDataset(path)
