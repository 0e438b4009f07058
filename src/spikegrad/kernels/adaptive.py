"""Fused ALIF sequences (spike-triggered threshold adaptation, optional refractoriness), on
the numba loops of :mod:`spikegrad.kernels.numba_leaky` with their ``adapt`` options.

The forward repeats the reference step of :mod:`spikegrad.functional.adaptation` in the same
floating-point order (spikes and states bit-identical): the relative refractory push, the
absolute refractory clamp, the spike against ``theta + beta_a * a_{t-1}``, the reset by the
baseline ``theta``, then ``a_t = rho * a_{t-1} + z_t`` and the refractory states. Backward is
the adjoint recursion of the LIF kernels plus the adjoints of the traces::

    gz_t     = gy_t + ga_t + gq_t (+ c_t gv_t when the reset is not detached)
    gu_t     = phi_t gz_t + dv_t/du_t gv_t
    phi_t    = free_t surrogate'(u_t - theta - beta_a a_{t-1})
    ga_{t-1} = rho ga_t - beta_a phi_t gz_t
    gq_{t-1} = d_ref gq_t - w_ref free_t gu_t
    gv_{t-1} = a_mem free_t gu_t + (1 - free_t) gu_t          (the clamp passes gu_t straight)

It saves the membrane, the trace each step compared with and (with an absolute period) which
steps were free. Covered: voltage- or current-based, every reset mode, detached or not, any
surrogate, absolute and relative refractoriness, with or without recurrence; gradients for
the input, the initial state (``v``, ``a``, ``i``, ``q``), the recurrent weights and the
initial output; and, without refractoriness, trained constants (membrane and synaptic decay,
threshold, reset potential, adaptation decay and strength), whose gradients are sums over
time of the adjoint with saved states (:func:`trained_grads`). Not covered (the reference
loop runs them): trained constants of a refractory ALIF.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from . import guards, ops
from .leaky import reduce_to, recurrent_weight_grad
from .spec import Spec


class Constants(NamedTuple):
    """The neuron's constants (floats, or per-neuron tensors without grad)."""

    a_mem: object
    a_syn: object
    theta: object
    v_reset: object
    rho: object
    beta: object
    n_ref: int = 0
    d_ref: object = 0.0
    w_ref: object = 0.0


def _adapt_in(k: Constants, ad0: Tensor, ref0: Optional[Tensor], q0: Optional[Tensor]):
    from .numba_leaky import AdaptIn
    return AdaptIn(ad0, k.rho, k.beta, k.n_ref, ref0 if k.n_ref > 0 else None, q0, k.d_ref,
                   k.w_ref)


def _scan(spec: Spec, k: Constants, xs, v0, i0, ad0, ref0, q0, w_rec, y0, store_u: bool):
    from .numba_leaky import forward_scan, forward_scan_rec
    adapt = _adapt_in(k, ad0, ref0, q0)
    with torch.no_grad():
        if w_rec is None:
            return forward_scan(spec, xs, v0, i0, k.a_mem, k.a_syn, k.theta, k.v_reset,
                                store_u=store_u, adapt=adapt)
        return forward_scan_rec(spec, xs, v0, i0, k.a_mem, k.a_syn, k.theta, k.v_reset, w_rec,
                                y0, store_u=store_u, adapt=adapt)


# the inputs an ALIF sequence's gradient can reach, in the order adaptive_backward returns them
GRAD_INPUTS = ("xs", "v0", "i0", "ad0", "q0", "w_rec", "y0")
# the constants whose gradients it computes when they are trained (no refractoriness)
TRAINED = ("a_mem", "a_syn", "theta", "v_reset", "rho", "beta")


def adaptive_forward(spec: Spec, k: Constants, xs, v0, i0, ad0, ref0, q0, w_rec, y0,
                     store: bool = True):
    """``(ys, u_all, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T)`` of the numba loop
    without autograd; the sequences backward reads (``u_all``, ``ad_all``, ``free_all``)
    None unless ``store`` (``free_all`` also without an absolute refractory period)."""
    return adaptive_forward_i(spec, k, xs, v0, i0, ad0, ref0, q0, w_rec, y0, store)[:-1]


def adaptive_forward_i(spec: Spec, k: Constants, xs, v0, i0, ad0, ref0, q0, w_rec, y0,
                       store: bool = True):
    """:func:`adaptive_forward` and, last, the synaptic current sequence ``i_all`` (None
    without a synapse): what trained constants' gradients read."""
    ys, u_all, i_all, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T = _scan(
        spec, k, xs, v0, i0, ad0, ref0, q0, w_rec, y0, store_u=store)
    return ys, u_all, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T, i_all


