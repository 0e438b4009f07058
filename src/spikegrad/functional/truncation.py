"""Truncated BPTT in one pass: the gradient through every state cut every ``K`` steps.

Classic TBPTT splits a sequence into chunks of ``K`` steps, runs forward and backward chunk by
chunk and carries the state across, detached. When the loss is a sum of per-chunk terms, the
accumulated gradient is exactly that of the whole sequence's loss with the gradient paths
through the state cut at every chunk boundary. Under :func:`truncate_gradients` the sequence
runs in one pass and gives that gradient:

- the fused leaky kernels (LIF, IF, LI, with or without recurrence) and the reference time
  loop (:func:`spikegrad.functional.scan`) cut their adjoint at the boundaries themselves;
- any other :class:`spikegrad.nn.StatefulModule` (ALIF, dendritic neurons, a user's module)
  is run chunk by chunk with its state detached between chunks, which is the definition.

Boundaries are every ``K`` steps counted from the start of each call over a sequence. The
forward pass (spikes, states, outputs) is unchanged. What is not the same as the chunked
loop: layers that pool statistics over time (batch norm over ``T``) see the whole sequence,
and the memory is that of one pass over the sequence (the fused kernels keep a few numbers
per neuron and step), where the chunked loop holds one chunk's graph.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator, Tuple

import torch
from torch import Tensor

from .state import detach_state

__all__ = ["truncate_gradients", "cut_every", "run_in_chunks"]

_local = threading.local()


@contextlib.contextmanager
def truncate_gradients(every: int) -> Iterator[None]:
    """Within the block, gradients through the state of every sequence cut every ``every``
    steps (see the module docstring). Per thread; nested blocks use the innermost value.

    Example:
        >>> import torch, spikegrad as sg
        >>> net = sg.nn.Sequential(sg.nn.Linear(3, 4), sg.nn.LIF(4), sg.nn.LI(4))
        >>> with sg.functional.truncate_gradients(50):
        ...     ys, _ = net(torch.rand(200, 2, 3))
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"truncate_gradients: every must be an int >= 1 (the chunk length "
                         f"K of truncated BPTT, in steps), got {every!r}")
    before = getattr(_local, "every", 0)
    _local.every = every
    try:
        yield
    finally:
        _local.every = before


def cut_every() -> int:
    """The current cut interval in steps (0: none)."""
    return getattr(_local, "every", 0)


@contextlib.contextmanager
def _suspended() -> Iterator[None]:
    before = getattr(_local, "every", 0)
    _local.every = 0
    try:
        yield
    finally:
        _local.every = before


def run_in_chunks(call: Callable[[Tensor, Any], Tuple[Tensor, Any]], xs: Tensor, state: Any,
                  every: int, owner: str = "module") -> Tuple[Tensor, Any]:
    """``call(xs, state) -> (ys, state)`` chunk by chunk of ``every`` steps, the state detached
    between chunks (not after the last): the definition of the cut for any stateful call.
    ``xs [T, B, ...]``; returns ``(ys [T, ...], final state)``."""
    outs = []
    chunks = xs.split(every)
    with _suspended():
        for c, x in enumerate(chunks):
            ys, state = call(x, state)
            if not isinstance(ys, Tensor):
                raise TypeError(f"truncate_gradients: {owner} returned {type(ys).__name__} "
                                "as its output sequence; a stateful module under "
                                "truncation must return (ys [T, ...] tensor, state)")
            outs.append(ys)
            if c + 1 < len(chunks):
                state = detach_state(state)
    return torch.cat(outs), state
