"""Fused sequences for the leaky neuron family (LIF, IF, LI, optional recurrence).

One custom autograd Function runs a whole sequence forward and backward without a per-step
autograd graph. Its forward repeats the reference loop (``functional.scan`` over ``lif_update``
/ ``li_update`` / ``recurrent_step``) in the same floating-point order, so spikes and states are
bit-identical; gradients equal the reference's up to summation order.

Forward saves the pre-reset membrane ``u [T, B, *F]`` only (spikes are ``u - theta > 0``, the
post-reset membrane is a function of ``u``), plus the synaptic current or the input when a
trainable decay needs them. Backward is the adjoint recursion, with everything that does not
depend on the recursion vectorised over time::

    phi_t = surrogate'(u_t - theta)
    A_t   = dv_t/du_t + c_t phi_t                          c_t: -theta or -(u_t - v_reset)
                                                           when the reset is not detached
    gu_t  = A_t gv_t + gy_t phi_t    (LIF)    |    gu_t = gv_t + gy_t    (LI)
    gv_{t-1} = a_mem gu_t

and with a synaptic current ``gi_t = g gu_t + a_syn gi_{t+1}``. Parameter gradients are sums
over time of products of these with saved or recomputed states.

The two element-wise recursions (forward state, backward adjoint) are the only loops over
time; ``backend="torch"`` runs them as torch ops (:mod:`spikegrad.kernels.torch_leaky`),
``backend="numba"`` as compiled loops (:mod:`spikegrad.kernels.numba_leaky`, which also
evaluates phi and A inside its loop, and with recurrence adds the weight rows of the neurons
that spiked instead of a dense product), ``backend="triton"`` as GPU kernels
(:mod:`spikegrad.kernels.triton_leaky`; feed-forward). Which one runs is the choice of
:mod:`spikegrad.kernels.registry`, which also provides each one's two recursions.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import guards, ops, registry
from .event_linear import weight_grad
from .registry import Call
from .spec import Spec
from .torch_leaky import input_current, post_reset, spikes


def reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to the shape of ``like``."""
    while grad.dim() > like.dim():
        grad = grad.sum(0)
    for d, n in enumerate(like.shape):
        if n == 1 and grad.shape[d] != 1:
            grad = grad.sum(d, keepdim=True)
    return grad


# the inputs a sequence's gradient can reach, in the order leaky_backward returns them
GRAD_INPUTS = ("xs", "v0", "i0", "a_mem", "a_syn", "theta", "v_reset", "w_rec", "y0")


def leaky_forward(spec: Spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                  store_u: bool = True):
    """``(ys, u_all, i_all, v_T, i_T)`` of the chosen backend's forward recursion, without
    autograd (``u_all`` None unless ``store_u``)."""
    with torch.no_grad():
        return registry.get(spec.backend).leaky_forward(spec, xs, v0, i0, a_mem, a_syn, theta,
                                                        v_reset, w_rec, y0, store_u=store_u)


def leaky_saved(spec: Spec, need, recurrent: bool, ys, u_all, i_all, xs):
    """What backward keeps of a forward: ``(ys, u_all, i_all, xs)``, None where the gradients
    asked for (``need``, by :data:`GRAD_INPUTS`) do not read it."""
    need_a_mem, need_a_syn = need[3], need[4]
    keep_i = spec.has_syn and (need_a_syn or (spec.scale_input and need_a_mem))
    keep_x = (not spec.has_syn) and spec.scale_input and need_a_mem
    # with recurrence, dW_rec needs y_{t-1}: keep the spikes (an output, alive anyway) rather
    # than recomputing them from u
    keep_ys = recurrent and spec.spiking
    return (ys if keep_ys else None, u_all, i_all if keep_i else None, xs if keep_x else None)


