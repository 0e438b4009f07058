"""Compiled event-driven synapse kernels for :mod:`spikegrad.kernels.event_linear` (CPU, numba).

Three steps, each a numba loop around a few explicit 64-byte vector operations:

1. **Active inputs** of binary spikes ``x [N, in]`` as CSR (``rowptr [N + 1]``, ``cols [nnz]``
   int32): per 16 inputs, one vector compare and one compress-store of the indices that fired
   (``vpcompressd`` on AVX-512; per 8 inputs a table of the fired-mask's positions elsewhere),
   which also flags any nonzero entry that is not 1.
2. **Forward** ``y[n] = sum_{i in cols(n)} W[:, i]``: the weight is packed by blocks of ``L``
   output features (64 bytes: 16 float32 or 8 float64), ``wtb[c, i, :] = W[cL:(c+1)L, i]``, so
   that a block (``in * 64`` bytes: 32 KiB for ``in = 512``) stays in cache while every row
   gathers from it; two column blocks per gather (each index read once for both, four vector
   accumulators each).
3. **Weight gradient** ``dW[:, i] = sum_{n : x[n, i] = 1} g[n]``: per block of ``RB`` rows, the
   active entries grouped by input (a counting sort: CSC of the block), the block's rows of
   ``g`` packed by column block (so the rows gathered lie contiguously in L1 instead of 2 KiB
   apart, where they map to two cache sets), and one vector gather-sum per (input, pair of
   column blocks) added into ``dW^T``.

Threads split the column blocks (forward and weight gradient, in whole pairs) and the row
blocks (the sort): every output element is written by one thread and summed in one order, so
results do not depend on the number of threads, nor on whether its block was gathered alone or
in a pair.

The gathers and block copies are hand-written vector IR (:mod:`spikegrad.kernels.vector_ir`
says why); the compress-store of step 1 is here.
"""

from __future__ import annotations

import threading
from typing import Optional

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from torch import Tensor

from . import aligned, guards
from .parallel import run_kernel, run_slices, split
from .vector_ir import (LANE_BYTES, array_data, copy_block, gather_add, gather_add2, gather_sum,
                        gather_sum2, numba_lanes, vector_ptr)

