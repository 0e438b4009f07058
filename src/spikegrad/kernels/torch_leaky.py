"""The fused leaky sequence (:mod:`spikegrad.kernels.leaky`) as torch ops: the forward
recursion and the adjoint recursion, one loop over time each, on any device and dtype.
``backend="torch"`` runs these; the compiled backends (numba, Triton) run the same recursions
with the same floating-point order in the forward."""

from __future__ import annotations

import torch
from torch import Tensor

from . import guards
from .spec import Spec


def post_reset(spec: Spec, u: Tensor, z: Tensor, theta, v_reset) -> Tensor:
    """Membrane after reset, as the reference computes it (forward values only)."""
    if not spec.spiking or spec.reset == "none":
        return u
    if spec.reset == "subtract":
        return u - z * theta
    return u - z * (u - v_reset)


def spikes(u: Tensor, theta) -> Tensor:
    # u - theta > 0, not u > theta: the reference compares the difference (same rounding when
    # theta is a float64 scalar and u float32)
    return (u - theta > 0).to(u.dtype)


def _outputs_prev(spec: Spec, u_all: Tensor, theta, y0: Tensor) -> Tensor:
    """``y_{t-1}`` for every t: the previous output (spikes or membrane), y0 first."""
    prev = spikes(u_all[:-1], theta) if spec.spiking else u_all[:-1]
    return torch.cat([y0.unsqueeze(0), prev])


def input_current(xs, w_rec, y0, u_all, theta, spec) -> Tensor:
    if w_rec is None:
        return xs
    return xs + _outputs_prev(spec, u_all, theta, y0) @ w_rec.T


def forward_scan(spec: Spec, xs, v, i, a_mem, a_syn, theta, v_reset, w_rec, y,
                   store_u: bool = True):
    store_u = store_u or not spec.spiking
    u_all = torch.empty_like(xs) if store_u else None
    i_all = torch.empty_like(xs) if spec.has_syn else None
    ys = torch.empty_like(xs) if spec.spiking else u_all
    for t, x in enumerate(xs.unbind(0)):
        if w_rec is not None:
            x = x + torch.nn.functional.linear(y, w_rec)
        if spec.has_syn:
            i = a_syn * i + x
            x = i
            i_all[t] = i
        if spec.scale_input:
            x = (1.0 - a_mem) * x
        u = a_mem * v + x
        if store_u:
            u_all[t] = u
        if spec.spiking:
            z = spikes(u, theta)
            ys[t] = z
            v = post_reset(spec, u, z, theta, v_reset)
            y = z
        else:
            v = y = u
    return ys, u_all, i_all, v.clone(), (i.clone() if spec.has_syn else None)


def _adjoint_coefficients(spec: Spec, u_all: Tensor, theta, v_reset):
    """``(phi, A)`` over all steps: ``gu_t = A_t gv_t + phi_t gy_t`` (None means 1)."""
    if not spec.spiking:
        return None, None
    phi = spec.surrogate.grad(u_all - theta)
    if phi.shape != u_all.shape:  # a reduced phi would broadcast into a wrong gradient
        guards.surrogate_output(phi, u_all.shape, spec.surrogate.name)
    dvdu = 1.0 - spikes(u_all, theta) if spec.reset == "to_value" else None
    if spec.reset == "none" or spec.detach_reset:
        return phi, dvdu
    # a non-detached reset also sends gv_t through z_t: dv_t/dz_t = c_t
    c = -theta if spec.reset == "subtract" else -(u_all - v_reset)
    return phi, (dvdu if dvdu is not None else 1.0) + c * phi


# Elements per block of steps whose adjoint coefficients are computed together (1 MiB of
# float32): the coefficient ops then run on cache-resident blocks. Computed for the whole
# sequence at once, their [T, B, N] temporaries made the torch backend's training step slower
# than the reference loop's on workload A2048 (618 vs 527 ms).
_COEF_BLOCK_ELEMENTS = 1 << 18


def backward_scan(spec: Spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv, gi_carry,
                    w_rec):
    T = g_ys.shape[0]
    block = max(1, _COEF_BLOCK_ELEMENTS // max(1, u_all[0].numel()))
    gu_all = torch.empty_like(u_all)
    gi_all = torch.empty_like(u_all) if spec.has_syn else None
    g = (1.0 - a_mem) if spec.scale_input else 1.0
    g_in_next = None  # gradient w.r.t. the total input current of step t + 1
    cut = spec.cut
    for t in range(T - 1, -1, -1):
        if cut and t < T - 1 and (t + 1) % cut == 0:  # truncated BPTT: nothing crosses
            gv = torch.zeros_like(gv)
            gi_carry = g_in_next = None
        if (T - 1 - t) % block == 0:  # the next block of steps [t0, t]
            t0 = max(0, t + 1 - block)
            phi, A = _adjoint_coefficients(spec, u_all[t0:t + 1], theta, v_reset)
        gy = g_ys[t]
        if w_rec is not None and g_in_next is not None:
            gy = gy + g_in_next @ w_rec
        if phi is not None:
            gy = gy * phi[t - t0]
        gu = gy + (gv * A[t - t0] if A is not None else gv)
        gu_all[t] = gu
        gv = a_mem * gu
        if spec.has_syn:
            # gi_carry: what reaches i_t from outside step t (the final state, or a_syn gi_{t+1})
            gi = g * gu if gi_carry is None else g * gu + gi_carry
            gi_all[t] = gi
            gi_carry = a_syn * gi
            g_in_next = gi
        else:
            g_in_next = g * gu
    g_y0 = g_in_next @ w_rec if w_rec is not None else None
    return gu_all, gi_all, g_y0
