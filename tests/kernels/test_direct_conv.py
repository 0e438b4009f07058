"""The compiled weight gradient of convolutions with few input channels against torch's in
float64, within the rounding bounds of float sums; where it applies and where torch's op runs
instead."""

import pytest
import torch
import torch.nn.functional as F

import spikegrad as sg
from spikegrad.kernels import direct_conv
from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

EPS = {torch.float32: torch.finfo(torch.float32).eps, torch.float64: torch.finfo(torch.float64).eps}


def _conv64(x, w, b, pad):
    return F.conv2d(x.double(), w.double(), None if b is None else b.double(), padding=pad)


def _case(g, n, c, hw, co, k, dtype, spikes=True):
    x = torch.rand(n, c, *hw, generator=g)
    x = (x < 0.3).to(dtype) if spikes else x.to(dtype) - 0.5
    w = (torch.randn(co, c, *k, generator=g) * 0.5).to(dtype)
    return x, w


def _sum_bound(terms: int, abs_sum: torch.Tensor, dtype) -> torch.Tensor:
    """|computed - exact| of a float sum of ``terms`` products in any order, with their
    absolute values summing to ``abs_sum`` (each product rounded once more)."""
    return (terms + 1) * EPS[dtype] * abs_sum + 1e-300


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,c,hw,co,k,pad", [
    (40, 2, (32, 32), 16, (3, 3), (1, 1)),    # the CNN workload's first conv, 3 chunks of 16
    (5, 1, (7, 9), 3, (3, 3), (0, 0)),        # valid, not square
    (17, 1, (12, 10), 4, (5, 5), (2, 2)),     # one more sample than a chunk
    (3, 2, (6, 5), 5, (3, 1), (1, 0)),        # kernel taller than wide, padding per dimension
    (4, 2, (5, 5), 2, (1, 3), (0, 2)),        # padding wider than the kernel's half
    (2, 1, (1, 30), 6, (1, 7), (0, 3)),       # a Conv1d seen as rows of height one
    (1, 3, (4, 4), 2, (2, 2), (0, 0)),        # even kernel, 12 taps
])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_and_gradients_within_rounding_of_float64(dtype, n, c, hw, co, k, pad, bias):
    g = torch.Generator().manual_seed(n * 31 + c)
    x, w = _case(g, n, c, hw, co, k, dtype, spikes=(c != 3))
    b = (torch.randn(co, generator=g)).to(dtype) if bias else None
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    br = b.clone().requires_grad_() if bias else None
    y = direct_conv.direct_conv2d(xr, wr, br, 1, pad)
    assert y is not None and y.grad_fn is not None and y.dtype == dtype
    y64 = _conv64(x, w, b, pad)
    taps = c * k[0] * k[1] + bias
    absy = _conv64(x.abs(), w.abs(), None if b is None else b.abs(), pad)
    assert (y.double() - y64).abs().le(_sum_bound(taps, absy, dtype)).all()

    gy = torch.randn(y.shape, generator=g).to(dtype)
    grads = torch.autograd.grad(y, [t for t in (xr, wr, br) if t is not None], gy)
    x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
    ref = torch.autograd.grad(F.conv2d(x64, w64, None, padding=pad), (x64, w64), gy.double())
    xa, wa = x.double().abs().requires_grad_(), w.double().abs().requires_grad_()
    abs_ref = torch.autograd.grad(F.conv2d(xa, wa, None, padding=pad), (xa, wa),
                                  gy.double().abs())
    gx, gw = grads[0], grads[1]
    # the input gradient is torch's own (float rounding of its conv), the weight gradient sums
    # N * Ho * Wo products per weight
    assert (gx.double() - ref[0]).abs().le(_sum_bound(co * k[0] * k[1], abs_ref[0].abs(),
                                                      dtype)).all()
    terms = n * y.shape[2] * y.shape[3]
    assert (gw.double() - ref[1]).abs().le(_sum_bound(terms, abs_ref[1].abs(), dtype)).all()
    if bias:
        assert torch.allclose(grads[2].double(), gy.double().sum((0, 2, 3)),
                              rtol=0, atol=float(_sum_bound(terms, gy.abs().sum(), dtype)))


def test_padding_beyond_a_row_reaches_the_right_rows():
    """A zero-padded border wider than the row: taps at each padded offset, exact in float64."""
    g = torch.Generator().manual_seed(3)
    x, w = _case(g, 3, 2, (4, 3), 2, (3, 3), torch.float64, spikes=False)
    gy = torch.randn(3, 2, 6, 5, generator=g, dtype=torch.float64)
    ref = torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [2, 2], [1, 1], False,
                                              [0, 0], 1, [False, True, False])[1]
    gw = direct_conv.conv2d_weight_grad(gy, x, w.shape, (2, 2))
    assert torch.allclose(gw, ref, rtol=1e-13, atol=1e-13)


def test_weight_gradient_does_not_depend_on_the_thread_count(threads):
    g = torch.Generator().manual_seed(1)
    x, w = _case(g, 70, 2, (16, 16), 8, (3, 3), torch.float32)
    gy = torch.randn(70, 8, 16, 16, generator=g)
    results = []
    for k in (1, 2, 3):
        threads(k)
        results.append(direct_conv.conv2d_weight_grad(gy, x, w.shape, (1, 1)))
    for gw in results[1:]:
        assert torch.equal(gw, results[0])


