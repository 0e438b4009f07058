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
    where = f"{owner}: " if owner else ""
    n_feat = len(features) if features is not None else 0
    want = "[T, B" + "".join(f", {f}" for f in (features or ())) + "]"
    bad_rank = xs.dim() != 2 + n_feat if features is not None else xs.dim() < 2
    if bad_rank:
        raise ValueError(
            f"{where}{name} must be time-major with shape {want}, got shape {list(xs.shape)}. "
            "Put time first and batch second (e.g. xs.transpose(0, 1) for batch-major data, "
            "or xs.unsqueeze(0) for a single step).")
    if features is not None and tuple(xs.shape[2:]) != tuple(features):
        raise ValueError(f"{where}{name} must have shape {want}, got {list(xs.shape)}: "
                         f"the feature dimensions {list(xs.shape[2:])} do not match "
                         f"{list(features)}")
    if xs.shape[0] < 1:
        raise ValueError(f"{where}{name} has no time steps (T = 0); pass at least one step")
    return xs


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
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


def check_state_like(state: Tensor, x: Tensor, name: str) -> None:
    if not isinstance(state, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(state).__name__}")
    if state.shape != x.shape:
        raise ValueError(
            f"{name} has shape {list(state.shape)} but one step of the input has shape "
            f"{list(x.shape)}; pass state=None to start from zeros, or the state returned by "
            "the previous call with the same batch size")
