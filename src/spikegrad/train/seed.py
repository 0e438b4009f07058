"""Seed every random number generator a training run touches."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices).

    Args:
        seed: an int in ``[0, 2**32)`` (NumPy's limit).
        deterministic: also call ``torch.use_deterministic_algorithms(True)`` so that
            non-deterministic kernels raise instead of silently varying between runs. This
            is process-wide and stays on; turn it off with
            ``torch.use_deterministic_algorithms(False)``.

    Example:
        >>> import torch
        >>> from spikegrad.train import seed_everything
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); torch.equal(a, torch.rand(2))
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32) (NumPy's range); got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS only honours deterministic mode with a fixed workspace; it must be set before
        # the first cuBLAS call, so set it now unless the user already chose one.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
