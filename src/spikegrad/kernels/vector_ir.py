"""Explicit 64-byte vector operations for the numba kernels (llvmlite IR, inlined as intrinsics).

numba runs LLVM without its SLP vectoriser (``NUMBA_SLP_VECTORIZE=0``, a process-wide
switch), and the kernels' inner loops are 16 lanes long, which the loop vectoriser does not
handle once LLVM has unrolled them: the same loops in plain numba compiled to scalar adds
(about 10x slower; benchmarks/README.md). These intrinsics emit ``<16 x float>`` /
``<8 x double>`` loads, adds and stores that LLVM lowers to one AVX-512 instruction each (two
AVX2 or four SSE instructions on older CPUs). Used by :mod:`spikegrad.kernels.numba_event`
and :mod:`spikegrad.kernels.numba_narrow`.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Bytes per vector block of output features.
LANE_BYTES = 64

_I64 = ir.IntType(64)


def numba_lanes(dtype) -> int:
    return LANE_BYTES // (dtype.bitwidth // 8)


def array_data(context, builder, arrty, value):
    return context.make_array(arrty)(context, builder, value).data


def vector_ptr(builder, data, offset, vty):
    return builder.bitcast(builder.gep(data, [offset]), vty.as_pointer())


def _make_gather(accumulate: bool, blocks: int = 1):
    def gather(typingctx, table, index, k0, k1, base, stride, block_stride, out, out_off,
               out_stride):
        """``out[out_off + b out_stride:+L] (+)= sum_{k0 <= k < k1} table[base + b block_stride
        + index[k] * stride:+L]`` for each of ``blocks`` blocks ``b``, each with four
        accumulators (fixed order: lanes k = 0, 1, 2, 3 mod 4, then pairwise). Two blocks per
        call read each index once for both and give the out-of-order core two independent
        chains of adds (faster on every benchmark layer: benchmarks/README.md), with the same
        sums as two one-block calls (each block's sum keeps its order)."""
        L = numba_lanes(table.dtype)
        u64 = types.uint64
        sig = types.void(table, index, u64, u64, u64, u64, u64, out, u64, u64)

        def codegen(context, builder, sig, args):
            tab, idx, k0v, k1v, basev, st, bst, o, ooff, ost = args
            tab = array_data(context, builder, sig.args[0], tab)
            idx = array_data(context, builder, sig.args[1], idx)
            o = array_data(context, builder, sig.args[7], o)
            vty = ir.VectorType(context.get_value_type(sig.args[0].dtype), L)
            zero = ir.Constant(vty, [0.0] * L)
            accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(4)]
                    for _ in range(blocks)]
            offsets = [builder.mul(ir.Constant(_I64, b), bst) for b in range(blocks)]

            def add_row(k, lanes):
                j = builder.load(builder.gep(idx, [k]))
                if j.type.width < 64:
                    j = builder.zext(j, _I64)
                row = builder.add(basev, builder.mul(j, st))
                for b in range(blocks):
                    acc = accs[b][lanes]
                    v = builder.load(vector_ptr(builder, tab, builder.add(row, offsets[b]), vty),
                                     align=1)
                    builder.store(builder.fadd(builder.load(acc), v), acc)

            n = builder.sub(k1v, k0v)
            quads = builder.udiv(n, ir.Constant(_I64, 4))
            with cgutils.for_range(builder, quads) as loop:
                kb = builder.add(k0v, builder.mul(loop.index, ir.Constant(_I64, 4)))
                for u in range(4):
                    add_row(builder.add(kb, ir.Constant(_I64, u)), u)
            tail = builder.add(k0v, builder.mul(quads, ir.Constant(_I64, 4)))
            with cgutils.for_range(builder, builder.sub(k1v, tail)) as loop:
                add_row(builder.add(tail, loop.index), 0)
            for b in range(blocks):
                a = [builder.load(acc) for acc in accs[b]]
                total = builder.fadd(builder.fadd(a[0], a[1]), builder.fadd(a[2], a[3]))
                p = vector_ptr(builder, o,
                                builder.add(ooff, builder.mul(ir.Constant(_I64, b), ost)), vty)
                if accumulate:
                    total = builder.fadd(builder.load(p, align=1), total)
                builder.store(total, p, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return intrinsic(gather)


gather_sum = _make_gather(False)
gather_add = _make_gather(True)
gather_sum2 = _make_gather(False, blocks=2)
gather_add2 = _make_gather(True, blocks=2)


def _make_block_op(accumulate: bool):
    def block_op(typingctx, dst, dst_off, src, src_off):
        """``dst[dst_off:+L] (+)= src[src_off:+L]`` (one vector load, add and store)."""
        L = numba_lanes(dst.dtype)
        sig = types.void(dst, types.uint64, src, types.uint64)

        def codegen(context, builder, sig, args):
            d, doff, s, soff = args
            vty = ir.VectorType(context.get_value_type(sig.args[0].dtype), L)
            v = builder.load(vector_ptr(builder, array_data(context, builder, sig.args[2], s), soff,
                                         vty), align=1)
            p = vector_ptr(builder, array_data(context, builder, sig.args[0], d), doff, vty)
            if accumulate:
                v = builder.fadd(builder.load(p, align=1), v)
            builder.store(v, p, align=1)
            return context.get_dummy_value()

        return sig, codegen

    return intrinsic(block_op)


copy_block = _make_block_op(False)
add_block = _make_block_op(True)
