"""The porting recipes of docs/conventions.md reproduce each peer library exactly.

Each peer's update is re-implemented here in a few lines of plain PyTorch from the equations
that library runs (snnTorch 0.9 / main, Norse >= 1.0, SpikingJelly activation_based, Spyx 1.x;
the peers are not installed). Spikes must be identical and membranes equal to float64
rounding; where the recipe also reproduces gradients, input gradients must agree too.
"""

import math

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (LIFParams, LIFState, RecurrentParams, RecurrentState,
                                  lif_trace, recurrent_step, scan_trace)

F64 = torch.float64
T, B, N = 40, 3, 5
TOL = dict(rtol=0.0, atol=1e-12)


class _Step(torch.autograd.Function):
    """Heaviside forward (``>`` or ``>=``), a given pseudo-derivative backward."""

    @staticmethod
    def forward(ctx, x, dphi, fire_at_zero):
        ctx.save_for_backward(x)
        ctx.dphi = dphi
        return ((x >= 0) if fire_at_zero else (x > 0)).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.dphi(x), None, None


def heaviside(dphi, fire_at_zero=False):
    return lambda x: _Step.apply(x, dphi, fire_at_zero)


def inputs(seed, low, high):
    g = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(T, B, N, generator=g, dtype=F64)).requires_grad_()


def input_grad(xs, *outputs):
    """Gradient of a fixed random weighting of the outputs w.r.t. the inputs."""
    g = torch.Generator().manual_seed(99)
    loss = sum((o * torch.rand(o.shape, generator=g, dtype=F64)).sum() for o in outputs)
    return torch.autograd.grad(loss, xs)[0]


def shift_one_step(zs):
    """Output a spike one step later: ``[0, z_0, ..., z_{T-2}]``."""
    return torch.cat([torch.zeros_like(zs[:1]), zs[:-1]])


def assert_fires(zs):
    assert 0 < zs.sum() < 0.9 * zs.numel()


# --- snnTorch -------------------------------------------------------------------------------

def snn_atan(alpha=2.0):
    return heaviside(lambda x: alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2))


def snntorch_leaky(xs, beta, thr=1.0, mech="subtract", reset_delay=True, spk=snn_atan()):
    mem, spks, mems = torch.zeros_like(xs[0]), [], []
    for x in xs:
        r = spk(mem - thr).detach()                  # reset from the previous membrane
        if mech == "subtract":
            mem = beta * mem + x - r * thr
        elif mech == "zero":
            mem = beta * ((1 - r) * mem) + x
        else:
            mem = beta * mem + x
        s = spk(mem - thr)
        if not reset_delay:
            if mech == "subtract":
                mem = mem - (s - r) * thr
            elif mech == "zero":
                mem = mem - (s - r) * mem
        spks.append(s)
        mems.append(mem)
    return torch.stack(spks), torch.stack(mems)


def snntorch_synaptic(xs, alpha, beta, thr=1.0, mech="subtract", reset_delay=True,
                      spk=snn_atan()):
    syn, mem = torch.zeros_like(xs[0]), torch.zeros_like(xs[0])
    spks, syns, mems = [], [], []
    for x in xs:
        r = spk(mem - thr).detach()
        syn = alpha * syn + x
        mem = beta * mem + syn
        if mech == "subtract":
            mem = mem - r * thr
        elif mech == "zero":
            mem = mem - r * mem
        s = spk(mem - thr)
        if not reset_delay:
            if mech == "subtract":
                mem = mem - (s - r) * thr
            elif mech == "zero":
                mem = mem - (s - r) * mem
        spks.append(s)
        syns.append(syn)
        mems.append(mem)
    return torch.stack(spks), torch.stack(syns), torch.stack(mems)


def subtract_after_leak(xs, beta, thr, surrogate):
    """snnTorch's default delayed subtract: reset="none" plus a -thr self-connection."""
    p = RecurrentParams(-thr * torch.eye(N, dtype=F64), sg.nn.LIF.step,
                        LIFParams(decay_mem=beta, threshold=thr, reset="none",
                                  surrogate=surrogate))
    s0 = RecurrentState(LIFState(torch.zeros_like(xs[0])), torch.zeros_like(xs[0]))
    zs, tr = scan_trace(recurrent_step, xs, s0, p)
    return zs, tr.inner.v


def test_snntorch_leaky_default_subtract_with_reset_delay():
    xs = inputs(0, -0.5, 1.5)          # drives the membrane past 2*threshold at times
    spk_ref, mem_ref = snntorch_leaky(xs, beta=0.9, thr=1.0)
    zs, v = subtract_after_leak(xs, 0.9, 1.0, sg.surrogate.get("atan", beta=2.0))
    assert_fires(spk_ref)
    assert torch.equal(zs, spk_ref)
    assert torch.allclose(v, mem_ref, **TOL)


