"""Build a torch optimizer by name, with the argument checks torch leaves to chance.

Example:
    >>> import torch
    >>> from spikegrad.train import make_optimizer
    >>> model = torch.nn.Linear(3, 2)
    >>> opt = make_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)
    >>> type(opt).__name__, opt.param_groups[0]["momentum"]
    ('SGD', 0.9)
"""

from __future__ import annotations

import math
from numbers import Real
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Union

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: Names accepted by :func:`make_optimizer` (lower case) and the classes they build.
OPTIMIZERS: Mapping[str, type[torch.optim.Optimizer]] = MappingProxyType(
    {
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "sgd": torch.optim.SGD,
        "rmsprop": torch.optim.RMSprop,
    }
)

Params = Union[Iterable[torch.Tensor], Iterable[dict], nn.Module]


def make_optimizer(
    name: str,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Create one of the standard optimizers from its name.

    Args:
        name: ``"adam"``, ``"adamw"``, ``"sgd"`` or ``"rmsprop"`` (case-insensitive).
        params: parameters or parameter groups, as for any torch optimizer; an
            ``nn.Module`` is accepted and stands for ``module.parameters()``.
        lr: learning rate, > 0.
        weight_decay: >= 0. For ``adam``, ``sgd`` and ``rmsprop`` this is an L2 term added
            to the gradient; ``adamw`` decouples it, as in torch.
        **kwargs: passed to the optimizer, e.g. ``momentum=0.9`` for ``sgd`` or
            ``betas=(0.9, 0.99)`` for ``adam``.

    Returns:
        The optimizer.

    Raises:
        ValueError: unknown name, ``lr <= 0`` or ``weight_decay < 0`` (or not finite).
        TypeError: a keyword argument the chosen optimizer does not take.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a string, one of {sorted(OPTIMIZERS)}; got {type(name).__name__}"
        )
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {name!r}; valid names are {', '.join(sorted(OPTIMIZERS))}"
        )
    if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, e.g. lr=1e-3; got {lr!r}")
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, Real)
        or not math.isfinite(weight_decay)
        or weight_decay < 0
    ):
        raise ValueError(f"weight_decay must be a finite number >= 0; got {weight_decay!r}")
    if isinstance(params, nn.Module):
        params = params.parameters()
    cls = OPTIMIZERS[key]
    try:
        return cls(params, lr=float(lr), weight_decay=float(weight_decay), **kwargs)
    except TypeError as exc:
        # torch's message names the class's __init__ but not which of *our* names was used.
        raise TypeError(
            f"make_optimizer({name!r}, ...): {exc}. See the keyword arguments of "
            f"{cls.__module__}.{cls.__name__}."
        ) from exc
