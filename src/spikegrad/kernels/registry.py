"""The one place that decides which backend runs a neuron sequence.

Each backend declares, per call, whether it can run it (:meth:`Backend.supports` returns None
or the reason it cannot) and provides its forward and adjoint recursions. ``functional``'s
``*_seq`` functions (and the fused ``Linear -> neuron`` pairs) ask :func:`choose`:

* ``"reference"``: the Python loop over the model's step function, always;
* ``"auto"``: the first backend in the device's order (:data:`AUTO_ORDER`) that supports the
  call, else the reference loop;
* an explicit fused backend: that backend, or an error that gives its reason (it never falls
  back silently).

A call is described by :class:`Call`: the model (``"leaky"`` for LIF/IF/LI, ``"alif"``,
``"dendrite"``, ``"projected_lif"`` for a ``Linear -> LIF`` pair, ``"norm_lif_pool"`` for a
conv block's ``norm -> LIF -> pool`` tail), the input sequence,
whether a recurrent weight is part of it, and which neuron constants need a gradient.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from . import guards, ops

BACKENDS = ("auto", "reference", "torch", "numba", "triton")
# auto's preference per device type; the reference loop comes after all of them
AUTO_ORDER = {"cpu": ("numba", "torch"), "cuda": ("triton", "torch")}
DEFAULT_ORDER = ("torch",)

MODEL_NAMES = {"leaky": "LIF/IF/LI sequence", "alif": "ALIF", "dendrite": "dendritic neuron",
               "projected_lif": "Linear -> LIF pair", "step": "recurrent step function",
               "norm_lif_pool": "batch norm -> LIF -> pooling block"}


class Call(NamedTuple):
    """What a sequence call asks of a backend."""

    model: str                      # a key of MODEL_NAMES
    xs: Tensor                      # the input sequence [T, B, ...]
    recurrent: bool = False         # a recurrent weight inside the loop
    trained: Tuple[str, ...] = ()   # neuron constants (or initial states) that need a gradient
    weight: Optional[Tensor] = None  # the projection's weight (projected_lif)


class Unsupported(NamedTuple):
    """Why a backend cannot run a call, and the exception an explicit request raises."""

    reason: str
    error: type = ValueError


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


def _kernel_dtype(xs: Tensor) -> Optional[Unsupported]:
    if xs.dtype not in guards.KERNEL_DTYPES:
        return Unsupported(f"it computes in float32 or float64, but xs is {xs.dtype}",
                           guards.DtypeError)
    return None


def _trained(call: Call) -> Optional[Unsupported]:
    if call.trained:
        return Unsupported(f"trained neuron constants ({', '.join(call.trained)}) need the "
                           "reference loop (their gradients are sums over time of state "
                           "products)")
    return None


class Backend:
    """A fused backend: the models it covers and, per call, whether it runs it."""

    name = ""
    models: Tuple[str, ...] = ()

    def supports(self, call: Call) -> Optional[Unsupported]:
        if call.model not in self.models:
            return Unsupported(f"the {MODEL_NAMES.get(call.model, call.model)} has no fused "
                               f"{self.name} kernel")
        return self._supports(call)

    def _supports(self, call: Call) -> Optional[Unsupported]:
        return None

    # the leaky family's recursions (kernels.leaky's autograd Function calls these)
    def leaky_forward(self, spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                      store_u: bool = True):
        """``(ys, u_all, i_all, v_T, i_T)``; ``u_all`` None when not ``store_u``."""
        raise NotImplementedError

    def leaky_backward(self, spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T,
                       w_rec, need_y0: bool = True):
        """``(gu_all, gi_all, g_y0)`` of the adjoint recursion (``g_y0`` None without
        recurrence; a backend may leave it None when not ``need_y0``)."""
        raise NotImplementedError


class TorchBackend(Backend):
    name, models = "torch", ("leaky", "dendrite")

    def leaky_forward(self, spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                      store_u=True):
        from .torch_leaky import forward_scan
        return forward_scan(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                            store_u=store_u)

    def leaky_backward(self, spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T,
                       w_rec, need_y0=True):
        from .torch_leaky import backward_scan
        return backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T, w_rec)


class NumbaBackend(Backend):
    name, models = "numba", ("leaky", "alif", "projected_lif", "norm_lif_pool", "dendrite")

    def _supports(self, call: Call) -> Optional[Unsupported]:
        if not numba_available():
            return Unsupported("it needs numba: pip install 'spikegrad[fast]'", ImportError)
        xs = call.xs
        if xs.device.type != "cpu":
            return Unsupported(f"it runs on the CPU, but xs is on {xs.device}")
        bad = _kernel_dtype(xs)
        if bad is not None or call.model in ("leaky", "dendrite"):
            return bad
        if call.model == "projected_lif":
            w = call.weight
            if xs.dim() != 3 or w is None or w.dtype != xs.dtype:
                return Unsupported("the pair runs on [T, B, in] inputs of the weight's dtype")
            if ops.transformed():  # its autograd Function has no vmap rule
                return Unsupported("under torch.func the two layers run one by one")
            if guards.autocast_on(xs):  # the unfused pair, whose Linear autocasts
                return Unsupported("under autocast the Linear layer casts its own output")
        if call.model == "norm_lif_pool":
            if xs.dim() != 5:
                return Unsupported("the block runs on [T, B, C, H, W] conv outputs")
            if ops.transformed() or ops.compiling(xs):  # no vmap rule, no registered operator
                return Unsupported("under torch.func or torch.compile the layers run one by one")
            if guards.autocast_on(xs):
                return Unsupported("under autocast batch norm computes in float32 itself")
        return _trained(call)

    def leaky_forward(self, spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                      store_u=True):
        from . import numba_leaky
        if w_rec is None:
            return numba_leaky.forward_scan(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset,
                                            store_u=store_u)
        return numba_leaky.forward_scan_rec(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset,
                                            w_rec, y0, store_u=store_u)

    def leaky_backward(self, spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T,
                       w_rec, need_y0=True):
        from . import numba_leaky
        if w_rec is None:
            gu, gi = numba_leaky.backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem, a_syn,
                                               gv_T, gi_T)
            return gu, gi, None
        gu, gi, g_in0 = numba_leaky.backward_scan_rec(spec, g_ys, u_all, theta, v_reset,
                                                      a_mem, a_syn, gv_T, gi_T, w_rec)
        return gu, gi, (g_in0 @ w_rec if need_y0 else None)


class TritonBackend(Backend):
    name, models = "triton", ("leaky", "dendrite")

    def _supports(self, call: Call) -> Optional[Unsupported]:
        if not triton_available():
            return Unsupported("it needs triton (pip install 'spikegrad[gpu]')", ImportError)
        from .triton_leaky import INTERPRETED
        if call.xs.device.type != "cuda" and not INTERPRETED:
            return Unsupported(f"it runs on CUDA tensors, but xs is on {call.xs.device}")
        if call.recurrent:
            return Unsupported("it covers feed-forward sequences only (no recurrent weights)")
        return _kernel_dtype(call.xs)

    def leaky_forward(self, spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, w_rec, y0,
                      store_u=True):
        from .triton_leaky import forward_scan
        return forward_scan(spec, xs, v0, i0, a_mem, a_syn, theta, v_reset, store_u=store_u)

    def leaky_backward(self, spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T,
                       w_rec, need_y0=True):
        from .triton_leaky import backward_scan
        gu, gi = backward_scan(spec, g_ys, u_all, theta, v_reset, a_mem, a_syn, gv_T, gi_T)
        return gu, gi, None


REGISTRY: Dict[str, Backend] = {b.name: b for b in (TorchBackend(), NumbaBackend(),
                                                   TritonBackend())}


def get(name: str) -> Backend:
    """The fused backend called ``name``."""
    return REGISTRY[name]


def _check_name(backend) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; "
                         f"got {backend!r}")


def check_model(backend: str, model: str) -> str:
    """An error, before any input is seen, for a backend that never covers ``model`` (e.g. at
    a module's construction); returns ``backend``."""
    _check_name(backend)
    if backend in REGISTRY and model not in REGISTRY[backend].models:
        raise ValueError(f"backend={backend!r}: {_alternatives(model, backend)}")
    return backend


def _alternatives(model: str, backend: str) -> str:
    fused = [b.name for b in REGISTRY.values() if model in b.models]
    name = MODEL_NAMES.get(model, model)
    if not fused:
        covered = sorted({MODEL_NAMES[m] for b in REGISTRY.values() for m in b.models
                          if m in ("leaky", "alif")})
        return (f"the {name} has no fused kernel (the fused kernels cover "
                f"{', '.join(covered)}); use backend='auto' or 'reference'")
    listed = ", ".join(repr(b) for b in fused)
    return (f"{name} has no fused path of that kind (its fused kernels: {listed}); use "
            f"'auto', {listed} or 'reference'")


def auto(call: Call) -> str:
    """The backend ``"auto"`` picks for ``call``."""
    for name in AUTO_ORDER.get(call.xs.device.type, DEFAULT_ORDER):
        if REGISTRY[name].supports(call) is None:
            return name
    return "reference"


def choose(backend: str, call: Call) -> str:
    """The backend that runs ``call``: ``"reference"`` or a fused backend's name. An explicit
    fused backend that cannot run the call raises (ImportError, DtypeError or ValueError)
    with the reason and what ``auto`` would run instead."""
    _check_name(backend)
    if backend == "reference":
        return backend
    if backend == "auto":
        return auto(call)
    check_model(backend, call.model)
    why = REGISTRY[backend].supports(call)
    if why is None:
        return backend
    instead = auto(call)
    if why.error is guards.DtypeError and instead == "torch":
        hint = guards.HALF_HINT
    elif instead == "reference":
        hint = "use backend='auto' (which runs the reference loop here) or 'reference'"
    else:
        hint = f"use backend='auto' (here: {instead!r}) or 'reference'"
    raise why.error(f"backend={backend!r} cannot run this {MODEL_NAMES.get(call.model)}: "
                    f"{why.reason}; {hint}")


def fusable(backend: str, call: Call) -> Optional[str]:
    """The fused backend for an optional fusion (e.g. a ``Linear -> LIF`` pair), or None
    where the unfused path should run: never raises for a backend that cannot run it."""
    if backend not in BACKENDS or backend == "reference":
        return None
    name = auto(call) if backend == "auto" else backend
    if name == "reference" or REGISTRY[name].supports(call) is not None:
        return None
    return name
