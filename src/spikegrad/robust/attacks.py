"""White-box attacks with the gradient taken by BPTT through the surrogate: FGSM and PGD.

``model`` is any callable ``x [B, ...] -> output`` (an :class:`SNNClassifier` for an SNN,
logits ``[B, C]`` for the built-in losses); the attack maximises a per-sample loss
(:func:`spikegrad.robust.per_sample_loss`). The gradient through spikes is the surrogate's,
so a weak attack may mean a poor surrogate rather than a robust model: check with
:func:`spikegrad.robust.masking_report`.

For a stochastic encoder (Bernoulli rate code) ``eot=n`` averages the gradient over ``n``
encoder samples (expectation over transformation, Athalye et al. 2018). The update rules are
those of torchattacks (``FGSM``, ``PGD``, ``PGDL2``), operation for operation, so the same
model gives the same adversarial examples.

The attacks leave the model's train/eval mode alone; :func:`robust_accuracy` evaluates in
eval mode.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from .._validate import check_choice
from ._common import (NORMS, LossLike, attack_loss, check_clamp, check_count, check_eps,
                      check_inputs, check_labels, eval_mode, per_sample_loss, predict)
from .spsa import spsa

__all__ = ["fgsm", "pgd", "input_gradient", "accuracy", "robust_accuracy", "ATTACKS"]

Model = Callable[[Tensor], object]
_TINY = 1e-10  # added to gradient norms before dividing (torchattacks' eps_for_division)


def input_gradient(model: Model, x: Tensor, y, loss: LossLike = "ce", *, eot: int = 1
                   ) -> Tuple[Tensor, Tensor]:
    """Gradient of the batch-mean loss with respect to the input, and the per-sample loss.

    With ``eot = n`` both are averaged over ``n`` forward/backward passes, each with fresh
    encoder samples (for ``eot = 1`` exactly the plain gradient).

    Shapes: ``x [B, ...] -> (grad [B, ...], loss [B])``.
    """
    fn = per_sample_loss(loss)
    eot = check_count(eot, "eot", "the number of encoder samples averaged per gradient")
    grad, value = torch.zeros_like(x), x.new_zeros(x.shape[0])
    for _ in range(eot):
        x_in = x.detach().requires_grad_(True)
        per_sample = attack_loss(fn, model(x_in), y, x.shape[0])
        # the mean, as torchattacks' nn.CrossEntropyLoss(), so that the steps agree bit for bit
        grad = grad + torch.autograd.grad(per_sample.mean(), x_in)[0]
        value = value + per_sample.detach()
    return grad / eot, value / eot


def _labels(loss: LossLike, y, x: Tensor):
    # the built-in losses take class labels; a callable's target passes through as it is
    return y if callable(loss) else check_labels(y, x.shape[0])


def fgsm(model: Model, x: Tensor, y, eps: float, *, clamp: Optional[Tuple[float, float]] = (0, 1),
         loss: LossLike = "ce", eot: int = 1) -> Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``x + eps * sign(grad)``, clamped.

    Args:
        model: callable ``x -> logits [B, C]`` (or any output the ``loss`` takes).
        x: clean inputs ``[B, ...]`` inside ``clamp``.
        y: labels ``[B]`` (or the target a callable ``loss`` takes).
        eps: L-inf budget, in input units (>= 0).
        clamp: valid input range ``(low, high)``, or None.
        loss: ``"ce"``, ``"margin"`` or ``fn(output, target) -> [B]``, maximised.
        eot: encoder samples averaged per gradient (stochastic encoders).

    Returns:
        Adversarial inputs ``[B, ...]`` with ``|x_adv - x| <= eps`` elementwise, in ``clamp``.
    """
    eps = check_eps(eps)
    clamp = check_clamp(clamp)
    x = check_inputs(x, clamp).detach()
    grad, _ = input_gradient(model, x, _labels(loss, y, x), loss, eot=eot)
    adv = x + eps * grad.sign()
    return (adv if clamp is None else adv.clamp(*clamp)).detach()


