import pytest
import torch

from spikegrad.data import Split, load_digits_split

pytest.importorskip("sklearn")


def test_shapes_ranges_dtypes():
    s = load_digits_split()
    assert isinstance(s, Split)
    assert s.x_train.shape == (1347, 64) and s.x_test.shape == (450, 64)
    assert s.y_train.shape == (1347,) and s.y_test.shape == (450,)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    for x in (s.x_train, s.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        # pixels are multiples of 1/16
        assert torch.equal(x * 16, (x * 16).round())


def test_stratified():
    s = load_digits_split()
    all_y = torch.cat([s.y_train, s.y_test])
    frac_all = all_y.bincount().float() / len(all_y)
    frac_test = s.y_test.bincount(minlength=10).float() / len(s.y_test)
    # stratification keeps every class share within one sample of the global share
    assert float((frac_test - frac_all).abs().max()) <= 1.0 / len(s.y_test) + 1e-6


def test_deterministic_and_seeded():
    a, b, c = load_digits_split(seed=0), load_digits_split(seed=0), load_digits_split(seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a.y_test, c.y_test)


def test_test_size():
    s = load_digits_split(test_size=0.5)
    assert len(s.y_test) == 899 and len(s.y_train) == 898


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.1, "0.2"])
def test_bad_test_size(test_size):
    with pytest.raises(ValueError, match=r"test_size must be a fraction in \(0, 1\), got"):
        load_digits_split(test_size=test_size)


def test_missing_sklearn_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn.*pip install 'spikegrad\[apps\]'"):
        load_digits_split()
