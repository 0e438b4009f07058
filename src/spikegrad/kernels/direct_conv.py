"""The weight gradient of convolutions with few input channels (the first layer of a spiking
CNN) as compiled loops on the CPU: stride 1, zero padding.

A network's first conv sees the sensor's channels: 1 or 2 (an event camera's polarities) or 3.
For 2 input channels and a 3 x 3 kernel torch's CPU weight gradient (oneDNN) took 1.8-2.7x the
time of these loops on the shapes of benchmarks/README.md ("The weight gradient of convolutions
with few input channels"); its forward and input gradient were as fast or faster, so they stay
torch's.

Each sample's input planes are copied once into a zero-padded buffer of rows ``Wp = W + 2 pw``
wide, laid end to end, so that a kernel tap ``(a, b)`` is a constant offset ``a Wp + b`` into
it; the output gradient is copied into rows of the same width (zeros in the last ``KW - 1``
columns). Then ``dW[o, c, a, b] += sum_k g[k] xs[k + a Wp + b]`` is one long contiguous dot
product per tap, the ``KW`` taps of a kernel row in one pass. The dot products run with
reassociation (vector partial sums, as a BLAS sums), so the result depends on the target's
vector width, not on the thread count: samples are summed per fixed chunk of :data:`CHUNK`,
the chunks in order.

:func:`direct_conv2d` returns None where this path does not apply; the caller then runs
torch's op.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from . import guards, ops
from .parallel import run_kernel

__all__ = ["MAX_TAPS", "CHUNK", "direct_conv2d", "conv2d_weight_grad", "symmetric_padding"]

#: The path applies to layers with at most this many weights per output element
#: (``C_in * KH * KW``): 3 x 3 kernels on 1 or 2 channels, 5 x 5 on one. At 27 (3 channels)
#: oneDNN was faster (benchmarks/README.md).
MAX_TAPS = 25
#: Samples per partial sum of the weight gradient.
CHUNK = 16


@functools.lru_cache(maxsize=None)
def _kernels(KW: int):
    """The loops for kernels ``KW`` wide (a compile-time constant: the taps of a row unroll
    and the pass over ``k`` vectorises)."""
    from . import jit_cache

    @jit_cache.njit(nogil=True, error_model="numpy")
    def pad_sample(x, n, ph, pw, xf):
        """Sample ``n`` of ``x [N, C, H, W]`` into ``xf``: ``C`` planes of ``(H + 2 ph)``
        rows of ``Wp`` values, zeros around and after them."""
        C, H, W = x.shape[1], x.shape[2], x.shape[3]
        Wp = W + 2 * pw
        plane = (H + 2 * ph) * Wp
        xf[:] = 0
        for c in range(C):
            for r in range(H):
                base = c * plane + (r + ph) * Wp + pw
                xr = x[n, c, r]
                for j in range(np.uint64(W)):
                    xf[base + j] = xr[j]

    @jit_cache.njit(nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
    def row_dots(g, xs, acc):
        """``acc[b] += sum_k g[k] xs[k + b]`` for each ``b < KW``."""
        for b in range(KW):
            s = acc[b]
            for k in range(np.uint64(g.shape[0])):
                s += g[k] * xs[k + b]
            acc[b] = s

    @jit_cache.njit(nogil=True, error_model="numpy")
    def weight_grad(gy, x, ph, pw, chunk, part, lo, hi):
        """Chunks ``[lo, hi)`` of ``chunk`` samples: ``part[q] [Co, C, KH, KW]`` the weight
        gradient of chunk ``q``'s samples, from ``gy [N, Co, Ho, Wo]`` and ``x``."""
        N, C, H, W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
        Co, Ho, Wo = gy.shape[1], gy.shape[2], gy.shape[3]
        KH = part.shape[3]
        Wp = W + 2 * pw
        plane = (H + 2 * ph) * Wp
        L = Ho * Wp
        xf = np.empty(C * plane + KW - 1, x.dtype)
        g = np.zeros(L, x.dtype)  # the discarded columns stay zero
        for q in range(lo, hi):
            acc = part[q]
            acc[:] = 0
            for n in range(q * chunk, min(N, (q + 1) * chunk)):
                pad_sample(x, n, ph, pw, xf)
                for co in range(Co):
                    for i in range(Ho):
                        grow = gy[n, co, i]
                        for j in range(np.uint64(Wo)):
                            g[i * Wp + j] = grow[j]
                    for c in range(C):
                        for a in range(KH):
                            s = c * plane + a * Wp
                            row_dots(g, xf[s:s + L + KW - 1], acc[co, c, a])

    return weight_grad


