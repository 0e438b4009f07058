"""The fused norm -> LIF -> pool tail of a spiking conv block equals batch norm, the reference
LIF loop and torch's pooling one after the other: outputs, final membrane, running statistics
and every gradient (conv output, norm weight and bias, final state), in float64."""

import copy

import pytest
import torch
import torch.nn.functional as tF

import spikegrad as sg
from spikegrad import functional as F
from spikegrad.functional.conv_block import NormParams, norm_lif_pool_seq
from spikegrad.kernels import conv_block, parallel
from spikegrad.kernels.registry import numba_available
from spikegrad.surrogate import get as surrogate

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

DT = torch.float64


def _norm(C, g, batch_stats=True, running=True, affine=True, scale=1.0):
    w = (torch.rand(C, generator=g, dtype=DT) + 0.5) if affine else None
    b = (torch.rand(C, generator=g, dtype=DT) - 0.5) * 0.4 if affine else None
    rm = torch.randn(C, generator=g, dtype=DT) * 0.1 if running else None
    rv = torch.rand(C, generator=g, dtype=DT) + 0.5 if running else None
    return NormParams(w, b, rm, rv, batch_stats, 1e-5, 0.1, scale)


def _reference(ys, norm, state, p, k, divisor, max_pool=False):
    """Batch norm (torch), the LIF reference loop, torch's pooling; running statistics are
    updated on copies, returned with the result."""
    rm = None if norm.running_mean is None else norm.running_mean.clone()
    rv = None if norm.running_var is None else norm.running_var.clone()
    w = None if norm.weight is None else norm.weight * norm.scale
    if w is None and norm.scale != 1.0:
        w = torch.full((ys.shape[2],), norm.scale, dtype=ys.dtype)
    x = tF.batch_norm(ys.flatten(0, 1), rm, rv, w, norm.bias, norm.batch_stats, norm.momentum,
                      norm.eps).unflatten(0, ys.shape[:2])
    zs, st = F.lif_seq(x, state, p, backend="reference")
    override = None if divisor == k * k else int(divisor)
    folded = zs.flatten(0, 1)
    out = tF.max_pool2d(folded, k) if max_pool else tF.avg_pool2d(folded, k,
                                                                   divisor_override=override)
    out = out.unflatten(0, ys.shape[:2])
    return out, st, rm, rv


def _leaves(norm):
    w = None if norm.weight is None else norm.weight.clone().requires_grad_()
    b = None if norm.bias is None else norm.bias.clone().requires_grad_()
    rm = None if norm.running_mean is None else norm.running_mean.clone()
    rv = None if norm.running_var is None else norm.running_var.clone()
    return norm._replace(weight=w, bias=b, running_mean=rm, running_var=rv)


def _run(fn, ys, norm, state, p, k, divisor, g_out, g_v, max_pool=False):
    ys = ys.clone().requires_grad_()
    norm = _leaves(norm)
    if fn is _reference:
        result = fn(ys, norm, state, p, k, divisor, max_pool)
    else:
        result = fn(ys, norm, state, p, k, divisor, max_pool=max_pool)
    out, st = result[0], result[1]
    loss = (out * g_out).sum() + (st.v * g_v).sum()
    params = [t for t in (ys, norm.weight, norm.bias) if t is not None]
    grads = torch.autograd.grad(loss, params)
    if fn is _reference:
        rm, rv = result[2], result[3]
    else:
        rm, rv = norm.running_mean, norm.running_var
    return out.detach(), st.v.detach(), grads, rm, rv


def _compare(ys, norm, state, p, k, divisor, g, max_pool=False):
    T, B, C, H, W = ys.shape
    g_out = torch.randn(T, B, C, H // k, W // k, generator=g, dtype=DT)
    g_v = torch.randn(B, C, H, W, generator=g, dtype=DT)
    ref = _run(_reference, ys, norm, state, p, k, divisor, g_out, g_v, max_pool)
    got = _run(norm_lif_pool_seq, ys, norm, state, p, k, divisor, g_out, g_v, max_pool)
    assert torch.equal(got[0], ref[0])  # the same spikes, pooled
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=1e-12)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * b.abs().max().item())
    for a, b in zip(got[3:], ref[3:]):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    return ref


