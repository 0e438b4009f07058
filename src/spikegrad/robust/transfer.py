"""Transfer attack: craft adversarial examples white-box on a source model (e.g. an ANN twin
trained on the same data) and evaluate them on the target SNN, whose gradient is never used.

A transfer attack is a black-box baseline: if it is stronger than the white-box attack on the
SNN itself, the SNN's surrogate gradient is masking (Athalye et al. 2018).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Union

from torch import Tensor

from ._common import check_eps, eval_mode
from .attacks import ATTACKS, accuracy
from .._validate import check_choice

__all__ = ["transfer", "TransferResult"]


class TransferResult(NamedTuple):
    """Adversarial inputs crafted on the source and the accuracy of both models on them.

    Attributes:
        x_adv: ``[B, ...]``, inside the attack's eps ball and valid range.
        source_accuracy: accuracy of the source model on ``x_adv`` (the white-box number).
        target_accuracy: accuracy of the target model on ``x_adv`` (the transfer number).
    """

    x_adv: Tensor
    source_accuracy: float
    target_accuracy: float


def transfer(source_model: Callable[[Tensor], Tensor], target_model: Callable[[Tensor], Tensor],
             x: Tensor, y: Tensor, eps: float, *,
             attack: Union[str, Callable[..., Tensor]] = "pgd", **kw) -> TransferResult:
    """Craft ``attack(source_model, x, y, eps=eps, **kw)`` and score it on both models.

    Args:
        source_model: differentiable twin ``x [B, ...] -> logits [B, C]`` (attacked).
        target_model: the model under evaluation (only forward passes), same inputs and
            classes.
        x, y: clean inputs ``[B, ...]`` and labels ``[B]``.
        eps: budget in input units.
        attack: ``"fgsm"``, ``"pgd"``, ``"spsa"`` or ``attack(model, x, y, eps=..., **kw)``.
        **kw: passed to the attack (``steps``, ``step_size``, ``norm``, ...).

    Returns:
        :class:`TransferResult`; both models are evaluated in eval mode.
    """
    eps = check_eps(eps)
    if isinstance(attack, str):
        attack = ATTACKS[check_choice(attack, "attack", tuple(ATTACKS))]
    elif not callable(attack):
        raise ValueError(f"attack must be 'fgsm', 'pgd', 'spsa' or a callable "
                         f"attack(model, x, y, eps=..., **kw) -> x_adv; got {attack!r}")
    with eval_mode(source_model):
        x_adv = attack(source_model, x, y, eps=eps, **kw)
    return TransferResult(x_adv, accuracy(source_model, x_adv, y),
                          accuracy(target_model, x_adv, y))
