"""ALIF: equations, gradients of the adaptation parameters, backend routing."""

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (ALIFParams, ALIFState, LIFParams, RefractoryParams,
                                  adaptive_threshold, alif_seq, alif_step, alif_trace, lif_seq)

F64 = torch.float64


def test_state_is_a_namedtuple_with_documented_fields():
    assert ALIFState._fields == ("v", "a", "i", "ref", "q")
    p = ALIFParams(LIFParams(decay_syn=0.5), refractory=RefractoryParams(n_ref=3))
    _, s = alif_step(torch.ones(2, 4), None, p)
    assert s.i is not None and s.ref is not None and s.q is None


def test_without_adaptation_or_refractoriness_alif_equals_lif():
    torch.manual_seed(0)
    xs = torch.rand(30, 3, 5, dtype=F64) * 0.9
    lp = LIFParams(decay_mem=0.9, decay_syn=0.6, threshold=1.0, reset="to_value", v_reset=-0.1)
    zl, sl = lif_seq(xs, None, lp, backend="reference")
    za, sa = alif_seq(xs, None, ALIFParams(lp, decay_adapt=0.9, beta_adapt=0.0))
    assert torch.equal(zl, za) and torch.equal(sl.v, sa.v) and torch.equal(sl.i, sa.i)


def test_adaptation_trace_is_low_pass_of_spikes_and_raises_threshold():
    torch.manual_seed(0)
    xs = torch.rand(40, 2, 3, dtype=F64) * 1.5
    p = ALIFParams(LIFParams(decay_mem=0.8, threshold=1.0), decay_adapt=0.9, beta_adapt=0.5)
    zs, st = alif_trace(xs, None, p)
    a = torch.zeros(2, 3, dtype=F64)
    for t in range(40):
        a = 0.9 * a + zs[t]
        assert torch.allclose(st.a[t], a, atol=1e-14, rtol=0)
    # adaptation lowers the firing rate against the same input
    z0, _ = alif_seq(xs, None, p._replace(beta_adapt=0.0))
    assert zs.sum() < z0.sum()
    prev = ALIFState(st.v[0], st.a[0])
    assert torch.equal(adaptive_threshold(prev, p), 1.0 + 0.5 * st.a[0])


def test_adaptation_parameters_gradients_match_finite_differences(relaxed):
    torch.manual_seed(2)
    xs = torch.rand(15, 2, 3, dtype=F64) * 1.5
    surr = sg.surrogate.get("sigmoid", beta=5.0)
    w = torch.linspace(0.2, 1.0, 15, dtype=F64)[:, None, None]

    def run(rho, beta_a, x):
        p = ALIFParams(LIFParams(decay_mem=0.8, threshold=1.0, surrogate=surr,
                                 detach_reset=False), decay_adapt=rho, beta_adapt=beta_a)
        zs, s = alif_seq(x, None, p, backend="reference")  # the relaxed loop (fixture)
        return (zs * w).sum() + s.a.sum()

    rho = torch.tensor([0.9, 0.95, 0.99], dtype=F64, requires_grad=True)
    beta_a = torch.tensor([0.2, 0.5, 1.0], dtype=F64, requires_grad=True)
    x = xs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (rho, beta_a, x), eps=1e-6, atol=1e-7)
    run(rho, beta_a, x).backward()
    assert (rho.grad.abs() > 1e-4).all() and (beta_a.grad.abs() > 1e-4).all()


def test_beta_adapt_gradient_hand_derivation():
    # IF, theta = 1, one spike at t0 (x0 = 1.5); at t1 the threshold is 1 + beta * a0 = 1 + beta
    surr = sg.surrogate.get("fast_sigmoid", beta=1.0)
    beta_a = torch.tensor(0.5, dtype=F64, requires_grad=True)
    rho = torch.tensor(0.5, dtype=F64, requires_grad=True)
    p = ALIFParams(LIFParams(decay_mem=1.0, threshold=1.0, surrogate=surr), decay_adapt=rho,
                   beta_adapt=beta_a)
    zs, s = alif_seq(torch.tensor([1.5, 0.5, 0.5], dtype=F64).reshape(3, 1, 1), None, p)
    # t0: z0 = 1, v0 = 0.5, a0 = 1; t1: u1 = 1.0 < A1 = 1.5, a1 = rho = 0.5
    # t2: u2 = 1.5, A2 = 1 + beta rho = 1.25 -> z2 = 1
    assert zs.flatten().tolist() == [1.0, 0.0, 1.0]
    zs[2].sum().backward()
    # dz2/dbeta = -phi(u2 - A2) a1 = -phi(0.25) * 0.5;  dz2/drho = -phi(0.25) * beta * a0
    # (t1's spike has no other route: z1 = 0 is multiplied by nothing that depends on rho/beta
    #  except via its own surrogate, dz1/dbeta = -phi(1 - 1.5) a0, carried by a1 = rho a0 + z1)
    phi = lambda d: 1.0 / (1.0 + abs(d)) ** 2
    dz1_dbeta = -phi(-0.5) * 1.0
    # a1 = rho * a0 + z1 -> da1/dbeta = dz1/dbeta;  A2 = 1 + beta a1
    expected_beta = -phi(0.25) * (0.5 + 0.5 * dz1_dbeta)
    assert beta_a.grad.item() == pytest.approx(expected_beta, abs=1e-15)
    assert rho.grad.item() == pytest.approx(-phi(0.25) * 0.5 * 1.0, abs=1e-15)


def test_backends_equal_and_torch_raises():
    xs = torch.rand(5, 2, 3)
    p = ALIFParams()
    with pytest.raises(ValueError, match="ALIF has no fused path of that kind"):
        alif_seq(xs, None, p, backend="torch")
    with pytest.raises(ValueError, match="ALIF has no fused path of that kind"):
        alif_seq(xs, None, p, backend="triton")
    # the kernel's own parity tests: tests/kernels/test_adaptive.py
    assert torch.equal(alif_seq(xs, None, p, backend="auto")[0],
                       alif_seq(xs, None, p, backend="reference")[0])
    with pytest.raises(ValueError, match="backend must be one of"):
        alif_seq(xs, None, p, backend="cuda")


def test_bad_params_and_states_give_clear_errors():
    xs = torch.rand(5, 2, 3)
    with pytest.raises(TypeError, match="ALIFParams"):
        alif_seq(xs, None, LIFParams())
    with pytest.raises(ValueError, match="n_ref must be an int"):
        alif_seq(xs, None, ALIFParams(refractory=RefractoryParams(n_ref=2.5)))
    p = ALIFParams(refractory=RefractoryParams(n_ref=2))
    with pytest.raises(ValueError, match="state.ref is None"):
        alif_seq(xs, ALIFState(torch.zeros(2, 3), torch.zeros(2, 3)), p)
    with pytest.raises(ValueError, match="state.a"):
        alif_seq(xs, ALIFState(torch.zeros(2, 3), torch.zeros(4, 3)), ALIFParams())
    with pytest.raises(TypeError, match="ALIFState"):
        alif_seq(xs, (torch.zeros(2, 3),), ALIFParams())
