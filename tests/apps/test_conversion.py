"""The conversion app: a tiny run end to end, the one-pass evaluation over T, config errors."""

import json

import pytest
import torch

from spikegrad import convert as sgconvert
from spikegrad.apps import conversion as app
from spikegrad.apps.config import ConfigError, apply_overrides
from spikegrad.apps.conversion.ann import build_ann
from spikegrad.apps.conversion.measure import over_time
from spikegrad.apps.setups.vision import load_data

TINY = dict(dataset="digits", arch="mlp", epochs=3, steps="1,4,16", direct_steps="2",
            hybrid_epochs=1, calibration=200, hidden=32, progress=False)


def test_tiny_run_writes_every_method_at_every_step(tmp_path):
    res = app.run(app.Config(**TINY), tmp_path / "run")
    m = res.metrics
    assert m["ann_test_accuracy"] > 0.8
    for name in ("plain", "qcfs", "hybrid"):
        for T in (1, 4, 16):
            assert 0 <= m[f"{name}_accuracy_T{T}"] <= 1
            assert m[f"{name}_synops_T{T}"] > 0
        # costs accumulate with T: a longer run has done everything a shorter one did
        assert m[f"{name}_synops_T16"] > m[f"{name}_synops_T4"] > m[f"{name}_synops_T1"]
        assert m[f"{name}_spikes_T16"] >= m[f"{name}_spikes_T4"]
    assert "direct_accuracy_T2" in m and "direct_accuracy_T4" not in m
    # a converted net approaches its ANN as T grows
    assert m["plain_accuracy_T16"] >= m["plain_accuracy_T1"]
    saved = json.loads((res.out_dir / "metrics.json").read_text())
    assert saved["target_accuracy"] == pytest.approx(m["ann_test_accuracy"] - 0.01)
    rows = json.loads((res.out_dir / "curves.json").read_text())
    assert {(r["method"], r["T"]) for r in rows} >= {("plain", 16), ("direct", 2)}
    report = (res.out_dir / "report.md").read_text()
    for section in ("Accuracy against T", "Trade-off at equal accuracy",
                    "Firing rates of the converted ReLU net"):
        assert section in report
    for f in ("accuracy.png", "rates.png"):
        assert (res.out_dir / f).stat().st_size > 0


def test_one_pass_over_time_equals_separate_runs():
    """The prediction and costs at T read from the longest run equal a run of T steps."""
    c = app.validate(app.Config(**TINY))
    data = load_data(c)
    torch.manual_seed(0)
    ann = build_ann(c, data.n_in, data.n_classes, torch.nn.ReLU).eval()
    snn = sgconvert.convert(ann, data.train.tensors[0][:100])
    x, y = data.test.tensors
    sub = torch.utils.data.TensorDataset(x[:60], y[:60])
    both = over_time(snn, sub, [3, 9], batch_size=25)
    for T in (3, 9):
        alone = over_time(snn, sub, [T], batch_size=60)[T]
        for key in ("accuracy", "spikes", "synops"):
            assert both[T][key] == pytest.approx(alone[key], rel=1e-9), (T, key)


@pytest.mark.parametrize("override, match", [
    ("dataset=cifar", "dataset must be one of digits, mnist1d"),
    ("methods=plain,magic", "methods must be a comma-separated list"),
    ("steps=4,0", "steps must be a comma-separated list of ints >= 1"),
    ("percentile=0", "percentile must be in"),
    ("max_pool=min", "max_pool must be gate or avg"),
    ("encoder=rate", "encoder must be 'current'"),
])
def test_bad_config_names_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        app.validate(apply_overrides(app.Config(), [override]))
