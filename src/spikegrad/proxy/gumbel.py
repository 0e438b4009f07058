"""Straight-through Gumbel-softmax: a categorical sample forward, a relaxed gradient backward.

A categorical sample ``k ~ softmax(l)`` can be drawn as ``k = argmax_i (l_i + g_i)`` with
i.i.d. Gumbel noise ``g_i = -log(E_i)``, ``E_i ~ Exponential(1)`` (the Gumbel-max trick). The
argmax has no useful derivative, so the relaxation (Jang et al. 2017; Maddison et al. 2017)

    y_soft = softmax((l + g) / tau)

replaces it: a point of the simplex that tends to the one-hot sample as the temperature
``tau -> 0``. The straight-through version (``hard=True``) returns the exact one-hot
``onehot(argmax(l + g))`` forward and the gradient of ``y_soft`` (same noise) backward: the
same pattern as :func:`spikegrad.spike`, a step forward and a shaped derivative backward.

Unlike :func:`torch.nn.functional.gumbel_softmax`, the noise comes from an explicit
``generator``, so a sample is reproducible without touching the global random state; with the
global generator in the same state both draw the same noise and return the same values.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ._checks import check_float_tensor, check_number

__all__ = ["gumbel_noise", "gumbel_softmax_st"]


def gumbel_noise(logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """Standard Gumbel noise shaped like ``logits``: ``g = -log(E)``, ``E ~ Exponential(1)``.

    Args:
        logits: any floating tensor; only its shape, dtype and device are used.
        generator: the source of randomness (``None``: the global generator), on the device
            of ``logits``.

    Returns:
        ``g`` with the shape, dtype and device of ``logits``; never infinite.
    """
    check_float_tensor(logits, "logits", "gumbel_noise")
    _check_generator(generator, "gumbel_noise")
    # the same draw as torch's gumbel_softmax; an Exponential sample that rounds to 0 would
    # give g = +inf and a NaN softmax, so it is lifted to the smallest normal number
    e = torch.empty_like(logits, memory_format=torch.legacy_contiguous_format)
    e = e.exponential_(generator=generator)
    return -e.clamp_min(torch.finfo(logits.dtype).tiny).log()


class _StraightThrough(torch.autograd.Function):
    """Forward: the one-hot of ``index`` along ``dim``, exactly. Backward: the incoming
    gradient goes to ``soft`` unchanged (the identity of a straight-through estimator)."""

    @staticmethod
    def forward(ctx, soft: Tensor, index: Tensor, dim: int) -> Tensor:
        # built here, not as ``hard - soft.detach() + soft``, which rounds 1 to 1 +- ulp
        return torch.zeros_like(soft).scatter_(dim, index, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None, None


def gumbel_softmax_st(logits: Tensor, tau: float = 1.0, hard: bool = True,
                      generator: Optional[torch.Generator] = None, dim: int = -1) -> Tensor:
    """A categorical sample along ``dim`` with a Gumbel-softmax gradient.

    Forward ``onehot(argmax(logits + g))`` (``hard=True``) or ``softmax((logits + g) / tau)``
    (``hard=False``); backward always the gradient of ``softmax((logits + g) / tau)`` with the
    same noise ``g`` (straight-through when hard). Ties in the argmax go to the first index.

    Args:
        logits: unnormalised log-probabilities ``[..., K, ...]``, floating; ``-inf`` masks a
            category out (not all of one distribution).
        tau: temperature (> 0): small is close to the one-hot sample but gives large,
            high-variance gradients; large is smooth but biased towards the uniform mean.
        hard: return the exact one-hot sample (True) or the relaxed sample (False).
        generator: source of the noise (``None``: the global generator); seed one for
            reproducible samples.
        dim: the category dimension.

    Returns:
        ``y`` shaped like ``logits``: one-hot along ``dim`` (``hard``) or on the simplex.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> y = gumbel_softmax_st(torch.zeros(2, 3), generator=g)
        >>> y.sum(-1).tolist(), sorted(set(y.flatten().tolist()))
        ([1.0, 1.0], [0.0, 1.0])
    """
    owner = "gumbel_softmax_st"
    check_float_tensor(logits, "logits", owner)
    if logits.dim() == 0:
        raise ValueError(f"{owner}: logits must have a category dimension, got a 0-dim tensor; "
                         "pass logits.reshape(1) for a single category")
    tau = check_number(tau, "tau", owner, positive=True)
    if not isinstance(hard, bool):
        raise TypeError(f"{owner}: hard must be True or False, got {type(hard).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not -logits.dim() <= dim < logits.dim():
        raise ValueError(f"{owner}: dim must be an int in [{-logits.dim()}, {logits.dim() - 1}] "
                         f"for logits of shape {list(logits.shape)}, got {dim!r}")
    _check_generator(generator, owner)
    y_soft = ((logits + gumbel_noise(logits, generator)) / tau).softmax(dim)
    if not hard:
        return y_soft
    # softmax and division by tau > 0 keep the order of logits + g, so this is its argmax
    # (up to values that round to a tie); taken from y_soft, as torch does, for parity
    index = y_soft.argmax(dim, keepdim=True)
    return _StraightThrough.apply(y_soft, index, dim)


def _check_generator(generator, owner: str) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}; build one with "
                        "torch.Generator().manual_seed(seed)")
