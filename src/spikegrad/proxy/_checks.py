"""Argument checks shared by the estimators of :mod:`spikegrad.proxy`.

Each failure names the function and the argument, says what was received and how to fix it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

SHAPES = "[B] (one step) or time-major [T, B] (one log-prob per step)"


def check_float_tensor(x, name: str, owner: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {x.dtype}; "
                        "convert it with .float()")
    return x


def sequence_log_prob(log_probs, name: str, owner: str) -> Tensor:
    """Per-step log-probabilities ``[T, B]`` (or ``[B]``) -> ``[B]``, summed over steps.

    A sequence's probability is the product of its steps' probabilities, so its log-prob is the
    sum; steps after a sequence ended must already be zero (multiply by the mask)."""
    check_float_tensor(log_probs, name, owner)
    if log_probs.dim() not in (1, 2) or log_probs.shape[-1] == 0:
        raise ValueError(f"{owner}: {name} must have shape {SHAPES} with B >= 1, got shape "
                         f"{list(log_probs.shape)}; for batch-major [B, T] pass .T")
    return log_probs.sum(0) if log_probs.dim() == 2 else log_probs


def check_rewards(rewards, batch: int, owner: str, name: str = "rewards") -> Tensor:
    """Finite floating rewards ``[B]``; returned detached (a reward is a number, not a graph)."""
    check_float_tensor(rewards, name, owner)
    if rewards.shape != (batch,):
        raise ValueError(f"{owner}: {name} must have shape [B] = [{batch}] (one reward per "
                         f"sequence), got shape {list(rewards.shape)}")
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError(f"{owner}: {name} must be finite, got non-finite values (e.g. "
                         f"{rewards[~torch.isfinite(rewards)][:3].tolist()}); give invalid "
                         "samples a finite penalty reward instead")
    return rewards.detach()


def check_number(value, name: str, owner: str, *, positive: bool = False) -> float:
    """A finite real number (``> 0`` when ``positive``)."""
    want = "a finite number" + (" > 0" if positive else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point():
            value = value.item()
        else:
            raise TypeError(f"{owner}: {name} must be {want}, got {type(value).__name__} "
                            f"{value!r}")
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{owner}: {name} must be {want}, got {value!r}")
    return float(value)
