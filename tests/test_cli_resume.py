"""A run killed with SIGKILL at random moments and resumed each time ends bit-identical; a
resume with another config is refused."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from spikegrad.cli import main
from spikegrad.train.checkpoint import list_checkpoints, load_checkpoint

CONFIG = ["dataset=digits", "max_train=160", "hidden=24", "batch_size=32", "progress=false",
          "seed=3"]


def _cmd(out, epochs, resume=False):
    args = [sys.executable, "-m", "spikegrad.cli", "run", "classification", "--out", str(out)]
    # a kill during start-up can leave a folder without a checkpoint, which --resume refuses
    args += ["--resume-or-start"] if resume else []
    for c in CONFIG + [f"epochs={epochs}"]:
        args += ["--set", c]
    return args


def _env():
    # one thread: deterministic and fair to the other process on a 2-core machine
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")


def _final_weights(out):
    (_, newest), *_ = reversed(list_checkpoints(out / "checkpoints"))
    return load_checkpoint(newest)["model"]


def _kill_and_resume(tmp_path, kills, seed, epochs, max_delay=5.0):
    reference = tmp_path / "reference"
    subprocess.run(_cmd(reference, epochs), env=_env(), check=True, capture_output=True)
    rng = random.Random(seed)
    out = tmp_path / "killed"
    killed = 0
    while killed < kills:
        proc = subprocess.Popen(_cmd(out, epochs, resume=out.exists()), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, max_delay))  # start-up (imports) takes ~1-3 s of this
        if proc.poll() is not None:  # finished before the kill: start over, keep killing
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += 1
        for _, path in list_checkpoints(out / "checkpoints"):
            load_checkpoint(path)  # raises if any checkpoint is unreadable
    done = subprocess.run(_cmd(out, epochs, resume=out.exists()), env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    ref, got = _final_weights(reference), _final_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert (out / "metrics.json").exists()
    return killed


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    # 60 short epochs: the run must outlast the kills on a fast idle machine too (with 8 it
    # finished before the first kill)
    assert _kill_and_resume(tmp_path, kills=2, seed=0, epochs=60, max_delay=2.5) == 2


@pytest.mark.slow
def test_twenty_sigkills(tmp_path):
    # long enough that 20 kills (each after at most 3.5 s) cannot outlast it on a fast machine
    assert _kill_and_resume(tmp_path, kills=20, seed=1, epochs=400, max_delay=3.5) == 20


TINY = ["dataset=digits", "max_train=64", "hidden=8", "batch_size=32", "epochs=2"]


def _run(out, sets, *flags):
    argv = ["run", "classification", "--out", str(out), *flags]
    for s in sets:
        argv += ["--set", s]
    return main(argv)


def test_resume_with_another_config_is_refused_with_the_keys_that_differ(tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(out, TINY, "--quiet") == 0
    config = (out / "config.json").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    other = [s for s in TINY if not s.startswith(("hidden", "epochs"))] + ["hidden=9",
                                                                          "epochs=3"]
    # without a flag, a folder with checkpoints is continued too
    for flags in (["--resume"], ["--resume-or-start"], []):
        capsys.readouterr()
        assert _run(out, other, "--quiet", *flags) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "epochs 2 -> 3; hidden 8 -> 9" in err and "another --out" in err, err
        assert (out / "config.json").read_text() == config  # the saved config is kept
    # the same values, in another order and with progress lines: the same run, continued
    # (it was finished: no epoch trains, no checkpoint is written again)
    saved = {p: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")}
    assert _run(out, list(reversed(TINY)), "--resume") == 0
    assert "continuing it from" not in capsys.readouterr().err  # asked for: no notice
    # without a flag the run is continued too, and says so
    assert _run(out, TINY, "--quiet") == 0
    assert "holds a run of this config with checkpoints: continuing it from checkpoints" \
        in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.pt")} == saved
    again = json.loads((out / "metrics.json").read_text())
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert again["epochs"] == 2
    # a config.json that is not one: the run's config is unknown, so it is not continued
    capsys.readouterr()
    (out / "config.json").write_text("[1, 2]\n")
    assert _run(out, TINY, "--resume") == 2
    assert "is not a config" in capsys.readouterr().err
