"""Device update models: each one-pulse equation against its closed form, saturation, finite
states, device-to-device and cycle-to-cycle statistics, and argument checks."""

import math

import pytest
import torch

from spikegrad.hardware import ConstantStep, LinearStep, PowStep, SoftBounds, pulse

F64 = torch.float64
ONE, NONE = torch.ones(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long)


def _draw(dev, shape=(3, 4), seed=0):
    return dev.draw(shape, torch.Generator().manual_seed(seed), F64)


def _one(dev, w, up=True, seed=0):
    p = _draw(dev, tuple(w.shape), seed)
    ones, zeros = torch.ones_like(w, dtype=torch.long), torch.zeros_like(w, dtype=torch.long)
    return pulse(dev, p, w, ones if up else zeros, zeros if up else ones)


def test_constant_step_one_pulse_and_asymmetry():
    w = torch.linspace(-0.5, 0.5, 12, dtype=F64).reshape(3, 4)
    dev = ConstantStep(dw_min=0.01)
    torch.testing.assert_close(_one(dev, w) - w, torch.full_like(w, 0.01), rtol=0, atol=1e-15)
    asym = ConstantStep(dw_min=0.01, up_down=0.2)   # dw^d = dw_min (1 + d beta)
    torch.testing.assert_close(_one(asym, w) - w, torch.full_like(w, 0.012), rtol=0, atol=1e-15)
    torch.testing.assert_close(_one(asym, w, up=False) - w, torch.full_like(w, -0.008),
                               rtol=0, atol=1e-15)


def test_constant_step_hard_bounds_saturate():
    dev = ConstantStep(dw_min=0.3, w_max=1.0, w_min=-0.5)
    p = _draw(dev, (1, 2))
    w = torch.zeros(1, 2, dtype=F64)
    up = pulse(dev, p, w, torch.tensor([[10, 0]]), torch.tensor([[0, 10]]))
    assert up.tolist() == [[1.0, -0.5]]


def test_soft_bounds_follow_geometric_closed_form_and_never_exceed():
    b, a, w0 = 0.8, 0.05, -0.3
    dev = SoftBounds(dw_min=a, w_max=b)
    p = _draw(dev, (1, 1))
    w = torch.full((1, 1), w0, dtype=F64)
    for n in range(1, 200):
        w = pulse(dev, p, w, ONE, NONE)
        closed = b - (b - w0) * (1 - a / b) ** n
        assert abs(float(w) - closed) < 1e-12
        assert float(w) <= b
    # down pulses approach b_min = -b the same way: w_n = b_min - (b_min - w0)(1 - a/|b_min|)^n
    w = torch.full((1, 1), w0, dtype=F64)
    w = pulse(dev, p, w, NONE, torch.full((1, 1), 50))
    assert abs(float(w) - (-b - (-b - w0) * (1 - a / b) ** 50)) < 1e-12


