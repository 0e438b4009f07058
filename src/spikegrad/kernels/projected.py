"""A synaptic projection and the spiking neurons it feeds, fused: ``Linear -> LIF`` keeping one
``[T, B, N]`` sequence for backward (the membrane) or, chunk by chunk in time, none.

The unfused pair keeps, per training step, the projection's output ``y = x W^T + b`` (the
neurons' input current), the membrane sequence ``u`` (for the surrogate in backward) and, in
backward, its gradient ``g_u``: three ``[T, B, N]`` sequences besides the output spikes.

Kept steps (the leading ``keep`` fraction of the sequence, in whole chunks): the projection
writes their input current into one array, the neurons' forward writes the membrane over it
and backward writes the input-current gradient over the membrane, in one kernel call each:
one sequence instead of three, and fewer passes over memory than the unfused pair (A512,
in-process: 23 -> 18 ms, 67 -> 37 MiB). The gradient goes elsewhere, chunk by chunk, when the
graph is retained for another backward (``retain_graph``), which needs the membrane again.

Recomputed steps (the rest): the forward runs chunk by chunk (``Tc`` steps: project the
chunk's rows, event-driven or by a GEMM, into one chunk buffer, then step the neurons) and
keeps only the neuron states at each chunk's start (``[B, N]`` per chunk). Backward walks the
chunks in reverse: it recomputes the chunk's input current and, in place over it, its
membrane from the saved start state (bit-identical to the forward: same kernels, same order),
runs the adjoint over the chunk with the adjoint states carried from the later chunk, and
adds the chunk's share of ``dW``, ``db`` and ``dX`` (``dX`` only when ``x`` needs a gradient,
e.g. a hidden layer's spikes). With every step recomputed (``keep = 0``) a training step holds
the output spikes plus three chunk buffers; time: one more projection and neuron forward per
step. Measured on A512 (Linear 512->512 at p = 0.1 + LIF, B=16, T=500; 2 cores; `make
bench`): 68 -> 25 MiB (peak RSS of the step), 23 -> 34 ms.

States equal the unfused numba path's up to the order of the projection's float sums (a GEMM
over a chunk's rows may round otherwise than one over all rows: it does on AVX2 kernels, not
on this machine's AVX-512 ones), spikes wherever no membrane is within that rounding of the
threshold; gradients equal it up to the order of float summation (the weight and bias
gradients are summed chunk by chunk).

A recurrent layer (:class:`ProjectedRecurrentLIF`) runs the same way (recomputed chunks start
from their saved states and the previous step's spikes; with a synapse the kept steps' backward
goes chunk by chunk, out of place), and backward carries, besides the adjoint states, the
gradient that reaches the previous segment's last spikes through ``W_rec``. Workload C (Linear
256 -> recurrent LIF 256, B = 32, T = 1000; `make bench`): membrane kept 126 -> 64 MiB at the
unfused pair's time; everything recomputed 44 MiB, 2x the time (a second dense projection
and recurrent forward; benchmarks/README.md).

Used by :class:`spikegrad.nn.Sequential` (see its ``recompute``) for a ``Linear`` followed by
a spiking ``LIF`` (or a ``Recurrent`` LIF) when the LIF runs the numba kernels, none of its
constants (time constants, threshold, reset potential) is trained and its initial state needs
no gradient (their gradients are sums over the whole sequence, which the unfused path
computes); anything else runs unfused.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import aligned, guards, numba_event, ops
from .event_linear import plan_with_events
from .leaky import recurrent_weight_grad
from .numba_leaky import ChunkedLoop, grad_rows
from .spec import Spec

# Rows (time steps x batch) of the projection per chunk: about 1-2 MiB of float32 per chunk
# buffer for a few hundred neurons.
CHUNK_ROWS = 1024


def chunk_steps(T: int, B: int) -> int:
    """Time steps per chunk: ``CHUNK_ROWS // B`` (at least one)."""
    return max(1, min(T, CHUNK_ROWS // max(1, B)))


class Projection:
    """``x W^T + b`` for a range of rows of ``x2 [T*B, in]``: from the active inputs (compiled
    event kernels) or by a GEMM, as :func:`spikegrad.kernels.event_linear.event_linear` with
    the same backend would choose."""

    def __init__(self, x2: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str):
        # an autograd Function's forward runs without grad: decide as the Linear layer would in
        # a training step (the crossover differs between training and inference)
        with torch.enable_grad():
            _, events = plan_with_events(x2, weight, backend)
        if events is not None and len(events.tensors) != 2:  # the embedding_bag fallback
            events = None
        self.x2, self.weight, self.bias = x2, weight.detach(), bias
        self.events = events
        self.rowptr = events.tensors[0].numpy() if events is not None else None
        self.cols = events.tensors[1].numpy() if events is not None else None
        self.wtb = numba_event.pack_weight(self.weight) if events is not None else None

    def __call__(self, r0: int, r1: int, out: np.ndarray) -> None:
        """Rows ``r0..r1`` of the projection into ``out [(r1 - r0) * out]``."""
        n_out = self.weight.shape[0]
        if self.events is not None:
            numba_event.forward(self.rowptr[r0:r1 + 1], self.cols, self.weight, self.wtb, out)
        else:
            y = torch.from_numpy(out).view(r1 - r0, n_out)
            torch.mm(self.x2[r0:r1].detach(), self.weight.t(), out=y)
        if self.bias is not None:
            y = torch.from_numpy(out).view(r1 - r0, n_out)
            y.add_(self.bias.detach())

    def add_weight_grad(self, g: np.ndarray, r0: int, r1: int, acc) -> None:
        """``acc += g^T x[r0:r1]`` for ``g [(r1 - r0), out]``."""
        if self.events is not None:
            numba_event.accumulate_weight_grad(g, self.rowptr[r0:r1 + 1], self.cols, acc)
        else:
            acc.addmm_(torch.from_numpy(g).t(), self.x2[r0:r1].detach())

    def weight_grad_accumulator(self):
        n_out, n_in = self.weight.shape
        if self.events is not None:
            return numba_event.blocked_zeros(n_out, n_in, self.weight.dtype)
        return torch.zeros(n_out, n_in, dtype=self.weight.dtype)

    def finish_weight_grad(self, acc) -> Tensor:
        if self.events is not None:
            return numba_event.unblock(acc, self.weight.shape[0])
        return acc


class Saved:
    """What a fused pair's forward leaves for its backward besides tensors: the projection,
    the neuron loop, the chunk plan, the chunks' start states and the kept membrane."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def lif_pair_forward(spec, linear_backend: str, keep: float, x: Tensor, weight: Tensor,
                     bias: Optional[Tensor], v0: Tensor, i0: Optional[Tensor], a_mem, a_syn,
                     theta, v_reset):
    """``(zs, v_T, i_T, saved)`` of :class:`ProjectedLIF` (``saved``: a :class:`Saved`)."""
    with torch.no_grad():
        T, B, n_in = x.shape
        N = weight.shape[0]
        M = B * N
        proj = Projection(x.detach().reshape(T * B, n_in), weight, bias, linear_backend)
        loop = ChunkedLoop(spec, (B, N), x.dtype, a_mem, a_syn, theta, v_reset)
        Tc, chunks, n_kept, T_kept = chunk_plan(T, B, keep)
        v = loop.state(v0, v0)
        i = loop.state(i0, v0) if spec.has_syn else np.zeros(1, loop.F)
        zs = torch.empty(T, B, N, dtype=x.dtype)
        zs_np = zs.view(T, M).numpy()
        i_scratch = aligned.empty((Tc, M), loop.F) if spec.has_syn else None
        # the kept steps: their input current in one call, then their membrane over it (the
        # synaptic current sequence the kernel writes goes to a chunk buffer: chunk by chunk)
        u_kept = aligned.empty((T_kept, M), loop.F)
        if T_kept:
            proj(0, T_kept * B, u_kept)
        for t0, t1 in ([(0, T_kept)] if not spec.has_syn and T_kept else chunks[:n_kept]):
            loop.forward(u_kept[t0:t1], v, i, zs_np[t0:t1], True,
                         i_scratch[:t1 - t0] if spec.has_syn else None)
        # the others chunk by chunk, through one chunk buffer, keeping each chunk's start state
        buf = aligned.empty((Tc, M), loop.F) if n_kept < len(chunks) else None
        starts = [None] * n_kept
        for t0, t1 in chunks[n_kept:]:
            starts.append((v.copy(), i.copy()))
            proj(t0 * B, t1 * B, buf[:t1 - t0])
            loop.forward(buf[:t1 - t0], v, i, zs_np[t0:t1], False,
                         i_scratch[:t1 - t0] if spec.has_syn else None)
        saved = Saved(proj=proj, loop=loop, Tc=Tc, shape=(T, B, n_in, N), starts=starts,
                      chunks=chunks, n_kept=n_kept, u_kept=u_kept)
        v_T = torch.from_numpy(v).view(B, N)
        i_T = torch.from_numpy(i).view(B, N) if spec.has_syn else None
    return zs, v_T, i_T, saved


def lif_pair_backward(spec, saved: Saved, weight: Tensor, need, g_zs, g_vT, g_iT,
                      inplace: bool):
    """``(gx, gw, gb)`` (None where ``need`` is False) of :class:`ProjectedLIF`; with
    ``inplace`` the kept steps' gradient is written over their saved membrane."""
    proj, loop, Tc = saved.proj, saved.loop, saved.Tc
    T, B, n_in, N = saved.shape
    M = B * N
    dtype = weight.dtype
    if g_zs is None:
        g_zs = torch.zeros((), dtype=dtype)
    gys = g_zs.to(dtype).expand(T, B, N).reshape(T, M)  # a view where it can be
    const = gys.stride(0) == 0 and T > 1                 # the same for every step
    gys_np = grad_rows(gys)
    gv = loop.state(g_vT, weight) if g_vT is not None else np.zeros(M, loop.F)
    gi = loop.state(g_iT, weight) if g_iT is not None else np.zeros(M, loop.F)
    need_x, need_w, need_b = need
    gx = torch.empty(T * B, n_in, dtype=dtype) if need_x else None
    acc = proj.weight_grad_accumulator() if need_w else None
    gb = torch.zeros(N, dtype=dtype) if need_b else None
    chunks, n_kept = saved.chunks, saved.n_kept
    segments = backward_segments(chunks, n_kept, saved.starts, inplace)
    if not inplace or n_kept < len(chunks):
        g_buf = aligned.empty((Tc, M), loop.F)
        gi_buf = aligned.empty((Tc, M), loop.F) if spec.has_syn else None
    u_buf = aligned.empty((Tc, M), loop.F) if n_kept < len(chunks) else None
    for t0, t1, start in reversed(segments):
        n = t1 - t0
        gy = gys_np if const else gys_np[t0:t1]
        if start is None and inplace:
            g_in = loop.backward(gy, saved.u_kept[t0:t1], gv, gi, None, None)
        else:
            if start is None:
                u = saved.u_kept[t0:t1]
            else:
                # the chunk's membrane again, from its start state: same kernels, values
                u = u_buf[:n]
                v, i = start
                proj(t0 * B, t1 * B, u)
                loop.forward(u, v.copy(), i.copy(), g_buf[:n], True,
                             gi_buf[:n] if spec.has_syn else None)
            g_in = loop.backward(gy, u, gv, gi, g_buf[:n],
                                 gi_buf[:n] if spec.has_syn else None)
        g2 = g_in.reshape(n * B, N)
        if need_w:
            proj.add_weight_grad(g2, t0 * B, t1 * B, acc)
        if need_b:
            gb += torch.from_numpy(g2).sum(0)
        if need_x:
            torch.mm(torch.from_numpy(g2), weight.detach(), out=gx[t0 * B:t1 * B])
    gw = proj.finish_weight_grad(acc) if need_w else None
    if need_x:
        gx = gx.view(T, B, n_in)
    return gx, gw, gb


class ProjectedLIF(ops.FusedFunction):
    """``(spec, linear_backend, keep, x, weight, bias, v0, i0, a_mem, a_syn, theta, v_reset)``
    -> ``(zs [T, B, N], v_T [B, N], i_T, saved)`` of LIF neurons fed by
    ``x [T, B, in] W^T + b``; ``saved`` (a :class:`Saved`, not a tensor) is for backward."""

    @staticmethod
    def forward(spec, linear_backend: str, keep: float, x: Tensor, weight: Tensor,
                bias: Optional[Tensor], v0: Tensor, i0: Optional[Tensor], a_mem, a_syn, theta,
                v_reset):
        return lif_pair_forward(spec, linear_backend, keep, x, weight, bias, v0, i0, a_mem,
                                a_syn, theta, v_reset)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.spec, ctx.saved = inputs[0], output[3]
        ctx.save_for_backward(inputs[4])

    @staticmethod
    def backward(ctx, g_zs, g_vT, g_iT, _g_saved):
        weight, = ctx.saved_tensors
        # the kept steps' input-current gradient goes over their membrane, in one call, unless
        # the graph is kept for another backward (which needs the membrane again)
        gx, gw, gb = lif_pair_backward(ctx.spec, ctx.saved, weight, ctx.needs_input_grad[3:6],
                                       g_zs, g_vT, g_iT, inplace=not _graph_retained())
        return None, None, None, gx, gw, gb, None, None, None, None, None, None


def chunk_plan(T: int, B: int, keep: float):
    """``(Tc, chunks, n_kept, T_kept)``: steps per chunk, the chunks' ``(t0, t1)``, how many
    leading chunks keep their membrane (``keep``: the fraction of the sequence, rounded down
    to whole chunks; 1 keeps all) and the steps they cover."""
    Tc = chunk_steps(T, B)
    chunks = [(t0, min(T, t0 + Tc)) for t0 in range(0, T, Tc)]
    n_kept = len(chunks) if keep >= 1 else int(keep * len(chunks))
    return Tc, chunks, n_kept, chunks[n_kept - 1][1] if n_kept else 0


def backward_segments(chunks, n_kept: int, starts, whole: bool):
    """The segments backward walks (in reverse): ``(t0, t1, start state)``, the start state
    None for kept steps, which form one segment with ``whole`` (gradient written over the
    membrane in one call) and stay chunks otherwise."""
    T_kept = chunks[n_kept - 1][1] if n_kept else 0
    kept = ([(0, T_kept)] if T_kept else []) if whole else chunks[:n_kept]
    return [(t0, t1, None) for t0, t1 in kept] + [
        (t0, t1, starts[k]) for k, (t0, t1) in enumerate(chunks) if k >= n_kept]


def _graph_retained() -> bool:
    """Whether the running backward keeps the graph for another one (``retain_graph``)."""
    return torch._C._autograd._get_current_graph_task_keep_graph()


def projected_lif(xs: Tensor, weight: Tensor, bias: Optional[Tensor], v0: Tensor,
                  i0: Optional[Tensor], p, linear_backend: str = "auto", keep: float = 0.0):
    """``(zs [T, B, N], v_T, i_T)`` of LIF neurons with parameters ``p`` (LIFParams) fed by
    ``xs [T, B, in] W^T + b``; the caller asks the kernel registry first (``projected_lif``)."""
    spec = Spec(spiking=True, reset=p.reset, detach_reset=p.detach_reset,
                scale_input=bool(p.scale_input), has_syn=p.decay_syn is not None,
                surrogate=p.surrogate, backend="numba")
    # the states must be [B, N] already: broadcasting one would hide a batch mismatch
    guards.projected_call(xs, weight, bias, v0, i0, spec.has_syn, _consts(p))
    if ops.compiling(xs):  # torch.compile, torch.export: one opaque operator
        return pair_operator(spec, linear_backend, keep, xs, weight, bias, v0, i0,
                             p.decay_mem, p.decay_syn, p.threshold, p.v_reset)
    return ProjectedLIF.apply(spec, linear_backend, keep, xs, weight, bias, v0, i0, p.decay_mem,
                              p.decay_syn, p.threshold, p.v_reset)[:3]


class ProjectedRecurrentLIF(ops.FusedFunction):
    """``(zs [T, B, N], v_T, i_T)`` of recurrent LIF neurons (``W_rec``) fed by ``x W^T + b``,
    like :class:`ProjectedLIF`: the kept steps in one call of the recurrent kernels of
    :mod:`spikegrad.kernels.numba_leaky` (membrane over the input current; without a synapse
    the gradient over the membrane), the others chunk by chunk from their saved start (states
    and the previous step's spikes). Backward carries, besides the adjoint states, the
    gradient that reaches the previous segment's last spikes through the recurrence."""

    @staticmethod
    def forward(spec, linear_backend: str, keep: float, x: Tensor, weight: Tensor,
                bias: Optional[Tensor], w_rec: Tensor, y0: Tensor, v0: Tensor,
                i0: Optional[Tensor], a_mem, a_syn, theta, v_reset):
        return recurrent_pair_forward(spec, linear_backend, keep, x, weight, bias, w_rec, y0,
                                      v0, i0, a_mem, a_syn, theta, v_reset)

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, weight, w_rec, y0 = inputs[0], inputs[4], inputs[6], inputs[7]
        ctx.spec, ctx.saved = spec, output[3]
        ctx.save_for_backward(weight, w_rec, output[0], y0)

    @staticmethod
    def backward(ctx, g_zs, g_vT, g_iT, _g_saved):
        weight, w_rec, zs, y0 = ctx.saved_tensors
        # the kept steps' gradient over their membrane in one call (without a synapse: the
        # synaptic gradient's first step would be lost) unless the graph is retained
        inplace = not ctx.spec.has_syn and not _graph_retained()
        gx, gw, gb, g_wrec, g_y0 = recurrent_pair_backward(
            ctx.spec, ctx.saved, weight, w_rec, zs, y0, ctx.needs_input_grad[3:8], g_zs, g_vT,
            g_iT, inplace)
        return (None, None, None, gx, gw, gb, g_wrec, g_y0,
                None, None, None, None, None, None)


def recurrent_pair_forward(spec, linear_backend: str, keep: float, x: Tensor, weight: Tensor,
                           bias: Optional[Tensor], w_rec: Tensor, y0: Tensor, v0: Tensor,
                           i0: Optional[Tensor], a_mem, a_syn, theta, v_reset):
    """``(zs, v_T, i_T, saved)`` of :class:`ProjectedRecurrentLIF` (``saved``: a
    :class:`Saved`)."""
    from .numba_leaky import forward_scan_rec
    T, B, n_in = x.shape
    N = weight.shape[0]
    proj = Projection(x.detach().reshape(T * B, n_in), weight, bias, linear_backend)
    Tc, chunks, n_kept, T_kept = chunk_plan(T, B, keep)
    u_kept = torch.empty(T_kept, B, N, dtype=x.dtype)
    zs = torch.empty(T, B, N, dtype=x.dtype)
    v = v0.detach().to(x.dtype).clone()
    i = i0.detach().to(x.dtype).clone() if spec.has_syn else None
    y_prev = y0.detach().to(x.dtype)
    with torch.no_grad():
        if T_kept:
            proj(0, T_kept * B, u_kept.view(T_kept, B * N).numpy())
            _, _, _, v, i = forward_scan_rec(spec, u_kept, v, i, a_mem, a_syn, theta,
                                             v_reset, w_rec, y_prev, store_u=True,
                                             inplace=True, ys_out=zs[:T_kept])
            y_prev = zs[T_kept - 1]
        starts = [None] * n_kept
        buf = aligned.empty((Tc, B * N), u_kept.numpy().dtype) if n_kept < len(chunks) else None
        for t0, t1 in chunks[n_kept:]:
            starts.append((v, i, y_prev))
            proj(t0 * B, t1 * B, buf[:t1 - t0])
            xc = torch.from_numpy(buf[:t1 - t0]).view(t1 - t0, B, N)
            _, _, _, v, i = forward_scan_rec(spec, xc, v, i, a_mem, a_syn, theta, v_reset,
                                             w_rec, y_prev, store_u=False,
                                             ys_out=zs[t0:t1])
            y_prev = zs[t1 - 1]
    saved = Saved(proj=proj, Tc=Tc, starts=starts, chunks=chunks, n_kept=n_kept,
                  u_kept=u_kept, consts=(a_mem, a_syn, theta, v_reset), shape=(T, B, n_in, N))
    return zs, v, i, saved


def recurrent_pair_backward(spec, saved: Saved, weight: Tensor, w_rec: Tensor, zs: Tensor,
                            y0: Tensor, need, g_zs, g_vT, g_iT, inplace: bool):
    """``(gx, gw, gb, g_wrec, g_y0)`` (None where ``need`` is False) of
    :class:`ProjectedRecurrentLIF`; with ``inplace`` the kept steps' gradient is written over
    their saved membrane."""
    from .numba_leaky import backward_scan_rec, forward_scan_rec
    proj, Tc = saved.proj, saved.Tc
    a_mem, a_syn, theta, v_reset = saved.consts
    T, B, n_in, N = saved.shape
    dtype = weight.dtype
    if g_zs is None:
        g_zs = torch.zeros((), dtype=dtype)
    g_zs = g_zs.to(dtype).expand(T, B, N)
    gv = (g_vT.to(dtype) if g_vT is not None else torch.zeros(B, N, dtype=dtype))
    gi = (g_iT.to(dtype) if g_iT is not None else torch.zeros(B, N, dtype=dtype)
          if spec.has_syn else None)
    need_x, need_w, need_b, need_wrec, need_y0 = need
    gx = torch.empty(T * B, n_in, dtype=dtype) if need_x else None
    acc = proj.weight_grad_accumulator() if need_w else None
    gb = torch.zeros(N, dtype=dtype) if need_b else None
    g_wrec = torch.zeros_like(w_rec) if need_wrec else None
    chunks, n_kept = saved.chunks, saved.n_kept
    y_before = lambda t0: y0.to(dtype) if t0 == 0 else zs[t0 - 1]  # noqa: E731
    segments = backward_segments(chunks, n_kept, saved.starts, inplace)
    buf = (aligned.empty((Tc, B * N), torch.empty(0, dtype=dtype).numpy().dtype)
           if n_kept < len(chunks) else None)
    g_back = None  # gradient reaching the segment's last spikes from the next one
    with torch.no_grad():
        for t0, t1, start in reversed(segments):
            n = t1 - t0
            if start is None:
                u, y_prev = saved.u_kept[t0:t1], y_before(t0)
            else:
                v, i, y_prev = start
                proj(t0 * B, t1 * B, buf[:n])
                xc = torch.from_numpy(buf[:n]).view(n, B, N)
                _, u, _, _, _ = forward_scan_rec(spec, xc, v, i, a_mem, a_syn, theta,
                                                 v_reset, w_rec, y_prev, store_u=True)
            gys = g_zs[t0:t1]
            if g_back is not None:
                gys = gys.clone()
                gys[-1] += g_back
            gu, gi_all, g_in0 = backward_scan_rec(spec, gys, u, theta, v_reset, a_mem,
                                                  a_syn, gv, gi, w_rec,
                                                  inplace=start is None and inplace)
            gv = a_mem * gu[0]
            if spec.has_syn:
                g_in = gi_all
                gi = a_syn * gi_all[0]
            else:
                g_in = gu.mul_(1.0 - a_mem) if spec.scale_input else gu
            g_back = g_in0 @ w_rec
            g2 = g_in.reshape(n * B, N)
            if need_w:
                proj.add_weight_grad(g2.contiguous().numpy(), t0 * B, t1 * B, acc)
            if need_b:
                gb += g2.sum(0)
            if need_x:
                torch.mm(g2, weight.detach(), out=gx[t0 * B:t1 * B])
            if need_wrec:
                g_wrec += recurrent_weight_grad(g_in, zs[t0:t1], y_prev)
    gw = proj.finish_weight_grad(acc) if need_w else None
    if need_x:
        gx = gx.view(T, B, n_in)
    return gx, gw, gb, g_wrec, g_back if need_y0 else None


def projected_recurrent_lif(xs: Tensor, weight: Tensor, bias: Optional[Tensor],
                            w_rec: Tensor, y0: Tensor, v0: Tensor, i0: Optional[Tensor], p,
                            linear_backend: str = "auto", keep: float = 0.0):
    """``(zs [T, B, N], v_T, i_T)`` of recurrent LIF neurons (parameters ``p``, recurrent
    weight ``w_rec [N, N]``, previous output ``y0 [B, N]``) fed by ``xs [T, B, in] W^T + b``;
    the caller asks the kernel registry first (``projected_lif``)."""
    spec = Spec(spiking=True, reset=p.reset, detach_reset=p.detach_reset,
                scale_input=bool(p.scale_input), has_syn=p.decay_syn is not None,
                surrogate=p.surrogate, backend="numba")
    guards.projected_call(xs, weight, bias, v0, i0, spec.has_syn, _consts(p), w_rec, y0)
    if ops.compiling(xs):  # torch.compile, torch.export: one opaque operator
        return pair_operator(spec, linear_backend, keep, xs, weight, bias, v0, i0,
                             p.decay_mem, p.decay_syn, p.threshold, p.v_reset, w_rec, y0)
    return ProjectedRecurrentLIF.apply(spec, linear_backend, keep, xs, weight, bias, w_rec,
                                       y0, v0, i0, p.decay_mem, p.decay_syn,
                                       p.threshold, p.v_reset)[:3]


def _consts(p):
    return (("decay_mem", p.decay_mem), ("decay_syn", p.decay_syn),
            ("threshold", p.threshold), ("v_reset", p.v_reset))


# --- the pairs as registered operators (torch.compile, torch.export: kernels.ops) -----------
#
# A pair's forward leaves Python objects for its backward (the projection's active inputs, the
# chunk plan); as operators it hands over tensors instead: the kept membrane ``[T_kept, B*N]``
# and the start states of the recomputed chunks ``[chunks, B*N]``. The backward operator
# plans the projection again from ``x`` (the same decision: it depends on ``x`` alone) and
# never writes over the saved membrane (an operator does not mutate its inputs).

def _pair_plan(x: Tensor, keep: float) -> Tuple[int, int]:
    """``(T_kept, recomputed chunks)`` of a pair over ``x [T, B, in]``."""
    _, chunks, n_kept, T_kept = chunk_plan(x.shape[0], x.shape[1], keep)
    return T_kept, len(chunks) - n_kept


def _training_weight(weight: Tensor) -> Tensor:
    # the projection plans its path as a training step would (weight requiring grad); below
    # autograd, inside an operator, the weight never does
    return weight.detach().requires_grad_(True)


@torch.library.custom_op("spikegrad::lif_pair", mutates_args=())
def lif_pair_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], v0: Tensor, i0: Optional[Tensor],
             a_mem: Optional[Tensor], a_syn: Optional[Tensor], theta: Optional[Tensor],
             v_reset: Optional[Tensor], numbers: List[float], spec: str, linear_backend: str,
             keep: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(zs, v_T, i_T, u_kept, starts_v, starts_i)`` of
    :func:`lif_pair_forward`."""
    sp = ops.spec_of(spec)
    consts = ops.join_constants((a_mem, a_syn, theta, v_reset), numbers)
    zs, v_T, i_T, saved = lif_pair_forward(sp, linear_backend, keep, x, _training_weight(weight),
                                           bias, v0, i0, *consts)
    M = v_T.numel()
    starts = saved.starts[saved.n_kept:]
    sv = np.stack([v for v, _ in starts]) if starts else np.empty((0, M), saved.loop.F)
    si = np.stack([i for _, i in starts]) if starts else np.empty((0, M), saved.loop.F)
    return (zs, v_T.clone(), i_T.clone() if sp.has_syn else x.new_empty(0),
            torch.from_numpy(saved.u_kept), torch.from_numpy(sv),
            torch.from_numpy(si) if sp.has_syn else x.new_empty(0))


@lif_pair_op.register_fake
def _(x, weight, bias, v0, i0, a_mem, a_syn, theta, v_reset, numbers, spec, linear_backend,
      keep):
    sp = ops.spec_of(spec)
    T, B, _ = x.shape
    N = weight.shape[0]
    T_kept, n_rec = _pair_plan(x, keep)
    return (x.new_empty(T, B, N), x.new_empty(B, N),
            x.new_empty(B, N) if sp.has_syn else x.new_empty(0), x.new_empty(T_kept, B * N),
            x.new_empty(n_rec, B * N), x.new_empty(n_rec, B * N) if sp.has_syn else x.new_empty(0))


@torch.library.custom_op("spikegrad::lif_pair_backward", mutates_args=())
def lif_pair_backward_op(g_zs: Optional[Tensor], g_vT: Optional[Tensor], g_iT: Optional[Tensor],
                      x: Tensor, weight: Tensor, bias: Optional[Tensor], u_kept: Tensor,
                      starts_v: Tensor, starts_i: Tensor, consts: List[Optional[Tensor]],
                      numbers: List[float], spec: str, linear_backend: str, keep: float,
                      need: List[bool]) -> List[Tensor]:
    """``[gx, gw, gb]`` (``[0]`` where not needed) by
    :func:`lif_pair_backward`."""
    sp = ops.spec_of(spec)
    T, B, n_in = x.shape
    N = weight.shape[0]
    a_mem, a_syn, theta, v_reset = ops.join_constants(consts, numbers)
    loop = ChunkedLoop(sp, (B, N), x.dtype, a_mem, a_syn, theta, v_reset)
    Tc, chunks, n_kept, _ = chunk_plan(T, B, keep)
    no_i = np.zeros(1, loop.F)
    starts = [None] * n_kept + [
        (starts_v[k].numpy(), starts_i[k].numpy() if sp.has_syn else no_i)
        for k in range(starts_v.shape[0])]
    proj = Projection(x.reshape(T * B, n_in), _training_weight(weight), bias, linear_backend)
    saved = Saved(proj=proj, loop=loop, Tc=Tc, shape=(T, B, n_in, N), starts=starts,
                  chunks=chunks, n_kept=n_kept, u_kept=u_kept.numpy())
    grads = lif_pair_backward(sp, saved, weight, need, g_zs, g_vT, g_iT, inplace=False)
    return [ops.empty_for_none(g, x) for g in grads]


@lif_pair_backward_op.register_fake
def _(g_zs, g_vT, g_iT, x, weight, bias, u_kept, starts_v, starts_i, consts, numbers, spec,
      linear_backend, keep, need):
    likes = (x, weight, bias)
    return [torch.empty_like(t) if n else x.new_empty(0) for n, t in zip(need, likes)]


def _lif_pair_setup(ctx, inputs, output):
    x, weight, bias, v0, i0, *consts, numbers, spec, linear_backend, keep = inputs
    _, _, _, u_kept, sv, si = output
    ctx.need = ops.needs(x, weight, bias)
    ctx.args = (numbers, spec, linear_backend, keep)
    ctx.save_for_backward(x, weight, bias, u_kept, sv, si, *consts)


def _lif_pair_backward(ctx, g_zs, g_vT, g_iT, *_):
    x, weight, bias, u_kept, sv, si, *consts = ctx.saved_tensors
    has_syn = ops.spec_of(ctx.args[1]).has_syn
    g = lif_pair_backward_op(g_zs, g_vT, g_iT if has_syn else None, x, weight, bias, u_kept, sv, si,
                          consts, *ctx.args, ctx.need)
    gx, gw, gb = [t if n else None for t, n in zip(g, ctx.need)]
    return (gx, gw, gb) + (None,) * 10


lif_pair_op.register_autograd(_lif_pair_backward, setup_context=_lif_pair_setup)


@torch.library.custom_op("spikegrad::recurrent_pair", mutates_args=())
def recurrent_pair_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], w_rec: Tensor, y0: Tensor,
                   v0: Tensor, i0: Optional[Tensor], a_mem: Optional[Tensor],
                   a_syn: Optional[Tensor], theta: Optional[Tensor], v_reset: Optional[Tensor],
                   numbers: List[float], spec: str, linear_backend: str, keep: float
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(zs, v_T, i_T, u_kept, starts_v, starts_i)`` of
    :func:`recurrent_pair_forward` (states ``[B, N]``)."""
    sp = ops.spec_of(spec)
    consts = ops.join_constants((a_mem, a_syn, theta, v_reset), numbers)
    zs, v_T, i_T, saved = recurrent_pair_forward(sp, linear_backend, keep, x,
                                                 _training_weight(weight), bias, w_rec, y0, v0,
                                                 i0, *consts)
    B, N = v_T.shape
    starts = saved.starts[saved.n_kept:]
    sv = torch.stack([v for v, _, _ in starts]) if starts else x.new_empty(0, B, N)
    si = (torch.stack([i for _, i, _ in starts]) if starts else x.new_empty(0, B, N))
    return (zs, v_T.clone(), i_T.clone() if sp.has_syn else x.new_empty(0),
            saved.u_kept, sv, si if sp.has_syn else x.new_empty(0))


@recurrent_pair_op.register_fake
def _(x, weight, bias, w_rec, y0, v0, i0, a_mem, a_syn, theta, v_reset, numbers, spec,
      linear_backend, keep):
    sp = ops.spec_of(spec)
    T, B, _ = x.shape
    N = weight.shape[0]
    T_kept, n_rec = _pair_plan(x, keep)
    return (x.new_empty(T, B, N), x.new_empty(B, N),
            x.new_empty(B, N) if sp.has_syn else x.new_empty(0), x.new_empty(T_kept, B, N),
            x.new_empty(n_rec, B, N), x.new_empty(n_rec, B, N) if sp.has_syn else x.new_empty(0))


@torch.library.custom_op("spikegrad::recurrent_pair_backward", mutates_args=())
def recurrent_pair_backward_op(g_zs: Optional[Tensor], g_vT: Optional[Tensor],
                            g_iT: Optional[Tensor], x: Tensor, weight: Tensor,
                            bias: Optional[Tensor], w_rec: Tensor, y0: Tensor, zs: Tensor,
                            u_kept: Tensor, starts_v: Tensor, starts_i: Tensor,
                            consts: List[Optional[Tensor]], numbers: List[float], spec: str,
                            linear_backend: str, keep: float, need: List[bool]
                            ) -> List[Tensor]:
    """``[gx, gw, gb, g_wrec, g_y0]`` (``[0]`` where not needed) by
    :func:`recurrent_pair_backward`."""
    sp = ops.spec_of(spec)
    T, B, n_in = x.shape
    N = weight.shape[0]
    Tc, chunks, n_kept, _ = chunk_plan(T, B, keep)
    starts = [None] * n_kept + [
        (starts_v[k], starts_i[k] if sp.has_syn else None, y0 if t0 == 0 else zs[t0 - 1])
        for k, (t0, _) in enumerate(chunks[n_kept:])]
    proj = Projection(x.reshape(T * B, n_in), _training_weight(weight), bias, linear_backend)
    saved = Saved(proj=proj, Tc=Tc, starts=starts, chunks=chunks, n_kept=n_kept,
                  u_kept=u_kept, consts=tuple(ops.join_constants(consts, numbers)),
                  shape=(T, B, n_in, N))
    grads = recurrent_pair_backward(sp, saved, weight, w_rec, zs, y0, need, g_zs, g_vT, g_iT,
                                    inplace=False)
    return [ops.empty_for_none(g, x) for g in grads]


@recurrent_pair_backward_op.register_fake
def _(g_zs, g_vT, g_iT, x, weight, bias, w_rec, y0, zs, u_kept, starts_v, starts_i, consts,
      numbers, spec, linear_backend, keep, need):
    likes = (x, weight, bias, w_rec, y0)
    return [torch.empty_like(t) if n else x.new_empty(0) for n, t in zip(need, likes)]


def _recurrent_pair_setup(ctx, inputs, output):
    (x, weight, bias, w_rec, y0, v0, i0, *consts, numbers, spec, linear_backend,
     keep) = inputs
    zs, _, _, u_kept, sv, si = output
    ctx.need = ops.needs(x, weight, bias, w_rec, y0)
    ctx.args = (numbers, spec, linear_backend, keep)
    ctx.save_for_backward(x, weight, bias, w_rec, y0, zs, u_kept, sv, si, *consts)


def _recurrent_pair_backward(ctx, g_zs, g_vT, g_iT, *_):
    x, weight, bias, w_rec, y0, zs, u_kept, sv, si, *consts = ctx.saved_tensors
    has_syn = ops.spec_of(ctx.args[1]).has_syn
    g = recurrent_pair_backward_op(g_zs, g_vT, g_iT if has_syn else None, x, weight, bias, w_rec,
                                y0, zs, u_kept, sv, si, consts, *ctx.args, ctx.need)
    gx, gw, gb, g_wrec, g_y0 = [t if n else None for t, n in zip(g, ctx.need)]
    return (gx, gw, gb, g_wrec, g_y0) + (None,) * 10


recurrent_pair_op.register_autograd(_recurrent_pair_backward, setup_context=_recurrent_pair_setup)


def pair_operator(spec: Spec, linear_backend: str, keep: float, xs, weight, bias, v0, i0,
                  a_mem, a_syn, theta, v_reset, w_rec=None, y0=None):
    """A fused pair (:func:`projected_lif`, or with ``w_rec`` :func:`projected_recurrent_lif`)
    as its operator: ``(zs, v_T, i_T)``."""
    tensors, numbers = ops.split_constants((a_mem, a_syn, theta, v_reset))
    key = ops.spec_key(spec)
    if w_rec is None:
        out = lif_pair_op(xs, weight, bias, v0, i0, *tensors, numbers, key, linear_backend,
                       float(keep))
    else:
        out = recurrent_pair_op(xs, weight, bias, w_rec, y0, v0, i0, *tensors, numbers, key,
                             linear_backend, float(keep))
    return out[0], out[1], (out[2] if spec.has_syn else None)
