"""Exchange with Norse itself, both ways, where it is installed (it is not a dependency; run in
the benchmark's pinned peer venv by ``python benchmarks/nir_crosscheck.py``; checked with Norse
1.1.0, nir 1.0.8, nirtorch 2.6). Spikes must be identical; where Norse's own reading of NIR
differs, the test pins the difference (see "Exchange with snnTorch and Norse" in
:mod:`spikegrad.interop` and docs/conventions.md)."""

import logging

import pytest

nir = pytest.importorskip("nir")
norse = pytest.importorskip("norse.torch")

import torch  # noqa: E402

import spikegrad as sg  # noqa: E402
from spikegrad.interop import from_nir, to_nir  # noqa: E402

DT = 1e-3  # the step of Norse's cells (their default dt)


@pytest.fixture(autouse=True)
def _quiet():
    # Norse's importer logs a warning for every r != 1 it ignores
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _run(m, xs):
    """A Norse (or nirtorch) module stepped over ``xs [T, ...]``, its state carried."""
    state, outs = None, []
    for x in xs:
        out, state = m(x, state)
        outs.append(out)
    return torch.stack(outs)


def _net(*layers, gains=(0.4, 2.0)):
    """spikegrad layers, seeded, each weight layer's weights uniform in [-0.5, 1.5] * gain (no
    bias), so that every layer fires."""
    torch.manual_seed(0)
    return _init(sg.nn.Sequential(*layers), gains)


def _init(model, gains):
    weights = iter(gains)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.uniform_(-0.5, 1.5).mul_(next(weights))
                if m.bias is not None:
                    m.bias.zero_()
    return model


def _lif(n, tau, **kw):
    return sg.nn.LIF(n, tau_mem=tau, dt=DT, reset="to_value", **kw)


def _fires(ys):
    return 0 < ys.mean() < 0.95


# --- spikegrad -> Norse ----------------------------------------------------------------------

def test_lif_to_norse():
    # Norse's LIFBoxCell integrates dt/tau (v_leak - v + I) and ignores r: spikegrad's LIF with
    # scale_input=True (r = 1) is that neuron
    net = _net(sg.nn.Linear(5, 8), _lif(8, 10e-3, scale_input=True),
               sg.nn.Linear(8, 4), _lif(4, 20e-3, scale_input=True), gains=(0.6, 3.0))
    theirs = norse.from_nir(to_nir(net, discretisation="euler"), dt=DT)
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


@pytest.mark.parametrize("scale_input", [False, True])
def test_cubalif_to_norse(scale_input):
    # Norse's importer reads CubaLIF with w_in and r (w_in x -> LIBoxCell(tau_syn) -> r I ->
    # LIFBoxCell(tau_mem)): NIR's Euler reading, spikegrad's i_t = a_syn i + x_t exactly
    net = _net(sg.nn.Linear(5, 8), _lif(8, 10e-3, tau_syn=5e-3, scale_input=scale_input),
               sg.nn.Linear(8, 4), _lif(4, 20e-3, scale_input=True),
               gains=(0.4 if scale_input else 0.04, 2.0))
    theirs = norse.from_nir(to_nir(net, discretisation="euler"), dt=DT)
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


def test_if_to_norse():
    # Norse's IAFCell adds its input (v += x) and ignores r; spikegrad's IF is v += dt r x
    # with r = 1/dt: the same neuron at any dt
    net = _net(sg.nn.Linear(5, 8), sg.nn.IF(8, dt=DT, reset="to_value"),
               sg.nn.Linear(8, 4), sg.nn.IF(4, dt=DT, reset="to_value"), gains=(0.2, 0.3))
    theirs = norse.from_nir(to_nir(net, discretisation="euler"), dt=DT)
    xs = torch.rand(60, 3, 5)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


def test_conv_to_norse():
    # Norse imports Conv2d, SumPool2d (as LPPool2d, p = 1) and Flatten; NIR's Flatten counts
    # dims without the batch and Norse applies it as torch.nn.Flatten(0, -1), so its model runs
    # one sample at a time (unbatched [C, H, W] steps)
    net = _net(sg.nn.Conv2d(2, 4, 3), _lif((4, 6, 6), 10e-3, scale_input=True),
               sg.nn.SumPool2d(2), sg.nn.Flatten(),
               sg.nn.Linear(36, 4), _lif(4, 20e-3, scale_input=True), gains=(0.3, 0.8))
    graph = to_nir(net, discretisation="euler", input_shape=(2, 8, 8))
    xs = 3.0 * torch.rand(60, 3, 2, 8, 8)
    ys, _ = net(xs)
    outs = torch.stack([_run(norse.from_nir(graph, dt=DT), xs[:, b]) for b in range(3)], 1)
    assert _fires(ys) and torch.equal(outs, ys)


def test_lif_with_input_gain_differs_in_norse():
    # pinned limitation: a spikegrad LIF with scale_input=False exports r = 1/(1 - a), which
    # Norse 1.1's importer ignores (it warns), so its membrane is (1 - a) times spikegrad's
    net = _net(sg.nn.Linear(5, 8), _lif(8, 10e-3), gains=(0.05,))
    graph = to_nir(net, discretisation="euler")
    assert float(graph.nodes["lif_1"].r[0]) == pytest.approx(1 / (1 - net[1].decay_mem().item()))
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    outs = _run(norse.from_nir(graph, dt=DT), xs)
    assert _fires(ys) and outs.sum() < ys.sum()


