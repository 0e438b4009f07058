"""Decay <-> time constant and gain <-> r, and the exact inverses that make round trips
bit-identical. (No nir needed.)"""

import doctest
import math

import numpy as np
import pytest
import torch

from spikegrad.interop import discretisation as D


@pytest.mark.parametrize("disc", D.DISCRETISATIONS)
def test_tau_of_decay_is_the_closed_form_and_maps_back_exactly(disc):
    rng = np.random.default_rng(0)
    for _ in range(500):
        dt = 10 ** rng.uniform(-5, 0)
        a = 1.0 - 10 ** rng.uniform(-6, math.log10(0.3))  # a in (0.7, 1): tau > ~3 dt
        tau = D.tau_of_decay(a, dt, disc)
        closed = -dt / math.log(a) if disc == "exp" else dt / (1.0 - a)
        assert tau == pytest.approx(closed, rel=1e-12)
        assert D.decay_of_tau(tau, dt, disc) == a


def test_decays_and_their_limits():
    assert D.decay_of_tau(20e-3, 1e-3, "exp") == math.exp(-0.05)
    assert D.decay_of_tau(20e-3, 1e-3, "euler") == 1.0 - 0.05
    assert D.decay_of_tau(math.inf, 1e-3, "exp") == D.decay_of_tau(math.inf, 1e-3, "euler") == 1
    assert D.tau_of_decay(1.0, 1e-3, "exp") == math.inf
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        D.tau_of_decay(0.0, 1e-3, "exp")


def test_r_is_the_inverse_of_the_gain():
    a = np.array([0.5, 0.9, 1.0])
    g = np.array([1.0, 0.1, 1.0])
    r = D.r_of_gain(g, a, 1e-3)
    np.testing.assert_allclose(r, [2.0, 1.0, 1e3])
    np.testing.assert_allclose(D.gain_of_r(r, a, 1e-3), g, rtol=1e-15)


def test_float32_parameters_are_found_exactly():
    # the trainable parameters behind per-neuron decays and thresholds: any float32 constant
    # that the smooth map produces has a float32 preimage, found exactly
    g = torch.Generator().manual_seed(0)
    rho = 3.0 * torch.randn(20_000, generator=g)
    a = torch.sigmoid(rho)
    assert torch.equal(torch.sigmoid(D.logit_float32(a.double().numpy())), a)
    theta = torch.nn.functional.softplus(rho)
    assert torch.equal(torch.nn.functional.softplus(
        D.softplus_inverse_float32(theta.double().numpy())), theta)


def test_elementwise_keeps_the_shape():
    x = np.array([[1.0, 2.0], [1.0, 3.0]])
    assert np.array_equal(D.elementwise(lambda v: 2 * v, x), 2 * x)


def test_docstring_examples_run():
    pytest.importorskip("nir")
    from spikegrad.interop import nir_export
    assert doctest.testmod(nir_export, raise_on_error=True).attempted >= 1
