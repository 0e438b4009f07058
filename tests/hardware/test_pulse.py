"""pulse(): the one function that applies counts through a device model."""

import pytest
import torch

from spikegrad.hardware import ConstantStep, SoftBounds, pulse

F64 = torch.float64


def _setup(dev, shape=(2, 3)):
    return dev.draw(shape, torch.Generator().manual_seed(0), F64), torch.zeros(shape, dtype=F64)


def test_counts_add_per_device_and_inputs_are_not_modified():
    dev = ConstantStep(dw_min=0.125)                     # dyadic: sums are exact
    p, w = _setup(dev)
    n_up = torch.tensor([[0, 1, 2], [3, 0, 0]])
    n_down = torch.tensor([[0, 0, 1], [0, 2, 0]])
    out = pulse(dev, p, w, n_up, n_down)
    assert torch.equal(out, 0.125 * (n_up - n_down).to(F64))
    assert torch.equal(w, torch.zeros_like(w))


def test_up_and_down_alternate_so_asymmetry_drifts():
    dev = ConstantStep(dw_min=0.01, up_down=0.2)
    p, w = _setup(dev, (1, 1))
    out = pulse(dev, p, w, torch.full((1, 1), 5), torch.full((1, 1), 5))
    assert abs(float(out) - 5 * (0.012 - 0.008)) < 1e-15
    # alternating keeps a soft-bounds device near its symmetry point instead of at a bound
    soft = SoftBounds(dw_min=0.1)
    p, w = _setup(soft, (1, 1))
    out = pulse(soft, p, w, torch.full((1, 1), 40), torch.full((1, 1), 40))
    assert abs(float(out)) < 0.1


@pytest.mark.parametrize("n_up, error, match", [
    (torch.ones(2, 3), TypeError, "n_up"),
    (torch.ones(2, 2, dtype=torch.long), ValueError, "n_up"),
    (-torch.ones(2, 3, dtype=torch.long), ValueError, "n_up"),
])
def test_bad_counts_raise(n_up, error, match):
    dev = ConstantStep()
    p, w = _setup(dev)
    with pytest.raises(error, match=match):
        pulse(dev, p, w, n_up, torch.zeros(2, 3, dtype=torch.long))
