import pytest
import torch

from spikegrad.data import latency_times
from spikegrad.data.yinyang import encode_yinyang, load_yinyang_splits, make_yinyang, yinyang_class


@pytest.mark.parametrize("x, y, c", [
    (0.75, 0.5, 2), (0.25, 0.5, 2),      # centres of the small circles: dot
    (0.25, 0.7, 1),                      # ring around the left dot (0.1 < d_left <= 0.25)
    (0.75, 0.8, 1),                      # upper half, away from the right dot
    (0.75, 0.65, 0),                     # ring around the right dot
    (0.75, 0.2, 0), (0.5, 0.05, 0),      # lower half, away from the left dot
    (0.84, 0.5, 2), (0.86, 0.5, 0),      # right dot edge at d = 0.1
])
def test_class_geometry(x, y, c):
    assert yinyang_class(x, y) == c


def test_generator_matches_reference_draws_and_is_balanced():
    d = make_yinyang(1000, seed=42)
    # golden values printed by the reference generator (lkriener/yin_yang_data_set,
    # dataset.py, seed 42), run once when this test was written; all 5000/1000/1000 samples of
    # the published splits matched to float32 rounding and every label
    torch.testing.assert_close(d.x[:2].double(), torch.tensor(
        [[0.68030754, 0.45049925, 0.31969246, 0.54950075],
         [0.09767211, 0.68423303, 0.90232789, 0.31576697]], dtype=torch.float64),
        atol=1e-7, rtol=0)
    assert d.labels[:10].tolist() == [2, 1, 2, 1, 1, 1, 0, 2, 2, 0]
    counts = torch.bincount(d.labels, minlength=3)
    assert counts.tolist() == [333, 321, 346]  # goal class drawn uniformly per sample
    xy = d.x[:, :2].double()
    assert bool(((xy - 0.5).pow(2).sum(1) <= 0.25).all())  # inside the big circle
    torch.testing.assert_close(d.x[:, :2] + d.x[:, 2:], torch.ones(1000, 2))
    assert [yinyang_class(float(a), float(b)) for a, b in xy[:50]] == d.labels[:50].tolist()
    assert torch.equal(make_yinyang(20, seed=42).x, d.x[:20])  # deterministic prefix
    assert not torch.equal(make_yinyang(20, seed=41).x, d.x[:20])


def test_published_split_sizes():
    tr, va, te = load_yinyang_splits(50, 20, 10)
    assert (len(tr.x), len(va.x), len(te.x)) == (50, 20, 10)


def test_rate_code():
    x = torch.tensor([[0.0, 1.0, 0.25, 0.75]])
    g = torch.Generator().manual_seed(0)
    xs = encode_yinyang(x.expand(200, 4), 50, "rate", copies=3, generator=g)
    assert xs.shape == (50, 200, 13)
    assert bool((xs[..., -1] == 1).all())  # bias channel fires every step
    rates = xs[..., :-1].mean((0, 1)).view(4, 3)
    assert rates[0].tolist() == [0.0] * 3 and rates[1].tolist() == [1.0] * 3
    assert rates[2].mean().item() == pytest.approx(0.25, abs=0.01)
    assert rates[3].mean().item() == pytest.approx(0.75, abs=0.01)


def test_time_code_one_spike_per_input_plus_bias():
    d = make_yinyang(30, seed=1)
    xs = encode_yinyang(d.x, 40, "time", n_code=16, bias_step=2)
    assert xs.shape == (40, 30, 5)
    assert bool((xs.sum(0) == 1).all())  # exactly one spike per channel
    t = xs[..., :4].argmax(0).float()  # [B, 4]
    assert torch.equal(t, latency_times(d.x, 16))  # the library's latency code over 16 steps
    assert bool((xs[2, :, 4] == 1).all())
    assert int(t.max()) <= 15


@pytest.mark.parametrize("call, match", [
    (lambda: make_yinyang(0), "size must be an int >= 1"),
    (lambda: make_yinyang(10, r_small=0.3), "r_small < r_big / 2"),
    (lambda: encode_yinyang(torch.rand(2, 4), 10, "phase"), "code must be one of"),
    (lambda: encode_yinyang(torch.rand(4), 10), r"\[B, features\]"),
    (lambda: encode_yinyang(torch.rand(2, 4), 10, copies=0), "copies must be"),
    (lambda: encode_yinyang(torch.rand(2, 4), 10, "time", n_code=11), r"n_code must be an int in \[1, n_steps=10\]"),
    (lambda: encode_yinyang(torch.rand(2, 4), 10, "time", bias_step=10), r"bias_step must be an int in \[0, 9\]"),
])
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
