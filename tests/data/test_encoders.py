import math

import pytest
import torch

from spikegrad.data import delta, latency, latency_times, poisson, rate


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- rate / poisson ------------------------------------------------------------------------


def test_rate_shape_dtype_and_values():
    x = torch.rand(3, 4, dtype=torch.float64, generator=gen(1))
    z = rate(x, 7, generator=gen())
    assert z.shape == (7, 3, 4)
    assert z.dtype == torch.float64
    assert set(z.unique().tolist()) <= {0.0, 1.0}


def test_rate_mean_matches_probability():
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    z = rate(p, 20000, generator=gen())
    mean = z.mean(0)
    # Binomial std at p=0.5 and n=20000 is 0.0035; 0.015 is > 4 sigma.
    torch.testing.assert_close(mean, p, atol=0.015, rtol=0)
    assert mean[0] == 0 and mean[-1] == 1  # p=0 never fires, p=1 always fires


def test_rate_gain_scales_probability():
    z = rate(torch.full((4,), 0.5), 20000, gain=0.4, generator=gen())
    torch.testing.assert_close(z.mean(0), torch.full((4,), 0.2), atol=0.015, rtol=0)


def test_rate_reproducible_with_generator():
    x = torch.full((10, 10), 0.3)
    assert torch.equal(rate(x, 5, generator=gen(3)), rate(x, 5, generator=gen(3)))
    assert not torch.equal(rate(x, 5, generator=gen(3)), rate(x, 5, generator=gen(4)))


def test_poisson_rate_and_reproducibility():
    rates = torch.tensor([0.0, 20.0, 100.0])
    z = poisson(rates, 20000, 1e-3, generator=gen())
    assert z.shape == (20000, 3)
    torch.testing.assert_close(z.mean(0) / 1e-3, rates, atol=5.0, rtol=0)
    assert torch.equal(z, poisson(rates, 20000, 1e-3, generator=gen()))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: rate(torch.tensor([1.5]), 3), ValueError, r"gain \* x .*\[0.0, 1.0\].*1\.5"),
        (lambda: rate(torch.tensor([0.6]), 3, gain=2.0), ValueError, r"gain \* x.*1\.2"),
        (lambda: rate(torch.tensor([-0.1]), 3), ValueError, r"-0\.1"),
        (lambda: rate(torch.tensor([float("nan")]), 3), ValueError, r"gain \* x"),
        (lambda: rate(torch.tensor([0.5]), 0), ValueError, r"n_steps must be an int >= 1, got 0"),
        (lambda: rate(torch.tensor([0.5]), 2.0), TypeError, r"n_steps.*got float 2\.0"),
        (lambda: rate(torch.tensor([1]), 3), TypeError, r"x must be a floating-point.*int64"),
        (lambda: rate([0.5], 3), TypeError, r"x must be a torch.Tensor, got list"),
        (lambda: poisson(torch.tensor([10.0]), 3, 0.0), ValueError,
         r"dt must be a number > 0, got 0\.0"),
        (lambda: poisson(torch.tensor([2000.0]), 3, 1e-3), ValueError,
         r"rates_hz \* dt.*smaller dt"),
        (lambda: poisson(torch.tensor([-1.0]), 3, 1e-3), ValueError, r"rates_hz must lie"),
    ],
)
def test_rate_poisson_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- latency -------------------------------------------------------------------------------


def test_latency_linear_exact():
    x = torch.tensor([[1.0, 0.75, 0.5], [0.25, 0.0, 0.6]])
    # t = round_half_up((1 - x) * 4): 0, 1, 2 / 3, 4, 1.6 -> 2
    expected_t = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 2.0]])
    assert torch.equal(latency_times(x, 5), expected_t)
    z = latency(x, 5)
    assert z.shape == (5, 2, 3)
    assert torch.equal(z.sum(0), torch.ones(2, 3))  # every element fires exactly once
    assert torch.equal(z.argmax(0).float(), expected_t)


def test_latency_linear_rounds_half_up():
    # (1 - 0.75) * 2 = 0.5 -> 1 and (1 - 0.5) * 5 = 2.5 -> 3 (half-to-even would give 0, 2)
    x = torch.tensor([0.75], dtype=torch.float64)
    assert latency_times(x, 3).tolist() == [1.0]
    assert latency_times(torch.tensor([0.5]), 6).tolist() == [3.0]


