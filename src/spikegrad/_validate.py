"""Checks for user input. Each failure says what was received and what to pass instead."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def check_tensor(x, name: str, *, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
                        f"convert it with {name}.float()")
    return x


def check_sequence(xs, name: str, features: Sequence[int] | None = None,
                   owner: str = "") -> Tensor:
    """A time-major sequence ``[T, B, *features]`` with ``T >= 1``."""
    check_tensor(xs, name)
    shape = xs.shape
    # the messages are built only on failure: this runs on every sequence call
    if features is not None:
        if len(shape) == 2 + len(features) and shape[2:] == tuple(features) and shape[0] >= 1:
            return xs
    elif len(shape) >= 2 and shape[0] >= 1:
        return xs
    where = f"{owner}: " if owner else ""
    want = "[T, B" + "".join(f", {f}" for f in (features or ())) + "]"
    bad_rank = xs.dim() != 2 + len(features) if features is not None else xs.dim() < 2
    if bad_rank:
        raise ValueError(
            f"{where}{name} must be time-major with shape {want}, got shape {list(xs.shape)}. "
            "Put time first and batch second (e.g. xs.transpose(0, 1) for batch-major data, "
            "or xs.unsqueeze(0) for a single step).")
    if features is not None and tuple(xs.shape[2:]) != tuple(features):
        raise ValueError(f"{where}{name} must have shape {want}, got {list(xs.shape)}: "
                         f"the feature dimensions {list(xs.shape[2:])} do not match "
                         f"{list(features)}")
    raise ValueError(f"{where}{name} has no time steps (T = 0); pass at least one step")


def check_int(value, name: str, *, minimum: int = 1, hint: str = "") -> int:
    """An int (not a bool; numpy integers accepted) ``>= minimum``; returns it as ``int``.
    TypeError for another type, ValueError below ``minimum``; ``hint`` is added to both."""
    want = f"{name} must be an int >= {minimum}" + (f" ({hint})" if hint else "")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{want}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{want}, got {value!r}")
    return int(value)


def check_positive(value, name: str, *, allow_inf: bool = False) -> float | Tensor:
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        bad = ~(value > 0) | (~torch.isfinite(value) if not allow_inf else value.isnan())
        if bool(bad.any()):
            raise ValueError(f"{name} must be > 0 everywhere, got {value.detach().flatten()[:5].tolist()}...")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__} "
                        f"{value!r}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number > 0{' (or inf)' if allow_inf else ''}"
                         f", got {value}")
    return float(value)


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
                         f"got {value!r}")
    return value


def check_size(n, name: str) -> tuple:
    """A feature shape: a positive int or a tuple of them."""
    shape = (n,) if isinstance(n, int) and not isinstance(n, bool) else n
    if (not isinstance(shape, (tuple, list)) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ValueError(f"{name} must be a positive int or a tuple of positive ints, got {n!r}")
    return tuple(shape)


STATE_HINT = ("pass state=None to start from zeros, or the state returned by the previous call "
              "with the same batch size")


class DtypeError(TypeError, ValueError):
    """A dtype that a kernel does not take, or arrays of mixed dtypes. A TypeError by the
    dtype contract; also a ValueError, which callers caught before the contract existed."""


def check_like(t, name: str, shape: Sequence[int], ref: Tensor, hint: str = STATE_HINT) -> None:
    """``t``: a tensor of exactly ``shape`` (no broadcasting: a state of another batch size
    would silently broadcast on one backend and overrun memory on another), with ``ref``'s
    dtype and device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}; {hint}")
    if t.shape != shape:
        raise ValueError(f"{name} has shape {list(t.shape)} but must have shape "
                         f"{list(shape)} to match the input {list(ref.shape)}; {hint}")
    if t.dtype != ref.dtype:
        raise DtypeError(f"{name} has dtype {t.dtype} but the input has {ref.dtype}; convert "
                         f"it with .to({ref.dtype}), or {hint}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {ref.device}; move it "
                         f"with .to({str(ref.device)!r}), or {hint}")


def check_state_like(state: Tensor, x: Tensor, name: str) -> None:
    """A state tensor exactly shaped like one input step ``x``, of its dtype and device."""
    check_like(state, name, x.shape, x)


# --- neuron constants ---------------------------------------------------------------------
#
# Constants may be Python numbers or tensors (per-neuron, possibly trainable). A number is
# checked on the spot; a tensor's values are checked by :class:`ParamCheck`, which folds the
# tests of every tensor of one call into a single boolean and reads it once: one host-device
# sync per call (not one per tensor, and never one per time step).

_REAL = (int, float, np.integer, np.floating)


def _describe(value) -> str:
    if isinstance(value, Tensor):
        flat = value.detach().flatten()
        shown = flat[:5].tolist()
        more = "..." if flat.numel() > 5 else ""
        return f"tensor {shown}{more}" if value.dim() else f"tensor({flat.item()!r})"
    return repr(value)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if high == math.inf:
        return f"> {low:g}" if low_open else f">= {low:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _rule(low: float, high: float, low_open: bool, high_open: bool) -> str:
    if low == -math.inf and high == math.inf:
        return "a finite number"
    return "a finite number " + _interval(low, high, low_open, high_open)


def _within(t: Tensor, low: float, high: float, low_open: bool, high_open: bool) -> Tensor:
    """Whether every element of ``t`` is finite and in the interval: a 0-dim bool tensor."""
    ok = torch.isfinite(t)
    if low != -math.inf:
        ok = ok & ((t > low) if low_open else (t >= low))
    if high != math.inf:
        ok = ok & ((t < high) if high_open else (t <= high))
    return ok.all()


