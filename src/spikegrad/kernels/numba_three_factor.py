"""A compiled step of the online three-factor rule (:class:`spikegrad.learning.ThreeFactor`):
one call per time step runs a layer's LIF neurons (integrate, fire, reset), their surrogate
derivative (the ``post`` factor) and the presynaptic trace (the ``pre`` factor) for a batch.

Why: the reference step is about fifteen small torch ops on ``[B, N]`` and ``[B, P]`` tensors
whose dispatch, not their arithmetic, sets its time at the sizes of on-chip learning (a few
hundred neurons). The input current ``W x + b`` is not in the loop: it stays the caller's one
BLAS call (torch's ``F.linear``, as in the reference, or the read of an analog array), so it
is the reference's bit for bit and a crossbar's read can feed the same step.

Functional: the step reads the previous state and writes the new one into separate output
arrays, since callers keep the factors of several steps (the onchip app buffers them until its
next write). Every element is read before the same index of its output is written, so an
output may also be its own input (in place); no other overlap is meaningful.

The arithmetic follows :func:`spikegrad.functional.leaky.integrate`,
:func:`spikegrad.functional.lif.reset` and the surrogate table in their order, in the arrays'
float type (constants are cast to it first, as torch casts a scalar).

Every call checks its arrays (shape, dtype, C-contiguity, matching batch) before entering
compiled code (:func:`check_step_arrays`): a state one row short would otherwise be a write
past a buffer's end.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Tuple

import numba
import numpy as np

from . import guards, jit_cache
from .numba_leaky import scalar_surrogate

__all__ = ["TRACE_IDS", "CONSTANTS", "StepSpec", "StepArrays", "check_step_arrays",
           "step_kernel"]

#: the presynaptic trace a kernel is compiled for: the neuron's own kernel, the raw values,
#: or an exponential trace with its own decay
TRACE_IDS = {"kernel": 0, "spikes": 1, "decay": 2}

#: order of the float constants array ``consts`` the step reads
CONSTANTS = ("decay_mem", "decay_syn", "gain_in", "threshold", "v_reset", "surrogate_beta",
             "trace_decay")


class StepSpec(NamedTuple):
    """What the specialised step is compiled for (static, not arrays)."""

    has_syn: bool        # current-based LIF (decay_syn)
    scale_in: bool       # scale_input: the input times gain_in = 1 - decay_mem
    reset: int           # spec.RESET_IDS: 0 none, 1 subtract, 2 to_value
    trace: int           # TRACE_IDS
    surrogate: int       # built-in surrogate id (spec.SURROGATE_IDS; 0 is not supported)
    float64: bool

    @property
    def syn_trace(self) -> bool:
        """The trace has a synaptic stage (the neuron kernel of a current-based LIF)."""
        return self.has_syn and self.trace == TRACE_IDS["kernel"]


class StepArrays(NamedTuple):
    """One step's arrays (all C-contiguous, one float dtype; ``consts`` float64). ``B``
    samples, ``N`` neurons, ``P`` presynaptic units. Arrays a spec does not use (the synaptic
    current without ``has_syn``, the trace's synaptic stage without ``syn_trace``) may be any
    array of the right dtype; the kernel never touches them."""

    current: np.ndarray  # [B, N] the layer's input current at this step
    xhat: np.ndarray     # [B, P] presynaptic values at this step
    v0: np.ndarray       # [B, N] membrane after the previous step's reset
    i0: np.ndarray       # [B, N] previous synaptic current
    pre0: np.ndarray     # [B, P] previous presynaptic trace
    pre_i0: np.ndarray   # [B, P] previous synaptic stage of the trace
    consts: np.ndarray   # [len(CONSTANTS)] float64
    z: np.ndarray        # out [B, N] spikes
    v: np.ndarray        # out [B, N] membrane after reset
    i: np.ndarray        # out [B, N] synaptic current
    pre: np.ndarray      # out [B, P] presynaptic trace
    pre_i: np.ndarray    # out [B, P] its synaptic stage
    post: np.ndarray     # out [B, N] surrogate derivative phi(u - theta)


def check_step_arrays(spec: StepSpec, a: StepArrays, where: str) -> Tuple[int, int, int]:
    """Check every array of ``a`` against ``spec`` (shape, dtype, C-contiguity) and one
    another (batch, neurons, presynaptic units); returns ``(B, N, P)``. Raises before
    anything compiled runs."""
    dtype = np.float64 if spec.float64 else np.float32
    if not isinstance(a, StepArrays):
        raise TypeError(f"{where}: arrays must be StepArrays, got {type(a).__name__}")
    for name in ("current", "xhat"):
        arr = getattr(a, name)
        if not isinstance(arr, np.ndarray) or arr.ndim != 2:
            raise ValueError(f"{where}: {name} must be a 2-d [B, ...] array, got "
                             f"{getattr(arr, 'shape', type(arr).__name__)}")
    (b, n), p = a.current.shape, a.xhat.shape[1]
    shapes = {"current": (b, n), "xhat": (b, p), "v0": (b, n), "pre0": (b, p), "z": (b, n),
              "v": (b, n), "pre": (b, p), "post": (b, n)}
    if spec.has_syn:
        shapes.update(i0=(b, n), i=(b, n))
    if spec.syn_trace:
        shapes.update(pre_i0=(b, p), pre_i=(b, p))
    guards.step_arrays(a, shapes, len(CONSTANTS), dtype, where)
    return b, n, p


@functools.lru_cache(maxsize=None)
def step_kernel(spec: StepSpec):
    """``kernel(*StepArrays)``: one step of ``B`` samples; writes the ``out`` arrays."""
    F = np.float64 if spec.float64 else np.float32
    phi = scalar_surrogate(spec.surrogate, F)
    one, zero = F(1.0), F(0.0)
    has_syn, scale_in, reset, trace = spec.has_syn, spec.scale_in, spec.reset, spec.trace
    syn_trace = spec.syn_trace

    @jit_cache.njit(error_model="numpy")
    def kernel(current, xhat, v0, i0, pre0, pre_i0, consts, z, v, i, pre, pre_i, post):
        bsz, n = current.shape
        p_all = xhat.shape[1]
        a_mem, a_syn, g_in = F(consts[0]), F(consts[1]), F(consts[2])
        theta, v_r, beta, d = F(consts[3]), F(consts[4]), F(consts[5]), F(consts[6])
        for s in range(bsz):
            # neurons: integrate (synaptic stage, scaling, leak), fire (H(0) = 0), reset
            for j in range(n):
                c = current[s, j]
                if has_syn:
                    c = a_syn * i0[s, j] + c
                    i[s, j] = c
                if scale_in:
                    c = g_in * c
                u = a_mem * v0[s, j] + c
                h = u - theta
                zj = one if h > zero else zero
                post[s, j] = phi(h, beta)
                z[s, j] = zj
                if reset == 1:
                    v[s, j] = u - zj * theta
                elif reset == 2:
                    v[s, j] = u - zj * (u - v_r)
                else:
                    v[s, j] = u
            # presynaptic trace: the neuron's kernel (du/dW), the raw values, or a decay
            for p in range(p_all):
                x = xhat[s, p]
                if trace == 0:
                    if syn_trace:
                        x = a_syn * pre_i0[s, p] + x
                        pre_i[s, p] = x
                    if scale_in:
                        x = g_in * x
                    pre[s, p] = a_mem * pre0[s, p] + x
                elif trace == 1:
                    pre[s, p] = x
                else:
                    pre[s, p] = d * pre0[s, p] + x

    return kernel
