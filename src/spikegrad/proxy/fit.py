"""Fit a differentiable proxy to a black-box scorer by regression.

A scorer ``s(x)`` that has no derivative (a lookup table, a simulator, a chemistry toolkit) is
replaced by a network ``f_w(x)`` fitted to examples ``(x_n, s(x_n))`` with the mean squared
error; a generator can then follow ``grad_x f_w``. The proxy is only as good as it is on data
it has not seen, so a random ``val_fraction`` of the examples is held out and the fit reports
held-out R² and calibration (:mod:`spikegrad.proxy.metrics`). An optimiser that climbs the
proxy will find the places where the proxy is wrong: check the proxy's score of what it
proposes against the true scorer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int
from ._checks import check_number
from .metrics import Calibration, calibration, r2_score

__all__ = ["ProxyFit", "fit_proxy"]


@dataclass
class ProxyFit:
    """The result of :func:`fit_proxy`.

    Attributes:
        model: the trained proxy (the object passed in, trained in place), in eval mode.
        train_r2, val_r2: R² on the training and the held-out examples.
        val_pred, val_target: ``[N_val]`` held-out predictions and scores (float64, CPU).
        calibration: held-out :class:`~spikegrad.proxy.metrics.Calibration`.
        train_index, val_index: ``[N_train]``, ``[N_val]`` indices of the split into the
            ``N`` examples.
        train_loss, val_loss: per-epoch MSE (score units squared): the mean over the
            epoch's batches, and on the held-out set after the epoch.
    """

    model: nn.Module
    train_r2: float
    val_r2: float
    val_pred: Tensor
    val_target: Tensor
    calibration: Calibration
    train_index: Tensor
    val_index: Tensor
    train_loss: List[float] = field(default_factory=list)
    val_loss: List[float] = field(default_factory=list)


def fit_proxy(model: nn.Module, inputs: Tensor, scores: Tensor, *, val_fraction: float = 0.2,
              epochs: int = 100, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
              weight_decay: float = 0.0, bins: int = 10) -> ProxyFit:
    """Train ``model`` so that ``model(inputs[n]) ~ scores[n]``, with a held-out split.

    AdamW (decoupled ``weight_decay``) on the MSE, mini-batches reshuffled every epoch. The
    split and the batch order come from ``seed``; the initial weights (and any dropout) are
    the caller's: seed torch before building the model for a reproducible fit.

    Args:
        model: maps a batch ``[B, ...]`` to ``[B]`` or ``[B, 1]`` predictions; trained in
            place. Batches are moved to the device of its first parameter.
        inputs: ``[N, ...]`` examples, any dtype the model takes (token ids included).
        scores: ``[N]`` finite floating scores of the black box, not constant.
        val_fraction: share of the examples held out, in (0, 1); both parts need >= 2.
        epochs, lr, batch_size: passes over the training part, AdamW step size, batch size.
        seed: seeds the split and the shuffling.
        weight_decay: AdamW's decoupled decay (>= 0).
        bins: calibration bins (at most the held-out size).

    Returns:
        A :class:`ProxyFit`.
    """
    n = _check_data(model, inputs, scores, "fit_proxy")
    n_val, epochs, lr, batch_size, seed, weight_decay, bins = _check_options(
        n, val_fraction, epochs, lr, batch_size, seed, weight_decay, bins)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    val_index, train_index = perm[:n_val].sort().values, perm[n_val:].sort().values
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    val_target = scores[val_index].detach().double().cpu()
    train_loss, val_loss = [], []
    for epoch in range(epochs):
        order = train_index[torch.randperm(len(train_index), generator=generator)]
        train_loss.append(_epoch(model, optimizer, inputs, scores, order, batch_size, device,
                                 epoch))
        val_pred = _predict(model, inputs, val_index, batch_size, device)   # [N_val]
        val_loss.append(F.mse_loss(val_pred, val_target).item())

    train_pred = _predict(model, inputs, train_index, batch_size, device)
    return ProxyFit(
        model=model, train_r2=r2_score(train_pred, scores[train_index].detach().double().cpu()),
        val_r2=r2_score(val_pred, val_target), val_pred=val_pred, val_target=val_target,
        calibration=calibration(val_pred, val_target, bins=min(bins, n_val)),
        train_index=train_index, val_index=val_index, train_loss=train_loss,
        val_loss=val_loss)


def _check_data(model, inputs, scores, owner: str) -> int:
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise TypeError(f"{owner}: model must be a torch.nn.Module with parameters to fit, got "
                        f"{type(model).__name__}")
    if not isinstance(inputs, Tensor) or inputs.dim() < 1:
        raise ValueError(f"{owner}: inputs must be a tensor [N, ...] (one example per row), "
                         f"got {type(inputs).__name__}")
    if not isinstance(scores, Tensor) or not scores.is_floating_point() or scores.dim() != 1:
        got = (f"dtype {scores.dtype}, shape {list(scores.shape)}"
               if isinstance(scores, Tensor) else type(scores).__name__)
        raise ValueError(f"{owner}: scores must be a 1-D floating tensor [N], got {got}")
    if scores.shape[0] != inputs.shape[0]:
        raise ValueError(f"{owner}: scores has {scores.shape[0]} entries but inputs has "
                         f"{inputs.shape[0]} examples; pass one score per example")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{owner}: scores must be finite; drop the examples the scorer could "
                         "not score (or give them a finite value)")
    if scores.shape[0] >= 2 and bool((scores == scores[0]).all()):
        raise ValueError(f"{owner}: scores are all equal ({scores[0].item()!r}): there is "
                         "nothing to fit")
    return scores.shape[0]


def _check_options(n, val_fraction, epochs, lr, batch_size, seed, weight_decay, bins):
    """The scalar options, checked; ``val_fraction`` becomes the held-out count."""
    owner = "fit_proxy"
    val_fraction = check_number(val_fraction, "val_fraction", owner)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{owner}: val_fraction must be in (0, 1), got {val_fraction!r}; "
                         "0.2 holds out a fifth of the examples")
    n_val = int(round(val_fraction * n))
    if n_val < 2 or n - n_val < 2:
        raise ValueError(f"{owner}: val_fraction={val_fraction} of {n} examples leaves "
                         f"{n_val} held out and {n - n_val} for training; both need >= 2: "
                         "pass more examples or another val_fraction")
    weight_decay = check_number(weight_decay, "weight_decay", owner)
    if weight_decay < 0:
        raise ValueError(f"{owner}: weight_decay must be >= 0, got {weight_decay!r}")
    return (n_val, check_int(epochs, f"{owner}: epochs"),
            check_number(lr, "lr", owner, positive=True),
            check_int(batch_size, f"{owner}: batch_size"),
            check_int(seed, f"{owner}: seed", minimum=0), weight_decay,
            check_int(bins, f"{owner}: bins"))


def _forward(model: nn.Module, x: Tensor) -> Tensor:
    """``[B, ...] -> [B]``: the model's output with a trailing unit dimension squeezed."""
    out = model(x)
    if out.dim() == 2 and out.shape[1] == 1:
        out = out.squeeze(1)
    if out.shape != (x.shape[0],):
        raise ValueError(f"fit_proxy: model must map a batch [B, ...] to [B] or [B, 1] "
                         f"predictions, got shape {list(out.shape)} for B = {x.shape[0]}")
    return out


def _epoch(model, optimizer, inputs, scores, order, batch_size, device, epoch) -> float:
    """One pass over ``order`` (indices); the example-weighted mean batch MSE."""
    model.train()
    total = 0.0
    for idx in torch.split(order, batch_size):
        x, y = inputs[idx].to(device), scores[idx].to(device)
        pred = _forward(model, x)
        loss = F.mse_loss(pred, y.to(pred.dtype))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"fit_proxy: the loss became {loss.item()} in epoch "
                                     f"{epoch}; lower lr or standardise the scores")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
    return total / len(order)


@torch.no_grad()
def _predict(model, inputs, index, batch_size, device) -> Tensor:
    """Eval-mode predictions ``[len(index)]`` (float64, CPU), in batches to bound memory."""
    model.eval()
    parts = [_forward(model, inputs[idx].to(device)).double().cpu()
             for idx in torch.split(index, batch_size)]
    return torch.cat(parts)