def trained_grads(spec: Spec, k: Constants, need, gu_all, gi_all, gv_T, g_ad, u_all, ad_all,
                  ys, i_all, xs, v0, i0, w_rec, y0):
    """The gradients of :data:`TRAINED` (None where ``need``, in that order, is False) of a
    sequence without refractoriness, from the adjoint recursion's ``gu_all``, ``gi_all`` and
    the saved sequences; ``g_ad`` the final trace's gradient (None: zero). With ``s_t`` what
    reaches the spike's argument ``u_t - theta - beta a_{t-1}`` (from
    :func:`spikegrad.kernels.leaky.constant_grads`, which also gives the LIF constants)::

        d beta = -sum_t s_t a_{t-1}
        d rho  =  sum_t ga_t a_{t-1},   ga_{T-1} = g_ad,  ga_{t-1} = rho ga_t - beta s_t
    """
    from .leaky import constant_grads
    from .numba_leaky import reverse_trace
    need = dict(zip(TRAINED, need))
    current = None
    if need["a_mem"] and spec.scale_input and not spec.has_syn:
        current = xs
        if w_rec is not None:  # + W y_{t-1}
            current = xs + torch.cat([y0.unsqueeze(0), ys[:-1]]) @ w_rec.T
    g_a_mem, g_a_syn, g_theta, g_v_reset, s_all = constant_grads(
        spec, need, gu_all, gi_all, gv_T, u_all, ys, v0, i0, i_all, current, k.a_mem, k.a_syn,
        k.theta, k.v_reset)
    g_rho = g_beta = None
    if need["beta"]:
        g_beta = reduce_to(-(s_all * ad_all), k.beta)
    if need["rho"]:
        ga_all = reverse_trace(-(k.beta * s_all),
                               k.rho, torch.zeros_like(u_all[0]) if g_ad is None else g_ad)
        g_rho = reduce_to(ga_all * ad_all, k.rho)
    return g_a_mem, g_a_syn, g_theta, g_v_reset, g_rho, g_beta


def adaptive_backward(spec: Spec, k: Constants, need, g_ys, g_v, g_i, g_ad, g_q, u_all,
                      ad_all, free_all, ys, w_rec, y0, has_q: bool, need_trained=(),
                      trained_saved=None):
    """The gradients named by :data:`GRAD_INPUTS` (None where ``need`` is False) from the
    output gradients (None for none) and the saved sequences (``ys`` with recurrence), then
    those of :data:`TRAINED` where ``need_trained`` asks (no refractoriness; ``ys`` and
    ``trained_saved = (i_all, xs, v0, i0)`` saved for them; see :func:`trained_grads`)."""
    from .numba_leaky import AdaptBack, backward_scan, backward_scan_rec
    need_xs, need_v0, need_i0, need_ad0, need_q0, need_w, need_y0 = need

    def zeros_if_none(g: Optional[Tensor]) -> Tensor:
        return torch.zeros_like(u_all[0]) if g is None else g
    g_ys = torch.zeros_like(u_all) if g_ys is None else g_ys
    gi_T = g_i if spec.has_syn else None
    adapt = AdaptBack(ad_all, k.rho, k.beta, zeros_if_none(g_ad), free_all, k.d_ref,
                      k.w_ref, zeros_if_none(g_q) if has_q else None)
    with torch.no_grad():
        if w_rec is None:
            gu_all, gi_all, g_ad0, g_v0, g_q0 = backward_scan(
                spec, g_ys, u_all, k.theta, k.v_reset, k.a_mem, k.a_syn, zeros_if_none(g_v),
                gi_T, adapt=adapt)
            g_y0 = None
        else:
            gu_all, gi_all, g_in0, g_ad0, g_v0, g_q0 = backward_scan_rec(
                spec, g_ys, u_all, k.theta, k.v_reset, k.a_mem, k.a_syn, zeros_if_none(g_v),
                gi_T, w_rec, adapt=adapt)
            g_y0 = g_in0 @ w_rec if need_y0 else None
        # gradient w.r.t. the total input current of each step: x_t (+ W y_{t-1})
        g_in = gi_all if spec.has_syn else (gu_all * (1.0 - k.a_mem) if spec.scale_input
                                             else gu_all)
        g_w = recurrent_weight_grad(g_in, ys, y0) if w_rec is not None and need_w else None
        g_i0 = k.a_syn * gi_all[0] if spec.has_syn and need_i0 else None
        consts = ()
        if any(need_trained):
            i_all, xs, v0, i0 = trained_saved
            consts = trained_grads(spec, k, need_trained, gu_all, gi_all, zeros_if_none(g_v),
                                   g_ad, u_all, ad_all, ys, i_all, xs, v0, i0, w_rec, y0)
            consts = tuple(g if n else None for g, n in zip(consts, need_trained))
    return (g_in if need_xs else None, g_v0 if need_v0 else None, g_i0,
            g_ad0 if need_ad0 else None, g_q0 if need_q0 else None, g_w, g_y0) + consts


