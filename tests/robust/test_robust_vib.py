"""Gaussian KLs in closed form, priors, the VIB head and loss."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from spikegrad.robust import (GaussianHead, GaussianPrior, MixturePrior, VIBClassifier,
                              kl_gaussians, kl_standard_normal, reparameterize, vib_loss)

from robust_models import blobs, classifier


def _pairs(seed=0, shape=(5, 4)):
    g = torch.Generator().manual_seed(seed)
    r = lambda: torch.randn(shape, generator=g, dtype=torch.float64)
    return r(), r(), r(), r()


def test_kl_to_the_standard_normal_equals_the_closed_form_by_hand():
    # one dimension, mu = 1, var = e: 1/2 (e + 1 - 1 - 1) = (e - 1) / 2
    kl = kl_standard_normal(torch.tensor([[1.0]], dtype=torch.float64),
                            torch.tensor([[1.0]], dtype=torch.float64))
    assert kl.item() == pytest.approx((math.e - 1) / 2, rel=1e-15)
    # N(0, 1) to itself: 0; sums over the latent dimensions
    assert torch.equal(kl_standard_normal(torch.zeros(3, 2), torch.zeros(3, 2)), torch.zeros(3))
    kl = kl_standard_normal(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))
    assert kl.item() == pytest.approx(0.5 * (1 + 4))


def test_kl_between_gaussians_equals_the_closed_form_by_hand():
    # N(1, 4) || N(0, 1): 1/2 (log 1 - log 4 + (4 + 1) / 1 - 1) = 2 - log 2
    lv = lambda v: torch.tensor([[math.log(v)]], dtype=torch.float64)
    mu = lambda m: torch.tensor([[m]], dtype=torch.float64)
    assert kl_gaussians(mu(1.0), lv(4.0), mu(0.0), lv(1.0)).item() == pytest.approx(
        2 - math.log(2), rel=1e-14)
    # N(0, 1) || N(1, 4): 1/2 (log 4 + (1 + 1) / 4 - 1) = log 2 - 1/4
    assert kl_gaussians(mu(0.0), lv(1.0), mu(1.0), lv(4.0)).item() == pytest.approx(
        math.log(2) - 0.25, rel=1e-14)


def test_the_kls_equal_torch_distributions():
    mu1, lv1, mu2, lv2 = _pairs()
    q, r = Normal(mu1, torch.exp(0.5 * lv1)), Normal(mu2, torch.exp(0.5 * lv2))
    # float64, a sum of 4 terms of size ~exp(|lv|): a few ulps of the largest term
    assert torch.allclose(kl_gaussians(mu1, lv1, mu2, lv2), kl_divergence(q, r).sum(-1),
                          rtol=1e-12, atol=1e-12)
    std = Normal(torch.zeros_like(mu1), torch.ones_like(mu1))
    assert torch.allclose(kl_standard_normal(mu1, lv1), kl_divergence(q, std).sum(-1),
                          rtol=1e-12, atol=1e-12)
    assert torch.allclose(kl_gaussians(mu1, lv1, torch.zeros(4, dtype=torch.float64),
                                       torch.zeros(4, dtype=torch.float64)),
                          kl_standard_normal(mu1, lv1), rtol=1e-12, atol=1e-12)


def test_the_gaussian_prior_kl_is_closed_form_and_learns():
    mu1, lv1, _, _ = _pairs(1)
    prior = GaussianPrior(4).double()
    assert torch.allclose(prior.kl(mu1, lv1), kl_standard_normal(mu1, lv1), rtol=1e-14)
    assert sum(p.numel() for p in prior.parameters()) == 8
    assert list(GaussianPrior(4, learn=False).parameters()) == []


def test_the_mixture_prior_estimate_is_unbiased_for_one_component():
    # with one component the mixture is a Gaussian: the mean of the one-sample estimates
    # over n = 20000 draws is within 5 standard errors of the closed form
    prior = MixturePrior(2, components=1, generator=torch.Generator().manual_seed(0)).double()
    mu = torch.tensor([[0.3, -0.5]], dtype=torch.float64).expand(20000, 2)
    lv = torch.tensor([[-0.5, 0.2]], dtype=torch.float64).expand(20000, 2)
    z = reparameterize(mu, lv, torch.Generator().manual_seed(1))
    estimates = prior.kl(mu, lv, z)
    exact = kl_gaussians(mu[:1], lv[:1], prior.means, prior.log_vars)
    se = estimates.std() / math.sqrt(len(estimates))
    assert abs(estimates.mean() - exact[0]) < 5 * se
    with pytest.raises(ValueError, match="z"):
        prior.kl(mu, lv)


def test_reparameterised_samples_have_the_right_moments_and_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    lv = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    z = reparameterize(mu.expand(40000, 2), lv.expand(40000, 2),
                       torch.Generator().manual_seed(0))
    # standard errors 1/200 and 2/200 for the means: 5 sigma
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([1.0, 2.0]), atol=0.05)
    z.sum().backward()
    assert torch.equal(mu.grad, torch.full((1, 2), 40000.0))


def _vib_model(prior=None):
    encoder = classifier(readout="membrane_stats")
    return VIBClassifier(encoder, GaussianHead(6, 4), torch.nn.Linear(4, 3), prior=prior,
                         generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("prior", [None, "gaussian", "mixture"])
def test_vib_loss_is_ce_plus_beta_kl_with_finite_gradients(prior):
    prior = {None: None, "gaussian": GaussianPrior(4),
             "mixture": MixturePrior(4, 3, generator=torch.Generator().manual_seed(0))}[prior]
    model = _vib_model(prior).train()
    x, y = blobs(8)
    out = model.forward_all(x)
    assert out.logits.shape == (8, 3) and out.mu.shape == out.log_var.shape == (8, 4)
    loss, parts = vib_loss(out.logits, y, out.mu, out.log_var, 1e-2, prior=prior, z=out.z)
    assert set(parts) == {"ce", "kl"}
    assert loss.item() == pytest.approx((parts["ce"] + 1e-2 * parts["kl"]).item(), rel=1e-6)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if prior is not None:
        assert all(p.grad is not None for p in prior.parameters())


def test_vib_uses_the_mean_in_eval_mode_and_samples_in_training():
    model = _vib_model()
    x, _ = blobs(5)
    model.eval()
    mu, _ = model.encode(x)
    assert torch.equal(model(x), model.decode(mu))
    model.train()
    assert not torch.equal(model(x), model.decode(mu))


def test_bad_vib_arguments_raise():
    x, y = blobs(4)
    mu, lv = torch.zeros(4, 2), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="beta"):
        vib_loss(torch.zeros(4, 3), y, mu, lv, -1.0)
    with pytest.raises(ValueError, match="mu and log_var"):
        kl_standard_normal(mu, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="latent_dim"):
        GaussianHead(6, 0)
    with pytest.raises(ValueError, match="features"):
        GaussianHead(6, 2)(torch.zeros(4, 5))
    with pytest.raises(TypeError, match="prior"):
        _vib_model(prior=torch.nn.Linear(2, 2))
