"""Every fused path equals the reference loop: spikes, states and all gradients."""

import itertools

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import LIFParams, LIFState, LIParams, LIState, li_seq, lif_seq
from spikegrad.kernels.registry import numba_available

from numerics import (assert_close_to_reference, assert_decisions_clear, chain, membrane_chain,
                      spike_margins)

BACKENDS = ["torch"] + (["numba"] if numba_available() else [])


def _lif_case(backend, reset="subtract", detach=True, syn=False, scale=False, T=7,
              surrogate="atan", dtype=torch.float64, B=3, N=5, device="cpu", compute=None):
    """Drawn in ``dtype``, run in ``compute`` (default ``dtype``; float64 for the reference of
    a float32 path: the same float32-exact numbers)."""
    compute = compute or dtype
    torch.manual_seed(0)
    # inputs drive about a third of the steps above threshold
    xs = torch.rand(T, B, N, dtype=dtype) * (0.25 if scale else 0.9)
    if scale:
        xs = xs * 12
    v0 = torch.rand(B, N, dtype=dtype) * 0.5
    i0 = torch.rand(B, N, dtype=dtype) * 0.2 if syn else None
    a = torch.linspace(0.8, 0.95, N, dtype=dtype)
    a_syn = torch.full((N,), 0.7, dtype=dtype) if syn else None
    th = torch.tensor([0.8, 1.0, 1.2, 0.9, 1.1], dtype=dtype)[:N]
    vr = torch.tensor(-0.1, dtype=dtype)
    w = torch.randn((T, B, N), dtype=dtype, generator=torch.Generator().manual_seed(1))
    xs, v0, i0, a, a_syn, th, vr, w = (
        None if t is None else t.to(device, compute).requires_grad_(t is not w)
        for t in (xs, v0, i0, a, a_syn, th, vr, w))
    p = LIFParams(decay_mem=a, decay_syn=a_syn, scale_input=scale, threshold=th, v_reset=vr,
                  reset=reset, detach_reset=detach, surrogate=sg.surrogate.get(surrogate))
    zs, s = lif_seq(xs, LIFState(v0, i0), p, backend=backend)
    loss = (zs * w).sum() + (s.v ** 2).sum() + ((s.i ** 2).sum() if syn else 0)
    leaves = [xs, v0, a, th, vr] + ([i0, a_syn] if syn else [])
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    cpu = lambda t: t.detach().cpu()
    return (cpu(zs), LIFState(cpu(s.v), None if s.i is None else cpu(s.i)),
            [cpu(torch.zeros_like(l) if g is None else g) for g, l in zip(grads, leaves)])


def _assert_same(ref, out, n):
    """``ref``: the reference loop in out's dtype or in float64; ``n``: roundings on the
    longest chain (tests/numerics.py): T steps, then T x B x N terms for the scalar v_reset. A float32 path against a float64 reference must show
    that the reference's spike decisions were clear of rounding (assert_decisions_clear)."""
    assert torch.equal(ref[0], out[0].to(ref[0].dtype)), "spikes differ"
    assert ref[0].sum() > 0 and ref[0].mean() < 1, "the case must have spikes and silences"
    assert_close_to_reference(out[1].v, ref[1].v, n, msg="final v")
    if ref[1].i is not None:
        assert_close_to_reference(out[1].i, ref[1].i, n, msg="final i")
    for k, (gr, go) in enumerate(zip(ref[2], out[2])):
        assert_close_to_reference(go, gr, n, msg=f"gradient {k}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset, detach, syn, scale", list(itertools.product(
    ["subtract", "to_value", "none"], [True, False], [False, True], [False, True])))
