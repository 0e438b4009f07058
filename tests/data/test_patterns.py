import math

import pytest
import torch

from spikegrad.data import population
from spikegrad.data.patterns import (PATTERN_PERIODS_MS, noisy_signal_task, normalise_minmax,
                                     pattern_generation_task, sum_of_sines)


def test_pattern_shapes_dtypes_and_binary_inputs():
    xs, ys = pattern_generation_task(n_inputs=100, T=1000, n_outputs=3, seed=0)
    assert xs.shape == (1000, 1, 100) and ys.shape == (1000, 1, 3)
    assert xs.dtype == ys.dtype == torch.float32
    assert set(xs.unique().tolist()) <= {0.0, 1.0}


def test_pattern_targets_span_exactly_minus_one_to_one():
    _, ys = pattern_generation_task(T=1000, n_outputs=4, seed=3)
    assert torch.equal(ys.amin(0), -torch.ones(1, 4))
    assert torch.equal(ys.amax(0), torch.ones(1, 4))


def test_pattern_input_rate_is_the_requested_rate():
    # 100 x 1000 Bernoulli(0.05) draws: mean 0.05, sd sqrt(.05 * .95 / 1e5) = 6.9e-4
    xs, _ = pattern_generation_task(n_inputs=100, T=1000, rate_hz=50.0, dt=1e-3, seed=1)
    assert abs(float(xs.mean()) - 0.05) < 5 * 6.9e-4


def test_pattern_periods_are_the_four_of_bellec_via_fft():
    # 1000 steps of 1 ms: FFT bin k is k Hz; periods 1000/500/333/200 ms -> 1, 2, ~3, 5 Hz
    _, ys = pattern_generation_task(T=1000, dt=1e-3, n_outputs=5, seed=7)
    spec = torch.fft.rfft(ys[:, 0, :].double() - ys[:, 0, :].double().mean(0), dim=0).abs()
    for k in range(5):
        top = set(spec[:, k].argsort(descending=True)[:4].tolist())
        assert top == {1, 2, 3, 5}, top


def test_pattern_target_is_the_normalised_sum_of_sines_of_its_draws():
    # the documented recipe, rebuilt by hand from the same generator draws
    g = torch.Generator().manual_seed(11)
    amp = 0.5 + 1.5 * torch.rand(2, 4, generator=g, dtype=torch.float64)
    ph = 2 * math.pi * torch.rand(2, 4, generator=g, dtype=torch.float64)
    assert float(amp.min()) >= 0.5 and float(amp.max()) <= 2.0
    t = torch.arange(300, dtype=torch.float64) * 1e-3
    raw = sum(amp[:, k] * torch.sin(2 * math.pi * t[:, None] / (PATTERN_PERIODS_MS[k] * 1e-3)
                                    + ph[:, k]) for k in range(4))
    want = 2 * (raw - raw.min(0).values) / (raw.max(0).values - raw.min(0).values) - 1
    _, ys = pattern_generation_task(T=300, n_outputs=2, seed=11)
    torch.testing.assert_close(ys[:, 0], want.float())


def test_pattern_is_a_function_of_the_seed_only():
    torch.manual_seed(0)
    a = pattern_generation_task(seed=5)
    torch.manual_seed(123)  # the global RNG does not matter
    b = pattern_generation_task(seed=5)
    c = pattern_generation_task(seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_inputs=0), "n_inputs must be an int >= 1"),
    (dict(T=1), "T must be an int >= 2"),
    (dict(rate_hz=2000.0), "rate_hz \\* dt must be <= 1"),
    (dict(rate_hz=-1.0), "rate_hz must be a finite number >= 0"),
    (dict(dt=0.0), "dt must be a finite number > 0"),
    (dict(n_outputs=1.5), "n_outputs must be an int"),
    (dict(seed=-1), "seed must be an int"),
    (dict(periods_ms=()), "periods_ms must hold at least one period"),
])
def test_pattern_bad_arguments_name_the_argument(kwargs, match):
    # a wrong type is a TypeError, a wrong value a ValueError
    exc = TypeError if isinstance(kwargs.get("n_outputs"), float) else ValueError
    with pytest.raises(exc, match=match):
        pattern_generation_task(**kwargs)


def test_normalise_minmax_and_sum_of_sines_closed_forms():
    ys = torch.tensor([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    torch.testing.assert_close(normalise_minmax(ys),
                               torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    # one sine of period 4 steps, amplitude 2, phase pi/2: 2 cos(pi t / 2)
    y = sum_of_sines(4, 1.0, [4000.0], torch.tensor([2.0], dtype=torch.float64),
                     torch.tensor([math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([2.0, 0.0, -2.0, 0.0], dtype=torch.float64))


def test_noisy_signal_shapes_targets_and_horizon():
    xs, ys = noisy_signal_task(n_inputs=10, T=200, batch=4, n_outputs=2, seed=0, horizon=0)
    assert xs.shape == (200, 4, 20) and ys.shape == (200, 4, 2)
    assert set(xs.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ys.amax(0), torch.ones(4, 2)) and torch.equal(ys.amin(0), -torch.ones(4, 2))
    # the horizon only shifts the (longer) clean signal: same draws for horizon 0 and 5
    _, ys5 = noisy_signal_task(n_inputs=10, T=195, batch=4, n_outputs=2, seed=0, horizon=5)
    _, ys0 = noisy_signal_task(n_inputs=10, T=200, batch=4, n_outputs=2, seed=0, horizon=0)
    torch.testing.assert_close(ys5, ys0[5:])


def test_noisy_signal_spikes_follow_the_tuning_curves():
    # without noise the spike probability of input k is max_rate * dt * tuning_k(s_t): the
    # empirical rate over many sequences matches the mean tuning within sampling error
    xs, ys = noisy_signal_task(n_inputs=8, T=400, batch=64, n_outputs=1, seed=2,
                               max_rate_hz=500.0, noise_std=0.0)
    p = 0.5 * population(ys[..., 0], 8, -1.5, 1.5, width=0.3)   # [T, B, 8]
    n = p.numel() / 8
    sd = (p * (1 - p)).mean(0).mean(0).sqrt() / math.sqrt(n)
    assert ((xs.mean((0, 1)) - p.mean((0, 1))).abs() < 5 * sd).all()


def test_noisy_signal_bad_arguments():
    with pytest.raises(ValueError, match="n_inputs must be an int >= 2"):
        noisy_signal_task(n_inputs=1)
    with pytest.raises(ValueError, match="horizon must be an int >= 0"):
        noisy_signal_task(horizon=-1)
    with pytest.raises(ValueError, match="max_rate_hz \\* dt must be <= 1"):
        noisy_signal_task(max_rate_hz=5000.0)
    with pytest.raises(ValueError, match="freq_range_hz"):
        noisy_signal_task(freq_range_hz=(5.0, 1.0))
