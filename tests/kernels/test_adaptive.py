"""The fused ALIF kernel equals the reference loop: spikes, states and gradients."""

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (ALIFParams, ALIFState, LIFParams, RecurrentParams,
                                  RecurrentState, RefractoryParams, alif_seq, recurrent_seq)
from spikegrad.functional import adaptation as A
from spikegrad.kernels import parallel
from spikegrad.kernels.registry import numba_available

from cases import pairwise_params
from numerics import (assert_close_to_reference, assert_decisions_clear, chain, membrane_chain,
                      spike_margins)

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")
# every option combination compiles its own kernel: the default run takes a covering array
# of them (every pair of values), make test-all the whole product (tests/cases.py)
OPTIONS = pairwise_params(["subtract", "to_value", "none"], [True, False], [False, True],
                          [False, True])


def _case(fused, reset="subtract", detach=True, syn=False, scale=False, T=40, rec=False,
          dtype=torch.float64, surrogate="fast_sigmoid", n_ref=0, relative=False, compute=None):
    """Drawn in ``dtype``, run in ``compute`` (default ``dtype``; float64 for the reference of
    a float32 path: the same float32-exact numbers)."""
    compute = compute or dtype
    g = torch.Generator().manual_seed(0)
    B, N = 3, 6

    def leaf(t):
        return t.to(compute).requires_grad_()

    def const(t):
        return t.to(compute)
    # inputs drive a good share of the steps above the (adapting) threshold
    xs = leaf(torch.rand(T, B, N, generator=g, dtype=dtype) * (8 if scale else 0.9))
    v0 = leaf(torch.rand(B, N, generator=g, dtype=dtype) * 0.5)
    a0 = leaf(torch.rand(B, N, generator=g, dtype=dtype) * 0.5)
    i0 = leaf(torch.rand(B, N, generator=g, dtype=dtype) * 0.2) if syn else None
    w = leaf(torch.randn(N, N, generator=g, dtype=dtype) * 0.3)
    y0 = leaf(torch.rand(B, N, generator=g, dtype=dtype).round())
    # some neurons start inside their refractory period; the relative trace starts > 0
    ref0 = torch.randint(0, n_ref + 1, (B, N), generator=g).to(compute) if n_ref else None
    q0 = leaf(torch.rand(B, N, generator=g, dtype=dtype) * 0.5) if relative else None
    refr = RefractoryParams(n_ref, decay=0.8 if relative else 0.0,
                            strength=const(torch.linspace(0.2, 0.6, N, dtype=dtype))
                            if relative else 0.0)
    lif = LIFParams(decay_mem=const(torch.linspace(0.8, 0.95, N, dtype=dtype)),
                    decay_syn=0.7 if syn else None, scale_input=scale,
                    threshold=const(torch.linspace(0.8, 1.2, N, dtype=dtype)), v_reset=-0.1,
                    reset=reset, detach_reset=detach, surrogate=sg.surrogate.get(surrogate))
    # beta_a 0 for the first neuron: a plain LIF inside the same layer
    p = ALIFParams(lif, decay_adapt=0.9,
                   beta_adapt=const(torch.linspace(0.0, 1.5, N, dtype=dtype)), refractory=refr)
    state = ALIFState(v0, a0, i0, ref0, q0)
    if rec and fused:
        zs, s = A.fused_alif_seq(xs, state, p, w_rec=w, y0=y0)
    elif rec:
        zs, rs = recurrent_seq(xs, RecurrentState(state, y0), RecurrentParams(w, A.alif_update, p))
        s = rs.inner
    else:
        zs, s = alif_seq(xs, state, p, backend="numba" if fused else "reference")
    weights = const(torch.randn(T, B, N, generator=g, dtype=dtype))
    loss = ((zs * weights).sum() + (s.v ** 2).sum() + (s.a ** 2).sum()
            + ((s.i ** 2).sum() if syn else 0) + ((s.q ** 2).sum() if relative else 0))
    leaves = ([xs, v0, a0] + ([i0] if syn else []) + ([q0] if relative else [])
              + ([w, y0] if rec else []))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    states = [t.detach() for t in (s.v, s.a) + ((s.i,) if syn else ())
              + ((s.ref,) if n_ref else ()) + ((s.q,) if relative else ())]
    return zs.detach(), states, [torch.zeros_like(x) if d is None else d
                                 for d, x in zip(grads, leaves)]


def _assert_same(ref, out, exact_states=True, T=40, rec=False):
    """Gradients within the rounding bound of T steps (with the 6-wide recurrent sum) summed
    over 3 rows (tests/numerics.py); states exact where the kernel does the reference's
    per-neuron arithmetic (feed-forward, one dtype)."""
    n = chain(T, 3, 6 if rec else 0)
    assert torch.equal(out[0].to(ref[0].dtype), ref[0]), "spikes differ"
    assert 0 < ref[0].mean() < 1, "the case must have spikes and silences"
    for k, (a, b) in enumerate(zip(ref[1], out[1])):
        if exact_states:
            assert torch.equal(a, b)
        else:  # the recurrent input sums in another order than the reference's GEMM
            assert_close_to_reference(b, a, n, msg=f"state {k}")
    for k, (gr, go) in enumerate(zip(ref[2], out[2])):
        assert_close_to_reference(go, gr, n, msg=f"gradient {k}")


