"""Linear -> LIF fused (Sequential: the membrane kept, partly or wholly recomputed with
``recompute``) equals the two layers run one by one: spikes and states bit-identical, every
gradient to summation order, over chunk edges, neuron options, event and dense projections;
with recompute=True it keeps no [T, B, N] sequence, without it one."""

import pytest
import torch

import spikegrad as sg
from spikegrad.kernels import projected
from spikegrad.kernels.registry import numba_available

import copy

from cases import pairwise_params
from numerics import (assert_decisions_clear, assert_same_up_to_order, chain, matmul_scale,
                      membrane_chain, spike_margins)

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

# gradients of the fused and unfused pairs sum the same terms in other orders (weight and bias
# gradients chunk by chunk, the adjoint's recurrent sum by another GEMM): within twice the
# rounding bound of a chain of T steps with the projection's (and recurrent) fan-in, summed
# over T x B rows (tests/numerics.py). States differ by the order of the projection's sums
# (a GEMM per chunk against one over all rows: equal on one processor's kernels, not on
# another's), spikes not at all where the decisions are clear of that rounding.
N_REC = chain(23, 3, 17 + 11)
CUBIC = sg.surrogate.Surrogate("user_cubic_projected", lambda x, b: b / (1 + (b * x) ** 4),
                               lambda x, b: torch.sigmoid(b * x), 2.0)


@pytest.fixture
def calls(monkeypatch):
    """Count the fused calls; chunks of 5 steps for batch 3 (16 rows) so every test crosses
    several chunk edges with a short last chunk."""
    monkeypatch.setattr(projected, "CHUNK_ROWS", 16)
    seen = []
    apply = projected.ProjectedLIF.apply
    monkeypatch.setattr(projected.ProjectedLIF, "apply", lambda *a: seen.append(1) or apply(*a))
    return seen


def assert_same_trajectory(net, x, state, fused, plain):
    """``(spikes, final membrane)`` of the fused pair and of the layers one by one: spikes
    equal (after checking on a float64 reference run that no decision lies within the
    membrane's rounding bound), membranes within it. Both paths round in ``x``'s dtype."""
    lin, neuron = net[0], net[1]
    lif = neuron.neuron if isinstance(neuron, sg.nn.Recurrent) else neuron
    a = float(lif.decay_mem().max())
    step = matmul_scale(x.detach().reshape(-1, x.shape[-1]), lin.weight.detach().t())
    if lin.bias is not None:
        step = step + lin.bias.detach().abs().to(torch.float64)
    fan_in = x.shape[-1]
    if isinstance(neuron, sg.nn.Recurrent):
        step = step + neuron.recurrent_weight().detach().abs().sum(1).to(torch.float64)
        fan_in += neuron.weight.shape[0]
    n = membrane_chain(x.shape[0], fan_in, a)
    # scale_input multiplies the current by 1 - a before it reaches the membrane
    scale = float(step.max()) * ((1.0 - a) if lif.scale_input else 1.0)
    ref = copy.deepcopy(net).double()
    for m in ref.modules():
        if hasattr(m, "backend"):
            m.backend = "dense" if isinstance(m, sg.nn.Linear) else "reference"
    ref_state = None if state is None else sg.functional.map_state(
        lambda t: t.detach().double(), state)
    with torch.no_grad(), spike_margins() as margins:
        ref.forward_all(x.detach().double(), ref_state)
    assert_decisions_clear(margins, x.dtype, n, scale=max(1.0, scale), paths=2)
    assert torch.equal(fused[0], plain[0]), "spikes differ although every decision is clear"
    assert_same_up_to_order(fused[1], plain[1], n, scale, msg="final membrane")


