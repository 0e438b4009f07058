"""The graphs to_nir writes: node types, edges, parameters against their closed forms, and
what they compute when read by NIR's equations (an independent executor, nir_reference)."""

import math

import pytest

nir = pytest.importorskip("nir")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from nir_reference import Reference  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import to_nir  # noqa: E402
from spikegrad.interop.discretisation import decay_of_tau  # noqa: E402


def _types(graph):
    return [type(n).__name__ for n in graph.nodes.values()]


def test_a_chain_of_layers_is_a_chain_of_nodes():
    net = sg.nn.Sequential(sg.nn.Linear(4, 6), sg.nn.LIF(6, reset="to_value", tau_syn=5e-3),
                           sg.nn.Linear(6, 3, bias=False), sg.nn.LI(3))
    graph = to_nir(net)
    assert _types(graph) == ["Input", "Affine", "CubaLIF", "Linear", "LI", "Output"]
    names = list(graph.nodes)
    assert names == ["input", "affine_0", "cubalif_1", "linear_2", "li_3", "output"]
    assert graph.edges == list(zip(names, names[1:]))
    assert np.array_equal(graph.nodes["input"].input_type["input"], [4])
    assert np.array_equal(graph.nodes["output"].output_type["output"], [3])
    assert graph.metadata["spikegrad_dt"] == 1e-3
    assert graph.metadata["spikegrad_discretisation"] == "exp"
    w = net.layers[0].weight.detach().numpy()
    assert np.array_equal(graph.nodes["affine_0"].weight, w)
    assert graph.nodes["affine_0"].weight is not w  # a copy: training on leaves the graph


@pytest.mark.parametrize("scale_input", [False, True])
@pytest.mark.parametrize("disc", ["exp", "euler"])
def test_lif_constants_follow_the_closed_forms(disc, scale_input):
    dt, tau_mem, tau_syn = 1e-3, 12e-3, 4e-3
    lif = sg.nn.LIF(5, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, threshold=0.7,
                    reset="to_value", v_reset=-0.1, scale_input=scale_input)
    node = to_nir(lif, discretisation=disc).nodes["cubalif_0"]
    a, a_syn = math.exp(-dt / tau_mem), math.exp(-dt / tau_syn)  # spikegrad's decays
    if disc == "exp":
        # the closed form gives the time constants back (to rounding)
        np.testing.assert_allclose(node.tau_mem, tau_mem, rtol=1e-13)
        np.testing.assert_allclose(node.tau_syn, tau_syn, rtol=1e-13)
    else:
        np.testing.assert_allclose(node.tau_mem, dt / (1 - a), rtol=1e-13)
        np.testing.assert_allclose(node.tau_syn, dt / (1 - a_syn), rtol=1e-13)
    # ... and the chosen float64 maps back onto the decays exactly
    assert all(decay_of_tau(t, dt, disc) == a for t in node.tau_mem)
    assert all(decay_of_tau(t, dt, disc) == a_syn for t in node.tau_syn)
    np.testing.assert_allclose(node.r, 1.0 if scale_input else 1.0 / (1.0 - a), rtol=1e-13)
    np.testing.assert_allclose(node.w_in, 1.0 / (1.0 - a_syn), rtol=1e-13)
    for field, value in (("v_leak", 0.0), ("v_threshold", 0.7), ("v_reset", -0.1)):
        assert getattr(node, field).shape == (5,)
        assert np.all(getattr(node, field) == value), field


def test_integrators_and_leaky_nodes():
    dt = 1e-3
    graph = to_nir(sg.nn.Sequential(sg.nn.IF(3, reset="to_value", threshold=2.0),
                                    sg.nn.LI(3, tau_mem=math.inf),
                                    sg.nn.LI(3, tau_mem=5e-3, scale_input=True)))
    assert _types(graph)[1:-1] == ["IF", "I", "LI"]
    np.testing.assert_allclose(graph.nodes["if_0"].r, 1.0 / dt, rtol=1e-15)  # v += dt r x
    np.testing.assert_allclose(graph.nodes["i_1"].r, 1.0 / dt, rtol=1e-15)
    assert np.all(graph.nodes["if_0"].v_threshold == 2.0)
    np.testing.assert_allclose(graph.nodes["li_2"].tau, 5e-3, rtol=1e-13)
    assert np.all(graph.nodes["li_2"].r == 1.0)


def test_reset_none_is_a_leaky_node_and_a_threshold():
    graph = to_nir(sg.nn.LIF(4, reset="none", tau_syn=2e-3, threshold=0.5))
    assert list(graph.nodes) == ["input", "cubali_0", "cubali_0_threshold", "output"]
    assert np.all(graph.nodes["cubali_0_threshold"].threshold == 0.5)
    assert ("cubali_0", "cubali_0_threshold") in graph.edges


