"""The conversion app: a tiny run end to end, its resume after a kill at any stage, the
one-pass evaluation over T, config errors."""

import json

import pytest
import torch

from spikegrad import convert as sgconvert
from spikegrad.apps import conversion as app
from spikegrad.apps.config import ConfigError, apply_overrides
from spikegrad.apps.conversion.ann import build_ann
from spikegrad.apps.conversion.measure import over_time
from spikegrad.apps.setups.vision import load_data
from spikegrad.train import Trainer
from spikegrad.train.checkpoint import list_checkpoints

TINY = dict(dataset="digits", arch="mlp", epochs=3, steps="1,4,16", direct_steps="2",
            hybrid_epochs=1, calibration=200, hidden=32, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return app.run(app.Config(**TINY), tmp_path_factory.mktemp("conversion") / "run")


def test_tiny_run_writes_every_method_at_every_step(tiny):
    res = tiny
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


class _Killed(BaseException):
    """Not an Exception: nothing in the run may catch the simulated kill."""


def test_a_run_killed_after_any_checkpoint_resumes_to_the_uninterrupted_numbers(
        tiny, tmp_path, monkeypatch):
    """Killed right after the 3rd checkpoint (the ANN's last: the hybrid has not started),
    then after 1 more (the hybrid's), 2 (mid QCFS ANN), 2 (the QCFS ANN's last and the direct
    net's first): every resume continues from the checkpoints and ends with the metrics and
    curves of the run that was never stopped."""
    save = Trainer._save
    saves = {"left": 0}

    def save_then_die(self, *a, **k):
        path = save(self, *a, **k)
        saves["left"] -= 1
        if saves["left"] == 0:
            raise _Killed(path)
        return path

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    out = tmp_path / "killed"
    for i, n in enumerate((3, 1, 2, 2)):
        saves["left"] = n
        with pytest.raises(_Killed):
            app.run(app.Config(**TINY), out, resume=i > 0)
        assert not (out / "metrics.json").exists()
    ckpt = out / "checkpoints"
    assert [e for e, _ in list_checkpoints(ckpt / "qcfs_ann")] == [2, 3]
    assert [e for e, _ in list_checkpoints(ckpt / "direct_T2")] == [1]
    saves["left"] = -1  # no more kills
    got = app.run(app.Config(**TINY), out, resume=True).metrics
    assert saves["left"] == -3  # only the direct net's epochs 2 and 3 trained: nothing again
    want = tiny.metrics
    assert set(got) == set(want)
    for key, value in want.items():
        if "seconds" not in key:  # times, e.g. direct_train_seconds_T2
            assert got[key] == value, key
    assert got["ann_train_seconds"] > 0 and got["direct_train_seconds_T2"] > 0
    assert (out / "curves.json").read_text() == (tiny.out_dir / "curves.json").read_text()


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
