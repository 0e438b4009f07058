"""Analog input for a converted SNN: a static sample injected as a constant current."""

from __future__ import annotations

from torch import Tensor

from .._validate import check_int, check_tensor


def repeat_input(x: Tensor, T: int) -> Tensor:
    """The static input ``x [B, ...]`` as a constant current for ``T`` steps.

    The first layer of a converted SNN integrates it (no spike encoding): the first hidden
    layer's rates then differ from the ANN's activations by at most ``1/T``.

    Returns:
        ``[T, B, ...]``: a view of ``x`` (no copy; do not write into it).

    Example:
        >>> import torch
        >>> repeat_input(torch.zeros(2, 3), 5).shape
        torch.Size([5, 2, 3])
    """
    check_tensor(x, "x")
    if x.dim() < 1:
        raise ValueError("x must be a batch of static samples [B, ...], got a 0-dim tensor; "
                         "use x.view(1, 1) for a single value")
    T = check_int(T, "T", hint="the number of time steps")
    return x.unsqueeze(0).expand(T, *x.shape)
