"""Streaming e-prop: the compiled step against EProp.step (the reference), per step and over
flushes with an optimizer, in float64 (to 1e-10) and float32 (float precision); the checks at
the door of the compiled code; exact resume from a state_dict."""

import copy
import math

import numpy as np
import pytest
import torch

import spikegrad as sg
from spikegrad.kernels import numba_eprop
from spikegrad.learning import EProp, StreamingEProp, numba_unsupported

pytest.importorskip("numba")


def _net(dtype, n_in=6, n=9, k=2, *, tau_syn=None, bias=True, autapses=False, scale=False,
         seed=0):
    torch.manual_seed(seed)
    lif = sg.nn.LIF(n, tau_mem=20e-3, tau_syn=tau_syn, dt=4e-3, scale_input=scale)
    net = sg.nn.Sequential(sg.nn.Linear(n_in, n, bias=bias),
                           sg.nn.Recurrent(lif, autapses=autapses),
                           sg.nn.Linear(n, k, bias=bias),
                           sg.nn.LI(k, tau_mem=50e-3, dt=4e-3, scale_input=scale))
    with torch.no_grad():
        net[0].weight.mul_(8.0 if scale else 2.5)
    return net.to(dtype)


def _data(dtype, T=120, n_in=6, k=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = torch.poisson(torch.full((T, n_in), 0.6), generator=g).to(dtype)
    ts = torch.stack([torch.sin(torch.linspace(0, 7, T)), torch.cos(torch.linspace(0, 5, T))],
                     1)[:, :k].to(dtype)
    return xs, ts


CASES = [dict(), dict(tau_syn=50e-3), dict(bias=False, autapses=True), dict(scale=True)]


@pytest.mark.parametrize("kw", CASES, ids=["plain", "tau_syn", "nobias_autapses", "scaled"])
@pytest.mark.parametrize("feedback, reg", [("symmetric", 0.0), ("random", 0.3),
                                           ("adaptive", 0.1)])
def test_numba_stream_equals_the_reference_in_float64(kw, feedback, reg):
    dtype = torch.float64
    net = _net(dtype, **kw)
    twin = copy.deepcopy(net)
    xs, ts = _data(dtype)
    opts = dict(feedback=feedback, reg=reg, rate_target=0.04, loss_scale=0.5,
                feedback_lr=1e-2, feedback_decay=0.1)
    fast = StreamingEProp(EProp.from_sequential(
        net, generator=torch.Generator().manual_seed(3), **opts), backend="numba")
    ref = StreamingEProp(EProp.from_sequential(
        twin, generator=torch.Generator().manual_seed(3), **opts), backend="reference")
    assert fast.backend == "numba" and ref.backend == "reference"
    opt_f = torch.optim.SGD(net.parameters(), lr=0.05)
    opt_r = torch.optim.SGD(twin.parameters(), lr=0.05)
    spikes = 0.0
    for t in range(xs.shape[0]):
        y_f, y_r = fast.step(xs[t], ts[t]), ref.step(xs[t], ts[t])
        torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-12)
        spikes += float(fast.state.z.sum())
        if (t + 1) % 25 == 0:
            assert fast.loss_sum == pytest.approx(ref.loss_sum, rel=1e-10)
            g_f, g_r = fast.flush(), ref.flush()
            for name in g_r:
                torch.testing.assert_close(g_f[name], g_r[name], rtol=1e-9, atol=1e-12)
            opt_f.step()
            opt_r.step()
    assert spikes > 20            # the hidden layer fired: a real test of the traces
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    s_f, s_r = fast.state, ref.state
    torch.testing.assert_close(s_f.ebar, s_r.ebar, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(s_f.count, s_r.count)


def test_numba_stream_equals_the_reference_in_float32_and_run_equals_steps():
    net = _net(torch.float32, tau_syn=50e-3)
    twin, twin2 = copy.deepcopy(net), copy.deepcopy(net)
    xs, ts = _data(torch.float32, T=200)
    fast = StreamingEProp(EProp.from_sequential(net, reg=0.2, rate_target=0.04),
                          backend="numba")
    ref = StreamingEProp(EProp.from_sequential(twin, reg=0.2, rate_target=0.04),
                         backend="reference")
    chunked = StreamingEProp(EProp.from_sequential(twin2, reg=0.2, rate_target=0.04),
                             backend="numba")
    ys_f = torch.stack([fast.step(xs[t], ts[t]) for t in range(200)])
    ys_r = torch.stack([ref.step(xs[t], ts[t]) for t in range(200)])
    ys_c = torch.cat([chunked.run(xs[:77], ts[:77]), chunked.run(xs[77:], ts[77:])])
    torch.testing.assert_close(ys_f, ys_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ys_c, ys_f, rtol=0, atol=0)        # same kernel body
    g_f, g_r = fast.flush(), ref.flush()
    for name in g_r:
        scale = float(g_r[name].abs().max())
        torch.testing.assert_close(g_f[name], g_r[name], rtol=1e-4, atol=1e-5 * scale)
    assert chunked.steps == 200 and fast.steps == 200


def test_auto_picks_numba_and_explicit_numba_refuses_what_it_cannot_run():
    net = _net(torch.float32)
    assert StreamingEProp(EProp.from_sequential(net)).backend == "numba"
    alif = sg.nn.Sequential(sg.nn.Linear(3, 4), sg.nn.ALIF(4), sg.nn.Linear(4, 1), sg.nn.LI(1))
    ep = EProp.from_sequential(alif)
    assert "ALIF" in numba_unsupported(ep)
    assert StreamingEProp(ep).backend == "reference"
    with pytest.raises(ValueError, match="backend='numba' cannot run.*ALIF"):
        StreamingEProp(ep, backend="numba")
    with pytest.raises(ValueError, match="backend"):
        StreamingEProp(EProp.from_sequential(net), backend="cuda")


def test_inputs_of_the_wrong_shape_are_refused_before_compiled_code():
    stream = StreamingEProp(EProp.from_sequential(_net(torch.float32)), backend="numba")
    with pytest.raises(ValueError, match=r"x must have shape \[6\]"):
        stream.step(torch.zeros(5), torch.zeros(2))
    with pytest.raises(ValueError, match=r"target must have shape \[2\]"):
        stream.step(torch.zeros(6), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        stream.step(np.zeros(6), torch.zeros(2))
    assert stream.steps == 0


def test_the_kernel_guard_checks_shapes_dtypes_and_layout():
    stream = StreamingEProp(EProp.from_sequential(_net(torch.float32)), backend="numba")
    spec, arrays = stream._spec, stream._arrays
    n_in = stream.eprop.n_in
    numba_eprop.check_step_arrays(spec, arrays, n_in, "t")          # the real ones pass
    bad = [arrays._replace(ebar=arrays.ebar[:, :-1]),                # short
           arrays._replace(v=arrays.v.astype(np.float64)),           # dtype
           arrays._replace(acc_w=np.zeros(arrays.acc_w.shape[::-1], np.float32).T),  # layout
           arrays._replace(w_in=arrays.w_in[:, :3])]
    for a in bad:
        with pytest.raises((ValueError, TypeError)):
            numba_eprop.check_step_arrays(spec, a, n_in, "t")


def test_state_dict_resumes_the_stream_exactly():
    net = _net(torch.float64)
    twin = copy.deepcopy(net)
    xs, ts = _data(torch.float64, T=90)
    a = StreamingEProp(EProp.from_sequential(net, reg=0.1), backend="numba")
    for t in range(50):
        a.step(xs[t], ts[t])
    saved = copy.deepcopy(a.state_dict())
    ys_a = torch.stack([a.step(xs[t], ts[t]) for t in range(50, 90)])
    b = StreamingEProp(EProp.from_sequential(twin, reg=0.1), backend="numba")
    b.load_state_dict(saved)
    ys_b = torch.stack([b.step(xs[t], ts[t]) for t in range(50, 90)])
    assert torch.equal(ys_a, ys_b) and b.steps == 90
    assert math.isclose(a.loss_sum, b.loss_sum)


def test_rate_window_stream_is_eprop_runs_bookkeeping_and_update_restarts_the_counts():
    net = _net(torch.float64)
    twin = copy.deepcopy(net)
    xs, ts = _data(torch.float64, T=100)
    opts = dict(reg=0.5, rate_target=0.04)
    ep = EProp.from_sequential(twin, **opts)
    ys_ref, _ = ep.run(xs[:, None], ts[:, None], optimizer=torch.optim.SGD(twin.parameters(),
                                                                             lr=0.05),
                       update_every=20)
    stream = StreamingEProp(EProp.from_sequential(net, **opts), backend="numba",
                            rate_window="stream")
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    ys = []
    for t in range(100):
        ys.append(stream.step(xs[t], ts[t]))
        if (t + 1) % 20 == 0:
            stream.flush()
            opt.step()
    torch.testing.assert_close(torch.stack(ys), ys_ref[:, 0], rtol=1e-9, atol=1e-12)
    assert float(stream.state.count.sum()) > 0 and stream.state.steps == 100
    windowed = StreamingEProp(EProp.from_sequential(copy.deepcopy(net), **opts))
    windowed.run(xs[:30], ts[:30])
    windowed.flush()
    assert float(windowed.state.count.sum()) == 0 and windowed.state.steps == 0
    assert windowed.steps == 30


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kw", [dict(), dict(tau_syn=50e-3, bias=False)], ids=["plain", "syn"])
def test_a_batch_of_streams_equals_the_reference_batch(kw, dtype):
    """batch=B: B streams through the compiled step against EProp.step on [B, ...] (the
    reference sums the batch before accumulating, so sums differ in order, to rounding)."""
    net = _net(dtype, **kw)
    twin, twin2 = copy.deepcopy(net), copy.deepcopy(net)
    g = torch.Generator().manual_seed(4)
    xs = torch.poisson(torch.full((100, 3, 6), 0.6), generator=g).to(dtype)
    ts = torch.randn(100, 3, 2, generator=g).to(dtype)
    opts = dict(feedback="random", reg=0.2, rate_target=0.04, loss_scale=0.5)
    make = lambda n: EProp.from_sequential(  # noqa: E731
        n, generator=torch.Generator().manual_seed(3), **opts)
    fast = StreamingEProp(make(net), backend="numba", batch=3)
    ref = StreamingEProp(make(twin), backend="reference", batch=3)
    chunked = StreamingEProp(make(twin2), backend="numba", batch=3)
    opt_f = torch.optim.SGD(net.parameters(), lr=0.05)
    opt_r = torch.optim.SGD(twin.parameters(), lr=0.05)
    opt_c = torch.optim.SGD(twin2.parameters(), lr=0.05)
    eps = torch.finfo(dtype).eps
    spikes = 0.0
    for lo in range(0, 100, 25):
        ys_f = torch.stack([fast.step(xs[t], ts[t]) for t in range(lo, lo + 25)])
        ys_r = torch.stack([ref.step(xs[t], ts[t]) for t in range(lo, lo + 25)])
        ys_c = chunked.run(xs[lo:lo + 25], ts[lo:lo + 25])
        assert ys_f.shape == (25, 3, 2)
        torch.testing.assert_close(ys_f, ys_r, rtol=1e3 * eps, atol=1e3 * eps)
        torch.testing.assert_close(ys_c, ys_f, rtol=0, atol=0)        # same kernel body
        spikes += float(fast.state.count.sum())
        assert fast.loss_sum == pytest.approx(ref.loss_sum, rel=1e3 * eps)
        g_f, g_r, g_c = fast.flush(), ref.flush(), chunked.flush()
        for name in g_r:
            scale = float(g_r[name].abs().max())
            assert scale > 0, name
            # 3 streams x 25 steps summed in another order than the reference's
            torch.testing.assert_close(g_f[name], g_r[name], rtol=0, atol=1e4 * eps * scale,
                                       msg=name)
            torch.testing.assert_close(g_c[name], g_f[name], rtol=0, atol=0)
        for opt in (opt_f, opt_r, opt_c):
            opt.step()
    assert spikes > 20            # the hidden layers fired: a real test of the traces
    with pytest.raises(ValueError, match=r"x must have shape \[3, 6\]"):
        fast.step(xs[0, 0], ts[0, 0])
    with pytest.raises(ValueError, match=r"xs and targets must be \[T, B, N_in\]"):
        fast.run(xs[:, 0], ts[:, 0])


def test_a_batch_of_streams_with_the_stream_rate_window_is_eprop_run():
    """EProp.run on [T, B, ...] with online updates == StreamingEProp(batch=B,
    rate_window="stream") stepped and flushed at the same steps, through the compiled step."""
    net = _net(torch.float64)
    twin = copy.deepcopy(net)
    g = torch.Generator().manual_seed(5)
    xs = torch.poisson(torch.full((60, 4, 6), 0.6), generator=g).double()
    ts = torch.randn(60, 4, 2, generator=g).double()
    opts = dict(reg=0.5, rate_target=0.04)
    ys_ref, _ = EProp.from_sequential(twin, **opts).run(
        xs, ts, optimizer=torch.optim.SGD(twin.parameters(), lr=0.05), update_every=20)
    stream = StreamingEProp(EProp.from_sequential(net, **opts), backend="numba",
                            rate_window="stream", batch=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    ys = []
    for lo in range(0, 60, 20):
        ys.append(stream.run(xs[lo:lo + 20], ts[lo:lo + 20]))
        stream.flush()
        opt.step()
    torch.testing.assert_close(torch.cat(ys), ys_ref, rtol=1e-9, atol=1e-12)
    assert float(stream.state.count.sum()) > 0 and stream.state.steps == 60
    for a, b in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