def _inputs(g, shape=(7, 3, 4, 9, 8)):
    # currents around the threshold after the norm: some neurons fire often, others rarely
    return torch.randn(shape, generator=g, dtype=DT) * 2.0 + 0.3


@pytest.mark.parametrize("reset,detach", [("subtract", True), ("subtract", False),
                                          ("to_value", True), ("to_value", False),
                                          ("none", True)])
@pytest.mark.parametrize("surr", ["fast_sigmoid", "atan", "triangle"])
def test_neuron_options(reset, detach, surr):
    g = torch.Generator().manual_seed(1)
    p = F.LIFParams(decay_mem=0.9, threshold=0.8, v_reset=-0.1, reset=reset,
                    detach_reset=detach, surrogate=surrogate(surr))
    _compare(_inputs(g), _norm(4, g), None, p, 2, 4.0, g)


@pytest.mark.parametrize("k,hw,divisor,max_pool", [
    (2, (9, 8), 4.0, False), (2, (8, 8), 1.0, False), (3, (10, 11), 9.0, False),
    (3, (7, 9), 1.0, False), (1, (3, 4), 1.0, False), (2, (9, 8), 1.0, True),
    (3, (7, 9), 1.0, True)])
@pytest.mark.parametrize("threads", [1, 3])
def test_windows_and_threads(monkeypatch, k, hw, divisor, max_pool, threads):
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    g = torch.Generator().manual_seed(2)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare(_inputs(g, (6, 2, 3, *hw)), _norm(3, g), None, F.LIFParams(), k, divisor, g,
                 max_pool)
    finally:
        torch.set_num_threads(old)


def test_max_pooling_routes_to_the_first_neuron_that_fired():
    """torch's max_pool2d sends a window's gradient to its first maximum: with spikes, the
    first neuron that fired, or the window's first neuron when none did (many ties)."""
    g = torch.Generator().manual_seed(9)
    ys = _inputs(g, (8, 2, 2, 6, 6))
    ys[:, :, :, :2, :2] = -50.0  # a silent window: its first neuron gets the gradient
    ref = _compare(ys, _norm(2, g), None, F.LIFParams(), 2, 1.0, g, max_pool=True)
    assert ref[0][:, :, :, 0, 0].abs().sum() == 0


@pytest.mark.parametrize("case", ["eval", "no_running", "no_affine", "scaled", "scale_input",
                                  "state", "per_neuron", "if"])
def test_norm_and_state_options(case):
    g = torch.Generator().manual_seed(3)
    C, H, W = 4, 6, 6
    norm, state, p = _norm(C, g), None, F.LIFParams(decay_mem=0.95)
    if case == "eval":
        norm = norm._replace(batch_stats=False)
    elif case == "no_running":
        norm = _norm(C, g, running=False)
    elif case == "no_affine":
        norm = _norm(C, g, affine=False)
    elif case == "scaled":
        norm = norm._replace(scale=0.7)
    elif case == "scale_input":
        p = p._replace(scale_input=True)
    elif case == "state":
        state = F.LIFState(torch.rand(3, C, H, W, generator=g, dtype=DT))
    elif case == "per_neuron":
        p = p._replace(decay_mem=torch.rand(C, H, W, generator=g, dtype=DT) * 0.5 + 0.5,
                       threshold=torch.rand(C, 1, 1, generator=g, dtype=DT) + 0.5)
    elif case == "if":
        p = p._replace(decay_mem=1.0)
    _compare(_inputs(g, (5, 3, C, H, W)), norm, state, p, 2, 4.0, g)