@pytest.mark.parametrize("beta", [0.9, 1.0])
def test_snntorch_leaky_subtract_without_reset_delay(beta):
    xs = inputs(1, -0.5, 0.95)          # keeps u < 2*threshold (see the doc's caveat)
    spk_ref, mem_ref = snntorch_leaky(xs, beta=beta, reset_delay=False)
    p = LIFParams(decay_mem=beta, threshold=1.0, reset="subtract", detach_reset=False,
                  surrogate=sg.surrogate.get("atan", beta=2.0))
    zs, tr = lif_trace(xs, None, p)
    assert_fires(spk_ref)
    assert torch.equal(zs, spk_ref) and torch.equal(tr.v, mem_ref)
    assert torch.allclose(input_grad(xs, zs, tr.v), input_grad(xs, spk_ref, mem_ref),
                          rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset_delay", [True, False])
def test_snntorch_leaky_zero_reset(reset_delay):
    xs = inputs(2, -0.5, 1.5)
    spk_ref, mem_ref = snntorch_leaky(xs, beta=0.8, mech="zero", reset_delay=reset_delay)
    p = LIFParams(decay_mem=0.8, threshold=1.0, reset="to_value", v_reset=0.0,
                  detach_reset=reset_delay, surrogate=sg.surrogate.get("atan", beta=2.0))
    zs, tr = lif_trace(xs, None, p)
    if reset_delay:   # snnTorch returns the membrane before the (deferred) reset
        mem = 0.8 * shift_one_step(tr.v) + xs
    else:
        mem = tr.v
    assert_fires(spk_ref)
    assert torch.equal(zs, spk_ref) and torch.equal(mem, mem_ref)
    assert torch.allclose(input_grad(xs, zs, mem), input_grad(xs, spk_ref, mem_ref),
                          rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mech", ["subtract", "zero"])
def test_snntorch_synaptic_without_reset_delay(mech):
    xs = inputs(3, -0.3, 0.5)           # syn <= 1, u <= 0.9 + 1 < 2*threshold
    spk_ref, syn_ref, mem_ref = snntorch_synaptic(xs, alpha=0.5, beta=0.9, mech=mech,
                                                  reset_delay=False)
    p = LIFParams(decay_mem=0.9, decay_syn=0.5, threshold=1.0,
                  reset="subtract" if mech == "subtract" else "to_value",
                  detach_reset=False, surrogate=sg.surrogate.get("atan", beta=2.0))
    zs, tr = lif_trace(xs, None, p)
    assert_fires(spk_ref)
    assert torch.equal(zs, spk_ref)
    assert torch.equal(tr.i, syn_ref) and torch.equal(tr.v, mem_ref)
    assert torch.allclose(input_grad(xs, zs, tr.v), input_grad(xs, spk_ref, mem_ref),
                          rtol=1e-10, atol=1e-12)


# --- Norse ----------------------------------------------------------------------------------

def norse_lif(xs, tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0, v_reset=0.0,
              alpha=100.0, dt=1e-3):
    """``lif_feed_forward_step`` (Norse >= 1.0): jump, Euler step, decay, fire, reset."""
    spk = heaviside(lambda x: 1.0 / (alpha * x.abs() + 1.0) ** 2)
    v = torch.full_like(xs[0], v_leak)
    i = torch.zeros_like(xs[0])
    zs, vs, is_ = [], [], []
    for x in xs:
        i_new = i + x
        v_dec = v + dt * tau_mem_inv * ((v_leak - v) + i_new)
        i = i_new + (-dt * tau_syn_inv * i_new)
        z = spk(v_dec - v_th)
        v = (1 - z) * v_dec + z * v_reset
        zs.append(z)
        vs.append(v)
        is_.append(i)
    return torch.stack(zs), torch.stack(vs), torch.stack(is_)


@pytest.mark.parametrize("kw", [
    {},
    dict(tau_syn_inv=100.0, tau_mem_inv=50.0, v_leak=0.25, v_th=1.25, v_reset=-0.25,
         alpha=20.0),
])
def test_norse_lif_feed_forward(kw):
    xs = inputs(4, -0.2, 0.9)
    z_ref, v_ref, i_ref = norse_lif(xs, **kw)
    q = dict(tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0, v_reset=0.0,
             alpha=100.0, dt=1e-3)
    q.update(kw)
    a_mem = 1 - q["dt"] * q["tau_mem_inv"]
    a_syn = 1 - q["dt"] * q["tau_syn_inv"]
    vl = q["v_leak"]
    p = LIFParams(decay_mem=a_mem, decay_syn=a_syn, scale_input=True,
                  threshold=q["v_th"] - vl, v_reset=q["v_reset"] - vl, reset="to_value",
                  detach_reset=False, surrogate=sg.surrogate.get("fast_sigmoid",
                                                                 beta=q["alpha"]))
    zs, tr = lif_trace(xs, None, p)
    assert_fires(z_ref)
    assert torch.equal(zs, z_ref)
    assert torch.allclose(tr.v + vl, v_ref, **TOL)          # voltages relative to v_leak
    assert torch.allclose(a_syn * tr.i, i_ref, **TOL)       # Norse stores the decayed i
    assert torch.allclose(input_grad(xs, zs, tr.v), input_grad(xs, z_ref, v_ref),
                          rtol=1e-9, atol=1e-12)


# --- SpikingJelly ---------------------------------------------------------------------------

def spikingjelly_lif(xs, tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                     detach_reset=False, alpha=4.0):
    """``LIFNode``: charge, fire (``>=``), hard or soft reset; Sigmoid surrogate."""
    def dphi(x):
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1 - s)
    spk = heaviside(dphi, fire_at_zero=True)
    vr = 0.0 if v_reset is None else v_reset
    v = torch.full_like(xs[0], vr)
    ss, vs = [], []
    for x in xs:
        h = v + (x - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x
        s = spk(h - v_threshold)
        sd = s.detach() if detach_reset else s
        v = h - sd * v_threshold if v_reset is None else sd * v_reset + (1 - sd) * h
        ss.append(s)
        vs.append(v)
    return torch.stack(ss), torch.stack(vs)


@pytest.mark.parametrize("kw", [
    {},                                                   # LIFNode() defaults
    dict(v_reset=None),                                   # soft reset
    dict(tau=4.0, decay_input=False, v_reset=-0.5, v_threshold=0.75, detach_reset=True),
])
def test_spikingjelly_lifnode(kw):
    q = dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0, detach_reset=False)
    q.update(kw)
    xs = inputs(5, -0.5, 2.5) if q["decay_input"] else inputs(5, -0.3, 0.9)
    s_ref, v_ref = spikingjelly_lif(xs, **kw)
    vr = 0.0 if q["v_reset"] is None else q["v_reset"]
    p = LIFParams(decay_mem=1 - 1 / q["tau"], scale_input=q["decay_input"],
                  threshold=q["v_threshold"] - vr,
                  reset="subtract" if q["v_reset"] is None else "to_value", v_reset=0.0,
                  detach_reset=q["detach_reset"], surrogate=sg.surrogate.get("sigmoid",
                                                                             beta=4.0))
    zs, tr = lif_trace(xs, None, p)
    assert_fires(s_ref)
    assert torch.equal(zs, s_ref)
    assert torch.allclose(tr.v + vr, v_ref, **TOL)          # voltages relative to v_reset
    assert torch.allclose(input_grad(xs, zs, tr.v), input_grad(xs, s_ref, v_ref),
                          rtol=1e-9, atol=1e-12)


# --- Spyx -----------------------------------------------------------------------------------

def spyx_superspike(k=25.0):
    return heaviside(lambda x: 1.0 / (1.0 + k * x.abs()) ** 2)


def spyx_lif(xs, beta, thr=1.0, k=25.0):
    """``spyx.nn.LIF``: spike from the previous V, then V = beta V + x - spike*thr."""
    spk = spyx_superspike(k)
    V, ss, vs = torch.zeros_like(xs[0]), [], []
    for x in xs:
        s = spk(V - thr)
        V = beta * V + x - s * thr
        ss.append(s)
        vs.append(V)
    return torch.stack(ss), torch.stack(vs)


def spyx_cubalif(xs, alpha, beta, thr=1.0, k=25.0):
    """``spyx.nn.CuBaLIF`` (1.x): spike from the previous V, reset, then I and V."""
    spk = spyx_superspike(k)
    V, I = torch.zeros_like(xs[0]), torch.zeros_like(xs[0])
    ss, vs, is_ = [], [], []
    for x in xs:
        s = spk(V - thr)
        V = V - s * thr
        I = alpha * I + x
        V = beta * V + I
        ss.append(s)
        vs.append(V)
        is_.append(I)
    return torch.stack(ss), torch.stack(vs), torch.stack(is_)


def spyx_if(xs, thr=1.0, k=25.0):
    spk = spyx_superspike(k)
    V, ss, vs = torch.zeros_like(xs[0]), [], []
    for x in xs:
        s = spk(V - thr)
        V = V + x - s * thr
        ss.append(s)
        vs.append(V)
    return torch.stack(ss), torch.stack(vs)


def test_spyx_lif():
    xs = inputs(6, -0.5, 1.5)
    s_ref, v_ref = spyx_lif(xs, beta=0.85)
    zs, v = subtract_after_leak(xs, 0.85, 1.0, sg.surrogate.get("fast_sigmoid", beta=25.0))
    out = shift_one_step(zs)                     # Spyx emits the spike one step later
    assert_fires(s_ref)
    assert torch.equal(out, s_ref)
    assert torch.allclose(v, v_ref, **TOL)
    assert torch.allclose(input_grad(xs, out, v), input_grad(xs, s_ref, v_ref),
                          rtol=1e-9, atol=1e-12)


def test_spyx_cubalif():
    xs = inputs(7, -0.5, 1.0)
    s_ref, v_ref, i_ref = spyx_cubalif(xs, alpha=0.6, beta=0.8)
    p = LIFParams(decay_mem=0.8, decay_syn=0.6, threshold=1.0, reset="subtract",
                  detach_reset=False, surrogate=sg.surrogate.get("fast_sigmoid", beta=25.0))
    zs, tr = lif_trace(xs, None, p)
    out = shift_one_step(zs)
    u = tr.v + zs * 1.0                          # Spyx stores V before its (deferred) reset
    assert_fires(s_ref)
    assert torch.equal(out, s_ref)
    assert torch.allclose(u, v_ref, **TOL) and torch.equal(tr.i, i_ref)
    assert torch.allclose(input_grad(xs, out, u), input_grad(xs, s_ref, v_ref),
                          rtol=1e-9, atol=1e-12)


def test_spyx_if():
    xs = inputs(8, -0.5, 1.0)
    s_ref, v_ref = spyx_if(xs)
    p = LIFParams(decay_mem=1.0, threshold=1.0, reset="subtract", detach_reset=False,
                  surrogate=sg.surrogate.get("fast_sigmoid", beta=25.0))
    zs, tr = lif_trace(xs, None, p)
    out = shift_one_step(zs)
    u = tr.v + zs * 1.0
    assert_fires(s_ref)
    assert torch.equal(out, s_ref)
    assert torch.allclose(u, v_ref, **TOL)
    assert torch.allclose(input_grad(xs, out, u), input_grad(xs, s_ref, v_ref),
                          rtol=1e-9, atol=1e-12)


# --- surrogate slope conventions --------------------------------------------------------------

def test_surrogate_slope_conventions_match_the_peers():
    x = torch.linspace(-2, 2, 81, dtype=F64)
    get = sg.surrogate.get
    # snnTorch atan(alpha) / SpikingJelly ATan(alpha): (alpha/2) / (1 + (pi/2 alpha x)^2)
    assert torch.allclose(get("atan", beta=2.0).grad(x),
                          1.0 / (1 + (math.pi * x) ** 2), **TOL)
    # snnTorch fast_sigmoid(slope) / Spyx superspike(k): 1/(1+k|x|)^2 (Norse 1.1: k = 1)
    assert torch.allclose(get("fast_sigmoid", beta=25.0).grad(x),
                          1.0 / (1 + 25 * x.abs()) ** 2, **TOL)
    # SpikingJelly Sigmoid(alpha) / snnTorch sigmoid(slope): alpha s (1 - s)
    s = torch.sigmoid(4.0 * x)
    assert torch.allclose(get("sigmoid", beta=4.0).grad(x), 4.0 * s * (1 - s), **TOL)
    # Spyx boxcar(width=2, height=0.5) == straight_through(beta = 1/width) at the default
    # (x grid avoids the window edges)
    xb = x[(x.abs() - 1.0).abs() > 1e-9]
    assert torch.equal(get("straight_through", beta=0.5).grad(xb),
                       0.5 * (xb.abs() < 1.0).to(F64))
    # Spyx arctan(k) has the shape of atan(beta = 2k) but 1/(k pi) of its height
    k = 2.0
    spyx_arctan = 1.0 / ((1 + (k * math.pi * x) ** 2) * math.pi)
    assert torch.allclose(get("atan", beta=2 * k).grad(x) / (k * math.pi), spyx_arctan,
                          **TOL)


def test_spikingjelly_threshold_tie_via_next_float_below():
    # SpikingJelly fires at h == v_threshold (x >= 0); spikegrad does not (H(0) = 0).
    # With a hard reset, a threshold one float below theta reproduces ">=" exactly.
    xs = torch.tensor([1.0, 0.5, 1.0 - 2.0 ** -53], dtype=F64).reshape(-1, 1, 1)
    s_ref, v_ref = spikingjelly_lif(xs, tau=1.0)         # tau = 1: h = x (no memory)
    assert s_ref.flatten().tolist() == [1.0, 0.0, 0.0]   # fires at the tie only
    below = torch.nextafter(torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64))
    p = LIFParams(decay_mem=0.0, scale_input=True, reset="to_value")
    zs, tr = lif_trace(xs, None, p._replace(threshold=below))
    assert torch.equal(zs, s_ref) and torch.equal(tr.v, v_ref)
    zs_plain, _ = lif_trace(xs, None, p._replace(threshold=1.0))
    assert zs_plain.sum() == 0