@pytest.mark.parametrize("reset, detach, syn, scale", OPTIONS)
def test_feedforward_equals_reference(reset, detach, syn, scale):
    _assert_same(_case(False, reset, detach, syn, scale), _case(True, reset, detach, syn, scale))


@pytest.mark.parametrize("reset, detach, syn, scale", OPTIONS)
def test_recurrent_equals_reference(reset, detach, syn, scale):
    ref = _case(False, reset, detach, syn, scale, rec=True)
    _assert_same(ref, _case(True, reset, detach, syn, scale, rec=True), exact_states=False,
                 rec=True)


REFRACTORY = [(2, False), (0, True), (3, True)]


@pytest.mark.parametrize("n_ref, relative, reset, detach, syn, scale, rec", pairwise_params(
    REFRACTORY, [("subtract", True, False, False), ("subtract", False, True, False),
                 ("to_value", False, False, True), ("to_value", True, True, True),
                 ("none", False, False, False)], [False, True]))
def test_refractory_equals_reference(n_ref, relative, reset, detach, syn, scale, rec):
    kw = dict(reset=reset, detach=detach, syn=syn, scale=scale, rec=rec, n_ref=n_ref,
              relative=relative)
    ref = _case(False, **kw)
    if n_ref:  # the case exercises the clamp: some steps refractory, some free
        assert 0 < ref[0].mean() < 1
    _assert_same(ref, _case(True, **kw), exact_states=not rec, rec=rec)


@pytest.mark.parametrize("surrogate", sg.surrogate.names())
@pytest.mark.parametrize("T", [1, 7, 128])
def test_every_surrogate_and_length(surrogate, T):
    kw = dict(detach=False, T=T, surrogate=surrogate)
    ref = _case(False, **kw)
    if T == 1 and not 0 < ref[0].mean() < 1:
        pytest.skip("one step leaves this case all silent or all firing")
    _assert_same(ref, _case(True, **kw), T=T)


@pytest.mark.parametrize("rec", [False, True])
def test_float32(rec):
    kw = dict(reset="to_value", detach=False, syn=True, rec=rec, dtype=torch.float32)
    with spike_margins() as margins:
        ref = _case(False, compute=torch.float64, **kw)
    assert_decisions_clear(margins, torch.float32, membrane_chain(40, 6 if rec else 0, 0.95))
    out = _case(True, **kw)
    _assert_same(ref, out, exact_states=False, rec=rec)
    if not rec:  # the same per-neuron arithmetic as the float32 reference loop
        _assert_same(_case(False, **kw), out)


def test_recurrent_batch_split_over_threads(monkeypatch):
    ref = _case(False, "subtract", False, False, False, rec=True)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        out = _case(True, "subtract", False, False, False, rec=True)
    finally:
        torch.set_num_threads(old)
    _assert_same(ref, out, exact_states=False, rec=True)


