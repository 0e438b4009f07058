"""Dendritic compartments: equations, gradients through both surrogates, and the exact effect
of detaching the dendritic surrogate."""

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (ALIFParams, DendriteParams, DendriteState, LIFParams,
                                  dendrite_currents, dendrite_seq, dendrite_step,
                                  dendrite_trace, lif_seq)

F64 = torch.float64


def test_two_compartment_step_by_hand():
    # one neuron, one branch: a_d = 0.5, theta_d = 1, c = 2, g = 0.25; soma IF theta = 1
    p = DendriteParams(decay_dend=0.5, threshold_dend=1.0, coupling=2.0, passive=0.25,
                       soma=LIFParams(decay_mem=1.0, threshold=1.0))
    xs = torch.tensor([1.5, 0.0, 0.0, 0.0], dtype=F64).reshape(4, 1, 1, 1)
    zs, st = dendrite_trace(xs, None, p)
    # d = 1.5, 0.75, 0.375, 0.1875; s = H(d - 1) = 1, 0, 0, 0 (a plateau while d > 1)
    # I = 2 s + 0.25 d = 2.375, 0.1875, 0.09375, 0.046875
    # soma: u0 = 2.375 -> z, v = 1.375; u1 = 1.5625 -> z, v = 0.5625; u2 = 0.65625; u3 = 0.703125
    assert st.d.flatten().tolist() == [1.5, 0.75, 0.375, 0.1875]
    assert zs.flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    assert st.soma.v.flatten().tolist() == [1.375, 0.5625, 0.65625, 0.703125]


def test_multi_branch_currents_sum_over_branches():
    d = torch.tensor([[[0.5, 1.5, 2.0]]], dtype=F64)        # [B=1, N=1, K=3]
    p = DendriteParams(threshold_dend=1.0, coupling=torch.tensor([[1.0, 2.0, 4.0]], dtype=F64),
                       passive=torch.tensor([[0.5, 0.0, 0.25]], dtype=F64))
    s, current = dendrite_currents(d, p)
    assert s.flatten().tolist() == [0.0, 1.0, 1.0]
    assert current.item() == 0.25 + 2.0 + 4.0 + 0.5


def test_all_dendritic_parameters_match_finite_differences(relaxed):
    torch.manual_seed(4)
    xs = torch.rand(12, 2, 3, 2, dtype=F64) * 1.5
    surr = sg.surrogate.get("sigmoid", beta=4.0)
    w = torch.linspace(0.2, 1.0, 12, dtype=F64)[:, None, None]

    def run(a_d, theta_d, c, g, x):
        p = DendriteParams(decay_dend=a_d, threshold_dend=theta_d, coupling=c, passive=g,
                           surrogate_dend=surr, scale_input=True,
                           soma=LIFParams(decay_mem=0.8, threshold=1.0, surrogate=surr,
                                          detach_reset=False))
        zs, s = dendrite_seq(x, None, p, backend="reference")  # the relaxed step's loop
        return (zs * w).sum() + s.d.pow(2).sum()

    a_d = torch.tensor([[0.3, 0.9]] * 3, dtype=F64, requires_grad=True)
    theta_d = torch.tensor([[0.5, 0.8]] * 3, dtype=F64, requires_grad=True)
    c = torch.tensor([[0.6, 1.0], [0.8, 0.4], [1.2, 0.5]], dtype=F64, requires_grad=True)
    g = torch.tensor([[0.2, 0.1]] * 3, dtype=F64, requires_grad=True)
    x = xs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (a_d, theta_d, c, g, x), eps=1e-6, atol=1e-7)
    run(a_d, theta_d, c, g, x).backward()
    for t in (a_d, theta_d, c, g):
        assert (t.grad.abs() > 1e-5).all()


def _adjoint_prediction(xs, p, detach):
    """dL/dx by hand: gd_t = gI_t (g + c phi_d(d_t - theta_d) [not if detached]) + a_d gd_{t+1}
    with gI_t = dL/dI_t from the soma alone (the same with and without detaching)."""
    _, st = dendrite_trace(xs, None, p)
    s = (st.d > p.threshold_dend).to(F64)
    currents = (p.coupling * s + p.passive * st.d).sum(-1).detach().requires_grad_(True)
    zs, _ = lif_seq(currents, None, p.soma, backend="reference")
    (zs.sum(0) * torch.arange(1.0, 4.0, dtype=F64)).sum().backward()
    g_i = currents.grad.unsqueeze(-1)                            # [T, B, N, 1]
    local = p.passive + (0.0 if detach else p.coupling * p.surrogate_dend.grad(
        st.d - p.threshold_dend)) + torch.zeros_like(st.d)      # [T, B, N, K]
    gd, out = torch.zeros_like(xs[0]), torch.zeros_like(xs)
    for t in range(xs.shape[0] - 1, -1, -1):
        gd = g_i[t] * local[t] + p.decay_dend * gd
        out[t] = gd
    return out, currents.grad


