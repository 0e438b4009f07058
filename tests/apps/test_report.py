import dataclasses
import json

import numpy
import pytest
import torch

from spikegrad.apps.report import RunDir
from spikegrad.cli import main

QUICK = ["--set", "max_train=96", "--set", "hidden=12", "--set", "epochs=2", "--quiet"]


def _machine_dependent(key):
    return "seconds" in key or "memory" in key


def test_same_seed_twice_gives_identical_metrics_and_records_the_environment(tmp_path):
    for name in ("a", "b"):
        assert main(["run", "classification", "--out", str(tmp_path / name), "--set", "seed=4",
                     *QUICK]) == 0
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if not _machine_dependent(k)} == \
        {k: v for k, v in b.items() if not _machine_dependent(k)}
    env = json.loads((tmp_path / "a" / "environment.json").read_text())
    assert env["seed"] == 4 and env["deterministic"] is True
    assert env["torch"] == torch.__version__
    assert env["packages"]["numpy"] == numpy.__version__
    assert "spikegrad" in env["packages"] and env["git_commit"]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["seed"] == 4


def test_config_changes_name_each_key_and_ignore_what_only_prints():
    from spikegrad.apps.report import config_changes

    saved = {"epochs": 2, "lr": 0.01, "progress": True, "log": "", "old_key": 1}
    now = {"epochs": 3, "lr": 0.01, "progress": False, "log": "csv", "new_key": "a"}
    assert config_changes(saved, now) == ["epochs 2 -> 3", "new_key (absent) -> \"a\"",
                                          "old_key 1 -> (absent)"]
    assert config_changes(saved, dict(saved, progress=False)) == []
    # a key added after the saved run: unchanged when it holds its default (the old behaviour)
    assert config_changes(saved, now, {"new_key": "a"}) == ["epochs 2 -> 3",
                                                            "old_key 1 -> (absent)"]
    assert config_changes(saved, now, {"new_key": "b"})[1] == "new_key (absent) -> \"a\""


def test_resume_accepts_a_config_json_written_before_a_key_existed(tmp_path):
    """A run folder whose config.json lacks a key that the app has since gained resumes while
    the key keeps its default (the behaviour the run was made with)."""
    from spikegrad.apps import classification as app
    from spikegrad.apps.report import check_resume_config

    c = app.validate(app.Config(dataset="digits", max_train=64, hidden=8, batch_size=32,
                                epochs=1, progress=False))
    app.run(c, tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    del saved["shd_path"]          # as if the run predated the key
    (tmp_path / "r" / "config.json").write_text(json.dumps(saved))
    check_resume_config(tmp_path / "r", c)
    from spikegrad.apps.config import ConfigError
    with pytest.raises(ConfigError, match=r"shd_path \(absent\) -> \"x.h5\""):
        check_resume_config(tmp_path / "r", dataclasses.replace(c, shd_path="x.h5"))


def test_save_figure_writes_the_png_returns_its_name_and_closes_the_figure(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    rd = RunDir(tmp_path / "run")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert rd.save_figure(fig, "line.png", dpi=50) == "line.png"
    assert (rd.path / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
