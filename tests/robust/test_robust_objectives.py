"""Robust Trainer objectives: standard, PGD-AT, TRADES, VIB and robust IB."""

import pytest
import torch
import torch.nn.functional as F

from spikegrad.robust import (GaussianHead, GaussianPrior, ObjectiveResult, VIBClassifier, pgd,
                              pgd_at, robust_ib, standard, trades, vib)
from spikegrad.train import ObjectiveOutput, Trainer, make_optimizer
from spikegrad.train.objective import checked_output

from robust_models import blobs, classifier, trained


def _vib_model():
    return VIBClassifier(classifier(readout="membrane_stats"), GaussianHead(6, 4),
                         torch.nn.Linear(4, 3), prior=GaussianPrior(4),
                         generator=torch.Generator().manual_seed(0))


def _gen():
    return torch.Generator().manual_seed(0)


OBJECTIVES = {
    "standard": (standard, classifier),
    "pgd_at": (lambda: pgd_at(0.1, steps=2, generator=_gen()), classifier),
    "trades": (lambda: trades(6.0, 0.1, steps=2, generator=_gen()), classifier),
    "vib": (lambda: vib(1e-3), _vib_model),
    "robust_ib": (lambda: robust_ib(1e-3, 1.0, 0.1, steps=2, generator=_gen()), _vib_model),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_returns_a_trainable_output_the_trainer_accepts(name):
    make, build = OBJECTIVES[name]
    model = build().train()
    x, y = blobs(8)
    out = make()(model, x, y, None)
    assert isinstance(out, ObjectiveResult) and out.state is None
    assert out.loss.dim() == 0 and out.loss.requires_grad and torch.isfinite(out.loss)
    assert out.metrics["n"] == 8 and all(isinstance(v, float) for v in out.metrics.values())
    # field for field the Trainer's ObjectiveOutput
    checked_output(ObjectiveOutput(*out))
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.training  # the inner maximisation ran in eval mode and restored the mode


def test_pgd_at_trains_on_inputs_whose_ce_is_higher_than_the_clean_one():
    model = trained()
    x, y = blobs(24, seed=5)
    g = _gen()
    out = pgd_at(0.2, steps=5, generator=g)(model, x, y, None)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
    assert out.metrics["ce_adv"] > clean.item()
    # and it is the CE at the PGD point with the same random start
    adv = pgd(model, x, y, 0.2, steps=5, generator=_gen())
    with torch.no_grad():
        assert out.loss.item() == pytest.approx(F.cross_entropy(model(adv), y).item(),
                                                rel=1e-6)


def test_trades_inner_maximisation_moves_the_prediction():
    model = trained()
    x, y = blobs(12, seed=5)
    out = trades(1.0, 0.2, steps=5, generator=_gen())(model, x, y, None)
    assert out.metrics["kl"] > 0
    assert out.loss.item() == pytest.approx(out.metrics["ce"] + out.metrics["kl"], rel=1e-5)


def test_robust_ib_adds_lam_times_the_code_shift_and_lam_zero_is_vib():
    x, y = blobs(8)
    model = _vib_model().train()
    model.generator = torch.Generator().manual_seed(0)
    plain = vib(1e-2)(model, x, y, None)
    model.generator = torch.Generator().manual_seed(0)
    out = robust_ib(1e-2, 2.0, 0.2, steps=3, generator=_gen())(model, x, y, None)
    assert out.metrics["kl_adv"] > 0
    assert out.metrics["ce"] == pytest.approx(plain.metrics["ce"], rel=1e-6)
    assert out.loss.item() == pytest.approx(plain.loss.item() + 2.0 * out.metrics["kl_adv"],
                                            rel=1e-5)


def test_a_robust_objective_trains_with_the_trainer():
    model = classifier()
    x, y = blobs(16)
    objective = pgd_at(0.1, steps=2, generator=_gen())
    trainer = Trainer(model, make_optimizer("adam", model, lr=0.01),
                      lambda m, a, b, s: ObjectiveOutput(*objective(m, a, b, s)),
                      progress=False)
    history = trainer.fit([(x[:8], y[:8]), (x[8:], y[8:])], epochs=1)
    assert "train_acc_adv" in history[-1]


@pytest.mark.parametrize("make, name", [
    (lambda: pgd_at(0.0), "eps"), (lambda: pgd_at(0.1, steps=0), "steps"),
    (lambda: pgd_at(0.1, norm="l3"), "norm"), (lambda: trades(-1.0, 0.1), "beta"),
    (lambda: robust_ib(1e-3, -1.0), "lam"), (lambda: vib(-1e-3), "beta"),
])
def test_bad_objective_arguments_raise_value_error_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_robust_ib_needs_a_vib_model():
    x, y = blobs(4)
    with pytest.raises(TypeError, match="VIBClassifier"):
        robust_ib(1e-3, 1.0)(classifier(), x, y, None)
