"""Argument checks and per-sample attack losses shared by the attacks of :mod:`spikegrad.robust`.

Every attack maximises a per-sample loss ``[B]``; the names here are the built-in ones.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_tensor

__all__ = ["LOSSES", "NORMS", "check_eps", "check_clamp", "check_inputs", "check_labels",
           "check_count", "per_sample_loss", "attack_loss", "eval_mode", "predict"]

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin")

LossLike = Union[str, Callable[[Any, Any], Tensor]]


def check_eps(eps, name: str = "eps") -> float:
    """A finite perturbation budget ``>= 0`` (in input units), as a float."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (the perturbation budget in "
                         f"input units, e.g. 0.1), got {eps!r}")
    return float(eps)


def check_count(value, name: str, hint: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (a number of steps, samples or restarts); ValueError otherwise."""
    try:
        return check_int(value, name, minimum=minimum, hint=hint)
    except TypeError as err:  # one exception type for a bad count, whatever its type
        raise ValueError(str(err)) from None


def check_clamp(clamp) -> Optional[Tuple[float, float]]:
    """``None`` (no valid range) or a pair ``(low, high)`` with ``low < high``."""
    if clamp is None:
        return None
    ok = (isinstance(clamp, (tuple, list)) and len(clamp) == 2
          and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                  and math.isfinite(c) for c in clamp) and clamp[0] < clamp[1])
    if not ok:
        raise ValueError(f"clamp must be None or a pair (low, high) of finite numbers with "
                         f"low < high, the valid input range (e.g. (0, 1)); got {clamp!r}")
    return float(clamp[0]), float(clamp[1])


def check_inputs(x, clamp: Optional[Tuple[float, float]], name: str = "x") -> Tensor:
    """A floating batch ``[B, ...]`` of finite values inside ``clamp``."""
    check_tensor(x, name)
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty batch [B, ...], got shape "
                         f"{list(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or inf values; clean the inputs first")
    if clamp is not None and not bool(((x >= clamp[0]) & (x <= clamp[1])).all()):
        raise ValueError(f"{name} must lie in the valid range clamp={clamp}, got values in "
                         f"[{x.min().item():.4g}, {x.max().item():.4g}]; rescale the inputs "
                         "or pass the range they live in as clamp=(low, high)")
    return x


def check_labels(y, batch: int, name: str = "y") -> Tensor:
    """Integer class labels ``[B]``."""
    check_tensor(y, name, floating=False)
    if y.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (batch,):
        raise ValueError(f"{name} must have shape [B] = [{batch}] (one class label per input), "
                         f"got {list(y.shape)}")
    return y.long()


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` (> 0 exactly where misclassified)."""
    true = logits.gather(1, y[:, None])[:, 0]
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -math.inf)
    return others.max(1).values - true


def _ce(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def per_sample_loss(loss: LossLike) -> Callable[[Any, Any], Tensor]:
    """The per-sample loss ``fn(output, target) -> [B]`` that an attack maximises.

    ``"ce"``: softmax cross-entropy of logits ``[B, C]`` against labels ``[B]``; ``"margin"``:
    the Carlini-Wagner margin; a callable: any ``fn(output, target) -> [B]`` (the target is
    passed through unchecked, e.g. clean probabilities for TRADES).
    """
    if callable(loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be 'ce', 'margin' or a callable loss(output, target) -> "
                         f"[B] (one value per sample); got {loss!r}")
    return _ce if loss == "ce" else _margin


def attack_loss(fn: Callable, output: Any, target: Any, batch: int) -> Tensor:
    """``fn(output, target)`` checked to be one loss per sample, ``[B]``."""
    value = fn(output, target)
    if not isinstance(value, Tensor) or value.shape != (batch,):
        shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return one value per sample, shape [B] = [{batch}], got "
                         f"{shape}; use reduction='none'")
    return value


class eval_mode:
    """Context manager: ``model.eval()`` inside, the previous mode restored on exit (attacks
    are crafted and scored with dropout off and sampled latents at their mean)."""

    def __init__(self, model):
        self.model = model if isinstance(model, nn.Module) else None
        self.was_training = bool(self.model is not None and self.model.training)

    def __enter__(self):
        if self.model is not None:
            self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        if self.model is not None:
            self.model.train(self.was_training)


def predict(model: Callable[[Tensor], Tensor], x: Tensor,
            batch_size: Optional[int] = None) -> Tensor:
    """Logits ``[B, C]`` without a graph, in chunks of ``batch_size`` (all at once if None)."""
    with torch.no_grad():
        if batch_size is None:
            return model(x)
        return torch.cat([model(chunk) for chunk in x.split(batch_size)])
