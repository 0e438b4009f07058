"""Helpers for explicit state: nested tuples / NamedTuples of tensors (or None)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


def map_state(fn: Callable[[Tensor], Tensor], state: Any) -> Any:
    """Apply ``fn`` to every tensor in a nested tuple/NamedTuple/list state; keep ``None``."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    return state  # non-tensor leaves (ints, strings) pass through


def detach_state(state: Any) -> Any:
    """Cut the autograd history of a state, e.g. between truncated-BPTT chunks."""
    return map_state(lambda t: t.detach(), state)


def stack_states(states: list) -> Any:
    """Stack a list of structurally equal states along a new leading (time) axis."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        return torch.stack(states)
    if isinstance(first, tuple):
        parts = [stack_states(list(p)) for p in zip(*states)]
        return type(first)(*parts) if hasattr(first, "_fields") else tuple(parts)
    return first
