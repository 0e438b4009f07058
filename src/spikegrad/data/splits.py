"""Train/test split container and helpers shared by the data loaders.

Kept dependency-free (torch and numpy only) so that every loader module can import it
without pulling in an optional package.
"""

from __future__ import annotations

import importlib
import math
from types import ModuleType
from typing import NamedTuple, Sequence

import torch

from .._validate import check_int

__all__ = ["Split", "split_in_order", "require"]


class Split(NamedTuple):
    """A train/test split of an offline data set.

    Attributes:
        x_train: inputs of the training set, ``[N_train, *features]``.
        y_train: int64 labels of the training set, ``[N_train]``.
        x_test: inputs of the test set, ``[N_test, *features]``.
        y_test: int64 labels of the test set, ``[N_test]``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def split_in_order(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> tuple[slice, ...]:
    """Cut ``range(n)`` into consecutive, non-overlapping parts.

    Used for data sets that are already shuffled (e.g. Randman), where the published
    protocol takes train/validation/test "in order".

    Args:
        n: number of samples (>= 0).
        fractions: non-negative fractions summing to 1, one per part.

    Returns:
        One ``slice`` per fraction. Part ``k`` ends at ``round(n * sum(fractions[:k+1]))``,
        so the parts cover ``range(n)`` exactly, whatever the rounding.

    Example:
        >>> split_in_order(10000)
        (slice(0, 8000, None), slice(8000, 9000, None), slice(9000, 10000, None))
    """
    check_int(n, "n", minimum=0)
    fractions = tuple(fractions)
    if not fractions or any(
        not isinstance(f, (int, float)) or isinstance(f, bool) or not f >= 0 for f in fractions
    ):
        raise ValueError(
            f"fractions must be a non-empty sequence of numbers >= 0, got {fractions!r}"
        )
    total = math.fsum(fractions)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {total})")
    bounds = [0]
    acc = 0.0
    for f in fractions:
        acc += f
        bounds.append(min(n, int(round(n * acc))))
    bounds[-1] = n  # absorb any rounding drift so that nothing is lost at the end
    return tuple(slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]))


def require(module: str, package: str | None = None) -> ModuleType:
    """Import an optional dependency, or fail with the install hint.

    The core of spikegrad depends on torch and numpy only; loaders call this inside the
    function that needs the extra, so ``import spikegrad.data`` stays light.
    """
    package = package or module
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this loader needs the optional package '{package}', which is not installed; "
            f"install it with `pip install {package}` or `pip install 'spikegrad[apps]'`"
        ) from err
