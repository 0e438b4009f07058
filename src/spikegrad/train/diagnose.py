"""Where a NaN or Inf came from: the first parameter, layer output or gradient that is not
finite, for the error message of a failed training step."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["first_nonfinite", "nonfinite_gradients", "tensors"]


def first_nonfinite(model: nn.Module, objective, inputs: Any, targets: Any, state: Any,
                    rng: Tensor) -> str:
    """Replay the objective with forward hooks; name the first module output that is not finite.

    Returns a phrase to append to the error message ("" if the replay finds nothing).
    """
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            return f" (parameter {name!r} is not finite)"
    found: list[str] = []

    def hook(module: nn.Module, args: Any, output: Any, name: str) -> None:
        if found:
            return
        for i, t in enumerate(tensors(output)):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                what = "output" if i == 0 else f"output tensor #{i} (e.g. its state)"
                found.append(f" (first non-finite value: {what} of layer {name!r}, "
                             f"{type(module).__name__})")
                return

    handles = [
        m.register_forward_hook(lambda mod, a, out, n=name: hook(mod, a, out, n))
        for name, m in model.named_modules()
        if name
    ]
    saved = torch.get_rng_state()
    try:
        torch.set_rng_state(rng)
        with torch.no_grad():
            objective(model, inputs, targets, state)
    except Exception:  # diagnostics must never hide the original error
        pass
    finally:
        torch.set_rng_state(saved)
        for h in handles:
            h.remove()
    return found[0] if found else " (every layer's output is finite: the loss itself overflowed)"


def tensors(obj: Any) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors(o)]
    return []


def nonfinite_gradients(model: nn.Module) -> list[str]:
    """Names of the parameters whose gradient holds a NaN or Inf."""
    return [name for name, p in model.named_parameters()
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
