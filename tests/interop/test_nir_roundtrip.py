"""spikegrad -> NIR -> spikegrad rebuilds the same model: every layer's output and the final
states are bit-identical (the same arithmetic runs), directly and through a NIR HDF5 file."""

import pytest

nir = pytest.importorskip("nir")

import torch  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir, to_nir  # noqa: E402


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Make trainable per-neuron constants differ between neurons (as after training)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("rho") or name.endswith("offset"):
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def _lif(n, **kw):
    return sg.nn.LIF(n, reset=kw.pop("reset", "to_value"), **kw)


LAYERS = {
    "lif": lambda: _lif(6, tau_mem=10e-3, threshold=0.8, v_reset=-0.2),
    "lif_scale_input": lambda: _lif(6, scale_input=True, threshold=0.05),
    "cuba_lif": lambda: _lif(6, tau_syn=5e-3, detach_reset=False,
                             surrogate="atan", beta=3.0),
    "lif_no_reset": lambda: _lif(6, reset="none", tau_syn=4e-3),
    "if": lambda: sg.nn.IF(6, reset="to_value", threshold=2.0, v_reset=0.1),
    "if_no_reset": lambda: sg.nn.IF(6, reset="none"),
    "lif_tau_inf": lambda: _lif(6, tau_mem=float("inf"), threshold=1.5),
    "lif_learned": lambda: _lif(6, tau_syn=5e-3, learn_tau=True, learn_threshold=True,
                                learn_reset=True, backend="reference"),
    "li": lambda: sg.nn.LI(6, tau_mem=7e-3),
    "li_syn_scaled": lambda: sg.nn.LI(6, tau_syn=3e-3, scale_input=True),
    "li_integrator": lambda: sg.nn.LI(6, tau_mem=float("inf")),
    "li_learned": lambda: sg.nn.LI(6, tau_syn=3e-3, learn_tau=True),
}


def _net(neuron: torch.nn.Module, bias: bool = True) -> sg.nn.Sequential:
    return sg.nn.Sequential(sg.nn.Linear(5, 6, bias=bias), neuron, sg.nn.Linear(6, 4),
                            sg.nn.LIF(4, reset="to_value", tau_syn=2e-3))


def _conv_net() -> sg.nn.Sequential:
    return sg.nn.Sequential(
        sg.nn.Conv2d(2, 4, 3, padding=1), _lif((4, 8, 8), tau_syn=4e-3),
        sg.nn.SumPool2d(2),
        sg.nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), _lif((6, 2, 2)),
        sg.nn.AvgPool2d(2), sg.nn.Flatten(), sg.nn.Linear(6, 3), sg.nn.LI(3))


def _conv1d_net() -> sg.nn.Sequential:
    return sg.nn.Sequential(
        sg.nn.Conv1d(2, 4, 3, padding="same", dilation=2, groups=2), _lif((4, 10)),
        sg.nn.Flatten(), sg.nn.Linear(40, 5), sg.nn.IF(5, reset="to_value"))


def _recurrent_net() -> sg.nn.Sequential:
    return sg.nn.Sequential(
        sg.nn.Linear(5, 8), sg.nn.Recurrent(_lif(8, tau_syn=5e-3), init_gain=2.0),
        sg.nn.Linear(8, 6), sg.nn.Recurrent(_lif(6, reset="none", threshold=1.5),
                                            autapses=False),
        sg.nn.Linear(6, 4), sg.nn.Recurrent(sg.nn.LI(4)))


def _flat(state):
    """Every tensor of a nested state, in order (None kept as None)."""
    if state is None or isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in _flat(s)]


def _run(net: sg.nn.Sequential, xs: torch.Tensor):
    outs, state = net.forward_all(xs)
    return outs, _flat(state)


def _assert_identical(a: sg.nn.Sequential, b: sg.nn.Sequential, xs: torch.Tensor) -> list:
    assert [type(m) for m in a.layers] == [type(m) for m in b.layers]
    (outs_a, state_a), (outs_b, state_b) = _run(a, xs), _run(b, xs)
    for i, (ya, yb) in enumerate(zip(outs_a, outs_b)):
        assert torch.equal(ya, yb), f"layer {i} ({type(a.layers[i]).__name__}) differs"
    assert len(state_a) == len(state_b)
    for sa, sb in zip(state_a, state_b):
        assert (sa is None and sb is None) or torch.equal(sa, sb)
    y, _ = b(xs)  # forward (with its fused Linear -> LIF pairs) too
    assert torch.equal(y, a(xs)[0])
    return outs_a


def _round_trip(net, tmp_path, via_file: bool, **kw):
    graph = to_nir(net, **kw)
    if via_file:
        nir.write(tmp_path / "net.nir", graph)
        graph = nir.read(tmp_path / "net.nir")
    return from_nir(graph)  # dt and discretisation from the graph's metadata


