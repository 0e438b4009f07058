import gzip
import struct

import numpy as np
import pytest
import torch

from spikegrad.data import load_mnist_files, read_idx


def _idx_bytes(array: np.ndarray, code: int, fmt: str) -> bytes:
    """IDX written by hand: magic (0, 0, type, ndim), big-endian int32 sizes, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(fmt).tobytes()


def _write_mnist(folder, n_train=5, n_test=3, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        data = _idx_bytes(a, 0x08, ">u1")
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def test_header_is_the_documented_magic():
    data = _idx_bytes(np.zeros((2, 28, 28), np.uint8), 0x08, ">u1")
    assert struct.unpack(">I", data[:4])[0] == 2051  # the images magic of the MNIST page
    assert struct.unpack(">I", _idx_bytes(np.zeros(2, np.uint8), 0x08, ">u1")[:4])[0] == 2049


@pytest.mark.parametrize("code, fmt", [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"),
                                       (0x0D, ">f4"), (0x0E, ">f8")])
def test_read_idx_every_element_type_big_endian(tmp_path, code, fmt):
    a = (np.arange(24).reshape(2, 3, 4) * (-1 if fmt[1] == "i" else 1) * 3).astype(fmt)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(a, code, fmt))
    b = read_idx(tmp_path / "a.idx")
    assert b.shape == (2, 3, 4) and b.dtype.isnative
    np.testing.assert_array_equal(b, a.astype(b.dtype))


def test_load_mnist_files_plain_and_gzip(tmp_path):
    for gz in (False, True):
        arrays = _write_mnist(tmp_path / str(gz), gz=gz, seed=int(gz))
        s = load_mnist_files(tmp_path / str(gz))
        assert s.x_train.shape == (5, 4, 3) and s.x_test.shape == (3, 4, 3)
        assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
        pixels = torch.from_numpy(arrays["train-images-idx3-ubyte"] / 255.0).float()
        torch.testing.assert_close(s.x_train, pixels)
        assert s.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
        assert float(s.x_train.max()) <= 1.0


def test_torchvision_layout_is_found(tmp_path):
    _write_mnist(tmp_path / "MNIST" / "raw")
    assert len(load_mnist_files(tmp_path).y_train) == 5


def test_malformed_files_are_reported(tmp_path):
    arrays = _write_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    good = path.read_bytes()
    path.write_bytes(good[:-7])
    with pytest.raises(ValueError, match=r"promises shape \(5, 4, 3\).*truncated"):
        load_mnist_files(tmp_path)
    path.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    path.write_bytes(good[:2] + b"\x07" + good[3:])
    with pytest.raises(ValueError, match="unknown IDX element type 0x07"):
        read_idx(path)
    path.write_bytes(good)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(2, np.uint8), 8, ">u1"))
    with pytest.raises(ValueError, match="3 images but labels of shape"):
        load_mnist_files(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*does not download"):
        load_mnist_files(tmp_path)
    assert arrays
