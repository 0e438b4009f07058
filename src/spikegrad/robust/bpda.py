"""BPDA: backward pass differentiable approximation (Athalye et al. 2018).

A non-differentiable preprocessing step ``g`` (quantisation, a latency or threshold encoder)
gives an attacker zero or no gradient, which hides, but does not remove, the model's
vulnerability. BPDA runs ``g`` forward and, in the backward pass, differentiates a smooth
approximation ``h`` of it instead (the identity when ``g(x) ~ x``).
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

__all__ = ["bpda", "BPDA"]


def _identity_like(x: Tensor, out: Tensor) -> Tensor:
    """``x`` broadcast to the output's shape: the identity, extended over leading dimensions
    such as time for an encoder ``[B, ...] -> [T, B, ...]``."""
    try:
        return x.expand_as(out)
    except RuntimeError:
        raise ValueError(
            f"bpda: the output shape {list(out.shape)} of the forward step is not the input "
            f"shape {list(x.shape)} broadcast over leading dimensions, so the identity cannot "
            "stand in for its gradient; pass approx=a smooth function with the output's "
            "shape") from None


def bpda(forward: Callable[..., Tensor], approx: Optional[Callable[..., Tensor]] = None
         ) -> Callable[..., Tensor]:
    """Wrap ``forward`` so that its value is kept and its gradient is that of ``approx``.

    Args:
        forward: the non-differentiable step ``forward(x, *args, **kw) -> Tensor``.
        approx: a differentiable ``approx(x, *args, **kw)`` with the same output shape; None
            for the identity (``x`` broadcast over the output's leading dimensions, e.g. the
            time axis of an encoder).

    Returns:
        ``f(x, *args, **kw)`` with value exactly ``forward(x, ...)`` and input gradient that of
        ``approx(x, ...)``: ``g.detach() + (h - h.detach())``.

    Example (a latency encoder, which has no gradient, behind an SNN):
        >>> import torch
        >>> from spikegrad.data.encoders import latency
        >>> enc = bpda(lambda x, n, generator=None: latency(x.detach(), n))
        >>> x = torch.rand(2, 3, requires_grad=True)
        >>> enc(x, 4).sum().backward()
        >>> x.grad
        tensor([[4., 4., 4.],
                [4., 4., 4.]])
    """
    if not callable(forward):
        raise TypeError(f"bpda: forward must be callable, got {type(forward).__name__}")
    if approx is not None and not callable(approx):
        raise TypeError(f"bpda: approx must be callable or None, got {type(approx).__name__}")

    def wrapped(x: Tensor, *args, **kw) -> Tensor:
        out = forward(x, *args, **kw)
        smooth = _identity_like(x, out) if approx is None else approx(x, *args, **kw)
        if smooth.shape != out.shape:
            raise ValueError(f"bpda: approx returned shape {list(smooth.shape)} but forward "
                             f"returned {list(out.shape)}; they must match")
        # value exactly out (smooth - smooth.detach() is exactly 0, so spikes stay in {0, 1});
        # gradient that of smooth
        return out.detach() + (smooth - smooth.detach())

    wrapped.__name__ = f"bpda({getattr(forward, '__name__', type(forward).__name__)})"
    return wrapped


class BPDA(nn.Module):
    """:func:`bpda` as a module, to put a non-differentiable preprocessing step in front of a
    model: ``nn.Sequential(BPDA(quantise), classifier)``.

    Shapes: as ``forward`` (e.g. ``[B, ...] -> [B, ...]``).
    """

    def __init__(self, forward: Callable[[Tensor], Tensor],
                 approx: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__()
        self.step = bpda(forward, approx)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the wrapped step with the BPDA gradient.

        Args:
            x: the step's input (e.g. images ``[B, ...]``).

        Returns:
            Exactly ``forward(x)`` (the non-differentiable step), whose gradient with respect
            to ``x`` is that of ``approx(x)`` (the identity when no ``approx`` was given).
        """
        return self.step(x)