@pytest.mark.parametrize("passive", [0.0, 0.3])
def test_detaching_the_dendritic_surrogate_changes_gradients_exactly_as_predicted(passive):
    torch.manual_seed(5)
    xs = torch.rand(20, 2, 3, 2, dtype=F64) * 1.2
    results = {}
    for detach in (False, True):
        c = torch.tensor([[1.0, 0.5], [0.7, 1.3], [0.4, 0.9]], dtype=F64, requires_grad=True)
        p = DendriteParams(decay_dend=torch.tensor([0.5, 0.9], dtype=F64), threshold_dend=0.6,
                           coupling=c, passive=passive, detach_dend=detach,
                           surrogate_dend=sg.surrogate.get("fast_sigmoid", beta=5.0),
                           soma=LIFParams(decay_mem=0.8, threshold=1.0))
        x = xs.clone().requires_grad_(True)
        zs, _ = dendrite_seq(x, None, p)
        (zs.sum(0) * torch.arange(1.0, 4.0, dtype=F64)).sum().backward()
        predicted, _ = _adjoint_prediction(xs, p._replace(coupling=c.detach()), detach)
        assert torch.allclose(x.grad, predicted, atol=1e-12, rtol=0)
        results[detach] = (zs.detach(), x.grad, c.grad)
    (z_full, gx_full, gc_full), (z_det, gx_det, gc_det) = results[False], results[True]
    assert torch.equal(z_full, z_det)              # detaching changes no forward value
    assert torch.equal(gc_full, gc_det)            # nor the coupling's gradient
    assert gx_full.abs().sum() > 0
    if passive == 0.0:
        assert (gx_det == 0).all()                 # no surrogate, no passive path: no gradient
    else:
        assert (gx_det != gx_full).any() and gx_det.abs().sum() > 0


def test_alif_soma_and_errors():
    p = DendriteParams(soma=ALIFParams(LIFParams(), beta_adapt=0.5))
    z, s = dendrite_step(torch.rand(2, 3, 4), None, p)
    assert z.shape == (2, 3) and s.soma.a.shape == (2, 3)
    with pytest.raises(TypeError, match="soma must be LIFParams or ALIFParams"):
        dendrite_seq(torch.rand(5, 2, 3, 4), None, DendriteParams(soma=None))
    with pytest.raises(ValueError, match="backend must be one of"):
        dendrite_seq(torch.rand(5, 2, 3, 4), None, DendriteParams(), backend="cuda")
    with pytest.raises(ValueError, match="state.d"):
        dendrite_seq(torch.rand(5, 2, 3, 4), DendriteState(torch.zeros(2, 3, 5), None))


def _parity_case(soma: str, g):
    N, K = 4, 3
    a_d = (torch.rand(N, K, generator=g, dtype=F64) * 0.5 + 0.45).requires_grad_()
    c = torch.randn(N, K, generator=g, dtype=F64).requires_grad_()
    gp = (torch.rand(N, K, generator=g, dtype=F64) * 0.3).requires_grad_()
    lif = LIFParams(decay_mem=0.9, threshold=1.0, detach_reset=False)
    soma_p = lif if soma == "lif" else ALIFParams(lif=lif, decay_adapt=0.95, beta_adapt=0.3)
    p = DendriteParams(decay_dend=a_d, threshold_dend=0.7, coupling=c, passive=gp,
                       scale_input=True, soma=soma_p)
    return p, (a_d, c, gp)


@pytest.mark.parametrize("soma", ["lif", "alif"])
@pytest.mark.parametrize("backend", ["numba", "torch", "auto"])
def test_fused_stages_equal_the_reference_loop(soma, backend):
    """The branches, currents and soma as whole-sequence stages: the same spikes and states,
    and the same gradients (inputs, trained branch constants, the initial state) to rounding."""
    from spikegrad.kernels.registry import numba_available
    if backend == "numba" and not numba_available():
        pytest.skip("numba not installed")
    if backend == "torch" and soma == "alif":
        with pytest.raises(ValueError, match="ALIF has no fused path"):
            dendrite_seq(torch.rand(3, 2, 4, 3, dtype=F64), None,
                         _parity_case(soma, torch.Generator().manual_seed(0))[0], "torch")
        return
    g = torch.Generator().manual_seed(7)
    T, B, N, K = 25, 3, 4, 3
    xs = torch.randn(T, B, N, K, generator=g, dtype=F64) * 0.8 + 0.3
    d0 = torch.rand(B, N, K, generator=g, dtype=F64)
    p, consts = _parity_case(soma, g)
    weights = torch.rand(T, B, N, generator=g, dtype=F64)
    out = {}
    for be in ("reference", backend):
        x, d = xs.clone().requires_grad_(), d0.clone().requires_grad_()
        state = sg.functional.dendrite.initial_state(xs[0], p)._replace(d=d)
        zs, st = dendrite_seq(x, state, p, backend=be)
        loss = (zs * weights).sum() + st.d.square().sum() + st.soma.v.sum()
        leaves = [x, *consts, d]
        out[be] = (zs.detach(), st.d.detach(), st.soma.v.detach(),
                   torch.autograd.grad(loss, leaves))
    ref, got = out["reference"], out[backend]
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    torch.testing.assert_close(got[2], ref[2], rtol=0, atol=1e-13)
    for a, b in zip(got[3], ref[3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_fused_stages_are_taken_and_cut_like_the_loop(monkeypatch):
    """``auto`` runs the branches as one LI sequence; under truncated BPTT the stages cut their
    own states, with the reference loop's gradient."""
    from spikegrad.functional import leaky
    calls = []
    real = leaky.li_seq
    monkeypatch.setattr(leaky, "li_seq", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    g = torch.Generator().manual_seed(8)
    xs = torch.randn(20, 2, 4, 3, generator=g, dtype=F64) + 0.3
    p, consts = _parity_case("lif", g)
    grads = {}
    for be in ("reference", "auto"):
        x = xs.clone().requires_grad_()
        with sg.functional.truncate_gradients(6):
            zs, _ = dendrite_seq(x, None, p, backend=be)
        grads[be] = torch.autograd.grad((zs * torch.arange(20.0, dtype=F64)[:, None, None]).sum(),
                                        [x, *consts])
    assert len(calls) == 1
    for a, b in zip(grads["auto"], grads["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
