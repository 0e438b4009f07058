import json

import pytest
import torch

import spikegrad as sg
from spikegrad.apps import classification as app
from spikegrad.apps.config import ConfigError, apply_overrides
from spikegrad.cli import main

QUICK = ["epochs=2", "max_train=200", "hidden=32", "progress=false"]


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())


def test_cli_run_writes_the_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "classification", "--out", str(out), "--quiet"] +
                sum((["--set", s] for s in QUICK + ["log=csv,tensorboard"]), [])) == 0
    m = _metrics(out)
    for key in ("test_accuracy", "train_loss", "epochs", "wall_seconds", "spikes_per_neuron"):
        assert key in m
    assert m["epochs"] == 2 and 0.0 <= m["test_accuracy"] <= 1.0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden"] == 32 and cfg["n_steps"] == 25  # preset filled in
    for f in ("report.md", "curves.png", "rasters.png", "membrane.png", "log.jsonl"):
        assert (out / f).stat().st_size > 0
    assert "test_accuracy" in capsys.readouterr().out
    # the same epochs in the extra log formats --set log=csv,tensorboard asked for
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 1 + len(epochs) == 3
    assert [float(r.split(",")[1]) for r in rows[1:]] == [e[rows[0].split(",")[1]]
                                                          for e in epochs]
    assert list((out / "tb" / "log").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("override, match", [
    ("hiden=3", "unknown config key 'hiden'; valid keys: .*hidden"),
    ("hidden=abc", "bad value for 'hidden': 'abc' is not a valid int"),
    ("hidden", "expects key=value"),
    ("dataset=cifar", "dataset must be one of digits, mnist1d, randman, shd"),
    ("readout=median", "readout must be one of"),
    ("lr=-1", "lr must be > 0"),
    ("dropout=1.5", r"dropout must be in \[0, 1\)"),
    ("encoder=spikes", "does not fit dataset='digits'"),
    ("log=wandb", "log must be a comma-separated list of csv, tensorboard"),
])
def test_bad_set_exits_nonzero_with_a_clear_message(tmp_path, capsys, override, match):
    code = main(["run", "classification", "--out", str(tmp_path / "x"), "--set", override])
    assert code == 2
    import re
    assert re.search(match, capsys.readouterr().err)


def test_shd_without_path_says_how_to_get_it(tmp_path, capsys):
    assert main(["run", "classification", "--set", "dataset=shd", "--out", str(tmp_path)]) == 2
    assert "shd_path" in capsys.readouterr().err


def test_unknown_app(capsys):
    from spikegrad.apps import APPS
    assert main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown app 'nope'; available: " + ", ".join(sorted(APPS)) in err


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = apply_overrides(app.Config(), ["max_train=128", "hidden=16", "progress=false"])
    full = app.run(apply_overrides(cfg, ["epochs=3"]), tmp_path / "full")
    part = tmp_path / "part"
    app.run(apply_overrides(cfg, ["epochs=3"]), part)
    # a crash during epoch 3: only the checkpoints of epochs 1-2 exist
    (part / "checkpoints" / "ckpt_epoch00003.pt").unlink()
    resumed = app.run(apply_overrides(cfg, ["epochs=3"]), part, resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(resumed.history) == strip(full.history)
    for k in ("test_accuracy", "train_loss", "spikes_per_neuron"):
        assert resumed.metrics[k] == full.metrics[k]


def test_same_seed_same_metrics_and_seed_changes_them(tmp_path):
    cfg = apply_overrides(app.Config(), QUICK)
    a = app.run(cfg, tmp_path / "a").metrics
    b = app.run(cfg, tmp_path / "b").metrics
    c = app.run(apply_overrides(cfg, ["seed=1"]), tmp_path / "c").metrics
    assert a["train_loss"] == b["train_loss"] and a["test_accuracy"] == b["test_accuracy"]
    assert a["train_loss"] != c["train_loss"]


def test_randman_preset_uses_spike_timing_data(tmp_path):
    cfg = apply_overrides(app.Config(), ["dataset=randman", "epochs=1", "max_train=250",
                                         "progress=false"])
    res = app.run(cfg, tmp_path)
    assert "val_accuracy" in res.metrics
    c = app.validate(cfg)
    assert (c.n_steps, c.dt_ms, c.hidden, c.readout, c.surrogate_beta) == (100, 2.0, 128, "max", 20.0)


def test_shd_run_on_a_generated_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    import numpy as np
    rng = np.random.default_rng(0)
    path = tmp_path / "shd_small.h5"
    with h5py.File(path, "w") as f:
        n = 40
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        labels = rng.integers(0, 20, n)
        for i in range(n):
            k = rng.integers(20, 60)
            times[i] = np.sort(rng.uniform(0, 1.0, k)).astype(np.float32)
            units[i] = (rng.integers(0, 35, k) + 35 * labels[i]).astype(np.uint16)
        f.create_dataset("labels", data=labels.astype(np.uint8))
    cfg = apply_overrides(app.Config(), ["dataset=shd", f"shd_path={path}", "epochs=1",
                                         "hidden=16", "progress=false"])
    res = app.run(cfg, tmp_path / "run")
    assert res.metrics["epochs"] == 1 and 0 <= res.metrics["test_accuracy"] <= 1


def test_fluctuation_init_puts_the_hidden_membrane_at_the_target_spread(tmp_path):
    # init=fluctuation draws the weights so that the free membrane of the hidden layer has
    # mean 0 and std = threshold (xi = 1) for the encoder's own input rate
    c = app.validate(apply_overrides(app.Config(), ["dataset=randman", "init=fluctuation"]))
    data = app.load_data(c)
    encode = app.make_encoder(c)
    x = data.train.tensors[0]

    def free_std():
        torch.manual_seed(0)
        with pytest.raises(ValueError, match="pass x_train and encode"):
            app.build_model(c, data.n_in, data.n_classes)
        model = app.build_model(c, data.n_in, data.n_classes, x, encode)
        lif = model.layers[1]
        with torch.no_grad():
            current = model.layers[0](encode(x[:500]).float())
            free = sg.nn.LIF(c.hidden, tau_mem=c.tau_mem_ms * 1e-3, tau_syn=c.tau_syn_ms * 1e-3,
                             dt=c.dt_ms * 1e-3, threshold=1e9)
            _, trace = free.trace(current)
        v = trace.v[20:]  # past the synaptic and membrane transient
        return float(v.mean()), float(v.std())

    mu, sd = free_std()
    assert abs(mu) < 0.2 and 0.8 < sd < 1.25


@pytest.mark.parametrize("sets, match", [
    (["init=xavier"], "init must be one of torch, fluctuation"),
    (["dataset=mnist1d", "init=fluctuation"], "encoder=current injects analog currents"),
    (["init=fluctuation", "out_gain=3"], "drop out_gain or use init=torch"),
])
def test_init_misuse_is_a_config_error(sets, match):
    with pytest.raises(ConfigError, match=match):
        app.validate(apply_overrides(app.Config(), sets))
