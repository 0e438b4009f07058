"""SPSA (gradient-free) and the gradient-masking report."""

import pytest
import torch

from spikegrad.robust import accuracy, masking_report, pgd, spsa, spsa_gradient

from robust_models import ann_twin, blobs, classifier, trained

ROUND = 2 * torch.finfo(torch.float32).eps


def test_spsa_gradient_estimates_the_gradient_of_a_linear_loss():
    # for a linear loss the central difference is exact, so the estimate is
    # w + mean_k (v_k v_k^T - I) w: unbiased, with per-entry standard deviation
    # sqrt(sum_{j != i} w_j^2 / S); S = 4000 and d = 5 give < 0.05 at 5 sigma
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    model = lambda x: torch.stack([x @ w, torch.zeros(x.shape[0], dtype=x.dtype)], 1)
    x = torch.full((2, 5), 0.5, dtype=torch.float64)
    g = spsa_gradient(model, x, torch.zeros(2, dtype=torch.long), samples=4000,
                      perturbation=0.01, loss=lambda out, t: out[:, 0],
                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(g, w.expand(2, 5), atol=0.25)
    assert (g[:, 4] > 2.5).all() and (g[:, 1] < -1.5).all()


def test_spsa_stays_in_the_ball_and_the_valid_range_and_never_lowers_the_loss():
    x, y = blobs(8)
    model = trained()
    adv = spsa(model, x, y, 0.2, steps=10, samples=8, lr=0.05,
               generator=torch.Generator().manual_seed(0))
    assert ((adv - x).abs().max(1).values <= 0.2 * (1 + ROUND)).all()
    assert ((adv >= 0) & (adv <= 1)).all()

    def margin(m, x):
        z = m(x)
        true = z.gather(1, y[:, None])[:, 0]
        return z.scatter(1, y[:, None], -1e9).max(1).values - true

    with torch.no_grad():  # the best iterate is kept, and the clean input counts
        assert (margin(model, adv) >= margin(model, x)).all()


def test_spsa_finds_adversarial_examples_without_gradients():
    model = trained()
    x, y = blobs(12, seed=5)
    adv = spsa(model, x, y, 0.3, steps=20, samples=16, lr=0.05, perturbation=0.02,
               generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(adv).argmax(1) == y).float().mean() < (model(x).argmax(1) == y).float().mean()


def test_masking_report_returns_every_check_with_numbers():
    model = trained()
    x, y = blobs(18, seed=5)
    report = masking_report(model, x, y, 0.2, steps=(3, 8), restarts=(1, 2),
                            source_model=ann_twin(), spsa_subset=9,
                            spsa_kw=dict(steps=10, samples=8, lr=0.05),
                            generator=torch.Generator().manual_seed(0))
    assert {"n", "eps", "clean_accuracy", "chance", "steps", "restarts", "large_eps",
            "transfer", "spsa", "passed"} <= set(report)
    for check in ("steps", "restarts", "large_eps", "transfer", "spsa"):
        assert isinstance(report[check]["pass"], bool), check
    assert len(report["steps"]["accuracy"]) == 2 and len(report["restarts"]["accuracy"]) == 2
    for number in (report["large_eps"]["accuracy"], report["transfer"]["transfer"],
                   report["transfer"]["white_box"], report["spsa"]["spsa"],
                   report["spsa"]["pgd"], *report["steps"]["accuracy"]):
        assert 0.0 <= number <= 1.0
    assert report["chance"] == pytest.approx(1 / 3)
    assert report["transfer"]["tolerance"] == pytest.approx(1 / 18)
    for check in ("steps", "restarts"):
        r = report[check]
        flips = r["gained"] - r["lost"]   # the accuracies differ by exactly the net flips
        assert r["accuracy"][1] - r["accuracy"][0] == pytest.approx(flips / 18)
        assert r["pass"] == (r["p_value"] >= r["alpha"] == 0.01)
    # a smooth membrane readout on separable data: nothing masks the gradient here
    assert report["large_eps"]["pass"] and report["passed"]
    assert report["passed"] == all(report[c]["pass"] is not False for c in
                                   ("steps", "restarts", "large_eps", "transfer", "spsa"))


def test_the_steps_check_continues_the_weaker_pgd_from_the_same_start():
    """More steps means the weaker PGD run longer (same random start, same step), so random
    starts cannot make the longer attack look weaker; restarts draw fresh starts."""
    model = trained()
    x, y = blobs(18, seed=5)
    eps, step = 0.3, 2.5 * 0.3 / 2
    report = masking_report(model, x, y, eps, steps=(2, 6), restarts=(1, 3), spsa_subset=3,
                            spsa_kw=dict(steps=2, samples=2),
                            generator=torch.Generator().manual_seed(4))
    runs = []
    for n in (2, 6):
        adv = pgd(model, x, y, eps, steps=n, step_size=step,
                  generator=torch.Generator().manual_seed(4))
        runs.append(accuracy(model, adv, y))
    assert report["steps"]["accuracy"] == runs
    assert report["steps"]["step_size"] == report["restarts"]["step_size"] == step
    assert runs[1] < runs[0] < 1                # the check is not vacuous here
    g = torch.Generator().manual_seed(4)
    pgd(model, x, y, eps, steps=2, step_size=step, generator=g)   # the shared start's draws
    strongest = pgd(model, x, y, eps, steps=6, restarts=3, step_size=step, generator=g)
    assert report["restarts"]["accuracy"] == [runs[1], accuracy(model, strongest, y)]


@pytest.mark.parametrize("gained, lost, p_value", [(0, 0, 1.0), (2, 0, 0.25), (1, 3, 15 / 16),
                                                   (7, 0, 1 / 128), (8, 1, 10 / 512)])
def test_the_sign_test_p_value_is_the_binomial_tail(gained, lost, p_value):
    from spikegrad.robust.masking import _sign_test
    n = 40
    weak = torch.zeros(n, dtype=torch.bool)
    strong = torch.zeros(n, dtype=torch.bool)
    strong[:gained] = True                       # newly correct under the stronger attack
    weak[gained:gained + lost] = True            # newly fooled
    weak[30:], strong[30:] = True, True          # correct under both: not flips
    r = _sign_test(weak, strong, alpha=0.01)
    assert (r["gained"], r["lost"]) == (gained, lost)
    assert r["p_value"] == pytest.approx(p_value, rel=1e-12)
    assert r["pass"] == (p_value >= 0.01)        # 7 of 7 flips gained fails; 8 of 9 passes


def test_masking_report_skips_the_transfer_check_without_a_source():
    x, y = blobs(6)
    report = masking_report(classifier().eval(), x, y, 0.1, steps=(1, 2), restarts=(1, 2),
                            spsa_subset=3, spsa_kw=dict(steps=2, samples=2))
    assert report["transfer"]["pass"] is None and "source_model" in report["transfer"]["reason"]


@pytest.mark.parametrize("kw, name", [(dict(steps=(5, 5)), "steps"),
                                      (dict(restarts=(2,)), "restarts"),
                                      (dict(spsa_subset=0), "spsa_subset"),
                                      (dict(tolerance=-1), "tolerance"),
                                      (dict(alpha=1.5), "alpha"),
                                      (dict(random_start=False), "random_start")])
def test_bad_report_arguments_raise_value_error_naming_the_argument(kw, name):
    x, y = blobs(4)
    with pytest.raises(ValueError, match=name):
        masking_report(classifier(), x, y, 0.1, **kw)


def test_bad_spsa_arguments_raise_value_error_naming_the_argument():
    x, y = blobs(4)
    with pytest.raises(ValueError, match="perturbation"):
        spsa(classifier(), x, y, 0.1, perturbation=0.0)
    with pytest.raises(ValueError, match="samples"):
        spsa(classifier(), x, y, 0.1, samples=0)
