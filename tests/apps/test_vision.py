import json

import pytest

from spikegrad.apps import vision as app
from spikegrad.apps.config import ConfigError, apply_overrides

TINY = dict(epochs=1, max_train=128, channels=4, hidden=16, progress=False)


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())


def test_tiny_mnist1d_cnn_run_writes_metrics_figures_and_costs(tmp_path):
    r = app.run(app.Config(dataset="mnist1d", arch="cnn", **TINY), tmp_path / "run")
    m = _metrics(tmp_path / "run")
    assert m == pytest.approx(r.metrics)
    for f in ("config.json", "report.md", "curves.png", "rasters.png", "kernels.png",
              "feature_maps.png", "log.jsonl"):
        assert (tmp_path / "run" / f).stat().st_size > 0
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["epochs"] == 1
    # ANN MACs by hand (padded taps are not synapses): conv 1->4 k5 s2 p2 on 40 -> 20 outputs,
    # 20*5 - 3 taps in the padding = 97 per channel; conv 4->4 k3 s2 p1 on 20 -> 10: 10*3 - 1;
    # on 10 -> 5: 5*3 - 1; dense 4*5 -> 10
    per_layer = [4 * 97, 16 * 29, 16 * 14, 20 * 10]
    macs = [v for k, v in sorted(((k, v) for k, v in m.items() if k.startswith("ann_macs/")),
                                 key=lambda kv: int(kv[0].split("/")[1].split(":")[0]))]
    assert macs == per_layer and m["ann_macs_per_inference"] == sum(per_layer)
    # the dense readout's fan-out is 10 for every input: its synops are 10 x the spikes of the
    # last spiking layer (measured from the same spikes)
    last_spikes = [v for k, v in m.items() if k.startswith("spikes/")]
    dense_ops = [v for k, v in m.items() if k.startswith("synops/") and k.endswith("Linear")]
    assert dense_ops[0] == pytest.approx(10 * last_spikes[-1], rel=1e-6)
    # current input: every step delivers the analog signal (a graded event per nonzero value)
    first = [v for k, v in m.items() if k.startswith("synops/0:")][0]
    assert 0 < first <= 8 * 4 * 97 + 1e-6
    assert m["ann_macs_spike_input_layers"] == sum(per_layer[1:])  # layer 0 sees currents
    assert m["synops_spike_input_per_inference"] == pytest.approx(m["synops_per_inference"] - first)
    assert m["synops_per_inference"] == pytest.approx(
        sum(v for k, v in m.items() if k.startswith("synops/")))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["n_steps"] == 8 and cfg["encoder"] == "current"  # preset filled in


@pytest.mark.parametrize("overrides", [
    dict(dataset="digits", arch="cnn", encoder="rate"),
    dict(dataset="digits", arch="mlp", encoder="latency", norm="per_step"),
    dict(dataset="mnist1d", arch="mlp", encoder="rate", pool="sum"),
])
def test_other_datasets_encoders_and_archs_run(tmp_path, overrides):
    r = app.run(app.Config(**{**TINY, "epochs": 1, "max_train": 64, **overrides}), tmp_path)
    assert 0.0 <= r.metrics["test_accuracy"] <= 1.0
    assert r.metrics["synops_per_inference"] > 0
    # spike encoders: every synaptic layer is fed by spikes
    assert r.metrics["ann_macs_spike_input_layers"] == r.metrics["ann_macs_per_inference"]
    assert (tmp_path / "kernels.png").exists() == (overrides["arch"] == "cnn")


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg = app.Config(dataset="digits", **{**TINY, "epochs": 2, "max_train": 64})
    full = app.run(cfg, tmp_path / "full")
    part = tmp_path / "part"
    app.run(cfg, part)
    (part / "checkpoints" / "ckpt_epoch00002.pt").unlink()  # a crash during epoch 2
    resumed = app.run(cfg, part, resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]
    assert strip(resumed.history) == strip(full.history)
    for k in ("test_accuracy", "train_loss", "synops_per_inference"):
        assert resumed.metrics[k] == full.metrics[k]


@pytest.mark.parametrize("dataset, shape", [("mnist1d", (1, 40)), ("digits", (1, 8, 8))])
def test_mlp_baseline_has_a_similar_number_of_parameters(dataset, shape):
    sizes = {a: app.n_params(app.build_model(app.validate(app.Config(dataset=dataset, arch=a)),
                                             shape, 10))
             for a in ("cnn", "mlp")}
    assert 0.85 < sizes["mlp"] / sizes["cnn"] < 1.15, sizes
    c = app.validate(app.Config())
    assert (c.arch, c.dataset, c.n_steps, c.encoder) == ("cnn", "mnist1d", 8, "current")


