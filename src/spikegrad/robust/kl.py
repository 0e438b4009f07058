"""Diagonal Gaussians: reparameterised sampling, closed-form KL divergences and priors.

A diagonal Gaussian is given by its mean ``mu`` and log-variance ``log_var`` (natural log of
the variance, in squared latent units), both ``[B, K]``. KL divergences are in nats, one value
per sample (summed over the ``K`` latent dimensions).
"""

from __future__ import annotations

import abc
import math
from typing import Optional

import torch
from torch import Tensor, nn

from .._validate import check_int, check_tensor

__all__ = ["reparameterize", "kl_standard_normal", "kl_gaussians", "gaussian_log_prob",
           "Prior", "GaussianPrior", "MixturePrior"]


def _check_pair(mu, log_var, owner: str) -> None:
    check_tensor(mu, f"{owner}: mu")
    check_tensor(log_var, f"{owner}: log_var")
    if mu.dim() < 1 or mu.shape != log_var.shape:
        raise ValueError(f"{owner}: mu and log_var must have the same shape [B, K], got "
                         f"{list(mu.shape)} and {list(log_var.shape)}")


def reparameterize(mu: Tensor, log_var: Tensor,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """``z = mu + exp(log_var / 2) * e`` with ``e ~ N(0, I)``: a sample of ``N(mu, diag(var))``
    that is differentiable in ``mu`` and ``log_var`` (Kingma & Welling 2014).

    Shapes: ``mu, log_var [B, K] -> z [B, K]``.
    """
    _check_pair(mu, log_var, "reparameterize")
    e = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * log_var) * e


def kl_standard_normal(mu: Tensor, log_var: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(log_var))) || N(0, I))`` in nats, per sample:
    ``1/2 sum_k (exp(log_var_k) + mu_k^2 - 1 - log_var_k)``.

    Shapes: ``mu, log_var [B, K] -> [B]``.

    Example:
        >>> kl_standard_normal(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
        tensor([0.5000])
    """
    _check_pair(mu, log_var, "kl_standard_normal")
    return 0.5 * (torch.exp(log_var) + mu ** 2 - 1.0 - log_var).sum(-1)


def kl_gaussians(mu1: Tensor, log_var1: Tensor, mu2: Tensor, log_var2: Tensor) -> Tensor:
    """``KL(N(mu1, diag(var1)) || N(mu2, diag(var2)))`` in nats, per sample:
    ``1/2 sum_k (log_var2 - log_var1 + (var1 + (mu1 - mu2)^2) / var2 - 1)``.

    The second Gaussian broadcasts against the first (a prior ``[K]`` against ``[B, K]``).
    Not symmetric: the first argument is the one the expectation is taken under.

    Shapes: ``mu1, log_var1 [B, K]``, ``mu2, log_var2 [B, K] or [K] -> [B]``.
    """
    _check_pair(mu1, log_var1, "kl_gaussians")
    _check_pair(mu2, log_var2, "kl_gaussians")
    try:
        shape = torch.broadcast_shapes(mu1.shape, mu2.shape)
    except RuntimeError:
        shape = None
    if shape != mu1.shape:
        raise ValueError(f"kl_gaussians: the second Gaussian {list(mu2.shape)} must broadcast "
                         f"to the first {list(mu1.shape)}")
    ratio = torch.exp(log_var1 - log_var2) + (mu1 - mu2) ** 2 * torch.exp(-log_var2)
    return 0.5 * (log_var2 - log_var1 + ratio - 1.0).sum(-1)


def gaussian_log_prob(z: Tensor, mu: Tensor, log_var: Tensor) -> Tensor:
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last dimension, in nats.
    Shapes: broadcastable ``[..., K] -> [...]``."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mu) ** 2 * torch.exp(-log_var)).sum(-1)


class Prior(nn.Module, abc.ABC):
    """A prior ``r(z)`` over the latent code of a variational bottleneck.

    ``kl(mu, log_var, z)`` is ``KL(q(z|x) || r(z))`` per sample ``[B]``: closed form where it
    exists, else a one-sample Monte-Carlo estimate at the reparameterised ``z``. Its mean over
    the data is a variational upper bound on the mutual information ``I(X; Z)`` for any
    ``r`` (Alemi et al. 2017), tight when ``r`` is the aggregate posterior; a learned prior
    tightens it.
    """

    @abc.abstractmethod
    def kl(self, mu: Tensor, log_var: Tensor, z: Optional[Tensor] = None) -> Tensor:
        ...


class GaussianPrior(Prior):
    """A diagonal Gaussian prior ``N(m, diag(exp(s)))`` with trainable mean ``m`` and
    log-variance ``s`` (``learn=False``: fixed at the standard normal ``N(0, I)``).

    Shapes: ``mean, log_var [K]``; ``kl(mu, log_var) [B, K] -> [B]`` (closed form).
    """

    def __init__(self, latent_dim: int, learn: bool = True):
        super().__init__()
        k = check_int(latent_dim, "latent_dim", hint="the number of latent dimensions K")
        if learn:
            self.mean = nn.Parameter(torch.zeros(k))
            self.log_var = nn.Parameter(torch.zeros(k))
        else:  # buffers: saved and moved with the model, never trained
            self.register_buffer("mean", torch.zeros(k))
            self.register_buffer("log_var", torch.zeros(k))

    def kl(self, mu: Tensor, log_var: Tensor, z: Optional[Tensor] = None) -> Tensor:
        return kl_gaussians(mu, log_var, self.mean, self.log_var)


class MixturePrior(Prior):
    """A trainable mixture of ``components`` diagonal Gaussians (a VampPrior-like learned
    prior without pseudo-inputs). The KL to a mixture has no closed form, so :meth:`kl` is
    the one-sample Monte-Carlo estimate ``log q(z|x) - log r(z)`` at the reparameterised ``z``
    (unbiased; it can be negative for a single sample).

    Shapes: ``means, log_vars [M, K]``, ``logits [M]``; ``kl(mu, log_var, z) [B, K] -> [B]``.
    """

    def __init__(self, latent_dim: int, components: int = 10,
                 generator: Optional[torch.Generator] = None):
        super().__init__()
        k = check_int(latent_dim, "latent_dim", hint="the number of latent dimensions K")
        m = check_int(components, "components", hint="the number of mixture components")
        # spread the means so that the components do not start identical
        self.means = nn.Parameter(torch.randn(m, k, generator=generator))
        self.log_vars = nn.Parameter(torch.zeros(m, k))
        self.logits = nn.Parameter(torch.zeros(m))

    def log_prob(self, z: Tensor) -> Tensor:
        """``log r(z)`` in nats. Shapes: ``z [B, K] -> [B]``."""
        per_component = gaussian_log_prob(z[:, None, :], self.means, self.log_vars)  # [B, M]
        return torch.logsumexp(per_component + torch.log_softmax(self.logits, 0), dim=1)

    def kl(self, mu: Tensor, log_var: Tensor, z: Optional[Tensor] = None) -> Tensor:
        if z is None:
            raise ValueError("MixturePrior.kl needs the reparameterised sample z [B, K] (the "
                             "KL to a mixture is estimated at z); pass z=reparameterize(mu, "
                             "log_var)")
        return gaussian_log_prob(z, mu, log_var) - self.log_prob(z)
