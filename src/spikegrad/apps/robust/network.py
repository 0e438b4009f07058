"""The robust app's models and data: the spiking classifier every objective trains (a plain
readout or a variational code), its ANN twin, the Trainer objective of each robust objective,
and the digits as 8x8 images."""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import TensorDataset

from ... import nn, robust
from ...train import ObjectiveOutput
from ..datasets import Data, load_data
from .config import VIB_OBJECTIVES, Config

__all__ = ["IMAGE", "load_images", "spiking_body", "build_model", "snn_classifier",
           "build_ann", "make_objective", "code_kl"]

#: digits as the attacks see them: one channel of 8x8 pixels in [0, 1] (torchattacks' APGD
#: and AutoAttack take image-shaped batches only)
IMAGE = (1, 8, 8)


def load_images(c: Config) -> Data:
    """The classification set-up's digits split (stratified 75/25 from the seed, pixels / 16),
    each sample reshaped to ``[1, 8, 8]``."""
    data = load_data(c)

    def images(ds: TensorDataset) -> TensorDataset:
        x, y = ds.tensors
        return TensorDataset(x.view(-1, *IMAGE), y)             # [N, 64] -> [N, 1, 8, 8]
    return Data(images(data.train), None, images(data.test), data.n_in, data.n_classes)


def spiking_body(c: Config, n_out: int) -> nn.Sequential:
    """``[T, B, 1, 8, 8] -> [T, B, n_out]``: flatten, ``Linear(64, hidden)``, LIF (threshold
    1, reset by subtraction, ``c.surrogate`` with slope ``c.surrogate_beta``),
    ``Linear(hidden, n_out)`` and a non-spiking leaky-integrator readout."""
    dt = c.dt_ms * 1e-3
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(IMAGE[1] * IMAGE[2], c.hidden),
        nn.LIF(c.hidden, tau_mem=c.tau_mem_ms * 1e-3, dt=dt, surrogate=c.surrogate,
               beta=c.surrogate_beta),
        nn.Linear(c.hidden, n_out),
        nn.LI(n_out, tau_mem=c.tau_out_ms * 1e-3, dt=dt))


def build_model(c: Config, objective: str, n_classes: int) -> torch.nn.Module:
    """The model ``x [B, 1, 8, 8] -> logits [B, C]`` an objective trains.

    ``standard``, ``pgd_at``, ``trades``: a :class:`~spikegrad.robust.SNNClassifier` whose
    logits are the readout membranes' mean over time. ``vib``, ``robust_ib``: a
    :class:`~spikegrad.robust.VIBClassifier` whose encoder is the same spiking network with
    ``code_neurons`` readout neurons; the mean and standard deviation over time of their
    membranes give ``q(z|x)`` (:class:`~spikegrad.robust.GaussianHead`, ``latent_dim``), a
    linear decoder ``p(y|z)``, and the prior ``N(0, I)`` or a learned diagonal Gaussian.
    Uses the global RNG for the initial weights and, while training, for the encoder."""
    if objective not in VIB_OBJECTIVES:
        return robust.SNNClassifier(spiking_body(c, n_classes), c.encoder, c.n_steps,
                                    readout="mean_membrane")
    encoder = robust.SNNClassifier(spiking_body(c, c.code_neurons), c.encoder, c.n_steps,
                                   readout="membrane_stats")
    head = robust.GaussianHead(2 * c.code_neurons, c.latent_dim, log_var_init=c.log_var_init)
    prior = robust.GaussianPrior(c.latent_dim) if c.prior == "learned" else None
    return robust.VIBClassifier(encoder, head, torch.nn.Linear(c.latent_dim, n_classes),
                                prior=prior)


def snn_classifier(model: torch.nn.Module) -> robust.SNNClassifier:
    """The :class:`~spikegrad.robust.SNNClassifier` inside a model (itself, or a VIB's
    encoder)."""
    return model.encoder if isinstance(model, robust.VIBClassifier) else model


def build_ann(c: Config, n_classes: int) -> torch.nn.Sequential:
    """The ANN twin: ``Flatten, Linear(64, hidden), ReLU, Linear(hidden, C)``, the spiking
    network's weights with ReLU units in place of the LIF neurons and readout."""
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(IMAGE[1] * IMAGE[2], c.hidden),
                               torch.nn.ReLU(), torch.nn.Linear(c.hidden, n_classes))


def make_objective(c: Config, objective: str):
    """The Trainer objective of ``objective`` (a :mod:`spikegrad.robust` objective wrapped
    into :class:`~spikegrad.train.ObjectiveOutput`). The inner maximisations draw their random
    starts from the global RNG, which the Trainer's checkpoints hold, so a resumed training
    draws the same starts."""
    steps = dict(steps=c.train_steps)
    fn = {"standard": lambda: robust.standard(),
          "pgd_at": lambda: robust.pgd_at(c.train_eps, **steps),
          "trades": lambda: robust.trades(c.trades_beta, c.train_eps, **steps),
          "vib": lambda: robust.vib(c.vib_beta),
          "robust_ib": lambda: robust.robust_ib(c.rib_beta, c.rib_lambda, c.train_eps,
                                                **steps)}[objective]()

    def wrapped(model, x, y, state):
        return ObjectiveOutput(*fn(model, x, y, state))
    return wrapped


@torch.no_grad()
def code_kl(model: robust.VIBClassifier, x: torch.Tensor, batch_size: Optional[int] = 500
            ) -> float:
    """The estimate of ``I(X; Z)`` on inputs ``x``: the mean of ``KL(q(z|x) || r(z))`` in nats
    (an upper bound on the mutual information), in eval mode, with the encoder's current
    generator."""
    total, was_training = 0.0, model.training
    model.eval()
    for chunk in x.split(batch_size or len(x)):
        mu, log_var = model.encode(chunk)
        kl = (robust.kl_standard_normal(mu, log_var) if model.prior is None
              else model.prior.kl(mu, log_var))
        total += float(kl.sum())
    model.train(was_training)
    return total / len(x)
