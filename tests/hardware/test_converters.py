"""DAC/ADC quantisation: levels, clipping, straight-through gradient, argument checks."""

import pytest
import torch

from spikegrad.hardware import quantize
from spikegrad.hardware.converters import check_converter


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_levels_are_evenly_spaced_and_clipped(bits):
    bound = 2.5
    x = torch.linspace(-4.0, 4.0, 20001, dtype=torch.float64)
    q = quantize(x, bits, bound)
    levels = torch.unique(q)
    step = bound / (2 ** (bits - 1) - 1)
    assert levels.numel() == 2 ** bits - 1
    torch.testing.assert_close(levels.diff(), torch.full_like(levels[1:], step), rtol=0,
                               atol=1e-12)
    assert float(q.abs().max()) == bound
    inside = x.abs() <= bound
    assert float((q - x)[inside].abs().max()) <= step / 2 + 1e-12
    assert torch.equal(q[~inside], bound * torch.sign(x[~inside]))


def test_none_is_ideal_and_range_alone_only_clips():
    x = torch.randn(100, dtype=torch.float64) * 3
    assert torch.equal(quantize(x, None, None), x)
    assert torch.equal(quantize(x, None, 1.0), x.clamp(-1, 1))


def test_gradient_is_straight_through_inside_and_zero_outside():
    x = torch.tensor([-3.0, -0.3, 0.1, 0.7, 3.0], requires_grad=True)
    quantize(x, 3, 1.0).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("bits, bound, error, match", [
    (4, None, ValueError, "adc_range"),
    (1, 1.0, ValueError, "adc_bits"),
    (4.0, 1.0, TypeError, "adc_bits"),
    (None, -1.0, ValueError, "adc_range"),
])
def test_bad_converter_arguments(bits, bound, error, match):
    with pytest.raises(error, match=match):
        check_converter(bits, bound, "adc")