@pytest.mark.parametrize("override, match", [
    ("arch=resnet", "arch must be one of cnn, mlp"),
    ("dataset=cifar", "dataset must be one of mnist1d, digits"),
    ("encoder=spikes", "encoder must be one of current, rate, latency"),
    ("norm=layer", "norm must be one of"),
    ("lr=0", "lr must be > 0"),
])
def test_bad_config_messages(override, match):
    with pytest.raises(ConfigError, match=match):
        app.validate(apply_overrides(app.Config(), [override]))
    with pytest.raises(ConfigError, match="augment_shift.*mnist1d only"):
        app.validate(app.Config(dataset="digits", augment_shift=3))


@pytest.mark.slow
def test_mnist1d_cnn_default_beats_floor_and_mlp(tmp_path):
    cnn = app.run(app.Config(progress=False), tmp_path / "cnn").metrics
    mlp = app.run(app.Config(arch="mlp", progress=False), tmp_path / "mlp").metrics
    assert cnn["test_accuracy"] >= 0.85
    assert cnn["test_accuracy"] >= mlp["test_accuracy"] + 0.10


@pytest.mark.slow
def test_digits_cnn_floor(tmp_path):
    assert app.run(app.Config(dataset="digits", progress=False),
                   tmp_path).metrics["test_accuracy"] >= 0.95


def _write_idx(path, array):
    """An IDX file by hand: magic (0, 0, 0x08 = ubyte, ndim), big-endian int32 sizes, data."""
    import struct
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(">u1").tobytes())


def test_mnist_from_idx_files_the_user_downloaded(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"  # torchvision's layout
    raw.mkdir(parents=True)
    for split, n in (("train", 64), ("t10k", 32)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        # a bright square whose row encodes the label: learnable, like a digit
        images = np.zeros((n, 28, 28), np.uint8)
        for k, y in enumerate(labels):
            images[k, 2 * y + 3: 2 * y + 7, 10:18] = 255
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    cfg = apply_overrides(app.Config(), ["dataset=mnist", f"mnist_path={tmp_path}",
                                            "epochs=1", "channels=4", "progress=false"])
    res = app.run(cfg, tmp_path / "run")
    assert res.metrics["ann_macs_per_inference"] > 0 and 0.0 <= res.metrics["test_accuracy"] <= 1
    data = app.load_data(app.validate(cfg))
    assert data.train.tensors[0].shape == (64, 1, 28, 28) and data.n_classes == 10
    assert float(data.train.tensors[0].max()) == 1.0


def test_mnist_without_a_path_says_where_to_put_the_files():
    with pytest.raises(ConfigError, match="dataset=mnist needs mnist_path=DIR"):
        app.validate(apply_overrides(app.Config(), ["dataset=mnist"]))


def _write_nmnist(root, n_per_class, seed):
    """N-MNIST-format folders whose classes 0, 1, 2 fire in different corners of the sensor
    (the other digits' folders are empty of files)."""
    import numpy as np

    from spikegrad.data import make_events, write_nmnist_events
    rng = np.random.default_rng(seed)
    corners = {0: (2, 2), 1: (24, 2), 2: (13, 24)}
    for split, n in (("Train", n_per_class), ("Test", max(2, n_per_class // 2))):
        for label in range(10):
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
        for label, (cx, cy) in corners.items():
            for k in range(n):
                m = 300
                x = np.clip(cx + rng.integers(0, 8, m), 0, 33)
                y = np.clip(cy + rng.integers(0, 8, m), 0, 33)
                t = np.sort(rng.integers(0, 300_000, m))
                write_nmnist_events(root / split / str(label) / f"{k:05d}.bin",
                                    make_events(x, y, t, rng.integers(0, 2, m)))


def test_nmnist_from_the_users_files_trains_on_event_frames(tmp_path):
    root = tmp_path / "N-MNIST"
    _write_nmnist(root, n_per_class=24, seed=0)
    cfg = app.Config(dataset="nmnist", nmnist_path=str(root), epochs=3, n_steps=4,
                     channels=4, batch_size=8, lr=2e-2, max_train=60, progress=False)
    r = app.run(cfg, tmp_path / "run")
    m = r.metrics
    assert m["epochs"] == 3
    # three spatially separable classes: far above chance (1/3) after a few epochs
    assert m["test_accuracy"] >= 0.8
    # max_train: a seeded subset of the 72 training files; event input costs accumulates only
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().split("\n")
           if line.strip()]
    assert [row["step"] for row in log] == [8, 16, 24]  # ceil(60 / 8) batches per epoch, not 9
    assert m["ann_macs_spike_input_layers"] == m["ann_macs_per_inference"]
    for f in ("report.md", "rasters.png", "feature_maps.png", "kernels.png"):
        assert (tmp_path / "run" / f).stat().st_size > 0


@pytest.mark.parametrize("overrides, match", [
    (dict(dataset="nmnist"), "dataset=nmnist needs nmnist_path"),
    (dict(dataset="mnist1d", encoder="events"), "encoder=events"),
    (dict(dataset="nmnist", nmnist_path="x", encoder="rate"), "encoder=events"),
])
def test_nmnist_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        app.validate(app.Config(**overrides))
