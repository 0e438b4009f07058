"""Mistakes on the command line end in one ``spikegrad: error:`` line that names the key or
option, exit status 2, and no traceback; none of them gets as far as training."""

import os
import subprocess
import sys

import pytest
import torch

from spikegrad.cli import main
from spikegrad.train import Trainer
from spikegrad.train.checkpoint import save_checkpoint

HUGE = "100000000"


class _TrainingStarted(BaseException):
    """Not an Exception: the CLI must not catch it, so a line that trains fails loudly."""


@pytest.fixture
def trains():
    """Asked for by the tests that do train (and so are exempt from ``no_training``)."""


@pytest.fixture(autouse=True)
def no_training(monkeypatch, request):
    if "trains" in request.fixturenames:
        return

    def fit(self, *a, **k):
        raise _TrainingStarted("an invalid command line got as far as training")
    monkeypatch.setattr(Trainer, "fit", fit)


@pytest.fixture
def places(tmp_path):
    """Folders and files the command lines below refer to as {name}."""
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "config.json").write_text("{}\n")
    bad = tmp_path / "corrupt" / "checkpoints"
    bad.mkdir(parents=True)
    save_checkpoint(bad / "ckpt_epoch00001.pt", {"w": torch.zeros(3)})
    raw = (bad / "ckpt_epoch00001.pt").read_bytes()
    (bad / "ckpt_epoch00001.pt").write_bytes(raw[: len(raw) // 2])  # truncated at a crash
    return {"tmp": str(tmp_path), "out": str(tmp_path / "out"), "file": str(tmp_path / "file"),
            "empty": str(tmp_path / "empty"), "started": str(tmp_path / "started"),
            "corrupt": str(tmp_path / "corrupt"), "never": str(tmp_path / "never")}


def _sets(app, *items):
    argv = ["run", app, "--out", "{out}"]
    for item in items:
        argv += ["--set", item]
    return argv


# (command line, text the error line must contain)
OPTIONS = [
    ([], "command"),
    (["run"], "app"),
    (["frobnicate"], "frobnicate"),
    (["run", "nope", "--out", "{out}"], "nope"),
    (["run", "classification", "--bogus"], "--bogus"),
    (["run", "classification", "--set"], "--set"),
    (["run", "classification", "--out"], "--out"),
    (["run", "classification", "--resume"], "--resume needs --out"),
    (["run", "classification", "--resume-or-start"], "--resume-or-start needs --out"),
    (["run", "classification", "--resume", "--resume-or-start", "--out", "{out}"],
     "--resume-or-start"),
    (["run", "classification", "--out", ""], "--out is empty"),
    (["run", "classification", "--out", " "], "--out is empty"),
    (["run", "classification", "--out", "{file}"], "is a file"),
    (["run", "classification", "--out", "{file}/sub/run"], "which is a file"),
    (["run", "classification", "--out", "/proc/spikegrad-cannot-write-here"], "--out"),
    (["run", "classification", "--out", "/proc"], "--out /proc"),
    (["run", "classification", "--resume", "--out", "{never}"], "does not exist"),
    (["run", "classification", "--resume", "--out", "{empty}"], "is empty"),
    (["run", "classification", "--resume", "--out", "{started}"], "no valid checkpoint"),
    (["run", "classification", "--resume", "--out", "{corrupt}"], "no valid checkpoint"),
    (["run", "constraints", "--resume", "--out", "{started}"], "no valid checkpoint"),
    (["sweep", "classification", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "0", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "-2", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "abc", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "1,1", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", ",", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "0,-1", "--out", "{out}"], "--seeds"),
    (["sweep", "classification", "--seeds", "2", "--jobs", "0", "--out", "{out}"], "--jobs"),
    (["sweep", "classification", "--seeds", "2", "--jobs", "two", "--out", "{out}"], "--jobs"),
    (["sweep", "classification", "--seeds", "2", "--set", "seed=3", "--out", "{out}"], "seed"),
    (["sweep", "classification", "--seeds", "2", "--set", "lr=nan", "--out", "{out}"], "'lr'"),
    (["sweep", "classification", "--seeds", "2", "--resume", "--out", "{never}"], "--resume"),
    (["sweep", "classification", "--seeds", "2", "--resume", "--out", "{started}"], "--resume"),
    (["sweep", "classification", "--seeds", "2", "--out", ""], "--out is empty"),
    (["sweep", "nope", "--seeds", "2", "--out", "{out}"], "nope"),
]

CLASSIFICATION = [
    (("no_such_key=1",), "no_such_key"), (("hidden",), "key=value"), (("=3",), "no key"),
    (("epochs=abc",), "'epochs'"), (("epochs=2.5",), "'epochs'"), (("epochs=0",), "epochs"),
    (("epochs=-1",), "epochs"), (("epochs=",), "'epochs'"), (("lr=nan",), "'lr'"),
    (("lr=inf",), "'lr'"), (("lr=-1",), "lr"), (("lr=0",), "lr"), (("lr=",), "'lr'"),
    (("surrogate=",), "'surrogate'"), (("surrogate=bogus",), "surrogate"),
    (("dataset=cifar",), "dataset"), (("dataset=",), "dataset"),
    (("readout=median",), "readout"), (("encoder=spikes",), "encoder"),
    (("dropout=1.5",), "dropout"), (("batch_size=0",), "batch_size"), (("hidden=0",), "hidden"),
    (("n_steps=0",), "n_steps"), (("deterministic=maybe",), "'deterministic'"),
    (("progress=",), "'progress'"), (("reset=bogus",), "reset"),
    (("optimizer=bogus",), "optimizer"), (("tau_mem_ms=-5",), "tau_mem_ms"),
    (("dataset=shd",), "shd_path"), (("max_train=-1",), "max_train"),
    (("augment_shift=3",), "augment_shift"), ((f"hidden={HUGE}",), "memory"),
    ((f"n_steps={HUGE}",), "memory"), ((f"batch_size={HUGE}",), "memory"),
    (("dataset=shd", "shd_path=/nonexistent/shd_train.h5"), "shd_train.h5"),
]

REGRESSION = [
    (("task=bogus",), "task"), (("neuron=bogus",), "neuron"), (("learning=bogus",), "learning"),
    (("optimizer=bogus",), "optimizer"), (("surrogate=",), "surrogate"),
    (("surrogate=bogus",), "surrogate"), (("tbptt_k=-1",), "tbptt_k"), (("n_steps=1",), "n_steps"),
    (("hidden=0",), "hidden"), (("lr=inf",), "'lr'"), (("input_rate_hz=2000",), "input_rate_hz"),
    (("horizon=5",), "horizon"), (("compare_tbptt=abc",), "compare_tbptt"),
    (("steps=0",), "steps"), (("grad_clip=-1",), "grad_clip"), (("dt_ms=0",), "dt_ms"),
    ((f"hidden={HUGE}",), "memory"), ((f"n_steps={HUGE}",), "memory"),
    (("compare=bogus",), "compare"),
]

VISION = [
    (("dataset=bogus",), "dataset"), (("arch=bogus",), "arch"), (("pool=bogus",), "pool"),
    (("norm=bogus",), "norm"), (("channels=0",), "channels"), (("kernel_size=0",), "kernel_size"),
    (("stride=0",), "stride"), (("dataset=mnist",), "mnist_path"),
    (("dataset=nmnist",), "nmnist_path"), (("encoder=events",), "encoder=events"),
    (("lr=0",), "lr"), (("epochs=0",), "epochs"), ((f"channels={HUGE}",), "memory"),
]

CODING = [
    (("dataset=bogus",), "dataset"), (("losses=bogus",), "losses"), (("losses=",), "losses"),
    (("n_code=1000",), "n_code"), (("rate_on=2",), "rate_on"), (("rate_off=0.6",), "rate_off"),
    (("threshold=0",), "threshold"), (("surrogate=bogus",), "surrogate"),
    (("hidden=0",), "hidden"), (("tau_syn_ms=-1",), "tau_syn_ms"), (("surrogate=",), "surrogate"),
    (("epochs=",), "'epochs'"), (("lr=nan",), "'lr'"),
    ((f"n_steps={HUGE}",), "memory"),
]

CONSTRAINTS = [
    (("parts=bogus",), "parts"), (("parts=",), "parts"), (("sparsity_penalty=l3",),
                                                         "sparsity_penalty"),
    (("surrogates=bogus",), "surrogates"), (("betas=abc",), "betas"), (("betas=-1",), "betas"),
    (("betas=",), "betas"), (("seeds=0",), "seeds"), (("rm_classes=1",), "rm_classes"),
    (("silent_factor=0",), "silent_factor"), ((f"rm_hidden={HUGE}",), "memory"),
]

BIOPHYSICS = [
    (("tasks=bogus",), "tasks"), (("tasks=",), "tasks"), (("cue_models=bogus",), "cue_models"),
    (("xor_models=bogus",), "xor_models"), (("cue_hidden=7",), "cue_hidden"),
    (("cue_epochs=0",), "cue_epochs"), (("xor_tau_dend_long=1",), "xor_tau_dend_long"),
    (("surrogate=bogus",), "surrogate"), (("surrogate_scale=0",), "surrogate_scale"),
    (("cue_dt_ms=-1",), "cue_dt_ms"), (("surrogate=",), "surrogate"),
    (("cue_epochs=",), "'cue_epochs'"), ((f"cue_hidden={HUGE}",), "memory"),
]

CASES = OPTIONS + [(_sets(app, *items), text) for app, table in (
    ("classification", CLASSIFICATION), ("regression", REGRESSION), ("vision", VISION),
    ("coding", CODING), ("constraints", CONSTRAINTS), ("biophysics", BIOPHYSICS))
    for items, text in table]


def test_there_are_at_least_80_invalid_lines():
    assert len(CASES) >= 80


@pytest.mark.parametrize("argv,text", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_invalid_command_line_is_one_clean_error(argv, text, places, capsys):
    argv = [a.format(**places) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("spikegrad: error:")]
    others = [line for line in err.splitlines()
              if line.strip() and not line.startswith(("spikegrad: error:", "spikegrad: warning:"))]
    assert code == 2, err
    assert len(errors) == 1 and not others, err
    assert text.format(**places) in errors[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["run", "classification", "--set", "lr=nan"],
    ["run", "classification", "--out", ""],
    ["run", "regression", "--set", f"n_steps={HUGE}"],
    ["run", "classification", "--resume", "--out", "{never}"],
    ["run", "classification", "--out", "{file}"],
])
def test_through_a_real_process_there_is_no_traceback(argv, places):
    argv = [a.format(**places) for a in argv]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "spikegrad.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=places["tmp"], timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("spikegrad: error:"), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_nonfinite_guard_is_one_line_with_the_resume_command(places, monkeypatch, capsys):
    from spikegrad.apps import classification

    def diverging_run(cfg, out, resume=False):
        save_checkpoint(out / "checkpoints" / "ckpt_epoch00002.pt", {"w": torch.zeros(1)})
        raise FloatingPointError("loss is nan at epoch 3, batch index 0 (parameter 'w')")
    monkeypatch.setattr(classification, "run", diverging_run)
    out = places["out"]
    assert main(["run", "classification", "--out", out, "--set", "lr=0.5"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("spikegrad: error: training stopped: loss is nan at epoch 3")
    assert err.endswith(f"spikegrad run classification --out {out} --resume --set lr=0.5")


def test_a_learning_rate_far_too_high_warns_in_one_line(trains, places, capsys):
    argv = ["run", "classification", "--out", places["out"], "--quiet"]
    for s in ("max_train=64", "hidden=8", "epochs=4", "batch_size=32", "lr=1e6"):
        argv += ["--set", s]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("spikegrad: warning: not learning: train_loss has not fallen")
    assert "check lr (epoch 1: 1e+06)" in err and "Traceback" not in err
