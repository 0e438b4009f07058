"""The reference time loop, shared by every model: ``y_t, s_t = step(x_t, s_{t-1}, p)``."""

from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch import Tensor

from .state import detach_state, stack_states
from .truncation import cut_every

Step = Callable[[Tensor, Any, Any], Tuple[Tensor, Any]]


def _loop(step: Step, xs: Tensor, state: Any, params: Any, keep_states: bool):
    ys, states = [], []
    cut = cut_every()  # truncated BPTT in one pass (functional.truncation)
    # unbind, not xs[t]: indexing a tensor that needs grad inside the loop makes backward
    # O(T^2) (each index op scatters a full-size gradient).
    for t, x in enumerate(xs.unbind(0)):
        if cut and t and t % cut == 0:
            state = detach_state(state)
        y, state = step(x, state, params)
        ys.append(y)
        if keep_states:
            states.append(state)
    return torch.stack(ys), state, states


def scan(step: Step, xs: Tensor, state: Any, params: Any) -> Tuple[Tensor, Any]:
    """Run ``step`` over the leading (time) axis.

    Args:
        step: ``step(x_t, state, params) -> (y_t, state)``.
        xs: ``[T, B, ...]``.
        state: the state before the first step.
        params: passed unchanged to every step.

    Returns:
        ``(ys [T, B, ...], final state)``.
    """
    ys, state, _ = _loop(step, xs, state, params, keep_states=False)
    return ys, state


def scan_trace(step: Step, xs: Tensor, state: Any, params: Any) -> Tuple[Tensor, Any]:
    """Like :func:`scan`, but returns the state after every step, stacked: ``(ys, states)``
    where each tensor of ``states`` has a leading time axis ``[T, ...]``."""
    ys, _, states = _loop(step, xs, state, params, keep_states=True)
    return ys, stack_states(states)
