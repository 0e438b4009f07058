"""The tail of a spiking conv block fused: threshold batch norm -> LIF -> window pooling, on
``[T, B, C, H, W]`` conv outputs (CPU, numba).

One by one, the three layers pass their whole ``[T, B, C, H, W]`` sequence through memory
several times each: batch norm reads the conv output twice and writes the normalised
currents, the neurons read them and write spikes and the saved membrane, the pooling reads
the spikes; backward writes and reads three more full-size gradients and batch norm's
backward reads its input twice again. On the CNN workload these passes, not arithmetic, were
two thirds of a training step (benchmarks/README.md).

Here each plane (one sample's channel, ``H x W`` neurons) is walked through time by one
thread while its states stay in cache:

- forward: one pass for the batch statistics (per plane, per column, in float64; planes are
  combined with Chan's formula), then one that normalises, steps the neurons and pools, and
  writes only the pooled output and the final membrane. Nothing besides the conv output
  (which the conv's own backward does not need, so it is the one kept tensor) is saved.
- backward: per plane, the membrane is recomputed step by step into a ``[T, H, W]`` scratch
  (the same arithmetic in the same order as the forward, so the same spikes), then the adjoint
  runs back in time from the pooled gradient, writing the gradient of the normalised currents
  and summing, per plane, the two reductions batch norm's backward needs. A last elementwise
  pass turns it into the gradient of the conv output in place.

The neuron step and adjoint are :mod:`spikegrad.kernels.numba_leaky`'s (``neuron_step``,
``neuron_adjoint``), so the recursion is the one every other fused LIF kernel runs. Batch norm's
arithmetic is the usual one (``x = y * alpha_c + beta_c`` with ``alpha_c = weight_c * scale /
sqrt(var_c + eps)``, ``beta_c = bias_c - mean_c alpha_c``, the unbiased variance in the
running statistics); it equals torch's ``batch_norm`` up to the order of float sums in the
statistics, so spikes agree wherever no membrane lies within that rounding of the threshold.

Covered: LIF/IF without a synapse, any reset, a built-in surrogate, constants not trained, an
initial membrane that needs no gradient; batch statistics (training, or no running ones) or
running statistics; average, sum or max pooling over ``k x k`` windows with stride ``k``, or
none (``k = 1``). Max pooling routes each window's gradient as torch does, to its first
neuron that fired (its first neuron when none did), so backward keeps the recomputed spikes
of the plane too. The caller (:func:`spikegrad.functional.conv_block.norm_lif_pool_seq`)
runs the layers one by one otherwise.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Tuple

import numba
import numpy as np
import torch
from torch import Tensor

from . import guards, jit_cache
from .numba_leaky import constant_row, neuron_adjoint, neuron_step
from .parallel import run_kernel
from .spec import RESET_IDS, SURROGATE_IDS

__all__ = ["BlockSpec", "norm_lif_pool"]


class BlockSpec(NamedTuple):
    """The static options the kernels specialise on, and the numbers they read."""

    reset: int             # RESET_IDS
    detach: bool           # the reset's path carries no gradient
    kind: int              # SURROGATE_IDS (built-in surrogates only)
    beta: float            # the surrogate's sharpness
    scale: bool            # the input is scaled by 1 - a_mem
    k: int                 # pooling window (and stride); 1: no pooling
    divisor: float         # k * k (average) or 1 (sum; max)
    max_pool: bool         # max pooling: a window's output is 1 if any of its neurons fired
    batch_stats: bool      # normalise with this batch's statistics (and backpropagate them)
    eps: float
    momentum: float        # of the running statistics' update (training only)
    norm_scale: float      # alpha * threshold of ThresholdBatchNorm


@functools.lru_cache(maxsize=None)
def _kernels(reset: int, detach: bool, kind: int, scale: bool, F, k: int, max_pool: bool):
    """The four loops, specialised like numba_leaky's. Each plane's ``H x W`` neurons are one
    contiguous row of ``n = H * W``; the per-element work is in row functions of their own
    (not inlined into the time loop) over 1-D arrays, the shape in which LLVM vectorises
    them (numba_leaky's ``_adjoint_row`` says why). The pooling window ``k`` and the kind
    of pooling are compile-time constants too: the window loops unroll and the column sums
    vectorise."""
    step = neuron_step(True, reset, False, scale, False, False, False, F)
    adjoint = neuron_adjoint(True, reset, detach, kind, F, False, False, False)
    zero = F(0.0)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def stats(y, mean, m2, lo, hi):
        """Per plane ``p`` of ``y [T, P, n]``: the mean and the sum of squared deviations
        from it, in float64, summed per element of the row (independent lanes: they vectorise
        without reordering any one sum)."""
        T, n = y.shape[0], y.shape[2]
        acc = np.empty(n, np.float64)
        for p in range(lo, hi):
            acc[:] = 0.0
            for t in range(T):
                x = y[t, p]
                for j in range(np.uint64(n)):
                    acc[j] += x[j]
            m = acc.sum() / (T * n)
            acc[:] = 0.0
            for t in range(T):
                x = y[t, p]
                for j in range(np.uint64(n)):
                    d = x[j] - m
                    acc[j] += d * d
            mean[p] = m
            m2[p] = acc.sum()

    @jit_cache.njit(nogil=True, error_model="numpy")
    def step_row(y, al, sh, a, g, th, vr, v, u_out, z):
        """One step of one plane's row: normalise, integrate, fire, reset; ``v`` in place, the
        compared membrane into ``u_out``, spikes into ``z``."""
        for j in range(np.uint64(y.shape[0])):
            u, v_new, spike, _, _, _, _, _ = step(
                y[j] * al + sh, v[j], zero, a[j], g[j], zero, th[j], vr[j], zero, zero, zero,
                zero, zero, zero, zero, zero)
            v[j] = v_new
            u_out[j] = u
            z[j] = 1 if spike else 0

    @jit_cache.njit(nogil=True, error_model="numpy")
    def pool_row(z, W, quotient, rows, out):
        """``z [H * W]`` spikes summed over ``k x k`` windows into ``out [Ho, Wo]``: first
        the window rows added column by column into ``rows [Wo * k]``, then each window's
        ``k`` columns; the count ``s`` becomes ``quotient[s]`` (``s / divisor`` in the
        output's type, looked up rather than divided per window). Sums of 0s and 1s are
        exact in any order, so the result is torch's to the bit."""
        # unsigned indices throughout: numba then drops the negative-index wraparound, which
        # blocks vectorisation; slices are avoided (a slice copy checks for overlap)
        Ho, Wo = out.shape
        ku, Wu = np.uint64(k), np.uint64(W)
        Wk = np.uint64(Wo) * ku
        for io in range(np.uint64(Ho)):
            r = io * ku * Wu
            for j in range(Wk):
                rows[j] = z[r + j]
            for aa in range(np.uint64(1), ku):
                ra = r + aa * Wu
                for j in range(Wk):
                    rows[j] += z[ra + j]
            for jo in range(np.uint64(Wo)):
                s = rows[jo * ku]
                for bb in range(np.uint64(1), ku):
                    s += rows[jo * ku + bb]
                out[io, jo] = quotient[np.int64(s)]

    @jit_cache.njit(nogil=True, error_model="numpy")
    def forward(y, alpha, shift, a, g, th, vr, v, out, W, quotient, lo, hi):
        """Planes ``[lo, hi)`` of ``y [T, P, n]``: ``out [T, P, Ho, Wo]`` the pooled spikes,
        ``v [P, n]`` the membrane, from the initial one to the final one; constants
        ``[C, n]``, the norm's ``alpha``, ``shift`` ``[C]``."""
        T, n = y.shape[0], y.shape[2]
        C = alpha.shape[0]
        u = np.empty(n, y.dtype)
        z = np.empty(n, y.dtype)
        rows = np.empty(W, y.dtype)
        for p in range(lo, hi):
            c = p % C
            for t in range(T):
                step_row(y[t, p], alpha[c], shift[c], a[c], g[c], th[c], vr[c], v[p], u, z)
                pool_row(z, W, quotient, rows, out[t, p])

    @jit_cache.njit(nogil=True, error_model="numpy")
    def adjoint_row(gy, u, y, m, th, vr, a, g, beta, gv, gx, acc1, acc2):
        """One step back over one plane's row: ``gv`` in place, the gradient of the normalised
        current into ``gx``; ``acc1 += gx``, ``acc2 += gx (y - m)`` (float64)."""
        for j in range(np.uint64(gy.shape[0])):
            gu, gv_j, _, _ = adjoint(gy[j], u[j], th[j], vr[j], a[j], zero, zero, zero, gv[j],
                                     zero, zero, zero, zero, zero, beta, zero)
            gv[j] = gv_j
            gxn = g[j] * gu
            gx[j] = gxn
            acc1[j] += gxn
            acc2[j] += gxn * (y[j] - m)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def unpool_row(g_out, W, divisor, gy):
        """Each element of ``gy [H * W]`` gets its window's ``g_out [Ho, Wo]`` over
        ``divisor`` (0 past the last whole window): one image row per window row, then
        copied to the window's other rows."""
        Ho, Wo = g_out.shape
        ku, Wu = np.uint64(k), np.uint64(W)
        Wk = np.uint64(Wo) * ku
        n = np.uint64(gy.shape[0])
        for io in range(np.uint64(Ho)):
            r = io * ku * Wu
            for jo in range(np.uint64(Wo)):
                q = g_out[io, jo] / divisor
                for bb in range(ku):
                    gy[r + jo * ku + bb] = q
            for j in range(Wk, Wu):
                gy[r + j] = 0
            for aa in range(np.uint64(1), ku):
                ra = r + aa * Wu
                for j in range(Wu):
                    gy[ra + j] = gy[r + j]
        for j in range(np.uint64(Ho) * ku * Wu, n):
            gy[j] = 0

    @jit_cache.njit(nogil=True, error_model="numpy")
    def unpool_max_row(g_out, z, W, gy):
        """Max pooling's gradient, as torch routes it: each window's ``g_out`` to the first
        element (row by row) holding the window's maximum of the spikes ``z [H * W]``: the
        first neuron that fired, or the window's first neuron when none did; 0 elsewhere."""
        Ho, Wo = g_out.shape
        ku, Wu = np.uint64(k), np.uint64(W)
        for j in range(np.uint64(gy.shape[0])):
            gy[j] = 0
        for io in range(np.uint64(Ho)):
            for jo in range(np.uint64(Wo)):
                r0 = io * ku * Wu + jo * ku
                pos = r0
                found = False
                for aa in range(ku):
                    for bb in range(ku):
                        e = r0 + aa * Wu + bb
                        if not found and z[e] > 0:
                            pos = e
                            found = True
                gy[pos] = g_out[io, jo]

    @jit_cache.njit(nogil=True, error_model="numpy")
    def backward(y, alpha, shift, a, g, th, vr, v0, g_out, W, divisor, beta, gv_T,
                 mean_used, gx, s1, s2, lo, hi):
        """Planes ``[lo, hi)``: the membrane recomputed from ``v0 [P, n]``, then the adjoint
        from the pooled gradient ``g_out [T or 1, P, Ho, Wo]`` and the final membrane's
        ``gv_T [P, n]``. Writes the gradient of the normalised current into
        ``gx [T, P, n]`` and, per plane, ``s1 = sum gx`` and ``s2 = sum gx (y - mean)``
        (float64)."""
        T, n = y.shape[0], y.shape[2]
        C = alpha.shape[0]
        per_step = g_out.shape[0] > 1
        uh = np.empty((T, n), y.dtype)
        zh = np.empty((T if max_pool else 1, n), y.dtype)  # max pooling routes by the spikes
        v = np.empty(n, y.dtype)
        gv = np.empty(n, y.dtype)
        gy = np.empty(n, y.dtype)
        acc1 = np.empty(n, np.float64)
        acc2 = np.empty(n, np.float64)
        for p in range(lo, hi):
            c = p % C
            v[:] = v0[p]
            for t in range(T):
                step_row(y[t, p], alpha[c], shift[c], a[c], g[c], th[c], vr[c], v, uh[t],
                         zh[t if max_pool else 0])
            gv[:] = gv_T[p]
            acc1[:] = 0.0
            acc2[:] = 0.0
            for t in range(T - 1, -1, -1):
                if max_pool:
                    unpool_max_row(g_out[t if per_step else 0, p], zh[t], W, gy)
                elif per_step or t == T - 1:
                    unpool_row(g_out[t if per_step else 0, p], W, divisor, gy)
                adjoint_row(gy, uh[t], y[t, p], mean_used[c], th[c], vr[c], a[c], g[c], beta,
                            gv, gx[t, p], acc1, acc2)
            s1[p] = acc1.sum()
            s2[p] = acc2.sum()

    @jit_cache.njit(nogil=True, error_model="numpy")
    def finish(gx, y, k1, k2, k3, lo, hi):
        """``gx <- k1_c gx + k2_c y + k3_c`` in place over planes ``[lo, hi)`` of
        ``[T, P, n]``: batch norm's input gradient."""
        T, n = gx.shape[0], gx.shape[2]
        C = k1.shape[0]
        for p in range(lo, hi):
            c = p % C
            q1, q2, q3 = k1[c], k2[c], k3[c]
            for t in range(T):
                r, x = gx[t, p], y[t, p]
                for j in range(np.uint64(n)):
                    r[j] = q1 * r[j] + q2 * x[j] + q3

    return stats, forward, backward, finish


def _planes(t: Tensor) -> np.ndarray:
    """``[T, B, C, H, W]`` (contiguous) as the kernels' ``[T, B*C, H*W]``."""
    T, B, C, H, W = t.shape
    return t.detach().numpy().reshape(T, B * C, H * W)


def batch_statistics(y: Tensor) -> Tuple[Tensor, Tensor]:
    """``(mean [C], biased variance [C])`` over time, batch and space of ``y [T, B, C, H, W]``
    (float64)."""
    T, B, C, H, W = y.shape
    P = B * C
    mean = np.empty(P, np.float64)
    m2 = np.empty(P, np.float64)
    stats = _kernels(1, True, 1, False, _F[y.dtype], 1, False)[0]
    ya = _planes(y)
    run_kernel(stats, (ya, mean, m2), P, y.numel())
    # Chan et al.: planes of equal size n combine into the channel's mean and squared deviations
    n = T * H * W
    pm = torch.from_numpy(mean).view(B, C)
    mu = pm.mean(0)
    ss = torch.from_numpy(m2).view(B, C).sum(0) + n * ((pm - mu) ** 2).sum(0)
    return mu, ss / (n * B)


_F = {torch.float32: np.float32, torch.float64: np.float64}


class _Constants(NamedTuple):
    """The neurons' constants as ``[C, H * W]`` arrays."""

    a: np.ndarray
    g: np.ndarray
    th: np.ndarray
    vr: np.ndarray


def _affine(spec: BlockSpec, mean: Tensor, var: Tensor, weight: Optional[Tensor],
            bias: Optional[Tensor], dtype) -> Tuple[Tensor, Tensor, Tensor]:
    """``(alpha, shift, invstd)`` of the normalisation, per channel, in ``dtype`` (batch
    norm computes them in the input's type)."""
    mean, var = mean.to(dtype), var.to(dtype)
    invstd = 1.0 / torch.sqrt(var + spec.eps)
    w = weight.detach() * spec.norm_scale if weight is not None else spec.norm_scale
    alpha = invstd * w
    shift = (bias.detach() if bias is not None else 0.0) - mean * alpha
    return alpha.contiguous(), shift.contiguous(), invstd


class _NormLIFPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, weight, bias, v0, spec, consts, running):
        T, B, C, H, W = y.shape
        k = spec.k
        dt = y.dtype
        F = _F[dt]
        if spec.batch_stats:
            mean, var = batch_statistics(y)
            if running is not None:  # as batch_norm: the unbiased variance is tracked
                rm, rv = running
                n = T * B * H * W
                m = spec.momentum
                rm.mul_(1 - m).add_(mean.to(rm.dtype), alpha=m)
                rv.mul_(1 - m).add_((var * (n / max(n - 1, 1))).to(rv.dtype), alpha=m)
        else:
            mean, var = running[0].detach().double(), running[1].detach().double()
        alpha, shift, invstd = _affine(spec, mean, var, weight, bias, dt)
        out = y.new_empty(T, B, C, H // k, W // k)
        v = v0.detach().to(dt).contiguous().clone().reshape(B * C, H * W)
        _, fwd, _, _ = _kernels(spec.reset, spec.detach, spec.kind, spec.scale, F, k,
                                spec.max_pool)
        ya, va = _planes(y), v.numpy()
        oa = out.numpy().reshape(T, B * C, H // k, W // k)
        # s / divisor for every window count s, in the output's type (as torch divides);
        # max pooling: 1 for any spike in the window
        counts = np.arange(k * k + 1, dtype=F)
        quotient = np.minimum(counts, F(1)) if spec.max_pool else counts / F(spec.divisor)
        args = (ya, alpha.numpy(), shift.numpy(), *consts, va, oa, np.int64(W), quotient)
        run_kernel(fwd, args, B * C, y.numel())
        ctx.save_for_backward(y, v0, weight, bias)
        ctx.spec, ctx.consts = spec, consts
        ctx.norm = (mean, alpha, shift, invstd)
        return out, v.reshape(B, C, H, W)

    @staticmethod
    def backward(ctx, g_out, g_vT):
        y, v0, weight, bias = ctx.saved_tensors
        spec, consts = ctx.spec, ctx.consts
        mean, alpha, shift, invstd = ctx.norm
        T, B, C, H, W = y.shape
        dt = y.dtype
        F = _F[dt]
        P = B * C
        if g_out is None:
            g_out = y.new_zeros(1, B, C, H // spec.k, W // spec.k)
        g_out = g_out.to(dt)
        if g_out.shape[0] > 1 and g_out.stride(0) == 0:  # the gradient of a sum over time
            g_out = g_out[:1]
        g_out = g_out.contiguous()
        gv_T = (torch.zeros(P, H * W, dtype=dt) if g_vT is None
                else g_vT.to(dt).contiguous().reshape(P, H * W))
        v0a = v0.detach().to(dt).contiguous().reshape(P, H * W).numpy()
        gx = torch.empty_like(y)
        s1 = np.empty(P, np.float64)
        s2 = np.empty(P, np.float64)
        _, _, bwd, finish = _kernels(spec.reset, spec.detach, spec.kind, spec.scale, F,
                                     spec.k, spec.max_pool)
        ya, gxa = _planes(y), _planes(gx)
        ga = g_out.numpy().reshape(g_out.shape[0], P, H // spec.k, W // spec.k)
        args = (ya, alpha.numpy(), shift.numpy(), *consts, v0a, ga, np.int64(W),
                F(spec.divisor), F(spec.beta), gv_T.numpy(), mean.to(dt).numpy(), gxa, s1, s2)
        run_kernel(bwd, args, P, 3 * y.numel())
        S1 = torch.from_numpy(s1).view(B, C).sum(0)            # sum of dL/dx
        S2 = torch.from_numpy(s2).view(B, C).sum(0)            # sum of dL/dx (y - mean)
        inv = invstd.double()
        gamma = (weight.detach().double() * spec.norm_scale if weight is not None
                 else torch.full((C,), spec.norm_scale, dtype=torch.float64))
        k1 = gamma * inv
        if spec.batch_stats:  # the statistics' own gradients
            n = T * B * H * W
            k2 = -gamma * inv ** 3 * S2 / n
            k3 = -gamma * inv * S1 / n - k2 * mean
        else:
            k2 = k3 = torch.zeros(C, dtype=torch.float64)
        if ctx.needs_input_grad[0]:
            q = [t.to(dt).numpy() for t in (k1, k2, k3)]
            run_kernel(finish, (gxa, ya, *q), P, 2 * y.numel())
            g_y = gx
        else:
            g_y = None
        g_w = (S2 * inv * spec.norm_scale).to(weight.dtype) if (
            weight is not None and ctx.needs_input_grad[1]) else None
        g_b = S1.to(bias.dtype) if bias is not None and ctx.needs_input_grad[2] else None
        return g_y, g_w, g_b, None, None, None, None


def constants(lif_params, shape, dtype) -> _Constants:
    """The neurons' decay, input scale, threshold and reset potential as ``[C, H * W]``
    arrays in ``dtype`` (numbers or per-neuron tensors broadcast)."""
    p = lif_params
    row = functools.partial(constant_row, shape=shape, dtype=dtype)
    g = (1.0 - p.decay_mem) if p.scale_input else 1.0
    return _Constants(*(row(c).reshape(shape[0], -1) for c in (p.decay_mem, g, p.threshold,
                                                        p.v_reset)))


def norm_lif_pool(y: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                  running: Optional[Tuple[Tensor, Tensor]], v0: Tensor, lif_params,
                  spec: BlockSpec) -> Tuple[Tensor, Tensor]:
    """``(pooled spikes [T, B, C, H // k, W // k], final membrane [B, C, H, W])`` of
    ``y [T, B, C, H, W]`` through the norm, the neurons and the pooling (module docstring).
    ``running``: the running ``(mean, var)`` buffers, updated in place when
    ``spec.batch_stats`` (None without them); ``v0``: the initial membrane (no gradient).
    Every array is checked here: the kernels index by the shapes they are given."""
    where = "norm_lif_pool"
    guards.sequence(y, "y", rank=5)
    if y.dtype not in _F or y.device.type != "cpu" or not y.is_contiguous():
        raise ValueError(f"{where}: y must be a contiguous float32/float64 CPU tensor, got "
                         f"{y.dtype} on {y.device}, contiguous={y.is_contiguous()}")
    T, B, C, H, W = y.shape
    if not (spec.k >= 1 and H >= spec.k and W >= spec.k):
        raise ValueError(f"{where}: a {spec.k}x{spec.k} window does not fit a {H}x{W} map")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            guards.shape_is(t, (C,), name, where)
    if running is not None:
        for name, t in zip(("running_mean", "running_var"), running):
            guards.shape_is(t, (C,), name, where)
    elif not spec.batch_stats:
        raise ValueError(f"{where}: normalising with running statistics needs them")
    guards.shape_is(v0, (B, C, H, W), "v0", where)
    if v0.requires_grad:
        raise ValueError(f"{where}: the initial membrane's gradient is not computed here")
    if spec.kind not in SURROGATE_IDS.values() or spec.reset not in RESET_IDS.values():
        raise ValueError(f"{where}: unknown surrogate id {spec.kind} or reset id {spec.reset}")
    consts = constants(lif_params, (C, H, W), y.dtype)
    return _NormLIFPool.apply(y, weight, bias, v0, spec, consts, running)