def leaky_backward(spec: Spec, need, g_ys, g_v_last, g_i_last, ys, u_all, i_all, xs, v0, i0,
                   a_mem, a_syn, theta, v_reset, w_rec, y0):
    """The gradients named by :data:`GRAD_INPUTS` (None where ``need`` is False) from the
    output gradients (None for none) and what :func:`leaky_saved` kept."""
    need = dict(zip(GRAD_INPUTS, need))
    if g_ys is None:
        g_ys = torch.zeros_like(u_all)
    gv_T = g_v_last if g_v_last is not None else torch.zeros_like(u_all[0])
    gi_T = g_i_last if (spec.has_syn and g_i_last is not None) else None

    with torch.no_grad():
        # -- the adjoint recursion ------------------------------------------------------
        gu_all, gi_all, g_y0 = registry.get(spec.backend).leaky_backward(
            spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T, w_rec,
            need_y0=need["y0"])

        # -- gradients that are sums over time ------------------------------------------
        # gradient w.r.t. the total input current of each step: x_t (+ W y_{t-1})
        g_in = gi_all if spec.has_syn else (gu_all * (1.0 - a_mem) if spec.scale_input
                                             else gu_all)
        g_xs = g_in if need["xs"] else None
        g_v0 = a_mem * gu_all[0] if need["v0"] else None
        g_i0 = a_syn * gi_all[0] if spec.has_syn and need["i0"] else None

        g_a_mem = g_a_syn = g_theta = g_v_reset = g_w = None
        if need["a_mem"] or need["a_syn"] or need["theta"] or need["v_reset"]:
            z_all = spikes(u_all, theta) if spec.spiking else None
            current = None
            if need["a_mem"] and spec.scale_input and not spec.has_syn:
                current = input_current(xs, w_rec, y0, u_all, theta, spec)
            g_a_mem, g_a_syn, g_theta, g_v_reset, _ = constant_grads(
                spec, need, gu_all, gi_all, gv_T, u_all, z_all, v0, i0, i_all, current, a_mem,
                a_syn, theta, v_reset)
        if w_rec is not None and need["w_rec"]:
            g_w = recurrent_weight_grad(g_in, ys if spec.spiking else u_all, y0)
    if not need["y0"]:
        g_y0 = None
    return g_xs, g_v0, g_i0, g_a_mem, g_a_syn, g_theta, g_v_reset, g_w, g_y0


def constant_grads(spec: Spec, need, gu_all, gi_all, gv_T, u_all, z_all, v0, i0, i_all,
                   current, a_mem, a_syn, theta, v_reset):
    """``(g_a_mem, g_a_syn, g_theta, g_v_reset, s_all)``: the gradients of the neuron's
    constants (None where ``need``, a dict by :data:`GRAD_INPUTS` names, is False), sums over
    time of the adjoint recursion's outputs ``gu_all`` (and ``gi_all``) with the saved states:
    ``z_all`` the spikes, ``current`` the input current ``x_t (+ W y_{t-1})`` (needed for
    ``a_mem`` under ``scale_input`` without a synapse), ``i_all`` the synaptic current. Shared
    by the leaky and the adaptive (ALIF) sequences: the baseline threshold enters both alike.
    ``s_all = phi_t gz_t``, what reaches the spike's argument ``u_t - threshold_t`` (None
    unless spiking)."""
    v_reset_spiking = spec.spiking and spec.reset == "to_value"
    # v_{t-1}: the post-reset membrane of the previous step (v0 at t = 0)
    v_prev = torch.cat([v0.unsqueeze(0), post_reset(
        spec, u_all[:-1], z_all[:-1] if spec.spiking else None, theta, v_reset)])
    # gv_t = a_mem * gu_{t+1}, and gv_T from the final state
    gv_all = torch.cat([a_mem * gu_all[1:], gv_T.unsqueeze(0)])
    if spec.cut:  # nothing reaches v_t from step t + 1 across a cut
        gv_all[spec.cut - 1:-1:spec.cut] = 0
    g_a_mem = g_a_syn = g_theta = g_v_reset = s_all = None
    if need["a_mem"]:
        da = gu_all * v_prev
        if spec.scale_input:
            da = da - gu_all * (i_all if spec.has_syn else current)
        g_a_mem = reduce_to(da, a_mem)
    if spec.has_syn and need["a_syn"]:
        i_prev = torch.cat([i0.unsqueeze(0), i_all[:-1]])
        g_a_syn = reduce_to(gi_all * i_prev, a_syn)
    if spec.spiking:
        # gu_t = dv/du gv_t + gz_t phi_t  ->  gz_t phi_t = gu_t - dv/du gv_t
        dvdu_gv = gv_all * (1.0 - z_all) if spec.reset == "to_value" else gv_all
        s_all = gu_all - dvdu_gv
    if spec.spiking and need["theta"]:
        dth = -s_all
        if spec.reset == "subtract":
            dth = dth - z_all * gv_all
        g_theta = reduce_to(dth, theta)
    if v_reset_spiking and need["v_reset"]:
        g_v_reset = reduce_to(z_all * gv_all, v_reset)
    return g_a_mem, g_a_syn, g_theta, g_v_reset, s_all


