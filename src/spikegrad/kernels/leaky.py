"""Fused sequences for the leaky neuron family (LIF, IF, LI, optional recurrence).

One custom autograd Function runs a whole sequence forward and backward without a per-step
autograd graph. Its forward repeats the reference loop (``functional.scan`` over ``_lif_step``
/ ``_li_step`` / ``recurrent_step``) in the same floating-point order, so spikes and states are
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
time; ``backend="torch"`` runs them as torch ops, ``backend="numba"`` as compiled loops
(:mod:`spikegrad.kernels.numba_leaky`, which also evaluates phi and A inside its loop, and
with recurrence adds the weight rows of the neurons that spiked instead of a dense product),
``backend="triton"`` as GPU kernels (:mod:`spikegrad.kernels.triton_leaky`; feed-forward).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .. import surrogate as _surrogate
from ..surrogate import Surrogate
from . import guards

# ids the compiled kernels (numba, triton) specialise on
RESET_IDS = {"none": 0, "subtract": 1, "to_value": 2}
# id of each built-in surrogate, which the compiled kernels evaluate inside their loops; a
# surrogate is "built-in" only if its derivative is the registry's own function (a user may
# register another under a new name). 0: a user's surrogate, evaluated by its torch function.
SURROGATE_IDS = {
    _surrogate._fast_sigmoid: 1, _surrogate._sigmoid: 2, _surrogate._atan: 3,
    _surrogate._triangle: 4, _surrogate._gaussian: 5, _surrogate._exponential: 6,
    _surrogate._straight_through: 7,
}


class Spec(NamedTuple):
    """Static description of the sequence (not tensors)."""

    spiking: bool            # LIF family (outputs spikes) or LI (outputs the membrane)
    reset: str               # "subtract" | "to_value" | "none" (ignored for LI)
    detach_reset: bool
    scale_input: bool
    has_syn: bool
    surrogate: Optional[Surrogate]
    backend: str             # "torch" | "numba" | "triton"


def _reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to the shape of ``like``."""
    while grad.dim() > like.dim():
        grad = grad.sum(0)
    for d, n in enumerate(like.shape):
        if n == 1 and grad.shape[d] != 1:
            grad = grad.sum(d, keepdim=True)
    return grad


def _post_reset(spec: Spec, u: Tensor, z: Tensor, theta, v_reset) -> Tensor:
    """Membrane after reset, as the reference computes it (forward values only)."""
    if not spec.spiking or spec.reset == "none":
        return u
    if spec.reset == "subtract":
        return u - z * theta
    return u - z * (u - v_reset)


class LeakySequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec: Spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0):
        with torch.no_grad():
            if spec.backend == "triton":  # feed-forward only (choose() checks)
                from .triton_leaky import forward_scan
                ys, u_all, i_all, v_last, i_last = forward_scan(spec, xs, v0, i0, a_mem, a_syn,
                                                                theta, v_reset)
            elif spec.backend == "numba" and w_rec is None:
                from .numba_leaky import forward_scan
                ys, u_all, i_all, v_last, i_last = forward_scan(spec, xs, v0, i0, a_mem, a_syn,
                                                                theta, v_reset)
            elif spec.backend == "numba":
                from .numba_leaky import forward_scan_rec
                ys, u_all, i_all, v_last, i_last = forward_scan_rec(
                    spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0)
            else:
                ys, u_all, i_all, v_last, i_last = _forward_torch(
                    spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0)
        need_a_mem, need_a_syn = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        keep_i = spec.has_syn and (need_a_syn or (spec.scale_input and need_a_mem))
        keep_x = (not spec.has_syn) and spec.scale_input and need_a_mem
        ctx.spec = spec
        # with recurrence, dW_rec needs y_{t-1}: keep the spikes (an output, alive anyway)
        # rather than recomputing them from u
        ctx.keep_ys = w_rec is not None and spec.spiking
        ctx.save_for_backward(ys if ctx.keep_ys else None, u_all, i_all if keep_i else None,
                              xs if keep_x else None,
                              v0, i0, a_mem if isinstance(a_mem, Tensor) else None,
                              a_syn if isinstance(a_syn, Tensor) else None,
                              theta if isinstance(theta, Tensor) else None,
                              v_reset if isinstance(v_reset, Tensor) else None, w_rec, y0)
        ctx.scalars = tuple(None if isinstance(s, Tensor) else s
                            for s in (a_mem, a_syn, theta, v_reset))
        return ys, v_last, i_last

    @staticmethod
    def backward(ctx, g_ys, g_v_last, g_i_last):
        spec = ctx.spec
        (ys, u_all, i_all, xs, v0, i0, a_mem_t, a_syn_t, theta_t, v_reset_t, w_rec,
         y0) = ctx.saved_tensors
        a_mem = a_mem_t if a_mem_t is not None else ctx.scalars[0]
        a_syn = a_syn_t if a_syn_t is not None else ctx.scalars[1]
        theta = theta_t if theta_t is not None else ctx.scalars[2]
        v_reset = v_reset_t if v_reset_t is not None else ctx.scalars[3]
        need = dict(zip(("xs", "v0", "i0", "a_mem", "a_syn", "theta", "v_reset", "w_rec", "y0"),
                        ctx.needs_input_grad[1:]))
        T = u_all.shape[0]
        if g_ys is None:
            g_ys = torch.zeros_like(u_all)
        gv_T = g_v_last if g_v_last is not None else torch.zeros_like(u_all[0])
        gi_T = g_i_last if (spec.has_syn and g_i_last is not None) else None

        with torch.no_grad():
            # -- the adjoint recursion ------------------------------------------------------
            if spec.backend == "triton":
                from .triton_leaky import backward_scan
                gu_all, gi_all = backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem, a_syn,
                                               gv_T, gi_T)
                g_y0 = None
            elif spec.backend == "numba" and w_rec is None:
                from .numba_leaky import backward_scan
                gu_all, gi_all = backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem, a_syn,
                                               gv_T, gi_T)
                g_y0 = None
            elif spec.backend == "numba":
                from .numba_leaky import backward_scan_rec
                gu_all, gi_all, g_in0 = backward_scan_rec(spec, g_ys, u_all, theta, v_reset,
                                                          a_mem, a_syn, gv_T, gi_T, w_rec)
                g_y0 = g_in0 @ w_rec
            else:
                gu_all, gi_all, g_y0 = _backward_torch(spec, g_ys, u_all, theta, v_reset, a_mem,
                                                       a_syn, gv_T, gi_T, w_rec)

            # -- gradients that are sums over time ------------------------------------------
            # gradient w.r.t. the total input current of each step: x_t (+ W y_{t-1})
            g_in = gi_all if spec.has_syn else (gu_all * (1.0 - a_mem) if spec.scale_input
                                                 else gu_all)
            g_xs = g_in if need["xs"] else None
            g_v0 = a_mem * gu_all[0] if need["v0"] else None
            g_i0 = a_syn * gi_all[0] if spec.has_syn and need["i0"] else None

            g_a_mem = g_a_syn = g_theta = g_v_reset = g_w = None
            if need["a_mem"] or need["theta"] or need["v_reset"]:
                z_all = _spikes(u_all, theta) if spec.spiking else None
                # v_{t-1}: the post-reset membrane of the previous step (v0 at t = 0)
                v_prev = torch.cat([v0.unsqueeze(0), _post_reset(
                    spec, u_all[:-1], z_all[:-1] if spec.spiking else None, theta, v_reset)])
                # gv_t = a_mem * gu_{t+1}, and gv_T from the final state
                gv_all = torch.cat([a_mem * gu_all[1:], gv_T.unsqueeze(0)])
            if need["a_mem"]:
                da = gu_all * v_prev
                if spec.scale_input:
                    current = i_all if spec.has_syn else _input_current(xs, w_rec, y0, u_all,
                                                                        theta, spec)
                    da = da - gu_all * current
                g_a_mem = _reduce_to(da, a_mem)
            if spec.has_syn and need["a_syn"]:
                i_prev = torch.cat([i0.unsqueeze(0), i_all[:-1]])
                g_a_syn = _reduce_to(gi_all * i_prev, a_syn)
            if spec.spiking and need["theta"]:
                # gu_t = dv/du gv_t + gz_t phi_t  ->  gz_t phi_t = gu_t - dv/du gv_t
                dvdu_gv = gv_all * (1.0 - z_all) if spec.reset == "to_value" else gv_all
                dth = -(gu_all - dvdu_gv)
                if spec.reset == "subtract":
                    dth = dth - z_all * gv_all
                g_theta = _reduce_to(dth, theta)
            if spec.spiking and spec.reset == "to_value" and need["v_reset"]:
                g_v_reset = _reduce_to(z_all * gv_all, v_reset)
            if w_rec is not None and need["w_rec"]:
                g_w = recurrent_weight_grad(g_in, ys if spec.spiking else u_all, y0)
        if not need["y0"]:
            g_y0 = None
        return (None, g_xs, g_v0, g_i0, g_a_mem, g_a_syn, g_theta, g_v_reset, g_w, g_y0)