def _run(net, x, g, use_state, fused, retain=False):
    params = [q for q in net.parameters() if q.requires_grad]
    if fused:
        z, st = net(x)
    else:
        outs, st = net.forward_all(x)
        z = outs[-1]
    loss = (z * g).sum() + (st[1].v.sum() * 0.7 if use_state else 0.0)
    inputs = [x] + params if x.requires_grad else params
    grads = torch.autograd.grad(loss, inputs, retain_graph=retain)
    if retain:  # a second backward through the same graph: the membrane must still be there
        again = torch.autograd.grad(loss, inputs)
        for a, b in zip(grads, again):  # (the first walks the kept steps in chunks)
            assert_same_up_to_order(a, b, chain(x.shape[0], x.shape[1], x.shape[2]),
                                    msg="second backward")
    return z.detach(), st[1].v.detach(), grads


# the fraction of the sequence recomputed: none (the membrane kept, gradient written over it),
# the later chunks, all
RECOMPUTE = [0.0, 0.5, True]


def check(lif_kw, dtype=torch.float64, p=0.3, backend="auto", bias=True, x_grad=True,
          use_state=False, T=23, seed=0, gain=3.0, recompute=True, retain=False):
    torch.manual_seed(seed)
    lin = sg.nn.Linear(17, 11, bias=bias, backend=backend).to(dtype)
    with torch.no_grad():
        lin.weight.mul_(gain)
    lif = sg.nn.LIF(11, **lif_kw).to(dtype)
    net = sg.nn.Sequential(lin, lif, recompute=recompute)
    x = (torch.rand(T, 3, 17, dtype=dtype) < p).to(dtype).requires_grad_(x_grad)
    g = torch.randn(T, 3, 11, dtype=dtype)
    fused = _run(net, x, g, use_state, True, retain)
    plain = _run(net, x, g, use_state, False)
    assert 0 < plain[0].mean() < 1, "pick inputs that make some but not all neurons fire"
    assert_same_trajectory(net, x, None, fused[:2], plain[:2])
    for k, (a, b) in enumerate(zip(fused[2], plain[2])):
        assert_same_up_to_order(a, b, chain(T, 3, 17), msg=f"gradient {k}")


OPTIONS = [dict(), dict(tau_syn=5e-3), dict(reset="to_value", v_reset=-0.2),
           dict(reset="none"), dict(detach_reset=False), dict(scale_input=True),
           dict(surrogate="sigmoid"), dict(surrogate="atan", beta=3.0), dict(surrogate="triangle"),
           dict(surrogate=CUBIC), dict(tau_syn=5e-3, detach_reset=False, reset="to_value")]


def _option_id(kw):
    return ",".join(getattr(v, "name", str(v)) for v in kw.values()) or "default"


# each option set compiles its own kernels: a covering array in the default run, the whole
# product in make test-all (tests/cases.py)
@pytest.mark.parametrize("lif_kw, dtype, recompute", pairwise_params(
    OPTIONS, [torch.float64, torch.float32], RECOMPUTE,
    ids=lambda kw, dtype, r: f"{_option_id(kw)}-{str(dtype)[6:]}-{r}"))
def test_fused_equals_the_layers_run_one_by_one(calls, dtype, lif_kw, recompute):
    gain = 30.0 if lif_kw.get("scale_input") else 3.0
    check(lif_kw, dtype, gain=gain, recompute=recompute)
    assert calls


@pytest.mark.parametrize("recompute", RECOMPUTE)
@pytest.mark.parametrize("backend", ["event", "dense", "auto"])
@pytest.mark.parametrize("bias, x_grad, use_state", [(True, True, False), (False, False, True),
                                                     (True, False, True)])
def test_projection_backends_bias_input_gradient_and_final_state(calls, backend, bias, x_grad,
                                                                  use_state, recompute):
    check({}, backend=backend, bias=bias, x_grad=x_grad, use_state=use_state, p=0.2,
          recompute=recompute)
    assert calls


@pytest.mark.parametrize("recompute", RECOMPUTE)
@pytest.mark.parametrize("T", [1, 5, 6, 11])  # one step; exactly one chunk; one more; ragged
def test_sequence_lengths_around_the_chunk_size(calls, T, recompute):
    check({}, T=T, p=0.6, gain=5.0, recompute=recompute)


