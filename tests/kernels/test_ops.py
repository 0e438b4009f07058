"""The fused kernels as registered operators (spikegrad.kernels.ops): a ``torch.compile``d
training step equals the eager one (outputs, spikes, states, loss, every gradient) with no
graph break and no recompile across batches of one shape; ``torch.func.grad``/``vmap`` over a
stack of models equal a Python loop over the models; ``torch.export`` of an inference model
runs and equals eager.

Compiled and eager run the same kernels in the same order, so they agree to the last bit
except where Inductor fuses the surrounding torch ops (the loss, the readout) differently:
float64 and a tolerance of a few ulps of the loss's sums."""

import copy

import pytest
import torch
from torch import nn

import spikegrad as sg
from spikegrad.kernels import adaptive, leaky, ops
from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

TOL = dict(rtol=1e-12, atol=1e-12)


class Chain(nn.Module):
    """Layers one by one (no fused pairs), returning the readout and the hidden spikes."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, xs):
        hidden = None
        states = []
        for layer in self.layers:
            if isinstance(layer, sg.nn.StatefulModule):
                xs, s = layer(xs)
                states.append(s)
                if hidden is None:
                    hidden = xs
            else:
                xs = layer(xs)
        return xs, hidden, states


class Fused(nn.Module):
    """A Sequential whose Linear -> LIF pair runs fused, as the readout, spikes, states."""

    def __init__(self, *layers, recompute=False):
        super().__init__()
        self.net = sg.nn.Sequential(*layers, recompute=recompute)

    def forward(self, xs):
        out, states = self.net(xs)
        # the pair's spikes are not returned (the readout's input), its final membrane is
        pair = states[1]
        v = pair.inner.v if isinstance(pair, sg.functional.RecurrentState) else pair.v
        return out, v, [s for s in states if s is not None]


def lif():
    return Chain(sg.nn.Linear(5, 12), sg.nn.LIF(12, tau_syn=5e-3), sg.nn.Linear(12, 3),
                 sg.nn.LI(3))


def lif_options():
    # a trained threshold and a reset that is not detached: auto runs the torch backend
    return Chain(sg.nn.Linear(5, 12), sg.nn.LIF(12, reset="to_value", v_reset=-0.2,
                                                detach_reset=False, learn_threshold=True),
                 sg.nn.Linear(12, 3), sg.nn.LI(3))


def recurrent():
    return Chain(sg.nn.Linear(5, 12), sg.nn.Recurrent(sg.nn.LIF(12)), sg.nn.Linear(12, 3),
                 sg.nn.LI(3))


def alif():
    return Chain(sg.nn.Linear(5, 12), sg.nn.ALIF(12, t_ref=2e-3, ref_strength=0.5),
                 sg.nn.Linear(12, 3), sg.nn.LI(3))


def pair():
    return Fused(sg.nn.Linear(5, 12), sg.nn.LIF(12, tau_syn=5e-3), sg.nn.Linear(12, 3),
                 sg.nn.LI(3))


def pair_recompute():
    return Fused(sg.nn.Linear(5, 12), sg.nn.LIF(12), sg.nn.Linear(12, 3), sg.nn.LI(3),
                 recompute=True)


def pair_recurrent():
    return Fused(sg.nn.Linear(5, 12), sg.nn.Recurrent(sg.nn.LIF(12)), sg.nn.Linear(12, 3),
                 sg.nn.LI(3))


MODELS = dict(lif=lif, lif_options=lif_options, recurrent=recurrent, alif=alif, pair=pair,
              pair_recompute=pair_recompute, pair_recurrent=pair_recurrent)
# the operator each model's neurons run as (the LI readout is always leaky_seq)
OPERATOR = dict(lif="leaky_seq", lif_options="leaky_seq", recurrent="leaky_seq",
                alif="alif_seq", pair="lif_pair", pair_recompute="lif_pair",
                pair_recurrent="recurrent_pair")


def build(name, seed=0):
    torch.manual_seed(seed)
    return MODELS[name]().double()


def batch(seed, T=12, B=4):
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.rand(T, B, 5, generator=g, dtype=torch.float64)


def loss_of(out):
    readout, spikes, _ = out
    return readout.pow(2).mean() + 0.1 * spikes.mean()


def train_step(model, xs):
    out = model(xs)
    loss = loss_of(out)
    loss.backward()
    return out, loss


def flat(out):
    """Every tensor of a model's output (readout, spikes, states), in order."""
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    return [t.detach() for t in leaves if isinstance(t, torch.Tensor)]


