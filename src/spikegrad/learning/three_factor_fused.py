"""The compiled backend of the three-factor rule's step: which configurations it runs
(:func:`fused_unsupported`), how a ``backend`` argument resolves (:func:`resolve_backend`),
and one step through :mod:`spikegrad.kernels.numba_three_factor` on tensors
(:func:`fused_step`).

Backends: ``"numba"`` runs the neurons, the surrogate derivative and the presynaptic trace
of a step in one compiled call; ``"reference"`` is the torch code of
:func:`spikegrad.learning.lif_trace_step`; ``"auto"`` takes numba where it is installed and
the layer is of the kind its kernel runs, else the reference. An explicit ``"numba"`` never
falls back: it raises with the reason.

The accumulation of the factors' outer product is not compiled: one in-place BLAS call
(``addmm_``) was faster than a compiled loop (tried and removed) at the onchip app's size
(64 -> 128, one thread, an ad-hoc timing loop: 4.6 against 10.2 us per call at batch 1, 8.4
against 30.4 us at batch 32; the loop's checks and batch sum cost more than the dispatch).

The compiled step supports LIF and IF neurons with any reset mode, with or without a
synaptic current and input scaling, every trace (``"kernel"``, ``"spikes"``, a decay) and
every built-in surrogate, in float32 or float64 on the CPU; it needs layer-wide (scalar)
decays, threshold and reset potential.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._validate import DtypeError, check_choice
from ..functional.lif import LIFParams
from ..kernels.registry import numba_available
from ..kernels.spec import RESET_IDS, SURROGATE_IDS

__all__ = ["BACKENDS", "fused_unsupported", "resolve_backend", "fused_step"]

BACKENDS = ("auto", "numba", "reference")
_DTYPES = (torch.float32, torch.float64)


def _is_scalar(x) -> bool:
    return not isinstance(x, Tensor) or x.numel() == 1


def fused_unsupported(p: LIFParams, dtype: torch.dtype, device: torch.device
                      ) -> Optional[str]:
    """None if the compiled step runs LIF neurons with parameters ``p`` on tensors of
    ``dtype`` on ``device``, else the reason."""
    if not numba_available():
        return "it needs numba: pip install 'spikegrad[fast]'"
    for name in ("decay_mem", "decay_syn", "threshold", "v_reset"):
        if not _is_scalar(getattr(p, name)):
            return (f"it needs a layer-wide (scalar) {name}, not one per neuron (no learn_tau, "
                    "learn_threshold or learn_reset)")
    if p.surrogate.derivative not in SURROGATE_IDS:
        return f"it evaluates built-in surrogates only, not {p.surrogate.name!r}"
    if dtype not in _DTYPES or torch.device(device).type != "cpu":
        return f"it runs float32/float64 on the CPU, not {dtype} on {device}"
    return None


def resolve_backend(backend: str, p: LIFParams, dtype: torch.dtype, device: torch.device,
                    owner: str) -> str:
    """``"numba"`` or ``"reference"`` for a requested ``backend`` (one of :data:`BACKENDS`);
    ValueError naming what is unsupported when ``"numba"`` is asked for and cannot run
    ``owner`` (a name for the message)."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "reference":
        return backend
    reason = fused_unsupported(p, dtype, device)
    if backend == "numba" and reason is not None:
        raise ValueError(f"backend='numba' cannot run {owner}: {reason}; use "
                         "backend='reference' (or 'auto')")
    return "numba" if reason is None else "reference"


def _const(x, name: str) -> float:
    if isinstance(x, Tensor) and x.numel() != 1:
        raise ValueError(f"the compiled three-factor step needs a layer-wide {name}, got one "
                         f"of shape {list(x.shape)}; use backend='reference'")
    return float(x)


