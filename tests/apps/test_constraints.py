import json

import pytest

from spikegrad.apps import constraints
from spikegrad.apps.config import ConfigError, apply_overrides

TINY = ["epochs=1", "threshold_epochs=1", "threshold_seeds=1", "n_train=120", "n_eval=100", "n_steps=16",
        "rate_copies=2", "hidden=12", "sparsity_weights=0,0.01", "rm_epochs=1",
        "rm_train=100", "rm_steps=20", "rm_classes=3", "rm_samples=60", "rm_hidden=8",
        "surrogates=fast_sigmoid,atan", "betas=1,10"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("constraints")
    cfg = apply_overrides(constraints.Config(), TINY)
    return cfg, constraints.run(cfg, out)


def test_run_writes_tables_figures_and_metrics(tiny):
    _, r = tiny
    m, out = r.metrics, r.out_dir
    for key in ("sparsity_spike_span", "threshold_recovery_gap",
                "threshold_silent_trainable_spikes_before", "surrogate_fast_sigmoid_beta_low",
                "surrogate_atan_beta_high", "surrogate_fast_sigmoid_default_beta_on_plateau"):
        assert key in m
    res = json.loads((out / "results.json").read_text())
    assert [row["weight"] for row in res["sparsity"]] == [0.0, 0.01]
    assert {(row["surrogate"], row["beta"]) for row in res["surrogate"]} == {
        ("fast_sigmoid", 1.0), ("fast_sigmoid", 10.0), ("atan", 1.0), ("atan", 10.0)}
    th = res["threshold"]
    assert th["silent_fixed"]["threshold_mean"] == pytest.approx(3.0)  # fixed stays put
    assert th["silent_fixed_no_homeostasis"]["threshold_mean"] == pytest.approx(3.0)
    assert m["threshold_trainable_gain_without_homeostasis"] == pytest.approx(
        th["silent_trainable_no_homeostasis"]["test_accuracy"]
        - th["silent_fixed_no_homeostasis"]["test_accuracy"])
    assert len(th["silent_trainable"]["per_seed"][0]["thresholds_after"]) == 12
    # the silent start fires far less than the well-initialised one
    assert (th["silent_fixed"]["spikes_per_sample_before"]
            < 0.25 * th["well_fixed"]["spikes_per_sample_before"])
    report = (out / "report.md").read_text()
    assert "beta within 2 points of best" in report
    for f in ("sparsity.png", "thresholds.png", "surrogate.png", "metrics.json"):
        assert (out / f).stat().st_size > 0


def test_threshold_variants_differ_in_one_factor_each():
    c = constraints.Config()
    v = constraints.threshold_variants(c)
    assert v["silent_fixed"]["rate_low_weight"] == c.homeostasis_weight > 0
    assert v["silent_fixed_no_homeostasis"]["rate_low_weight"] == 0.0
    for name in ("silent_fixed", "silent_trainable"):
        with_h, without = v[name], v[name + "_no_homeostasis"]
        assert {k for k in with_h if with_h[k] != without.get(k)} == {"rate_low_weight"}
    trained, fixed = v["silent_trainable"], v["silent_fixed"]
    assert {k for k in trained if trained[k] != fixed.get(k)} == {"learn_threshold",
                                                                  "threshold_lr"}


def test_resume_reuses_finished_points(tiny):
    cfg, r = tiny
    point = r.out_dir / "points" / "surrogate_atan_10_seed0.json"
    row = json.loads(point.read_text())
    row["test_accuracy"] = 0.987654
    point.write_text(json.dumps(row))
    again = constraints.run(apply_overrides(cfg, ["parts=surrogate"]), r.out_dir, resume=True)
    assert again.metrics["surrogate_atan_best_accuracy"] == 0.987654


def test_plateau_hand_values():
    rows = [dict(surrogate="s", beta=b, test_accuracy=a)
            for b, a in [(0.1, 0.50), (1, 0.80), (10, 0.90), (100, 0.885), (1000, 0.70)]]
    p = constraints.plateau(rows, "s")
    assert (p["best"], p["best_beta"], p["beta_low"], p["beta_high"], p["contiguous"]) \
        == (0.90, 10, 10, 100, True)


@pytest.mark.parametrize("override, match", [
    ("parts=sparsity,noise", "parts must be a comma-separated subset"),
    ("surrogates=boxcar", "surrogates must be a comma-separated subset"),
    ("betas=1,-2", "betas must be > 0"),
    ("betas=a", "betas must be comma-separated numbers"),
    ("seeds=0", "seeds must be >= 1"),
    ("threshold_seeds=0", "threshold_seeds must be >= 1"),
    ("silent_factor=0", "silent_factor must be > 0"),
    ("sparsity_penalty=l3", "sparsity_penalty must be 'l1' or 'l2'"),
    ("rm_classes=1", "rm_classes must be >= 2"),
])
def test_bad_config(override, match):
    with pytest.raises(ConfigError, match=match):
        constraints.validate(apply_overrides(constraints.Config(), [override]))


@pytest.mark.slow
def test_issue_floors_with_the_default_config(tmp_path):
    m = constraints.run(constraints.Config(), tmp_path).metrics
    assert m["sparsity_spike_span"] >= 5.0
    assert m["sparsity_drop_at_half_spikes_best"] <= 0.02
    assert m["threshold_recovery_gap"] <= 0.02
    assert m["surrogate_fast_sigmoid_default_beta_on_plateau"] == 1.0
    for name in ("fast_sigmoid", "sigmoid", "atan"):
        # too broad a surrogate learns clearly worse: the sweep is not flat
        assert m[f"surrogate_{name}_worst_accuracy"] <= m[f"surrogate_{name}_best_accuracy"] - 0.05
