"""Checks at the doors of compiled code (the numba loops, the Triton kernels).

A compiled loop trusts its arrays: a state one batch row short is not an error there but a
write past the end of a buffer, which corrupts the heap and crashes the process later, far
from its cause. So every entry into compiled code checks, before it enters, the shape, dtype,
device and (where it reads raw memory) layout of what it touches, and that the state matches
the input's batch and features. The public entries (:func:`leaky_call`,
:func:`adaptive_call`, :func:`projected_call`) name the user's arguments and say how to fix
them; the internal entries (numba_leaky's scans, its ChunkedLoop, numba_event) check the
same invariants again with plainer messages, since other kernels call them too.

Cost: a few comparisons of shapes, dtypes and devices per call (about a microsecond each);
never per step, never a pass over the data.

Errors: :class:`DtypeError` (a TypeError) for a dtype, ValueError for a shape, device or
layout, TypeError for something that is not a tensor.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .._validate import STATE_HINT, DtypeError, check_like

# What the compiled kernels compute in (see "Dtypes" in docs/conventions.md).
KERNEL_DTYPES = (torch.float32, torch.float64)

HALF_HINT = ("use backend='torch' (or 'auto', which picks it for half types), or convert the "
             "input with .float()")


def _shape(s) -> list:
    return list(s)


def autocast_on(t: Tensor) -> bool:
    """Whether autocast is enabled for ``t``'s device type."""
    return torch.is_autocast_enabled(t.device.type)


# --- public entries: messages in the user's terms ----------------------------------------------

def sequence(xs, name: str = "xs", rank: Optional[int] = None) -> None:
    """A floating ``[T, B, ...]`` tensor (exactly ``rank`` dims if given) with ``T >= 1``."""
    if not isinstance(xs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(xs).__name__}")
    if not xs.is_floating_point():
        raise DtypeError(f"{name} must be a floating-point tensor, got dtype {xs.dtype}; "
                         f"convert it with {name}.float()")
    if xs.dim() < 2 or (rank is not None and xs.dim() != rank):
        want = "[T, B, N]" if rank == 3 else "[T, B, *features]"
        raise ValueError(f"{name} must be time-major {want}, got shape {_shape(xs.shape)}; put "
                         "time first and batch second")
    if xs.shape[0] == 0:
        raise ValueError(f"{name} has no time steps (T = 0); pass at least one step")


def kernel_dtype(xs: Tensor, backend: str, name: str = "xs", hint: str = HALF_HINT) -> None:
    """DtypeError unless ``xs`` is float32/float64, which the compiled kernels compute in."""
    if xs.dtype not in KERNEL_DTYPES:
        raise DtypeError(f"backend={backend!r} computes in float32 or float64, but {name} is "
                         f"{xs.dtype}; {hint}")


