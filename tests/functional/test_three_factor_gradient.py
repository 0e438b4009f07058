"""The three-factor form of the conv/dense weight gradient equals autograd's BPTT gradient.

Set-up: random input spikes -> (time-folded) conv or dense layer -> LIF (reset without
gradient) -> a random dense readout into leaky integrators -> cross-entropy on the max-over-time
membrane. Autograd gives ``dL/dW`` and the postsynaptic error ``dL/dz_t``; the three-factor
function rebuilds ``dL/dW`` from ``dL/dz_t``, the membranes, the input and the geometry alone.
"""

import math

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import LIFParams, LIParams, li_seq, lif_trace
from spikegrad.functional import three_factor as tf

F64 = torch.float64
TOL = 1e-10


def _setup(layer, in_shape, T, p, seed=0, B=3, rate=0.4):
    g = torch.Generator().manual_seed(seed)
    layer = layer.double()
    fan_in = layer.weight[0].numel()
    with torch.no_grad():  # seeded, and strong enough that neurons fire at some steps only
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=F64)
                           * 1.5 / math.sqrt(fan_in))
        if layer.bias is not None:
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=g, dtype=F64) * 0.4 - 0.2)
    xs = (torch.rand((T, B, *in_shape), generator=g, dtype=F64) < rate).to(F64)
    zs, states = lif_trace(layer(xs), None, p)
    w_out = torch.randn(5, zs[0, 0].numel(), generator=g, dtype=F64)
    vs, _ = li_seq(zs.flatten(2) @ w_out.T, None, LIParams(decay_mem=0.9))
    y = torch.randint(0, 5, (B,), generator=g)
    loss = torch.nn.functional.cross_entropy(vs.max(0).values, y)
    params = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
    grads = torch.autograd.grad(loss, params + [zs])
    us = tf.pre_reset_membrane(zs.detach(), states.v.detach(), p)
    return xs, zs.detach(), us, grads


def _params(reset="subtract", decay_syn=None, scale_input=False):
    return LIFParams(decay_mem=0.8, decay_syn=decay_syn, threshold=0.5, reset=reset,
                     scale_input=scale_input, surrogate=sg.surrogate.get("fast_sigmoid", beta=4.0))


def _check(mine, ref, zs):
    # the identity must not hold vacuously: neurons fire and do not fire, the gradient is large
    assert 0.02 < float(zs.mean()) < 0.98
    assert float(ref.abs().max()) > 1e-3
    err = float((mine - ref).abs().max())
    assert err <= TOL, f"max |three-factor - autograd| = {err:.3g}"


CASES = [(k, s, p) for k in (1, 3) for s in (1, 2) for p in (0, 1)]


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("kernel, stride, padding", CASES)
def test_conv_weight_grad_equals_bptt(dim, kernel, stride, padding):
    T = {1: 4, 2: 9}[dim] + kernel + stride  # several T across the cases
    conv = (sg.nn.Conv1d if dim == 1 else sg.nn.Conv2d)(2, 4, kernel, stride=stride,
                                                        padding=padding)
    p = _params()
    in_shape = (2, 9) if dim == 1 else (2, 7, 6)
    xs, zs, us, (gw, gb, gz) = _setup(conv, in_shape, T, p, seed=kernel * 10 + stride + padding)
    _check(tf.weight_grad(conv, xs, gz, us, p), gw, zs)
    _check(tf.bias_grad(gz, us, p), gb, zs)


@pytest.mark.parametrize("dim", [1, 2])
def test_dilated_conv_weight_grad_equals_bptt(dim):
    conv = (sg.nn.Conv1d if dim == 1 else sg.nn.Conv2d)(2, 3, 3, stride=2, padding=2, dilation=2)
    p = _params()
    xs, zs, us, (gw, gb, gz) = _setup(conv, (2, 11) if dim == 1 else (2, 7, 8), 8, p, seed=5)
    _check(tf.weight_grad(conv, xs, gz, us, p), gw, zs)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("T", [3, 6, 12])
def test_conv_current_based_neuron_uses_the_double_exponential_trace(dim, T):
    conv = (sg.nn.Conv1d if dim == 1 else sg.nn.Conv2d)(2, 3, 3, stride=2, padding=1)
    p = _params(decay_syn=0.6, scale_input=True)
    in_shape = (2, 10) if dim == 1 else (2, 6, 6)
    xs, zs, us, (gw, gb, gz) = _setup(conv, in_shape, T, p, seed=T)
    _check(tf.weight_grad(conv, xs, gz, us, p), gw, zs)
    _check(tf.bias_grad(gz, us, p), gb, zs)


@pytest.mark.parametrize("reset", ["subtract", "none"])
@pytest.mark.parametrize("decay_syn", [None, 0.6, 0.8])
def test_dense_weight_grad_equals_bptt(reset, decay_syn):
    lin = sg.nn.Linear(12, 6)
    p = _params(reset=reset, decay_syn=decay_syn)
    xs, zs, us, (gw, gb, gz) = _setup(lin, (12,), 15, p, seed=3, rate=0.3)
    _check(tf.linear_weight_grad(xs, gz, us, p), gw, zs)
    _check(tf.bias_grad(gz, us, p), gb, zs)