def test_gradient_constant_in_time():
    """The gradient of a sum arrives expanded over time (stride 0): read as one step."""
    g = torch.Generator().manual_seed(4)
    ys, norm = _inputs(g, (5, 2, 3, 6, 6)), _norm(3, g)
    grads = []
    for fn in (_reference, norm_lif_pool_seq):
        y = ys.clone().requires_grad_()
        out = fn(y, _leaves(norm), None, F.LIFParams(), 2, 4.0)[0]
        grads.append(torch.autograd.grad(out.sum(), y)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def _net(pool="avg", pool2="sum"):
    torch.manual_seed(0)
    b1 = sg.nn.spiking_conv((2, 12, 12), 4, 3, padding=1, norm="threshold", pool=pool)
    b2 = sg.nn.spiking_conv(b1.out_shape, 6, 3, padding=1, norm="threshold", pool=pool2)
    return sg.nn.Sequential(*b1.layers, *b2.layers, sg.nn.Flatten(),
                            sg.nn.Linear(6 * (b2.out_shape[1] ** 2), 3), sg.nn.LI(3)).to(DT)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pools", [("avg", "sum"), ("max", "none")])
def test_sequential_fuses_conv_blocks(monkeypatch, training, pools):
    calls = []
    real = conv_block.norm_lif_pool
    monkeypatch.setattr(conv_block, "norm_lif_pool",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    net = _net(*pools)
    net.train(training)
    ref = copy.deepcopy(net)
    xs = (torch.rand(8, 3, 2, 12, 12, generator=torch.Generator().manual_seed(5)) < 0.3).to(DT)
    out, state = net(xs)
    outs, ref_state = ref.forward_all(xs)  # forward_all never fuses
    assert len(calls) == 2
    assert torch.equal(out, outs[-1])
    out.square().sum().backward()
    outs[-1].square().sum().backward()
    for (name, a), b in zip(net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, a), b in zip(net.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15, msg=name)
    assert [s is None for s in state] == [s is None for s in ref_state]
    torch.testing.assert_close(state[2].v, ref_state[2].v, rtol=0, atol=1e-12)


def test_unfusable_blocks_run_one_by_one(monkeypatch):
    calls = []
    real = conv_block.norm_lif_pool
    monkeypatch.setattr(conv_block, "norm_lif_pool",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    xs = (torch.rand(6, 2, 2, 12, 12) < 0.3).to(DT)
    net = _net()
    net.layers[3] = sg.nn.MaxPool2d(2, ceil_mode=True)  # not covered: norm -> LIF still fuse
    ref = copy.deepcopy(net)
    assert torch.equal(net(xs)[0], ref.forward_all(xs)[0][-1])
    assert len(calls) == 2
    calls.clear()
    net = _net()
    net[1].register_forward_hook(lambda *a: None)  # a hook must see its module's call
    net(xs)
    assert len(calls) == 1
    calls.clear()
    net = _net()
    net[2].threshold = sg.nn.LIF((4, 12, 12), learn_threshold=True).threshold.to(DT)
    net(xs)  # a trained threshold's gradient is a sum the kernel does not compute
    assert len(calls) == 1
    calls.clear()
    with sg.functional.truncate_gradients(3):
        _net()(xs)
    assert calls == []


def test_bad_calls_are_refused():
    g = torch.Generator().manual_seed(6)
    ys, norm = _inputs(g, (4, 2, 3, 6, 6)), _norm(3, g)
    p = F.LIFParams()
    spec = conv_block.BlockSpec(reset=1, detach=True, kind=1, beta=10.0, scale=False, k=2,
                                divisor=4.0, max_pool=False, batch_stats=True, eps=1e-5,
                                momentum=0.1,
                                norm_scale=1.0)
    running = (norm.running_mean, norm.running_var)
    v0 = torch.zeros(2, 3, 6, 6, dtype=DT)
    with pytest.raises(ValueError, match="v0 has shape"):
        conv_block.norm_lif_pool(ys, norm.weight, norm.bias, running, v0[:1], p, spec)
    with pytest.raises(ValueError, match="weight has shape"):
        conv_block.norm_lif_pool(ys, norm.weight[:2], norm.bias, running, v0, p, spec)
    with pytest.raises(ValueError, match="contiguous"):
        conv_block.norm_lif_pool(ys.transpose(3, 4), norm.weight, norm.bias, running,
                                 v0.transpose(2, 3), p, spec)
    with pytest.raises(ValueError, match="window"):
        conv_block.norm_lif_pool(ys, norm.weight, norm.bias, running, v0, p,
                                 spec._replace(k=7))
    with pytest.raises(ValueError, match="running statistics"):
        conv_block.norm_lif_pool(ys, norm.weight, norm.bias, None, v0, p,
                                 spec._replace(batch_stats=False))
    with pytest.raises(ValueError, match="gradient"):
        conv_block.norm_lif_pool(ys, norm.weight, norm.bias, running,
                                 v0.clone().requires_grad_(), p, spec)
