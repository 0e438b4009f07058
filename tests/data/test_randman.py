
import numpy as np
import pytest
import torch

from spikegrad.data import RandmanData, make_randman, randman_raster, split_in_order
from spikegrad.data.randman import n_fourier_terms

SMALL = dict(n_classes=4, n_units=8, samples_per_class=60)


def test_shapes_and_dtypes():
    d = make_randman(**SMALL, n_spikes=2)
    assert isinstance(d, RandmanData)
    assert d.times.shape == d.units.shape == (240, 16)
    assert d.labels.shape == (240,)
    assert d.times.dtype == torch.float32
    assert d.units.dtype == d.labels.dtype == torch.int64
    assert (d.n_steps, d.n_units) == (100, 8)
    assert d.units[0].tolist() == list(range(8)) * 2
    assert torch.equal(d.labels.bincount(), torch.full((4,), 60))


def test_one_spike_per_unit_within_window():
    d = make_randman(**SMALL, n_steps=80, step_frac=0.25)
    assert float(d.times.min()) >= 0.0 and float(d.times.max()) <= 80 * 0.25
    r = randman_raster(d)
    assert r.shape == (240, 80, 8) and r.dtype == torch.float32
    assert torch.equal(r.sum(1), torch.ones(240, 8))  # each unit exactly once
    assert r[:, 21:].sum() == 0  # floor(20.0) = 20 is the last possible step
    # the spike step is the floored spike time
    assert torch.equal(r.argmax(1), d.times.floor().long())


def test_raster_step_frac_one_keeps_last_spike_in_range():
    d = make_randman(**SMALL, n_steps=30, step_frac=1.0)
    assert float(d.times.max()) == 30.0
    assert torch.equal(randman_raster(d).sum(1), torch.ones(240, 8))


def test_seeded():
    a, b, c = (make_randman(**SMALL, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.times, b.times) and torch.equal(a.labels, b.labels)
    assert not torch.allclose(a.times, c.times)


def test_does_not_touch_global_rngs():
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    make_randman(**SMALL)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_min_max_standardised_per_class_and_unit():
    d = make_randman(**SMALL, n_spikes=2, dim_manifold=2, alpha=2.0, step_frac=0.5)
    v = d.times / (100 * 0.5)
    for k in range(4):
        vk = v[d.labels == k]
        torch.testing.assert_close(vk.min(0).values, torch.zeros(16))
        torch.testing.assert_close(vk.max(0).values, torch.ones(16))


def test_unshuffled_is_grouped_by_class():
    d = make_randman(**SMALL, shuffle=False)
    assert torch.equal(d.labels, torch.arange(4).repeat_interleave(60))


def test_counts_carry_no_class_information_but_timing_does():
    d = make_randman(n_classes=10, n_units=20, samples_per_class=100, seed=1)
    counts = randman_raster(d).sum(1)  # [N, U]
    assert bool((counts == counts[0]).all())
    tr, _, te = split_in_order(len(d.labels))
    x, y = d.times, d.labels
    means = torch.stack([x[tr][y[tr] == k].mean(0) for k in range(10)])
    pred = torch.cdist(x[te], means).argmin(1)
    acc = (pred == y[te]).float().mean().item()
    assert acc > 0.2  # chance is 0.1


def test_n_fourier_terms():
    assert n_fourier_terms(1.0) == 1000  # ceil(1e3), capped at 1000
    assert n_fourier_terms(0.5) == 1000
    assert n_fourier_terms(2.0) == 32  # ceil(31.6)
    assert n_fourier_terms(3.0) == 10  # exactly 10 despite float error


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_classes": 0}, r"n_classes must be an int >= 1, got 0"),
        ({"n_units": 2.5}, r"n_units must be an int >= 1, got float 2\.5"),
        ({"samples_per_class": 1}, r"samples_per_class must be an int >= 2, got 1"),
        ({"alpha": 0.0}, r"alpha must be a number > 0, got 0\.0"),
        ({"step_frac": 1.5}, r"step_frac must be a number in \(0, 1\], got 1\.5"),
        ({"n_spikes": True}, r"n_spikes must be an int >= 1, got bool True"),
    ],
)
def test_bad_input(kwargs, match):
    # a wrong type (float, bool) is a TypeError, a wrong value a ValueError
    wrong_type = any(isinstance(v, (bool, float)) and k in ("n_units", "n_spikes")
                     for k, v in kwargs.items())
    with pytest.raises(TypeError if wrong_type else ValueError, match=match):
        make_randman(**{**SMALL, **kwargs})


def test_raster_bad_input():
    with pytest.raises(TypeError, match=r"data must be the RandmanData.*got tuple"):
        randman_raster((torch.zeros(1, 1), torch.zeros(1, 1)))


def test_split_in_order():
    assert split_in_order(10000) == (slice(0, 8000), slice(8000, 9000), slice(9000, 10000))
    parts = split_in_order(7, (0.5, 0.5))
    assert parts == (slice(0, 4), slice(4, 7))  # round(3.5) = 4, last part absorbs the rest
    idx = torch.arange(11)
    assert sum(len(idx[p]) for p in split_in_order(11, (0.3, 0.3, 0.4))) == 11


@pytest.mark.parametrize(
    "n, fractions, match",
    [
        (-1, (1.0,), r"n must be an int >= 0, got -1"),
        (10, (0.5, 0.4), r"fractions must sum to 1, got \(0\.5, 0\.4\)"),
        (10, (1.2, -0.2), r"fractions must be .* >= 0, got \(1\.2, -0\.2\)"),
        (10, (), r"fractions must be a non-empty"),
    ],
)
def test_split_in_order_bad_input(n, fractions, match):
    with pytest.raises(ValueError, match=match):
        split_in_order(n, fractions)