def test_identity_holds_through_the_fused_kernels_and_nn_modules():
    """The module path (nn.LIF, backend auto: numba/torch fused Functions) gives the same
    gradient as the reference loop, hence the same three-factor identity."""
    torch.manual_seed(0)  # the layer's initial weights and the input
    prev = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # float64 decays inside the module
    try:
        conv = sg.nn.Conv2d(2, 3, 3, stride=2, padding=1)
        lif = sg.nn.LIF((3, 4, 4), tau_mem=5e-3, tau_syn=2e-3, dt=1e-3, threshold=0.5,
                        beta=4.0)
    finally:
        torch.set_default_dtype(prev)
    xs = (torch.rand(10, 3, 2, 8, 8, dtype=F64) < 0.4).to(F64)
    with torch.no_grad():
        conv.weight.mul_(3.0)
    zs, _ = lif(conv(xs))
    loss = (zs.sum(0) * torch.randn(3, 3, 4, 4, dtype=F64)).sum()
    gw, gz = torch.autograd.grad(loss, [conv.weight, zs])
    p = lif.params()
    zr, states = lif_trace(conv(xs).detach(), None, p)
    assert torch.equal(zr, zs.detach())
    us = tf.pre_reset_membrane(zr, states.v, p)
    _check(tf.weight_grad(conv, xs, gz, us, p), gw, zs.detach())


def test_index_correspondence_by_hand():
    """One step, one input spike at position 3 of a length-6 signal, Conv1d k=3, s=2, p=1:
    output i reads input 2i + r - 1, so position 3 reaches (i=1, r=2) and (i=2, r=0)."""
    xs = torch.zeros(1, 1, 1, 6, dtype=F64)
    xs[0, 0, 0, 3] = 1.0
    p = LIFParams(decay_mem=0.5, reset="none", threshold=1.0,
                  surrogate=sg.surrogate.get("fast_sigmoid", beta=1.0))
    us = torch.ones(1, 1, 1, 3, dtype=F64)          # at threshold: phi(0) = 1
    grad_zs = torch.tensor([10.0, 20.0, 30.0], dtype=F64).view(1, 1, 1, 3)
    dw = tf.conv_weight_grad(xs, grad_zs, us, p, 3, stride=2, padding=1)
    assert dw.flatten().tolist() == [30.0, 0.0, 20.0]


def test_psp_kernel_closed_form_equals_the_recursive_trace():
    T = 20
    impulse = torch.zeros(T, 1, dtype=F64)
    impulse[0] = 1.0
    for a_mem, a_syn in [(0.9, None), (0.9, 0.5), (0.7, 0.7), (1.0, 0.3)]:
        trace = tf.eligibility_trace(impulse, a_mem, a_syn)[:, 0]
        torch.testing.assert_close(trace, tf.psp_kernel(T, a_mem, a_syn), rtol=0, atol=1e-14)
    k = tf.psp_kernel(4, 0.9, 0.5)
    assert k[3].item() == pytest.approx((0.9 ** 4 - 0.5 ** 4) / 0.4, abs=1e-15)
    assert tf.psp_kernel(3, 0.5).tolist() == [1.0, 0.5, 0.25]


@pytest.mark.parametrize("kwargs, match", [
    (dict(reset="to_value"), "reset without gradient.*to_value"),
    (dict(reset="subtract", detach_reset=False), "detach_reset=False"),
    (dict(decay_mem=torch.tensor([0.8, 0.9])), "one decay for the whole layer"),
    (dict(decay_mem=1.5), r"decay in \[0, 1\]"),
])
def test_refuses_parameters_outside_the_three_factor_form(kwargs, match):
    p = LIFParams(**{**dict(decay_mem=0.8), **kwargs})
    x = torch.zeros(2, 1, 2, dtype=F64)
    with pytest.raises(ValueError, match=match):
        tf.linear_weight_grad(x, torch.zeros(2, 1, 2, dtype=F64), torch.zeros(2, 1, 2, dtype=F64),
                              p)


def test_bad_geometry_and_layer_messages():
    p = LIFParams()
    x = torch.zeros(2, 1, 1, 4)
    with pytest.raises(ValueError, match="padding must be an int or a tuple of 1 ints.*'same'"):
        tf.conv_weight_grad(x, x, x, p, 1, padding="same")
    with pytest.raises(TypeError, match="layer must be an nn.Conv1d"):
        tf.weight_grad(torch.nn.ReLU(), x, x, x, p)
    with pytest.raises(ValueError, match="grad_zs has shape"):
        tf.postsynaptic_factor(torch.zeros(2, 1, 3), torch.zeros(2, 1, 4), p)
    assert math.isfinite(float(tf.psp_kernel(2, 0.5, 0.25)[1]))
