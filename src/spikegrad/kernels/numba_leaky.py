"""Compiled element-wise time loops for :mod:`spikegrad.kernels.leaky` (numba, CPU).

Why numba: it installs from PyPI as a wheel (no compiler, no CUDA, nothing fetched at run
time), compiles these two loops in about a second on first use and caches them on disk,
and works on the tensors' memory without copies. A C++ extension would need a compiler at
install or first-use time.

The loops run over neurons in parallel chunks and over time sequentially inside each chunk,
so each thread streams through contiguous rows ``[t, lo:hi]``. The arithmetic is written in
the reference's order (no fused multiply-add: numba's default is IEEE-exact), so forward
states are bit-identical to the torch loop.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

_RESET = {"none": 0, "subtract": 1, "to_value": 2}
_CHUNK = 2048  # neurons per parallel task


def _flat(t, like: Tensor) -> np.ndarray:
    """A parameter (float, 0-dim or per-neuron tensor) broadcast to one row ``[M]``."""
    if not isinstance(t, Tensor):
        t = torch.tensor(t, dtype=torch.float64)
    t = t.detach().to(like.dtype).expand(like.shape)  # cast first: the reference does
    return np.ascontiguousarray(t.reshape(-1).numpy())


@numba.njit(parallel=True, cache=True, nogil=True)
def _fwd(xs, v, i, a, g, a_s, th, vr, spiking, reset, has_syn, scale, u_out, i_out):
    T, M = xs.shape
    n_chunks = (M + _CHUNK - 1) // _CHUNK
    for c in numba.prange(n_chunks):
        lo = c * _CHUNK
        hi = min(M, lo + _CHUNK)
        for t in range(T):
            for m in range(lo, hi):
                x = xs[t, m]
                if has_syn:
                    i[m] = a_s[m] * i[m] + x
                    x = i[m]
                    i_out[t, m] = x
                if scale:
                    x = g[m] * x
                u = a[m] * v[m] + x
                u_out[t, m] = u
                if spiking and reset != 0:
                    if u - th[m] > 0:
                        if reset == 1:
                            u = u - th[m]
                        else:
                            u = u - (u - vr[m])
                v[m] = u


@numba.njit(parallel=True, cache=True, nogil=True)
def _bwd(b, A, use_A, a, g, a_s, gv, gi, has_syn, gu_out, gi_out):
    T, M = b.shape
    n_chunks = (M + _CHUNK - 1) // _CHUNK
    for c in numba.prange(n_chunks):
        lo = c * _CHUNK
        hi = min(M, lo + _CHUNK)
        for t in range(T - 1, -1, -1):
            for m in range(lo, hi):
                gu = b[t, m] + (gv[m] * A[t, m] if use_A else gv[m])
                gu_out[t, m] = gu
                gv[m] = a[m] * gu
                if has_syn:
                    # gi holds what reaches i_t from outside step t: g_i_last, then a_syn gi_{t+1}
                    gi_t = g[m] * gu + gi[m]
                    gi_out[t, m] = gi_t
                    gi[m] = a_s[m] * gi_t


def forward_scan(spec, xs: Tensor, v0, i0, a_mem, a_syn, theta, v_reset):
    """``(u_all, i_all)`` for ``xs [T, B, *F]``; same contract as the torch loop."""
    T = xs.shape[0]
    x2 = xs.detach().contiguous().reshape(T, -1)
    row = x2[0].reshape(xs.shape[1:])
    u_all = torch.empty_like(x2)
    i_all = torch.empty_like(x2) if spec.has_syn else torch.empty((1, 1), dtype=xs.dtype)
    v = v0.detach().to(xs.dtype).reshape(-1).clone().numpy()
    i = (i0.detach().to(xs.dtype).reshape(-1).clone().numpy() if spec.has_syn
         else np.zeros(1, dtype=v.dtype))
    ones = 1.0
    g = (1.0 - a_mem) if spec.scale_input else ones
    _fwd(x2.numpy(), v, i, _flat(a_mem, row), _flat(g, row),
         _flat(a_syn if spec.has_syn else 0.0, row), _flat(theta if spec.spiking else 0.0, row),
         _flat(v_reset if spec.spiking else 0.0, row), spec.spiking,
         _RESET[spec.reset] if spec.spiking else 0, spec.has_syn, spec.scale_input,
         u_all.numpy(), i_all.numpy())
    return u_all.reshape(xs.shape), (i_all.reshape(xs.shape) if spec.has_syn else None)


def backward_scan(spec, g_ys: Tensor, gain_y, A, a_mem, a_syn, gv_T: Tensor, gi_T):
    """``(gu_all, gi_all)``: the adjoint recursion of :func:`forward_scan`."""
    T = g_ys.shape[0]
    shape = g_ys.shape
    b = (g_ys * gain_y if gain_y is not None else g_ys).contiguous().reshape(T, -1)
    row = b[0].reshape(shape[1:])
    use_A = A is not None
    A2 = (torch.as_tensor(A, dtype=b.dtype).expand(shape).contiguous().reshape(T, -1) if use_A
          else torch.empty((1, 1), dtype=b.dtype))
    gu_all = torch.empty_like(b)
    gi_all = torch.empty_like(b) if spec.has_syn else torch.empty((1, 1), dtype=b.dtype)
    gv = gv_T.to(b.dtype).reshape(-1).clone().numpy()
    gi = (gi_T.to(b.dtype).reshape(-1).clone().numpy() if gi_T is not None
          else np.zeros(b.shape[1], dtype=gv.dtype))
    g = (1.0 - a_mem) if spec.scale_input else 1.0
    _bwd(b.numpy(), A2.numpy(), use_A, _flat(a_mem, row), _flat(g, row),
         _flat(a_syn if spec.has_syn else 0.0, row), gv, gi, spec.has_syn,
         gu_all.numpy(), gi_all.numpy())
    return gu_all.reshape(shape), (gi_all.reshape(shape) if spec.has_syn else None)