class AdaptiveSequence(ops.FusedFunction):
    """``(spec, k, ref0, xs, v0, i0, ad0, q0, w_rec, y0, *trained)`` ->
    ``(ys, v_T, i_T, ad_T, ref_T, q_T, u_all, ad_all, free_all)``; ``ref0`` (the refractory
    counter) is a state without gradient; the constants go in as :class:`Constants` (the
    values the loops read), and ``trained`` are the same constants in :data:`TRAINED` order
    as given (None, a float or a tensor) for their gradients; the last three outputs (None
    where absent) are for backward only."""

    @staticmethod
    def forward(spec: Spec, k: Constants, ref0, xs, v0, i0, ad0, q0, w_rec, y0, *trained):
        ys, u_all, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T, i_all = adaptive_forward_i(
            spec, k, xs, v0, i0, ad0, ref0, q0, w_rec, y0)
        return ys, v_T, i_T, ad_T, ref_T, q_T, u_all, ad_all, free_all, i_all

    @staticmethod
    def setup_context(ctx, inputs, output):
        spec, k, ref0, xs, v0, i0, ad0, q0, w_rec, y0, *trained = inputs
        ys, _, _, _, ref_T, _, u_all, ad_all, free_all, i_all = output
        for t in (ref_T, u_all, ad_all, free_all, i_all):
            if t is not None:
                ctx.mark_non_differentiable(t)
        # the sequences kept for backward get no gradient: without this autograd would fill a
        # [T, B, N] tensor of zeros for each (a fresh allocation: page faults, ~10 ms for 40 MiB);
        # backward takes None for any output gradient
        ctx.set_materialize_grads(False)
        ctx.spec, ctx.k, ctx.has_q = spec, k, q0 is not None
        ctx.n_trained = len(trained)
        train = any(ctx.needs_input_grad[10:])
        ctx.save_for_backward(u_all, ad_all, free_all,
                              ys if w_rec is not None or train else None, w_rec, y0,
                              i_all if train else None, xs if train else None,
                              v0 if train else None, i0 if train else None)

    @staticmethod
    def backward(ctx, g_ys, g_v, g_i, g_ad, _g_ref, g_q, _g_u, _g_ad_all, _g_free, _g_i_all):
        u_all, ad_all, free_all, ys, w_rec, y0, i_all, xs, v0, i0 = ctx.saved_tensors
        need_trained = ctx.needs_input_grad[10:]
        if any(need_trained):  # not under torch.func (adaptive_sequence refuses it)
            return (None, None, None) + adaptive_backward(
                ctx.spec, ctx.k, ctx.needs_input_grad[3:10], g_ys, g_v,
                g_i if ctx.spec.has_syn else None, g_ad, None, u_all, ad_all, None, ys, w_rec,
                y0, False, need_trained, (i_all, xs, v0, i0))
        # under torch.func (vmap) the gradients may be batched: the operator loops over them
        backward = _backward_via_operator if ops.transformed() else adaptive_backward
        grads = backward(ctx.spec, ctx.k, ctx.needs_input_grad[3:10], g_ys, g_v,
                         g_i if ctx.spec.has_syn else None, g_ad, g_q if ctx.has_q else None,
                         u_all, ad_all, free_all, ys, w_rec, y0, ctx.has_q)
        return (None, None, None) + grads + (None,) * ctx.n_trained

    @staticmethod
    def vmap(info, in_dims, *args):
        return ops.vmap_by_loop(AdaptiveSequence.apply, info, in_dims, args)


