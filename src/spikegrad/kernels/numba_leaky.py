"""Compiled element-wise time loops for :mod:`spikegrad.kernels.leaky` (numba, CPU).

Why numba: it installs from PyPI as a wheel (no compiler, no CUDA, nothing fetched at run
time), compiles these loops in seconds on first use and caches them on disk, and works on the
tensors' memory without copies. A C++ extension would need a compiler at install or first
use.

Each loop walks time in order and, inside a step, the contiguous row of all neurons, doing
everything per element (spike, reset, surrogate, adjoint) in one pass: a separate torch op
over ``[T, B, N]`` costs about as much as the whole loop. Kernels are generated per model
option, surrogate and float type, so the inner loop is branch-free and LLVM vectorises it
(measured 10x faster than one generic kernel with run-time flags). Two things keep the loops
vectorised and are easy to lose: ``error_model="numpy"`` (numba's default guards every
division, e.g. in the fast-sigmoid surrogate, with a zero check that blocks vectorisation), and,
in the time-reversed backward loops, one step's row in its own function (see ``_bwd_kernel``).

Threads: every loop splits its independent dimension over ``torch.get_num_threads()`` threads
(:mod:`spikegrad.kernels.parallel`; results bit-identical to one thread): the recurrent loops
the batch rows, the feed-forward loops runs of 16 neurons. The slices run on torch's own
OpenMP team, so that its idle worker (GNU OpenMP keeps it spinning after a parallel op) takes
our second slice instead of competing with it; the measurements behind this are in
benchmarks/README.md (``OMP_WAIT_POLICY``, thread slices). The arithmetic follows the
reference's order (numba does not fuse multiply-adds unless asked), so forward states are
bit-identical.

Why one module of over 500 lines: each forward kernel and its adjoint share the per-step
functions and the specialisation keys (reset, surrogate, float type) they are generated
from; kept side by side, a change to one half of a recursion is seen next to the other.

Surrogates: the built-in ones are evaluated inside the backward loop by :func:`_phi`, a
scalar transcription of the formulas in :mod:`spikegrad.surrogate` (tests check the two agree
for every built-in). A user-registered surrogate is evaluated by its torch function over the
whole sequence first and passed in.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, NamedTuple, Optional

import numba
import numpy as np
import torch
from torch import Tensor

from . import blas, guards, jit_cache
from .parallel import run_kernel
from .spec import RESET_IDS as _RESET, SURROGATE_IDS as _SURROGATE_IDS, time_rows



@functools.lru_cache(maxsize=None)
def _phi_kernel(kind: int, F):
    """Scalar surrogate derivative ``kind`` computed in float type ``F`` (np.float32 or
    np.float64; float32 inputs stay in float32, like torch, and vectorise twice as wide)."""
    one, half, two = F(1.0), F(0.5), F(2.0)
    half_pi, inv_sqrt_2pi = F(math.pi / 2.0), F(1.0 / math.sqrt(2.0 * math.pi))

    @numba.njit(inline="always")
    def phi(x, b):
        if kind == 1:
            d = one + b * abs(x)
            return one / (d * d)
        if kind == 2:
            s = one / (one + math.exp(-b * x))
            return b * s * (one - s)
        if kind == 3:
            y = half_pi * b * x
            return (b / two) / (one + y * y)
        if kind == 4:
            return b * max(one - b * abs(x), F(0.0))
        if kind == 5:
            return b * inv_sqrt_2pi * math.exp(-half * (b * x) * (b * x))
        if kind == 6:
            return half * b * math.exp(-b * abs(x))
        if kind == 7:
            return b if abs(b * x) < half else F(0.0)
        return F(0.0)
    return phi


def scalar_surrogate(kind: int, F):
    """The in-kernel surrogate derivative ``phi(x, b)`` of built-in ``kind`` (ids of
    :data:`spikegrad.kernels.spec.SURROGATE_IDS`) in float type ``F``, an inlined numba
    function for other compiled loops (e.g. :mod:`spikegrad.kernels.numba_eprop`)."""
    return _phi_kernel(kind, F)


def phi_builtin(kind: int, x: np.ndarray, b: float) -> np.ndarray:
    """The in-kernel surrogate derivative over an array (for tests)."""
    F = x.dtype.type
    phi = _phi_kernel(kind, F)

    @numba.njit(error_model="numpy")
    def many(x, b):
        out = np.empty_like(x)
        for k in range(x.size):
            out[k] = phi(x[k], b)
        return out
    return many(x.ravel(), F(b)).reshape(x.shape)


@functools.lru_cache(maxsize=None)
def neuron_step(spiking: bool, reset: int, has_syn: bool, scale: bool, adapt: bool, absolute: bool,
          relative: bool, F):
    """One neuron's forward step, shared by the feed-forward and recurrent loops (inlined, so
    the closure constants compile away). ``x`` is the step's total input current; states in,
    states out: ``(u, v, spike, i, ad, rf, q, free)`` with ``u`` the membrane the spike
    compares (after the refractory push and clamp) and ``v`` the membrane after reset.

    ``adapt`` (ALIF): the spike compares with ``th + be * ad``, then ``ad = rho * ad + z``.
    ``absolute`` / ``relative``: the refractoriness of :mod:`spikegrad.functional.refractory`
    in its order: the relative push ``u -= wq * q`` after integrating, the clamp ``u = v_{t-1}``
    while the counter ``rf > 0`` (no spike then), ``rf = nref z`` after a spike,
    ``q = dq * q + z``. The arithmetic is the reference's, in its order (the refractory clamp
    is its blend ``free u + (1 - free) v``, signed zeros included), computed in ``F``."""
    one, zero = F(1.0), F(0.0)

    @numba.njit(inline="always")
    def step(x, v, i, a, g, a_s, th, vr, ad, rho, be, rf, nref, q, dq, wq):
        if has_syn:
            x = a_s * i + x
            i = x
        if scale:
            x = g * x
        u = a * v + x
        free = one
        if relative:
            u = u - wq * q
        if absolute:
            free = one if rf <= 0 else zero
            u = free * u + (one - free) * v
        spike = False
        v_new = u
        if spiking:
            if adapt:
                spike = u - (th + be * ad) > 0
            else:
                spike = u - th > 0
            if absolute:
                spike = spike and free > 0
            if adapt:
                ad = rho * ad + (1 if spike else 0)
            if absolute:
                rf = free * (nref * (one if spike else zero)) + (one - free) * (rf - one)
            if relative:
                q = dq * q + (1 if spike else 0)
            # the reference's expressions, not a select: with z = 0 they still propagate a
            # non-finite u or constant (u - 0 * (u - vr) is NaN for u = -inf), so the backends
            # agree on every input, overflowing ones included
            zf = one if spike else zero
            if reset == 1:
                v_new = u - zf * th
            elif reset == 2:
                v_new = u - zf * (u - vr)
        return u, v_new, spike, i, ad, rf, q, free
    return step


@functools.lru_cache(maxsize=None)
def neuron_adjoint(spiking: bool, reset: int, detach: bool, kind: int, F, adapt: bool,
             absolute: bool, relative: bool):
    """One neuron's adjoint step, shared by the feed-forward and recurrent loops (inlined).
    In: ``gy`` (the gradient reaching the output ``y_t`` from outside), the step's saved
    membrane ``u``, trace ``adp`` (``a_{t-1}``) and ``free``, and the adjoints ``gv`` (of
    ``v_t``), ``ga`` (of ``a_t``), ``gq`` (of ``q_t``). Out: ``(gu, gv, ga, gq)``: the
    gradient of the membrane before the refractory clamp, and the adjoints one step back::

        gz  = gy + ga + gq (+ c gv when the reset is not detached; c = dv/dz)
        gu  = phi gz + dv/du gv,      phi = free * surrogate'(u - th - be adp)
        ga <- rho ga - be phi gz,     gq <- dq gq - wq free gu
        gv <- a free gu + (1 - free) gu  (the clamp passes gu straight to v_{t-1})
    """
    phi_of = _phi_kernel(kind, F)
    one, zero = F(1.0), F(0.0)

    @numba.njit(inline="always")
    def adjoint(gy, u, th, vr, a, be, adp, free, gv, ga, gq, rho, dq, wq, beta, phi_ext):
        if spiking:
            if adapt:
                x = u - (th + be * adp)
            else:
                x = u - th
            phi = phi_of(x, beta) if kind > 0 else phi_ext
            fired = x > 0
            if absolute:
                phi = phi * free  # z = H(.) * free
                fired = fired and free > 0
            A = one
            if reset == 2:
                A = zero if fired else one  # to_value: dv/du = 1 - z
            c = zero  # dv_t/dz_t: the reset's path (none when detached)
            if not detach:
                if reset == 1:
                    c = -th
                elif reset == 2:
                    c = -(u - vr)
                A = A + c * phi
            if adapt:
                gy = gy + ga
            if relative:
                gy = gy + gq
            if adapt:
                ga = rho * ga - be * phi * (gy + c * gv)
            gu = gy * phi + gv * A
        else:
            gu = gy + gv
        if absolute:
            # u_t = free u_int + (1 - free) v_{t-1}: the input side sees free * gu
            gu_in = gu * free
            gv = a * gu_in + (one - free) * gu
        else:
            gu_in = gu
            gv = a * gu
        if relative:
            gq = dq * gq - wq * gu_in
        return gu_in, gv, ga, gq
    return adjoint


@functools.lru_cache(maxsize=None)
def _fwd_kernel(spiking: bool, reset: int, has_syn: bool, scale: bool, store_u: bool = True,
                adapt: bool = False, absolute: bool = False, relative: bool = False,
                F=np.float64, inplace: bool = False):
    """The forward loop over ``xs [T, M]`` (time in order, a contiguous row of neurons per
    step), specialised to the model's options so that the inner loop is branch-free and LLVM
    vectorises it; the step is :func:`neuron_step`. ``store_u=False`` (spiking, no gradient wanted)
    never writes the saved sequences ``u_out``, ``ad_out`` (the trace each step compared
    with) and ``free_out`` (1 where a step was free of the absolute refractory period).
    ``inplace`` (with ``store_u``): the membrane overwrites the input ``xs`` instead of going
    to ``u_out`` (passing ``xs`` as ``u_out`` would compute the same, but LLVM's run-time
    overlap check then sends every row to the scalar loop)."""
    step = neuron_step(spiking, reset, has_syn, scale, adapt, absolute, relative, F)
    zero = F(0.0)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def fwd(xs, v, i, a, g, a_s, th, vr, ys, u_out, i_out, ad, rho, be, ad_out, rf, nref,
            free_out, q, dq, wq, lo, hi):
        T = xs.shape[0]
        for t in range(T):
            for m in range(np.uint64(lo), np.uint64(hi)):
                ad_m = ad[m] if adapt else zero
                u, v_new, spike, i_m, ad_m2, rf_m, q_m, free = step(
                    xs[t, m], v[m], i[m] if has_syn else zero, a[m], g[m], a_s[m], th[m],
                    vr[m], ad_m, rho[m] if adapt else zero, be[m] if adapt else zero,
                    rf[m] if absolute else zero, nref, q[m] if relative else zero,
                    dq[m] if relative else zero, wq[m] if relative else zero)
                if has_syn:
                    i[m] = i_m
                    i_out[t, m] = i_m
                if store_u:
                    if inplace:
                        xs[t, m] = u
                    else:
                        u_out[t, m] = u
                    if adapt:
                        ad_out[t, m] = ad_m
                    if absolute:
                        free_out[t, m] = free
                if spiking:
                    ys[t, m] = 1 if spike else 0
                if adapt:
                    ad[m] = ad_m2
                if absolute:
                    rf[m] = rf_m
                if relative:
                    q[m] = q_m
                v[m] = v_new
    return fwd


@functools.lru_cache(maxsize=None)
def _adjoint_row(spiking: bool, reset: int, detach: bool, has_syn: bool, kind: int, F,
                 adapt: bool, absolute: bool, relative: bool, recurrent: bool,
                 inplace: bool = False):
    """One step of the adjoint over a row of neurons ``[lo, hi)`` (:func:`neuron_adjoint` per
    element), for the feed-forward and the recurrent backward loops. ``recurrent``: ``back``
    (the gradient reaching the outputs through the next step's recurrent input) adds to
    ``gy``, and ``g_in`` receives the gradient of the step's input current; otherwise neither
    is touched.

    The row is a function of its own, not the body of the time loop: with the whole
    time-reversed loop in one body, LLVM hoisted the row loop's overlap checks over the outer
    loop, where the decreasing row addresses failed them, and every row ran the scalar loop
    (~1 ns per neuron-step against 0.3 ns vectorised, measured on a stand-alone copy).

    ``inplace``: the gradient of the step's membrane (``gu``; feed-forward with a synapse:
    ``gi_t``, what reaches the synaptic current) overwrites ``u`` and neither ``gu_o`` nor
    ``gi_o`` is written (passing ``u`` as ``gu_o`` would compute the same, but the overlap
    check sends the row to the scalar loop, as in :func:`_fwd_kernel`)."""
    adjoint = neuron_adjoint(spiking, reset, detach, kind, F, adapt, absolute, relative)
    zero = F(0.0)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def row(gy, back, u, th, vr, a, g, a_s, gv, gi, beta, phi, gu_o, gi_o, g_in, ad, rho, be,
            ga, free, dq, wq, gq, lo, hi):
        for k in range(np.uint64(lo), np.uint64(hi)):
            gu, gv_k, ga_k, gq_k = adjoint(
                gy[k] + back[k] if recurrent else gy[k], u[k], th[k], vr[k], a[k],
                be[k] if adapt else zero, ad[k] if adapt else zero,
                free[k] if absolute else zero, gv[k],
                ga[k] if adapt else zero, gq[k] if relative else zero,
                rho[k] if adapt else zero, dq[k] if relative else zero,
                wq[k] if relative else zero, beta,
                phi[k] if spiking and kind == 0 else zero)
            if not inplace:
                gu_o[k] = gu
            elif not has_syn:
                u[k] = gu
            gv[k] = gv_k
            if adapt:
                ga[k] = ga_k
            if relative:
                gq[k] = gq_k
            if has_syn:
                # gi holds what reaches i_t from outside step t: g_i_last, then
                # a_syn gi_{t+1}
                gi_t = g[k] * gu + gi[k]
                if inplace:
                    u[k] = gi_t
                else:
                    gi_o[k] = gi_t
                gi[k] = a_s[k] * gi_t
                if recurrent:
                    g_in[k] = gi_t
            elif recurrent:
                g_in[k] = g[k] * gu
    return row


@functools.lru_cache(maxsize=None)
def _cut_adjoints(has_syn: bool, adapt: bool, relative: bool):
    """Zero the adjoint states of rows ``[lo, hi)`` (their first index): what truncated BPTT
    in one pass does between the last step of a chunk and the first of the next."""

    @numba.njit(inline="always")
    def clear(gv, gi, ga, gq, lo, hi):
        gv[lo:hi] = 0
        if has_syn:
            gi[lo:hi] = 0
        if adapt:
            ga[lo:hi] = 0
        if relative:
            gq[lo:hi] = 0
    return clear


@functools.lru_cache(maxsize=None)
def _bwd_kernel(spiking: bool, reset: int, detach: bool, has_syn: bool, kind: int, F,
                adapt: bool = False, absolute: bool = False, relative: bool = False,
                inplace: bool = False):
    """The adjoint loop of :func:`_fwd_kernel` (time reversed), specialised the same way and
    to the surrogate and float type ``F``; the step is :func:`neuron_adjoint`. ``gv``, ``ga``,
    ``gq`` hold the adjoints of the final states in and of the initial states out; ``gu_out``
    gets the gradient of the membrane before the refractory clamp, ``gi_out`` (synaptic
    current) what reaches ``i_t``; ``inplace``: as for :func:`_adjoint_row`."""
    row = _adjoint_row(spiking, reset, detach, has_syn, kind, F, adapt, absolute, relative,
                       recurrent=False, inplace=inplace)
    clear = _cut_adjoints(has_syn, adapt, relative)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def bwd(gys, u_all, th, vr, a, g, a_s, gv, gi, beta, phi_ext, gu_out, gi_out, ad_all, rho,
            be, ga, free_all, dq, wq, gq, lo, hi, cut):
        """``gys`` may hold one row for all steps (a gradient constant in time); ``cut``:
        the adjoint states are zeroed between steps ``t`` and ``t + 1`` where ``t + 1`` is a
        multiple of it (truncated BPTT in one pass; 0: never)."""
        T = u_all.shape[0]
        for t in range(T - 1, -1, -1):
            if cut > 0 and t < T - 1 and (t + 1) % cut == 0:
                clear(gv, gi, ga, gq, lo, hi)
            # back and g_in are not touched by the feed-forward row: gv stands in for both
            row(gys[t if gys.shape[0] > 1 else 0], gv, u_all[t], th, vr, a, g, a_s, gv,
                gi, beta, phi_ext[t if spiking and kind == 0 else 0],
                gu_out[0 if inplace else t], gi_out[t if has_syn and not inplace else 0], gv,
                ad_all[t if adapt else 0], rho, be, ga, free_all[t if absolute else 0], dq, wq,
                gq, lo, hi)
    return bwd


@functools.lru_cache(maxsize=None)
def _fwd_rec_kernel(spiking: bool, reset: int, has_syn: bool, scale: bool,
                    store_u: bool = True, adapt: bool = False, absolute: bool = False,
                    relative: bool = False, F=np.float64, inplace: bool = False):
    """Forward with recurrence: the input of step t is ``x_t + W y_{t-1}``; the step is
    :func:`neuron_step` as in :func:`_fwd_kernel` (parameters are rows ``[N]``, states ``[B, N]``,
    saved sequences ``[T, B, N]``). The recurrent input adds the rows of ``W^T`` of the
    neurons that spiked (event-driven: a spiking layer at rate p costs p of the dense
    product); a non-spiking neuron's nonzero outputs are used the same way. Each call runs
    the batch rows ``[lo, hi)`` (rows are independent: threads take slices). ``inplace``
    (spiking, with ``store_u``): the membrane overwrites ``xs``, as in :func:`_fwd_kernel`."""
    step = neuron_step(spiking, reset, has_syn, scale, adapt, absolute, relative, F)
    zero = F(0.0)

    @jit_cache.njit(nogil=True, error_model="numpy")
    def fwd(xs, y0, wt, v, i, a, g, a_s, th, vr, ys, u_out, i_out, ad, rho, be, ad_out, rf, nref,
            free_out, q, dq, wq, lo, hi):
        T, B, N = xs.shape
        r = np.empty(N, dtype=xs.dtype)
        active = np.empty(N, dtype=np.int64)
        for t in range(T):
            # unsigned bounds: numba skips its negative-index checks, which kept LLVM from
            # vectorising the inner loops (3x slower with signed bounds in the LIF loop)
            for b in range(np.uint64(lo), np.uint64(hi)):
                prev = y0[b] if t == 0 else ys[t - 1, b] if spiking else u_out[t - 1, b]
                # the nonzero outputs listed first, without a branch, then their rows added
                # in the same order: a test per output inside the add loop mispredicts at
                # firing rates of a few percent (the event part ~30 % slower, measured)
                c = 0
                for j in range(N):
                    active[c] = j
                    c += prev[j] != 0
                r[:] = 0
                for k in range(c):
                    j = active[k]
                    yj = prev[j]
                    for n in range(N):
                        r[n] += yj * wt[j, n]
                for n in range(N):
                    ad_n = ad[b, n] if adapt else zero
                    u, v_new, spike, i_n, ad_n2, rf_n, q_n, free = step(
                        xs[t, b, n] + r[n], v[b, n], i[b, n] if has_syn else zero, a[n], g[n],
                        a_s[n], th[n], vr[n], ad_n, rho[n] if adapt else zero,
                        be[n] if adapt else zero, rf[b, n] if absolute else zero, nref,
                        q[b, n] if relative else zero, dq[n] if relative else zero,
                        wq[n] if relative else zero)
                    if has_syn:
                        i[b, n] = i_n
                        i_out[t, b, n] = i_n
                    if store_u:
                        if inplace:
                            xs[t, b, n] = u
                        else:
                            u_out[t, b, n] = u
                        if adapt:
                            ad_out[t, b, n] = ad_n
                        if absolute:
                            free_out[t, b, n] = free
                    if spiking:
                        ys[t, b, n] = 1 if spike else 0
                    if adapt:
                        ad[b, n] = ad_n2
                    if absolute:
                        rf[b, n] = rf_n
                    if relative:
                        q[b, n] = q_n
                    v[b, n] = v_new
    return fwd


@functools.lru_cache(maxsize=None)
def _bwd_rec_kernel(spiking: bool, reset: int, detach: bool, has_syn: bool, kind: int, F,
                    adapt: bool = False, absolute: bool = False, relative: bool = False,
                    inplace: bool = False, mkl: bool = False):
    """Adjoint of :func:`_fwd_rec_kernel`, the step :func:`neuron_adjoint` as in
    :func:`_bwd_kernel`. The product ``g_in_{t+1} W`` that carries the gradient back through
    the recurrence is dense; it runs as one GEMM per step (``[B, N] x [N, N]``) for the
    call's batch rows ``[lo, hi)``: torch's MKL through ``gemm`` where ``mkl``, else
    ``np.dot`` (:mod:`.blas`). ``inplace``: as for :func:`_adjoint_row`."""
    row = _adjoint_row(spiking, reset, detach, has_syn, kind, F, adapt, absolute, relative,
                       recurrent=True, inplace=inplace)
    clear = _cut_adjoints(has_syn, adapt, relative)
    product = blas.matmul_into if mkl else blas.dot_into

    @jit_cache.njit(nogil=True, error_model="numpy")
    def bwd(gys, u_all, w, th, vr, a, g, a_s, gv, gi, beta, phi_ext, gu_out, gi_out, g_in,
            ad_all, rho, be, ga, free_all, dq, wq, gq, lo, hi, cut, gemm):
        """``gys`` may hold one step for all steps (a gradient constant in time); ``cut``: as
        for :func:`_bwd_kernel` (the recurrent path is cut too)."""
        T, B, N = u_all.shape
        back = np.zeros((hi - lo, N), dtype=u_all.dtype)
        for t in range(T - 1, -1, -1):
            if t < T - 1 and cut > 0 and (t + 1) % cut == 0:
                back[:] = 0
                clear(gv, gi, ga, gq, lo, hi)
            elif t < T - 1:
                # gradient reaching y_t through step t + 1's input (this slice's rows only)
                product(gemm, g_in[lo:hi], w, back)
            tg = t if gys.shape[0] > 1 else 0
            tp, ti = (t if spiking and kind == 0 else 0), (t if has_syn else 0)
            ta, tf = (t if adapt else 0), (t if absolute else 0)
            # unsigned bounds: see _fwd_rec_kernel
            for b in range(np.uint64(lo), np.uint64(hi)):
                tb = b if spiking and kind == 0 else 0
                row(gys[tg, b], back[b - lo], u_all[t, b], th, vr, a, g, a_s, gv[b],
                    gi[b] if has_syn else gi[0], beta, phi_ext[tp, tb],
                    gu_out[0 if inplace else t, 0 if inplace else b],
                    gi_out[ti, b if has_syn else 0], g_in[b],
                    ad_all[ta, b if adapt else 0], rho, be, ga[b if adapt else 0],
                    free_all[tf, b if absolute else 0], dq, wq, gq[b if relative else 0], 0, N)
    return bwd


# OpenBLAS runs a GEMM on one thread below about this many multiply-adds (its
# GEMM_MULTITHREAD_THRESHOLD of 4 x 65536)
_BLAS_THREADED_MACS = 4 * 65536


@functools.lru_cache(maxsize=None)
def _blas_limiter():
    """threadpoolctl's handle on the BLAS that numba's ``np.dot`` calls (scipy's OpenBLAS), or
    None without threadpoolctl."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls this BLAS: load it)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


def _single_threaded_blas(macs: int):
    """One BLAS thread inside the recurrent backward's per-step ``[B, N] x [N, N]`` products
    of ``macs`` multiply-adds: OpenBLAS's own threads on these small products, next to
    torch's, made the workload-C training step slower than with one BLAS thread (measured;
    benchmarks/README.md); the kernel splits the batch over threads instead. Products too
    small for OpenBLAS to thread skip the limit (it costs ~10 us per call, a quarter of a
    short sequence's call)."""
    limiter = _blas_limiter() if macs >= _BLAS_THREADED_MACS else None
    return limiter.limit(limits=1) if limiter is not None else contextlib.nullcontext()


# the types the loops are compiled for (numba has no float16 arithmetic)
_NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


@functools.lru_cache(maxsize=256)
def _number_row(value: float, n: int, dtype) -> np.ndarray:
    """``n`` copies of ``value`` in numpy ``dtype``: one array shared by every call with that
    constant (the kernels only read their constant rows; making it was ~2 us, and a 0-dim
    tensor's cast through torch ~15 us, per constant and call)."""
    return np.full(n, value, dtype=dtype)


def constant_row(t, shape, dtype) -> np.ndarray:
    """A parameter (float, 0-dim or per-neuron tensor) broadcast to ``shape`` and flattened:
    one value per neuron of a row ``[M]``."""
    # Fast paths first: this runs ~10 times per sequence call, and torch's small-op overhead
    # was a measurable part of short sequences (TBPTT chunks). Values are the same: numpy
    # rounds a Python float (a double) to float32 exactly as torch's cast does.
    np_dtype = _NP_DTYPE.get(dtype)
    if np_dtype is not None:
        if not isinstance(t, Tensor):
            return _number_row(t, math.prod(shape), np_dtype)
        if t.dim() == 0 and t.dtype in _NP_DTYPE:  # e.g. a module's fixed constant
            value = (t.detach() if t.requires_grad else t).item()
            return _number_row(value, math.prod(shape), np_dtype)
        if t.dtype == dtype and tuple(t.shape) == tuple(shape) and t.is_contiguous():
            return t.detach().reshape(-1).numpy()
    if not isinstance(t, Tensor):
        t = torch.tensor(t, dtype=torch.float64)
    t = t.detach().to(dtype).expand(shape)  # cast first: the reference does
    return np.ascontiguousarray(t.reshape(-1).numpy())


def grad_rows(g: Tensor) -> np.ndarray:
    """:func:`spikegrad.kernels.spec.time_rows` as an array: one row for all steps when the
    gradient is constant in time (reading through zero strides, LLVM does not vectorise)."""
    return time_rows(g).numpy()


def _state(t, like: Tensor) -> np.ndarray:
    return t.detach().to(like.dtype).reshape(-1).clone().numpy()


@functools.lru_cache(maxsize=None)
def _dummy(dtype, ndim: int = 2) -> np.ndarray:
    """Stand-in for an array argument the specialised kernel never touches (one shared array
    per dtype and rank: a call passes up to eight, and making them was ~5 us each)."""
    return np.empty((1,) * ndim, dtype=torch.empty(0, dtype=dtype).numpy().dtype)


class AdaptIn(NamedTuple):
    """The ALIF part of a forward call: the initial adaptation trace ``ad``, its decay ``rho``
    and strength ``beta``; with refractoriness ``n_ref`` steps (counter ``ref``) and the
    relative trace ``q`` (None when off) with decay ``d_ref`` and amplitude ``w_ref``.
    States are shaped like one input step; constants are floats or per-neuron tensors."""

    ad: Tensor
    rho: Any
    beta: Any
    n_ref: int = 0
    ref: Optional[Tensor] = None
    q: Optional[Tensor] = None
    d_ref: Any = 0.0
    w_ref: Any = 0.0


class AdaptBack(NamedTuple):
    """The ALIF part of a backward call: the saved traces ``ad_all`` (and free masks
    ``free_all`` with an absolute refractory period), the constants, and the gradients of
    the final trace ``g_ad`` and relative trace ``g_q`` (None when off)."""

    ad_all: Tensor
    rho: Any
    beta: Any
    g_ad: Tensor
    free_all: Optional[Tensor] = None
    d_ref: Any = 0.0
    w_ref: Any = 0.0
    g_q: Optional[Tensor] = None


def _adapt_forward_args(adapt: Optional[AdaptIn], state, seq, par, dtype, store_u: bool,
                        rank: int):
    """Kernel arguments for ``adapt`` (stand-ins without it) and the arrays they fill:
    ``(args, (ad_all, ad, free_all, ref, q))``. ``state(t)``: a writable copy of a state in the
    kernel's layout, of ``rank`` 1 (a row ``[M]``) or 2 (``[B, N]``); ``seq()``: a new
    ``[T, ...]`` sequence in that layout."""
    d_state, d_row, d_seq = _dummy(dtype, rank), _dummy(dtype, 1), _dummy(dtype, rank + 1)
    if adapt is None:
        return ((d_state, d_row, d_row, d_seq, d_state, 0.0, d_seq, d_state, d_row, d_row),
                (None,) * 5)
    absolute, relative = adapt.n_ref > 0, adapt.q is not None
    ad = state(adapt.ad)
    ad_all = seq() if store_u else None
    ref = state(adapt.ref) if absolute else None
    free_all = seq() if absolute and store_u else None
    q = state(adapt.q) if relative else None
    def np_(t, stand_in):
        if t is None:
            return stand_in
        return t if isinstance(t, np.ndarray) else t.numpy()
    args = (np_(ad, d_state), par(adapt.rho), par(adapt.beta), np_(ad_all, d_seq),
            np_(ref, d_state), _NP_DTYPE[dtype](adapt.n_ref), np_(free_all, d_seq),
            np_(q, d_state),
            par(adapt.d_ref) if relative else d_row, par(adapt.w_ref) if relative else d_row)
    return args, (ad_all, ad, free_all, ref, q)


def _adapt_backward_args(adapt: Optional[AdaptBack], state, flat, par, dtype, rank: int):
    """Kernel arguments for ``adapt`` (stand-ins without it) and the adjoint arrays they
    update: ``(args, (ga, gq))``; ``flat(t)``: a saved sequence in the kernel's layout."""
    d_state, d_row, d_seq = _dummy(dtype, rank), _dummy(dtype, 1), _dummy(dtype, rank + 1)
    if adapt is None:
        return (d_seq, d_row, d_row, d_state, d_seq, d_row, d_row, d_state), (None, None)
    relative = adapt.g_q is not None
    ga = state(adapt.g_ad)
    gq = state(adapt.g_q) if relative else None
    np_ = lambda t: t if isinstance(t, np.ndarray) else t.numpy()  # noqa: E731
    args = (flat(adapt.ad_all), par(adapt.rho), par(adapt.beta), np_(ga),
            flat(adapt.free_all) if adapt.free_all is not None else d_seq,
            par(adapt.d_ref) if relative else d_row, par(adapt.w_ref) if relative else d_row,
            np_(gq) if relative else d_state)
    return args, (ga, gq)


def _threshold_all(theta, adapt):
    """The threshold every step compared with (for a user's surrogate, evaluated in torch)."""
    return theta if adapt is None else theta + adapt.beta * adapt.ad_all


def _entry(t: Tensor, where: str) -> None:
    """The sequence a scan runs over: a CPU tensor in a type the loops are compiled for."""
    if t.device.type != "cpu":
        raise ValueError(f"{where}: the numba kernels run on the CPU, got a tensor on "
                         f"{t.device}; use backend='torch'")
    guards.kernel_dtype(t, "numba")


def _states(where: str, shape, *named) -> None:
    """Each ``(name, tensor or None)`` is None or exactly ``shape``: the loops index states by
    the input's rows, so a smaller one would be overrun."""
    for name, t in named:
        if t is not None:
            guards.shape_is(t, shape, name, where)


def _rank3(t: Tensor, name: str, where: str) -> None:
    if t.dim() != 3:
        raise ValueError(f"{where}: {name} must be [T, B, N], got shape {list(t.shape)}")


def _grad_fits(g: Tensor, shape, where: str) -> None:
    if g.shape != shape and not guards.fits(tuple(g.shape), tuple(shape)):
        raise ValueError(f"{where}: the output gradient has shape {list(g.shape)}, which does "
                         f"not broadcast to the outputs {list(shape)}")


def _user_phi(spec, u: Tensor, thr) -> Tensor:
    """A user's surrogate derivative over the whole sequence, checked to be element-wise."""
    phi = spec.surrogate.grad(u - thr)
    guards.surrogate_output(phi, u.shape, spec.surrogate.name)
    return phi


def _state_copy(t: Optional[Tensor], dt: torch.dtype, zeros_shape=None) -> Tensor:
    """A contiguous copy of a state in ``dt`` that a kernel may update in place (one op), or
    zeros of ``zeros_shape`` for None (an adjoint that nothing reached)."""
    if t is None:
        return torch.zeros(zeros_shape, dtype=dt)
    t = t.detach()
    if t.dtype == dt:
        return t.clone(memory_format=torch.contiguous_format)
    return t.to(dt, copy=True, memory_format=torch.contiguous_format)


def _array(t: Tensor, dt: torch.dtype) -> np.ndarray:
    """``t``'s values in ``dt`` as a C-contiguous array for a kernel to read: ``t``'s own
    memory when it already is one. Layout is changed on the numpy side: a torch ``view`` or
    ``reshape`` costs ~2 us, numpy's a tenth of that (a short sequence's call makes ~20)."""
    t = t.detach()
    if t.dtype != dt:
        t = t.to(dt)
    return np.ascontiguousarray(t.numpy())


def _flat(t: Tensor, rows: int) -> np.ndarray:
    """A contiguous tensor's memory as ``[rows, -1]`` (the feed-forward loops' layout)."""
    return t.numpy().reshape(rows, -1)


def _leak_rows(spec, shape, dtype, a_mem, a_syn, theta, v_reset) -> tuple:
    """The constant rows every leaky kernel takes, ``(a_mem, g, a_syn, theta, v_reset)``, with
    ``g = 1 - a_mem`` under ``scale_input`` (else 1) and zeros for what the model lacks."""
    par = functools.partial(constant_row, shape=shape, dtype=dtype)
    return (par(a_mem), par((1.0 - a_mem) if spec.scale_input else 1.0),
            par(a_syn if spec.has_syn else 0.0), par(theta if spec.spiking else 0.0),
            par(v_reset if spec.spiking else 0.0))


def forward_scan(spec, xs: Tensor, v0, i0, a_mem, a_syn, theta, v_reset,
                 store_u: bool = True, adapt=None):
    """``(ys, u_all, i_all, v_T, i_T)`` for ``xs [T, B, *F]``, like the torch loop.
    ``store_u=False`` (spiking only; for inference): ``u_all`` is None. ``adapt``
    (:class:`AdaptIn`, an ALIF): the result then also holds ``ad_all`` (the trace each step
    compared with), ``free_all`` (1 where a step was free of the absolute refractory period;
    None without one) -- both None without ``store_u`` -- and the final ``ad_T``, ``ref_T``,
    ``q_T`` (None when off)."""
    where = "numba forward_scan"
    _entry(xs, where)
    _states(where, xs.shape[1:], ("v0", v0), ("i0", i0 if spec.has_syn else None),
            *(() if adapt is None else (("ad", adapt.ad),
                                        ("ref", adapt.ref if adapt.n_ref > 0 else None),
                                        ("q", adapt.q))))
    T, shape = xs.shape[0], xs.shape
    dt = xs.dtype
    x3 = xs.detach().contiguous()
    x2 = _flat(x3, T)
    M = x2.shape[1]
    store_u = store_u or not spec.spiking
    u_all = torch.empty_like(x3) if store_u else None
    ys = torch.empty_like(x3) if spec.spiking else u_all
    i_all = torch.empty_like(x3) if spec.has_syn else None
    v_T = _state_copy(v0, dt)
    i_T = _state_copy(i0, dt) if spec.has_syn else None
    v = v_T.numpy().reshape(-1)  # the kernel updates the states in place
    i = i_T.numpy().reshape(-1) if spec.has_syn else _dummy(dt, 1)
    rows = _leak_rows(spec, shape[1:], dt, a_mem, a_syn, theta, v_reset)
    par = functools.partial(constant_row, shape=shape[1:], dtype=dt)
    fwd = _fwd_kernel(spec.spiking, _RESET[spec.reset], spec.has_syn, spec.scale_input,
                      store_u, adapt is not None, adapt is not None and adapt.n_ref > 0,
                      adapt is not None and adapt.q is not None, v.dtype.type)
    extra, (ad_all, ad, free_all, ref, q) = _adapt_forward_args(
        adapt, lambda t: _state_copy(t, dt).numpy().reshape(-1),
        lambda: torch.empty((T, M), dtype=dt), par, dt, store_u, rank=1)
    d2 = _dummy(dt)
    args = (x2, v, i, *rows, _flat(ys, T) if spec.spiking else d2,
            _flat(u_all, T) if store_u else d2, _flat(i_all, T) if spec.has_syn else d2,
            *extra)
    # neurons are independent: threads take disjoint runs of 16 (one cache line of float32)
    run_kernel(fwd, args, M, x2.size, align=16)
    out = (ys, u_all, i_all, v_T, i_T)
    if adapt is None:
        return out
    state = lambda a: None if a is None else torch.from_numpy(a).reshape(shape[1:])  # noqa: E731
    seq = lambda t: None if t is None else t.reshape(shape)  # noqa: E731
    return out + (seq(ad_all), seq(free_all), state(ad), state(ref), state(q))


def backward_scan(spec, g_ys: Tensor, u_all: Tensor, theta, v_reset, a_mem, a_syn,
                  gv_T: Tensor, gi_T, adapt=None):
    """``(gu_all, gi_all)``: the adjoint recursion of :func:`forward_scan`. ``adapt``
    (:class:`AdaptBack`): the result then also holds the gradients of the initial trace, the
    initial membrane and the initial relative trace (None when off); ``gu_all`` is the
    gradient of the membrane before the refractory clamp."""
    where = "numba backward_scan"
    _entry(u_all, where)
    _grad_fits(g_ys, u_all.shape, where)
    _states(where, u_all.shape[1:], ("gv_T", gv_T), ("gi_T", gi_T),
            *(() if adapt is None else (("g_ad", adapt.g_ad), ("g_q", adapt.g_q))))
    if adapt is not None:
        _states(where, u_all.shape, ("ad_all", adapt.ad_all), ("free_all", adapt.free_all))
    T, shape = u_all.shape[0], u_all.shape
    dt = u_all.dtype
    u2 = _array(u_all, dt).reshape(T, -1)
    M = u2.shape[1]
    g = g_ys if g_ys.dtype == dt and g_ys.shape == shape else g_ys.to(dt).expand(shape)
    g = time_rows(g)
    gys = _flat(g, g.shape[0])
    kind, phi_ext = 0, _dummy(dt)
    if spec.spiking:
        kind = _SURROGATE_IDS.get(spec.surrogate.derivative, 0)
        if kind == 0:  # a user's surrogate: evaluate its torch function over all steps
            thr = _threshold_all(theta, adapt)
            phi_ext = _array(_user_phi(spec, u_all, thr), dt).reshape(T, -1)
    gu_all = torch.empty(shape, dtype=dt)
    gi_all = torch.empty(shape, dtype=dt) if spec.has_syn else None
    gv_0 = _state_copy(gv_T, dt, shape[1:])  # the kernel runs it back to step 0 in place
    gv = gv_0.numpy().reshape(-1)
    gi = (_state_copy(gi_T, dt).numpy().reshape(-1) if gi_T is not None
          else np.zeros(M, dtype=gv.dtype))
    a_row, g_row, a_s_row, th_row, vr_row = _leak_rows(spec, shape[1:], dt, a_mem, a_syn,
                                                       theta, v_reset)
    par = functools.partial(constant_row, shape=shape[1:], dtype=dt)
    F = gv.dtype.type
    bwd = _bwd_kernel(spec.spiking, _RESET[spec.reset], spec.detach_reset, spec.has_syn, kind,
                      F, adapt is not None, adapt is not None and adapt.free_all is not None,
                      adapt is not None and adapt.g_q is not None)
    extra, (ga, gq) = _adapt_backward_args(
        adapt, lambda t: _state_copy(t, dt).numpy().reshape(-1),
        lambda t: _array(t, dt).reshape(T, -1), par, dt, rank=1)
    args = (gys, u2, th_row, vr_row, a_row, g_row, a_s_row, gv, gi,
            F(spec.surrogate.beta if spec.spiking else 0.0), phi_ext, _flat(gu_all, T),
            _flat(gi_all, T) if spec.has_syn else _dummy(dt), *extra)
    cut = np.int64(spec.cut)
    run_kernel(bwd, args, M, u2.size, align=16, after=(cut,))
    out = gu_all, gi_all
    if adapt is None:
        return out
    state = lambda a: None if a is None else torch.from_numpy(a).reshape(shape[1:])  # noqa: E731
    return out + (state(ga), gv_0, state(gq))


class ChunkedLoop:
    """The feed-forward loops of one sequence, called a chunk of steps at a time with the states
    carried between calls (what :func:`forward_scan` and :func:`backward_scan` do in one call),
    for callers that make the input chunk by chunk and never hold a whole ``[T, ...]`` sequence
    (:mod:`spikegrad.kernels.projected`). No adaptation; constants are not trained.

    Arrays are numpy ``[Tc, M]`` (M neurons per step, contiguous rows), states ``[M]``.
    """

    def __init__(self, spec, row_shape, dtype: torch.dtype, a_mem, a_syn, theta, v_reset):
        self.spec, self.dtype, self.row_shape = spec, dtype, tuple(row_shape)
        self.M = math.prod(row_shape)
        if dtype not in _NP_DTYPE:
            raise guards.DtypeError(f"numba ChunkedLoop computes in float32 or float64, got "
                                    f"{dtype}")
        par = functools.partial(constant_row, shape=self.row_shape, dtype=dtype)
        g = (1.0 - a_mem) if spec.scale_input else 1.0
        self.theta = theta
        self.pars = (par(a_mem), par(g), par(a_syn if spec.has_syn else 0.0),
                     par(theta if spec.spiking else 0.0), par(v_reset if spec.spiking else 0.0))
        self.F = _NP_DTYPE[dtype]
        self.kind = (_SURROGATE_IDS.get(spec.surrogate.derivative, 0) if spec.spiking else 0)

    def state(self, t: Optional[Tensor], like: Tensor) -> np.ndarray:
        """A writable ``[M]`` copy of a state (zeros for None)."""
        if t is None:
            return np.zeros(self.M, self.F)
        return _state(t, like)

    def forward(self, xc: np.ndarray, v: np.ndarray, i: np.ndarray, ys: np.ndarray,
                keep_u: bool, i_scratch: Optional[np.ndarray]) -> None:
        """Steps ``xc`` from states ``v``, ``i`` (updated in place); writes the outputs into
        ``ys`` and, with ``keep_u``, the membrane over ``xc`` itself. ``i_scratch``: a
        ``[Tc, M]`` array for the synaptic current sequence (written, never read; None
        without a synapse)."""
        spec, F, M = self.spec, self.F, self.M
        n = xc.shape[0] if isinstance(xc, np.ndarray) else -1
        where = "numba ChunkedLoop.forward"
        guards.array(xc, "xc", (n, M), F, where)
        guards.array(v, "v", (M,), F, where)
        guards.array(ys, "ys", (n, M), F, where)
        if spec.has_syn:
            guards.array(i, "i", (M,), F, where)
            guards.array(i_scratch, "i_scratch", (n, M), F, where)
        fwd = _fwd_kernel(spec.spiking, _RESET[spec.reset], spec.has_syn, spec.scale_input,
                          keep_u, False, False, False, self.F, inplace=keep_u)
        extra, _ = _adapt_forward_args(None, None, None, None, self.dtype, keep_u, rank=1)
        d = _dummy(self.dtype)
        a, g, a_s, th, vr = self.pars
        args = (xc, v, i, a, g, a_s, th, vr, ys, d, i_scratch if spec.has_syn else d, *extra)
        run_kernel(fwd, args, self.M, xc.size, align=16)

    def backward(self, gys: np.ndarray, u: np.ndarray, gv: np.ndarray, gi: np.ndarray,
                 gu_out: Optional[np.ndarray], gi_out: Optional[np.ndarray]) -> np.ndarray:
        """The adjoint over one chunk (time reversed) from the adjoint states ``gv``, ``gi``
        (updated in place); returns the gradient of each step's input current (``gu_out``, or
        ``gi_out`` with a synapse; scaled by ``1 - a_mem`` with ``scale_input``). With
        ``gu_out`` None it goes over ``u`` itself (``gi_out`` is then not used)."""
        spec, F, M = self.spec, self.F, self.M
        inplace = gu_out is None
        n = u.shape[0] if isinstance(u, np.ndarray) else -1
        where = "numba ChunkedLoop.backward"
        guards.array(u, "u", (n, M), F, where)
        guards.array(gys, "gys", (gys.shape[0] if gys.shape[0] == 1 else n, M), F, where)
        guards.array(gv, "gv", (M,), F, where)
        guards.array(gi, "gi", (M,), F, where)
        if not inplace:
            guards.array(gu_out, "gu_out", (n, M), F, where)
            if spec.has_syn:
                guards.array(gi_out, "gi_out", (n, M), F, where)
        phi_ext = _dummy(self.dtype)
        if spec.spiking and self.kind == 0:  # a user's surrogate: its torch function
            ut = torch.from_numpy(u).view(u.shape[0], *self.row_shape)
            phi_ext = _user_phi(spec, ut, self.theta).reshape(u.shape[0], -1)
            phi_ext = phi_ext.to(self.dtype).contiguous().numpy()
        bwd = _bwd_kernel(spec.spiking, _RESET[spec.reset], spec.detach_reset, spec.has_syn,
                          self.kind, self.F, False, False, False, inplace)
        extra, _ = _adapt_backward_args(None, None, None, None, self.dtype, rank=1)
        a, g, a_s, th, vr = self.pars
        beta = self.F(spec.surrogate.beta if spec.spiking else 0.0)
        d = _dummy(self.dtype)
        args = (gys, u, th, vr, a, g, a_s, gv, gi, beta, phi_ext, d if inplace else gu_out,
                gi_out if spec.has_syn and not inplace else d, *extra)
        run_kernel(bwd, args, self.M, u.size, align=16, after=(np.int64(0),))
        out = u if inplace else gi_out if spec.has_syn else gu_out
        if spec.scale_input and not spec.has_syn:
            np.multiply(out, g, out=out)
        return out


# A recurrent element-step costs about this many feed-forward ones (the unit of the thread
# split's work threshold): it adds the weight rows of the previous step's spikes (forward) or
# a row of the dense product g_in W (backward). Workload C's whole step: ~8 ns per element-step
# on one thread against ~0.3 ns for the feed-forward loops. Counted as 1, a 32-step chunk of
# workload C (Sequential(recompute=True)) fell below the threshold and ran on one thread.
_REC_COST = 16


def forward_scan_rec(spec, xs: Tensor, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                     store_u: bool = True, adapt=None, inplace: bool = False,
                     ys_out: Optional[Tensor] = None):
    """Recurrent forward, ``xs [T, B, N]``; returns what :func:`forward_scan` returns (with
    ``adapt`` as there). ``inplace`` (spiking, no adaptation): the membrane is written over
    ``xs`` (contiguous) and returned as the saved sequence; ``ys_out``: where to write the
    spikes (contiguous, shaped like ``xs``)."""
    where = "numba forward_scan_rec"
    _entry(xs, where)
    _rank3(xs, "xs", where)
    T, B, N = xs.shape
    _states(where, (B, N), ("v0", v0), ("i0", i0 if spec.has_syn else None), ("y0", y0),
            *(() if adapt is None else (("ad", adapt.ad),
                                        ("ref", adapt.ref if adapt.n_ref > 0 else None),
                                        ("q", adapt.q))))
    guards.shape_is(w_rec, (N, N), "w_rec", where)
    if ys_out is not None:
        guards.shape_is(ys_out, xs.shape, "ys_out", where)
        if ys_out.dtype != xs.dtype or not ys_out.is_contiguous():
            raise ValueError(f"{where}: ys_out must be contiguous {xs.dtype}")
    dt = xs.dtype
    F = _NP_DTYPE[dt]
    x3 = xs.detach().contiguous()
    store_u = store_u or not spec.spiking
    inplace = inplace and store_u and spec.spiking and adapt is None
    u_all = (x3 if inplace else torch.empty_like(x3)) if store_u else None
    ys = ((ys_out if ys_out is not None else torch.empty_like(x3)) if spec.spiking
          else u_all)
    i_all = torch.empty_like(x3) if spec.has_syn else None
    v = _state_copy(v0, dt)
    i = _state_copy(i0, dt) if spec.has_syn else None
    a, g, a_s, th, vr = _leak_rows(spec, (N,), dt, a_mem, a_syn, theta, v_reset)
    fwd = _fwd_rec_kernel(spec.spiking, _RESET[spec.reset], spec.has_syn, spec.scale_input,
                          store_u, adapt is not None, adapt is not None and adapt.n_ref > 0,
                          adapt is not None and adapt.q is not None, F, inplace)
    par = functools.partial(constant_row, shape=(N,), dtype=dt)
    extra, (ad_all, ad, free_all, ref, q) = _adapt_forward_args(
        adapt, lambda t: _state_copy(t, dt), lambda: torch.empty_like(x3), par, dt, store_u,
        rank=2)
    d3 = _dummy(dt, 3)
    args = (x3.numpy(), _array(y0, dt), np.ascontiguousarray(_array(w_rec, dt).T), v.numpy(),
            i.numpy() if spec.has_syn else _dummy(dt, 2), a, g, a_s, th, vr,
            ys.numpy() if spec.spiking else d3,
            u_all.numpy() if store_u and not inplace else d3,
            i_all.numpy() if spec.has_syn else d3, *extra)
    # the batch rows are independent: one slice of rows per thread
    run_kernel(fwd, args, B, T * B * N * _REC_COST)
    out = ys, u_all, i_all, v, (i if spec.has_syn else None)
    return out if adapt is None else out + (ad_all, free_all, ad, ref, q)


def backward_scan_rec(spec, g_ys: Tensor, u_all: Tensor, theta, v_reset, a_mem, a_syn,
                      gv_T: Tensor, gi_T, w_rec: Tensor, adapt=None, inplace: bool = False):
    """``(gu_all, gi_all, g_in_0)``: the adjoint of :func:`forward_scan_rec`; ``g_in_0`` is the
    gradient w.r.t. the total input current of step 0 (for the initial output's gradient).
    ``adapt``: as for :func:`backward_scan` (the result then also holds the gradients of the
    initial trace, membrane and relative trace). ``inplace`` (no synapse, no adaptation,
    ``u_all`` contiguous): ``gu_all`` is written over ``u_all`` and returned as it."""
    where = "numba backward_scan_rec"
    _entry(u_all, where)
    _rank3(u_all, "u_all", where)
    T, B, N = u_all.shape
    _grad_fits(g_ys, u_all.shape, where)
    _states(where, (B, N), ("gv_T", gv_T), ("gi_T", gi_T),
            *(() if adapt is None else (("g_ad", adapt.g_ad), ("g_q", adapt.g_q))))
    if adapt is not None:
        _states(where, u_all.shape, ("ad_all", adapt.ad_all), ("free_all", adapt.free_all))
    guards.shape_is(w_rec, (N, N), "w_rec", where)
    dt = u_all.dtype
    F = _NP_DTYPE[dt]
    gys = grad_rows(g_ys if g_ys.dtype == dt and g_ys.shape == u_all.shape
                    else g_ys.to(dt).expand(u_all.shape))  # [T or 1, B, N]
    kind, phi_ext = 0, _dummy(dt, 3)
    if spec.spiking:
        kind = _SURROGATE_IDS.get(spec.surrogate.derivative, 0)
        if kind == 0:
            thr = _threshold_all(theta, adapt)
            phi_ext = _array(_user_phi(spec, u_all, thr), dt)
    inplace = inplace and not spec.has_syn and adapt is None and u_all.is_contiguous()
    gu_all = u_all if inplace else torch.empty_like(u_all)
    gi_all = torch.empty_like(u_all) if spec.has_syn else None
    gv = _state_copy(gv_T, dt, (B, N))
    gi = _state_copy(gi_T, dt, (B, N)) if spec.has_syn else None
    g_in = torch.zeros(B, N, dtype=dt)
    a, g, a_s, th, vr = _leak_rows(spec, (N,), dt, a_mem, a_syn, theta, v_reset)
    gemm = blas.gemm(dt)
    bwd = _bwd_rec_kernel(spec.spiking, _RESET[spec.reset], spec.detach_reset, spec.has_syn,
                          kind, F, adapt is not None,
                          adapt is not None and adapt.free_all is not None,
                          adapt is not None and adapt.g_q is not None, inplace,
                          gemm is not None)
    par = functools.partial(constant_row, shape=(N,), dtype=dt)
    extra, (ga, gq) = _adapt_backward_args(
        adapt, lambda t: _state_copy(t, dt),
        lambda t: t.detach().to(dt).contiguous().numpy(), par, dt, rank=2)
    d3 = _dummy(dt, 3)
    args = (gys, _array(u_all, dt), _array(w_rec, dt), th, vr, a, g, a_s,
            gv.numpy(), gi.numpy() if spec.has_syn else _dummy(dt, 2),
            F(spec.surrogate.beta if spec.spiking else 0.0), phi_ext,
            d3 if inplace else gu_all.numpy(), gi_all.numpy() if spec.has_syn else d3,
            g_in.numpy(), *extra)
    cut = np.int64(spec.cut)
    with _single_threaded_blas(B * N * N) if gemm is None else blas.one_thread():
        run_kernel(bwd, args, B, T * B * N * _REC_COST,
                   after=(cut, 0 if gemm is None else gemm))
    return (gu_all, gi_all, g_in) if adapt is None else (gu_all, gi_all, g_in, ga, gv, gq)


@jit_cache.njit(nogil=True, error_model="numpy")
def _reverse_trace_kernel(c, rho, g_end, out):
    T = c.shape[0]
    out[T - 1] = g_end
    for t in range(T - 1, 0, -1):
        for k in range(c.shape[1]):
            out[t - 1, k] = rho[k] * out[t, k] + c[t, k]


def reverse_trace(c: Tensor, rho, g_end: Tensor) -> Tensor:
    """The adjoint of a leaky trace ``a_t = rho a_{t-1} + ...`` over time: ``out [T, ...]``
    with ``out_{T-1} = g_end`` and ``out_{t-1} = rho out_t + c_t`` (``c [T, ...]``, ``rho`` a
    float or per-neuron tensor, ``g_end`` one step). ALIF's trained-constant gradients read
    it (the fused backward keeps only its running value)."""
    where = "numba reverse_trace"
    _entry(c, where)
    guards.shape_is(g_end, tuple(c.shape[1:]), "g_end", where)
    dt = c.dtype
    T = c.shape[0]
    c2 = _array(c, dt).reshape(T, -1)
    out = torch.empty(c.shape, dtype=dt)
    _reverse_trace_kernel(c2, constant_row(rho, tuple(c.shape[1:]), dt),
                          _array(g_end, dt).reshape(-1), out.numpy().reshape(T, -1))
    return out