# Rows per block of the weight gradient: the block's packed rows of g for one column block
# take RB * 64 bytes (32 KiB) and stay in L1 while every input of the block gathers from them;
# more rows make each (input, block) bag longer (less fixed cost per bag). Measured (2 threads,
# ms for 128 / 256 / 512 / 1024 / 2048 rows): A512 p = 0.1: 7.2 / 5.9 / 5.4 / 7.0 / 8.5;
# A512 p = 0.02: 3.7 / 2.9 / 2.6 / 2.7 / 3.0; B p = 0.02: 2.4 / 1.8 / 1.5 / 1.5 / 1.6.
ROW_BLOCK = 512
_I1 = ir.IntType(1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def np_dtype(dtype: torch.dtype):
    """numpy's float32/float64 for a kernel dtype."""
    return np.float32 if dtype == torch.float32 else np.float64


def check_dense(t, name: str, where: str) -> None:
    """A 2-D CPU float32/float64 tensor: the vector intrinsics below read raw memory, so the
    type and the row length must be what the indexing assumes."""
    if not isinstance(t, Tensor) or t.dim() != 2:
        raise ValueError(f"{where}: {name} must be a 2-D tensor, got "
                         f"{list(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{where}: {name} is on {t.device}; the numba kernels run on the CPU")
    if t.dtype not in guards.KERNEL_DTYPES:
        raise guards.DtypeError(f"{where}: {name} is {t.dtype}; the numba kernels compute in "
                                "float32 or float64 (half types take the embedding_bag path)")


def check_csr(rp: np.ndarray, cl: np.ndarray, where: str) -> None:
    """A CSR the loops walk without bounds checks: int64 row pointers, int32/int64 columns,
    the pointers' range inside ``cols`` (two reads: O(1))."""
    if rp.dtype != np.int64 or rp.ndim != 1 or rp.shape[0] < 1:
        raise ValueError(f"{where}: rowptr must be a 1-D int64 array of N + 1 pointers")
    if cl.ndim != 1 or cl.dtype not in (np.int32, np.int64):
        raise ValueError(f"{where}: cols must be a 1-D int32/int64 array")
    if rp[0] < 0 or rp[-1] > cl.shape[0] or rp[-1] < rp[0]:
        raise ValueError(f"{where}: rowptr points outside cols ({int(rp[0])}..{int(rp[-1])} "
                         f"for {cl.shape[0]} entries)")


def lanes(dtype: torch.dtype) -> int:
    """Output features per 64-byte block (16 float32, 8 float64)."""
    return LANE_BYTES // torch.empty((), dtype=dtype).element_size()


# --------------------------------------------------------------------------------------------
# the active-input scan's vector intrinsics (the gathers: spikegrad.kernels.vector_ir)
# --------------------------------------------------------------------------------------------

def use_compress_store(cpu: str, features: str) -> bool:
    """Whether the active-input scan compresses with AVX-512's compress-store, for a compile
    target given as LLVM's CPU name and feature string (``+avx512f,-avx512bw,...``). Not on AMD
    Zen 4/5 (``znver4``, ``znver5``): there the memory form of ``vpcompressd`` is microcoded,
    ~142 cycles (numpy/x86-simd-sort#6, llvm/llvm-project#133568; not measured here), so those
    take the table path like targets without AVX-512."""
    return "+avx512f" in features.split(",") and not cpu.startswith(("znver4", "znver5"))


def _target(context) -> tuple[str, str]:
    """The CPU name and features numba hands LLVM for the code being compiled (so
    ``NUMBA_CPU_NAME=generic`` gives ``("generic", "")``; numba's disk cache keys its entries
    by them)."""
    codegen = context.codegen()
    cpu = getattr(codegen, "_get_host_cpu_name", lambda: "")() or ""
    return cpu, getattr(codegen, "_tm_features", "") or ""


def _left_pack_table(module) -> ir.GlobalVariable:
    """``table[m]`` = the positions of the set bits of the byte ``m``, ascending, as 8 int32
    lanes (zero-padded): the indices a group of 8 inputs with fired-mask ``m`` appends."""
    name = "spikegrad_left_pack8"
    table = module.globals.get(name)
    if table is None:
        vty = ir.VectorType(_I32, 8)
        aty = ir.ArrayType(vty, 256)
        rows = []
        for m in range(256):
            bits = [j for j in range(8) if m >> j & 1]
            rows.append(ir.Constant(vty, bits + [0] * (8 - len(bits))))
        table = ir.GlobalVariable(module, aty, name)
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = ir.Constant(aty, rows)
        table.align = 32
    return table


@intrinsic
def _compress_row(typingctx, x, x_off, n, cols, k):
    """Append the ``j < n`` with ``x[x_off + j] != 0`` to ``cols[k:]`` (int32). Returns
    ``(k + count, bad)``; ``bad`` = 1 if a nonzero entry is not exactly 1 (NaN included).
    ``cols[k:k + n]`` must be writable: entries past the last index appended may be
    overwritten.

    On AVX-512 targets, 16 inputs per compare and compress-store (``vpcompressd``; see
    :func:`use_compress_store`). Elsewhere (AVX2, the generic target) LLVM would lower the
    compress-store to 16 branches, one per lane, mispredicted at typical rates; there each
    group of 8 takes its fired-mask as a byte, loads the 8 positions of its set bits from a
    256-entry table, adds the group's start and stores all 8 lanes, then advances ``k`` by the
    count: no branch per input (AMD EPYC, AVX2, A512's input: 1.1 -> 0.36 ns per input;
    benchmarks/README.md)."""
    u64 = types.uint64
    sig = types.UniTuple(u64, 2)(x, u64, u64, cols, u64)

    def codegen(context, builder, sig, args):
        xa, xoff, nv, ca, kv = args
        xa = array_data(context, builder, sig.args[0], xa)
        ca = array_data(context, builder, sig.args[3], ca)
        fty = context.get_value_type(sig.args[0].dtype)
        module = builder.module
        compress = use_compress_store(*_target(context))
        W = 16 if compress else 8
        vty, ity, mty = ir.VectorType(fty, W), ir.VectorType(_I32, W), ir.VectorType(_I1, W)
        mask_int = ir.IntType(W)
        popcount = cgutils.get_or_insert_function(
            module, ir.FunctionType(mask_int, [mask_int]), f"llvm.ctpop.i{W}")
        if compress:
            store = cgutils.get_or_insert_function(
                module, ir.FunctionType(ir.VoidType(), [ity, _I32.as_pointer(), mty]),
                "llvm.masked.compressstore.v16i32")
        else:
            table = _left_pack_table(module)
        kk = cgutils.alloca_once_value(builder, kv)
        bad = cgutils.alloca_once_value(builder, ir.Constant(_I1, 0))
        lane = ir.Constant(ity, list(range(W)))
        zero, one = ir.Constant(vty, [0.0] * W), ir.Constant(vty, [1.0] * W)
        full = builder.udiv(nv, ir.Constant(_I64, W))
        with cgutils.for_range(builder, full) as loop:
            j0 = builder.mul(loop.index, ir.Constant(_I64, W))
            v = builder.load(vector_ptr(builder, xa, builder.add(xoff, j0), vty), align=1)
            fired = builder.fcmp_unordered("!=", v, zero)
            not_one = builder.and_(fired, builder.fcmp_unordered("!=", v, one))
            any_bad = builder.icmp_unsigned("!=", builder.bitcast(not_one, mask_int),
                                            ir.Constant(mask_int, 0))
            builder.store(builder.or_(builder.load(bad), any_bad), bad)
            start = builder.insert_element(ir.Constant(ity, None), builder.trunc(j0, _I32),
                                           ir.Constant(_I32, 0))
            start = builder.shuffle_vector(start, ir.Constant(ity, None),
                                           ir.Constant(ity, [0] * W))
            k = builder.load(kk)
            bits = builder.bitcast(fired, mask_int)
            dst = builder.gep(ca, [k])
            if compress:
                builder.call(store, [builder.add(lane, start), dst, fired])
            else:
                at = builder.gep(table, [ir.Constant(_I64, 0), builder.zext(bits, _I64)])
                picked = builder.add(builder.load(at, align=32), start)
                builder.store(picked, builder.bitcast(dst, ity.as_pointer()), align=4)
            count = builder.call(popcount, [bits])
            builder.store(builder.add(k, builder.zext(count, _I64)), kk)
        rest = builder.mul(full, ir.Constant(_I64, W))
        with cgutils.for_range(builder, builder.sub(nv, rest)) as loop:
            j = builder.add(rest, loop.index)
            v = builder.load(builder.gep(xa, [builder.add(xoff, j)]))
            fired = builder.fcmp_unordered("!=", v, ir.Constant(fty, 0.0))
            not_one = builder.and_(fired, builder.fcmp_unordered("!=", v, ir.Constant(fty, 1.0)))
            builder.store(builder.or_(builder.load(bad), not_one), bad)
            k = builder.load(kk)
            with builder.if_then(fired):
                builder.store(builder.trunc(j, _I32), builder.gep(ca, [k]))
            builder.store(builder.add(k, builder.zext(fired, _I64)), kk)
        return cgutils.pack_array(builder, [builder.load(kk),
                                            builder.zext(builder.load(bad), _I64)])

    return sig, codegen


# --------------------------------------------------------------------------------------------
# loops
# --------------------------------------------------------------------------------------------

@numba.njit(nogil=True, cache=True)
def _compress_kernel(x, n_in, counts, buf, k, lo, hi):
    """Append the active inputs of the rows ``[lo, hi)`` to ``buf`` from ``buf[k]`` on, with
    ``counts[r + 1]`` the row's count. Stops before a row that might not fit: returns ``(the
    row reached, k, bad)``, ``bad`` = 1 if an entry is not 0/1."""
    bad = np.uint64(0)
    cap = np.uint64(buf.shape[0])
    k = np.uint64(k)
    un = np.uint64(n_in)
    for r in range(lo, hi):
        if k + un > cap:
            return r, k, bad
        k2, b = _compress_row(x, np.uint64(r * n_in), un, buf, k)
        counts[r + 1] = k2 - k
        k = k2
        bad |= b
    return hi, k, bad


@numba.njit(nogil=True, cache=True)
def _forward_kernel(rowptr, cols, wtb, n_in, n_out, y, c_lo, c_hi):
    """``y [N * out]`` (row-major) for the column blocks ``[c_lo, c_hi)``, two at a time where
    both are full (one gather per row reads each index once for both)."""
    L = LANE_BYTES // wtb.itemsize
    tmp = np.empty(L, y.dtype)  # a partial last block's sums (this thread's own)
    n_rows = rowptr.shape[0] - 1
    uL = np.uint64(L)
    block = np.uint64(n_in * L)
    # rows in blocks, each block's indices read once per column block from L2; every block
    # fetches the whole packed weight again (A2048: 16 MiB, beyond L2), so longer blocks pay
    # there (512 rows against 256: A2048's forward 2-4 % faster, A512 and B unchanged;
    # benchmarks/README.md)
    for r0 in range(0, n_rows, 512):
        r1 = min(r0 + 512, n_rows)
        c = c_lo
        while c < c_hi:
            base = np.uint64(c * n_in * L)
            pair = c + 1 < c_hi and (c + 2) * L <= n_out
            full = (c + 1) * L <= n_out
            for r in range(r0, r1):
                k0, k1 = np.uint64(rowptr[r]), np.uint64(rowptr[r + 1])
                at = np.uint64(r * n_out + c * L)
                if pair:
                    gather_sum2(wtb, cols, k0, k1, base, uL, block, y, at, uL)
                elif full:
                    gather_sum(wtb, cols, k0, k1, base, uL, block, y, at, uL)
                else:
                    gather_sum(wtb, cols, k0, k1, base, uL, block, tmp, np.uint64(0), uL)
                    for q in range(n_out - c * L):
                        y[r * n_out + c * L + q] = tmp[q]
            c += 2 if pair else 1


@numba.njit(nogil=True, cache=True)
def _csc_kernel(rowptr, cols, n_in, rb, colptr, rows, b_lo, b_hi):
    """Per block ``b`` of ``rb`` rows: its active entries grouped by input. Bag ``q = b * in + i``
    holds, in ``rows[colptr[q]:colptr[q + 1]]``, the rows of the block where input ``i`` fired
    (ascending). Blocks are independent (block ``b`` writes ``colptr[b*in + 1 : (b+1)*in + 1]``)."""
    n_rows = rowptr.shape[0] - 1
    for b in range(b_lo, b_hi):
        r0, r1 = b * rb, min((b + 1) * rb, n_rows)
        cur = colptr[b * n_in + 1:(b + 1) * n_in + 1]  # counts, then write cursors, then ends
        cur[:] = 0
        for k in range(rowptr[r0], rowptr[r1]):
            cur[cols[k]] += 1
        start = rowptr[r0]
        for i in range(n_in):
            count = cur[i]
            cur[i] = start
            start += count
        for r in range(r0, r1):
            for k in range(rowptr[r], rowptr[r + 1]):
                i = cols[k]
                rows[cur[i]] = r
                cur[i] += 1


@numba.njit(nogil=True, cache=True)
def _weight_grad_kernel(colptr, rows, g, n_rows, n_in, n_out, rb, dwt, pack, c_lo, c_hi):
    """``dwt[c, i, :] += sum over the bag (b, i) of g[r, cL:(c+1)L]`` for ``c in [c_lo, c_hi)``;
    ``pack [blocks * rb * L]`` is scratch (the blocks ``[c_lo, c_hi)`` use their part)."""
    L = LANE_BYTES // g.itemsize
    uL = np.uint64(L)
    packed = np.uint64(rb * L)   # from one column block's packed rows to the next's
    row = np.uint64(n_in * L)    # from one column block of dW^T to the next
    n_blocks = (n_rows + rb - 1) // rb
    for b in range(n_blocks):
        r0 = b * rb
        nr = min(rb, n_rows - r0)
        for rl in range(nr):  # pack[c, rl, :] = g[r0 + rl, cL:(c+1)L], zero-padded
            src = (r0 + rl) * n_out
            for c in range(c_lo, c_hi):
                dst = (c * rb + rl) * L
                if (c + 1) * L <= n_out:
                    copy_block(pack, np.uint64(dst), g, np.uint64(src + c * L))
                else:
                    for q in range(L):
                        pack[dst + q] = g[src + c * L + q] if c * L + q < n_out else 0.0
        c = c_lo
        while c < c_hi:  # two column blocks per gather where two are left
            # rows holds global row numbers r: pack's row rl = r - r0 sits at base + r * L
            # (the unsigned sum wraps around exactly like the signed one)
            base = np.uint64(c * rb * L) - np.uint64(r0 * L)
            pair = c + 1 < c_hi
            for i in range(n_in):
                q = b * n_in + i
                k0, k1 = np.uint64(colptr[q]), np.uint64(colptr[q + 1])
                at = np.uint64((c * n_in + i) * L)
                if k1 > k0:
                    if pair:
                        gather_add2(pack, rows, k0, k1, base, uL, packed, dwt, at, row)
                    else:
                        gather_add(pack, rows, k0, k1, base, uL, packed, dwt, at, uL)
            c += 2 if pair else 1


# --------------------------------------------------------------------------------------------
# torch-facing wrappers
# --------------------------------------------------------------------------------------------

_scratch = threading.local()
_SCRATCH_START = 1 << 16  # int32 entries of a new scratch buffer (it doubles as needed)


def _compress_rows(x: np.ndarray, n_in: int, counts: np.ndarray, bufs: dict, slot: int,
                   lo: int, hi: int):
    """The active inputs of rows ``[lo, hi)``, appended to the scratch buffer ``bufs[slot]``
    (grown by doubling when a row might not fit): ``(buf, count, bad)``."""
    buf = bufs.get(slot)
    if buf is None or buf.shape[0] < n_in:
        buf = bufs[slot] = np.empty(max(n_in, _SCRATCH_START), np.int32)
    r, k, bad = lo, 0, 0
    while True:
        r, k, b = _compress_kernel(x, n_in, counts, buf, k, r, hi)
        bad |= b
        if r == hi:
            return buf, int(k), bad
        grown = np.empty(2 * buf.shape[0], np.int32)
        grown[:k] = buf[:k]
        buf = bufs[slot] = grown


def active_csr(x2: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Active inputs of ``x2 [N, in]`` (CPU float): ``(rowptr [N + 1] int64, cols [nnz] int32,
    binary)``; ``binary`` is whether every nonzero entry equals 1. One pass over ``x2``,
    threaded over rows: each slice of rows is compressed into a scratch buffer (one per slice,
    kept between calls by the calling thread), then the buffers are copied into ``cols`` at its
    exact size. (A count pass before a fill pass read ``x2`` twice: ~0.9 ms more per call on
    workload B's 18 MB input.)"""
    check_dense(x2, "x", "numba active_csr")
    n_rows, n_in = x2.shape
    x = x2.detach().contiguous().view(-1).numpy()
    rowptr = np.zeros(n_rows + 1, np.int64)
    slices = split(n_rows, x.size)
    slot = {lo: j for j, (lo, _) in enumerate(slices)}
    bufs = _scratch.__dict__.setdefault("bufs", {})
    parts = [None] * len(slices)

    def call(lo, hi):
        parts[slot[lo]] = _compress_rows(x, n_in, rowptr, bufs, slot[lo], lo, hi)
    run_slices(call, slices)
    np.cumsum(rowptr, out=rowptr)
    cols = np.empty(int(rowptr[-1]), np.int32)
    for (lo, _), (buf, k, _) in zip(slices, parts):
        cols[rowptr[lo]:rowptr[lo] + k] = buf[:k]
    return torch.from_numpy(rowptr), torch.from_numpy(cols), not any(p[2] for p in parts)


def pack_weight(weight: Tensor) -> np.ndarray:
    """``W [out, in]`` as ``wtb [ceil(out / L), in, L]`` (zero-padded), flat: the forward's
    layout (pack once, use for many calls)."""
    check_dense(weight, "weight", "numba pack_weight")
    L = lanes(weight.dtype)
    n_out, n_in = weight.shape
    n_blocks = -(-n_out // L)
    w = weight.detach()
    full = n_out // L
    wtb = (aligned.empty if full == n_blocks else aligned.zeros)((n_blocks, n_in, L),
                                                                np_dtype(weight.dtype))
    # torch's copy for the transpose: threaded and tiled, 2.6x faster than numpy's strided copy
    # on a 2048 x 2048 weight (benchmarks/README.md); the kernels run on torch's OpenMP team,
    # so waking it costs nothing here
    torch.from_numpy(wtb[:full]).copy_(w[:full * L].reshape(full, L, n_in).transpose(1, 2))
    if full < n_blocks:
        wtb[full, :, :n_out - full * L] = w[full * L:].numpy().T
    return wtb.reshape(-1)


def forward(rowptr: Tensor, cols: Tensor, weight: Tensor, wtb: Optional[np.ndarray] = None,
            out: Optional[np.ndarray] = None) -> Tensor:
    """``x W^T -> [N, out]`` for ``x [N, in]`` given by its CSR ``(rowptr, cols)``; ``rowptr``
    may be a slice of a larger CSR (rows ``r0..r1`` of it: pass ``rowptr[r0:r1 + 1]``).
    ``wtb``: :func:`pack_weight` of ``weight`` (packed here if None); ``out``: a contiguous
    array of ``N * out`` elements to write into."""
    where = "numba forward"
    check_dense(weight, "weight", where)
    n_out, n_in = weight.shape
    n_rows = rowptr.shape[0] - 1
    L = lanes(weight.dtype)
    n_blocks = -(-n_out // L)
    F = np_dtype(weight.dtype)
    wtb = pack_weight(weight) if wtb is None else wtb
    guards.array(wtb, "wtb", (n_blocks * L * n_in,), F, where)
    if out is not None:
        # written through a flat view: a copy (non-contiguous) would lose the result
        if not out.flags.c_contiguous:
            raise ValueError(f"{where}: out must be C-contiguous")
        guards.array(out.reshape(-1), "out", (n_rows * n_out,), F, where)
    y_np = aligned.empty(n_rows * n_out, wtb.dtype) if out is None else out.reshape(-1)
    rp = rowptr.numpy() if isinstance(rowptr, Tensor) else rowptr
    cl = cols.numpy() if isinstance(cols, Tensor) else cols
    check_csr(rp, cl, where)

    # slices of whole pairs of column blocks (the kernel takes two at a time)
    run_kernel(_forward_kernel, (rp, cl, wtb, n_in, n_out, y_np), n_blocks,
               max(1, int(rp[-1] - rp[0])) * n_out, align=2)
    return torch.from_numpy(y_np).view(n_rows, n_out)


def weight_grad(grad: Tensor, rowptr: Tensor, cols: Tensor, n_in: int) -> Tensor:
    """``g^T x -> [out, in]`` for ``g [N, out]`` and ``x [N, in]`` given by its CSR."""
    dwt = blocked_zeros(grad.shape[1], n_in, grad.dtype)
    accumulate_weight_grad(grad, rowptr, cols, dwt)
    return unblock(dwt, grad.shape[1])


def blocked_zeros(n_out: int, n_in: int, dtype: torch.dtype) -> np.ndarray:
    """A zero weight gradient in the kernels' layout ``dW^T [ceil(out / L), in, L]``."""
    L = lanes(dtype)
    return aligned.zeros((-(-n_out // L), n_in, L), torch.empty(0, dtype=dtype).numpy().dtype)


def unblock(dwt: np.ndarray, n_out: int) -> Tensor:
    """``[out, in]`` from the blocked layout of :func:`blocked_zeros`."""
    n_blocks, n_in, L = dwt.shape
    full = n_out // L
    out = torch.empty(n_out, n_in, dtype=torch.from_numpy(dwt).dtype)
    # torch's copy (threaded, tiled): see pack_weight
    out[:full * L].view(full, L, n_in).copy_(torch.from_numpy(dwt[:full]).transpose(1, 2))
    if full < n_blocks:
        out[full * L:] = torch.from_numpy(dwt[full, :, :n_out - full * L].T.copy())
    return out


def accumulate_weight_grad(grad, rowptr, cols, dwt: np.ndarray) -> None:
    """``dwt += (g^T x)`` in the blocked layout, for ``g [N, out]`` (a tensor or numpy array)
    and ``x [N, in]`` given by its CSR (``rowptr`` may be a slice of a larger CSR)."""
    where = "numba accumulate_weight_grad"
    if isinstance(grad, Tensor):
        check_dense(grad, "grad", where)
    g = grad.detach().contiguous().numpy() if isinstance(grad, Tensor) else grad
    if g.ndim != 2:
        raise ValueError(f"{where}: grad must be [N, out], got shape {list(g.shape)}")
    n_rows, n_out = g.shape
    L = LANE_BYTES // g.itemsize
    guards.array(dwt, "dwt", (-(-n_out // L), dwt.shape[1] if dwt.ndim == 3 else -1, L),
                 g.dtype, where)
    n_blocks, n_in, L = dwt.shape
    rp = rowptr.numpy() if isinstance(rowptr, Tensor) else rowptr
    cl = cols.numpy() if isinstance(cols, Tensor) else cols
    check_csr(rp, cl, where)
    if rp.shape[0] != n_rows + 1:
        raise ValueError(f"{where}: grad has {n_rows} rows but the CSR {rp.shape[0] - 1}")
    if rp[0] != 0:  # a slice: local offsets
        cl = cl[rp[0]:rp[-1]]
        rp = rp - rp[0]
    rb = ROW_BLOCK
    n_row_blocks = -(-n_rows // rb)
    index = np.int32 if n_rows < 2**31 else np.int64
    colptr = np.zeros(n_row_blocks * n_in + 1, np.int64)
    rows = np.empty(cl.shape[0], index)
    run_kernel(_csc_kernel, (rp, cl, n_in, rb, colptr, rows), n_row_blocks, cl.shape[0] * 4)
    pack = aligned.empty(n_blocks * rb * L, g.dtype)
    run_kernel(_weight_grad_kernel,  # whole pairs of column blocks
               (colptr, rows, g.reshape(-1), n_rows, n_in, n_out, rb, dwt.reshape(-1), pack),
               n_blocks, cl.shape[0] * n_out, align=2)