def adaptive_sequence(spec: Spec, k: Constants, xs: Tensor, v0: Tensor, i0: Optional[Tensor],
                      ad0: Tensor, ref0: Optional[Tensor] = None, q0: Optional[Tensor] = None,
                      w_rec: Optional[Tensor] = None, y0: Optional[Tensor] = None,
                      trained: Tuple = ()):
    """Run the fused ALIF sequence: ``(ys, v_T, i_T, ad_T, ref_T, q_T)``. Without a gradient
    to compute (inference) the same loop runs without keeping the saved sequences. Every
    argument is checked first (:mod:`.guards`). ``trained``: the constants of :data:`TRAINED`
    as the model gives them (tensors that need a gradient get one; without refractoriness
    only, and not under torch.compile or torch.func, where the caller runs the reference
    loop)."""
    guards.sequence(xs, "xs", rank=3 if w_rec is not None else None)
    guards.kernel_dtype(xs, "numba", hint="use backend='reference' (the fused ALIF kernel is "
                        "numba's), or convert the input with .float()")
    guards.adaptive_call(xs, v0, i0, ad0, ref0, q0, spec.has_syn, k.n_ref, q0 is not None,
                         (("decay_mem", k.a_mem), ("decay_syn", k.a_syn),
                          ("threshold", k.theta), ("v_reset", k.v_reset),
                          ("decay_adapt", k.rho), ("beta_adapt", k.beta),
                          ("refractory decay", k.d_ref), ("refractory strength", k.w_ref)),
                         w_rec, y0)
    tensors = (xs, v0, i0, ad0, q0, w_rec, y0)
    trains = torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad
                                             for t in trained)
    if trains and (k.n_ref > 0 or q0 is not None or ops.compiling(xs) or ops.transformed()):
        raise ValueError("the fused ALIF kernel trains its constants only without "
                         "refractoriness and outside torch.compile / torch.func; use "
                         "backend='reference' (backend='auto' does)")
    grad = trains or (torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad
                                                      for t in tensors))
    if ops.compiling(xs):  # torch.compile, torch.export: one opaque operator
        return adaptive_operator(spec, k, ref0, *tensors, store=grad)
    if grad or ops.transformed():
        return AdaptiveSequence.apply(spec, k, ref0, *tensors, *trained)[:6]
    ys, _, v_T, i_T, _, _, ad_T, ref_T, q_T = adaptive_forward(spec, k, xs, v0, i0, ad0, ref0,
                                                               q0, w_rec, y0, store=False)
    return ys, v_T, i_T, ad_T, ref_T, q_T


# --- the sequence as a registered operator (torch.compile, torch.export: kernels.ops) ---------

_ADAPT_CONSTANTS = ("a_mem", "a_syn", "theta", "v_reset", "rho", "beta", "d_ref", "w_ref")


def _adapt_constants(consts, numbers, n_ref: int):
    a_mem, a_syn, theta, v_reset, rho, beta, d_ref, w_ref = ops.join_constants(consts, numbers)
    return Constants(a_mem, a_syn, theta, v_reset, rho, beta, n_ref, d_ref, w_ref)


@torch.library.custom_op("spikegrad::alif_seq", mutates_args=())
def alif_seq(xs: Tensor, v0: Tensor, i0: Optional[Tensor], ad0: Tensor, ref0: Optional[Tensor],
             q0: Optional[Tensor], w_rec: Optional[Tensor], y0: Optional[Tensor],
             consts: List[Optional[Tensor]], numbers: List[float], n_ref: int, spec: str,
             store: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                   Tensor, Tensor]:
    """``(ys, v_T, i_T, ad_T, ref_T, q_T, u_all, ad_all, free_all)`` of
    :func:`adaptive_forward` (``[0]`` where absent); constants
    ``a_mem, a_syn, theta, v_reset, rho, beta, d_ref, w_ref`` (no gradient: trained ALIF
    constants run the reference loop)."""
    k = _adapt_constants(consts, numbers, n_ref)
    ys, u_all, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T = adaptive_forward(
        ops.spec_of(spec), k, xs, v0, i0, ad0, ref0, q0, w_rec, y0, store=store)
    some = ops.empty_for_none
    return (ys, v_T.clone(), some(i_T, xs), ad_T.clone(), some(ref_T, xs), some(q_T, xs),
            some(u_all, xs), some(ad_all, xs), some(free_all, xs))


@alif_seq.register_fake
def _(xs, v0, i0, ad0, ref0, q0, w_rec, y0, consts, numbers, n_ref, spec, store):
    sp = ops.spec_of(spec)
    step = lambda on: xs.new_empty(xs.shape[1:] if on else (0,))  # noqa: E731
    seq = lambda on: xs.new_empty(xs.shape if on else (0,))  # noqa: E731
    return (seq(True), step(True), step(sp.has_syn), step(True), step(n_ref > 0),
            step(q0 is not None), seq(store), seq(store), seq(store and n_ref > 0))