def recurrent_weight_grad(g_in: Tensor, outs: Tensor, y0: Tensor) -> Tensor:
    """``dW_rec = sum_t g_in_t^T y_{t-1}`` for ``g_in``, ``outs [T, B, N]`` (``y_{-1} = y0``):
    two GEMMs on views, no ``[T, B, N]`` copy."""
    g_w = g_in[0].T @ y0
    if g_in.shape[0] > 1:
        g_w = g_w + g_in[1:].flatten(0, -2).T @ outs[:-1].flatten(0, -2)
    return g_w


def time_rows(g: Tensor) -> Tensor:
    """The gradient ``[T, ...]`` of an output sequence as the compiled backward loops read it:
    as is, or, when it is the same for every step (stride 0 in time: the gradient of a sum
    arrives expanded), one contiguous step ``[1, ...]`` used for all steps instead of T
    materialised copies."""
    if g.shape[0] > 1 and g.stride(0) == 0:
        g = g[:1]
    if g.shape[0] == 1 or not g.is_contiguous():
        g = g.contiguous()
    return g


def _spikes(u: Tensor, theta) -> Tensor:
    # u - theta > 0, not u > theta: the reference compares the difference (same rounding when
    # theta is a float64 scalar and u float32)
    return (u - theta > 0).to(u.dtype)


def _outputs_prev(spec: Spec, u_all: Tensor, theta, y0: Tensor) -> Tensor:
    """``y_{t-1}`` for every t: the previous output (spikes or membrane), y0 first."""
    prev = _spikes(u_all[:-1], theta) if spec.spiking else u_all[:-1]
    return torch.cat([y0.unsqueeze(0), prev])


def _input_current(xs, w_rec, y0, u_all, theta, spec) -> Tensor:
    if w_rec is None:
        return xs
    return xs + _outputs_prev(spec, u_all, theta, y0) @ w_rec.T


