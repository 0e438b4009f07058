"""Truncated BPTT in one pass (functional.truncation): the gradient equals the chunked loop's
(state detached between chunks), for the natively cutting paths and the chunked fallback."""

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import cut_every, detach_state, truncate_gradients
from spikegrad.kernels import leaky as kleaky

T, B, N_IN, K = 53, 3, 5, 10


def _net(kind: str, backend: str):
    n = 6
    if kind == "ff":  # synaptic LIF (subtract reset), then LI
        mid = sg.nn.LIF(n, tau_syn=5e-3, backend=backend)
    elif kind == "to_value":  # reset to a value, not detached, trained constants
        mid = sg.nn.LIF(n, reset="to_value", v_reset=-0.1, detach_reset=False, learn_tau=True,
                        learn_threshold=True, backend=backend)
    elif kind == "rec":
        mid = sg.nn.Recurrent(sg.nn.LIF(n, backend=backend))
    elif kind == "rec_syn":
        mid = sg.nn.Recurrent(sg.nn.LIF(n, tau_syn=5e-3, backend=backend))
    elif kind == "alif":  # not cut natively: run in chunks by StatefulModule
        mid = sg.nn.Recurrent(sg.nn.ALIF(n, backend="auto" if backend != "torch" else "reference"))
    elif kind == "dendritic":
        mid = sg.nn.DendriticLIF(n, branches=2)
    else:
        raise ValueError(kind)
    width = 2 * n if kind == "dendritic" else n  # a dendritic neuron takes one input per branch
    net = sg.nn.Sequential(sg.nn.Linear(N_IN, width), mid, sg.nn.Linear(n, 2),
                           sg.nn.LI(2, learn_tau=True, backend=backend)).double()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.mul_(3.0)  # enough spikes for every path to matter
    return net


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, N_IN, generator=g, dtype=torch.float64),
            torch.rand(T, B, 2, generator=g, dtype=torch.float64))


def _grads(net, xs, ys, k, mode):
    net.zero_grad()
    if mode == "chunks":
        state, outs = None, []
        for x, y in zip(xs.split(k), ys.split(k)):
            out, state = net(x, state)
            ((out - y) ** 2).sum().backward()
            state = detach_state(state)
            outs.append(out.detach())
        out = torch.cat(outs)
    else:
        with truncate_gradients(k):
            out, _ = net(xs)
        ((out - ys) ** 2).sum().backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()]


def _rel(a, b):
    return max(float((u - v).abs().max() / u.abs().max().clamp_min(1e-300))
               for u, v in zip(a, b))


CASES = [(kind, backend) for kind in ("ff", "to_value", "rec", "rec_syn")
         for backend in ("reference", "torch", "numba")] + [
    ("alif", "numba"), ("alif", "reference"), ("dendritic", "reference")]


@pytest.mark.parametrize("kind,backend", CASES)
def test_one_pass_equals_chunks_and_differs_from_full(kind, backend):
    if backend == "numba":
        pytest.importorskip("numba")
    torch.manual_seed(0)
    net = _net(kind, backend)
    xs, ys = _data()
    out_c, g_chunks = _grads(net, xs, ys, K, "chunks")
    out_w, g_whole = _grads(net, xs, ys, K, "whole")
    assert torch.equal(out_c, out_w)  # the forward pass is unchanged
    # float64: the two sum the same terms in another order
    assert _rel(g_chunks, g_whole) < 1e-11
    _, g_full = _grads(net, xs, ys, T, "chunks")
    assert _rel(g_chunks, g_full) > 1e-3  # the cut matters here: the test can fail


def test_paths_that_do_not_cut_run_in_chunks(monkeypatch):
    """A backend whose backward does not cut (Triton, the compiled operator, torch.func) runs
    the sequence in chunks inside leaky_sequence: forced here for the numba backend."""
    pytest.importorskip("numba")
    net = _net("rec", "numba")
    xs, ys = _data(1)
    _, want = _grads(net, xs, ys, K, "chunks")
    monkeypatch.setattr(kleaky, "_CUTS", ())
    calls = []
    real = kleaky._in_chunks
    monkeypatch.setattr(kleaky, "_in_chunks", lambda *a: calls.append(1) or real(*a))
    _, got = _grads(net, xs, ys, K, "whole")
    assert calls and _rel(want, got) < 1e-11


def test_functional_scan_cuts_too():
    p = sg.functional.LIFParams(decay_mem=0.9, threshold=0.5)
    xs = torch.rand(30, 2, 4, dtype=torch.float64, requires_grad=True)

    def grad(run):
        xs.grad = None
        run().sum().backward()
        return xs.grad.clone()

    def chunked():
        state, outs = None, []
        for x in xs.split(7):
            z, state = sg.functional.lif_seq(x, state, p, backend="reference")
            state = detach_state(state)
            outs.append(z)
        return torch.cat(outs)

    def whole():
        with truncate_gradients(7):
            return sg.functional.lif_seq(xs, None, p, backend="reference")[0]

    torch.testing.assert_close(grad(whole), grad(chunked), rtol=0, atol=1e-13)


def test_context_validation_and_nesting():
    for bad in (0, -1, 2.5, True, "5"):
        with pytest.raises(ValueError, match="every must be an int >= 1"):
            with truncate_gradients(bad):
                pass
    assert cut_every() == 0
    with truncate_gradients(8):
        with truncate_gradients(3):
            assert cut_every() == 3
        assert cut_every() == 8
    assert cut_every() == 0
    with pytest.raises(RuntimeError):
        with truncate_gradients(4):
            raise RuntimeError("boom")
    assert cut_every() == 0


def test_a_module_that_breaks_the_protocol_is_named():
    class Bad(sg.nn.StatefulModule):
        def forward(self, xs, state=None):
            return [xs], state

    with truncate_gradients(2), pytest.raises(TypeError, match="Bad returned list"):
        Bad()(torch.rand(5, 1, 1))
