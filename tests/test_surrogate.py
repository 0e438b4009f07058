import math

import pytest
import torch

import spikegrad as sg
from spikegrad import surrogate

NAMES = surrogate.names()
REQUIRED = {"fast_sigmoid", "sigmoid", "atan", "triangle", "gaussian", "exponential",
            "straight_through"}

# Closed forms, written independently of the implementation (x = v - theta, b = beta).
CLOSED = {
    "fast_sigmoid": lambda x, b: 1 / (1 + b * abs(x)) ** 2,
    "sigmoid": lambda x, b: b * math.exp(-b * x) / (1 + math.exp(-b * x)) ** 2,
    "atan": lambda x, b: b / 2 / (1 + (math.pi * b * x / 2) ** 2),
    "triangle": lambda x, b: b * max(0.0, 1 - b * abs(x)),
    "gaussian": lambda x, b: b / math.sqrt(2 * math.pi) * math.exp(-(b * x) ** 2 / 2),
    "exponential": lambda x, b: b / 2 * math.exp(-b * abs(x)),
    "straight_through": lambda x, b: b if abs(b * x) < 0.5 else 0.0,
}
# Points away from the kinks of triangle/boxcar, where a finite difference is ill-defined.
XS = [-2.3, -0.61, -0.37, -0.13, -0.02, 0.05, 0.11, 0.29, 0.43, 0.77, 1.9]


def test_registry_has_required_surrogates():
    assert REQUIRED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_forward_is_heaviside_with_h0_zero(name, dtype):
    x = torch.tensor([-1.0, -1e-3, 0.0, 1e-3, 2.0], dtype=dtype)
    z = sg.spike(x, name)
    assert z.dtype == dtype
    assert z.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_backward_equals_closed_form(name, beta):
    s = surrogate.get(name, beta=beta)
    x = torch.tensor(XS, dtype=torch.float64, requires_grad=True)
    g = torch.linspace(0.5, 1.5, len(XS), dtype=torch.float64)
    sg.spike(x, s).backward(g)
    expected = torch.tensor([gi * CLOSED[name](xi, beta) for gi, xi in zip(g.tolist(), XS)],
                            dtype=torch.float64)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_derivative_is_finite_difference_of_primitive(name, beta):
    s = surrogate.get(name, beta=beta)
    x = torch.tensor(XS, dtype=torch.float64)
    h = 1e-6
    fd = (s.smooth(x + h) - s.smooth(x - h)) / (2 * h)
    torch.testing.assert_close(s.grad(x), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(REQUIRED - {"fast_sigmoid"}))
def test_primitive_is_a_step_from_0_to_1(name):
    s = surrogate.get(name)
    x = torch.tensor([-1e9, 1e9], dtype=torch.float64)
    torch.testing.assert_close(s.smooth(x), torch.tensor([0.0, 1.0], dtype=torch.float64),
                               atol=1e-9, rtol=0)


def test_larger_beta_is_sharper_for_every_surrogate():
    # sharper = less of the peak left at a fixed distance from threshold
    x, zero = torch.tensor([0.4], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    for name in REQUIRED:
        lo, hi = surrogate.get(name, beta=1.0), surrogate.get(name, beta=4.0)
        assert hi.grad(x) / hi.grad(zero) < lo.grad(x) / lo.grad(zero), name


def test_user_registered_surrogate_is_used_in_backward():
    name = "test_cubic_bump"
    surrogate.register(name, lambda x, b: torch.clamp(1 - (b * x) ** 2, min=0) * 0.75 * b,
                       lambda x, b: torch.clamp(b * x, -1, 1) * 0.75 - torch.clamp(b * x, -1, 1) ** 3 / 4,
                       beta=2.0, overwrite=True)
    x = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    sg.spike(x, name).backward()
    assert x.grad.item() == pytest.approx(0.75 * 2.0 * (1 - 0.2 ** 2))
    with pytest.raises(ValueError, match="exists"):
        surrogate.register(name, lambda x, b: x, lambda x, b: x, beta=1.0)


def test_get_errors_are_clear():
    with pytest.raises(ValueError, match="unknown surrogate 'nope'.*fast_sigmoid"):
        surrogate.get("nope")
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        surrogate.get("atan", beta=0.0)
    with pytest.raises(TypeError, match="registered name"):
        surrogate.get(3)
    with pytest.raises(TypeError, match="floating-point"):
        sg.spike(torch.tensor([1, 2]), "atan")


def test_surrogate_is_frozen_and_with_beta_copies():
    s = surrogate.get("sigmoid")
    t = s.with_beta(7.0)
    assert (s.beta, t.beta) == (5.0, 7.0)
    with pytest.raises(Exception):
        s.beta = 2.0
