"""Without gradients the fused paths skip the membrane sequence: same outputs, less memory."""

import pytest
import torch

import spikegrad as sg
from spikegrad.kernels.registry import numba_available
from spikegrad.train.memory import allocator_peak_mb

BACKENDS = ["torch"] + (["numba"] if numba_available() else [])


def _net(kind, backend):
    torch.manual_seed(0)
    if kind == "li":
        return sg.nn.LI(16, tau_mem=5e-3, tau_syn=2e-3, backend=backend).double()
    lif = sg.nn.LIF(16, tau_mem=10e-3, tau_syn=5e-3 if kind == "lif_syn" else None,
                    reset="to_value", v_reset=-0.1, backend=backend)
    if kind == "recurrent":
        return sg.nn.Recurrent(lif, autapses=False, init_gain=2.0).double()
    return lif.double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["lif", "lif_syn", "recurrent", "li"])
def test_no_grad_outputs_equal_the_training_path(backend, kind):
    net = _net(kind, backend)
    xs = torch.rand(30, 4, 16, dtype=torch.float64) * 0.8
    ys_train, st_train = net(xs.clone().requires_grad_())        # LeakySequence.apply
    with torch.no_grad():
        ys_inf, st_inf = net(xs)
    ys_ref, st_ref = _reference(net, xs)
    assert not ys_inf.requires_grad
    assert torch.equal(ys_inf, ys_train.detach()) and torch.equal(ys_inf, ys_ref)
    if kind != "li":
        assert 0 < ys_inf.mean() < 1
    for a, b in zip(_leaves(st_inf), _leaves(st_train)):
        assert torch.equal(a, b.detach())


def _reference(net, xs):
    backend = net.neuron.backend if hasattr(net, "neuron") else net.backend
    cell = net.neuron if hasattr(net, "neuron") else net
    cell.backend = "reference"
    try:
        with torch.no_grad():
            return net(xs)
    finally:
        cell.backend = backend


def _leaves(state):
    out = []
    for s in state:
        if isinstance(s, torch.Tensor):
            out.append(s)
        elif s is not None:
            out.extend(_leaves(s))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_does_not_hold_the_membrane_sequence(backend):
    lif = sg.nn.LIF(256, backend=backend)
    xs = torch.rand(200, 8, 256)
    one = xs.numel() * 4 / 2**20                                # MiB of one [T, B, N] tensor

    def train_forward():
        global _keep
        _keep = lif(xs.clone().requires_grad_())

    def infer():
        with torch.no_grad():
            lif(xs)
    infer(), train_forward()                                      # compile / warm up
    with_graph, without = allocator_peak_mb(train_forward), allocator_peak_mb(infer)
    if with_graph != with_graph:
        pytest.skip("this torch's profiler reports no memory events")
    # training keeps spikes + membrane (+ the input copy); inference allocates the spikes only
    assert with_graph >= without + 0.9 * one
    assert without <= 1.1 * one
