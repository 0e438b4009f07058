"""The contract between :class:`~spikegrad.train.Trainer` and the user's objective, and
the gradient norm the loop logs and clips."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import torch
from torch import Tensor, nn

__all__ = ["ObjectiveOutput", "Objective", "checked_output", "global_grad_norm"]


class ObjectiveOutput(NamedTuple):
    """What an objective returns for one batch (or one TBPTT chunk).

    Attributes:
        loss: scalar (0-dim) floating tensor to minimise.
        state: the model state after this chunk, carried (detached) into the next TBPTT
            chunk; ignored without TBPTT. ``None`` for stateless models.
        metrics: numbers (floats or 1-element tensors) to average over the epoch; they are
            logged as ``train_<name>``. A metric named ``"n"`` is the batch's weight in the
            epoch averages (usually the batch size) and is not logged itself.
    """

    loss: Tensor
    state: Any = None
    metrics: Mapping[str, float] = MappingProxyType(
        {}
    )  # read-only: a shared default must not be mutated


Objective = Callable[[nn.Module, Any, Any, Any], ObjectiveOutput]


def checked_output(out: Any, needs_grad: bool = True) -> ObjectiveOutput:
    """``out`` if it is an :class:`ObjectiveOutput` with a scalar floating loss that requires
    grad (``needs_grad``; a learner's loss is only logged); else a TypeError/ValueError that
    says how to return one."""
    if not isinstance(out, ObjectiveOutput):
        raise TypeError(
            f"objective must return spikegrad.train.ObjectiveOutput(loss, state, metrics); got "
            f"{type(out).__name__}. Wrap the result, e.g. "
            "`return ObjectiveOutput(loss, state)`."
        )
    loss = out.loss
    if not isinstance(loss, Tensor):
        raise TypeError(
            f"ObjectiveOutput.loss must be a torch.Tensor; got {type(loss).__name__}"
        )
    if loss.ndim != 0:
        raise ValueError(
            "ObjectiveOutput.loss must be a scalar (0-dim) tensor; got shape "
            f"{list(loss.shape)}. Reduce it in the objective, e.g. loss.mean() or loss.sum()."
        )
    if not loss.is_floating_point():
        raise TypeError(
            f"ObjectiveOutput.loss must be a floating tensor; got dtype {loss.dtype}"
        )
    if needs_grad and not loss.requires_grad:
        raise ValueError(
            "ObjectiveOutput.loss does not require grad, so there is nothing to train: the "
            "objective ran under torch.no_grad(), detached the loss, or the model has no "
            "trainable parameters."
        )
    return out


def global_grad_norm(optimizer: torch.optim.Optimizer, max_norm: Optional[float]) -> float:
    """Global pre-clip gradient norm of the optimizer's parameters; with ``max_norm``, clips
    them in place to it (``torch.nn.utils.clip_grad_norm_``)."""
    params = [
        p
        for group in optimizer.param_groups
        for p in group["params"]
        if p.grad is not None
    ]
    if not params:
        return 0.0
    if max_norm is not None:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    # Same formula as clip_grad_norm_ (norm of per-tensor norms) so logs agree with and
    # without clipping.
    device = params[0].grad.device
    norms = [torch.linalg.vector_norm(p.grad.detach()).to(device) for p in params]
    return float(torch.linalg.vector_norm(torch.stack(norms)))
