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
