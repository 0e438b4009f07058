"""Exchange with snnTorch itself, both ways, where it is installed (it is not a dependency;
checked with snnTorch 1.0.0): spikes must be identical."""

import pytest

nir = pytest.importorskip("nir")
snn = pytest.importorskip("snntorch")

import torch  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir, to_nir  # noqa: E402

DT = 1e-4  # snnTorch's exporter writes its graphs for dt = 1e-4


def test_spikegrad_to_snntorch():
    from snntorch.import_nir import import_from_nir
    torch.manual_seed(0)
    net = sg.nn.Sequential(
        sg.nn.Linear(5, 6), sg.nn.LIF(6, tau_mem=1e-3, tau_syn=5e-4, dt=DT, reset="to_value"),
        sg.nn.Linear(6, 4), sg.nn.LIF(4, tau_mem=2e-3, dt=DT, reset="to_value"))
    theirs = import_from_nir(to_nir(net, discretisation="euler"))
    xs = 2.0 * torch.rand(40, 3, 5)
    ys, _ = net(xs)
    outs = [theirs(x) for x in xs]
    outs = torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])
    assert ys.sum() > 0 and torch.equal(outs, ys)


def test_snntorch_to_spikegrad():
    from snntorch import utils
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    # reset_delay=False: the same-step reset NIR describes (snnTorch's default resets a step
    # late); per-neuron constants: snnTorch 1.0 exports scalar ones with shape ()
    theirs = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        snn.Synaptic(alpha=torch.full((6,), 0.6), beta=torch.full((6,), 0.9),
                     threshold=torch.ones(6), init_hidden=True, reset_mechanism="zero",
                     reset_delay=False),
        torch.nn.Linear(6, 4),
        snn.Leaky(beta=torch.full((4,), 0.8), threshold=torch.ones(4), init_hidden=True,
                  output=True, reset_mechanism="zero", reset_delay=False))
    net = from_nir(export_to_nir(theirs, torch.rand(5)), dt=DT, discretisation="euler")
    xs = 2.0 * torch.rand(40, 1, 5)
    utils.reset(theirs)
    outs = [theirs(x) for x in xs]
    outs = torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])
    ys, _ = net(xs)
    assert ys.sum() > 0 and torch.equal(outs, ys)


def _stepped(model, xs):
    """A model from snnTorch's importer (a nirtorch GraphModule) stepped over ``xs``: the state
    it returns carries a recurrent subgraph's w_rec output to the next step."""
    state, outs = None, []
    for x in xs:
        out, state = model(x, state)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs)


@pytest.mark.parametrize("tau_syn", [None, 5e-4])
def test_spikegrad_recurrent_to_snntorch(tau_syn):
    from snntorch.import_nir import import_from_nir
    torch.manual_seed(0)
    net = sg.nn.Sequential(
        sg.nn.Linear(5, 6),
        sg.nn.Recurrent(sg.nn.LIF(6, tau_mem=1e-3, tau_syn=tau_syn, dt=DT, reset="to_value")),
        sg.nn.Linear(6, 4), sg.nn.LIF(4, tau_mem=2e-3, dt=DT, reset="to_value"))
    theirs = import_from_nir(to_nir(net, discretisation="euler"))
    xs = 8.0 * torch.rand(40, 3, 5)
    ys, _ = net(xs)
    assert ys.sum() > 0 and torch.equal(_stepped(theirs, xs), ys)


