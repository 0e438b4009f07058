import math

import pytest
import torch

from spikegrad.data import simulate_cortex
from spikegrad.decoders import KalmanDecoder, correlation, fit_linear_gaussian, r2_score

A = torch.tensor([[0.95, 0.05], [-0.04, 0.9]], dtype=torch.float64)
W = torch.tensor([[0.2, 0.05], [0.05, 0.1]], dtype=torch.float64)
H = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, -0.5], [-1.0, 0.3], [0.2, 0.2]],
                 dtype=torch.float64)
Q = torch.diag(torch.tensor([0.5, 1.0, 0.3, 0.8, 0.2], dtype=torch.float64))
Q[0, 1] = Q[1, 0] = 0.1


def linear_gaussian(n_bins, seed=0, lag=0):
    """States [T, 2] from (A, W) and observations [T, 5] from (H, Q); observation t - lag
    sees state t."""
    g = torch.Generator().manual_seed(seed)
    lw, lq = torch.linalg.cholesky(W), torch.linalg.cholesky(Q)
    x = torch.zeros(n_bins, 2, dtype=torch.float64)
    for t in range(1, n_bins):
        x[t] = A @ x[t - 1] + lw @ torch.randn(2, generator=g, dtype=torch.float64)
    z = x @ H.T + torch.randn(n_bins, 5, generator=g, dtype=torch.float64) @ lq.T
    z = torch.roll(z, -lag, 0) if lag else z           # z[t - lag] observes x[t]
    return x, z + 3.0                                  # counts-like offset; centred by fit


def kalman_by_hand(a, w, h, q, p0, z):
    """The textbook recursion with a full N x N inverse at every bin."""
    x = torch.zeros(a.shape[0], dtype=torch.float64)
    p = p0.clone()
    out = []
    for t in range(z.shape[0]):
        if t > 0:
            x, p = a @ x, a @ p @ a.T + w
        k = p @ h.T @ torch.linalg.inv(h @ p @ h.T + q)
        x = x + k @ (z[t] - h @ x)
        p = (torch.eye(a.shape[0], dtype=torch.float64) - k @ h) @ p
        out.append(x)
    return torch.stack(out)


def test_least_squares_recovers_the_model():
    x, z = linear_gaussian(40_000)
    dec = KalmanDecoder().fit(z.float(), x.float())
    assert torch.allclose(dec.A, A, atol=0.02)
    assert torch.allclose(dec.W, W, atol=0.01)
    assert torch.allclose(dec.H, H, atol=0.03)
    assert torch.allclose(dec.Q, Q, atol=0.03)
    # and equals the least-squares formulas on the centred data
    xc = x.float().double() - x.float().double().mean(0)
    zc = z.float().double() - z.float().double().mean(0)
    x0, x1 = xc[:-1], xc[1:]
    a = (x1.T @ x0) @ torch.linalg.inv(x0.T @ x0)
    w = (x1 - x0 @ a.T).T @ (x1 - x0 @ a.T) / (len(xc) - 1)
    h = (zc.T @ xc) @ torch.linalg.inv(xc.T @ xc)
    q = (zc - xc @ h.T).T @ (zc - xc @ h.T) / len(xc)
    for got, want in zip((dec.A, dec.W, dec.H, dec.Q), (a, w, h, q)):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    assert torch.allclose(fit_linear_gaussian(xc, zc)[0], a, atol=1e-12)


@pytest.mark.parametrize("lag", [0, 3])
def test_filter_matches_the_textbook_recursion(lag):
    x, z = linear_gaussian(3000, seed=1, lag=lag)
    dec = KalmanDecoder(lag=lag).fit(z[:2000], x[:2000].float())
    zt = z[2000:]
    est = dec.filter(zt)                                          # [1000, 2]
    zc = zt[: len(zt) - lag] - dec.count_mean                     # observes bins lag..T-1
    ref = kalman_by_hand(dec.A, dec.W, dec.H, dec.Q, dec.P0, zc) + dec.state_mean
    assert torch.allclose(est[lag:], ref, rtol=1e-9, atol=1e-9)
    assert torch.allclose(est[:lag], dec.state_mean.expand(lag, 2))   # prior alone
    assert torch.allclose(dec.predict(zt), est.float())
    # the filter tracks the hidden state
    assert r2_score(est[lag:].float(), x[2000 + lag:].float()).mean > 0.5


def test_silent_channels_are_left_out():
    x, z = linear_gaussian(2000, seed=2)
    z[:, 2] = 0.0
    dec = KalmanDecoder().fit(z, x.float())
    assert dec.active.tolist() == [True, True, False, True, True] and dec.H.shape == (4, 2)
    z2 = z.clone()
    z2[:, 2] = 5.0                                   # ignored channel: same estimates
    assert torch.equal(dec.predict(z), dec.predict(z2))


def test_position_velocity_state():
    d = simulate_cortex(60.0, 32, seed=0)
    dec = KalmanDecoder("position_velocity", lag=25).fit(*d.train, d.position[:d.split])
    assert dec.A.shape == (4, 4) and dec.predict(d.test[0]).shape == (d.n_bins - d.split, 2)
    with pytest.raises(ValueError, match=r"needs position \[T, D\]"):
        KalmanDecoder("position_velocity").fit(*d.train)


def test_default_simulation_r2():
    d = simulate_cortex(seed=0)
    dec = KalmanDecoder(lag=d.truth.lead_bins).fit(*d.train)
    pred = dec.predict(d.test[0])
    r2, r = r2_score(pred, d.test[1]).mean, correlation(pred, d.test[1]).mean
    assert 0.68 < r2 < 0.78 and r > 0.8, (r2, r)    # measured 0.730, r 0.854 (seed 0)


def test_errors():
    x, z = linear_gaussian(100)
    with pytest.raises(RuntimeError, match=r"call fit\(counts, velocity\) first"):
        KalmanDecoder().predict(z)
    with pytest.raises(ValueError, match=r"state must be one of 'velocity', 'position_velocity'"):
        KalmanDecoder("acceleration")
    with pytest.raises(ValueError, match=r"lag must be an int >= 0"):
        KalmanDecoder(lag=-1)
    with pytest.raises(ValueError, match=r"no channel fires"):
        KalmanDecoder().fit(torch.zeros(100, 3), x.float())
    dec = KalmanDecoder().fit(z, x.float())
    with pytest.raises(ValueError, match=r"counts has 4 channels but the decoder was fitted on 5"):
        dec.predict(z[:, :4])
    assert math.isfinite(float(dec.predict(z).sum()))