@pytest.mark.parametrize("via_file", [False, True], ids=["memory", "hdf5"])
@pytest.mark.parametrize("disc", ["exp", "euler"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_each_neuron_layer_round_trips_bit_for_bit(name, disc, via_file, tmp_path):
    torch.manual_seed(0)
    net = _net(LAYERS[name]())
    _perturb(net, 1)
    back = _round_trip(net, tmp_path, via_file, discretisation=disc)
    outs = _assert_identical(net, back, 4.0 * torch.rand(25, 3, 5))
    if isinstance(net.layers[1], sg.nn.LIF):
        assert 0 < outs[1].sum() < outs[1].numel(), "the test needs some spikes"


@pytest.mark.parametrize("name", ["cuba_lif", "lif_learned", "li_learned", "if"])
def test_module_options_come_back(name, tmp_path):
    torch.manual_seed(0)
    net = _net(LAYERS[name]())
    _perturb(net, 2)
    a, b = net.layers[1], _round_trip(net, tmp_path, True).layers[1]
    for attr in ("features", "scale_input", "reset", "detach_reset", "backend"):
        assert getattr(a, attr, None) == getattr(b, attr, None), attr
    for part in ("decay_mem", "decay_syn", "threshold", "reset_potential"):
        pa, pb = getattr(a, part, None), getattr(b, part, None)
        assert (pa is None) == (pb is None) and getattr(pa, "learn", 0) == getattr(pb, "learn", 0)
        if pa is not None and pa.learn:  # trained constants: the same float32 values
            assert torch.equal(pa(), pb()), part
    if isinstance(a, sg.nn.LIF):
        assert (a.surrogate.name, a.surrogate.beta) == (b.surrogate.name, b.surrogate.beta)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_round_trips(bias, tmp_path):
    torch.manual_seed(0)
    net = _net(LAYERS["lif"](), bias=bias)
    back = _round_trip(net, tmp_path, True)
    assert (back.layers[0].bias is None) == (not bias)
    _assert_identical(net, back, 4.0 * torch.rand(20, 2, 5))


@pytest.mark.parametrize("via_file", [False, True], ids=["memory", "hdf5"])
def test_conv_net_round_trips(via_file, tmp_path):
    torch.manual_seed(0)
    net = _conv_net()
    back = _round_trip(net, tmp_path, via_file, input_shape=(2, 8, 8))
    assert back.layers[3].bias is None and back.layers[0].bias is not None
    outs = _assert_identical(net, back, 3.0 * torch.rand(15, 2, 2, 8, 8))
    assert outs[1].sum() > 0 and outs[4].sum() > 0


def test_conv1d_net_round_trips(tmp_path):
    torch.manual_seed(0)
    net = _conv1d_net()
    nir.write(tmp_path / "net.nir", to_nir(net, input_shape=(2, 10), discretisation="euler"))
    # from a path: read without nir's type check, which takes a grouped conv's weight.shape[1]
    # (in / groups) for its input channels
    back = from_nir(str(tmp_path / "net.nir"))
    assert back.layers[0].padding == "same" and back.layers[0].groups == 2
    _assert_identical(net, back, 3.0 * torch.rand(15, 2, 2, 10))


@pytest.mark.parametrize("disc", ["exp", "euler"])
@pytest.mark.parametrize("via_file", [False, True], ids=["memory", "hdf5"])
def test_recurrent_net_round_trips(via_file, disc, tmp_path):
    torch.manual_seed(0)
    net = _recurrent_net()
    back = _round_trip(net, tmp_path, via_file, discretisation=disc)
    assert [m.autapses for m in back.layers if isinstance(m, sg.nn.Recurrent)] == \
        [True, False, True]
    outs = _assert_identical(net, back, 3.0 * torch.rand(30, 3, 5))
    assert outs[1].sum() > 0 and outs[3].sum() > 0


@pytest.mark.parametrize("disc", ["exp", "euler"])
def test_float64_model_round_trips_bit_for_bit(disc, tmp_path):
    # fixed constants are float64 scalars: the time constants must map back onto the very
    # same float64 decays (tau_of_decay's exact inverse), not just onto their float32 rounding
    torch.manual_seed(0)
    net = _net(_lif(6, tau_syn=3e-3, tau_mem=15e-3)).double()
    back = _round_trip(net, tmp_path, True, discretisation=disc).double()
    for a, b in zip(net.layers, back.layers):
        if isinstance(a, sg.nn.LIF):
            assert a.decay_mem() == b.decay_mem() and a.decay_syn() == b.decay_syn()
    _assert_identical(net, back, 4.0 * torch.rand(25, 3, 5, dtype=torch.float64))


def test_nested_sequential_and_dropout_are_flattened(tmp_path):
    torch.manual_seed(0)
    inner = sg.nn.Sequential(sg.nn.Linear(5, 6), _lif(6))
    net = sg.nn.Sequential(inner, sg.nn.Dropout(0.2), sg.nn.Linear(6, 3), sg.nn.LI(3)).eval()
    graph = to_nir(net)
    assert list(graph.nodes) == ["input", "affine_0_0", "lif_0_1", "affine_2", "li_3", "output"]
    flat = sg.nn.Sequential(*inner.layers, net.layers[2], net.layers[3])
    _assert_identical(flat, from_nir(graph), 4.0 * torch.rand(10, 2, 5))


def test_time_rescaled_export_imports_the_same_model():
    # dt is the step in the graph's time unit: exporting "in steps" (dt = 1) and importing
    # with dt = 1 gives the same decays
    torch.manual_seed(0)
    net = _net(_lif(6, tau_syn=5e-3))
    graph = to_nir(net, dt=1.0)
    back = from_nir(graph)
    assert back.layers[1].decay_mem.dt == 1.0
    _assert_identical(net, back, 4.0 * torch.rand(20, 2, 5))
