"""Importing graphs written by hand, as snnTorch and Norse write them: the first steps'
membrane values against hand-computed ones, and longer runs against NIR's equations."""

import pytest

nir = pytest.importorskip("nir")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from nir_reference import Reference  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir  # noqa: E402

DT = 1e-4  # snnTorch's exporter writes its graphs for dt = 1e-4


def _a(*values):
    return np.array(values, dtype=np.float64)


def _snntorch_graph(w_in_style: str = "snntorch") -> nir.NIRGraph:
    """Affine -> CubaLIF -> Affine -> CubaLI, time constants from alpha = 0.5, beta = 0.75
    (readout 0.5, 0.5) in snnTorch's Euler terms (tau = dt / (1 - decay)); snnTorch writes
    r = tau_mem / dt and w_in = tau_syn / dt (unit gains), Norse r = w_in = 1."""
    ts1, tm1, ts2, tm2 = (DT / (1.0 - _a(*d)) for d in ([0.5, 0.5], [0.75, 0.75], [0.5], [0.5]))
    gains = w_in_style == "snntorch"
    lif = nir.CubaLIF(tau_syn=ts1, tau_mem=tm1, r=tm1 / DT if gains else np.ones(2),
                      v_leak=np.zeros(2), v_threshold=_a(2.0, 2.0), v_reset=np.zeros(2),
                      w_in=ts1 / DT if gains else np.ones(2))
    li = nir.CubaLI(tau_syn=ts2, tau_mem=tm2, r=tm2 / DT if gains else np.ones(1),
                    v_leak=np.zeros(1), w_in=ts2 / DT if gains else np.ones(1))
    return nir.NIRGraph.from_list(
        nir.Affine(weight=_a(1.0, 0.5, -0.5, 1.0).reshape(2, 2), bias=_a(0.25, 0.0)), lif,
        nir.Affine(weight=_a(1.0, 1.0).reshape(1, 2), bias=_a(0.0)), li)


def _first_steps(net: sg.nn.Sequential, xs: torch.Tensor):
    """The CubaLIF's spikes and membrane trace, and the readout's output."""
    outs, _ = net.forward_all(xs)
    zs, state = net.layers[1].trace(outs[0])
    return zs, state.v, outs[-1]


