"""Compiled event-driven synapses for narrow layers (out <= 32: readouts), rows split over threads.

:mod:`spikegrad.kernels.numba_event` splits its work by 64-byte blocks of output features; a
readout of a few classes has one or two such blocks, so it would run on one thread, and its
weight gradient would pay for grouping the active inputs by input (a counting sort) to sum
rows of ``g`` only 80 bytes wide. Here each row is one unit of work instead:

- **forward** ``y[n] = sum_{i in cols(n)} W^T[i]``: ``W^T`` zero-padded to ``P = 16`` or 32
  columns (``in * P * 4`` bytes: 32 KiB for 256 inputs) and gathered per row with the same
  vector intrinsic as the wide forward.
- **weight gradient** ``dW^T[i] = sum_{n : x[n, i] = 1} g[n]`` added event by event, in the
  order of the CSR, into one ``[in, P]`` partial sum per fixed chunk of rows (its bounds
  depend on ``N`` only); the partials are then summed in chunk order. So the result does not
  depend on the number of threads.
- **input gradient** ``dX = g W`` (dense: every input gets a surrogate gradient), per row and
  per four 64-byte blocks of inputs, one ``fmuladd`` chain per lane over the ``out`` outputs.

On an AMD EPYC, whose MKL GEMMs for these shapes are slow, workload B's training step went
from 25.4 to 19.4 ms with its readout here (benchmarks/README.md, "A second machine");
:mod:`spikegrad.kernels.event_linear` decides when it runs.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

from . import aligned
from .numba_event import check_csr, check_dense, lanes, np_dtype
from .vector_ir import add_block, array_data, gather_sum, gather_sum2, numba_lanes, vector_ptr
from .parallel import run_kernel

# Rows per partial sum of the weight gradient; the last chunk may be shorter. Fixed, so that
# the summation order does not depend on the number of threads.
CHUNK_ROWS = 1024
# Output blocks per input-gradient call (four 64-byte accumulators: 8 AVX2 registers).
_GRAD_BLOCKS = 4

_I64 = ir.IntType(64)


def _make_combine(blocks: int):
    def combine(typingctx, g, g_off, n, w, w_stride, w_off, out, out_off):
        """``out[out_off + b L:+L] = sum_{j < n} g[g_off + j] * w[w_off + j w_stride + b L:+L]``
        for ``b < blocks``: one ``fmuladd`` chain per block, ``j`` ascending (fused where the
        target has FMA)."""
        L = numba_lanes(w.dtype)
        u64 = types.uint64
        sig = types.void(g, u64, u64, w, u64, u64, out, u64)

        def codegen(context, builder, sig, args):
            ga, goff, nv, wa, wst, woff, oa, ooff = args
            ga = array_data(context, builder, sig.args[0], ga)
            wa = array_data(context, builder, sig.args[3], wa)
            oa = array_data(context, builder, sig.args[6], oa)
            fty = context.get_value_type(sig.args[3].dtype)
            vty = ir.VectorType(fty, L)
            bits = 32 if isinstance(fty, ir.FloatType) else 64
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), f"llvm.fmuladd.v{L}f{bits}")
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * L))
                    for _ in range(blocks)]
            with cgutils.for_range(builder, nv) as loop:
                s = builder.load(builder.gep(ga, [builder.add(goff, loop.index)]))
                splat = builder.insert_element(ir.Constant(vty, None), s,
                                               ir.Constant(ir.IntType(32), 0))
                splat = builder.shuffle_vector(splat, ir.Constant(vty, None),
                                               ir.Constant(ir.VectorType(ir.IntType(32), L),
                                                           [0] * L))
                row = builder.add(woff, builder.mul(loop.index, wst))
                for b in range(blocks):
                    at = builder.add(row, ir.Constant(_I64, b * L))
                    v = builder.load(vector_ptr(builder, wa, at, vty), align=1)
                    builder.store(builder.call(fma, [splat, v, builder.load(accs[b])]), accs[b])
            for b in range(blocks):
                p = vector_ptr(builder, oa, builder.add(ooff, ir.Constant(_I64, b * L)), vty)
                builder.store(builder.load(accs[b]), p, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return intrinsic(combine)


_combine1 = _make_combine(1)
_combine4 = _make_combine(_GRAD_BLOCKS)


# --------------------------------------------------------------------------------------------
# loops
# --------------------------------------------------------------------------------------------

@numba.njit(nogil=True, cache=True)
def _forward_kernel(rowptr, cols, wt, width, n_out, y, r_lo, r_hi):
    """``y [N * out]`` for the rows ``[r_lo, r_hi)`` from ``wt [in * width]`` (``W^T`` padded to
    ``width`` = 16 or 32 float32 / 8 or 16 float64 columns, i.e. one or two 64-byte blocks)."""
    L = 64 // wt.itemsize
    uL = np.uint64(L)
    tmp = np.empty(2 * L, y.dtype)
    stride = np.uint64(width)
    for r in range(r_lo, r_hi):
        k0, k1 = np.uint64(rowptr[r]), np.uint64(rowptr[r + 1])
        if width > L:
            gather_sum2(wt, cols, k0, k1, np.uint64(0), stride, uL, tmp, np.uint64(0), uL)
        else:
            gather_sum(wt, cols, k0, k1, np.uint64(0), stride, uL, tmp, np.uint64(0), uL)
        for q in range(n_out):
            y[r * n_out + q] = tmp[q]


@numba.njit(nogil=True, cache=True)
def _weight_grad_kernel(rowptr, cols, g, n_out, n_in, width, chunk, partial, c_lo, c_hi):
    """``partial[c, i, :] = sum over the rows n of chunk c where input i fired of g[n]``
    (padded to ``width`` lanes), for the chunks ``[c_lo, c_hi)``; ``partial [chunks * in *
    width]`` is zero on entry."""
    L = 64 // g.itemsize
    n_rows = rowptr.shape[0] - 1
    tmp = np.zeros(2 * L, g.dtype)
    for c in range(c_lo, c_hi):
        base = c * n_in * width
        for r in range(c * chunk, min((c + 1) * chunk, n_rows)):
            for q in range(n_out):
                tmp[q] = g[r * n_out + q]
            for k in range(rowptr[r], rowptr[r + 1]):
                at = np.uint64(base + cols[k] * width)
                add_block(partial, at, tmp, np.uint64(0))
                if width > L:
                    add_block(partial, at + np.uint64(L), tmp, np.uint64(L))


@numba.njit(nogil=True, cache=True)
def _sum_chunks_kernel(partial, n_chunks, out, lo, hi):
    """``out[j] = sum_c partial[c, j]`` for ``j in [lo, hi)``, chunks in order."""
    size = out.shape[0]
    for j in range(lo, hi):
        s = partial[j]
        for c in range(1, n_chunks):
            s += partial[c * size + j]
        out[j] = s


@numba.njit(nogil=True, cache=True)
def _input_grad_kernel(g, w, n_out, n_in, out, r_lo, r_hi):
    """``out [N * in] = g [N * out] @ w [out * in]`` for the rows ``[r_lo, r_hi)``."""
    L = 64 // w.itemsize
    B = _GRAD_BLOCKS
    tmp = np.empty(L, out.dtype)
    tail = np.empty(n_out * L, w.dtype)  # the last partial block of w, zero-padded
    full = n_in // L
    rest = n_in - full * L
    if rest:
        for j in range(n_out):
            for q in range(L):
                tail[j * L + q] = w[j * n_in + full * L + q] if q < rest else 0.0
    uo, ui, uL = np.uint64(n_out), np.uint64(n_in), np.uint64(L)
    for r in range(r_lo, r_hi):
        go = np.uint64(r * n_out)
        oo = np.uint64(r * n_in)
        v = 0
        while v + B <= full:
            _combine4(g, go, uo, w, ui, np.uint64(v * L), out, oo + np.uint64(v * L))
            v += B
        while v < full:
            _combine1(g, go, uo, w, ui, np.uint64(v * L), out, oo + np.uint64(v * L))
            v += 1
        if rest:
            _combine1(g, go, uo, tail, uL, np.uint64(0), tmp, np.uint64(0))
            for q in range(rest):
                out[r * n_in + full * L + q] = tmp[q]


# --------------------------------------------------------------------------------------------
# torch-facing wrappers
# --------------------------------------------------------------------------------------------

def _width(n_out: int, dtype: torch.dtype, where: str) -> int:
    L = lanes(dtype)
    if not 1 <= n_out <= 2 * L:
        raise ValueError(f"{where}: {n_out} outputs; the narrow kernels take 1 to {2 * L} "
                         f"for {dtype} (wider layers: spikegrad.kernels.numba_event)")
    return L if n_out <= L else 2 * L


def _rows_csr(rowptr, cols, n_rows: int, where: str):
    rp = rowptr.numpy() if isinstance(rowptr, Tensor) else rowptr
    cl = cols.numpy() if isinstance(cols, Tensor) else cols
    check_csr(rp, cl, where)
    if rp.shape[0] != n_rows + 1:
        raise ValueError(f"{where}: {n_rows} rows but the CSR has {rp.shape[0] - 1}")
    return rp, cl


def _check_cols(cl: np.ndarray, rp: np.ndarray, n_in: int, where: str) -> None:
    """The gathers index ``W^T`` / the partial sums by ``cols`` unchecked: every index in
    ``[0, in)`` (O(nnz), small next to the kernels)."""
    used = cl[rp[0]:rp[-1]]
    if used.size and (int(used.min()) < 0 or int(used.max()) >= n_in):
        raise ValueError(f"{where}: the CSR has input indices outside [0, {n_in})")


def forward(rowptr: Tensor, cols: Tensor, weight: Tensor) -> Tensor:
    """``x W^T -> [N, out]`` for ``x [N, in]`` given by its CSR (``rowptr [N + 1]`` int64,
    ``cols`` int32/int64), ``weight [out, in]`` with ``out <= 32`` (float32) / 16 (float64)."""
    where = "numba narrow forward"
    check_dense(weight, "weight", where)
    n_out, n_in = weight.shape
    width = _width(n_out, weight.dtype, where)
    n_rows = rowptr.shape[0] - 1
    rp, cl = _rows_csr(rowptr, cols, n_rows, where)
    if rp[0] != 0:
        raise ValueError(f"{where}: rowptr must start at 0")
    _check_cols(cl, rp, n_in, where)
    F = np_dtype(weight.dtype)
    wt = aligned.zeros((n_in, width), F)
    wt[:, :n_out] = weight.detach().numpy().T
    y = np.empty(n_rows * n_out, F)
    run_kernel(_forward_kernel, (rp, cl, wt.reshape(-1), width, n_out, y), n_rows,
               max(1, int(rp[-1])) * width)
    return torch.from_numpy(y).view(n_rows, n_out)


def weight_grad(grad: Tensor, rowptr: Tensor, cols: Tensor, n_in: int) -> Tensor:
    """``g^T x -> [out, in]`` for ``g [N, out]`` (``out <= 32`` float32 / 16 float64) and
    ``x [N, in]`` given by its CSR."""
    where = "numba narrow weight_grad"
    check_dense(grad, "grad", where)
    n_rows, n_out = grad.shape
    width = _width(n_out, grad.dtype, where)
    rp, cl = _rows_csr(rowptr, cols, n_rows, where)
    if rp[0] != 0:
        raise ValueError(f"{where}: rowptr must start at 0")
    _check_cols(cl, rp, n_in, where)
    g = grad.detach().contiguous().numpy().reshape(-1)
    n_chunks = max(1, -(-n_rows // CHUNK_ROWS))
    partial = aligned.zeros(n_chunks * n_in * width, g.dtype)
    run_kernel(_weight_grad_kernel, (rp, cl, g, n_out, n_in, width, CHUNK_ROWS, partial), n_chunks,
               max(1, int(rp[-1])) * width)
    dwt = np.empty(n_in * width, g.dtype)
    run_kernel(_sum_chunks_kernel, (partial, n_chunks, dwt), dwt.shape[0],
               dwt.shape[0] * n_chunks, align=16)
    return torch.from_numpy(dwt.reshape(n_in, width)[:, :n_out].T.copy())


def input_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """``g W -> [N, in]`` for ``g [N, out]`` and ``weight [out, in]`` (dense)."""
    where = "numba narrow input_grad"
    check_dense(grad, "grad", where)
    check_dense(weight, "weight", where)
    n_rows, n_out = grad.shape
    _width(n_out, grad.dtype, where)
    if weight.shape[0] != n_out or weight.dtype != grad.dtype:
        raise ValueError(f"{where}: grad {list(grad.shape)} ({grad.dtype}) and weight "
                         f"{list(weight.shape)} ({weight.dtype}) do not match")
    n_in = weight.shape[1]
    g = grad.detach().contiguous().numpy().reshape(-1)
    w = weight.detach().contiguous().numpy().reshape(-1)
    out = np.empty(n_rows * n_in, g.dtype)
    run_kernel(_input_grad_kernel, (g, w, n_out, n_in, out), n_rows, n_rows * n_in * n_out)
    return torch.from_numpy(out).view(n_rows, n_in)