def _forward_torch(spec: Spec, xs, v, i, a_mem, a_syn, theta, v_reset, w_rec, y,
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
            z = _spikes(u, theta)
            ys[t] = z
            v = _post_reset(spec, u, z, theta, v_reset)
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
    dvdu = 1.0 - _spikes(u_all, theta) if spec.reset == "to_value" else None
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


def _backward_torch(spec: Spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv, gi_carry,
                    w_rec):
    T = g_ys.shape[0]
    block = max(1, _COEF_BLOCK_ELEMENTS // max(1, u_all[0].numel()))
    gu_all = torch.empty_like(u_all)
    gi_all = torch.empty_like(u_all) if spec.has_syn else None
    g = (1.0 - a_mem) if spec.scale_input else 1.0
    g_in_next = None  # gradient w.r.t. the total input current of step t + 1
    for t in range(T - 1, -1, -1):
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


# --- dispatch --------------------------------------------------------------------------------

FUSED = ("torch", "numba", "triton")


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_obstacle(xs: Tensor, recurrent: bool) -> Optional[str]:
    """Why the Triton kernels cannot run this call (None if they can)."""
    if not triton_available():
        return "it needs triton (pip install 'spikegrad[gpu]')"
    from .triton_leaky import DTYPES, INTERPRETED
    if xs.device.type != "cuda" and not INTERPRETED:
        return f"it runs on CUDA tensors, but xs is on {xs.device}"
    if recurrent:
        return "it covers feed-forward sequences only (no recurrent weights)"
    if xs.dtype not in DTYPES:
        return f"it computes in float32 or float64, but xs is {xs.dtype}"
    return None


def _numba_obstacle(xs: Tensor) -> Optional[str]:
    """Why the numba kernels cannot run this call (None if they can)."""
    if not numba_available():
        return "it needs numba: pip install 'spikegrad[fast]'"
    if xs.device.type != "cpu":
        return f"it runs on the CPU, but xs is on {xs.device}"
    if xs.dtype not in guards.KERNEL_DTYPES:
        return f"it computes in float32 or float64, but xs is {xs.dtype}"
    return None


def choose(backend: str, xs: Tensor, recurrent: bool) -> str:
    """Resolve ``"auto"`` to the fastest correct fused path; validate explicit choices."""
    if backend == "auto":
        # numba wherever it runs (CPU); measured faster than the torch loop with and without
        # recurrence (benchmarks/RESULTS.md). On CUDA, the Triton kernels where they apply:
        # one kernel per direction instead of several torch ops per step.
        # half types (e.g. under autocast) run the torch loop: the compiled kernels compute
        # in float32/float64 only (docs/conventions.md, "Dtypes")
        if xs.device.type == "cpu":
            return "numba" if _numba_obstacle(xs) is None else "torch"
        if xs.device.type == "cuda" and _triton_obstacle(xs, recurrent) is None:
            return "triton"
        return "torch"
    if backend == "numba":
        if not numba_available():
            raise ImportError("backend='numba' needs numba: pip install 'spikegrad[fast]' "
                              "(or use backend='torch' / 'auto')")
        if xs.device.type != "cpu":
            raise ValueError(f"backend='numba' runs on the CPU, but xs is on {xs.device}; "
                             "use backend='torch' or 'auto'")
        guards.kernel_dtype(xs, "numba")
    if backend == "triton":
        obstacle = _triton_obstacle(xs, recurrent)
        if obstacle is not None:
            error = guards.DtypeError if "float32 or float64" in obstacle else ValueError
            raise error(f"backend='triton' cannot run this sequence: {obstacle}; use "
                        "backend='auto' or 'torch'")
    return backend


def leaky_sequence(xs: Tensor, v0: Tensor, i0: Optional[Tensor], p, *, spiking: bool,
                   backend: str, w_rec: Optional[Tensor] = None,
                   y0: Optional[Tensor] = None):
    """Run a fused sequence. ``p`` has the fields of LIParams (and LIFParams if spiking).

    Returns ``(ys, v_T, i_T)``. Every argument is checked first (:mod:`.guards`): a state of
    another batch size would broadcast in the torch loop and overrun the compiled ones.
    """
    guards.sequence(xs, "xs", rank=3 if w_rec is not None else None)
    backend = choose(backend, xs, w_rec is not None)
    if w_rec is not None and w_rec.dtype != xs.dtype and guards.autocast_on(xs):
        # under autocast the input arrives in the autocast type; the recurrent product runs
        # in it too, as F.linear in the reference loop would
        w_rec = w_rec.to(xs.dtype)
    guards.leaky_call(xs, v0, i0, p.decay_syn is not None,
                      (("decay_mem", p.decay_mem), ("decay_syn", p.decay_syn),
                       ("threshold", p.threshold if spiking else None),
                       ("v_reset", p.v_reset if spiking else None)),
                      backend, w_rec, y0)
    spec = Spec(spiking=spiking, reset=p.reset if spiking else "none",
                detach_reset=p.detach_reset if spiking else True,
                scale_input=bool(p.scale_input), has_syn=p.decay_syn is not None,
                surrogate=p.surrogate if spiking else None, backend=backend)
    theta = p.threshold if spiking else 0.0
    v_reset = p.v_reset if spiking else 0.0
    args = (xs, v0, i0, p.decay_mem, p.decay_syn, theta, v_reset, w_rec, y0)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in args):
        return LeakySequence.apply(spec, *args)
    # no gradient wanted (inference, or nothing trainable reaches here): the same loop, without
    # writing the membrane sequence that only backward would read
    with torch.no_grad():
        if spec.backend == "triton":
            from .triton_leaky import forward_scan
            out = forward_scan(spec, *args[:7], store_u=False)
        elif spec.backend == "numba":
            from .numba_leaky import forward_scan, forward_scan_rec
            out = (forward_scan(spec, *args[:7], store_u=False) if w_rec is None
                   else forward_scan_rec(spec, *args, store_u=False))
        else:
            out = _forward_torch(spec, *args, store_u=False)
    ys, _, _, v_last, i_last = out
    return ys, v_last, i_last
