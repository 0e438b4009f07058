"""PCM-like noise (aihwkit PCMLikeNoiseModel): the programming polynomial, drift exponents,
t^-nu drift and the 1/f noise growing with log t."""

import math

import pytest
import torch

from spikegrad.hardware import PCMNoise

F64 = torch.float64
G_MAX = 25.0


def test_programming_std_is_the_documented_polynomial():
    pcm = PCMNoise()
    g = torch.tensor([0.0, 12.5, 25.0], dtype=F64)
    c0, c1, c2 = 0.26348, 1.9650, -1.1731
    expected = [c0, c0 + c1 / 2 + c2 / 4, c0 + c1 + c2]
    torch.testing.assert_close(pcm.programming_std(g, G_MAX), torch.tensor(expected, dtype=F64))
    # fitted at 25 uS: another g_max rescales it
    torch.testing.assert_close(pcm.programming_std(2 * g, 2 * G_MAX),
                               2 * torch.tensor(expected, dtype=F64))


def test_programming_noise_statistics():
    pcm = PCMNoise()
    n = 40000
    g = torch.full((n,), 10.0, dtype=F64)
    prog = pcm.program(g, G_MAX, torch.Generator().manual_seed(0))
    sigma = float(pcm.programming_std(g[:1], G_MAX))
    assert abs(float(prog.mean()) - 10.0) < 6 * sigma / math.sqrt(n)
    assert abs(float(prog.std()) - sigma) < 6 * sigma / math.sqrt(2 * n)
    assert torch.equal(PCMNoise(prog_noise_scale=0.0).program(g, G_MAX), g)


def test_drift_coefficient_statistics_follow_the_fit():
    pcm = PCMNoise()
    n = 40000
    for g_value in (25.0, 2.5):
        g = torch.full((n,), g_value, dtype=F64)
        mu, sigma = (float(t[0]) for t in pcm.drift_moments(g, G_MAX))
        lg = math.log(g_value / G_MAX)
        assert mu == pytest.approx(min(max(-0.0155 * lg + 0.0244, 0.049), 0.1))
        assert sigma == pytest.approx(min(max(-0.0125 * lg - 0.0059, 0.008), 0.045))
        nu = pcm.drift_coefficients(g, G_MAX, torch.Generator().manual_seed(1))
        assert bool((nu >= 0).all())
        # nu = |N(mu, sigma^2)|: the folded normal's moments
        a = mu / sigma
        mean = sigma * math.sqrt(2 / math.pi) * math.exp(-a * a / 2) + mu * math.erf(a / 2 ** 0.5)
        std = math.sqrt(mu ** 2 + sigma ** 2 - mean ** 2)
        assert abs(float(nu.mean()) - mean) < 6 * std / math.sqrt(n)
        assert abs(float(nu.std()) - std) < 6 * std / math.sqrt(2 * n)


def test_drift_follows_a_power_law_in_time():
    pcm = PCMNoise(read_noise_scale=0.0)
    g0 = torch.tensor([5.0, 10.0, 20.0], dtype=F64)
    nu = torch.tensor([0.03, 0.06, 0.1], dtype=F64)
    times = [0.0, 1.0, 60.0, 3600.0, 86400.0, 3.15e7]
    for t in times:
        expected = g0 * ((t + pcm.t0) / pcm.t0) ** (-nu)
        torch.testing.assert_close(pcm.at_time(g0, nu, t, G_MAX), expected, rtol=1e-14, atol=0)
    # slope of log g against log t is -nu
    g1, g2 = pcm.at_time(g0, nu, 3600.0, G_MAX), pcm.at_time(g0, nu, 86400.0, G_MAX)
    slope = torch.log(g2 / g1) / math.log((86400.0 + pcm.t0) / (3600.0 + pcm.t0))
    torch.testing.assert_close(slope, -nu, rtol=1e-12, atol=0)


def test_read_noise_grows_with_log_time():
    pcm = PCMNoise(drift_scale=0.0)
    n = 40000
    g = torch.full((n,), 10.0, dtype=F64)
    nu = torch.zeros(n, dtype=F64)
    gen = torch.Generator().manual_seed(2)
    stds = []
    for t in (0.0, 86400.0):
        rel = (pcm.at_time(g, nu, t, G_MAX, gen) - g) / g
        expected = float(pcm.read_std(g[:1], G_MAX, t))
        q_s = 0.0088 / (10.0 / G_MAX) ** 0.65
        tt = t + pcm.t0
        assert expected == pytest.approx(q_s * math.sqrt(math.log((tt + 250e-9) / 500e-9)))
        assert abs(float(rel.std()) - expected) < 6 * expected / math.sqrt(2 * n)
        stds.append(expected)
    assert stds[1] > stds[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="t0"):
        PCMNoise(t0=0.0)
    with pytest.raises(ValueError, match="drift_scale"):
        PCMNoise(drift_scale=-1.0)
    with pytest.raises(ValueError, match="t_inference"):
        PCMNoise().at_time(torch.ones(2), torch.zeros(2), -1.0, G_MAX)