def fits(shape: tuple, target: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without growing it. Plain comparisons
    (``torch.broadcast_shapes`` cost ~20 us a call, a tenth of a short sequence's call)."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) > len(target):
        return False
    return all(s == 1 or s == t for s, t in zip(shape, target[len(target) - len(shape):]))


def constant(c, name: str, step: Sequence[int], ref: Tensor,
             rows: Optional[Tuple[int, ...]] = None, backend: str = "") -> None:
    """A neuron constant: a number, or a tensor on ``ref``'s device (a 0-dim CPU tensor goes
    anywhere, as in torch) that broadcasts to one step ``step`` without growing it; with
    ``rows`` (kernels that take one value per neuron), to ``rows``."""
    if not isinstance(c, Tensor):
        return
    if c.device != ref.device and not (c.dim() == 0 and c.device.type == "cpu"):
        raise ValueError(f"{name} is on {c.device} but the input is on {ref.device}; move it "
                         f"with .to({str(ref.device)!r})")
    if c.dim() == 0:
        return
    target = tuple(rows if rows is not None else step)
    shape = tuple(c.shape)
    if shape == target[len(target) - len(shape):]:  # the usual per-neuron case, no broadcast
        return
    if not fits(shape, target):
        if rows is not None and fits(shape, tuple(step)):
            raise ValueError(f"{name} has shape {_shape(shape)}: backend={backend!r} with "
                             f"recurrence takes one value per neuron {_shape(rows)}; use "
                             "backend='torch' or 'reference' for per-sample constants")
        raise ValueError(f"{name} has shape {_shape(shape)}, which does not broadcast to one "
                         f"step of the input {_shape(step)}; pass a number or a per-neuron "
                         "tensor shaped like the features")


def leaky_call(xs, v0, i0, has_syn: bool, consts: Iterable[Tuple[str, object]], backend: str,
               w_rec=None, y0=None) -> None:
    """The arguments of :func:`spikegrad.kernels.leaky.leaky_sequence` (``backend``
    resolved; ``xs`` already passed :func:`sequence`)."""
    if backend in ("numba", "triton"):
        kernel_dtype(xs, backend)
    _neuron_args(xs.shape[1:], xs, v0, i0, has_syn, consts, backend, w_rec, y0)


def _neuron_args(step, ref: Tensor, v0, i0, has_syn: bool,
                 consts: Iterable[Tuple[str, object]], backend: str, w_rec, y0) -> None:
    """States, recurrent weight and constants of neurons that see one step ``step``
    (``[B, N]``); ``ref`` gives dtype and device."""
    recurrent = w_rec is not None
    prefix = "state.inner" if recurrent else "state"
    check_like(v0, f"{prefix}.v", step, ref)
    if has_syn:
        if i0 is None:
            raise ValueError(f"{prefix}.i is None but the neuron has a synaptic current "
                             "(decay_syn is set); pass state=None to start from zeros")
        check_like(i0, f"{prefix}.i", step, ref)
    rows = None
    if recurrent:
        n = step[-1]
        check_like(w_rec, "the recurrent weight", (n, n), ref,
             hint=f"Recurrent's weight is [N, N] with N = {n} features")
        check_like(y0, "state.y", step, ref)
        if backend == "numba":
            rows = (n,)
    for name, c in consts:
        constant(c, name, step, ref, rows, backend)


def adaptive_call(xs, v0, i0, ad0, ref0, q0, has_syn: bool, n_ref: int, relative: bool,
                  consts: Iterable[Tuple[str, object]], w_rec=None, y0=None) -> None:
    """The arguments of :func:`spikegrad.kernels.adaptive.adaptive_sequence` (``xs`` already
    passed :func:`sequence`)."""
    recurrent = w_rec is not None
    leaky_call(xs, v0, i0, has_syn, consts, "numba", w_rec, y0)
    step = xs.shape[1:]
    prefix = "state.inner" if recurrent else "state"
    check_like(ad0, f"{prefix}.a", step, xs)
    for name, needed, t in (("ref", n_ref > 0, ref0), ("q", relative, q0)):
        if not needed:
            continue
        if t is None:
            raise ValueError(f"{prefix}.{name} is None but the neuron uses it; pass state=None "
                             "to start from zeros")
        check_like(t, f"{prefix}.{name}", step, xs)


def projected_call(xs, weight, bias, v0, i0, has_syn: bool,
                   consts: Iterable[Tuple[str, object]], w_rec=None, y0=None) -> None:
    """The arguments of :func:`spikegrad.kernels.projected.projected_lif` (and, with
    ``w_rec``, ``projected_recurrent_lif``): ``xs [T, B, in]``, ``weight [N, in]``."""
    sequence(xs, "xs", rank=3)
    kernel_dtype(xs, "numba")
    n_in = xs.shape[2]
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[1] != n_in:
        got = _shape(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"Linear weight must be [N, {n_in}] for an input [T, B, {n_in}], "
                         f"got {got}")
    n = weight.shape[0]
    check_like(weight, "Linear weight", (n, n_in), xs, hint="convert the layer with .to(xs.dtype)")
    if bias is not None:
        check_like(bias, "Linear bias", (n,), xs, hint="convert the layer with .to(xs.dtype)")
    # the neurons see one step [B, N]: check their states against that
    _neuron_args(torch.Size((xs.shape[1], n)), xs, v0, i0, has_syn, consts, "numba", w_rec, y0)


# --- internal entries: the invariants the compiled loops index by ------------------------------

def shape_is(t, shape: Sequence[int], name: str, where: str) -> None:
    """``t`` (tensor or array) has exactly ``shape``."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {_shape(t.shape)}, expected "
                         f"{_shape(shape)}")


def array(a, name: str, shape: Sequence[int], dtype, where: str,
          contiguous: bool = True) -> None:
    """A numpy array of ``shape`` and ``dtype`` (C-contiguous: written through raw memory or
    a reshape that must not copy)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise DtypeError(f"{where}: {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
    if a.shape != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {list(a.shape)}, expected {list(shape)}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{where}: {name} must be C-contiguous")


def step_arrays(arrays, shapes: dict, n_consts: int, dtype, where: str) -> None:
    """A compiled step's arguments, a NamedTuple of numpy arrays, by field name: ``consts``
    float64 ``[n_consts]``, those named in ``shapes`` as :func:`array` of that shape and
    ``dtype``, the others (unused by this specialisation, but typed into it) still ``dtype``
    numpy arrays."""
    for name in type(arrays)._fields:
        arr = getattr(arrays, name)
        if name == "consts":
            array(arr, name, (n_consts,), np.float64, where)
        elif name in shapes:
            array(arr, name, shapes[name], dtype, where)
        elif not isinstance(arr, np.ndarray) or arr.dtype != dtype:
            raise TypeError(f"{where}: {name} (unused here) must still be a {np.dtype(dtype)} "
                            "numpy array")


def surrogate_output(phi, like_shape: Sequence[int], name: str) -> None:
    """A user's surrogate derivative evaluated over the sequence, read element by element by
    the compiled backward: it must keep its input's shape."""
    if tuple(phi.shape) != tuple(like_shape):
        raise ValueError(f"the surrogate {name!r} returned shape {_shape(phi.shape)} for an "
                         f"input of shape {_shape(like_shape)}; its derivative must be "
                         "element-wise (same shape out as in)")