@pytest.mark.parametrize("autapses", [True, False])
def test_recurrent_layer_is_a_subgraph_with_its_cycle(autapses):
    torch.manual_seed(0)
    rec = sg.nn.Recurrent(sg.nn.LIF(4, reset="to_value"), autapses=autapses)
    graph = to_nir(sg.nn.Sequential(sg.nn.Linear(3, 4), rec))
    sub = graph.nodes["recurrent_1"]
    assert isinstance(sub, nir.NIRGraph)
    assert {k: type(n).__name__ for k, n in sub.nodes.items()} == \
        {"input": "Input", "lif": "LIF", "w_rec": "Linear", "output": "Output"}
    assert sorted(sub.edges) == sorted([("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                                        ("lif", "output")])
    assert np.array_equal(sub.nodes["w_rec"].weight,
                          rec.recurrent_weight().detach().numpy())
    assert np.all(np.diag(sub.nodes["w_rec"].weight) == 0) == (not autapses)
    assert sub.metadata["spikegrad_autapses"] == autapses


def test_conv_pool_and_flatten_fields():
    net = sg.nn.Sequential(sg.nn.Conv2d(2, 4, 3, stride=2, padding=1, dilation=1),
                           sg.nn.LIF((4, 4, 4), reset="to_value"),
                           sg.nn.SumPool2d(2), sg.nn.AvgPool2d(2, stride=1), sg.nn.Flatten())
    graph = to_nir(net, input_shape=(2, 8, 8))
    conv = graph.nodes["conv2d_0"]
    assert conv.input_shape == (8, 8) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert conv.groups == 1 and np.array_equal(conv.output_type["output"], [4, 4, 4])
    assert graph.nodes["lif_1"].tau.shape == (4, 4, 4)
    pool = graph.nodes["sumpool2d_2"]
    assert list(pool.kernel_size) == [2, 2] and list(pool.stride) == [2, 2]
    assert np.array_equal(pool.output_type["output"], [4, 2, 2])
    assert list(graph.nodes["avgpool2d_3"].stride) == [1, 1]
    flat = graph.nodes["flatten_4"]
    assert (flat.start_dim, flat.end_dim) == (0, -1)
    assert np.array_equal(flat.input_type["input"], [4, 1, 1])
    assert np.array_equal(graph.nodes["output"].output_type["output"], [4])


def _lif(n, **kw):
    return sg.nn.LIF(n, reset=kw.pop("reset", "to_value"), **kw)


NETS = {
    "dense": lambda: sg.nn.Sequential(
        sg.nn.Linear(5, 6), _lif(6, tau_syn=4e-3, scale_input=True, threshold=0.1),
        sg.nn.Linear(6, 6), _lif(6, reset="none"), sg.nn.Linear(6, 4),
        sg.nn.IF(4, reset="to_value"),
        sg.nn.Linear(4, 3), sg.nn.LI(3, tau_syn=2e-3)),
    "recurrent": lambda: sg.nn.Sequential(
        sg.nn.Linear(5, 8), sg.nn.Recurrent(_lif(8, tau_syn=5e-3), init_gain=2.0),
        sg.nn.Linear(8, 3), sg.nn.Recurrent(sg.nn.LI(3, scale_input=True))),
    "conv": lambda: sg.nn.Sequential(
        sg.nn.Conv2d(2, 4, 3, padding=1), _lif((4, 6, 6), tau_syn=3e-3), sg.nn.SumPool2d(2),
        sg.nn.AvgPool2d(3), sg.nn.Flatten(), sg.nn.Linear(4, 3), sg.nn.LI(3)),
}


@pytest.mark.parametrize("disc", ["exp", "euler"])
@pytest.mark.parametrize("name", sorted(NETS))
def test_nir_equations_reproduce_the_model(name, disc):
    # the exported graph, run by an executor written from NIR's equations, gives the model's
    # outputs: the graph says what spikegrad computes (float64, so a spike decided otherwise
    # would need a membrane within ~1e-15 of the threshold)
    torch.manual_seed(0)
    net = NETS[name]().double()
    shape = (2, 6, 6) if name == "conv" else (5,)
    xs = 3.0 * torch.rand(30, 2, *shape, dtype=torch.float64)
    graph = to_nir(net, input_shape=shape, discretisation=disc)
    ys, _ = Reference(graph, 1e-3, disc).run(xs)
    outs, _ = net.forward_all(xs)
    torch.testing.assert_close(ys, outs[-1], rtol=1e-12, atol=1e-12)
    spiking = [o for o, m in zip(outs, net.layers)
               if isinstance(getattr(m, "neuron", m), sg.nn.LIF)]
    assert all(o.sum() > 0 for o in spiking), "the test needs spikes in every spiking layer"


@pytest.mark.parametrize("disc", ["exp", "euler"])
def test_nir_membrane_traces_are_the_models(disc):
    torch.manual_seed(0)
    lif = _lif(4, tau_syn=3e-3, v_reset=-0.3, threshold=0.9).double()
    xs = 2.0 * torch.rand(40, 2, 4, dtype=torch.float64)
    zs, state = lif.trace(xs)
    ys, traces = Reference(to_nir(lif, discretisation=disc), 1e-3, disc).run(xs)
    assert torch.equal(ys, zs) and zs.sum() > 0
    torch.testing.assert_close(traces["cubalif_0"], state.v, rtol=1e-12, atol=1e-12)