@pytest.mark.parametrize("recompute", [0.0, 0.5, 0.99])
@pytest.mark.parametrize("lif_kw", [dict(), dict(tau_syn=5e-3)], ids=_option_id)
def test_a_retained_graph_backpropagates_twice_to_the_same_gradients(calls, lif_kw, recompute):
    # the kept membrane is overwritten by its gradient only when the graph is freed after
    check(lif_kw, recompute=recompute, retain=True)
    assert calls


@pytest.mark.parametrize("recompute, kept", [(0.0, 5), (0.2, 4), (0.5, 2), (0.99, 0),
                                             (True, 0)])
def test_recompute_sets_how_many_chunks_keep_their_membrane(calls, recompute, kept):
    T, B, N = 23, 3, 11                                   # 5 chunks of 5 steps (the last 3)
    net = sg.nn.Sequential(sg.nn.Linear(17, N), sg.nn.LIF(N), recompute=recompute)
    z, _ = net((torch.rand(T, B, 17) < 0.3).float())
    ctx = z.grad_fn.saved                                 # what forward left for backward
    assert ctx.n_kept == kept and ctx.u_kept.shape == (min(T, 5 * kept), B * N)
    assert sum(s is not None for s in ctx.starts) == 5 - kept  # start states of the others


@pytest.mark.parametrize("bad", [-0.1, 1.5, "all", None])
def test_recompute_out_of_range_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="recompute must be True, False or a fraction"):
        sg.nn.Sequential(sg.nn.Linear(4, 3), sg.nn.LIF(3), recompute=bad)


def test_a_given_initial_state_is_used(calls):
    torch.manual_seed(1)
    lin, lif = sg.nn.Linear(8, 6).double(), sg.nn.LIF(6).double()
    net = sg.nn.Sequential(lin, lif, recompute=True)
    x = (torch.rand(12, 3, 8, dtype=torch.float64) < 0.4).double()
    state = (None, sg.functional.LIFState(torch.rand(3, 6, dtype=torch.float64) * 0.9, None))
    z1, s1 = net(x, state)
    outs, s2 = net.forward_all(x, state)
    assert calls and torch.equal(z1, outs[-1]) and torch.equal(s1[1].v, s2[1].v)


@pytest.mark.parametrize("lif_kw", [dict(learn_tau=True), dict(learn_threshold=True),
                                    dict(reset="to_value", learn_reset=True)])
def test_trained_neuron_constants_run_unfused_and_still_get_gradients(calls, lif_kw):
    lif = sg.nn.LIF(6, **lif_kw).double()
    net = sg.nn.Sequential(sg.nn.Linear(8, 6).double(), lif, recompute=True)
    x = (torch.rand(12, 3, 8, dtype=torch.float64) < 0.5).double()
    z, _ = net(x)
    z.sum().backward()
    assert not calls
    assert all(q.grad is not None for q in lif.parameters() if q.requires_grad)


def test_initial_state_that_needs_a_gradient_runs_unfused(calls):
    net = sg.nn.Sequential(sg.nn.Linear(8, 6).double(), sg.nn.LIF(6).double(), recompute=True)
    v0 = torch.zeros(3, 6, dtype=torch.float64, requires_grad=True)
    z, _ = net((torch.rand(12, 3, 8) < 0.5).double(), (None, sg.functional.LIFState(v0, None)))
    z.sum().backward()
    assert not calls and v0.grad is not None


def test_inference_forward_all_and_hooked_layers_are_not_fused(calls):
    x = (torch.rand(12, 3, 8) < 0.5).float()
    layers = (sg.nn.Linear(8, 6), sg.nn.LIF(6))
    with torch.no_grad():
        sg.nn.Sequential(*layers)(x)                      # nothing to keep for backward
    sg.nn.Sequential(*layers, recompute=True).forward_all(x)
    seen = []
    handle = layers[0].register_forward_hook(lambda *a: seen.append(1))
    z, _ = sg.nn.Sequential(*layers, recompute=True)(x)
    handle.remove()
    assert not calls and seen == [1]                      # the hook saw its layer's call
    sg.nn.Sequential(*layers)(x)
    with torch.no_grad():                                 # recompute: fused, nothing kept
        z, _ = sg.nn.Sequential(*layers, recompute=0.5)(x)
    assert len(calls) == 2