def conv2d_weight_grad(gy: Tensor, x: Tensor, weight_shape: Sequence[int],
                       padding: Tuple[int, int]) -> Tensor:
    """The weight gradient of ``conv2d(x, weight, stride=1, padding)`` (``x [N, C, H, W]``,
    ``weight [Co, C, KH, KW]``) for the output gradient ``gy [N, Co, Ho, Wo]``, with ``Ho = H +
    2 ph - KH + 1`` (likewise ``Wo``): ``[Co, C, KH, KW]``. Everything the loops index by is
    checked before they run."""
    where = "conv2d_weight_grad"
    shape = tuple(int(v) for v in weight_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{where}: weight_shape must be 4 sizes >= 1, got {shape}")
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"{where}: x must be a 4-D tensor, got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{where}: x must be a float32/float64 CPU tensor, got {x.dtype} on "
                        f"{x.device}")
    if not x.is_contiguous():
        raise ValueError(f"{where}: x must be contiguous (call .contiguous())")
    if shape[1] != x.shape[1]:
        raise ValueError(f"{where}: weight {list(shape)} expects {shape[1]} input channels, x "
                         f"{list(x.shape)} has {x.shape[1]}")
    ph, pw = padding
    if not (isinstance(ph, int) and isinstance(pw, int) and ph >= 0 and pw >= 0):
        raise ValueError(f"{where}: padding must be two ints >= 0, got {padding!r}")
    Ho, Wo = x.shape[2] + 2 * ph - shape[2] + 1, x.shape[3] + 2 * pw - shape[3] + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"{where}: kernel {list(shape[2:])} does not fit x {list(x.shape[2:])} "
                         f"padded by {padding}")
    N = x.shape[0]
    want = (N, shape[0], Ho, Wo)
    if (not isinstance(gy, Tensor) or tuple(gy.shape) != want or gy.dtype != x.dtype
            or gy.device.type != "cpu"):
        raise ValueError(f"{where}: gy must be a {x.dtype} CPU tensor of shape {list(want)}, got "
                         f"{list(getattr(gy, 'shape', []))} {getattr(gy, 'dtype', None)}")
    gy = gy.contiguous()
    n_chunks = -(-N // CHUNK)
    if n_chunks == 0:
        return x.new_zeros(shape)
    xa = x.detach().numpy()
    part = np.empty((n_chunks, *shape), xa.dtype)
    run_kernel(_kernels(shape[3]), (gy.detach().numpy(), xa, ph, pw, CHUNK, part),
               n_chunks, gy.numel() * shape[1] * shape[2] * shape[3])
    return torch.from_numpy(part.sum(axis=0))  # the chunks in order


class _DirectConv2d(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Optional[Tensor],
                padding: Tuple[int, int]) -> Tensor:
        return torch.nn.functional.conv2d(x, weight, bias, 1, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, padding = inputs
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if torch.is_grad_enabled():
            # create_graph: torch's backward, which is itself differentiable
            gx, gw, gb = torch.ops.aten.convolution_backward(
                gy, x, weight, [weight.shape[0]] if ctx.has_bias else None, [1, 1],
                list(ctx.padding), [1, 1], False, [0, 0], 1, [need_x, need_w, need_b])
            return gx, gw, gb, None
        if need_x:
            gx = torch.ops.aten.convolution_backward(
                gy, x, weight, None, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        if need_w:
            gw = conv2d_weight_grad(gy, x, weight.shape, ctx.padding)
        if need_b:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None


def symmetric_padding(padding: Union[str, int, Sequence[int]],
                      kernel_size: Sequence[int]) -> Optional[Tuple[int, ...]]:
    """A conv's padding (stride 1, dilation 1) as ints per dimension, or None where it is not
    the same on both sides of a dimension (``"same"`` with an even kernel)."""
    if isinstance(padding, str):
        if padding == "valid":
            return tuple(0 for _ in kernel_size)
        if padding == "same" and all(k % 2 for k in kernel_size):
            return tuple((k - 1) // 2 for k in kernel_size)
        return None
    if isinstance(padding, int):
        return tuple(padding for _ in kernel_size)
    return tuple(int(p) for p in padding)


def direct_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride=1, padding=0,
                  dilation=1, groups: int = 1) -> Optional[Tensor]:
    """``torch.nn.functional.conv2d`` on ``x [N, C, H, W]`` whose weight gradient runs these
    loops, where they apply: a weight that needs a gradient, a CPU float32/float64 input,
    stride 1, dilation 1, one group, padding the same on both sides, ``C * KH * KW <=
    MAX_TAPS``. Else None."""
    if ops.compiling(x) or ops.transformed():
        return None
    if not (torch.is_grad_enabled() and isinstance(weight, Tensor) and weight.requires_grad):
        return None  # no weight gradient to compute
    if isinstance(x, Tensor) and guards.autocast_on(x):
        return None  # torch's conv casts; the loops compute in the input's dtype
    ones = (1, (1, 1), [1, 1])
    if stride not in ones or dilation not in ones or groups != 1:
        return None
    if not (isinstance(x, Tensor) and isinstance(weight, Tensor) and x.dim() == 4
            and weight.dim() == 4 and x.device.type == "cpu" and weight.device == x.device
            and x.dtype in (torch.float32, torch.float64) and weight.dtype == x.dtype
            and x.shape[1] == weight.shape[1]
            and (bias is None or (bias.dtype == x.dtype and bias.device == x.device))):
        return None
    if weight.shape[1] * weight.shape[2] * weight.shape[3] > MAX_TAPS:
        return None
    pad = symmetric_padding(padding, weight.shape[2:])
    if pad is None or len(pad) != 2 or min(pad) < 0:
        return None
    if (x.shape[2] + 2 * pad[0] < weight.shape[2] or x.shape[3] + 2 * pad[1] < weight.shape[3]):
        return None
    try:
        _kernels(int(weight.shape[3]))
    except ImportError:
        return None
    return _DirectConv2d.apply(x.contiguous(), weight.contiguous(),
                               None if bias is None else bias.contiguous(), pad)