def test_pow_step_one_pulse_closed_form_with_up_down():
    gamma, beta, dw = 1.5, 0.2, 0.02
    dev = PowStep(dw_min=dw, pow_gamma=gamma, pow_up_down=beta)
    w = torch.linspace(-0.9, 0.9, 12, dtype=F64).reshape(3, 4)
    omega = (1.0 - w) / 2.0                                # (b_max - w) / (b_max - b_min)
    torch.testing.assert_close(_one(dev, w) - w, dw * omega ** (gamma * (1 + beta)),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(w - _one(dev, w, up=False), dw * (1 - omega) ** (gamma * (1 - beta)),
                               rtol=1e-12, atol=0)


def test_linear_step_one_pulse_closed_form():
    dev = LinearStep(dw_min=0.01, gamma_up=0.5, gamma_down=0.3, up_down=-0.1)
    w = torch.linspace(-0.9, 0.9, 12, dtype=F64).reshape(3, 4)
    torch.testing.assert_close(_one(dev, w) - w, 0.01 * 0.9 * (1 - 0.5 * w), rtol=1e-12, atol=0)
    torch.testing.assert_close(w - _one(dev, w, up=False), 0.01 * 1.1 * (1 + 0.3 * w),
                               rtol=1e-12, atol=0)


def test_device_to_device_variation_drawn_once_and_reproducible():
    dev = LinearStep(dw_min=0.01, dw_min_dtod=0.3, up_down_dtod=0.05, w_max_dtod=0.2,
                     w_min_dtod=0.2, gamma_up=0.5, gamma_up_dtod=0.1)
    a, b, c = _draw(dev, (100, 100), 1), _draw(dev, (100, 100), 1), _draw(dev, (100, 100), 2)
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y)
        assert not torch.equal(x, z) or float(x.std()) == 0
    # statistics of the draws: dw_up = dw_min (1 + beta + 0.3 xi) with beta ~ N(0, 0.05)
    n = a.dw_up.numel()
    std = 0.01 * math.sqrt(0.3 ** 2 + 0.05 ** 2)
    assert abs(float(a.dw_up.mean()) - 0.01) < 6 * std / math.sqrt(n)
    assert abs(float(a.dw_up.std()) - std) < 6 * std / math.sqrt(2 * n)
    assert abs(float(a.b_max.std()) - 0.2) < 6 * 0.2 / math.sqrt(2 * n)
    assert bool((a.b_max >= 0).all() and (a.b_min <= 0).all() and (a.dw_down >= 0).all())


def test_cycle_to_cycle_noise_statistics():
    dev = ConstantStep(dw_min=0.01, dw_min_std=0.3)
    n = 40000
    w = torch.zeros(200, 200, dtype=F64)
    p = _draw(dev, (200, 200))
    gen = torch.Generator().manual_seed(3)
    step = pulse(dev, p, w, torch.ones(200, 200, dtype=torch.long),
                 torch.zeros(200, 200, dtype=torch.long), gen)
    sigma = 0.01 * 0.3
    assert abs(float(step.mean()) - 0.01) < 6 * sigma / math.sqrt(n)
    assert abs(float(step.std()) - sigma) < 6 * sigma / math.sqrt(2 * n)
    again = pulse(dev, p, w, torch.ones(200, 200, dtype=torch.long),
                  torch.zeros(200, 200, dtype=torch.long), gen)
    assert not torch.equal(step, again)        # a fresh draw per pulse


def test_finite_states_levels_and_one_level_per_pulse():
    dev = ConstantStep(n_states=16)
    spacing = 2.0 / 15
    assert math.isclose(dev.dw_min, spacing)
    snapped = dev.snap(torch.linspace(-1.2, 1.2, 5001, dtype=F64))
    levels = torch.unique(snapped)
    assert levels.numel() == 16
    torch.testing.assert_close(levels.diff(), torch.full((15,), spacing, dtype=F64),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(levels, dev.levels(), rtol=0, atol=1e-12)
    p = _draw(dev, (1, 1))
    w = dev.levels()[3].reshape(1, 1)
    for k in range(1, 20):
        w = pulse(dev, p, w, ONE, NONE)
        assert abs(float(w) - float(dev.levels()[min(3 + k, 15)])) < 1e-12


@pytest.mark.parametrize("make, arg", [
    (lambda: ConstantStep(dw_min=-0.1), "dw_min"),
    (lambda: ConstantStep(dw_min=0.1, n_states=16), "n_states"),
    (lambda: ConstantStep(n_states=1), "n_states"),
    (lambda: ConstantStep(n_states=8, w_max_dtod=0.1), "w_max_dtod"),
    (lambda: SoftBounds(w_min=0.2), "w_min"),
    (lambda: SoftBounds(w_max=0.0), "w_max"),
    (lambda: SoftBounds(up_down=1.5), "up_down"),
    (lambda: SoftBounds(dw_min_std=-0.1), "dw_min_std"),
    (lambda: LinearStep(gamma_up=-1.0), "gamma_up"),
    (lambda: PowStep(pow_gamma=-1.0), "pow_gamma"),
])
def test_bad_device_arguments_raise_naming_them(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()
