"""SPSA: a gradient-free L-inf attack from finite differences (Uesato et al. 2018).

It never calls ``backward``, so it does not see the surrogate: where SPSA finds far lower
accuracy than the surrogate-gradient PGD, the surrogate gradient is masking (uninformative)
and the PGD number overstates robustness (:func:`spikegrad.robust.masking_report`).
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from ._common import (LossLike, attack_loss, check_clamp, check_count, check_eps,
                      check_inputs, check_labels, per_sample_loss)

__all__ = ["spsa", "spsa_gradient"]


def spsa_gradient(model: Callable[[Tensor], object], x: Tensor, y, *, samples: int,
                  perturbation: float, loss: LossLike = "margin",
                  clamp: Optional[Tuple[float, float]] = (0, 1),
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """Simultaneous-perturbation estimate of the input gradient of the per-sample loss.

    ``g = mean_k (L(x + c v_k) - L(x - c v_k)) / (2 c) * v_k`` over ``samples`` Rademacher
    directions ``v_k`` in {-1, +1}^d (``1 / v = v``), ``c = perturbation`` in input units.
    The probes are clamped to the valid range (a stochastic encoder may refuse values outside
    it). Runs ``2 * samples`` forward passes of ``B`` inputs as one batch; no autograd graph.

    Shapes: ``x [B, ...] -> g [B, ...]``.
    """
    fn = per_sample_loss(loss)
    B = x.shape[0]
    v = torch.randint(0, 2, (samples, *x.shape), generator=generator, device=x.device)
    v = (2 * v - 1).to(x.dtype)                                  # [S, B, ...]
    probes = torch.cat([x + perturbation * v, x - perturbation * v])  # [2S, B, ...]
    if clamp is not None:
        probes = probes.clamp(*clamp)
    # one target per probe: the batch's targets repeated for each of the 2S probe batches
    target = y.repeat(2 * samples, *([1] * (y.dim() - 1))) if isinstance(y, Tensor) else y
    with torch.no_grad():
        out = model(probes.flatten(0, 1))                        # [2S * B, C]
        values = attack_loss(fn, out, target, 2 * samples * B).view(2, samples, B)
    df = (values[0] - values[1]) / (2 * perturbation)            # [S, B]
    return (df.view(samples, B, *([1] * (x.dim() - 1))) * v).mean(0)


def spsa(model: Callable[[Tensor], object], x: Tensor, y, eps: float, *, steps: int = 100,
         samples: int = 64, lr: float = 0.01, perturbation: float = 0.01,
         loss: LossLike = "margin", clamp: Optional[Tuple[float, float]] = (0, 1),
         generator: Optional[torch.Generator] = None) -> Tensor:
    """SPSA attack (Uesato et al. 2018): Adam ascent on the loss with SPSA gradient estimates,
    projected after every step onto the L-inf ball of radius ``eps`` and the valid range.

    Args:
        model: callable ``x [B, ...] -> logits [B, C]``; only forward passes are used.
        x: clean inputs ``[B, ...]`` inside ``clamp``.
        y: labels ``[B]``.
        eps: L-inf budget in input units (>= 0).
        steps: Adam steps (>= 1).
        samples: Rademacher directions per gradient estimate (>= 1); each step costs
            ``2 * samples`` forward passes of the batch.
        lr: Adam learning rate, in input units per step (Uesato et al.: 0.01).
        perturbation: finite-difference half-width ``c`` in input units (> 0; Uesato et al.:
            0.01). For spike-count logits, which are piecewise constant, it must be large
            enough to change some spike count.
        loss: maximised per-sample loss; default the margin ``max_{j != y} z_j - z_y``.
        clamp: valid input range ``(low, high)`` or None.
        generator: ``torch.Generator`` for the directions (None: global RNG).

    Returns:
        Per sample, the iterate with the highest loss seen (the clean input counts too):
        ``[B, ...]`` inside the eps ball and ``clamp``.
    """
    eps = check_eps(eps)
    steps = check_count(steps, "steps", "the number of Adam steps")
    samples = check_count(samples, "samples", "the Rademacher directions per estimate")
    lr = check_eps(lr, "lr")
    perturbation = check_eps(perturbation, "perturbation")
    if perturbation == 0:
        raise ValueError("perturbation must be > 0 (the finite-difference half-width in "
                         "input units, e.g. 0.01)")
    clamp = check_clamp(clamp)
    x = check_inputs(x, clamp).detach()
    if not callable(loss):
        y = check_labels(y, x.shape[0])
    fn = per_sample_loss(loss)
    delta = torch.zeros_like(x, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr)
    best, best_loss = x.clone(), _loss(model, fn, x, y)
    for _ in range(steps):
        g = spsa_gradient(model, x + delta.detach(), y, samples=samples,
                          perturbation=perturbation, loss=loss, clamp=clamp,
                          generator=generator)
        delta.grad = -g  # Adam minimises; the attack maximises the loss
        optimizer.step()
        with torch.no_grad():
            adv = x + delta.clamp(-eps, eps)
            adv = adv if clamp is None else adv.clamp(*clamp)
            delta.copy_(adv - x)  # in place, so that Adam keeps its moments
            value = _loss(model, fn, adv, y)
            better = value > best_loss
            best = torch.where(better.view(-1, *([1] * (x.dim() - 1))), adv, best)
            best_loss = torch.where(better, value, best_loss)
    return best


def _loss(model, fn, x: Tensor, y) -> Tensor:
    with torch.no_grad():
        return attack_loss(fn, model(x), y, x.shape[0])