def test_spikegrad_conv_to_snntorch():
    # NIR's Flatten counts dims without the batch and snnTorch applies it as
    # torch.nn.Flatten(0, -1): its model runs one sample at a time (unbatched [C, H, W] steps)
    from snntorch import utils
    from snntorch.import_nir import import_from_nir
    torch.manual_seed(0)
    net = sg.nn.Sequential(
        sg.nn.Conv2d(2, 3, 3), sg.nn.LIF((3, 6, 6), tau_mem=1e-3, dt=DT, reset="to_value"),
        sg.nn.AvgPool2d(2), sg.nn.Flatten(),
        sg.nn.Linear(27, 4), sg.nn.LIF(4, tau_mem=2e-3, dt=DT, reset="to_value"))
    with torch.no_grad():
        for m, gain in ((net[0], 0.05), (net[4], 0.3)):
            m.weight.uniform_(-0.5, 1.5).mul_(gain)
    theirs = import_from_nir(to_nir(net, discretisation="euler", input_shape=(2, 8, 8)))
    xs = 8.0 * torch.rand(30, 3, 2, 8, 8)
    ys, _ = net(xs)
    outs = []
    for b in range(xs.shape[1]):
        utils.reset(theirs)
        outs.append(_stepped(theirs, xs[:, b]))
    assert ys.sum() > 0 and torch.equal(torch.stack(outs, 1), ys)


def test_li_and_if_not_imported_by_snntorch():
    # pinned limitations of snnTorch 1.0's importer: no LI node at all, and IF becomes a
    # Leaky with beta = 0.9 (and no hidden state), so spikegrad's LI readouts and IF layers do
    # not travel to snnTorch
    from snntorch.import_nir import _nir_to_snntorch_module, import_from_nir
    li = sg.nn.Sequential(sg.nn.Linear(5, 4), sg.nn.LI(4, tau_mem=2e-3, dt=DT))
    with pytest.raises(ValueError, match="LI"):
        import_from_nir(to_nir(li, discretisation="euler"))
    graph = to_nir(sg.nn.Sequential(sg.nn.Linear(5, 4), sg.nn.IF(4, dt=1.0, reset="to_value")),
                   discretisation="euler")
    leaky = _nir_to_snntorch_module(graph.nodes["if_1"])
    assert isinstance(leaky, snn.Leaky) and float(leaky.beta) == pytest.approx(0.9)


def test_snntorch_recurrent_to_spikegrad():
    # RLeaky only: snnTorch 1.0's RSynaptic fails to run with init_hidden=True and
    # reset_delay=False (it divides its spike, None, by graded_spikes_factor)
    from snntorch import utils
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        snn.RLeaky(beta=0.9, linear_features=6, init_hidden=True, reset_mechanism="zero",
                   reset_delay=False),
        torch.nn.Linear(6, 4),
        snn.Leaky(beta=torch.full((4,), 0.8), threshold=torch.ones(4), init_hidden=True,
                  output=True, reset_mechanism="zero", reset_delay=False))
    net = from_nir(export_to_nir(theirs, torch.rand(5)), dt=DT, discretisation="euler")
    assert isinstance(net[1], sg.nn.Recurrent)
    xs = 4.0 * torch.rand(40, 1, 5)
    utils.reset(theirs)
    outs = torch.stack([theirs(x)[0] for x in xs])
    ys, _ = net(xs)
    assert ys.sum() > 0 and torch.equal(outs, ys)


def test_snntorch_default_leaky_differs():
    # pinned: snnTorch's default Leaky subtracts the threshold a step late (reset_delay=True);
    # its exporter writes it as NIR's same-step reset to v_reset = 0, which spikegrad runs as
    # written. Only reset_mechanism="zero", reset_delay=False is the graph (tests above).
    from snntorch import utils
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(5, 6), snn.Leaky(beta=torch.full((6,), 0.9), threshold=torch.ones(6),
                                         init_hidden=True, output=True))
    net = from_nir(export_to_nir(theirs, torch.rand(5)), dt=DT, discretisation="euler")
    assert net[1].reset == "to_value" and float(net[1].v_reset) == 0.0
    xs = 4.0 * torch.rand(40, 1, 5)
    utils.reset(theirs)
    outs = torch.stack([theirs(x)[0] for x in xs])
    ys, _ = net(xs)
    assert ys.sum() > 0 and not torch.equal(outs, ys)
