"""Training-time augmentation of analog inputs."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["random_roll"]


def random_roll(x: Tensor, max_shift: int) -> Tensor:
    """Roll each 1-D signal ``x [B, L]`` circularly by an integer in ``[-max_shift,
    max_shift]`` (global torch RNG): translation augmentation for MNIST-1D."""
    k = torch.randint(-max_shift, max_shift + 1, (x.shape[0], 1))
    idx = (torch.arange(x.shape[1]).unsqueeze(0) - k) % x.shape[1]  # [B, L]
    return torch.gather(x, 1, idx)