def _unwrapped(t: Tensor) -> Tensor:
    """The plain tensor inside ``torch.func``'s wrappers (batched, gradient-tracking)."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def _broadcasts(shape, target) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (torch.broadcast_shapes is slower)."""
    return len(shape) <= len(target) and all(
        s == 1 or s == t for s, t in zip(reversed(shape), reversed(target)))


class ParamCheck:
    """Checks one call's constants: ``check.real(value, name, ...)`` for each, then
    ``check.done()``. Numbers raise at once; tensors raise at :meth:`done` (one sync).

    ``tensor_values=False`` checks a tensor's type, dtype and shape but not its values (no
    sync at all): for a ``*_step`` that a user may call in a Python loop.
    """

    __slots__ = ("owner", "shape", "tensor_values", "_pending")

    def __init__(self, owner: str = "", shape: Sequence[int] | None = None,
                 tensor_values: bool = True):
        self.owner = f"{owner}: " if owner else ""
        self.shape = None if shape is None else tuple(shape)   # [B, *features] of one step
        self.tensor_values = tensor_values
        self._pending: list = []

    def real(self, value, name: str, *, low: float = -math.inf, high: float = math.inf,
             low_open: bool = False, high_open: bool = False, hint: str = ""):
        """A finite number (or floating tensor of them) in the given interval."""
        rng = (low, high, low_open, high_open)
        if isinstance(value, Tensor):
            if not value.is_floating_point():
                raise TypeError(f"{self.owner}{name} must be {_rule(*rng)} or a floating-point "
                                f"tensor, got a tensor of dtype {value.dtype}; convert it with "
                                f"{name}.float()")
            if self.shape is not None and value.dim() and not _broadcasts(value.shape,
                                                                           self.shape):
                raise ValueError(
                    f"{self.owner}{name} has shape {list(value.shape)}, which does not "
                    f"broadcast to one step of the input {list(self.shape)}; pass a number "
                    "or a per-neuron tensor shaped like the features")
            if self.tensor_values:
                self._pending.append((value, name, hint, rng))
            return value
        # the common case first: a float in range costs two comparisons
        if type(value) is float and self._ok(value, *rng):
            return value
        fix = f"; {hint}" if hint else ""
        if isinstance(value, bool) or not isinstance(value, _REAL):
            raise TypeError(f"{self.owner}{name} must be {_rule(*rng)}, got "
                            f"{type(value).__name__} {value!r}{fix}")
        if not self._ok(float(value), *rng):
            raise ValueError(f"{self.owner}{name} must be {_rule(*rng)}, got {value!r}{fix}")
        return value

    @staticmethod
    def _ok(x: float, low, high, low_open, high_open) -> bool:
        return (math.isfinite(x) and (low < x if low_open else low <= x)
                and (x < high if high_open else x <= high))

    def done(self) -> None:
        """Reads every pending tensor's extremes (NaN propagates through min/max; a 0-dim
        tensor, such as a module's fixed constant, is its own extreme) and raises for the
        first out of range. On an accelerator all extremes come back in one transfer."""
        pending = [item for item in self._pending if item[0].numel()]
        if not pending:
            return
        if torch.compiler.is_compiling():
            # a traced graph reads no values (that would break it): the check runs inside it,
            # as an assertion on the device
            for t, name, hint, rng in pending:
                fix = f"; {hint}" if hint else ""
                torch._assert_async(_within(t.detach(), *rng),
                                    f"{self.owner}{name} must be {_rule(*rng)} everywhere{fix}")
            return
        if torch._C._are_functorch_transforms_active():
            # under torch.func the values are read from the tensors the transforms wrap (a
            # vmapped constant: every model's values at once)
            pending = [(_unwrapped(t), *rest) for t, *rest in pending]
        if all(t.device.type == "cpu" for t, *_ in pending):
            ends = []
            for t, *_ in pending:
                if t.dim() == 0:
                    ends += [t.item()] * 2
                else:
                    ends += [e.item() for e in torch.aminmax(t.detach())]
        else:
            parts = []
            for t, *_ in pending:
                t = t.detach()
                parts += [t, t] if t.dim() == 0 else list(torch.aminmax(t))
            dev = parts[0].device
            ends = torch.stack([e.to(dev, torch.float64) for e in parts]).tolist()
        for k, (t, name, hint, rng) in enumerate(pending):
            if not (self._ok(ends[2 * k], *rng) and self._ok(ends[2 * k + 1], *rng)):
                fix = f"; {hint}" if hint else ""
                raise ValueError(f"{self.owner}{name} must be {_rule(*rng)} everywhere, got "
                                 f"{_describe(t)}{fix}")


def check_real(value, name: str, *, low: float = -math.inf, high: float = math.inf,
               low_open: bool = False, high_open: bool = False, hint: str = ""):
    """One finite number (or tensor of them) in an interval; see :class:`ParamCheck`."""
    check = ParamCheck()
    check.real(value, name, low=low, high=high, low_open=low_open, high_open=high_open,
               hint=hint)
    check.done()
    return value


def check_decay(value, name: str, check: ParamCheck | None = None):
    """A decay ``a = exp(-dt / tau)`` in [0, 1]: 1 is no leak (IF), 0 no memory."""
    (check or ParamCheck()).real(value, name, low=0.0, high=1.0,
                                 hint="a decay is exp(-dt / tau)")
    return value


def check_state_type(state, expected: type, name: str = "state", build: str = "") -> None:
    """TypeError unless ``state`` is ``expected`` (a State NamedTuple); says how to build one."""
    if not isinstance(state, expected):
        fields = ", ".join(expected._fields)
        how = build or f"{expected.__name__}({fields}) with tensors [B, *features]"
        raise TypeError(f"{name} must be a {expected.__name__} (or None for zeros), got "
                        f"{type(state).__name__}; pass the state returned by the previous call, "
                        f"None, or build one as {how}")