def test_latency_rc_exact():
    import math

    tau, thr = 5.0, 0.2
    x = torch.tensor([1.0, 0.4, 0.21, 0.2, 0.0], dtype=torch.float64)
    raw = [tau * math.log(1.0 / 0.8), tau * math.log(0.4 / 0.2), None, None, None]
    assert raw[0] == pytest.approx(1.1157, abs=1e-4) and raw[1] == pytest.approx(3.4657, abs=1e-4)
    t = latency_times(x, 10, tau=tau, threshold=thr)
    # 1.12 -> 1, 3.47 -> 3, 0.21 -> 15.2 clipped to 9, x <= thr -> no spike (10)
    assert t.tolist() == [1.0, 3.0, 9.0, 10.0, 10.0]
    t_raw = latency_times(x, 10, tau=tau, threshold=thr, round_to_step=False)
    torch.testing.assert_close(t_raw[:2], torch.tensor(raw[:2], dtype=torch.float64))
    assert t_raw[2:].tolist() == [9.0, 10.0, 10.0]

    z = latency(x, 10, tau=tau, threshold=thr)
    assert z.dtype == torch.float64
    assert z.sum(0).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert z[1, 0] == 1 and z[3, 1] == 1 and z[9, 2] == 1


def test_latency_larger_values_spike_earlier():
    x = torch.linspace(0.05, 1.0, 20)
    for kw in ({}, {"tau": 10.0}):
        t = latency_times(x, 50, **kw)
        assert bool((t[1:] <= t[:-1]).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": torch.tensor([1.2])}, r"x must lie in \[0\.0, 1\.0\].*1\.2"),
        ({"n_steps": 0}, r"n_steps must be an int >= 1, got 0"),
        ({"tau": 0.0}, r"tau must be a number > 0, got 0\.0"),
        ({"tau": -1.0}, r"tau must be a number > 0, got -1\.0"),
        ({"tau": 2.0, "threshold": 1.0}, r"threshold must be a number in \[0, 1\), got 1\.0"),
        ({"threshold": -0.5}, r"threshold .* got -0\.5"),
    ],
)
def test_latency_bad_input(kwargs, match):
    args = {"x": torch.tensor([0.5]), "n_steps": 5, **kwargs}
    x, n = args.pop("x"), args.pop("n_steps")
    with pytest.raises(ValueError, match=match):
        latency(x, n, **args)


# -- delta ---------------------------------------------------------------------------------


def test_delta_ramp_and_step():
    # column 0: slow ramp (0.1 per step): ON only when the accumulated change exceeds 0.25
    # column 1: step up then step down
    ramp = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    step = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    xs = torch.tensor([ramp, step], dtype=torch.float64).T.unsqueeze(1)  # [8, 1, 2]
    z = delta(xs, 0.25)
    assert z.shape == (8, 1, 2, 2)
    on, off = z[:, 0, 0], z[:, 0, 1]  # [T, 2]
    # ramp: ref 0 -> fires at 0.3 (t=3), ref 0.3 -> fires at 0.6 (t=6)
    assert on[:, 0].tolist() == [0, 0, 0, 1, 0, 0, 1, 0]
    assert off[:, 0].tolist() == [0] * 8
    assert on[:, 1].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert off[:, 1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    # ON only: same ON spikes, no channel axis
    assert torch.equal(delta(xs, 0.25, off_spikes=False), z[:, :, 0])


def test_delta_no_spike_at_first_step_and_threshold_is_strict():
    xs = torch.tensor([[5.0], [5.5], [6.5]])  # [3, 1]
    z = delta(xs, 0.5, off_spikes=False)
    # 5.5 - 5.0 == 0.5 is not > 0.5; 6.5 - 5.0 = 1.5 is.
    assert z[:, 0].tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "xs, threshold, exc, match",
    [
        (torch.zeros(5), 0.1, ValueError, r"rank >= 2.*got shape \(5,\)"),
        (torch.zeros(5, 2), 0.0, ValueError, r"threshold must be a number > 0, got 0\.0"),
        (torch.zeros(5, 2), -1, ValueError, r"threshold .* got -1"),
        (torch.zeros(5, 2, dtype=torch.int64), 0.1, TypeError, r"xs must be a floating-point"),
    ],
)
def test_delta_bad_input(xs, threshold, exc, match):
    with pytest.raises(exc, match=match):
        delta(xs, threshold)


def test_population_code_values_and_errors():
    from spikegrad.data import population
    out = population(torch.tensor([[0.0, 1.0]], dtype=torch.float64), 3, -1.0, 1.0)
    assert out.shape == (1, 2, 3)
    # centres -1, 0, 1 with width 1: exp(-d^2/2)
    expected = torch.tensor([[[math.exp(-0.5), 1.0, math.exp(-0.5)],
                              [math.exp(-2.0), math.exp(-0.5), 1.0]]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="n_neurons must be an int >= 2"):
        population(torch.zeros(2), 1, 0.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        population(torch.zeros(2), 4, 1.0, 0.0)
    with pytest.raises(ValueError, match="width must be a number > 0"):
        population(torch.zeros(2), 4, 0.0, 1.0, width=0.0)