def _array(t: Optional[Tensor], dtype) -> np.ndarray:
    """A C-contiguous numpy view (a copy only where ``t`` is not contiguous: the step never
    writes its inputs); a 1-element dummy for an absent state."""
    if t is None:
        return np.zeros(1, dtype)
    if not isinstance(t, Tensor):
        raise TypeError(f"the three-factor state must hold torch tensors, got "
                        f"{type(t).__name__}")
    if t.requires_grad:
        t = t.detach()
    return (t if t.is_contiguous() else t.contiguous()).numpy()


_KERNELS = []


def _kernels():
    """:mod:`spikegrad.kernels.numba_three_factor`, imported on first use (numba loads only
    when this backend runs), then kept: an import statement per step costs microseconds."""
    if not _KERNELS:
        from ..kernels import numba_three_factor
        _KERNELS.append(numba_three_factor)
    return _KERNELS[0]


def fused_step(current: Tensor, xhat: Tensor, v: Tensor, i: Optional[Tensor], pre: Tensor,
               pre_i: Optional[Tensor], p: LIFParams, trace: Union[str, float]
               ) -> Tuple[Tensor, Tensor, Optional[Tensor], Tensor, Optional[Tensor], Tensor]:
    """One compiled step of :func:`spikegrad.learning.lif_trace_step` (same arguments):
    returns new tensors ``(z, v, i, pre, pre_i, post)`` (``i`` without a synaptic decay and
    ``pre_i`` without a trace synaptic stage are None). Shapes ``[B, N]`` and ``[B, P]``."""
    k = _kernels()
    if not isinstance(current, Tensor) or current.dtype not in _DTYPES:
        raise DtypeError("the compiled three-factor step computes in float32 or float64, "
                         f"got a current of {getattr(current, 'dtype', type(current).__name__)}"
                         "; use backend='reference'")
    surrogate = SURROGATE_IDS.get(p.surrogate.derivative, 0)
    if surrogate == 0:
        raise ValueError(f"the compiled three-factor step evaluates built-in surrogates only, "
                         f"not {p.surrogate.name!r}; use backend='reference'")
    syn = p.decay_syn is not None
    kind = trace if isinstance(trace, str) else "decay"
    spec = k.StepSpec(syn, bool(p.scale_input), RESET_IDS[p.reset], k.TRACE_IDS[kind],
                      surrogate, current.dtype == torch.float64)
    dtype = np.float64 if spec.float64 else np.float32
    consts = np.array((_const(p.decay_mem, "decay_mem"),
                       _const(p.decay_syn, "decay_syn") if syn else 0.0,
                       # as torch rounds (1 - a): in the decay's own dtype, then cast
                       _const(1.0 - p.decay_mem, "decay_mem") if p.scale_input else 0.0,
                       _const(p.threshold, "threshold"), _const(p.v_reset, "v_reset"),
                       float(p.surrogate.beta), 0.0 if kind != "decay" else float(trace)),
                      np.float64)
    cur = _array(current, dtype)
    b, n = cur.shape if cur.ndim == 2 else (0, 0)
    pn = xhat.shape[-1] if isinstance(xhat, Tensor) and xhat.dim() == 2 else 0
    syn_trace = spec.syn_trace
    dummy = np.zeros(1, dtype)
    a = k.StepArrays(cur, _array(xhat, dtype), _array(v, dtype),
                     _array(i, dtype) if syn else dummy, _array(pre, dtype),
                     _array(pre_i, dtype) if syn_trace else dummy, consts,
                     np.empty((b, n), dtype), np.empty((b, n), dtype),
                     np.empty((b, n), dtype) if syn else dummy, np.empty((b, pn), dtype),
                     np.empty((b, pn), dtype) if syn_trace else dummy, np.empty((b, n), dtype))
    k.check_step_arrays(spec, a, "three-factor step (backend='numba')")
    k.step_kernel(spec)(*a)
    t = torch.from_numpy
    return (t(a.z), t(a.v), t(a.i) if syn else None, t(a.pre),
            t(a.pre_i) if syn_trace else None, t(a.post))
