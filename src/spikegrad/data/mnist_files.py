"""MNIST-format (IDX) files: MNIST, Fashion-MNIST, KMNIST, EMNIST, read from disk.

spikegrad never downloads; a user who has the four files (e.g. from yann.lecun.com/exdb/mnist
or a torchvision ``MNIST/raw`` folder) points :func:`load_mnist_files` at their folder.

IDX layout (all integers big-endian)::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions n
    n x int32   size of each dimension
    then        the elements, row-major, big-endian

Images are ``idx3`` (``[N, rows, cols]`` uint8, magic 2051), labels ``idx1`` (``[N]`` uint8,
magic 2049). Files may be gzip-compressed (``.gz``, detected from the content).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from .splits import Split

__all__ = ["read_idx", "load_mnist_files", "IDX_TYPES"]

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
          "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a native-endian numpy array.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an IDX file (bad magic or type code), or the data is shorter or longer
            than the header says.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (the first two bytes must be 0; got "
                         f"{raw[:4].hex() or 'an empty file'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{code:02X}; expected one of "
                         + ", ".join(f"0x{c:02X}" for c in IDX_TYPES))
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: the header promises shape {shape} of {dtype.name} "
                         f"({expected} bytes) but the file holds {len(raw) - header} data bytes "
                         "(truncated or corrupted download?)")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"{stem}[.gz] not found in {root} (nor in raw/ or MNIST/raw/); "
                            "download the four MNIST files there (spikegrad does not download)")


def load_mnist_files(root: str | os.PathLike) -> Split:
    """The four standard MNIST-format files of a folder as a train/test :class:`Split`.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) in
    ``root``, ``root/raw`` or ``root/MNIST/raw`` (torchvision's layout).

    Returns:
        :class:`Split`: float32 images scaled to [0, 1] (pixel / 255) and int64 labels.

    Shapes:
        x_train ``[N_train, rows, cols]`` (60000 x 28 x 28 for MNIST), y_train ``[N_train]``,
        x_test ``[N_test, rows, cols]``, y_test ``[N_test]``.

    Raises:
        FileNotFoundError: a file is missing. ValueError: a malformed file, images and labels
        of different lengths, or images that are not ``[N, rows, cols]`` uint8.
    """
    root = Path(root)
    parts = []
    for split in ("train", "test"):
        images = read_idx(_find(root, _FILES[f"{split}_images"]))
        labels = read_idx(_find(root, _FILES[f"{split}_labels"]))
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{split} images must be an idx3-ubyte array [N, rows, cols], got "
                             f"{images.dtype} with shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{split}: {len(images)} images but labels of shape {labels.shape}; "
                             "the files do not belong together")
        parts += [torch.from_numpy(images.astype(np.float32) / 255.0),
                  torch.from_numpy(labels.astype(np.int64))]
    return Split(*parts)