def _start(x: Tensor, eps: float, norm: str, generator) -> Tensor:
    """A uniformly random point of the L-inf ball, or (L2) a random direction at a uniformly
    drawn radius (torchattacks' PGDL2 start)."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return x + (2 * u - 1) * eps
    delta = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    n = delta.flatten(1).norm(dim=1).clamp_min(_TINY)
    r = torch.rand(x.shape[0], generator=generator, dtype=x.dtype, device=x.device)
    return x + delta * _per_sample(r / n * eps, x)


def _per_sample(v: Tensor, x: Tensor) -> Tensor:
    return v.view(-1, *([1] * (x.dim() - 1)))  # [B] -> [B, 1, ..., 1]


def _project(adv: Tensor, x: Tensor, eps: float, norm: str, clamp) -> Tensor:
    """Back into the eps ball around ``x`` and the valid range; clamping after projecting only
    shrinks each coordinate of ``adv - x``, so the result stays in the ball."""
    if norm == "linf":
        delta = torch.clamp(adv - x, min=-eps, max=eps)
    else:
        delta = adv - x
        norms = delta.flatten(1).norm(dim=1)
        factor = torch.min(eps / norms.clamp_min(1e-12), torch.ones_like(norms))
        delta = delta * _per_sample(factor, x)
    adv = x + delta
    return (adv if clamp is None else adv.clamp(*clamp)).detach()


def _ascend(model, x, y, eps, *, steps, step_size, norm, start, loss, eot, clamp) -> Tensor:
    """One PGD run from ``start``."""
    adv = start
    for _ in range(steps):
        grad, _ = input_gradient(model, adv, y, loss, eot=eot)
        if norm == "linf":
            adv = adv.detach() + step_size * grad.sign()
        else:
            g_norm = grad.flatten(1).norm(dim=1) + _TINY
            adv = adv.detach() + step_size * (grad / _per_sample(g_norm, x))
        adv = _project(adv, x, eps, norm, clamp)
    return adv


def _score(model, adv: Tensor, y, loss: LossLike) -> Tuple[Tensor, Tensor]:
    """Per sample: (fooled, loss). A callable loss has no notion of fooled (all False)."""
    with torch.no_grad():
        out = model(adv)
        value = attack_loss(per_sample_loss(loss), out, y, adv.shape[0])
        if callable(loss):
            return torch.zeros_like(value, dtype=torch.bool), value
        return out.argmax(1) != y, value


def pgd(model: Model, x: Tensor, y, eps: float, *, steps: int = 10,
        step_size: Optional[float] = None, norm: str = "linf", random_start: bool = True,
        restarts: int = 1, loss: LossLike = "ce", eot: int = 1,
        clamp: Optional[Tuple[float, float]] = (0, 1),
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Projected gradient descent (Madry et al. 2018), L-inf or L2, with restarts.

    Each step: ``x' <- Proj(x' + step_size * sign(g))`` (L-inf) or
    ``Proj(x' + step_size * g / ||g||_2)`` (L2), ``g`` the input gradient of the mean loss;
    ``Proj`` onto the eps ball around ``x`` and then the valid range ``clamp``.

    Args:
        model, x, y, loss, eot, clamp: as :func:`fgsm`.
        eps: budget in input units (L-inf: per element; L2: per sample) (>= 0).
        steps: gradient steps per restart (>= 1).
        step_size: step length in input units; default ``2.5 * eps / steps`` (Madry et al.).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start at a random point of the ball (else at ``x``).
        restarts: independent runs; per sample the run that fools the model, else the one
            with the highest loss, is kept (for ``restarts > 1`` use ``random_start=True`` or
            a stochastic model, else the runs repeat each other).
        generator: ``torch.Generator`` for the random starts (None: global RNG).

    Returns:
        Adversarial inputs ``[B, ...]`` inside the eps ball around ``x`` and inside ``clamp``.

    With ``random_start=False`` and ``restarts=1``, L-inf PGD equals
    ``torchattacks.PGD(model, eps, alpha=step_size, steps, random_start=False)``.
    """
    eps = check_eps(eps)
    steps = check_count(steps, "steps", "the number of gradient steps")
    restarts = check_count(restarts, "restarts", "the number of independent runs")
    step_size = 2.5 * eps / steps if step_size is None else check_eps(step_size, "step_size")
    norm = check_choice(norm, "norm", NORMS)
    clamp = check_clamp(clamp)
    x = check_inputs(x, clamp).detach()
    y = _labels(loss, y, x)
    best = best_fooled = best_loss = None
    for _ in range(restarts):
        start = _start(x, eps, norm, generator) if random_start else x.clone()
        start = _project(start, x, eps, norm, clamp)
        adv = _ascend(model, x, y, eps, steps=steps, step_size=step_size, norm=norm,
                      start=start, loss=loss, eot=eot, clamp=clamp)
        if restarts == 1:
            return adv
        fooled, value = _score(model, adv, y, loss)
        if best is None:
            best, best_fooled, best_loss = adv, fooled, value
            continue
        better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (value > best_loss))
        best = torch.where(_per_sample(better, x), adv, best)
        best_fooled, best_loss = best_fooled | fooled, torch.where(better, value, best_loss)
    return best


def accuracy(model: Model, x: Tensor, y: Tensor, *, batch_size: Optional[int] = None
             ) -> float:
    """Fraction of ``x [B, ...]`` whose argmax logit is the label ``y [B]``; in eval mode,
    without a graph (``batch_size``: evaluate in chunks)."""
    y = check_labels(y, x.shape[0])
    with eval_mode(model):
        logits = predict(model, x, batch_size)
    return int((logits.argmax(1) == y).sum()) / len(y)  # exact fraction of whole samples


def robust_accuracy(model: Model, x: Tensor, y: Tensor,
                    attack: Union[str, Callable[..., Tensor]] = "pgd", *,
                    batch_size: Optional[int] = None, **kw) -> float:
    """Accuracy on ``attack(model, x, y, **kw)``, crafted and evaluated in eval mode.

    ``attack``: ``"fgsm"``, ``"pgd"``, ``"spsa"`` or a callable returning adversarial
    inputs shaped like ``x`` (a torchattacks attack: ``lambda m, x, y: atk(x, y)``).
    ``batch_size`` evaluates (not crafts) in chunks. Example:
    ``robust_accuracy(model, x, y, "pgd", eps=0.1, steps=20)``.
    """
    if isinstance(attack, str):
        attack = check_choice(attack, "attack", tuple(ATTACKS))
        attack = ATTACKS[attack]
    elif not callable(attack):
        raise ValueError(f"attack must be 'fgsm', 'pgd', 'spsa' or a callable "
                         f"attack(model, x, y, **kw) -> x_adv; got {attack!r}")
    with eval_mode(model):
        adv = attack(model, x, y, **kw)
    if not isinstance(adv, Tensor) or adv.shape != x.shape:
        raise ValueError("attack must return adversarial inputs shaped like x "
                         f"{list(x.shape)}, got "
                         f"{list(adv.shape) if isinstance(adv, Tensor) else type(adv).__name__}")
    return accuracy(model, adv, y, batch_size=batch_size)


ATTACKS = {"fgsm": fgsm, "pgd": pgd, "spsa": spsa}