def test_keeps_no_sequence_for_backward(calls):
    T, B, n_in, N = 40, 3, 8, 6
    net = sg.nn.Sequential(sg.nn.Linear(n_in, N), sg.nn.LIF(N), recompute=True)
    x = (torch.rand(T, B, n_in) < 0.5).float()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        z, _ = net(x)
    assert calls
    assert [t.shape for t in saved] == [net[0].weight.shape]      # the weight, nothing else
    ctx = z.grad_fn.saved
    assert len(ctx.starts) == -(-T // projected.chunk_steps(T, B))  # one state per chunk
    assert all(v.size == B * N for v, _ in ctx.starts)
    assert ctx.u_kept.size == 0


def test_without_recompute_the_membrane_is_the_one_sequence_kept(calls):
    T, B, n_in, N = 40, 3, 8, 6
    net = sg.nn.Sequential(sg.nn.Linear(n_in, N), sg.nn.LIF(N))
    z, _ = net((torch.rand(T, B, n_in) < 0.5).float())
    ctx = z.grad_fn.saved
    assert calls and ctx.u_kept.shape == (T, B * N) and not any(ctx.starts)


def test_non_binary_input_with_the_event_backend_raises_the_linear_error(calls):
    net = sg.nn.Sequential(sg.nn.Linear(8, 6, backend="event"), sg.nn.LIF(6), recompute=True)
    with pytest.raises(ValueError, match="needs a binary input"):
        net(torch.rand(5, 2, 8))


def _recurrent_run(net, x, g, state, fused):
    params = [x] + list(net.parameters())
    if state is not None and state[1].y.requires_grad:
        params.append(state[1].y)
    if fused:
        z, st = net(x, state)
    else:
        outs, st = net.forward_all(x, state)
        z = outs[-1]
    loss = (z * g).sum() + 0.5 * st[1].inner.v.sum()
    return z.detach(), st[1].inner.v.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("lif_kw, autapses", [
    (dict(), True), (dict(), False), (dict(tau_syn=5e-3), True),
    (dict(reset="to_value", v_reset=-0.2), True), (dict(detach_reset=False), False),
    (dict(scale_input=True), True), (dict(surrogate=CUBIC), True)], ids=str)
@pytest.mark.parametrize("recompute", RECOMPUTE)
def test_recurrent_fused_equals_the_layers_run_one_by_one(monkeypatch, dtype, lif_kw, autapses,
                                                          recompute):
    monkeypatch.setattr(projected, "CHUNK_ROWS", 16)     # chunks of 5 steps for batch 3
    seen = []
    apply = projected.ProjectedRecurrentLIF.apply
    monkeypatch.setattr(projected.ProjectedRecurrentLIF, "apply",
                        lambda *a: seen.append(1) or apply(*a))
    torch.manual_seed(0)
    lin = sg.nn.Linear(17, 11).to(dtype)
    with torch.no_grad():
        lin.weight.mul_(30.0 if lif_kw.get("scale_input") else 3.0)
    rec = sg.nn.Recurrent(sg.nn.LIF(11, **lif_kw), autapses=autapses, init_gain=2.0).to(dtype)
    net = sg.nn.Sequential(lin, rec, recompute=recompute)
    x = (torch.rand(23, 3, 17, dtype=dtype) < 0.3).to(dtype).requires_grad_()
    g = torch.randn(23, 3, 11, dtype=dtype)
    # also from a given state whose previous spikes need a gradient (y0 of the first chunk)
    y0 = (torch.rand(3, 11, dtype=dtype) < 0.5).to(dtype).requires_grad_()
    given = (None, sg.functional.RecurrentState(
        sg.functional.LIFState(torch.rand(3, 11, dtype=dtype) * 0.5,
                               torch.zeros(3, 11, dtype=dtype) if "tau_syn" in lif_kw
                               else None), y0))
    for state in (None, given):
        fused = _recurrent_run(net, x, g, state, True)
        plain = _recurrent_run(net, x, g, state, False)
        assert 0 < plain[0].mean() < 1
        assert_same_trajectory(net, x, state, fused[:2], plain[:2])
        for k, (a, b) in enumerate(zip(fused[2], plain[2])):
            assert_same_up_to_order(a, b, N_REC, msg=f"gradient {k}")
    assert len(seen) == 2


@pytest.mark.parametrize("lif_kw", [dict(), dict(tau_syn=5e-3)], ids=_option_id)
def test_recurrent_retained_graph_backpropagates_twice(monkeypatch, lif_kw):
    monkeypatch.setattr(projected, "CHUNK_ROWS", 16)
    torch.manual_seed(0)
    lin = sg.nn.Linear(17, 11)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    net = sg.nn.Sequential(lin, sg.nn.Recurrent(sg.nn.LIF(11, **lif_kw), init_gain=2.0))
    z, _ = net((torch.rand(23, 3, 17) < 0.3).float())
    assert z.grad_fn.saved.n_kept == 5 and 0 < z.mean() < 1
    loss = (z * torch.randn_like(z)).sum()
    first = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)
    for a, b in zip(first, torch.autograd.grad(loss, list(net.parameters()))):
        assert_same_up_to_order(a, b, N_REC, msg="second backward")


