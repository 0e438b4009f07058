import numpy as np
import pytest
import torch

from spikegrad.data import (NMNISTDataset, events_to_frames, make_events, read_nmnist_events,
                            time_major_collate, write_nmnist_events)


def _encode(x, y, t, p) -> bytes:
    """40-bit N-MNIST events written bit by bit: x | y | p (1 bit) | t (23 bits)."""
    out = bytearray()
    for xi, yi, ti, pi in zip(x, y, t, p):
        word = (xi << 32) | (yi << 24) | (pi << 23) | ti
        out += word.to_bytes(5, "big")
    return bytes(out)


def test_decodes_the_40_bit_events():
    x, y, t, p = [0, 33, 5, 17], [0, 12, 33, 4], [0, 1, 70000, 2 ** 23 - 1], [1, 0, 1, 0]
    ev = read_nmnist_events(_encode(x, y, t, p))
    assert ev.dtype.names == ("x", "y", "t", "p")
    assert ev["x"].tolist() == x and ev["y"].tolist() == y
    assert ev["t"].tolist() == t and ev["p"].tolist() == p
    # byte layout by hand: x=5, y=33, p=1, t=70000=0x011170 -> 05 21 81 11 70
    assert _encode([5], [33], [70000], [1]) == bytes.fromhex("0521811170")


def test_overflow_markers_shift_later_timestamps_and_are_dropped(tmp_path):
    raw = _encode([1, 0, 2, 0, 3], [1, 240, 2, 240, 3], [100, 0, 50, 0, 60], [1, 0, 0, 0, 1])
    (tmp_path / "s.bin").write_bytes(raw)
    ev = read_nmnist_events(tmp_path / "s.bin")
    assert ev["x"].tolist() == [1, 2, 3]
    assert ev["t"].tolist() == [100, 50 + 2 ** 13, 60 + 2 * 2 ** 13]


def test_truncated_file_is_reported():
    with pytest.raises(ValueError, match="5-byte events, got 7 bytes"):
        read_nmnist_events(b"\x00" * 7)


def test_events_to_frames_counts_by_hand():
    ev = make_events(x=[0, 2, 2, 1, 2], y=[1, 0, 0, 2, 0], t=[0, 10, 12, 25, 29], p=[0, 1, 1, 0, 1])
    f = events_to_frames(ev, 3, sensor_size=(3, 3, 2))  # window [0, 30): bins of 10 us
    assert f.shape == (3, 2, 3, 3) and f.dtype == torch.float32
    expected = torch.zeros(3, 2, 3, 3)
    expected[0, 0, 1, 0] = 1      # t=0, p=0, y=1, x=0
    expected[1, 1, 0, 2] = 2      # t=10 and 12, p=1, y=0, x=2 (two events in one bin)
    expected[2, 0, 2, 1] = 1      # t=25
    expected[2, 1, 0, 2] = 1      # t=29: the last event lands in the last bin
    assert torch.equal(f, expected)
    assert float(events_to_frames(ev, 3, (3, 3, 2), binary=True).max()) == 1.0
    # a fixed window: only [10, 20) -> one frame holding the two events at t=10, 12
    g = events_to_frames(ev, 1, (3, 3, 2), t_start=10, duration=10)
    assert g.sum().item() == 2 and g[0, 1, 0, 2].item() == 2
    assert events_to_frames(ev[:0], 4, (3, 3, 2)).shape == (4, 2, 3, 3)


def test_events_to_frames_bad_input():
    with pytest.raises(TypeError, match="fields x, y, t, p"):
        events_to_frames(np.zeros((3, 4)), 2)
    with pytest.raises(ValueError, match="outside sensor_size"):
        events_to_frames(make_events([5], [0], [0], [0]), 2, (3, 3, 2))
    with pytest.raises(ValueError, match="n_steps must be an int >= 1"):
        events_to_frames(make_events([0], [0], [0], [0]), 0)


def test_dataset_reads_the_folder_tree(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("Train", 3), ("Test", 2)):
        for digit in (0, 7):
            d = tmp_path / split / str(digit)
            d.mkdir(parents=True)
            for k in range(n):
                m = 50
                raw = _encode(rng.integers(0, 34, m).tolist(), rng.integers(0, 34, m).tolist(),
                              np.sort(rng.integers(0, 300000, m)).tolist(),
                              rng.integers(0, 2, m).tolist())
                (d / f"{k:05d}.bin").write_bytes(raw)
    ds = NMNISTDataset(tmp_path, train=True, n_steps=5)
    assert len(ds) == 6 and len(NMNISTDataset(tmp_path, train=False, n_steps=5)) == 4
    frames, label = ds[4]
    assert frames.shape == (5, 2, 34, 34) and label == 7 and frames.sum().item() == 50
    xs, ys = time_major_collate([ds[i] for i in range(4)])
    assert xs.shape == (5, 4, 2, 34, 34) and ys.tolist() == [0, 0, 0, 7]
    with pytest.raises(FileNotFoundError, match="extracted N-MNIST"):
        NMNISTDataset(tmp_path / "nope")


def test_writer_matches_the_bitwise_encoding_and_round_trips(tmp_path):
    x, y, t, p = [0, 33, 5, 255], [0, 12, 239, 4], [0, 1, 70000, 2 ** 23 - 1], [1, 0, 1, 0]
    path = tmp_path / "s.bin"
    write_nmnist_events(path, make_events(x, y, t, p))
    assert path.read_bytes() == _encode(x, y, t, p)
    ev = read_nmnist_events(path)
    assert (ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist()) == (x, y, t, p)


@pytest.mark.parametrize("field, value, match", [
    ("t", 2 ** 23, r"events\['t'\] must lie in \[0, 8388607\]"),
    ("y", 240, "overflow"), ("p", 2, r"events\['p'\]"), ("x", -1, r"events\['x'\]")])
def test_writer_rejects_what_the_format_cannot_hold(tmp_path, field, value, match):
    cols = dict(x=[1], y=[1], t=[1], p=[1])
    cols[field] = [value]
    with pytest.raises(ValueError, match=match):
        write_nmnist_events(tmp_path / "bad.bin", make_events(**cols))
