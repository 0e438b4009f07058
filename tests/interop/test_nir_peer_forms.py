"""Graph forms the peers write that differ from spikegrad's own (in the default suite; the
peers themselves are checked by benchmarks/nir_crosscheck.py): an Input typed with the
sample's batch dimension (Norse 1.1 through nirtorch), and a recurrent layer flattened into the
top graph as a two-node cycle (snnTorch 1.0's RLeaky / RSynaptic)."""

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import torch  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir, to_nir  # noqa: E402


def test_input_typed_with_a_batch_of_one():
    torch.manual_seed(0)
    net = sg.nn.Sequential(sg.nn.Conv2d(2, 3, 3), sg.nn.LIF((3, 6, 6), dt=1e-3,
                                                            reset="to_value"))
    graph = to_nir(net, input_shape=(2, 8, 8))
    graph.nodes["input"] = nir.Input(input_type=np.array([1, 2, 8, 8]))
    back = from_nir(graph)
    xs = 3.0 * torch.rand(20, 2, 2, 8, 8)
    assert torch.equal(back(xs)[0], net(xs)[0])


def test_recurrent_cycle_in_the_top_graph():
    torch.manual_seed(0)
    net = sg.nn.Sequential(sg.nn.Linear(5, 6), sg.nn.Recurrent(
        sg.nn.LIF(6, tau_mem=1e-3, dt=1e-4, reset="to_value")))
    graph = to_nir(net, discretisation="euler")
    sub = graph.nodes.pop("recurrent_1")
    nodes = dict(graph.nodes, **{"1.lif": sub.nodes["lif"], "1.w_rec": sub.nodes["w_rec"]})
    edges = [("input", "affine_0"), ("affine_0", "1.lif"), ("1.lif", "1.w_rec"),
             ("1.w_rec", "1.lif"), ("1.lif", "output")]
    flat = nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)
    back = from_nir(flat)
    assert isinstance(back[1], sg.nn.Recurrent)
    xs = 8.0 * torch.rand(30, 3, 5)
    ys = net(xs)[0]
    assert ys.sum() > 0 and torch.equal(back(xs)[0], ys)


def test_a_cycle_that_is_not_a_recurrent_layer_is_still_refused():
    lif = nir.LIF(tau=np.full(3, 1e-2), r=np.ones(3), v_leak=np.zeros(3),
                  v_threshold=np.ones(3))
    nodes = {"input": nir.Input(input_type=np.array([3])), "a": lif,
             "b": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
             "c": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "a"), ("a", "b"), ("b", "a"), ("b", "c"), ("c", "output")]
    with pytest.raises(ValueError, match="successors|predecessors"):
        from_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=1e-3)
