"""FGSM, PGD (L-inf, L2, restarts, EOT) and robust accuracy through the surrogate."""

import pytest
import torch

from spikegrad.robust import (accuracy, fgsm, input_gradient, pgd, robust_accuracy, spsa,
                              transfer)

from robust_models import ann_twin, blobs, classifier, trained

# |adv - x| is computed in float32 from x + delta: one rounding of a value <= 1 (u = 6e-8)
ROUND = 2 * torch.finfo(torch.float32).eps


def _linf(adv, x):
    return (adv - x).abs().flatten(1).max(1).values


def _l2(adv, x):
    return (adv - x).flatten(1).norm(dim=1)


@pytest.mark.parametrize("attack", [
    lambda m, x, y: pgd(m, x, y, 0.0, steps=3),
    lambda m, x, y: pgd(m, x, y, 0.0, steps=3, norm="l2"),
    lambda m, x, y: pgd(m, x, y, 0.0, steps=2, restarts=2),
    lambda m, x, y: fgsm(m, x, y, 0.0),
    lambda m, x, y: spsa(m, x, y, 0.0, steps=2, samples=2),
])
def test_a_zero_budget_is_the_identity(attack):
    x, y = blobs(6)
    assert torch.equal(attack(classifier(), x, y), x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start, restarts", [(True, 1), (False, 1), (True, 2)])
def test_pgd_stays_in_the_eps_ball_and_the_valid_range(norm, random_start, restarts):
    x, y = blobs(12)
    x[0, 0], x[1, 1] = 0.0, 1.0  # inputs on the edges of the valid range
    eps = 0.3 if norm == "linf" else 0.8
    adv = pgd(classifier(), x, y, eps, steps=4, step_size=eps / 2, norm=norm,
              random_start=random_start, restarts=restarts,
              generator=torch.Generator().manual_seed(0))
    dist = _linf(adv, x) if norm == "linf" else _l2(adv, x)
    assert (dist <= eps * (1 + ROUND)).all()
    assert ((adv >= 0) & (adv <= 1)).all()
    assert (dist > 0).any()  # it did move


def test_fgsm_steps_by_eps_in_the_gradient_sign_direction_and_clamps():
    x, y = blobs(8)
    model = classifier()
    grad, _ = input_gradient(model, x, y)
    adv = fgsm(model, x, y, 0.1)
    assert torch.equal(adv, (x + 0.1 * grad.sign()).clamp(0, 1))
    assert (_linf(adv, x) <= 0.1 * (1 + ROUND)).all()
    wide = fgsm(model, x, y, 0.1, clamp=(-1.0, 2.0))
    assert torch.allclose(_linf(wide, x), torch.full((8,), 0.1))


def test_an_attack_lowers_the_accuracy_of_a_trained_model():
    model = trained()
    x, y = blobs(30, seed=5)
    clean = accuracy(model, x, y)
    assert clean >= 0.9
    g = torch.Generator().manual_seed(0)
    attacked = robust_accuracy(model, x, y, "pgd", eps=0.3, steps=10, generator=g)
    assert attacked <= clean - 0.5
    assert robust_accuracy(model, x, y, "fgsm", eps=0.3) < clean


def test_eot_with_one_sample_is_the_plain_gradient():
    x, y = blobs(6)
    a = classifier(encoder="rate", generator=torch.Generator().manual_seed(1))
    b = classifier(encoder="rate", generator=torch.Generator().manual_seed(1))
    g_eot, loss_eot = input_gradient(a, x, y, eot=1)
    g, loss = input_gradient(b, x, y)
    assert torch.equal(g_eot, g) and torch.equal(loss_eot, loss)


def test_eot_averages_the_gradient_over_encoder_samples():
    x, y = blobs(6)
    a = classifier(encoder="rate", generator=torch.Generator().manual_seed(2))
    b = classifier(encoder="rate", generator=torch.Generator().manual_seed(2))
    g_eot, _ = input_gradient(a, x, y, eot=4)
    singles = [input_gradient(b, x, y)[0] for _ in range(4)]  # the same four draws
    assert not torch.equal(singles[0], singles[1])  # the draws differ
    mean = torch.stack(singles).mean(0)
    # sum of four float32 gradients in two orders: a few roundings of the largest entry
    assert torch.allclose(g_eot, mean, rtol=0, atol=8 * ROUND * mean.abs().max().item())


def test_eot_pgd_on_a_rate_coded_model_stays_in_the_ball():
    x, y = blobs(6)
    model = classifier(encoder="rate", generator=torch.Generator().manual_seed(0))
    adv = pgd(model, x, y, 0.2, steps=3, eot=3)
    assert (_linf(adv, x) <= 0.2 * (1 + ROUND)).all() and ((adv >= 0) & (adv <= 1)).all()


def test_restarts_keep_per_sample_the_run_that_fools_the_model():
    model = trained()
    x, y = blobs(24, seed=5)
    g = torch.Generator().manual_seed(0)
    one = accuracy(model, pgd(model, x, y, 0.2, steps=3, generator=g), y)
    g = torch.Generator().manual_seed(0)
    three = accuracy(model, pgd(model, x, y, 0.2, steps=3, restarts=3, generator=g), y)
    # the first of the three runs is the single run (same generator), and later runs only
    # replace a sample's result where they fool the model or raise its loss
    assert three <= one


def test_transfer_crafts_on_the_source_and_scores_both_models():
    x, y = blobs(20, seed=5)
    result = transfer(ann_twin(), trained(), x, y, 0.3, steps=10)
    assert result.x_adv.shape == x.shape
    assert (_linf(result.x_adv, x) <= 0.3 * (1 + ROUND)).all()
    assert 0.0 <= result.source_accuracy <= 1.0 and 0.0 <= result.target_accuracy <= 1.0
    assert result.source_accuracy < 0.5  # white-box on the ANN


def test_a_callable_loss_must_return_one_value_per_sample():
    x, y = blobs(4)
    with pytest.raises(ValueError, match="one value per sample"):
        pgd(classifier(), x, y, 0.1, steps=1, loss=lambda out, t: out.sum())


@pytest.mark.parametrize("kw, name", [
    (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"), (dict(steps=0), "steps"),
    (dict(norm="l1"), "norm"), (dict(restarts=0), "restarts"), (dict(loss="hinge"), "loss"),
    (dict(clamp=(1, 0)), "clamp"), (dict(eot=0), "eot"), (dict(step_size=-1.0), "step_size"),
])
def test_bad_pgd_arguments_raise_value_error_naming_the_argument(kw, name):
    x, y = blobs(4)
    args = dict(eps=0.1, steps=1)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        pgd(classifier(), x, y, args.pop("eps"), **args)


def test_inputs_outside_the_valid_range_and_bad_labels_are_refused():
    x, y = blobs(4)
    with pytest.raises(ValueError, match="clamp"):
        pgd(classifier(), x + 2, y, 0.1)
    with pytest.raises(ValueError, match=r"y must have shape \[B\]"):
        fgsm(classifier(), x, y[:2], 0.1)
    with pytest.raises(ValueError, match="attack"):
        robust_accuracy(classifier(), x, y, "cw")
