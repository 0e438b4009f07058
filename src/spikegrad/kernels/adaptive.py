"""Fused ALIF sequences (spike-triggered threshold adaptation), on the numba loops of
:mod:`spikegrad.kernels.numba_leaky` with their ``adapt`` option.

The forward repeats the reference step of :mod:`spikegrad.functional.adaptation` in the same
floating-point order (spikes and states bit-identical): the spike compares ``u_t`` with
``theta + beta_a * a_{t-1}``, the reset subtracts the baseline ``theta``, and
``a_t = rho * a_{t-1} + z_t``. Backward is the adjoint recursion of the LIF kernels plus the
adjoint ``ga`` of the trace::

    gz_t     = gy_t + ga_t (+ c_t gv_t when the reset is not detached)
    gu_t     = phi_t gz_t + dv_t/du_t gv_t,      phi_t = surrogate'(u_t - theta - beta_a a_{t-1})
    ga_{t-1} = rho ga_t - beta_a phi_t gz_t

It saves the membrane ``u`` and the trace each step compared with. Covered: voltage- or
current-based, every reset mode, detached or not, any surrogate, with or without recurrence,
gradients for the input, the initial state (``v``, ``a``, ``i``), the recurrent weights and
the initial output. Not covered (the reference loop runs them): refractoriness, and trained
neuron constants (time constants, thresholds, adaptation, reset potential), whose gradients
are sums over time of state products.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .leaky import Spec, recurrent_weight_grad


class AdaptiveSequence(torch.autograd.Function):
    """``(xs, v0, i0, ad0, w_rec, y0)`` -> ``(ys, v_T, i_T, ad_T)``; the constants (decays,
    threshold, reset potential, ``rho``, ``beta_a``) are floats or tensors without grad."""

    @staticmethod
    def forward(ctx, spec: Spec, consts: tuple, xs, v0, i0, ad0, w_rec, y0):
        a_mem, a_syn, theta, v_reset, rho, beta_a = consts
        from .numba_leaky import forward_scan, forward_scan_rec
        with torch.no_grad():
            if w_rec is None:
                ys, u_all, _, v_T, i_T, ad_all, ad_T = forward_scan(
                    spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, adapt=(ad0, rho, beta_a))
            else:
                ys, u_all, _, v_T, i_T, ad_all, ad_T = forward_scan_rec(
                    spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                    adapt=(ad0, rho, beta_a))
        ctx.spec, ctx.consts = spec, consts
        ctx.save_for_backward(u_all, ad_all, ys if w_rec is not None else None, w_rec, y0)
        return ys, v_T, i_T, ad_T

    @staticmethod
    def backward(ctx, g_ys, g_v, g_i, g_ad):
        from .numba_leaky import backward_scan, backward_scan_rec
        spec = ctx.spec
        a_mem, a_syn, theta, v_reset, rho, beta_a = ctx.consts
        u_all, ad_all, ys, w_rec, y0 = ctx.saved_tensors
        need_xs, need_v0, need_i0, need_ad0, need_w, need_y0 = ctx.needs_input_grad[2:]

        def zeros_if_none(g: Optional[Tensor], like: Tensor) -> Tensor:
            return torch.zeros_like(like) if g is None else g
        g_ys = zeros_if_none(g_ys, u_all)
        gv_T, ga_T = zeros_if_none(g_v, u_all[0]), zeros_if_none(g_ad, u_all[0])
        gi_T = g_i if spec.has_syn else None
        adapt = (ad_all, rho, beta_a, ga_T)
        with torch.no_grad():
            if w_rec is None:
                gu_all, gi_all, g_ad0 = backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem,
                                                      a_syn, gv_T, gi_T, adapt=adapt)
                g_y0 = None
            else:
                gu_all, gi_all, g_in0, g_ad0 = backward_scan_rec(
                    spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T, w_rec,
                    adapt=adapt)
                g_y0 = g_in0 @ w_rec if need_y0 else None
            # gradient w.r.t. the total input current of each step: x_t (+ W y_{t-1})
            g_in = gi_all if spec.has_syn else (gu_all * (1.0 - a_mem) if spec.scale_input
                                                 else gu_all)
            g_w = recurrent_weight_grad(g_in, ys, y0) if w_rec is not None and need_w else None
            g_v0 = a_mem * gu_all[0] if need_v0 else None
            g_i0 = a_syn * gi_all[0] if spec.has_syn and need_i0 else None
        return (None, None, g_in if need_xs else None, g_v0, g_i0,
                g_ad0 if need_ad0 else None, g_w, g_y0)


def adaptive_sequence(spec: Spec, consts: tuple, xs: Tensor, v0: Tensor, i0: Optional[Tensor],
                      ad0: Tensor, w_rec: Optional[Tensor] = None,
                      y0: Optional[Tensor] = None):
    """Run the fused ALIF sequence: ``(ys, v_T, i_T, ad_T)``. Without a gradient to compute
    (inference) the same loop runs without keeping the membrane and trace sequences."""
    tensors = (xs, v0, i0, ad0, w_rec, y0)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad
                                       for t in tensors):
        return AdaptiveSequence.apply(spec, consts, *tensors)
    from .numba_leaky import forward_scan, forward_scan_rec
    a_mem, a_syn, theta, v_reset, rho, beta_a = consts
    with torch.no_grad():
        if w_rec is None:
            out = forward_scan(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, store_u=False,
                               adapt=(ad0, rho, beta_a))
        else:
            out = forward_scan_rec(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                                   store_u=False, adapt=(ad0, rho, beta_a))
    ys, _, _, v_T, i_T, _, ad_T = out
    return ys, v_T, i_T, ad_T
