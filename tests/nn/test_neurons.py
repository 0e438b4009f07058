import math

import pytest
import torch

import spikegrad as sg


def test_trainable_decay_and_threshold_stay_in_range_and_get_gradients():
    torch.manual_seed(0)
    lif = sg.nn.LIF(4, tau_mem=20e-3, tau_syn=5e-3, dt=1e-3, threshold=0.7, learn_tau=True,
                    learn_threshold=True)
    p = lif.params()
    assert torch.allclose(p.decay_mem, torch.full((4,), math.exp(-1 / 20)))
    assert torch.allclose(p.decay_syn, torch.full((4,), math.exp(-1 / 5)))
    assert torch.allclose(p.threshold, torch.full((4,), 0.7))
    assert torch.allclose(lif.decay_mem.tau, torch.full((4,), 20e-3))
    with torch.no_grad():  # far outside the range: the smooth maps keep decay and theta valid
        lif.decay_mem.rho.fill_(50.0)
        lif.threshold.rho.fill_(-50.0)
    p = lif.params()
    assert bool(((p.decay_mem > 0) & (p.decay_mem <= 1)).all()) and bool((p.threshold > 0).all())
    with torch.no_grad():
        lif.decay_mem.rho.zero_(); lif.threshold.rho.zero_()
    zs, _ = lif(torch.rand(30, 2, 4) * 0.5)
    zs.sum().backward()
    for name, param in lif.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_fixed_constants_are_buffers_not_parameters():
    lif = sg.nn.LIF(4)
    assert list(lif.parameters()) == []
    assert {"decay_mem.value", "threshold.value"} <= set(lif.state_dict())


def test_if_has_no_leak():
    if_ = sg.nn.IF(1, threshold=1.0)
    zs, s = if_(torch.full((5, 1, 1), 0.3))
    assert zs.flatten().tolist() == [0, 0, 0, 1, 0]
    assert s.v.item() == pytest.approx(0.5)


def test_module_equals_functional():
    torch.manual_seed(1)
    lif = sg.nn.LIF(3, tau_mem=10e-3, tau_syn=4e-3, threshold=0.5, reset="to_value",
                    v_reset=-0.1, surrogate="atan", beta=3.0)
    xs = torch.rand(12, 2, 3)
    zs, s = lif(xs)
    zf, sf = sg.functional.lif_seq(xs, None, lif.params())
    assert torch.equal(zs, zf) and torch.equal(s.v, sf.v)
    assert lif.params().surrogate.beta == 3.0


def test_trace_matches_final_state_and_spikes():
    torch.manual_seed(2)
    lif = sg.nn.LIF(3)
    xs = torch.rand(9, 2, 3) * 2
    zs, tr = lif.trace(xs)
    z2, s = lif(xs)
    assert torch.equal(zs, z2) and torch.equal(tr.v[-1], s.v) and tr.v.shape == xs.shape


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(tau_mem=0.0), ValueError, "tau_mem must be a finite number > 0"),
    (dict(tau_mem=-5e-3), ValueError, "tau_mem"),
    (dict(tau_syn=0.0), ValueError, "tau_syn"),
    (dict(dt=0.0), ValueError, "dt must be"),
    (dict(threshold=0.0), ValueError, "threshold must be a finite number > 0"),
    (dict(threshold=-1.0), ValueError, "threshold"),
    (dict(threshold="1"), TypeError, "threshold must be a positive number"),
    (dict(reset="hard"), ValueError, "reset must be one of 'subtract', 'to_value', 'none'"),
    (dict(surrogate="nope"), ValueError, "unknown surrogate"),
    (dict(beta=-1.0), ValueError, "beta must be"),
    (dict(v_reset=float("nan")), ValueError, "v_reset"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(tau_mem=math.inf, learn_tau=True), ValueError, "tau_mem"),
])
def test_lif_constructor_rejects_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sg.nn.LIF(4, **kwargs)


@pytest.mark.parametrize("n", [0, -3, (4, 0), "4", 2.5])
def test_bad_sizes(n):
    with pytest.raises(ValueError, match="positive int"):
        sg.nn.LI(n)


def test_forward_rejects_wrong_rank_and_features():
    lif = sg.nn.LIF(4)
    with pytest.raises(ValueError, match=r"LIF\(4\): xs must be time-major with shape \[T, B, 4\]"):
        lif(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"feature dimensions \[5\] do not match \[4\]"):
        lif(torch.rand(3, 2, 5))
    with pytest.raises(ValueError, match="state=None"):
        lif(torch.rand(3, 2, 4), sg.functional.LIFState(torch.zeros(3, 4)))


def test_lif_on_feature_maps():
    lif = sg.nn.LIF((2, 3, 3), learn_threshold=True)
    zs, s = lif(torch.rand(4, 5, 2, 3, 3) * 3)
    assert zs.shape == (4, 5, 2, 3, 3) and s.v.shape == (5, 2, 3, 3)
