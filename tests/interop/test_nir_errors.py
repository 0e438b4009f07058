"""What NIR cannot express raises an error that names the layer (or node), the reason and
the fix; the NIR extra missing raises an ImportError that names the extra."""

import sys

import pytest

nir = pytest.importorskip("nir")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir, to_nir  # noqa: E402


def _net(layer, n_in=4):
    return sg.nn.Sequential(sg.nn.Linear(n_in, 4), layer)


@pytest.mark.parametrize("layer, words", [
    (sg.nn.LIF(4), ["layer 1 (LIF)", "reset='subtract'", "reset='to_value'",
                    "approximate_reset=True"]),
    (sg.nn.LIF(4, reset="to_value", v_init=0.5), ["layer 1 (LIF)", "v_init", "v_init = 0"]),
    (sg.nn.ALIF(4, reset="to_value"), ["layer 1 (ALIF)", "adaptive"]),
    (sg.nn.DendriticLIF(4), ["layer 1 (DendriticLIF)", "no NIR node"]),
    (sg.nn.Recurrent(sg.nn.ALIF(4)), ["layer 1 (Recurrent)", "ALIF"]),
    (sg.nn.Recurrent(sg.nn.LIF(4)), ["layer 1 (Recurrent)", "reset='subtract'"]),
    (sg.nn.ThresholdBatchNorm(4), ["layer 1 (ThresholdBatchNorm)", "fold"]),
    (sg.nn.LIF(4, tau_mem=float("inf"), tau_syn=5e-3, reset="to_value"),
     ["layer 1 (LIF)", "tau_syn", "finite tau_mem"]),
])
def test_unsupported_layers_are_named_with_the_fix(layer, words):
    with pytest.raises(ValueError) as info:
        to_nir(_net(layer))
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("pool, words", [
    (sg.nn.MaxPool2d(2), ["layer 1 (MaxPool2d)", "no max pooling", "AvgPool2d or SumPool2d"]),
    (sg.nn.AvgPool1d(2), ["layer 1 (AvgPool1d)", "no 1-d pooling", "Conv1d"]),
    (sg.nn.SumPool2d(3, stride=2, padding=1, ceil_mode=True), ["ceil_mode"]),
    (sg.nn.AvgPool2d(2, divisor_override=3), ["divisor_override"]),
])
def test_pools_nir_has_not(pool, words):
    conv = sg.nn.Conv1d(2, 2, 3) if isinstance(pool, torch.nn.AvgPool1d) else \
        sg.nn.Conv2d(2, 2, 3)
    shape = (2, 8) if isinstance(pool, torch.nn.AvgPool1d) else (2, 8, 8)
    with pytest.raises(ValueError) as info:
        to_nir(sg.nn.Sequential(conv, pool), input_shape=shape)
    for word in words:
        assert word in str(info.value)


def test_conv_first_needs_an_input_shape():
    with pytest.raises(ValueError, match="pass input_shape"):
        to_nir(sg.nn.Sequential(sg.nn.Conv2d(2, 2, 3), sg.nn.Flatten()))


def test_approximate_reset_writes_a_reset_to_v_reset():
    graph = to_nir(_net(sg.nn.LIF(4, threshold=0.5)), approximate_reset=True)
    assert np.all(graph.nodes["lif_1"].v_reset == 0.0)
    assert from_nir(graph).layers[1].reset == "to_value"


def _lif_node(n=3, **kw):
    fields = dict(tau=np.full(n, 1e-2), r=np.full(n, 10.0), v_leak=np.zeros(n),
                  v_threshold=np.ones(n), v_reset=np.zeros(n))
    fields.update(kw)
    return nir.LIF(**fields)


def _chain(*nodes):
    return nir.NIRGraph.from_list(nir.Affine(weight=np.ones((3, 2)), bias=np.zeros(3)), *nodes)


@pytest.mark.parametrize("graph, words", [
    (_chain(_lif_node(v_leak=np.full(3, -0.1))), ["'lif' (LIF)", "v_leak", "Shift"]),
    (_chain(_lif_node(v_threshold=np.zeros(3))), ["'lif' (LIF)", "> 0"]),
    (_chain(_lif_node(tau=np.full(3, 1e-4))), ["'lif' (LIF)", "< dt", "'exp'"]),
    (_chain(nir.Delay(delay=np.ones(3))), ["'delay' (Delay)", "no layer"]),
    (_chain(nir.Threshold(threshold=np.ones(3))), ["'threshold' (Threshold)",
                                                   "right after an LI"]),
    (nir.NIRGraph.from_list(_lif_node(r=np.full(3, 3.0))), ["'lif' (LIF)", "input gain",
                                                            "first layer", "euler"]),
    (_chain(nir.Flatten(input_type={"input": np.array([3])}, start_dim=0),
            _lif_node(r=np.full(3, 3.0))), ["'lif' (LIF)", "preceding layer is Flatten"]),
])
def test_unsupported_nodes_are_named(graph, words):
    with pytest.raises(ValueError) as info:
        from_nir(graph, dt=1e-3, discretisation="euler")
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_layer_arguments_spikegrad_refuses_are_named():
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([2, 2]))
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([1, 4, 4])), pool,
                                   type_check=False)
    with pytest.raises(ValueError, match=r"'sumpool2d' \(SumPool2d\).*padding"):
        from_nir(graph, dt=1e-3)


def test_a_torch_sequential_is_refused():
    with pytest.raises(TypeError, match="spikegrad.nn.Sequential"):
        to_nir(torch.nn.Sequential(sg.nn.Linear(2, 2)))


def test_partial_flatten_is_refused():
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([2, 3, 3])),
                                   nir.Flatten(input_type={"input": np.array([2, 3, 3])},
                                               start_dim=1))
    with pytest.raises(ValueError, match="keeps some dimensions"):
        from_nir(graph, dt=1e-3)


def test_branches_and_top_level_cycles_are_refused():
    lif, w = _lif_node(), nir.Linear(weight=np.eye(3))
    nodes = {"input": nir.Input(input_type=np.array([3])), "lif": lif, "w": w,
             "output": nir.Output(output_type=np.array([3]))}
    # neuron <-> w_rec in the top graph is snnTorch's form of a recurrent layer: read as one
    cyclic = nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "w"), ("w", "lif"),
                                              ("lif", "output")], type_check=False)
    assert isinstance(from_nir(cyclic, dt=1e-3, discretisation="euler")[0], sg.nn.Recurrent)
    # any other cycle is refused
    cyclic = nir.NIRGraph(nodes=dict(nodes, out2=nir.Linear(weight=np.eye(3))),
                          edges=[("input", "lif"), ("lif", "w"), ("w", "lif"), ("w", "out2"),
                                 ("out2", "output")], type_check=False)
    with pytest.raises(ValueError, match="successors|predecessors"):
        from_nir(cyclic, dt=1e-3)
    nodes = dict(nodes, w=nir.Output(output_type=np.array([3])))
    branching = nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "w"),
                                                 ("lif", "output")], type_check=False)
    with pytest.raises(ValueError, match="one input and one output"):
        from_nir(branching, dt=1e-3)


def test_dt_is_required_without_metadata():
    with pytest.raises(ValueError, match="pass dt"):
        from_nir(_chain(_lif_node()))


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # `import nir` raises ImportError
    with pytest.raises(ImportError, match=r"spikegrad\[nir\]"):
        to_nir(_net(sg.nn.LI(4)))