def test_double_backward_is_torchs():
    """Under create_graph the backward runs torch's differentiable convolution_backward."""
    g = torch.Generator().manual_seed(2)
    x, w = _case(g, 4, 2, (6, 6), 3, (3, 3), torch.float64, spikes=False)
    outs = []
    for conv in (lambda a, b: direct_conv.direct_conv2d(a, b, None, 1, 1),
                 lambda a, b: F.conv2d(a, b, None, padding=1)):
        xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
        (gw,) = torch.autograd.grad(conv(xr, wr).pow(2).sum(), wr, create_graph=True)
        outs.append(torch.autograd.grad(gw.pow(2).sum(), (xr, wr)))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_no_samples():
    x = torch.zeros(0, 2, 5, 5)
    gw = direct_conv.conv2d_weight_grad(torch.zeros(0, 3, 5, 5), x, (3, 2, 3, 3), (1, 1))
    assert torch.equal(gw, torch.zeros(3, 2, 3, 3))


def _wg(x, shape, pad=(1, 1), gy=None):
    if gy is None:
        gy = torch.zeros(x.shape[0], shape[0], x.shape[2] + 2 * pad[0] - shape[2] + 1,
                         x.shape[3] + 2 * pad[1] - shape[3] + 1, dtype=x.dtype)
    return lambda: direct_conv.conv2d_weight_grad(gy, x, shape, pad)


@pytest.mark.parametrize("call,match", [
    (_wg(torch.rand(2, 2, 5, 9)[:, :, :, ::2], (3, 2, 3, 3)), "contiguous"),
    (_wg(torch.rand(2, 2, 5, 5), (3, 1, 3, 3), gy=torch.zeros(2, 3, 5, 5)), "input channels"),
    (_wg(torch.rand(2, 2, 5, 5), (3, 2, 3, 3), gy=torch.zeros(2, 3, 5, 5).double()), "gy"),
    (_wg(torch.rand(2, 2, 2, 2), (3, 2, 5, 5), gy=torch.zeros(1)), "does not fit"),
    (_wg(torch.rand(2, 2, 5, 5), (3, 2, 3, 3), (-1, 1), gy=torch.zeros(1)), "padding"),
    (_wg(torch.rand(2, 2, 5, 5), (3, 2, 3), gy=torch.zeros(1)), "4 sizes"),
    (lambda: direct_conv.conv2d_weight_grad(torch.zeros(1), torch.rand(2, 5, 5), (3, 2, 3, 3),
                                            (1, 1)), "4-D"),
    (_wg(torch.rand(2, 2, 5, 5).half(), (3, 2, 3, 3)), "float32"),
    (lambda: direct_conv.conv2d_weight_grad(torch.rand(2, 3, 4, 5), torch.rand(2, 2, 5, 5),
                                            (3, 2, 3, 3), (1, 1)), r"\[2, 3, 5, 5\]"),
])
def test_bad_arguments_are_named_before_the_loops(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def _direct(y) -> bool:
    """Whether ``y``'s graph runs through the compiled conv."""
    todo, seen = [y.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "_DirectConv2dBackward":
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_time_folded_layers_take_it_where_it_applies():
    xs = (torch.rand(3, 2, 2, 8, 8) < 0.3).float()
    direct = sg.nn.Conv2d(2, 4, 3, padding=1)
    assert _direct(direct(xs))
    ref = F.conv2d(xs.flatten(0, 1), direct.weight, direct.bias, padding=1).unflatten(0, (3, 2))
    assert torch.allclose(direct(xs), ref, atol=1e-6)
    others = [sg.nn.Conv2d(3, 4, 3, padding=1),                 # 27 taps > MAX_TAPS
              sg.nn.Conv2d(2, 4, 3, stride=2, padding=1),
              sg.nn.Conv2d(2, 4, 3, padding=1, dilation=2),
              sg.nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"),
              sg.nn.Conv2d(2, 4, 2, padding="same")]            # asymmetric padding
    for m in others:
        x = torch.rand(3, 2, m.in_channels, 8, 8)
        assert m(x).grad_fn is not None and not _direct(m(x))
    assert _direct(sg.nn.Conv2d(2, 4, 3, padding="same")(xs))
    with torch.no_grad():  # no weight gradient: torch's op
        assert direct_conv.direct_conv2d(xs[0], direct.weight, None, 1, 1) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch's conv casts
        y = direct(xs)
        assert not _direct(y) and y.dtype == torch.bfloat16
        y.float().sum().backward()  # no dtype clash in backward
    assert direct.weight.grad is not None


def test_conv1d_rows():
    m = sg.nn.Conv1d(2, 5, 7, padding=3)
    xs = torch.rand(4, 3, 2, 40)
    y = m(xs)
    assert _direct(y)
    ref = F.conv1d(xs.flatten(0, 1), m.weight, m.bias, padding=3).unflatten(0, (4, 3))
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5)
    (gw,) = torch.autograd.grad(y.sum(), m.weight)
    (gr,) = torch.autograd.grad(ref.sum(), m.weight)
    assert torch.allclose(gw, gr, rtol=1e-5, atol=1e-4)


def test_symmetric_padding():
    assert direct_conv.symmetric_padding("same", (3, 5)) == (1, 2)
    assert direct_conv.symmetric_padding("same", (2, 3)) is None
    assert direct_conv.symmetric_padding("valid", (3, 3)) == (0, 0)
    assert direct_conv.symmetric_padding(2, (3, 3)) == (2, 2)
    assert direct_conv.symmetric_padding((1, 0), (3, 1)) == (1, 0)
