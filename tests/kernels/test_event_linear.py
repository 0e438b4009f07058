"""Event-driven synapses equal the dense GEMM: forward, dW, db and dX, in float32 and float64."""

import doctest
import itertools

import pytest
import torch
import torch.nn.functional as F

from spikegrad.kernels import event_linear as el
from spikegrad.kernels.event_linear import crossover_density, event_linear, plan_event_linear
from spikegrad.kernels.registry import numba_available

from numerics import (assert_close_to_reference, assert_same_up_to_order, linear_terms,
                      random_spikes)



@pytest.fixture(params=["numba", "embedding_bag"])
def kernels(request, monkeypatch):
    """Run the test with the compiled kernels and with the torch (embedding_bag) fallback."""
    if request.param == "numba":
        if not numba_available():
            pytest.skip("numba not installed")
    else:
        monkeypatch.setattr(el, "_use_numba", lambda x2: False)
    return request.param


def run(fn, x, w, b, g, x_grad):
    x = x.clone().requires_grad_(x_grad)
    w = w.clone().requires_grad_()
    b = None if b is None else b.clone().requires_grad_()
    y = fn(x, w, b)
    y.backward(g)
    return y.detach(), w.grad, None if b is None else b.grad, x.grad


def check_parity(fn, shape, n_out, p, dtype, bias=True, x_grad=True, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    x = random_spikes(shape, p, dtype, seed)
    w = torch.randn(n_out, shape[-1], generator=gen, dtype=dtype)
    b = torch.randn(n_out, generator=gen, dtype=dtype) if bias else None
    g = torch.randn(*shape[:-1], n_out, generator=gen, dtype=dtype)
    got = run(fn, x, w, b, g, x_grad)
    want = run(lambda x, w, b: F.linear(x, w, b), x, w, b, g, x_grad)
    # each entry within twice Higham's bound of its own sum of |terms| (tests/numerics.py)
    for name, a, e, (n, scale) in zip(("y", "dW", "db", "dX"), got, want,
                                       linear_terms(x, w, b, g)):
        if e is None:
            assert a is None
        else:
            assert a.shape == e.shape and a.dtype == e.dtype
            assert_same_up_to_order(a, e, n, scale, msg=name)


def event(x, w, b):
    return event_linear(x, w, b, backend="event")


CASES = [  # (shape, out, density)
    ((7, 5, 6), 3, 0.3),          # [T, B, in]
    ((300, 64), 33, 0.05),        # [N, in]
    ((4, 3, 1), 4, 0.5),          # in_features = 1
    ((6, 2, 9), 5, 0.0),          # no activity at all
    ((6, 2, 9), 5, 1.0),          # every input active
    ((1, 1, 17), 2, 1.0),         # a single row
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, n_out, p", CASES)
def test_event_path_equals_dense(kernels, dtype, shape, n_out, p):
    check_parity(event, shape, n_out, p, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias, x_grad", [(True, False), (False, True), (False, False)])
def test_event_path_with_and_without_bias_and_input_gradient(kernels, dtype, bias, x_grad):
    check_parity(event, (9, 4, 40), 7, 0.1, dtype, bias=bias, x_grad=x_grad)


def test_event_path_with_no_rows(kernels):
    check_parity(event, (0, 3, 8), 4, 0.5, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_weight_gradient_with_ragged_last_block(monkeypatch, dtype):
    monkeypatch.setattr(el, "_use_numba", lambda x2: False)
    monkeypatch.setattr(el, "_BLOCK_BYTES", 256)          # many row blocks of g
    shape, n_out = (501, 8), 16                            # 501 rows: last block is short
    assert el._n_row_blocks(501, 8, torch.zeros(1, n_out, dtype=dtype), 1500) > 2
    check_parity(event, shape, n_out, 0.4, dtype)


def test_int64_index_path(monkeypatch):
    monkeypatch.setattr(el, "_use_numba", lambda x2: False)
    monkeypatch.setattr(el, "_INT32_MAX", 10)
    x = random_spikes((40, 6), 0.3, torch.float64)
    index, binary = el._active_inputs(x)
    assert index.dtype == torch.int64 and binary
    check_parity(event, (40, 6), 5, 0.3, torch.float64)


def test_backward_keeps_int32_indices_not_a_float_copy_of_x(kernels):
    x = random_spikes((50, 20, 64), 0.05, torch.float32)
    w = torch.randn(16, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        event_linear(x, w, backend="event")
    kept = [t for t in saved if t is not w]
    index = kept[-1]                                       # 4 bytes per active input
    assert index.dtype == torch.int32 and index.numel() == int(x.count_nonzero())
    if kernels == "numba":                                 # + one row pointer per row of x
        assert len(kept) == 2 and kept[0].dtype == torch.int64 and kept[0].numel() == 1001
    else:
        assert len(kept) == 1


def test_auto_picks_event_for_sparse_binary_and_dense_otherwise():
    w = torch.randn(512, 64, requires_grad=True)           # 1000 x 64 x 512: enough work
    sparse = random_spikes((2, 500, 64), 0.01, torch.float32)
    plan = plan_event_linear(sparse, w)
    assert plan.backend == "event"
    assert plan.density == pytest.approx(0.01, abs=0.002)

    dense = random_spikes((2, 500, 64), 0.5, torch.float32)
    assert plan_event_linear(dense, w).backend == "dense"

    analog = sparse * 0.5                                  # sparse but not binary
    plan = plan_event_linear(analog, w)
    assert plan.backend == "dense" and "not binary" in plan.reason
    torch.testing.assert_close(event_linear(analog, w), F.linear(analog, w), rtol=0, atol=0)

    tiny = random_spikes((3, 4, 8), 0.05, torch.float32)
    assert plan_event_linear(tiny, torch.randn(5, 8)).backend == "dense"
    assert plan_event_linear(sparse, w, backend="dense").backend == "dense"


def test_auto_takes_the_gemm_for_narrow_layers_in_inference_without_counting_the_input(
        monkeypatch):
    # a readout of 20 classes, forward only: the crossover is 0 (dense at every density), so
    # the input's density is never estimated (a count over a subsample of it)
    assert crossover_density(20, False) == 0.0
    monkeypatch.setattr(el, "_estimate_density", lambda x2: pytest.fail("counted the input"))
    w = torch.randn(20, 1024)
    x = random_spikes((110, 64, 1024), 0.02, torch.float32)       # enough work, very sparse
    plan = plan_event_linear(x, w)
    assert plan.backend == "dense" and "20 outputs" in plan.reason


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_auto_trains_a_sparse_narrow_layer_on_the_narrow_kernels(monkeypatch):
    from spikegrad.kernels import numba_event, numba_narrow
    assert crossover_density(20, True) == el._NARROW_CROSSOVER[True] > 0
    used = []
    for name in ("forward", "weight_grad", "input_grad"):
        real = getattr(numba_narrow, name)
        monkeypatch.setattr(numba_narrow, name,
                            lambda *a, _real=real, _name=name: used.append(_name) or _real(*a))
    monkeypatch.setattr(numba_event, "forward", lambda *a: pytest.fail("wide forward"))
    monkeypatch.setattr(numba_event, "weight_grad", lambda *a: pytest.fail("wide dW"))
    w = torch.randn(20, 256, requires_grad=True)
    x = random_spikes((100, 64, 256), 0.02, torch.float32).requires_grad_()
    assert plan_event_linear(x, w).backend == "event"
    y = event_linear(x, w)
    y.backward(torch.ones_like(y))
    assert used == ["forward", "input_grad", "weight_grad"]
    x2 = x.detach().reshape(-1, 256)
    torch.testing.assert_close(w.grad, torch.ones(6400, 20).t() @ x2)
    torch.testing.assert_close(x.grad, (torch.ones(6400, 20) @ w.detach()).view_as(x))
    # float64 has 8 lanes: 17-32 outputs are past the narrow kernels and stay dense
    w64 = torch.randn(20, 256, dtype=torch.float64, requires_grad=True)
    assert plan_event_linear(x.detach().double(), w64).backend == "dense"


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_a_double_backward_through_a_narrow_layer_keeps_the_input_gradient_graph():
    # the narrow input-gradient kernel records no graph, so create_graph=True takes g @ W
    w = torch.randn(5, 300, dtype=torch.float64, requires_grad=True)
    x = random_spikes((40, 300), 0.05, torch.float64).requires_grad_()
    y = event_linear(x, w, backend="event")
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    (ggw,) = torch.autograd.grad(gx.sum(), w)
    xd, wd = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (gxd,) = torch.autograd.grad(F.linear(xd, wd).square().sum(), xd, create_graph=True)
    (ggwd,) = torch.autograd.grad(gxd.sum(), wd)
    torch.testing.assert_close(ggw, ggwd)


def test_auto_uses_the_forward_only_crossover_without_weight_gradient():
    n_out = next(o for o in el._CROSSOVER_OUT
                 if crossover_density(o, True) != crossover_density(o, False))
    w = torch.randn(n_out, 64, requires_grad=True)
    p_train, p_infer = crossover_density(n_out, True), crossover_density(n_out, False)
    lo, hi = sorted((p_train, p_infer))
    x = random_spikes((2**27 // (64 * n_out), 64), (lo + hi) / 2, torch.float32)  # enough work
    with torch.no_grad():
        inference = plan_event_linear(x, w).backend
    frozen = plan_event_linear(x, w.detach()).backend
    training = plan_event_linear(x, w).backend
    assert inference == frozen
    assert {inference, training} == {"event", "dense"}
    assert training == ("event" if p_train > p_infer else "dense")


def test_auto_equals_dense_through_the_event_path(kernels):
    x = random_spikes((2, 500, 64), 0.01, torch.float32)
    assert plan_event_linear(x, torch.randn(512, 64, requires_grad=True)).backend == "event"
    check_parity(lambda x, w, b: event_linear(x, w, b), (2, 500, 64), 512, 0.01,
                 torch.float32)


def test_event_backend_rejects_non_binary_input_with_the_fix(kernels):
    x = torch.rand(4, 3, 8)
    with pytest.raises(ValueError, match=r"needs a binary input.*use backend='dense'"):
        event_linear(x, torch.randn(5, 8), backend="event")
    with pytest.raises(ValueError, match="needs a binary input"):
        event_linear(torch.full((2, 8), 2.0), torch.randn(5, 8), backend="event")


def test_bad_arguments_raise_clear_errors():
    x, w = random_spikes((4, 8), 0.5, torch.float32), torch.randn(5, 8)
    with pytest.raises(ValueError,
                       match=r"backend must be one of 'auto', 'event', 'dense'; got 'sparse'"):
        event_linear(x, w, backend="sparse")
    with pytest.raises(ValueError, match=r"do not match: x \[4, 8\], weight \[5, 7\]"):
        event_linear(x, torch.randn(5, 7))
    with pytest.raises(TypeError, match=r"one dtype.*x.to\(weight.dtype\)"):
        event_linear(x.double(), w, backend="event")


def test_crossover_rule_is_interpolated_and_clamped():
    for impl, training in itertools.product(el._CROSSOVER, (True, False)):
        table = el._CROSSOVER[impl][training]
        # numba: up to 32 outputs the narrow kernels' own crossover
        narrow = el._NARROW_CROSSOVER[training] if impl.startswith("numba") else table[0]
        assert crossover_density(1, training, impl) == narrow
        assert crossover_density(32, training, impl) == narrow
        assert crossover_density(10**6, training, impl) == table[-1]
        for n_out, p in zip(el._CROSSOVER_OUT[1:], table[1:]):
            assert crossover_density(n_out, training, impl) == pytest.approx(p)
        i = el._CROSSOVER_OUT.index(256)
        mid = crossover_density(362, training, impl)       # between 256 and 512
        assert min(table[i], table[i + 1]) <= mid <= max(table[i], table[i + 1])
    assert crossover_density(512) == crossover_density(512, True, el._default_table())


@pytest.mark.parametrize("processor, amd", [
    ("AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD", True),
    ("Intel64 Family 6 Model 85 Stepping 7, GenuineIntel", False),
    ("AMD64", False),                                  # the architecture, not the vendor
    ("arm", False)])
def test_the_vendor_fallback_reads_the_processor_string(monkeypatch, processor, amd):
    # where /proc/cpuinfo cannot be read (e.g. Windows)
    def no_cpuinfo(*a, **k):
        raise OSError("no /proc/cpuinfo")
    monkeypatch.setattr(el, "open", no_cpuinfo, raising=False)
    monkeypatch.setattr(el.platform, "processor", lambda: processor)
    el._amd_cpu.cache_clear()
    try:
        assert el._amd_cpu() is amd
    finally:
        monkeypatch.undo()
        el._amd_cpu.cache_clear()


@pytest.mark.parametrize("amd, table", [(True, "numba-amd"), (False, "numba")])
def test_the_compiled_kernels_crossover_follows_the_cpu_vendor(monkeypatch, amd, table):
    monkeypatch.setattr(el, "_implementation", lambda: "numba")
    monkeypatch.setattr(el, "_amd_cpu", lambda: amd)
    assert el._default_table() == table
    assert crossover_density(512, True) == el._CROSSOVER[table][True][4]
    monkeypatch.setattr(el, "_implementation", lambda: "embedding_bag")
    assert el._default_table() == "embedding_bag"


def test_module_docstring_example_runs():
    assert doctest.testmod(el, raise_on_error=True).attempted >= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_grad_takes_the_event_path_for_sparse_spikes_and_equals_the_gemm(
        kernels, dtype, monkeypatch):
    """``weight_grad(g, x, acc)`` (a recurrent layer's dW_rec) is ``acc + g^T x`` within the
    float rounding bound of the float64 product, from the active inputs when x is sparse
    binary spikes and by the GEMM when it is not binary, too dense or too short."""
    taken = []
    real = el._weight_grad_from
    monkeypatch.setattr(el, "_weight_grad_from",
                        lambda *a: taken.append(1) or real(*a))
    if kernels == "embedding_bag":       # its crossover is lower: stay below it
        p = 0.5 * crossover_density(256, True, "embedding_bag")
    else:
        p = 0.5 * crossover_density(256, True, "numba")
    x = random_spikes((4000, 256), p, dtype)
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(4000, 256, generator=gen, dtype=dtype)
    acc = torch.randn(256, 256, generator=gen, dtype=dtype)
    want = acc.double() + g.double().t() @ x.double()
    scale = acc.double().abs() + g.double().abs().t() @ x.double()
    for a in (None, acc):
        got = el.weight_grad(g, x, a)
        assert got.dtype == dtype and got.shape == (256, 256)
        ref = want - acc.double() if a is None else want
        assert_close_to_reference(got, ref, 4001, scale, f"weight_grad {kernels}")
    assert len(taken) == 2
    # not binary (a non-spiking layer's output): the GEMM, the same numbers
    taken.clear()
    xs = x * 0.5
    assert_close_to_reference(el.weight_grad(g, xs), g.double().t() @ xs.double(), 4001,
                              g.double().abs().t() @ xs.double(), "weight_grad non-binary")
    # dense spikes, or fewer rows than the crossovers were measured for: the GEMM
    el.weight_grad(g, random_spikes((4000, 256), 0.5, dtype))
    el.weight_grad(g[:1024], x[:1024])
    assert taken == []


def test_recurrent_weight_grad_uses_the_spikes_events(monkeypatch):
    """The recurrent layers' dW_rec goes through weight_grad over y_{t-1} (the spikes of the
    previous step, y0 first), equal to the sum of per-step outer products."""
    from spikegrad.kernels import leaky

    seen = []
    monkeypatch.setattr(leaky, "weight_grad",
                        lambda g, x, acc: seen.append(x.shape) or el.weight_grad(g, x, acc))
    gen = torch.Generator().manual_seed(0)
    T, B, N = 50, 16, 64
    g_in = torch.randn(T, B, N, generator=gen, dtype=torch.float64)
    outs = (torch.rand(T, B, N, generator=gen, dtype=torch.float64) < 0.05).double()
    y0 = (torch.rand(B, N, generator=gen, dtype=torch.float64) < 0.05).double()
    got = leaky.recurrent_weight_grad(g_in, outs, y0)
    prev = torch.cat([y0[None], outs[:-1]])
    want = sum(g_in[t].T @ prev[t] for t in range(T))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert seen == [((T - 1) * B, N)]
