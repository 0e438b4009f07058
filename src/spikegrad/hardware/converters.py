"""DAC and ADC: uniform symmetric quantisation with clipping, as a crossbar's periphery.

Follows aihwkit's ``IOParameters`` convention: a converter of ``bits`` bits spans
``[-bound, bound]`` with resolution ``2 bound / (2^bits - 2)``, i.e. ``2^bits - 1`` levels
symmetric around (and including) 0::

    q(x) = step * round(clip(x, -bound, bound) / step),     step = bound / (2^(bits-1) - 1)

The rounding passes gradients straight through (the derivative of ``q`` is taken as 1 inside
the range) and the clipping passes none outside it, so a network trained through the layer
sees the converters as ``clip``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validate import check_int, check_real

__all__ = ["quantize", "check_converter"]


def check_converter(bits: Optional[int], bound: Optional[float], name: str) -> None:
    """Validate one converter's ``{name}_bits`` and ``{name}_range`` (ValueError/TypeError
    naming the argument)."""
    if bits is not None:
        check_int(bits, f"{name}_bits", minimum=2,
                  hint="2 bits give the levels -range, 0, +range; None is an ideal converter")
        if bound is None:
            raise ValueError(f"{name}_bits={bits} needs {name}_range, the full scale +-range "
                             f"the levels span (e.g. {name}_range=1.0); or pass "
                             f"{name}_bits=None for an ideal converter")
    if bound is not None:
        check_real(bound, f"{name}_range", low=0.0, low_open=True,
                   hint="the converter clips to [-range, range]; None does not clip")


def quantize(x: Tensor, bits: Optional[int], bound: Optional[float]) -> Tensor:
    """Clip ``x`` to ``[-bound, bound]`` (``bound=None``: no clipping) and round it to
    ``2^bits - 1`` evenly spaced levels (``bits=None``: no rounding). Any shape; same shape
    and dtype out.

    Example:
        >>> import torch
        >>> quantize(torch.tensor([-2.0, -0.6, 0.2, 0.9]), bits=2, bound=1.0)   # levels -1, 0, 1
        tensor([-1., -1.,  0.,  1.])
    """
    if bound is not None:
        x = x.clamp(-bound, bound)
    if bits is not None:
        step = bound / (2 ** (bits - 1) - 1)
        # straight-through: the value is exactly the level, the gradient that of x
        x = (torch.round(x / step) * step).detach() + (x - x.detach())
    return x
