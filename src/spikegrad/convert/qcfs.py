"""QCFS: the quantisation-clip-floor-shift activation (Bu et al., ICLR 2022).

An ANN trained with QCFS in place of ReLU converts to an SNN of integrate-and-fire neurons
that start at half their threshold; at ``T = levels`` steps, for a constant input current,
the spike count of such a neuron equals the QCFS output exactly (Bu et al., Theorem 2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_int, check_positive


class _FloorSTE(torch.autograd.Function):
    """``floor`` forward; the identity backward (straight-through)."""

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        return torch.floor(u)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class QCFS(nn.Module):
    """Quantised, clipped, shifted ReLU with a trainable clip value ``lambda``::

        q = floor(x * L / lambda + 1/2) / L,        y = lambda * clamp(q, 0, 1)

    ``L`` quantisation levels between 0 and ``lambda``; the ``+ 1/2`` shift matches an IF
    neuron whose membrane starts at half its threshold. Backward (as Bu et al.'s code): the
    floor is straight-through, ``clamp`` is differentiated at ``q`` (inclusive bounds), so

        dy/dx      = 1[0 <= q <= 1]
        dy/dlambda = q - x / lambda   where 0 <= q <= 1;   1 where q > 1;   0 where q < 0.

    Args:
        levels: ``L``, an int >= 1 (the number of time steps at which conversion is exact).
        threshold: initial clip value ``lambda`` (> 0); the trainable scalar parameter
            ``self.threshold``. Conversion makes it the scale of this layer's IF neurons.

    Shapes: any ``[B, ...]`` -> the same shape.

    Example:
        >>> import torch
        >>> act = QCFS(levels=4, threshold=2.0)
        >>> act(torch.tensor([-1.0, 0.2, 0.3, 1.1, 5.0])).tolist()
        [0.0, 0.0, 0.5, 1.0, 2.0]
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0):
        super().__init__()
        self.levels = check_int(levels, "QCFS: levels", hint="quantisation steps of the output")
        threshold = check_positive(threshold, "QCFS: threshold")
        self.threshold = nn.Parameter(torch.tensor(threshold))

    def forward(self, x: Tensor) -> Tensor:
        """The quantised activation ``lambda * clamp(floor(x L / lambda + 1/2) / L, 0, 1)``.

        Args:
            x: pre-activations, any shape (e.g. ``[B, F]`` or ``[B, C, H, W]``; no time axis:
                this is the ANN's activation).

        Returns:
            The same shape: one of the ``L + 1`` levels ``0, lambda/L, ..., lambda``; its
            gradient is straight-through inside the clip range (see the class docstring).
        """
        lam, L = self.threshold, self.levels
        q = _FloorSTE.apply(x * L / lam + 0.5) / L
        return lam * q.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold.detach()):g}"
