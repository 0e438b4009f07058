"""A compiled e-prop step for streaming (``B`` streams, often one):
:meth:`spikegrad.learning.EProp.step` in one numba loop, in place, for the factorised case
(LIF with a detached subtractive reset and scalar decays, optionally current-based; readout LI
without a synaptic stage).

Why: the reference step is about 25 small torch ops on ``[1, N]`` and ``[1, N, P]`` tensors;
their dispatch, not the arithmetic, sets its time (about 1 ms per step on a loaded 2-core
machine), while a closed-loop decoder gets a new bin every 4 ms. Here one call does the whole
step: the input current, the neuron, the readout, the eligibility vector and its readout
filtering, the learning signal and the gradient accumulators, in one pass over the ``[N, P]``
synapses (``e = psi (x) eps`` is never stored: it is rank one in the factorised case). A
batch runs its samples one after the other through the same loop, adding into the shared
accumulators (the reference sums the batch first, so sums differ in order, to rounding).

The arithmetic follows the reference's equations in its order (see
:mod:`spikegrad.learning.eprop`); matrix-vector products are summed in index order, so
float32 results agree with torch's BLAS to rounding, not bit for bit (tests compare both in
float64 to 1e-10 and in float32 to float precision). The state lives in the caller's arrays
(the tensors of an :class:`~spikegrad.learning.EPropState`), which the step overwrites.

Every entry checks its arrays (shape, dtype, C-contiguity) before entering compiled code
(:func:`check_step_arrays`): a wrong shape would otherwise be a write past a buffer's end.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import numba
import numpy as np

from . import guards, jit_cache
from .numba_leaky import scalar_surrogate

__all__ = ["StepSpec", "StepArrays", "CONSTANTS", "step_kernel", "run_kernel",
           "check_step_arrays"]

#: order of the float constants array ``consts`` the kernels read
CONSTANTS = ("decay_mem", "decay_syn", "threshold", "surrogate_beta", "decay_out",
             "loss_scale")


class StepSpec(NamedTuple):
    """What the specialised kernel is compiled for (static, not arrays)."""

    has_b_in: bool       # input Linear has a bias
    recurrent: bool      # hidden layer is nn.Recurrent
    autapses: bool       # recurrent self-connections allowed (else the diagonal is skipped)
    has_b_out: bool      # readout Linear has a bias
    has_syn: bool        # current-based LIF (decay_syn)
    scale_in: bool       # LIF scale_input: input times (1 - decay_mem)
    scale_out: bool      # readout scale_input: input times (1 - decay_out)
    symmetric: bool      # learning signal through W_out^T (else through the feedback matrix)
    reg: bool            # accumulate sum_t e_t for the rate regulariser
    surrogate: int       # built-in surrogate id (spec.SURROGATE_IDS; 0 is not supported)
    float64: bool


class StepArrays(NamedTuple):
    """The arrays of ``B`` streams (all C-contiguous, one float dtype). ``n_in`` inputs, ``N``
    hidden neurons, ``K`` outputs, ``P = n_in + has_b_in + N * recurrent`` presynaptic units
    of the hidden layer, ``Q = N + has_b_out`` of the readout. Weights and accumulators are
    shared; the state has one row per stream. Arrays a spec does not use (e.g. ``b_in``
    without a bias) are any array of the right dtype, except the unused state rows ``i`` and
    ``pre_i``, which are 2-d (the kernel takes their first row)."""

    w_in: np.ndarray     # [N, n_in]
    b_in: np.ndarray     # [N]
    w_rec: np.ndarray    # [N, N]
    w_out: np.ndarray    # [K, N]
    b_out: np.ndarray    # [K]
    feedback: np.ndarray  # [N, K]: B (random/adaptive feedback)
    v: np.ndarray        # [B, N] membrane after reset
    i: np.ndarray        # [B, N] synaptic current
    z: np.ndarray        # [B, N] spikes of the last step
    y: np.ndarray        # [B, K] readout
    pre_i: np.ndarray    # [B, P] presynaptic values through the synaptic filter
    eps: np.ndarray      # [B, P] eligibility vector dv/dW (factorised)
    ebar: np.ndarray     # [B, N, P] eligibility traces through the readout kernel
    zbar: np.ndarray     # [B, Q] readout presynaptic values through the readout kernel
    count: np.ndarray    # [N] spikes so far (summed over the streams)
    acc_w: np.ndarray    # [N, P] accumulated gradient of the hidden layer's weights
    acc_out: np.ndarray  # [K, Q] accumulated gradient of the readout's weights
    acc_e: np.ndarray    # [N, P] sum of the eligibility traces (regulariser)
    consts: np.ndarray   # [len(CONSTANTS)] float64


def check_step_arrays(spec: StepSpec, a: StepArrays, n_in: int, where: str) -> tuple:
    """Check every array of ``a`` against ``spec`` and ``n_in`` (shape, dtype,
    C-contiguity, one batch ``B`` for the whole state); returns ``(N, K, P, Q, B)``. Raises
    before anything compiled runs."""
    dtype = np.float64 if spec.float64 else np.float32
    if not isinstance(a, StepArrays):
        raise TypeError(f"{where}: arrays must be StepArrays, got {type(a).__name__}")
    if not isinstance(a.w_in, np.ndarray) or a.w_in.ndim != 2 or a.w_in.shape[1] != n_in:
        raise ValueError(f"{where}: w_in must be a [N, {n_in}] array, got "
                         f"{getattr(a.w_in, 'shape', type(a.w_in).__name__)}")
    n = a.w_in.shape[0]
    if not isinstance(a.w_out, np.ndarray) or a.w_out.ndim != 2 or a.w_out.shape[1] != n:
        raise ValueError(f"{where}: w_out must be a [K, {n}] array, got "
                         f"{getattr(a.w_out, 'shape', type(a.w_out).__name__)}")
    if not isinstance(a.v, np.ndarray) or a.v.ndim != 2 or a.v.shape[0] < 1:
        raise ValueError(f"{where}: v must be a [B, {n}] array with B >= 1, got "
                         f"{getattr(a.v, 'shape', type(a.v).__name__)}")
    k, b = a.w_out.shape[0], a.v.shape[0]
    p = n_in + spec.has_b_in + (n if spec.recurrent else 0)
    q = n + spec.has_b_out
    shapes = {"w_in": (n, n_in), "w_out": (k, n), "v": (b, n), "z": (b, n), "y": (b, k),
              "eps": (b, p), "ebar": (b, n, p), "zbar": (b, q), "count": (n,),
              "acc_w": (n, p), "acc_out": (k, q)}
    if spec.has_b_in:
        shapes["b_in"] = (n,)
    if spec.recurrent:
        shapes["w_rec"] = (n, n)
    if spec.has_b_out:
        shapes["b_out"] = (k,)
    if not spec.symmetric:
        shapes["feedback"] = (n, k)
    if spec.has_syn:
        shapes.update(i=(b, n), pre_i=(b, p))
    if spec.reg:
        shapes["acc_e"] = (n, p)
    guards.step_arrays(a, shapes, len(CONSTANTS), dtype, where)
    for name in ("i", "pre_i"):
        arr = getattr(a, name)
        if name not in shapes and (arr.ndim != 2 or arr.shape[0] < 1):
            raise ValueError(f"{where}: {name} (unused here) must still be a 2-d array with a "
                             "row")
    return n, k, p, q, b


@functools.lru_cache(maxsize=None)
def _step_body(spec: StepSpec):
    """The specialised step, inlined into the one-step and many-step kernels."""
    F = np.float64 if spec.float64 else np.float32
    phi = scalar_surrogate(spec.surrogate, F)
    one, zero, half = F(1.0), F(0.0), F(0.5)
    has_b_in, recurrent, autapses = spec.has_b_in, spec.recurrent, spec.autapses
    has_b_out, has_syn, scale_in, scale_out = (spec.has_b_out, spec.has_syn, spec.scale_in,
                                               spec.scale_out)
    symmetric, reg = spec.symmetric, spec.reg

    @numba.njit(inline="always", error_model="numpy")
    def body(x, target, w_in, b_in, w_rec, w_out, b_out, fb, v, isyn, z, y, pre_i, eps, ebar,
             zbar, count, acc_w, acc_out, acc_e, consts, xhat, psi, znew, err, learn):
        n, n_in = w_in.shape
        k = w_out.shape[0]
        p_all = eps.shape[0]
        a_mem, a_syn, theta = F(consts[0]), F(consts[1]), F(consts[2])
        beta, kappa, ls = F(consts[3]), F(consts[4]), F(consts[5])
        g_in = one - a_mem
        g_out = one - kappa
        # presynaptic values xhat = [x, 1, z_{t-1}] (before z is overwritten)
        for p in range(n_in):
            xhat[p] = x[p]
        col = n_in
        if has_b_in:
            xhat[col] = one
            col += 1
        if recurrent:
            for j in range(n):
                xhat[col + j] = z[j]
        # hidden neurons: current, integrate, fire, reset; psi = phi(u - theta)
        for j in range(n):
            c = zero
            for p in range(n_in):
                c += w_in[j, p] * x[p]
            if has_b_in:
                c = c + b_in[j]
            if recurrent:
                r = zero
                for m in range(n):
                    if autapses or m != j:
                        r += w_rec[j, m] * z[m]
                c = c + r
            if has_syn:
                isyn[j] = a_syn * isyn[j] + c
                c = isyn[j]
            if scale_in:
                c = g_in * c
            u = a_mem * v[j] + c
            s = one if u - theta > zero else zero
            psi[j] = phi(u - theta, beta)
            v[j] = u - s * theta
            znew[j] = s
        for j in range(n):
            z[j] = znew[j]
            count[j] += znew[j]
        # eligibility vector (factorised): eps = a_mem eps + g xhat through the synaptic filter
        for p in range(p_all):
            drive = xhat[p]
            if has_syn:
                pre_i[p] = a_syn * pre_i[p] + drive
                drive = pre_i[p]
            if scale_in:
                drive = g_in * drive
            eps[p] = a_mem * eps[p] + drive
        # readout y = kappa y + (W_out z + b), and its kernel on the readout's presynaptic values
        loss = zero
        for o in range(k):
            c = zero
            for j in range(n):
                c += w_out[o, j] * z[j]
            if has_b_out:
                c = c + b_out[o]
            if scale_out:
                c = g_out * c
            y[o] = kappa * y[o] + c
            d = y[o] - target[o]
            err[o] = ls * d
            loss += d * d
        for j in range(n):
            zbar[j] = kappa * zbar[j] + (g_out * z[j] if scale_out else z[j])
        if has_b_out:
            zbar[n] = kappa * zbar[n] + (g_out if scale_out else one)
        for o in range(k):
            for q in range(zbar.shape[0]):
                acc_out[o, q] += err[o] * zbar[q]
        # learning signal L = B err (B = W_out^T for symmetric feedback)
        for j in range(n):
            s = zero
            for o in range(k):
                s += (w_out[o, j] if symmetric else fb[j, o]) * err[o]
            learn[j] = s
        # e = psi (x) eps; ebar = kappa ebar + g e; acc_w += L ebar; acc_e += e: one pass
        for j in range(n):
            pj, lj = psi[j], learn[j]
            for p in range(p_all):
                e = pj * eps[p]
                eb = kappa * ebar[j, p] + (g_out * e if scale_out else e)
                ebar[j, p] = eb
                acc_w[j, p] += lj * eb
                if reg:
                    acc_e[j, p] += e
        return half * ls * loss

    return body


@functools.lru_cache(maxsize=None)
def _batch_step(spec: StepSpec):
    """One step of every stream (the body on each state row in turn), returning the summed
    loss; inlined into the one-step and many-step kernels."""
    body = _step_body(spec)
    has_syn = spec.has_syn

    @numba.njit(inline="always", error_model="numpy")
    def batch_step(x, target, w_in, b_in, w_rec, w_out, b_out, fb, v, isyn, z, y, pre_i, eps,
                   ebar, zbar, count, acc_w, acc_out, acc_e, consts, scratch):
        n, k, p_all = w_in.shape[0], w_out.shape[0], eps.shape[1]
        xhat = scratch[:p_all]
        psi = scratch[p_all:p_all + n]
        znew = scratch[p_all + n:p_all + 2 * n]
        learn = scratch[p_all + 2 * n:p_all + 3 * n]
        err = scratch[p_all + 3 * n:p_all + 3 * n + k]
        total = 0.0
        for s in range(v.shape[0]):
            # unused synaptic rows (no decay_syn) are a dummy's first row, never touched
            r = s if has_syn else 0
            total += body(x[s], target[s], w_in, b_in, w_rec, w_out, b_out, fb, v[s], isyn[r],
                          z[s], y[s], pre_i[r], eps[s], ebar[s], zbar[s], count, acc_w,
                          acc_out, acc_e, consts, xhat, psi, znew, err, learn)
        return total

    return batch_step


@functools.lru_cache(maxsize=None)
def step_kernel(spec: StepSpec):
    """``kernel(x [B, n_in], target [B, K], *StepArrays, scratch [P + 3 N + K]) -> loss``:
    one step of ``B`` streams in place; the loss is ``loss_scale / 2 * sum (y - target)^2``
    of the step, summed over the streams."""
    batch_step = _batch_step(spec)

    @jit_cache.njit(error_model="numpy")
    def kernel(x, target, w_in, b_in, w_rec, w_out, b_out, fb, v, isyn, z, y, pre_i, eps,
               ebar, zbar, count, acc_w, acc_out, acc_e, consts, scratch):
        return batch_step(x, target, w_in, b_in, w_rec, w_out, b_out, fb, v, isyn, z, y,
                          pre_i, eps, ebar, zbar, count, acc_w, acc_out, acc_e, consts, scratch)

    return kernel


@functools.lru_cache(maxsize=None)
def run_kernel(spec: StepSpec):
    """``kernel(xs [T, B, n_in], targets [T, B, K], ys [T, B, K], *StepArrays, scratch) ->
    loss``: ``T`` steps of ``B`` streams in place, the readout of each written to ``ys``;
    returns the summed loss."""
    batch_step = _batch_step(spec)

    @jit_cache.njit(error_model="numpy")
    def kernel(xs, targets, ys, w_in, b_in, w_rec, w_out, b_out, fb, v, isyn, z, y, pre_i,
               eps, ebar, zbar, count, acc_w, acc_out, acc_e, consts, scratch):
        total = 0.0
        for t in range(xs.shape[0]):
            total += batch_step(xs[t], targets[t], w_in, b_in, w_rec, w_out, b_out, fb, v,
                                isyn, z, y, pre_i, eps, ebar, zbar, count, acc_w, acc_out,
                                acc_e, consts, scratch)
            for s in range(y.shape[0]):
                for o in range(y.shape[1]):
                    ys[t, s, o] = y[s, o]
        return total

    return kernel


def scratch_size(n: int, k: int, p: int) -> int:
    """Length of the kernels' scratch array."""
    return p + 3 * n + k


def check_io(x: np.ndarray, target: np.ndarray, n_in: int, k: int, dtype, where: str,
             steps: Sequence[int] = ()) -> None:
    """The input and target (and output) arrays of a call: ``[*steps, n_in]`` and
    ``[*steps, K]``, the stream's dtype, C-contiguous."""
    guards.array(x, "x", (*steps, n_in), dtype, where)
    guards.array(target, "target", (*steps, k), dtype, where)
