import pytest
import torch

from spikegrad.data import simulate_cortex
from spikegrad.decoders import WienerFilter, history_features, r2_score


def small_problem(seed=0, n_bins=300, n_ch=4):
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n_bins, n_ch), 1.5), generator=g)
    velocity = torch.randn(n_bins, 2, generator=g, dtype=torch.float64).float()
    return counts, velocity


def design_by_hand(counts, history, tap_bins, lag):
    """Rows [1, taps...] built with explicit loops (zeros before bin 0)."""
    n_bins, n_ch = counts.shape
    rows = []
    for t in range(n_bins):
        row = []
        for j in range(history):
            newest = t - lag - j * tap_bins
            for i in range(n_ch):
                row.append(sum(float(counts[b, i]) for b in range(newest - tap_bins + 1,
                                                                   newest + 1) if b >= 0))
        rows.append(row + [1.0])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("history, tap_bins, lag, ridge", [(3, 2, 1, 0.1), (2, 1, 0, 0.0),
                                                            (4, 3, 2, 2.5)])
def test_fit_equals_the_normal_equations(history, tap_bins, lag, ridge):
    counts, velocity = small_problem()
    f = WienerFilter(history, ridge, tap_bins=tap_bins, lag=lag).fit(counts, velocity)
    x = design_by_hand(counts, history, tap_bins, lag)
    first = lag + history * tap_bins - 1                # rows with a complete window
    xf, y = x[first:], velocity[first:].double()
    m = xf.shape[0]
    penalty = torch.diag(torch.tensor([ridge] * (x.shape[1] - 1) + [0.0], dtype=torch.float64))
    w = torch.linalg.solve(xf.T @ xf / m + penalty, xf.T @ y / m)     # bias unpenalised
    assert torch.allclose(f.weights, w[:-1], rtol=1e-9, atol=1e-10)
    assert torch.allclose(f.bias, w[-1], rtol=1e-9, atol=1e-10)
    assert torch.allclose(f.predict(counts).double(), x @ w, atol=1e-5)


def test_history_features_match_the_loops():
    counts, _ = small_problem(n_bins=40, n_ch=3)
    ref = design_by_hand(counts, 3, 4, 2)[:, :-1]
    assert torch.equal(history_features(counts, 3, 4, 2), ref)
    assert torch.equal(history_features(counts, 3, 4, 2, slice(10, 25)), ref[10:25])


def test_recovers_a_noise_free_linear_map():
    counts, _ = small_problem(n_bins=500, n_ch=3)
    w = torch.tensor([[0.5, -1.0], [2.0, 0.0], [0.0, 0.3]])
    velocity = counts @ w + torch.tensor([1.0, -2.0])
    velocity[1:] += 0.25 * counts[:-1, :1]              # the previous bin matters too
    f = WienerFilter(history=2, ridge=0.0, tap_bins=1).fit(counts, velocity)
    assert torch.allclose(f.predict(counts)[1:], velocity[1:], atol=1e-4)
    assert torch.allclose(f.bias.float(), torch.tensor([1.0, -2.0]), atol=1e-4)


def test_default_simulation_r2():
    d = simulate_cortex(seed=0)                       # 300 s, 96 channels, 4 ms bins
    f = WienerFilter().fit(*d.train)                  # 10 taps of 5 bins = 200 ms
    score = r2_score(f.predict(d.test[0]), d.test[1])
    assert 0.78 < score.mean < 0.88, score            # measured 0.832 (seed 0)


def test_errors():
    counts, velocity = small_problem()
    with pytest.raises(RuntimeError, match=r"call fit\(counts, velocity\) first"):
        WienerFilter().predict(counts)
    f = WienerFilter(2, tap_bins=1).fit(counts, velocity)
    with pytest.raises(ValueError, match=r"counts has 3 channels but the decoder was fitted on 4"):
        f.predict(counts[:, :3])
    with pytest.raises(ValueError, match=r"velocity must have shape \[T, D\] with the T = 300"):
        WienerFilter().fit(counts, velocity[:10])
    with pytest.raises(ValueError, match=r"leave -9 with a full window of 50 bins"):
        WienerFilter().fit(counts[:40], velocity[:40])
    silent = counts.clone()
    silent[:, 0] = 0
    with pytest.raises(ValueError, match=r"normal equations are singular.*ridge > 0"):
        WienerFilter(2, 0.0, tap_bins=1).fit(silent, velocity)
    with pytest.raises(ValueError, match=r"ridge must be a finite number >= 0"):
        WienerFilter(ridge=-1.0)
    with pytest.raises(ValueError, match=r"history must be an int >= 1"):
        WienerFilter(history=0)
    with pytest.raises(TypeError, match=r"velocity must be a floating torch.Tensor"):
        WienerFilter().fit(counts, velocity.long())
