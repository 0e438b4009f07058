"""The ANN twin of the vision set-up's spiking network (same architecture plan, batch norm
and ReLU or QCFS in place of the norm and neurons), and its training; :func:`fit_stage`, the
checkpointed fit that every training of the app goes through."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ...nn import conv_output_size, dense_macs
from ...train import ObjectiveOutput, Trainer, make_optimizer
from ..setups.vision import plan, roll_signal
from .config import Config

__all__ = ["build_ann", "train_ann", "ann_accuracy", "ann_macs", "fit_stage", "train_seconds"]


def build_ann(c: Config, in_shape, n_classes: int, activation: Callable[[], nn.Module]
              ) -> nn.Sequential:
    """``torch.nn.Sequential``: per conv block of :func:`~spikegrad.apps.setups.vision.plan`
    conv (no bias) -> batch norm -> ``activation()`` -> pooling, then flatten, per hidden
    width linear (no bias) -> batch norm -> ``activation()``, and a linear output layer."""
    shape = tuple(in_shape)
    convs, dense = plan(c, shape)
    two_d = len(shape) == 3
    conv_cls, bn_cls = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
    pools = {"max": nn.MaxPool2d if two_d else nn.MaxPool1d,
             "avg": nn.AvgPool2d if two_d else nn.AvgPool1d}
    layers: List[nn.Module] = []
    for spec in convs:
        layers += [conv_cls(shape[0], spec.out_channels, spec.kernel_size, stride=spec.stride,
                            padding=spec.kernel_size // 2, bias=False),
                   bn_cls(spec.out_channels), activation()]
        shape = (spec.out_channels, *conv_output_size(shape[1:], spec.kernel_size, spec.stride,
                                                      spec.kernel_size // 2))
        if spec.pool != "none":
            layers.append(pools[spec.pool](2))
            shape = (shape[0], *conv_output_size(shape[1:], 2, 2))
    layers.append(nn.Flatten())
    width = math.prod(shape)
    for hidden in dense:
        layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), activation()]
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def fit_stage(trainer_args: tuple, loader, epochs: int, checkpoint_dir: Optional[Path],
              resume: bool, **trainer_kwargs) -> List[dict]:
    """``Trainer(*trainer_args, **trainer_kwargs)`` (quiet) fitted for ``epochs``; with
    ``checkpoint_dir``, a checkpoint there after every epoch (the newest two kept), and
    ``resume`` continues from the newest one (a finished training is loaded, not repeated;
    none there: it starts). Returns the history, one record per epoch."""
    trainer = Trainer(*trainer_args, progress=False, checkpoint_dir=checkpoint_dir,
                      keep_checkpoints=2, **trainer_kwargs)
    return trainer.fit(loader, epochs,
                       resume="latest" if resume and checkpoint_dir is not None else None)


def train_seconds(history: List[dict]) -> float:
    """A training's time: the seconds of its epochs, also of those done before a resume."""
    return float(sum(r["seconds"] for r in history))


def train_ann(c: Config, model: nn.Sequential, train: TensorDataset,
              checkpoint_dir: Optional[Path] = None, resume: bool = False) -> List[dict]:
    """Adam at ``c.lr`` with a cosine decay over ``c.epochs``, cross-entropy, the set-up's
    batch size and augmentation; returns the trainer's history. ``checkpoint_dir``,
    ``resume``: as in :func:`fit_stage`."""
    opt = make_optimizer("adam", model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    loader = DataLoader(train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))

    def objective(m, x, y, state):
        if c.augment_shift:
            x = roll_signal(x, c.augment_shift)
        logits = m(x)
        acc = float((logits.argmax(1) == y).float().mean())
        return ObjectiveOutput(nn.functional.cross_entropy(logits, y), None,
                               {"accuracy": acc, "n": len(y)})

    return fit_stage((model, opt, objective), loader, c.epochs, checkpoint_dir, resume,
                     scheduler=sched)


@torch.no_grad()
def ann_accuracy(model: nn.Module, ds: TensorDataset) -> float:
    model.eval()
    x, y = ds.tensors
    return float((model(x).argmax(1) == y).float().mean())


def ann_macs(model: nn.Sequential, in_shape) -> Dict[str, int]:
    """Multiply-accumulates of one inference per weight layer, and the total (``"total"``)."""
    out, x = {}, torch.zeros(1, *in_shape)
    model.eval()
    with torch.no_grad():
        for i, layer in enumerate(model):
            if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                out[f"{i}:{type(layer).__name__}"] = dense_macs(layer, tuple(x.shape[1:]))
            x = layer(x)
    out["total"] = sum(out.values())
    return out