class LeakySequence(ops.FusedFunction):
    """``(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0)`` ->
    ``(ys, v_T, i_T, u_all, i_all)``; the last two (the membrane and synaptic current
    sequences, None where they are not kept) are non-differentiable, for backward only."""

    @staticmethod
    def forward(spec: Spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0):
        ys, u_all, i_all, v_last, i_last = leaky_forward(spec, xs, v0, i0, a_mem, a_syn, theta,
                                                         v_reset, w_rec, y0)
        # LI's output is its membrane: returned once (an output returned twice would be
        # marked non-differentiable with its twin)
        return ys, v_last, i_last, (u_all if spec.spiking else None), i_all

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0 = inputs
        ys, _, _, u_all, i_all = output
        for t in (u_all, i_all):
            if t is not None:
                ctx.mark_non_differentiable(t)
        # the sequences kept for backward get no gradient: without this autograd would fill a
        # [T, B, N] tensor of zeros for each (a fresh allocation: page faults, ~10 ms for 40 MiB);
        # backward takes None for any output gradient
        ctx.set_materialize_grads(False)
        ctx.spec = spec
        ys_k, u_k, i_k, xs_k = leaky_saved(spec, ctx.needs_input_grad[1:], w_rec is not None,
                                           ys, ys if u_all is None else u_all, i_all, xs)
        tensors = [c if isinstance(c, Tensor) else None for c in (a_mem, a_syn, theta, v_reset)]
        ctx.save_for_backward(ys_k, u_k, i_k, xs_k, v0, i0, *tensors, w_rec, y0)
        ctx.scalars = tuple(None if isinstance(s, Tensor) else s
                            for s in (a_mem, a_syn, theta, v_reset))

    @staticmethod
    def backward(ctx, g_ys, g_v_last, g_i_last, _g_u, _g_i):
        (ys, u_all, i_all, xs, v0, i0, a_mem_t, a_syn_t, theta_t, v_reset_t, w_rec,
         y0) = ctx.saved_tensors
        consts = tuple(t if t is not None else s for t, s in
                       zip((a_mem_t, a_syn_t, theta_t, v_reset_t), ctx.scalars))
        # under torch.func (vmap) the gradients may be batched: the operator loops over them
        backward = _backward_via_operator if ops.transformed() else leaky_backward
        return (None,) + backward(ctx.spec, ctx.needs_input_grad[1:], g_ys, g_v_last,
                                  g_i_last if ctx.spec.has_syn else None, ys, u_all, i_all, xs,
                                  v0, i0, *consts, w_rec, y0)

    @staticmethod
    def vmap(info, in_dims, *args):
        return ops.vmap_by_loop(LeakySequence.apply, info, in_dims, args)


def recurrent_weight_grad(g_in: Tensor, outs: Tensor, y0: Tensor) -> Tensor:
    """``dW_rec = sum_t g_in_t^T y_{t-1}`` for ``g_in``, ``outs [T, B, N]`` (``y_{-1} = y0``),
    on views (no ``[T, B, N]`` copy): from the active outputs where spikes are sparse enough
    for the event path of :func:`spikegrad.kernels.event_linear.weight_grad`, else a GEMM."""
    g_w = g_in[0].T @ y0
    if g_in.shape[0] > 1:
        g_w = weight_grad(g_in[1:].flatten(0, -2), outs[:-1].flatten(0, -2), g_w)
    return g_w


