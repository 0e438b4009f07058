"""Readouts: turn a sequence ``[T, B, C]`` into per-sample scores or times ``[B, C]``."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_choice, check_sequence

__all__ = ["spike_count", "membrane", "first_spike_time", "REDUCTIONS"]

REDUCTIONS = ("max", "mean", "last", "sum")


def spike_count(zs: Tensor) -> Tensor:
    """Spikes per neuron over the sequence. ``[T, B, ...] -> [B, ...]``."""
    return check_sequence(zs, "zs").sum(0)


def membrane(vs: Tensor, reduce: str = "max") -> Tensor:
    """Reduce a membrane trace (e.g. of an LI readout) over time. ``[T, B, ...] -> [B, ...]``.

    ``reduce``: ``"max"`` (max over time), ``"mean"``, ``"last"`` or ``"sum"``.
    """
    check_sequence(vs, "vs")
    check_choice(reduce, "reduce", REDUCTIONS)
    if reduce == "max":
        return vs.max(0).values
    if reduce == "mean":
        return vs.mean(0)
    if reduce == "sum":
        return vs.sum(0)
    return vs[-1]


def first_spike_time(zs: Tensor) -> Tensor:
    """Index of each neuron's first spike; ``T`` where it never fires. ``[T, B, ...] -> [B, ...]``.

    Integer-valued (float dtype of ``zs``), not differentiable: for a trainable time-to-first-
    spike objective use a loss on the membrane (see :mod:`spikegrad.losses`).
    """
    check_sequence(zs, "zs")
    T = zs.shape[0]
    steps = torch.arange(T, device=zs.device, dtype=zs.dtype).view(T, *([1] * (zs.dim() - 1)))
    # a non-spiking step gets T, so the min over time is the first spike (or T if none)
    return torch.where(zs > 0, steps, torch.full_like(zs, T)).min(0).values
