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
initial output. Not covered (the reference loop runs them): trained neuron constants (time
constants, thresholds, adaptation, refractory current, reset potential), whose gradients are
sums over time of state products.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from . import guards
from .leaky import recurrent_weight_grad
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


class AdaptiveSequence(torch.autograd.Function):
    """``(xs, v0, i0, ad0, q0, w_rec, y0)`` -> ``(ys, v_T, i_T, ad_T, ref_T, q_T)``; ``ref0``
    (the refractory counter) is a state without gradient; the constants go in as
    :class:`Constants`."""

    @staticmethod
    def forward(ctx, spec: Spec, k: Constants, ref0, xs, v0, i0, ad0, q0, w_rec, y0):
        ys, u_all, _, v_T, i_T, ad_all, free_all, ad_T, ref_T, q_T = _scan(
            spec, k, xs, v0, i0, ad0, ref0, q0, w_rec, y0, store_u=True)
        ctx.spec, ctx.k, ctx.has_q = spec, k, q0 is not None
        ctx.save_for_backward(u_all, ad_all, free_all, ys if w_rec is not None else None,
                              w_rec, y0)
        if ref_T is not None:
            ctx.mark_non_differentiable(ref_T)
        return ys, v_T, i_T, ad_T, ref_T, q_T

    @staticmethod
    def backward(ctx, g_ys, g_v, g_i, g_ad, g_ref, g_q):
        from .numba_leaky import AdaptBack, backward_scan, backward_scan_rec
        spec, k = ctx.spec, ctx.k
        u_all, ad_all, free_all, ys, w_rec, y0 = ctx.saved_tensors
        need_xs, need_v0, need_i0, need_ad0, need_q0, need_w, need_y0 = ctx.needs_input_grad[3:]

        def zeros_if_none(g: Optional[Tensor]) -> Tensor:
            return torch.zeros_like(u_all[0]) if g is None else g
        g_ys = torch.zeros_like(u_all) if g_ys is None else g_ys
        gi_T = g_i if spec.has_syn else None
        adapt = AdaptBack(ad_all, k.rho, k.beta, zeros_if_none(g_ad), free_all, k.d_ref,
                          k.w_ref, zeros_if_none(g_q) if ctx.has_q else None)
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
        return (None, None, None, g_in if need_xs else None, g_v0 if need_v0 else None, g_i0,
                g_ad0 if need_ad0 else None, g_q0 if need_q0 else None, g_w, g_y0)


def adaptive_sequence(spec: Spec, k: Constants, xs: Tensor, v0: Tensor, i0: Optional[Tensor],
                      ad0: Tensor, ref0: Optional[Tensor] = None, q0: Optional[Tensor] = None,
                      w_rec: Optional[Tensor] = None, y0: Optional[Tensor] = None):
    """Run the fused ALIF sequence: ``(ys, v_T, i_T, ad_T, ref_T, q_T)``. Without a gradient
    to compute (inference) the same loop runs without keeping the saved sequences. Every
    argument is checked first (:mod:`.guards`)."""
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
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad
                                       for t in tensors):
        return AdaptiveSequence.apply(spec, k, ref0, *tensors)
    ys, _, _, v_T, i_T, _, _, ad_T, ref_T, q_T = _scan(spec, k, xs, v0, i0, ad0, ref0, q0,
                                                       w_rec, y0, store_u=False)
    return ys, v_T, i_T, ad_T, ref_T, q_T