def leaky_sequence(xs: Tensor, v0: Tensor, i0: Optional[Tensor], p, *, spiking: bool,
                   backend: str, w_rec: Optional[Tensor] = None,
                   y0: Optional[Tensor] = None, cut: int = 0):
    """Run a fused sequence. ``p`` has the fields of LIParams (and LIFParams if spiking).
    ``cut``: the gradient through the state is cut every ``cut`` steps
    (:mod:`spikegrad.functional.truncation`; 0: never).

    Returns ``(ys, v_T, i_T)``. Every argument is checked first (:mod:`.guards`): a state of
    another batch size would broadcast in the torch loop and overrun the compiled ones.
    """
    guards.sequence(xs, "xs", rank=3 if w_rec is not None else None)
    backend = registry.choose(backend, Call("leaky", xs, recurrent=w_rec is not None))
    if w_rec is not None and w_rec.dtype != xs.dtype and guards.autocast_on(xs):
        # under autocast the input arrives in the autocast type; the recurrent product runs
        # in it too, as F.linear in the reference loop would
        w_rec = w_rec.to(xs.dtype)
    guards.leaky_call(xs, v0, i0, p.decay_syn is not None,
                      (("decay_mem", p.decay_mem), ("decay_syn", p.decay_syn),
                       ("threshold", p.threshold if spiking else None),
                       ("v_reset", p.v_reset if spiking else None)),
                      backend, w_rec, y0)
    theta = p.threshold if spiking else 0.0
    v_reset = p.v_reset if spiking else 0.0
    args = (xs, v0, i0, p.decay_mem, p.decay_syn, theta, v_reset, w_rec, y0)
    grad = torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad
                                           for t in args)
    cut = cut if grad and 0 < cut < xs.shape[0] else 0  # forward values never change
    if cut and (backend not in _CUTS or ops.compiling(xs) or ops.transformed()):
        return _in_chunks(xs, v0, i0, p, spiking, backend, w_rec, y0, cut)
    spec = Spec(spiking=spiking, reset=p.reset if spiking else "none",
                detach_reset=p.detach_reset if spiking else True,
                scale_input=bool(p.scale_input), has_syn=p.decay_syn is not None,
                surrogate=p.surrogate if spiking else None, backend=backend, cut=cut)
    if ops.compiling(xs):  # torch.compile, torch.export: one opaque operator
        return leaky_operator(spec, *args, store=grad)
    if grad or ops.transformed():
        ys, v_last, i_last, _, _ = LeakySequence.apply(spec, *args)
        return ys, v_last, i_last
    # no gradient wanted (inference, or nothing trainable reaches here): the same loop, without
    # writing the membrane sequence that only backward would read
    with torch.no_grad():
        out = registry.get(spec.backend).leaky_forward(spec, *args, store_u=False)
    ys, _, _, v_last, i_last = out
    return ys, v_last, i_last


# the backends whose backward cuts the adjoint itself (Spec.cut)
_CUTS = ("numba", "torch")


def _in_chunks(xs, v0, i0, p, spiking, backend, w_rec, y0, cut: int):
    """:func:`leaky_sequence` with the cut made by running chunks of ``cut`` steps, the states
    detached between them (for the paths whose backward does not cut: Triton, the compiled
    operator, torch.func transforms)."""
    outs = []
    chunks = xs.split(cut)
    v, i, y = v0, i0, y0
    for c, x in enumerate(chunks):
        ys, v, i = leaky_sequence(x, v, i, p, spiking=spiking, backend=backend, w_rec=w_rec,
                                  y0=y)
        outs.append(ys)
        if c + 1 < len(chunks):
            v, i = v.detach(), (None if i is None else i.detach())
            y = None if w_rec is None else ys[-1].detach()
    return torch.cat(outs), v, i


# --- the sequence as a registered operator (torch.compile, torch.export: kernels.ops) ---------