def test_snntorch_style_graph_first_steps_by_hand():
    net = from_nir(_snntorch_graph(), dt=DT, discretisation="euler")
    lif = net.layers[1]
    assert isinstance(lif, sg.nn.LIF) and lif.decay_syn is not None and not lif.scale_input
    assert float(lif.decay_mem()) == 0.75 and float(lif.decay_syn()) == 0.5
    assert lif.reset == "to_value" and lif.v_reset == 0.0
    xs = torch.tensor([[1.0, 0.0]]).expand(3, 1, 2)
    zs, v, out = _first_steps(net, xs)
    # projected input [1.25, -0.5]; i_t = 0.5 i + x; v_t = 0.75 v + i_t; spike if v > 2, v -> 0
    #   neuron 0: i = 1.25, 1.875, 2.1875; v = 1.25, 2.8125 (spike) -> 0, 2.1875 (spike) -> 0
    #   neuron 1: i = -0.5, -0.75, -0.875; v = -0.5, -1.125, -1.71875
    assert zs[:, 0].tolist() == [[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    assert v[:, 0].tolist() == [[1.25, -0.5], [0.0, -1.125], [0.0, -1.71875]]
    # readout: x = [0, 1, 1]; i = 0, 1, 1.5; v = 0, 1, 0.5 + 1.5 = 2
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 2.0]


def test_norse_style_unit_r_and_w_in_fold_into_the_weights():
    # r = w_in = 1: NIR's I_t = 0.5 I + 0.5 x and v_t = 0.75 v + 0.25 I_t; spikegrad folds the
    # gain 0.5 * 0.25 into the first Affine (and 0.5 * 0.5 into the second)
    graph = _snntorch_graph("norse")
    net = from_nir(graph, dt=DT, discretisation="euler")
    assert torch.equal(net.layers[0].weight, torch.tensor([[1.0, 0.5], [-0.5, 1.0]]) / 8)
    assert torch.equal(net.layers[2].weight, torch.tensor([[0.25, 0.25]]))
    xs = torch.tensor([[8.0, 0.0]]).expand(3, 1, 2)
    zs, v, _ = _first_steps(net, xs)
    # NIR: projected [8.25, -4]; I = 4.125, 6.1875, 7.21875 (and -2, -3, -3.5);
    # v = 0.75 v + 0.25 I: 1.03125, 2.3203125 (spike) -> 0, 1.8046875 and -0.5, -1.125, -1.71875
    assert zs[:, 0].tolist() == [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    assert v[:, 0].tolist() == [[1.03125, -0.5], [0.0, -1.125], [1.8046875, -1.71875]]
    xs = 30.0 * torch.rand(50, 2, 2)
    ys, _ = Reference(graph, DT, "euler").run(xs)
    torch.testing.assert_close(net(xs)[0].double(), ys, rtol=1e-5, atol=1e-5)


def test_norse_lifbox_unit_r_is_scale_input():
    # Norse's LIFBoxCell steps v += dt/tau (v_leak - v + x): gain 1 - a, spikegrad's scale_input
    tau = _a(4e-4, 4e-4, 4e-4)
    node = nir.LIF(tau=tau, r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
                   v_reset=np.zeros(3))
    net = from_nir(node, dt=DT, discretisation="euler")
    lif = net.layers[0]
    assert lif.scale_input and lif.decay_syn is None and float(lif.decay_mem()) == 0.75
    zs, state = lif.trace(torch.full((2, 1, 3), 2.0))
    assert state.v[:, 0, 0].tolist() == [0.5, 0.875]  # 0.25 * 2, then 0.75 * 0.5 + 0.5


def test_foreign_per_neuron_constants_become_trainable_parameters():
    node = nir.CubaLIF(tau_syn=_a(2e-4, 5e-4, 1e-3), tau_mem=_a(4e-4, 1e-3, 2e-3),
                       r=_a(4e-4, 1e-3, 2e-3) / DT, v_leak=np.zeros(3),
                       v_threshold=_a(0.5, 1.0, 1.5), v_reset=_a(0.0, -0.5, 0.25),
                       w_in=_a(2e-4, 5e-4, 1e-3) / DT)
    lif = from_nir(node, dt=DT, discretisation="euler").layers[0]
    assert lif.decay_mem.learn and lif.threshold.learn and lif.reset_potential.learn
    assert torch.equal(lif.decay_mem(), torch.tensor([0.75, 0.9, 0.95]))
    assert torch.equal(lif.decay_syn(), torch.tensor([0.5, 0.8, 0.9]))
    assert torch.equal(lif.threshold(), torch.tensor([0.5, 1.0, 1.5]))
    assert torch.equal(lif.v_reset, torch.tensor([0.0, -0.5, 0.25]))
    xs = 2.0 * torch.rand(60, 2, 3)
    ys, traces = Reference(nir.NIRGraph.from_list(node), DT, "euler").run(xs)
    zs, state = lif.trace(xs)
    assert torch.equal(zs.double(), ys) and zs.sum() > 0
    torch.testing.assert_close(state.v.double(), traces["cubalif"], rtol=1e-5, atol=1e-5)


def test_snntorch_style_recurrent_subgraph_with_a_recurrent_bias():
    # snnTorch's RSynaptic (all_to_all) writes its recurrent nn.Linear as an Affine with bias;
    # the bias is a constant input: spikegrad adds it to the preceding layer's bias
    rng = np.random.default_rng(0)
    n, decay_syn, decay_mem = 4, 0.6, 0.8
    ts, tm = np.full(n, DT / (1 - decay_syn)), np.full(n, DT / (1 - decay_mem))
    lif = nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / DT, v_leak=np.zeros(n),
                      v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=ts / DT)
    w_rec = nir.Affine(weight=rng.normal(0, 0.5, (n, n)), bias=rng.normal(0, 0.2, n))
    sub = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "lif": lif,
                              "w_rec": w_rec, "output": nir.Output(output_type=np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")])
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])),
               "fc": nir.Affine(weight=rng.normal(0, 1, (n, 3)), bias=np.zeros(n)),
               "rsynaptic": sub, "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "rsynaptic"), ("rsynaptic", "output")])
    net = from_nir(graph, dt=DT, discretisation="euler")
    assert isinstance(net.layers[1], sg.nn.Recurrent)
    assert torch.allclose(net.layers[0].bias.double(), torch.from_numpy(w_rec.bias))
    xs = 2.0 * torch.rand(50, 2, 3)
    ys, _ = Reference(graph, DT, "euler").run(xs)
    zs, _ = net(xs)
    assert zs.sum() > 0
    assert (zs.double() != ys).float().mean() < 0.01  # float32 vs float64: rare tie flips


def test_leaky_node_with_threshold_is_an_lif_without_reset():
    graph = nir.NIRGraph.from_list(nir.I(r=np.full(2, 1.0 / DT)),
                                   nir.Threshold(threshold=_a(1.0, 2.0)))
    net = from_nir(graph, dt=DT)
    assert len(net) == 1
    lif = net.layers[0]
    assert isinstance(lif, sg.nn.IF) and lif.reset == "none"
    zs, _ = net(torch.full((3, 1, 2), 0.75))
    assert zs[:, 0].tolist() == [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]  # v = 0.75, 1.5, 2.25


def test_dt_and_discretisation_come_from_the_arguments_over_the_metadata(tmp_path):
    graph = _snntorch_graph()
    graph.metadata.update(spikegrad_dt=DT, spikegrad_discretisation="euler")
    nir.write(tmp_path / "g.nir", graph)
    assert float(from_nir(str(tmp_path / "g.nir")).layers[1].decay_mem()) == 0.75
    decay = from_nir(graph, dt=DT, discretisation="exp").layers[1].decay_mem()
    assert float(decay) == pytest.approx(np.exp(-1.0 / 4.0), rel=1e-15)
