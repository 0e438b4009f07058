"""Average and sum pooling over non-overlapping windows (stride = window, no padding) on the
CPU as compiled loops: the pooling of spiking conv blocks.

torch's CPU ``avg_pool2d`` took as long as the block's convolution on the spiking-CNN
workload D (time folded into the batch, ``[T*B, C, H, W]``), and its backward first fills the
input gradient with zeros, then adds each window's share. Here forward sums each window in
torch's order (rows, then columns) and divides by the divisor as torch does, so outputs are
bit-identical; backward writes every input element once: its window's output gradient over
the divisor (0 for rows and columns past the last whole window). Planes (sample x channel)
are split over torch's threads (:mod:`spikegrad.kernels.parallel`).

:func:`window_pool2d` returns None where this path does not apply (another device or dtype,
numba missing, a window that is not its own stride); the caller then runs torch's op.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from . import ops
from .parallel import run_kernel

__all__ = ["square_window", "window_pool2d"]


@functools.lru_cache(maxsize=None)
def _kernels():
    import numba
    import numpy as np

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def fwd(x, k, divisor, out, lo, hi):
        Ho, Wo = out.shape[1], out.shape[2]
        for p in range(lo, hi):
            for i in range(Ho):
                for j in range(Wo):
                    s = x[p, i * k, j * k]
                    for b in range(1, k):
                        s += x[p, i * k, j * k + b]
                    for a in range(1, k):
                        for b in range(k):
                            s += x[p, i * k + a, j * k + b]
                    out[p, i, j] = s / divisor

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def bwd(g, k, divisor, gx, lo, hi):
        H, W = gx.shape[1], gx.shape[2]
        Ho, Wo = g.shape[1], g.shape[2]
        row = np.empty(W, dtype=gx.dtype)
        for p in range(lo, hi):
            for i in range(Ho):
                # one input row of window row i, then copied to its k rows
                for j in range(Wo):
                    v = g[p, i, j] / divisor
                    for b in range(k):
                        row[j * k + b] = v
                row[Wo * k:] = 0
                for a in range(k):
                    gx[p, i * k + a, :] = row
            gx[p, Ho * k:, :] = 0
    return fwd, bwd


class _WindowPool(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, k: int, divisor: float) -> Tensor:
        N, C, H, W = x.shape
        out = x.new_empty(N, C, H // k, W // k)
        fwd, _ = _kernels()
        xa = x.detach().reshape(N * C, H, W).numpy()
        oa = out.numpy().reshape(N * C, H // k, W // k)
        d = xa.dtype.type(divisor)
        run_kernel(fwd, (xa, k, d, oa), N * C, x.numel())
        return out

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, k, divisor = inputs
        ctx.k, ctx.divisor, ctx.shape = k, divisor, x.shape

    @staticmethod
    def backward(ctx, g: Tensor):
        N, C, H, W = ctx.shape
        k = ctx.k
        g = g.contiguous()
        gx = g.new_empty(ctx.shape)
        _, bwd = _kernels()
        ga = g.reshape(N * C, H // k, W // k).numpy()
        gxa = gx.numpy().reshape(N * C, H, W)
        d = gxa.dtype.type(ctx.divisor)
        run_kernel(bwd, (ga, k, d, gxa), N * C, gx.numel())
        return gx, None, None


def square_window(kernel_size, stride, padding, ceil_mode: bool) -> Optional[int]:
    """``k`` for a ``k x k`` window with stride ``k``, no padding and floor mode (the windows
    these loops cover), else None."""
    k = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
    if isinstance(k, tuple):
        if len(k) != 2 or k[0] != k[1]:
            return None
        k = k[0]
    s = k if stride is None else stride
    s = s if isinstance(s, int) else (tuple(s)[0] if len(set(tuple(s))) == 1 else None)
    p = padding if isinstance(padding, int) else (0 if all(v == 0 for v in padding) else 1)
    if s != k or p != 0 or ceil_mode:
        return None
    return k


def window_pool2d(x: Tensor, kernel_size, stride, padding, ceil_mode: bool,
                  divisor: Optional[float]) -> Optional[Tensor]:
    """``x [N, C, H, W]`` pooled over ``k x k`` windows with stride ``k``: each window's sum
    over ``divisor`` (``k * k`` for the average, 1 for the sum), ``[N, C, H // k, W // k]``;
    or None where this path does not apply (see the module docstring)."""
    k = square_window(kernel_size, stride, padding, ceil_mode)
    if k is None or ops.compiling(x) or ops.transformed():
        return None
    if (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)
            or x.dim() != 4 or not x.is_contiguous() or x.shape[2] < k or x.shape[3] < k):
        return None
    try:
        _kernels()
    except ImportError:
        return None
    return _WindowPool.apply(x, k, float(k * k if divisor is None else divisor))
