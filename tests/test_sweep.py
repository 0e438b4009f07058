"""``spikegrad sweep``: several seeds, each a normal run, summarised; resumable."""

import json
import statistics

import pytest

from spikegrad.apps import sweep
from spikegrad.apps.config import ConfigError
from spikegrad.cli import main
from spikegrad.train import Trainer

TINY = ["max_train=64", "hidden=8", "epochs=1", "batch_size=32"]


def _sweep(out, seeds="2", *extra):
    argv = ["sweep", "classification", "--seeds", seeds, "--out", str(out), *extra]
    for s in TINY:
        argv += ["--set", s]
    return main(argv)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    assert _sweep(out) == 0
    return out


def test_each_seed_is_a_normal_run_and_the_summary_has_the_statistics(swept, tmp_path):
    summary = json.loads((swept / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    acc = [json.loads((swept / f"seed{s}" / "metrics.json").read_text())["test_accuracy"]
           for s in (0, 1)]
    st = summary["stats"]["test_accuracy"]
    assert st["mean"] == pytest.approx(statistics.fmean(acc))
    assert st["sd"] == pytest.approx(statistics.stdev(acc))
    assert (st["min"], st["max"], st["n"]) == (min(acc), max(acc), 2)
    assert st["median"] == pytest.approx(statistics.median(acc))
    for name in ("summary.md", "summary.png", "sweep.json", "seed1/report.md"):
        assert (swept / name).exists(), name
    assert "| test_accuracy |" in (swept / "summary.md").read_text()
    # seed 1 of the sweep is the run `spikegrad run classification --set seed=1` gives
    single = tmp_path / "single"
    argv = ["run", "classification", "--out", str(single), "--quiet", "--set", "seed=1"]
    for s in TINY:
        argv += ["--set", s]
    assert main(argv) == 0
    assert json.loads((single / "metrics.json").read_text())["test_accuracy"] == acc[1]


def test_resume_skips_finished_seeds_and_continues_the_others(swept, monkeypatch, capsys):
    before = (swept / "seed1" / "metrics.json").read_text()
    calls = []
    fit = Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, *a, **k: calls.append(k) or fit(
        self, *a, **k))
    assert _sweep(swept, "2", "--resume") == 0
    assert calls == []  # both seeds finished: nothing trains
    (swept / "seed1" / "metrics.json").unlink()  # as if killed after its last checkpoint
    assert _sweep(swept, "2", "--resume") == 0
    assert [k.get("resume") for k in calls] == ["latest"]  # seed 1 only, from its checkpoint
    after = json.loads((swept / "seed1" / "metrics.json").read_text())
    assert after["test_accuracy"] == json.loads(before)["test_accuracy"]
    out = capsys.readouterr().out
    assert "classification sweep 2/2 seed 1 done test_accuracy" in out
    # a different config is not the same sweep
    assert main(["sweep", "classification", "--seeds", "2", "--out", str(swept), "--resume",
                 "--set", "hidden=9"]) == 2
    err = capsys.readouterr().err
    assert "holds a sweep of classification with another config" in err
    assert "hidden 8 -> 9" in err and "epochs 1 -> 30" in err  # the preset: 30
    # the same config in another order is the same sweep
    assert main(["sweep", "classification", "--seeds", "2", "--out", str(swept), "--resume",
                 *[a for s in reversed(TINY) for a in ("--set", s)]]) == 0


def test_progress_lines_and_parallel_jobs(tmp_path, capsys):
    out = tmp_path / "p"
    assert _sweep(out, "0,3", "--jobs", "2") == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.startswith("classification sweep ")
             and " done" in line]
    assert len(lines) == 2 and "ETA" in lines[0] and "elapsed" in lines[1]
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0, 3]
    assert (out / "seed3" / "metrics.json").exists()


def test_parse_seeds():
    assert sweep.parse_seeds("3") == [0, 1, 2]
    assert sweep.parse_seeds("4,0, 7") == [4, 0, 7]
    for bad in ("0", "-1", "x", "1,1", ",", "2,-3", ""):
        with pytest.raises(ConfigError, match="--seeds"):
            sweep.parse_seeds(bad)