def assert_step_equal(eager, compiled, xs):
    out_e, loss_e = train_step(eager, xs)
    out_c, loss_c = train_step(compiled, xs)
    torch.testing.assert_close(loss_c, loss_e, **TOL)
    for a, b in zip(flat(out_c), flat(out_e), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    spikes = flat(out_e)[1]
    assert spikes.abs().sum() > 0, "no spikes: the test would not see the spike path"
    for (name, p), (_, q) in zip(compiled.named_parameters(), eager.named_parameters()):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_training_step_equals_eager_without_breaks_or_recompiles(name):
    torch.compiler.reset()
    eager = build(name)
    model = build(name)
    explained = torch._dynamo.explain(lambda m, x: loss_of(m(x)))(model, batch(0))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
    graph = explained.graphs[0].code
    assert f"spikegrad.{OPERATOR[name]}" in graph, graph
    torch.compiler.reset()
    compiled = torch.compile(model, backend="aot_eager")
    assert_step_equal(eager, compiled, batch(0))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in (1, 2):
            for m in (eager, model):
                m.zero_grad()
            assert_step_equal(eager, compiled, batch(seed))


@pytest.mark.parametrize("name", ["lif", "pair"])
def test_compiled_with_inductor_equals_eager(name):
    # the default backend (Inductor generates C++ around the operators)
    torch.compiler.reset()
    eager, model = build(name), build(name)
    compiled = torch.compile(model)
    assert_step_equal(eager, compiled, batch(0))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for m in (eager, model):
            m.zero_grad()
        assert_step_equal(eager, compiled, batch(1))


def test_inference_under_compile_fullgraph():
    torch.compiler.reset()
    model = build("pair").eval()
    xs = batch(0)
    with torch.no_grad():
        want = flat(model(xs))
        got = flat(torch.compile(model, fullgraph=True, backend="aot_eager")(xs))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("name", ["lif", "recurrent", "alif", "pair"])
def test_func_grad_vmap_over_stacked_models_equals_loop(name):
    # the pair runs as its two layers under torch.func (its eager run is fused: equal to the
    # order of the projection's sums)
    models = [build(name, seed) for seed in range(3)]
    xs = batch(0)
    params, buffers = torch.func.stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, x):
        return loss_of(torch.func.functional_call(base, (p, b), (x,)))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(0, 0, None))(params, buffers, xs)
    losses = torch.func.vmap(loss, in_dims=(0, 0, None))(params, buffers, xs)
    tol = TOL if name != "pair" else dict(rtol=1e-10, atol=1e-12)
    for k, m in enumerate(models):
        want = loss_of(m(xs))
        want.backward()
        torch.testing.assert_close(losses[k], want.detach(), **tol)
        for pname, p in m.named_parameters():
            torch.testing.assert_close(grads[pname][k], p.grad, **tol, msg=pname)


def test_func_grad_of_one_model_equals_backward():
    model = build("recurrent")
    xs = batch(0).requires_grad_()
    params = dict(model.named_parameters())
    grads = torch.func.grad(lambda p, x: loss_of(torch.func.functional_call(model, p, (x,))),
                            argnums=(0, 1))(params, xs)
    loss_of(model(xs)).backward()
    for pname, p in params.items():
        torch.testing.assert_close(grads[0][pname], p.grad, **TOL, msg=pname)
    torch.testing.assert_close(grads[1], xs.grad, **TOL)


class Readout(nn.Module):
    """Export wants tensors out: the readout only."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, xs):
        return self.model(xs)[0]


@pytest.mark.parametrize("name", ["lif", "recurrent", "alif", "pair"])
def test_export_of_inference_model_equals_eager(name):
    model = Readout(build(name)).eval()
    xs = batch(0)
    program = torch.export.export(model, (xs,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert any(t.startswith("spikegrad.") for t in targets), targets
    with torch.no_grad():
        torch.testing.assert_close(program.module()(batch(1)), model(batch(1)), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lif", "pair_recurrent"])
def test_strict_export_has_no_side_effects_and_equals_eager(name, recwarn):
    # strict export traces with Dynamo: the call path must only read (no table filled while
    # tracing, which Dynamo defers past the graph)
    model = Readout(build(name)).eval()
    program = torch.export.export(model, (batch(0),), strict=True)
    assert not [w for w in recwarn if "side effects" in str(w.message)]
    with torch.no_grad():
        torch.testing.assert_close(program.module()(batch(1)), model(batch(1)), rtol=0, atol=0)


def test_spec_keys_round_trip_and_name_a_user_surrogate():
    from spikegrad.kernels.spec import Spec
    fast = sg.surrogate.get("fast_sigmoid", 7.5)
    spec = Spec(True, "subtract", True, False, True, fast, "numba")
    key = ops.spec_key(spec)
    assert key == "lif|subtract|detach|-|syn|fast_sigmoid|7.5|numba"
    ops._SPECS.clear()  # as in another process: the key alone rebuilds the spec
    assert ops.spec_of(key) == spec
    own = sg.surrogate.Surrogate("fast_sigmoid", lambda x, b: b * torch.exp(-x * x),
                                 lambda x, b: torch.sigmoid(x), 1.0)
    own_key = ops.spec_key(spec._replace(surrogate=own))
    assert own_key != key
    assert ops.spec_of(own_key).surrogate == own  # found by the key it got when built


def test_compiled_step_with_a_user_surrogate_equals_eager():
    # the surrogate is named by a key it got when built: tracing reads, never registers
    torch.compiler.reset()
    cubic = sg.surrogate.Surrogate("user_cubic_ops", lambda x, b: b / (1 + (b * x) ** 4),
                                   lambda x, b: torch.sigmoid(b * x), 2.0)

    def make():
        torch.manual_seed(0)
        return Chain(sg.nn.Linear(5, 12), sg.nn.LIF(12, surrogate=cubic), sg.nn.Linear(12, 3),
                     sg.nn.LI(3)).double()
    eager, model = make(), make()
    assert_step_equal(eager, torch.compile(model, backend="aot_eager"), batch(0))


def test_eager_calls_stay_on_the_autograd_functions(monkeypatch):
    # an operator call costs far more than an autograd Function's: eager never takes it
    def refuse(*a, **k):
        raise AssertionError("eager call went through the operator")
    monkeypatch.setattr(leaky, "leaky_operator", refuse)
    monkeypatch.setattr(adaptive, "adaptive_operator", refuse)
    for name in ("lif", "recurrent", "alif"):
        train_step(build(name), batch(0))