def _calls(monkeypatch):
    from spikegrad.kernels import adaptive
    calls = []
    real = adaptive.adaptive_sequence
    monkeypatch.setattr(adaptive, "adaptive_sequence",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_modules_use_the_kernel_where_it_applies(monkeypatch):
    calls = _calls(monkeypatch)
    xs = torch.rand(20, 2, 5)
    sg.nn.ALIF(5, beta_adapt=1.0)(xs)
    sg.nn.Recurrent(sg.nn.ALIF(5, beta_adapt=1.0), autapses=False)(xs)
    assert len(calls) == 2
    sg.nn.ALIF(5, t_ref=3e-3, ref_strength=0.5)(xs)  # refractory: the kernel too
    assert len(calls) == 3
    # trained constants: the kernel, except for a refractory ALIF (the reference loop)
    sg.nn.ALIF(5, learn_adapt=True)(xs)
    sg.nn.ALIF(5, learn_threshold=True, learn_tau=True)(xs)
    assert len(calls) == 5
    sg.nn.ALIF(5, ref_strength=0.5, learn_refractory=True)(xs)
    sg.nn.ALIF(5, t_ref=3e-3, learn_threshold=True)(xs)
    assert len(calls) == 5
    with torch.no_grad():  # nothing trained in inference: the kernel again
        sg.nn.ALIF(5, t_ref=3e-3, learn_adapt=True)(xs)
    assert len(calls) == 6


def test_module_parity_recurrent_alif():
    def run(backend):
        torch.manual_seed(0)
        rec = sg.nn.Recurrent(sg.nn.ALIF(8, tau_adapt=50e-3, beta_adapt=1.0, backend=backend),
                              autapses=False, init_gain=2.0).double()
        xs = (torch.rand(30, 4, 8, dtype=torch.float64) * 0.8).requires_grad_()
        ys, st = rec(xs)
        loss = (ys * torch.linspace(-1, 1, 8, dtype=torch.float64)).sum() + st.inner.a.sum()
        return ys.detach(), torch.autograd.grad(loss, [xs] + list(rec.parameters()))
    ref, out = run("reference"), run("numba")
    assert torch.equal(out[0], ref[0]) and 0 < ref[0].mean() < 1
    for k, (gr, go) in enumerate(zip(ref[1], out[1])):
        assert_close_to_reference(go, gr, chain(30, 4, 8), msg=f"gradient {k}")


@pytest.mark.parametrize("kwargs, match", [
    (dict(learn_tau=True, t_ref=3e-3), r"trained neuron constants \(decay_mem\)"),
    (dict(ref_strength=0.5, learn_refractory=True),
     r"trained neuron constants \(refractory decay, refractory strength\)"),
])
def test_explicit_numba_says_why_it_cannot_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.nn.ALIF(5, backend="numba", **kwargs)(torch.rand(4, 2, 5))


@pytest.mark.parametrize("reset,detach,syn,scale", OPTIONS)
@pytest.mark.parametrize("rec", [False, True])
def test_trained_constants_parity(reset, detach, syn, scale, rec):
    """Every trained constant's gradient (membrane and synaptic decay, threshold, reset
    potential, adaptation decay and strength) equals the reference loop's, with the trace's
    final-state gradient in the loss."""
    T, B, N = 40, 3, 6

    def run(backend):
        torch.manual_seed(0)
        alif = sg.nn.ALIF(N, tau_adapt=50e-3, beta_adapt=1.0, reset=reset, detach_reset=detach,
                          v_reset=-0.1, tau_syn=5e-3 if syn else None, scale_input=scale,
                          learn_tau=True, learn_threshold=True, learn_adapt=True,
                          learn_reset=reset == "to_value", backend=backend)
        layer = sg.nn.Recurrent(alif, init_gain=2.0) if rec else alif
        layer = layer.double()
        with torch.no_grad():  # per-neuron constants that differ
            for p in layer.parameters():
                if p.dim() == 1:
                    p.add_(0.05 * torch.randn_like(p))
        xs = (torch.rand(T, B, N, dtype=torch.float64) * (8 if scale else 0.9)).requires_grad_()
        ys, st = layer(xs)
        a_T = st.inner.a if rec else st.a
        w = torch.randn(T, B, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        loss = (ys * w).sum() + (a_T ** 2).sum()
        names = ["xs"] + [n for n, _ in layer.named_parameters()]
        grads = torch.autograd.grad(loss, [xs] + list(layer.parameters()))
        return ys.detach(), dict(zip(names, grads))

    ref, out = run("reference"), run("numba")
    assert torch.equal(out[0], ref[0]) and 0 < ref[0].mean() < 1
    assert set(out[1]) == set(ref[1]) and len(ref[1]) >= 5
    for name, gr in ref[1].items():
        assert_close_to_reference(out[1][name], gr, chain(T, B, N), msg=f"gradient of {name}")


def test_no_torch_backend():
    with pytest.raises(ValueError, match="ALIF has no fused path of that kind"):
        sg.nn.ALIF(5, backend="torch")
    with pytest.raises(ValueError, match="ALIF has no fused path of that kind"):
        alif_seq(torch.rand(3, 1, 2), p=ALIFParams(), backend="torch")


@pytest.mark.parametrize("rec", [False, True])
def test_inference_path_equals_the_training_path(rec):
    torch.manual_seed(0)
    cell = sg.nn.ALIF(8, tau_adapt=50e-3, beta_adapt=1.0, tau_syn=5e-3)
    net = (sg.nn.Recurrent(cell, autapses=False, init_gain=2.0) if rec else cell).double()
    xs = torch.rand(30, 4, 8, dtype=torch.float64) * 0.8
    ys_train, st_train = net(xs.clone().requires_grad_())
    with torch.no_grad():
        ys_inf, st_inf = net(xs)
    inner_t, inner_i = (st_train.inner, st_inf.inner) if rec else (st_train, st_inf)
    assert torch.equal(ys_inf, ys_train.detach()) and 0 < ys_inf.mean() < 1
    for a, b in ((inner_i.v, inner_t.v), (inner_i.a, inner_t.a), (inner_i.i, inner_t.i)):
        assert torch.equal(a, b.detach())


def test_reverse_trace_is_the_trace_adjoint_and_checks_its_input():
    from spikegrad.kernels.numba_leaky import reverse_trace
    g = torch.Generator().manual_seed(0)
    c = torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
    rho = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    end = torch.randn(2, 3, generator=g, dtype=torch.float64)
    out = reverse_trace(c, rho, end)
    want = [end]
    for t in range(6, 0, -1):  # out_{t-1} = rho out_t + c_t
        want.insert(0, rho * want[0] + c[t])
    torch.testing.assert_close(out, torch.stack(want), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="g_end"):
        reverse_trace(c, rho, end[:1])