@torch.library.custom_op("spikegrad::leaky_seq", mutates_args=())
def leaky_seq(xs: Tensor, v0: Tensor, i0: Optional[Tensor], w_rec: Optional[Tensor],
              y0: Optional[Tensor], a_mem: Optional[Tensor], a_syn: Optional[Tensor],
              theta: Optional[Tensor], v_reset: Optional[Tensor], numbers: List[float],
              spec: str, store: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(ys, v_T, i_T, u_all, i_all)`` of :func:`leaky_forward`;
    each constant a tensor, or None and its value in ``numbers`` (the constants one by one,
    not a list: a list holding a None would get no gradient); ``u_all`` (LIF) and ``i_all``
    (with a synapse) only with ``store`` (for backward), else ``[0]``."""
    sp = ops.spec_of(spec)
    consts = ops.join_constants((a_mem, a_syn, theta, v_reset), numbers)
    ys, u_all, i_all, v_T, i_T = leaky_forward(sp, xs, v0, i0, *consts, w_rec, y0,
                                               store_u=store)
    if not sp.spiking or not store:
        u_all = None
    if not store:
        i_all = None
    # outputs must not alias inputs or each other (a kernel may hand back its state buffer)
    some = ops.empty_for_none
    return ys, v_T.clone(), some(i_T, xs), some(u_all, xs), some(i_all, xs)


@leaky_seq.register_fake
def _(xs, v0, i0, w_rec, y0, a_mem, a_syn, theta, v_reset, numbers, spec, store):
    sp = ops.spec_of(spec)
    none = xs.new_empty(0)
    return (torch.empty_like(xs), xs.new_empty(xs.shape[1:]),
            xs.new_empty(xs.shape[1:]) if sp.has_syn else none,
            torch.empty_like(xs) if sp.spiking and store else xs.new_empty(0),
            torch.empty_like(xs) if sp.has_syn and store else xs.new_empty(0))


@torch.library.custom_op("spikegrad::leaky_seq_backward", mutates_args=())
def leaky_seq_backward(g_ys: Optional[Tensor], g_v: Optional[Tensor], g_i: Optional[Tensor],
                       ys: Optional[Tensor], u_all: Tensor, i_all: Optional[Tensor],
                       xs: Optional[Tensor], v0: Tensor, i0: Optional[Tensor],
                       w_rec: Optional[Tensor], y0: Optional[Tensor],
                       consts: List[Optional[Tensor]], numbers: List[float], spec: str,
                       need: List[bool]) -> List[Tensor]:
    """The gradients of :data:`GRAD_INPUTS` (``[0]`` where not
    needed) by :func:`leaky_backward`."""
    grads = leaky_backward(ops.spec_of(spec), need, g_ys, g_v, g_i, ys, u_all, i_all, xs, v0, i0,
                           *ops.join_constants(consts, numbers), w_rec, y0)
    return [ops.empty_for_none(g, u_all) for g in grads]


@leaky_seq_backward.register_fake
def _(g_ys, g_v, g_i, ys, u_all, i_all, xs, v0, i0, w_rec, y0, consts, numbers, spec, need):
    likes = (u_all, v0, i0, *consts, w_rec, y0)
    return [torch.empty_like(t) if n and t is not None else u_all.new_empty(0)
            for n, t in zip(need, likes)]


def _leaky_setup(ctx, inputs, output):
    xs, v0, i0, w_rec, y0, *consts, numbers, spec, store = inputs
    ys, _, _, u_all, i_all = output
    sp = ops.spec_of(spec)
    need = ops.needs(xs, v0, i0, *consts, w_rec, y0)
    ys_k, u_k, i_k, xs_k = leaky_saved(sp, need, w_rec is not None, ys,
                                       u_all if sp.spiking else ys, ops.none_for_empty(i_all), xs)
    ctx.spec, ctx.numbers, ctx.need = spec, numbers, need
    ctx.save_for_backward(ys_k, u_k, i_k, xs_k, v0, i0, w_rec, y0, *consts)


def _leaky_backward(ctx, g_ys, g_v, g_i, _g_u, _g_i_all):
    ys, u_all, i_all, xs, v0, i0, w_rec, y0, *consts = ctx.saved_tensors
    has_syn = ops.spec_of(ctx.spec).has_syn
    g = leaky_seq_backward(g_ys, g_v, g_i if has_syn else None, ys, u_all, i_all, xs, v0, i0,
                           w_rec, y0, consts, ctx.numbers, ctx.spec, ctx.need)
    g = [t if n else None for t, n in zip(g, ctx.need)]
    g_xs, g_v0, g_i0, g_a_mem, g_a_syn, g_theta, g_v_reset, g_w, g_y0 = g
    return (g_xs, g_v0, g_i0, g_w, g_y0, g_a_mem, g_a_syn, g_theta, g_v_reset, None, None,
            None)


leaky_seq.register_autograd(_leaky_backward, setup_context=_leaky_setup)
torch.library.register_vmap(leaky_seq, ops.loop_vmap(leaky_seq))
torch.library.register_vmap(leaky_seq_backward, ops.loop_vmap(leaky_seq_backward))


def leaky_operator(spec: Spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0, store: bool):
    """:func:`leaky_sequence`'s fused call as the operator:
    ``(ys, v_T, i_T)`` (``i_T`` None without a synapse)."""
    tensors, numbers = ops.split_constants((a_mem, a_syn, theta, v_reset))
    ys, v_T, i_T, _, _ = leaky_seq(xs, v0, i0, w_rec, y0, *tensors, numbers, ops.spec_key(spec),
                                   store)
    return ys, v_T, (i_T if spec.has_syn else None)


def _backward_via_operator(spec: Spec, need, g_ys, g_v, g_i, ys, u_all, i_all, xs, v0, i0,
                           a_mem, a_syn, theta, v_reset, w_rec, y0):
    """:func:`leaky_backward` through the operator (which vmap loops over): the gradients,
    None where not needed."""
    tensors, numbers = ops.split_constants((a_mem, a_syn, theta, v_reset))
    # without grad: the backward operator has no derivative of its own (no double backward),
    # and under grad an operator's generated autograd Function would refuse functorch
    with torch.no_grad():
        g = leaky_seq_backward(g_ys, g_v, g_i, ys, u_all, i_all, xs, v0, i0, w_rec, y0, tensors,
                               numbers, ops.spec_key(spec), list(need))
    return tuple(t if n else None for t, n in zip(g, need))