def test_li_and_recurrent_not_imported_by_norse():
    # pinned limitation: Norse 1.1's importer maps no LI node and no recurrent subgraph (its
    # subgraph branch is commented out); it gives no module for them
    li = _net(sg.nn.Linear(5, 4), sg.nn.LI(4, tau_mem=20e-3, dt=DT))
    rec = _net(sg.nn.Linear(5, 4), sg.nn.Recurrent(_lif(4, 10e-3, scale_input=True)))
    for net in (li, rec):
        graph = to_nir(net, discretisation="euler")
        name = [k for k in graph.nodes if k not in ("input", "output", "affine_0")][0]
        from norse.torch.utils.import_nir import _import_norse_module
        assert _import_norse_module(graph.nodes[name], dt=DT) is None


# --- Norse -> spikegrad ----------------------------------------------------------------------

def _norse_graph(model, sample):
    # Norse's exporter writes tau = dt / tau_mem_inv: with its dt argument 1.0 the graph holds
    # Norse's own time constants 1/tau_mem_inv (s); spikegrad imports it with the cells' dt
    return norse.to_nir(model, sample, dt=1.0)


def test_norse_lif_li_to_spikegrad():
    torch.manual_seed(0)
    theirs = norse.SequentialState(
        torch.nn.Linear(5, 8),
        # scalar constants: Norse 1.1's exporter writes per-neuron tau beside a scalar
        # v_threshold, which nir.LIF rejects
        norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0)), dt=DT),
        torch.nn.Linear(8, 4, bias=False),
        norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(50.0)), dt=DT))
    _init(theirs, (0.6, 3.0))
    net = from_nir(_norse_graph(theirs, torch.rand(1, 5)), dt=DT, discretisation="euler")
    assert isinstance(net[1], sg.nn.LIF) and net[1].scale_input
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


def test_norse_li_readout_to_spikegrad():
    torch.manual_seed(0)
    theirs = norse.SequentialState(
        torch.nn.Linear(5, 8),
        norse.LIFBoxCell(dt=DT),
        torch.nn.Linear(8, 4),
        norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.tensor(50.0)), dt=DT))
    _init(theirs, (0.6, 0.5))
    net = from_nir(_norse_graph(theirs, torch.rand(1, 5)), dt=DT, discretisation="euler")
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    outs = _run(theirs, xs)
    # the membrane of the readout: the same Euler step, v + dt/tau (x - v) there and
    # a v + (1 - a) x here, equal up to float32 rounding
    torch.testing.assert_close(outs, ys, rtol=1e-5, atol=1e-6)


def test_norse_if_to_spikegrad():
    # Norse's IAFCell is v += x, exported as IF(r = 1): NIR's dv/dt = r I is that per step
    # of dt = 1 (a smaller dt folds dt into the preceding weights: the same spikes, rounded)
    torch.manual_seed(0)
    theirs = _init(norse.SequentialState(torch.nn.Linear(5, 8), norse.IAFCell(dt=DT)), (0.2,))
    net = from_nir(_norse_graph(theirs, torch.rand(1, 5)), dt=1.0, discretisation="euler")
    xs = torch.rand(60, 3, 5)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


def test_norse_conv_to_spikegrad():
    torch.manual_seed(0)
    theirs = norse.SequentialState(
        torch.nn.Conv2d(2, 4, 3), norse.LIFBoxCell(dt=DT),
        torch.nn.Conv2d(4, 3, 3), norse.LIFBoxCell(dt=DT))
    _init(theirs, (0.3, 0.3))
    graph = _norse_graph(theirs, torch.rand(1, 2, 8, 8))
    net = from_nir(graph, dt=DT, discretisation="euler")
    xs = 3.0 * torch.rand(60, 3, 2, 8, 8)
    ys, _ = net(xs)
    assert _fires(ys) and torch.equal(_run(theirs, xs), ys)


def test_norse_cubalif_reads_as_nir_not_as_lifcell():
    # Norse's LIFCell exports as CubaLIF(w_in = r = 1), but it updates the membrane with the
    # previous step's current (v_t = a v + (1 - a) i_{t-1}; i_t = a_syn i_{t-1} + x_t) while
    # NIR's CubaLIF (and Norse's own importer) is I_t = a_syn I + (1 - a_syn) x_t,
    # v_t = a v + (1 - a) I_t. spikegrad imports the graph's equations: identical spikes to
    # Norse's own re-import of its graph; the LIFCell that wrote it differs (pinned).
    torch.manual_seed(0)
    theirs = norse.SequentialState(
        torch.nn.Linear(5, 8),
        norse.LIFCell(norse.LIFParameters(tau_mem_inv=torch.tensor(100.0),
                                          tau_syn_inv=torch.tensor(200.0)), dt=DT))
    _init(theirs, (4.0,))
    graph = _norse_graph(theirs, torch.rand(1, 5))
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    net = from_nir(graph, dt=DT, discretisation="euler")
    xs = 3.0 * torch.rand(100, 3, 5)
    ys, _ = net(xs)
    reread = _run(norse.from_nir(graph, dt=DT), xs)
    assert _fires(ys) and torch.equal(reread, ys)
    assert not torch.equal(_run(theirs, xs), ys)