def test_a_hook_on_the_recurrent_layers_neuron_keeps_the_pair_unfused(monkeypatch):
    seen = []
    apply = projected.ProjectedRecurrentLIF.apply
    monkeypatch.setattr(projected.ProjectedRecurrentLIF, "apply",
                        lambda *a: seen.append(1) or apply(*a))
    rec = sg.nn.Recurrent(sg.nn.LIF(6))
    net = sg.nn.Sequential(sg.nn.Linear(8, 6), rec)
    x = (torch.rand(12, 3, 8) < 0.5).float()
    net(x)
    assert seen == [1]
    handle = rec.neuron.register_forward_pre_hook(lambda *a: None)
    net(x)
    handle.remove()
    assert seen == [1]


def test_recurrent_alif_and_trained_constants_run_unfused(monkeypatch):
    seen = []
    apply = projected.ProjectedRecurrentLIF.apply
    monkeypatch.setattr(projected.ProjectedRecurrentLIF, "apply",
                        lambda *a: seen.append(1) or apply(*a))
    x = (torch.rand(12, 3, 8) < 0.5).float()
    for neuron in (sg.nn.ALIF(6), sg.nn.LIF(6, learn_threshold=True)):
        net = sg.nn.Sequential(sg.nn.Linear(8, 6), sg.nn.Recurrent(neuron), recompute=True)
        z, _ = net(x)
        z.sum().backward()
    assert not seen


def test_the_fused_projection_decides_event_or_dense_as_a_training_linear_would(monkeypatch):
    from spikegrad.kernels import event_linear as el
    monkeypatch.setattr(el, "_CROSSOVER", {impl: {True: (0.5,) * 7, False: (0.0,) * 7}
                                           for impl in el._CROSSOVER})
    seen = []
    plan = el.plan_with_events
    monkeypatch.setattr(projected, "plan_with_events",
                        lambda *a: seen.append(plan(*a)[0]) or plan(*a))
    net = sg.nn.Sequential(sg.nn.Linear(64, 512), sg.nn.LIF(512), recompute=True)
    x = (torch.rand(40, 20, 64) < 0.1).float()   # 800 x 64 x 512 = 2**24.6: enough work
    net(x)
    assert [p.backend for p in seen] == ["event"]   # training table (0.5), not inference (0)
