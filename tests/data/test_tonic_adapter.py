"""from_tonic over tonic's own N-MNIST reader, on .bin files the test writes: raw events
binned here equal spikegrad's own N-MNIST loader on the same files, ToFrame outputs pass
through unchanged, variable lengths are zero-padded, and misuse names the fix."""

import numpy as np
import pytest
import torch

from spikegrad.data import (NMNISTDataset, TonicFrames, from_tonic, make_events,
                            pad_time_collate, write_nmnist_events)

tonic = pytest.importorskip("tonic")


@pytest.fixture
def nmnist_root(tmp_path):
    """A tiny N-MNIST in the data set's layout: Train/<digit>/<id>.bin."""
    rng = np.random.default_rng(0)
    for digit in (3, 7):
        for k in range(3):
            n = int(rng.integers(20, 60))
            t = np.sort(rng.integers(0, 100_000 * (k + 1), n))   # 0.1 to 0.3 s long
            ev = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t,
                             rng.integers(0, 2, n))
            folder = tmp_path / "NMNIST" / "Train" / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            write_nmnist_events(folder / f"{k:05d}.bin", ev)
    return tmp_path


def _tonic_nmnist(root, **kw):
    # tonic's own class, told that the files are there (it would download otherwise); the
    # name stays NMNIST because tonic reads from save_to/<class name>/
    local = type("NMNIST", (tonic.datasets.NMNIST,), {"_check_exists": lambda self: True})
    return local(str(root), train=True, **kw)


def test_raw_events_binned_here_equal_spikegrads_own_nmnist_loader(nmnist_root):
    ds = _tonic_nmnist(nmnist_root)
    ours = NMNISTDataset(nmnist_root / "NMNIST", train=True, n_steps=6)
    batches = list(from_tonic(ds, batch_size=4, n_steps=6))
    x = torch.cat([b[0] for b in batches], dim=1)
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (6, 6, 2, 34, 34) and x.dtype == torch.float32
    assert y.tolist() == [3, 3, 3, 7, 7, 7] == [ours[i][1] for i in range(6)]
    assert torch.equal(x, torch.stack([ours[i][0] for i in range(6)], dim=1))
    assert x.sum().item() == sum(len(ds[i][0]) for i in range(6))   # no event lost


def test_toframe_outputs_pass_through_and_flatten(nmnist_root):
    to_frame = tonic.transforms.ToFrame(sensor_size=tonic.datasets.NMNIST.sensor_size,
                                        n_time_bins=5)
    ds = _tonic_nmnist(nmnist_root, transform=to_frame)
    x, y = next(iter(from_tonic(ds, batch_size=6, flatten=True)))
    assert x.shape == (5, 6, 2 * 34 * 34)
    for b in range(6):
        assert torch.equal(x[:, b], torch.as_tensor(ds[b][0], dtype=torch.float32).reshape(5, -1))


def test_variable_length_frames_are_zero_padded_at_the_end(nmnist_root):
    to_frame = tonic.transforms.ToFrame(sensor_size=tonic.datasets.NMNIST.sensor_size,
                                        time_window=50_000)
    ds = _tonic_nmnist(nmnist_root, transform=to_frame)
    lengths = [len(ds[i][0]) for i in range(6)]
    assert len(set(lengths)) > 1      # the fixture's recordings differ in length
    x, _ = next(iter(from_tonic(ds, batch_size=6, binary=True)))
    assert x.shape[0] == max(lengths) and x.max() <= 1
    short = int(np.argmin(lengths))
    assert x[lengths[short]:, short].abs().sum() == 0


def test_one_dimensional_sensors_and_misuse():
    ev = np.zeros(3, dtype=[("x", np.int64), ("t", np.int64), ("p", np.int64)])
    ev["x"], ev["t"] = [0, 5, 9], [0, 10, 20]

    class Audio:
        sensor_size = (10, 1, 1)

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return ev, 4

    frames, label = TonicFrames(Audio(), n_steps=2, flatten=True)[0]
    assert frames.shape == (2, 10) and label == 4
    assert frames[0, 0] == 1 and frames[0, 5] == 1 and frames[1, 9] == 1
    with pytest.raises(ValueError, match="pass n_steps"):
        TonicFrames(Audio())[0]
    with pytest.raises(TypeError, match="n_steps must be an int"):
        TonicFrames(Audio(), n_steps=2.5)
    with pytest.raises(ValueError, match="time axis first"):
        TonicFrames([(np.float32(1.0), 0)])[0]
    with pytest.raises(ValueError, match="empty batch"):
        pad_time_collate([])