def test_lif_options_float64(backend, reset, detach, syn, scale):
    kw = dict(reset=reset, detach=detach, syn=syn, scale=scale)
    _assert_same(_lif_case("reference", **kw), _lif_case(backend, **kw), chain(7, 3 * 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("surrogate", sg.surrogate.names())
@pytest.mark.parametrize("T", [1, 7, 128])
def test_lif_every_surrogate_and_length(backend, surrogate, T):
    if surrogate.startswith("test_"):
        pytest.skip("registered by another test")
    kw = dict(surrogate=surrogate, T=T, syn=True, detach=False)
    _assert_same(_lif_case("reference", **kw), _lif_case(backend, **kw), chain(T, 3 * 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_lif_float32(backend, reset):
    kw = dict(reset=reset, syn=True, T=128, dtype=torch.float32, N=5, B=4)
    with spike_margins() as margins:
        ref = _lif_case("reference", compute=torch.float64, **kw)
    assert_decisions_clear(margins, torch.float32, membrane_chain(128, decay=0.95))
    _assert_same(ref, _lif_case(backend, **kw), chain(128, 4 * 5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("syn", [False, True])
def test_li_parity(backend, syn):
    def run(b):
        torch.manual_seed(0)
        xs = torch.randn(9, 2, 3, dtype=torch.float64, requires_grad=True)
        a = torch.tensor([0.5, 0.8, 0.9], dtype=torch.float64, requires_grad=True)
        a_s = torch.tensor(0.6, dtype=torch.float64, requires_grad=True) if syn else None
        v0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
        i0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True) if syn else None
        vs, s = li_seq(xs, LIState(v0, i0), LIParams(a, a_s, scale_input=True), backend=b)
        leaves = [xs, a, v0] + ([a_s, i0] if syn else [])
        return vs, torch.autograd.grad((vs ** 3).sum() + s.v.sum(), leaves)
    ref, out = run("reference"), run(backend)
    assert_close_to_reference(out[0], ref[0], chain(9, 2 * 3), msg="membrane")
    for k, (gr, go) in enumerate(zip(ref[1], out[1])):
        assert_close_to_reference(go, gr, chain(9, 2 * 3), msg=f"gradient {k}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("neuron, detach, reset", [
    ("lif", True, "subtract"), ("lif", False, "subtract"), ("lif", False, "to_value"),
    ("lif_syn", True, "to_value"), ("lif_syn", False, "subtract"), ("li", True, "subtract")])
def test_recurrent_module_parity(backend, neuron, detach, reset):
    def run(b):
        torch.manual_seed(0)
        if neuron == "li":
            cell = sg.nn.LI(6, tau_mem=5e-3, learn_tau=True, backend=b)
        else:
            cell = sg.nn.LIF(6, tau_mem=10e-3, tau_syn=5e-3 if neuron == "lif_syn" else None,
                             learn_tau=True, learn_threshold=True, detach_reset=detach,
                             reset=reset, backend=b)
        rec = sg.nn.Recurrent(cell, autapses=False, init_gain=2.0).double()
        xs = (torch.rand(20, 3, 6, dtype=torch.float64) * 0.8).requires_grad_()
        y0 = torch.rand(3, 6, dtype=torch.float64).round().requires_grad_()
        inner = rec.neuron.initial_state(xs[0])
        ys, st = rec(xs, sg.functional.RecurrentState(inner, y0))
        loss = (ys * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum() + st.inner.v.sum()
        params = [xs, y0] + list(rec.parameters())
        return ys.detach(), torch.autograd.grad(loss, params)
    ref = run("reference")
    assert neuron == "li" or 0 < ref[0].mean() < 1
    out = run(backend)
    n = chain(20, 3, 6)
    if neuron == "li":
        assert_close_to_reference(out[0], ref[0], n, msg="membrane")
    else:
        assert torch.equal(out[0], ref[0])
    for k, (gr, go) in enumerate(zip(ref[1], out[1])):
        assert_close_to_reference(go, gr, n, msg=f"gradient {k}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_with_trainable_constants(backend):
    def run(b):
        torch.manual_seed(0)
        net = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.LIF(8, tau_syn=5e-3, learn_tau=True,
                                                             learn_threshold=True, backend=b),
                               sg.nn.Linear(8, 2), sg.nn.LI(2, learn_tau=True, backend=b))
        xs = torch.rand(30, 5, 4) * 3
        vs, _ = net(xs)
        return torch.autograd.grad(vs.pow(2).sum(), list(net.parameters()))
    # two float32 paths: the reference loop's decisions must be clear of both paths' rounding
    with spike_margins() as margins:
        ref = run("reference")
    assert_decisions_clear(margins, torch.float32, membrane_chain(30, 4, decay=0.951), paths=2)
    for k, (gr, go) in enumerate(zip(ref, run(backend))):
        assert_close_to_reference(go, gr, chain(30, 5, 8), msg=f"gradient {k}")


def test_explicit_backends_never_fall_back(monkeypatch):
    from spikegrad.kernels import registry
    monkeypatch.setattr(registry, "numba_available", lambda: False)
    with pytest.raises(ImportError, match="backend='numba' cannot run.*needs numba"):
        lif_seq(torch.rand(3, 2, 2), backend="numba")
    assert registry.choose("auto", registry.Call("leaky", torch.rand(2), recurrent=True)) == "torch"


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_scalar_surrogates_equal_the_registry():
    import numpy as np
    from spikegrad.kernels.spec import SURROGATE_IDS as _SURROGATE_IDS
    from spikegrad.kernels.numba_leaky import phi_builtin
    x = torch.linspace(-3, 3, 1001, dtype=torch.float64)
    seen = set()
    for name in sg.surrogate.names():
        s = sg.surrogate.get(name, beta=1.7)
        kind = _SURROGATE_IDS.get(s.derivative)
        if kind is None:
            continue
        seen.add(name)
        got = torch.from_numpy(phi_builtin(kind, x.numpy(), s.beta))
        torch.testing.assert_close(got, s.grad(x), rtol=1e-12, atol=1e-15)
    assert seen >= {"fast_sigmoid", "sigmoid", "atan", "triangle", "gaussian", "exponential",
                    "straight_through"}


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_user_surrogate_uses_its_torch_function():
    s = sg.surrogate.Surrogate("user_cubic", lambda x, b: b / (1 + (b * x) ** 4),
                               lambda x, b: x, 2.0)
    def run(b):
        torch.manual_seed(0)
        xs = (torch.rand(12, 2, 3, dtype=torch.float64) * 0.9).requires_grad_()
        zs, _ = lif_seq(xs, None, LIFParams(decay_mem=0.9, surrogate=s), backend=b)
        return torch.autograd.grad(zs.sum(), xs)[0]
    assert_close_to_reference(run("numba"), run("reference"), chain(12, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_torch_backend_on_cuda_equals_cpu_reference(reset):
    kw = dict(reset=reset, syn=True, detach=False, T=64)
    _assert_same(_lif_case("reference", **kw), _lif_case("torch", device="cuda", **kw),
                 chain(64, 3 * 5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_expanded_output_gradient(backend):
    # the gradient of zs.sum() arrives as an expanded (stride-0) tensor
    def run(b):
        torch.manual_seed(0)
        xs = (torch.rand(40, 3, 4, dtype=torch.float64) * 0.9).requires_grad_()
        zs, _ = lif_seq(xs, None, LIFParams(decay_mem=0.9), backend=b)
        return torch.autograd.grad(zs.sum(), xs)[0]
    assert_close_to_reference(run(backend), run("reference"), chain(40, 3))


@pytest.mark.parametrize("block_elements", [1, 40, 100])
@pytest.mark.parametrize("reset, detach, syn", [("subtract", False, False),
                                                ("to_value", True, True),
                                                ("to_value", False, False)])
def test_torch_backend_coefficient_blocks(monkeypatch, block_elements, reset, detach, syn):
    """The torch backend computes its adjoint coefficients per block of steps; block edges
    (1, 2 or 6 steps of B*N = 15 elements; T = 7 and 128) change nothing."""
    import spikegrad.kernels.torch_leaky as torch_leaky
    monkeypatch.setattr(torch_leaky, "_COEF_BLOCK_ELEMENTS", block_elements)
    for T in (7, 128):
        ref = _lif_case("reference", reset, detach, syn, T=T)
        _assert_same(ref, _lif_case("torch", reset, detach, syn, T=T), chain(T, 3 * 5))


@pytest.mark.parametrize("neuron, detach, reset", [("lif", False, "subtract"),
                                                   ("lif_syn", True, "to_value")])
def test_torch_backend_coefficient_blocks_recurrent(monkeypatch, neuron, detach, reset):
    import spikegrad.kernels.torch_leaky as torch_leaky
    monkeypatch.setattr(torch_leaky, "_COEF_BLOCK_ELEMENTS", 30)  # 5 steps of B*N = 18
    test_recurrent_module_parity("torch", neuron, detach, reset)


def _surrogate_grid(beta: float, dtype) -> torch.Tensor:
    """A dense grid, the switch points of the piecewise surrogates (|beta x| = 0.5, 1) and
    their neighbours, and tails out to 1e6 and down to 1e-30, both signs."""
    dense = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    tails = torch.logspace(-30, 6, 73, dtype=torch.float64)
    kinks = torch.tensor([0.5, 1.0], dtype=torch.float64) / beta
    kinks = torch.cat([kinks * (1 + e) for e in (-1e-6, 0.0, 1e-6)])
    x = torch.cat([dense, tails, kinks, torch.zeros(1, dtype=torch.float64)])
    return torch.cat([x, -x]).to(dtype)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [0.5, 1.7, 10.0, 100.0])
def test_numba_surrogates_equal_the_torch_table_on_a_dense_grid_and_the_tails(beta, dtype):
    # every built-in id the kernels evaluate in their loops against the torch formula it
    # stands for, in the same float type: the same arithmetic, up to a few roundings
    from spikegrad.kernels.numba_leaky import phi_builtin
    from spikegrad.kernels.spec import SURROGATE_IDS
    x = _surrogate_grid(beta, dtype)
    eps = torch.finfo(dtype).eps
    for fn, kind in SURROGATE_IDS.items():
        s = sg.surrogate.Surrogate("probe", fn, fn, beta)
        want = s.grad(x)
        got = torch.from_numpy(phi_builtin(kind, x.numpy(), beta))
        assert got.dtype == dtype and bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want, rtol=8 * eps, atol=8 * eps * beta,
                                   msg=f"surrogate id {kind} ({fn.__name__}), beta {beta}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rec,syn", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("threads", [1, 3])
def test_cut_gradient_equals_the_reference_loop(monkeypatch, backend, rec, syn, threads):
    """Truncated BPTT in one pass (Spec.cut): the kernels zero the adjoint at every boundary,
    in each thread's slice, as the reference loop's detached state does."""
    from spikegrad.kernels import parallel
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)

    def run(b):
        torch.manual_seed(0)
        T, B, N = 40, 4, 48  # N: three slices of 16 neurons (the feed-forward split unit)
        xs = (torch.rand(T, B, N, dtype=torch.float64) * 0.6).requires_grad_()
        a = torch.linspace(0.8, 0.95, N, dtype=torch.float64).requires_grad_()
        th = torch.linspace(0.8, 1.2, N, dtype=torch.float64).requires_grad_()
        a_syn = torch.full((N,), 0.7, dtype=torch.float64, requires_grad=True) if syn else None
        p = LIFParams(decay_mem=a, decay_syn=a_syn, threshold=th)
        w_out = torch.randn(T, B, N, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(1))
        leaves = [xs, a, th] + ([a_syn] if syn else [])
        with sg.functional.truncate_gradients(7):
            if rec:
                w = (torch.randn(N, N, dtype=torch.float64) / N ** 0.5).requires_grad_()
                leaves.append(w)
                rp = sg.functional.RecurrentParams(w, sg.functional.lif_step, p)
                state = sg.functional.RecurrentState(None, torch.zeros(B, N, dtype=torch.float64))
                zs, _ = sg.functional.recurrent_seq(xs, state, rp, backend=b)
            else:
                zs, _ = lif_seq(xs, None, p, backend=b)
        grads = torch.autograd.grad((zs * w_out).sum(), leaves)
        return zs.detach(), grads

    ref = run("reference")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = run(backend)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(ref[0], out[0])
    assert 0 < ref[0].mean() < 1
    for k, (gr, go) in enumerate(zip(ref[1], out[1])):
        # 40 steps of recursion, then sums over up to T*B*N terms: far inside 1e-10 in float64
        torch.testing.assert_close(go, gr, rtol=1e-10, atol=1e-12, msg=f"gradient {k}")
