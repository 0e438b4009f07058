"""Variational information bottleneck for spiking encoders (Alemi et al. 2017).

An SNN encoder ``x -> features`` (readout membrane statistics or spike counts, e.g. an
:class:`~spikegrad.robust.SNNClassifier` with ``readout="membrane_stats"``) is followed by a
:class:`GaussianHead` giving ``q(z|x) = N(mu, diag(exp(log_var)))``; a decoder maps a
reparameterised sample ``z`` to logits ``p(y|z)``. The loss

    ``L = CE(p(y|z), y) + beta * KL(q(z|x) || r(z))``

trades prediction against compression. The batch mean of the KL term is the reported
estimate of ``I(X; Z)``: a variational *upper bound* on it (exact only when the prior ``r`` is
the aggregate posterior ``E_x q(z|x)``), in nats.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_real, check_tensor
from .kl import Prior, kl_standard_normal, reparameterize

__all__ = ["GaussianHead", "VIBClassifier", "VIBOutput", "vib_loss"]


class GaussianHead(nn.Module):
    """Features ``[B, F]`` -> ``(mu, log_var)`` of a diagonal Gaussian ``q(z|x)``, ``[B, K]``
    each, by one linear map to ``2K`` outputs.

    Args:
        in_features: F, the readout features (e.g. ``2C`` for membrane mean and std).
        latent_dim: K.
        log_var_init: bias of the log-variance outputs at initialisation (e.g. -4 starts
            with a nearly deterministic code, var = exp(-4)).
    """

    def __init__(self, in_features: int, latent_dim: int, *, log_var_init: float = 0.0):
        super().__init__()
        f = check_int(in_features, "in_features", hint="the number of readout features")
        self.latent_dim = check_int(latent_dim, "latent_dim", hint="the latent dimensions K")
        check_real(log_var_init, "log_var_init")
        self.linear = nn.Linear(f, 2 * self.latent_dim)
        with torch.no_grad():
            self.linear.bias[self.latent_dim:] += float(log_var_init)

    def forward(self, features: Tensor) -> Tuple[Tensor, Tensor]:
        """The parameters of ``q(z|x)`` for each sample.

        Args:
            features: the readout features ``[B, F]`` (per sample, no time axis).

        Returns:
            ``(mu, log_var)``, each ``[B, K]``: mean and natural-log variance of the
            diagonal Gaussian (the first and second half of one linear map's output).
        """
        check_tensor(features, "features")
        if features.dim() != 2 or features.shape[1] != self.linear.in_features:
            raise ValueError(f"GaussianHead: features must have shape [B, "
                             f"{self.linear.in_features}], got {list(features.shape)}")
        mu, log_var = self.linear(features).chunk(2, dim=-1)
        return mu, log_var


class VIBOutput(NamedTuple):
    """One pass of a :class:`VIBClassifier`: logits ``[B, C]``, ``mu``, ``log_var`` and the
    latent ``z`` used for the logits (``[B, K]`` each)."""

    logits: Tensor
    mu: Tensor
    log_var: Tensor
    z: Tensor


class VIBClassifier(nn.Module):
    """``x -> features -> q(z|x) -> z -> logits``: encoder, :class:`GaussianHead`, decoder.

    In training mode :meth:`forward` samples ``z`` by reparameterisation; in eval mode it uses
    the mean ``z = mu`` (deterministic predictions for evaluation and attacks).

    Args:
        encoder: module ``x [B, ...] -> features [B, F]`` (e.g. an SNNClassifier).
        head: :class:`GaussianHead` ``(F -> K)``.
        decoder: module ``z [B, K] -> logits [B, C]`` (e.g. ``nn.Linear(K, C)``).
        prior: a :class:`~spikegrad.robust.Prior` (trained with the model when learned), or
            None for the standard normal.
        generator: ``torch.Generator`` for the latent samples (None: global RNG).
    """

    def __init__(self, encoder: nn.Module, head: GaussianHead, decoder: nn.Module,
                 prior: Optional[Prior] = None, generator: Optional[torch.Generator] = None):
        super().__init__()
        for name, value, kind in (("encoder", encoder, nn.Module), ("head", head, GaussianHead),
                                  ("decoder", decoder, nn.Module)):
            if not isinstance(value, kind):
                raise TypeError(f"VIBClassifier: {name} must be a {kind.__name__}, got "
                                f"{type(value).__name__}")
        if prior is not None and not isinstance(prior, Prior):
            raise TypeError(f"VIBClassifier: prior must be a spikegrad.robust.Prior (e.g. "
                            f"GaussianPrior(K)) or None, got {type(prior).__name__}")
        self.encoder, self.head, self.decoder, self.prior = encoder, head, decoder, prior
        self.generator = generator

    def encode(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """``(mu, log_var)`` of ``q(z|x)``, ``[B, K]`` each."""
        return self.head(self.encoder(x))

    def decode(self, z: Tensor) -> Tensor:
        """Logits ``[B, C]`` of ``p(y|z)`` for latents ``z [B, K]``."""
        return self.decoder(z)

    def forward_all(self, x: Tensor, sample: Optional[bool] = None) -> VIBOutput:
        """Everything a VIB loss needs; ``sample`` defaults to ``self.training``."""
        mu, log_var = self.encode(x)
        sample = self.training if sample is None else sample
        z = reparameterize(mu, log_var, self.generator) if sample else mu
        return VIBOutput(self.decode(z), mu, log_var, z)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, C]`` for inputs ``x [B, ...]``."""
        return self.forward_all(x).logits


def vib_loss(logits: Tensor, y: Tensor, mu: Tensor, log_var: Tensor, beta: float,
             prior: Optional[Prior] = None, z: Optional[Tensor] = None
             ) -> Tuple[Tensor, Dict[str, Tensor]]:
    """``CE(logits, y) + beta * KL(q(z|x) || r(z))``, both averaged over the batch.

    Args:
        logits: ``[B, C]`` of ``p(y|z)``; y: labels ``[B]``.
        mu, log_var: ``q(z|x)``, ``[B, K]`` each.
        beta: weight of the KL term (>= 0; Alemi et al. use 1e-3 on MNIST).
        prior: a :class:`~spikegrad.robust.Prior`, or None for ``N(0, I)`` (closed form).
        z: the reparameterised sample (needed by priors without a closed-form KL).

    Returns:
        ``(loss, {"ce": ..., "kl": ...})``: scalar tensors; ``"kl"`` (nats, batch mean) is the
        estimate of ``I(X; Z)`` to report, an upper bound on it.
    """
    check_tensor(logits, "logits")
    check_real(beta, "beta", low=0.0, hint="the weight of the KL term, e.g. 1e-3")
    if logits.dim() != 2 or logits.shape[0] != mu.shape[0]:
        raise ValueError(f"logits must have shape [B, C] with B = {mu.shape[0]} (the batch of "
                         f"mu), got {list(logits.shape)}")
    if prior is not None and not isinstance(prior, Prior):
        raise TypeError(f"prior must be a spikegrad.robust.Prior or None, got "
                        f"{type(prior).__name__}")
    kl = kl_standard_normal(mu, log_var) if prior is None else prior.kl(mu, log_var, z)
    ce = F.cross_entropy(logits, y)
    kl = kl.mean()
    return ce + beta * kl, {"ce": ce, "kl": kl}
