"""MNIST-1D (Greydanus & Kobak), generated offline.

Uses ``mnist1d.data.make_dataset(get_dataset_args())``, which reproduces the published
pickle exactly. ``mnist1d.data.get_dataset`` is deliberately not used: it downloads and
writes a pickle into the working folder. mnist1d is imported lazily.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from .splits import Split, require

__all__ = ["load_mnist1d"]


@functools.lru_cache(maxsize=1)
def _generate() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data_mod = require("mnist1d.data", "mnist1d")
    # make_dataset reseeds the global numpy and python RNGs; put them back so that loading
    # data does not change the user's random streams.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        ds = data_mod.make_dataset(data_mod.get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (
        np.asarray(ds["x"], dtype=np.float32),
        np.asarray(ds["y"], dtype=np.int64),
        np.asarray(ds["x_test"], dtype=np.float32),
        np.asarray(ds["y_test"], dtype=np.int64),
    )
    for a in arrays:
        a.flags.writeable = False  # the cache is shared by every caller
    return arrays


def load_mnist1d() -> Split:
    """Load the standard MNIST-1D data set (4000 train / 1000 test sequences of length 40).

    Generation takes about 2 s and is cached in-process; every call returns fresh tensors,
    so modifying them does not affect later calls. Nothing is written to disk, and the
    global numpy/python RNG states are restored after generation.

    Returns:
        :class:`Split` with float32 inputs (standardised by mnist1d to zero mean and unit
        standard deviation over the whole set, so not in [0, 1]) and int64 labels 0..9.

    Shapes:
        x_train ``[4000, 40]``, y_train ``[4000]``, x_test ``[1000, 40]``, y_test ``[1000]``;
        the feature axis is the sequence position.

    Raises:
        ImportError: mnist1d is not installed.
    """
    return Split(*(torch.tensor(a) for a in _generate()))
