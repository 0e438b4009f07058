"""Refractoriness: absolute clamp (exact gradients of the hard model) and the trainable
relative refractory current (finite differences of a smooth relaxation)."""

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import ALIFParams, LIFParams, RefractoryParams, alif_seq, alif_trace

F64 = torch.float64


def _params(n_ref=0, decay=0.0, strength=0.0, a_mem=0.9, **lif):
    return ALIFParams(LIFParams(decay_mem=a_mem, threshold=1.0, **lif), beta_adapt=0.0,
                      refractory=RefractoryParams(n_ref, decay, strength))


def test_no_neuron_fires_within_n_ref_steps_of_its_last_spike():
    torch.manual_seed(0)
    xs = torch.rand(200, 4, 8, dtype=F64) * 3.0   # strong drive: would fire almost every step
    for n_ref in (1, 3, 5):
        zs, _ = alif_seq(xs, None, _params(n_ref))
        times = [torch.nonzero(zs[:, b, j]).flatten() for b in range(4) for j in range(8)]
        gaps = torch.cat([t.diff() for t in times])
        assert gaps.min() == n_ref + 1           # refractory steps, then free again
        assert zs.sum() > 0.8 * 200 * 32 / (n_ref + 1)


def test_membrane_gradient_is_exact_and_zero_for_inputs_during_refractoriness():
    # with the reset detached and no adaptation, the hard model is piecewise linear in x and
    # the autograd gradient of the final membrane is its exact derivative
    torch.manual_seed(1)
    xs = (torch.rand(25, 1, 6, dtype=F64) * 1.4).requires_grad_(True)
    p = _params(n_ref=2, a_mem=0.8)
    zs, st = alif_trace(xs, None, p)
    _, s = alif_seq(xs, None, p)
    s.v.sum().backward()
    ref_prev = torch.cat([torch.zeros_like(st.ref[:1]), st.ref[:-1]])
    assert (xs.grad[ref_prev > 0] == 0).all()              # clamped: the input is ignored
    assert (xs.grad[ref_prev == 0].abs() >= 0).all()
    eps = 1e-7
    fd = torch.zeros_like(xs)
    with torch.no_grad():
        for idx in torch.nonzero(torch.ones_like(xs[..., :2])):   # two neurons suffice
            t, b, j = idx.tolist()
            xp, xm = xs.clone(), xs.clone()
            xp[t, b, j] += eps
            xm[t, b, j] -= eps
            fd[t, b, j] = (alif_seq(xp, None, p)[1].v.sum() - alif_seq(xm, None, p)[1].v.sum()) \
                / (2 * eps)
    assert torch.allclose(xs.grad[..., :2], fd[..., :2], atol=1e-6)


def test_relative_refractory_parameters_match_finite_differences(relaxed):
    torch.manual_seed(3)
    xs = torch.rand(15, 2, 3, dtype=F64) * 1.5
    surr = sg.surrogate.get("sigmoid", beta=5.0)
    w = torch.linspace(0.2, 1.0, 15, dtype=F64)[:, None, None]

    def run(decay, strength, x):
        p = _params(decay=decay, strength=strength, surrogate=surr, detach_reset=False)
        zs, s = alif_seq(x, None, p)
        return (zs * w).sum() + s.v.pow(2).sum()

    decay = torch.tensor([0.3, 0.6, 0.9], dtype=F64, requires_grad=True)
    strength = torch.tensor([0.1, 0.3, 0.6], dtype=F64, requires_grad=True)
    x = xs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (decay, strength, x), eps=1e-6, atol=1e-7)
    run(decay, strength, x).backward()
    assert (decay.grad.abs() > 1e-4).all() and (strength.grad.abs() > 1e-4).all()


def test_relative_refractory_strength_gradient_hand_derivation():
    # IF, theta = 1; a spike at t0 gives q0 = 1; at t1 the membrane is v0 + x1 - w q0
    w = torch.tensor(0.25, dtype=F64, requires_grad=True)
    d = torch.tensor(0.5, dtype=F64, requires_grad=True)
    p = ALIFParams(LIFParams(decay_mem=1.0, threshold=1.0), beta_adapt=0.0,
                   refractory=RefractoryParams(0, d, w))
    _, s = alif_seq(torch.tensor([1.5, 0.25, 0.25], dtype=F64).reshape(3, 1, 1), None, p)
    # v0 = 0.5, q0 = 1; v1 = 0.5 + 0.25 - w = 0.5, q1 = d; v2 = v1 + 0.25 - w d = 0.625
    assert s.v.item() == 0.625
    s.v.sum().backward()
    # q1 = d q0 + z1 with z1 = H(u1 - 1), u1 = 0.5: its surrogate phi(-0.5) = 1/(1 + 10*0.5)^2
    # = 1/36 carries dz1/dw = -phi * q0. The reset is detached and z1 = 0, so v1 = u1:
    #   dv2/dw = du1/dw - q1 - w dq1/dw = -1 - 0.5 + 0.25/36;   dv2/dd = -w q0 = -0.25
    assert w.grad.item() == pytest.approx(-1.5 + 0.25 / 36, abs=1e-15)
    assert d.grad.item() == -0.25
