import os
import random

import numpy as np
import pytest
import torch

from spikegrad.data import Split, load_mnist1d
from spikegrad.data import mnist1d as mnist1d_mod

pytest.importorskip("mnist1d")


def test_generates_without_writing_files_or_moving_global_rngs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mnist1d_mod._generate.cache_clear()  # force a real generation inside tmp_path
    np_state = np.random.get_state()[1].copy()
    py_state = random.getstate()
    s = load_mnist1d()
    assert os.listdir(tmp_path) == []
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert random.getstate() == py_state
    assert isinstance(s, Split)


def test_shapes_dtypes_and_balance():
    s = load_mnist1d()
    assert s.x_train.shape == (4000, 40) and s.x_test.shape == (1000, 40)
    assert s.y_train.shape == (4000,) and s.y_test.shape == (1000,)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    for y, n in ((s.y_train, 4000), (s.y_test, 1000)):
        counts = y.bincount(minlength=10)
        assert len(counts) == 10
        assert int(counts.min()) > 0.7 * n / 10 and int(counts.max()) < 1.3 * n / 10


def test_cached_but_returns_fresh_tensors():
    a = load_mnist1d()
    a.x_train.zero_()
    b = load_mnist1d()
    assert float(b.x_train.abs().sum()) > 0
    assert torch.equal(b.y_test, load_mnist1d().y_test)


def test_missing_package_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    mnist1d_mod._generate.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"mnist1d.*pip install 'spikegrad\[apps\]'"):
            load_mnist1d()
    finally:
        mnist1d_mod._generate.cache_clear()
