import json

import pytest
import torch

from spikegrad.apps import coding
from spikegrad.apps.config import ConfigError, apply_overrides

TINY = ["epochs=2", "n_train=150", "n_val=60", "n_test=60", "hidden=16", "n_steps=20",
        "n_code=10", "rate_copies=2", "profile_samples=40", "progress=false"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("coding")
    return coding.run(apply_overrides(coding.Config(), TINY), out)


def test_run_writes_metrics_profile_figure_and_report(tiny_run):
    m, out = tiny_run.metrics, tiny_run.out_dir
    for loss in ("rate", "temporal"):
        for key in ("test_accuracy", "val_accuracy", "spikes_per_sample",
                    "decision_latency_steps", "grad_share_after_first_spike"):
            assert f"{loss}_{key}" in m
        assert 0.0 <= m[f"{loss}_test_accuracy"] <= 1.0
        assert 0.0 <= m[f"{loss}_decision_latency_steps"] <= 20.0
    assert json.loads((out / "metrics.json").read_text()) == m
    prof = json.loads((out / "error_profile.json").read_text())
    assert set(prof["per_step"]) == {"rate", "temporal"}
    assert all(len(p) == 20 for p in prof["per_step"].values())
    # aligned to the first spike: lags -20..20; the temporal loss sends nothing at lags > 0
    lags = prof["aligned_to_first_spike"]["temporal"]
    assert len(lags) == 41
    assert all(v == 0.0 for v in lags[21:] if v == v)  # NaN (no neuron at that lag) skipped
    for f in ("report.md", "error_profile.png", "config.json", "rate/log.jsonl",
              "temporal/log.jsonl"):
        assert (out / f).stat().st_size > 0
    assert {h["loss"] for h in tiny_run.history} == {"rate", "temporal"}


def test_temporal_error_signal_is_exactly_zero_after_first_spikes(tiny_run):
    m = tiny_run.metrics
    assert m["temporal_decision_latency_steps"] < 20  # some output neurons fire: not vacuous
    assert m["temporal_grad_share_after_first_spike"] == 0.0
    assert m["temporal_grad_max_after_first_spike"] == 0.0
    # the rate loss keeps sending error after a neuron's first spike (if any neuron fired)
    assert m["rate_grad_share_after_first_spike"] > 0.0


def test_rate_error_profile_is_dense_in_time():
    # rate loss on output spikes: dL/dz_t = (r - y) / (T B) at every step, so |dL/du_t| > 0
    # wherever phi(u_t - theta) > 0, i.e. everywhere for fast_sigmoid (exact values of the
    # loss gradients are checked in tests/test_losses.py)
    cfg = coding.validate(apply_overrides(coding.Config(), TINY + ["losses=rate"]))
    data = coding.load_data(cfg)
    torch.manual_seed(0)
    model = coding.build_model(cfg, coding.n_inputs(cfg, "rate"), 3)
    prof, _, share = coding.error_profile(cfg, "rate", model, data.test,
                                          coding.make_encoder(cfg, "rate"), seed=0)
    assert prof.shape == (20,) and bool((prof > 0).all())  # dense in time


def test_predict_rules():
    zs = torch.zeros(5, 2, 3)
    zs[3, 0, 0] = zs[4, 0, 0] = 1  # sample 0: neuron 0 late but twice
    zs[1, 0, 1] = 1  # neuron 1 first
    zs[2, 1, 0] = zs[2, 1, 2] = zs[3, 1, 2] = 1  # sample 1: tie at step 2, neuron 2 more spikes
    assert coding.predict("rate", zs).tolist() == [0, 2]
    assert coding.predict("temporal", zs).tolist() == [1, 2]


@pytest.mark.parametrize("override, match", [
    ("losses=rate,spike", "losses must be a comma-separated subset of rate, temporal"),
    ("dataset=mnist", "dataset must be one of yinyang, randman"),
    ("n_code=100", r"n_code \(100\) must not exceed n_steps"),
    ("rate_on=0", "need 0 <= rate_off < rate_on <= 1"),
    ("count_l1=-1", "count_l1 must be >= 0"),
    ("ttfs_tau=0", "ttfs_tau must be > 0"),
])
def test_bad_config(override, match):
    with pytest.raises(ConfigError, match=match):
        coding.validate(apply_overrides(coding.Config(), [override]))


def test_randman_option_runs(tmp_path):
    cfg = apply_overrides(coding.Config(), ["dataset=randman", "randman_classes=3",
                                            "randman_samples=40", "epochs=1", "hidden=8",
                                            "n_steps=20", "n_code=10", "profile_samples=10",
                                            "progress=false"])
    r = coding.run(cfg, tmp_path)
    assert r.metrics["temporal_grad_share_after_first_spike"] == 0.0


@pytest.mark.slow
def test_yinyang_floors_with_the_default_config(tmp_path):
    m = coding.run(apply_overrides(coding.Config(), ["progress=false"]), tmp_path).metrics
    assert m["rate_test_accuracy"] >= 0.95
    assert m["temporal_test_accuracy"] >= 0.93
    assert m["temporal_spikes_per_sample"] < m["rate_spikes_per_sample"]
    assert m["temporal_grad_share_after_first_spike"] == 0.0