@torch.library.custom_op("spikegrad::alif_seq_backward", mutates_args=())
def alif_seq_backward(g_ys: Optional[Tensor], g_v: Optional[Tensor], g_i: Optional[Tensor],
                      g_ad: Optional[Tensor], g_q: Optional[Tensor], u_all: Tensor,
                      ad_all: Tensor, free_all: Optional[Tensor], ys: Optional[Tensor],
                      w_rec: Optional[Tensor], y0: Optional[Tensor],
                      consts: List[Optional[Tensor]], numbers: List[float], n_ref: int,
                      spec: str, need: List[bool], has_q: bool) -> List[Tensor]:
    """The gradients of :data:`GRAD_INPUTS` (``[0]`` where not
    needed) by :func:`adaptive_backward`."""
    k = _adapt_constants(consts, numbers, n_ref)
    grads = adaptive_backward(ops.spec_of(spec), k, need, g_ys, g_v, g_i, g_ad, g_q, u_all, ad_all,
                              free_all, ys, w_rec, y0, has_q)
    return [ops.empty_for_none(g, u_all) for g in grads]


@alif_seq_backward.register_fake
def _(g_ys, g_v, g_i, g_ad, g_q, u_all, ad_all, free_all, ys, w_rec, y0, consts, numbers,
      n_ref, spec, need, has_q):
    step = u_all[0]
    likes = (u_all, step, step, step, step, w_rec, step)
    return [torch.empty_like(t) if n else u_all.new_empty(0) for n, t in zip(need, likes)]


def _alif_setup(ctx, inputs, output):
    xs, v0, i0, ad0, ref0, q0, w_rec, y0, consts, numbers, n_ref, spec, store = inputs
    ys, _, _, _, _, _, u_all, ad_all, free_all = output
    ctx.need = ops.needs(xs, v0, i0, ad0, q0, w_rec, y0)
    ctx.consts_grad = ops.no_grads(consts)
    ctx.numbers, ctx.n_ref, ctx.spec, ctx.has_q = numbers, n_ref, spec, q0 is not None
    ctx.save_for_backward(u_all, ad_all, ops.none_for_empty(free_all),
                          ys if w_rec is not None else None,
                          w_rec, y0, *consts)


def _alif_backward(ctx, g_ys, g_v, g_i, g_ad, _g_ref, g_q, _g_u, _g_ad_all, _g_free):
    u_all, ad_all, free_all, ys, w_rec, y0, *consts = ctx.saved_tensors
    sp = ops.spec_of(ctx.spec)
    g = alif_seq_backward(g_ys, g_v, g_i if sp.has_syn else None, g_ad,
                          g_q if ctx.has_q else None, u_all, ad_all, free_all, ys, w_rec, y0,
                          consts, ctx.numbers, ctx.n_ref, ctx.spec, ctx.need, ctx.has_q)
    g_xs, g_v0, g_i0, g_ad0, g_q0, g_w, g_y0 = [t if n else None for t, n in zip(g, ctx.need)]
    return (g_xs, g_v0, g_i0, g_ad0, None, g_q0, g_w, g_y0, ctx.consts_grad, None, None, None,
            None)


alif_seq.register_autograd(_alif_backward, setup_context=_alif_setup)
torch.library.register_vmap(alif_seq, ops.loop_vmap(alif_seq))
torch.library.register_vmap(alif_seq_backward, ops.loop_vmap(alif_seq_backward))


def adaptive_operator(spec: Spec, k, ref0, xs, v0, i0, ad0, q0, w_rec, y0, store: bool):
    """:func:`adaptive_sequence`'s fused call as the operator:
    ``(ys, v_T, i_T, ad_T, ref_T, q_T)`` (None where absent)."""
    tensors, numbers = ops.split_constants(tuple(getattr(k, n) for n in _ADAPT_CONSTANTS))
    ys, v_T, i_T, ad_T, ref_T, q_T, _, _, _ = alif_seq(
        xs, v0, i0, ad0, ref0, q0, w_rec, y0, tensors, numbers, k.n_ref, ops.spec_key(spec), store)
    return (ys, v_T, i_T if spec.has_syn else None, ad_T, ref_T if k.n_ref > 0 else None,
            q_T if q0 is not None else None)


def _backward_via_operator(spec: Spec, k, need, g_ys, g_v, g_i, g_ad, g_q, u_all, ad_all,
                           free_all, ys, w_rec, y0, has_q: bool):
    """:func:`adaptive_backward` through the operator (as in :mod:`.leaky`)."""
    tensors, numbers = ops.split_constants(tuple(getattr(k, n) for n in _ADAPT_CONSTANTS))
    with torch.no_grad():  # as in leaky's
        g = alif_seq_backward(g_ys, g_v, g_i, g_ad, g_q, u_all, ad_all, free_all, ys, w_rec,
                              y0, tensors, numbers, k.n_ref, ops.spec_key(spec), list(need),
                              has_q)
    return tuple(t if n else None for t, n in zip(g, need))
