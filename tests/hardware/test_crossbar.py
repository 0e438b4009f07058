"""CrossbarLinear: ideal parity with F.linear, differential-pair readback, converters, read
noise, drift and its compensation, update schemes through the layer, counters, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from spikegrad.hardware import (ConstantStep, CrossbarLinear, LinearStep, PCMNoise, SoftBounds,
                                quantize)
from spikegrad.learning import Factors

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _xbar(n_in=6, n_out=4, seed=0, **kw):
    kw.setdefault("dtype", F64)
    return CrossbarLinear(n_in, n_out, generator=_gen(seed), **kw)


@pytest.mark.parametrize("shape", [(7, 3, 6), (5, 6), (6,)])
def test_ideal_forward_equals_linear_on_any_leading_shape(shape):
    xbar = _xbar(bias=True)
    x = torch.randn(shape, dtype=F64)
    assert torch.equal(xbar(x), F.linear(x, xbar.weights(), xbar.bias))
    target = torch.rand(4, 6, dtype=F64) - 0.5
    xbar.program(target)
    torch.testing.assert_close(xbar(x), F.linear(x, target, xbar.bias), rtol=1e-14, atol=1e-14)


def test_gradient_flows_to_the_input():
    xbar = _xbar(dac_bits=8, dac_range=4.0)
    x = torch.randn(3, 2, 6, dtype=F64, requires_grad=True)
    xbar(x).sum().backward()
    torch.testing.assert_close(x.grad, xbar.weights().sum(0).expand_as(x))


def test_differential_pair_readback_and_conductance_range():
    xbar = _xbar(g_min=1.0, g_max=21.0)
    target = torch.rand(4, 6, dtype=F64) * 2 - 1
    xbar.program(target)
    torch.testing.assert_close(xbar.weights(), target, rtol=1e-14, atol=1e-15)
    g_plus, g_minus = xbar.conductances()
    assert xbar.g_scale == 20.0                                   # (g_max - g_min) / w_bound
    torch.testing.assert_close(g_plus - g_minus, 20.0 * target)
    assert bool((torch.minimum(g_plus, g_minus) == 1.0).all())   # the other side at g_min
    xbar.program(3 * target)                                      # beyond the bounds: clipped
    torch.testing.assert_close(xbar.weights(), (3 * target).clamp(-1, 1))


def test_finite_state_readback_within_half_a_level():
    dev = ConstantStep(n_states=16)
    xbar = _xbar(n_in=50, n_out=20, device=dev)
    target = torch.rand(20, 50, dtype=F64) * 2 - 1
    xbar.program(target)
    assert float((xbar.weights() - target).abs().max()) <= dev.dw_min / 2 + 1e-12
    assert torch.unique(xbar.weights().round(decimals=9)).numel() <= 16


def test_conductances_stay_in_range_with_device_variation():
    dev = LinearStep(dw_min=0.05, w_max_dtod=0.3, w_min_dtod=0.3, dw_min_dtod=0.3,
                     gamma_up=0.3, gamma_down=0.3)
    xbar = _xbar(n_in=20, n_out=10, device=dev)
    params = [t.clone() for t in xbar.params]
    n = torch.randint(0, 80, (2, 10, 20), generator=_gen(1))
    xbar.pulse(n[0], n[1])
    xbar.pulse(n[1], torch.zeros_like(n[1]))
    for g in xbar.conductances():
        assert float(g.min()) >= 0.0 and float(g.max()) <= 25.0 + 1e-12
    assert bool((xbar.weights() <= xbar.params.b_max + 1e-12).all())
    assert all(torch.equal(a, b) for a, b in zip(params, xbar.params))   # drawn once
    twin = _xbar(n_in=20, n_out=10, device=dev)
    assert all(torch.equal(a, b) for a, b in zip(params, twin.params))   # same seed


def test_converters_in_the_layer():
    xbar = _xbar(dac_bits=4, dac_range=1.0, adc_bits=5, adc_range=2.0)
    x = torch.randn(200, 6, dtype=F64) * 2
    y = xbar(x)
    step = 2.0 / (2 ** 4 - 1)
    assert float(y.abs().max()) <= 2.0
    torch.testing.assert_close(y / step, (y / step).round(), rtol=0, atol=1e-9)
    expected = quantize(F.linear(quantize(x, 4, 1.0), xbar.weights()), 5, 2.0)
    torch.testing.assert_close(y, expected)


def test_read_and_output_noise_statistics():
    xbar = _xbar(device=ConstantStep(read_noise=0.05), out_noise=0.02)
    x = torch.randn(6, dtype=F64).expand(40000, 6)
    err = xbar(x) - F.linear(x, xbar.weights())
    std = math.sqrt(0.05 ** 2 * float(x[0].pow(2).sum()) + 0.02 ** 2)
    assert abs(float(err.mean())) < 6 * std / math.sqrt(err.numel())
    assert abs(float(err.std()) - std) < 6 * std / math.sqrt(2 * err.numel())


def test_drift_curves_follow_t_to_the_minus_nu():
    pcm = PCMNoise(prog_noise_scale=0.0, read_noise_scale=0.0)
    xbar = _xbar(noise=pcm)
    g0 = xbar.conductances()
    nu = (xbar.nu_plus.clone(), xbar.nu_minus.clone())
    assert bool((nu[0] > 0).all())
    for t in (0.0, 60.0, 3600.0, 86400.0):
        xbar.drift_to(t)
        assert xbar.inference_time == t
        factor = ((t + pcm.t0) / pcm.t0)
        for g, g_init, n in zip(xbar.conductances(), g0, nu):
            torch.testing.assert_close(g, g_init * factor ** (-n), rtol=1e-13, atol=0)
        assert torch.equal(xbar.nu_plus, nu[0])                  # exponents fixed per device


def test_drift_compensation_restores_the_output_scale():
    def mean_output(compensation):
        xbar = CrossbarLinear(64, 32, noise=PCMNoise(), compensation=compensation,
                              generator=_gen(3))
        xbar.program(torch.rand(32, 64, generator=_gen(4)) * 0.9)
        x = torch.rand(64, 64, generator=_gen(5))
        xbar.drift_to(0.0)
        at_t0 = float(xbar(x).mean())
        xbar.drift_to(86400.0)
        return float(xbar(x).mean()) / at_t0
    assert abs(mean_output(True) - 1.0) < 0.03
    assert mean_output(False) < 0.8


def test_updates_through_the_layer():
    dw_min = 2.0 ** -10
    xbar = _xbar(device=ConstantStep(dw_min=dw_min))
    w0 = xbar.programmed_weights()
    x, d = torch.randn(3, 6, dtype=F64), torch.randn(3, 4, dtype=F64)
    xbar.update(x, d, 0.01)                     # naive: round(dW / dw_min) pulses
    desired = -0.01 * Factors(x, torch.ones_like(d), d).outer()
    torch.testing.assert_close(xbar.programmed_weights() - w0,
                               torch.round(desired / dw_min) * dw_min, rtol=0, atol=1e-15)
    # an update below half a pulse is lost by naive rounding, kept by mixed precision
    small = torch.full((4, 6), 0.375 * dw_min, dtype=F64)   # exact in binary
    before = xbar.programmed_weights()
    for _ in range(10):
        xbar.write(small, scheme="naive")
    assert torch.equal(xbar.programmed_weights(), before)
    for _ in range(10):
        xbar.write(small, scheme="mixed_precision")
    written = xbar.programmed_weights() - before
    torch.testing.assert_close(written, torch.full_like(written, 3 * dw_min), rtol=0, atol=1e-15)
    torch.testing.assert_close(written + xbar.chi, 10 * small, rtol=0, atol=1e-15)


def test_stochastic_update_through_the_layer_is_unbiased():
    dw_min, lr = 0.01, 0.02
    x = torch.tensor([[1.0, -0.5, 0.25]], dtype=F64)
    d = torch.tensor([[0.5, -1.0]], dtype=F64)
    xbar = _xbar(n_in=3, n_out=2, device=SoftBounds(dw_min=dw_min, w_max=100.0))
    zero = torch.zeros(2, 3, dtype=F64)
    total, draws = torch.zeros_like(zero), 300
    for _ in range(draws):
        xbar.program(zero)
        xbar.update(x, d, lr, scheme="stochastic")
        total += xbar.programmed_weights()
    expected = -lr * d.t() @ x
    # counts ~ Binomial(BL, p q): var <= BL p q dw_min^2 = dw_min |E|; soft bounds at w_max=100
    # shrink a step by at most 1e-4 relative
    bound = 6 * (dw_min * expected.abs() / draws).sqrt() + 1e-4 * expected.abs()
    assert bool(((total / draws - expected).abs() <= bound).all())


def test_counters_count_and_reset():
    xbar = _xbar(device=ConstantStep(dw_min=0.01))
    assert xbar.counters == {"reads": 0, "pulses": 0, "writes": 0, "updates": 0}
    xbar(torch.randn(5, 3, 6, dtype=F64))
    assert xbar.counters["reads"] == 15
    n_up = torch.zeros(4, 6, dtype=torch.long)
    n_up[0, :3] = torch.tensor([1, 2, 5])
    xbar.pulse(n_up, torch.zeros_like(n_up))
    assert (xbar.counters["pulses"], xbar.counters["writes"], xbar.counters["updates"]) == (8, 3, 1)
    xbar.program(torch.zeros(4, 6, dtype=F64))
    assert xbar.counters["writes"] == 3 + 24
    xbar.reset_counters()
    assert set(xbar.counters.values()) == {0}


def test_untouched_devices_keep_their_conductances():
    xbar = _xbar(noise=PCMNoise(), device=ConstantStep(dw_min=0.01))
    g_before = xbar.conductances()
    n_up = torch.zeros(4, 6, dtype=torch.long)
    n_up[1, 2] = 3
    xbar.pulse(n_up, torch.zeros_like(n_up))
    for before, after in zip(g_before, xbar.conductances()):
        changed = before != after
        assert not bool(changed[n_up == 0].any())


@pytest.mark.parametrize("kw, error, match", [
    (dict(in_features=0), ValueError, "in_features"),
    (dict(adc_bits=6), ValueError, "adc_range"),
    (dict(dac_bits=1, dac_range=1.0), ValueError, "dac_bits"),
    (dict(out_noise=-0.1), ValueError, "out_noise"),
    (dict(g_min=5.0, g_max=4.0), ValueError, "g_max"),
    (dict(device="pcm"), TypeError, "device"),
    (dict(noise=0.1), TypeError, "noise"),
    (dict(dtype=torch.float16), ValueError, "dtype"),
])
def test_bad_constructor_arguments(kw, error, match):
    args = dict(in_features=3, out_features=2)
    args.update(kw)
    with pytest.raises(error, match=match):
        CrossbarLinear(args.pop("in_features"), args.pop("out_features"), **args)


def test_bad_call_arguments():
    xbar = _xbar()
    with pytest.raises(ValueError, match="x must"):
        xbar(torch.randn(2, 5, dtype=F64))
    with pytest.raises(ValueError, match="program: w"):
        xbar.program(torch.zeros(6, 4, dtype=F64))
    with pytest.raises(ValueError, match="noise=PCMNoise"):
        xbar.drift_to(10.0)
    with pytest.raises(ValueError, match="scheme"):
        xbar.update(torch.randn(2, 6), torch.randn(2, 4), 0.1, scheme="sgd")
    with pytest.raises(ValueError, match="scheme"):
        xbar.write(torch.zeros(4, 6, dtype=F64), scheme="stochastic")
    with pytest.raises(ValueError, match="lr"):
        xbar.update(torch.randn(2, 6), torch.randn(2, 4), 0.0)
    with pytest.raises(ValueError, match="leading"):
        xbar.update(torch.randn(2, 6), torch.randn(3, 4), 0.1)
    with pytest.raises(ValueError, match="t_inference"):
        _xbar(noise=PCMNoise()).drift_to(-1.0)
