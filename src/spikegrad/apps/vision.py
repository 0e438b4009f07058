"""Spiking convolutional networks for vision, trained end to end with surrogate gradients.

Methods, in the order they run:

1. **Data** (offline): ``mnist1d`` (4000/1000 sequences of length 40, generated; ``[1, 40]``
   per sample, a 1-D CNN) or ``digits`` (sklearn 8x8, stratified 75/25; ``[1, 8, 8]``, a 2-D
   CNN), or ``mnist`` (the four IDX files the user downloaded, read from ``mnist_path``;
   ``[1, 28, 28]``, pixels / 255; never downloaded here), or ``nmnist`` (the extracted
   N-MNIST ``Train/`` and ``Test/`` folders under ``nmnist_path``, read lazily: each sample's
   events binned on access into ``n_steps`` frames ``[2, 34, 34]`` of event counts clipped
   to 1; ``max_train`` keeps a seeded random subset of the training files). Training
   signals may be randomly rolled (MNIST-1D translation augmentation).
2. **Encoding** to ``[T, B, C, *spatial]``: ``current`` (the analog frame injected at every
   step), ``rate`` (Bernoulli spikes, p = value per step) or ``latency`` (one spike, earlier
   for larger values); rate and latency codes min-max scale MNIST-1D to [0, 1]. N-MNIST is
   already a sequence of event frames (``encoder=events``: used as it is).
3. **Model** (``arch=cnn``): ``conv_layers`` spiking conv blocks (time-folded conv ->
   threshold-dependent batch norm -> LIF -> optional pooling), then a dense readout into
   non-spiking leaky integrators. ``arch=mlp`` is the comparison floor: dense layers of
   ``hidden`` LIF neurons with the same norm, neuron, readout and budget (``hidden`` chosen for
   a similar number of parameters).
4. **Objective**: cross-entropy on the readout membrane's maximum over time.
5. **Training**: :class:`spikegrad.train.Trainer`, Adam, cosine learning rate, checkpoints
   every epoch; the final model is evaluated once on the test set.
6. **Cost**: spikes per inference per layer, and synaptic operations per inference measured
   from those spikes (each event into a layer costs its fan-out; an analog input costs one
   graded operation per synapse per step), next to the multiply-accumulates of the same
   network run once as an ANN (padded taps are not counted). ``*_spike_input_*`` totals
   cover the layers fed by binary spikes, whose operations are accumulates only; with
   ``encoder=current`` the first layer multiplies the analog input at every step (it could
   be computed once, since the input repeats).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset, TensorDataset

from .. import data as sgdata
from .. import losses, nn
from ..functional.readout import membrane
from ..train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from .datasets import Data
from .datasets import load_data as load_classification_data
from .datasets import make_encoder as make_classification_encoder
from .config import ConfigError
from .report import Result, RunDir, epoch_curve

__all__ = ["Config", "PRESETS", "validate", "build_model", "layer_costs", "run", "Result"]

DATASETS = ("mnist1d", "digits", "mnist", "nmnist")
ARCHS = ("cnn", "mlp")
ENCODERS = ("current", "rate", "latency", "events")
POOLS = ("none", "max", "avg", "sum")


@dataclass
class Config:
    """Vision run. ``None`` fields take the dataset's preset (see ``PRESETS``).

    ``arch=cnn``: ``conv_layers`` blocks of ``channels`` channels (doubled after the first
    block when pooling halves the maps), kernel ``kernel_size`` (+2 for the first block of a
    1-D net, which sees the raw signal), stride ``stride``, padding ``kernel_size // 2``.
    ``arch=mlp``: two dense layers of ``hidden`` LIF neurons. ``norm``: ``threshold`` (tdBN),
    ``per_step`` (BNTT) or ``none``, on the currents of every spiking layer.
    """

    dataset: str = "mnist1d"
    mnist_path: str = ""          # dataset=mnist: folder with the four MNIST IDX files
    nmnist_path: str = ""         # dataset=nmnist: folder with the extracted Train/ and Test/
    arch: str = "cnn"
    seed: int = 0
    deterministic: bool = True
    epochs: Optional[int] = None
    n_steps: Optional[int] = None
    encoder: Optional[str] = None
    channels: Optional[int] = None
    conv_layers: Optional[int] = None
    kernel_size: Optional[int] = None
    stride: Optional[int] = None
    pool: Optional[str] = None
    hidden: Optional[int] = None
    norm: Optional[str] = None
    tau_mem_ms: Optional[float] = None
    tau_out_ms: Optional[float] = None
    dt_ms: Optional[float] = None
    surrogate: Optional[str] = None
    surrogate_beta: Optional[float] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    batch_size: Optional[int] = None
    augment_shift: Optional[int] = None
    max_train: Optional[int] = None
    progress: bool = True


PRESETS: Dict[str, dict] = {
    # 1 x 40 -> 3 conv blocks of 32 (k5 s2 / k3 s2 / k3 s2, like the MNIST-1D paper's CNN),
    # tdBN, LIF -> 10 LI (max over T = 8 steps), 8.1k parameters; rolls of +-5 in training.
    # arch=mlp: 40 -> 64 -> 64 -> 10 with the same norm, neurons and budget, 7.6k parameters.
    "mnist1d": dict(epochs=30, n_steps=8, encoder="current", channels=32, conv_layers=3,
                    kernel_size=3, stride=2, pool="none", hidden=64, norm="threshold",
                    tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                    surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                    augment_shift=5, max_train=0),
    # 1 x 8 x 8 -> conv 16 (k3 p1) -> max pool 2 -> conv 32 -> max pool 2 -> 10 LI (6.1k
    # parameters); arch=mlp: 64 -> 48 -> 48 -> 10 (6.1k parameters).
    "digits": dict(epochs=15, n_steps=8, encoder="current", channels=16, conv_layers=2,
                   kernel_size=3, stride=1, pool="max", hidden=48, norm="threshold",
                   tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                   surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                   augment_shift=0, max_train=0),
    # 1 x 28 x 28 -> conv 16 (k3 p1) -> max pool 2 -> conv 32 -> max pool 2 -> 10 LI; MNIST
    # is not shipped: it is read from the IDX files the user downloaded (mnist_path)
    "mnist": dict(epochs=5, n_steps=8, encoder="current", channels=16, conv_layers=2,
                  kernel_size=3, stride=1, pool="max", hidden=128, norm="threshold",
                  tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                  surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=128,
                  augment_shift=0, max_train=0),
    # 2 x 34 x 34 event frames (T = 10 bins of each ~300 ms recording) -> conv 16 (k3 p1) ->
    # max pool 2 -> conv 32 -> max pool 2 -> 10 LI; read from the user's extracted N-MNIST
    # (nmnist_path), decoded and binned on access
    "nmnist": dict(epochs=5, n_steps=10, encoder="events", channels=16, conv_layers=2,
                   kernel_size=3, stride=1, pool="max", hidden=128, norm="threshold",
                   tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                   surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                   augment_shift=0, max_train=0),
}


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the dataset preset, then validate."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    preset = PRESETS[cfg.dataset]
    cfg = dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) is None})

    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)
    need(cfg.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}; got {cfg.arch!r}")
    need(cfg.encoder in ENCODERS,
         f"encoder must be one of {', '.join(ENCODERS)}; got {cfg.encoder!r}")
    need(cfg.pool in POOLS, f"pool must be one of {', '.join(POOLS)}; got {cfg.pool!r}")
    need(cfg.norm in nn.conv.NORMS, f"norm must be one of {', '.join(nn.conv.NORMS)}; got "
                                    f"{cfg.norm!r}")
    for key in ("epochs", "n_steps", "channels", "conv_layers", "kernel_size", "stride", "hidden",
                "batch_size"):
        need(getattr(cfg, key) >= 1, f"{key} must be >= 1; got {getattr(cfg, key)}")
    for key in ("tau_mem_ms", "tau_out_ms", "dt_ms", "surrogate_beta", "lr"):
        need(getattr(cfg, key) > 0, f"{key} must be > 0; got {getattr(cfg, key)}")
    for key in ("weight_decay", "augment_shift", "max_train"):
        need(getattr(cfg, key) >= 0, f"{key} must be >= 0 (0 switches it off); got "
                                     f"{getattr(cfg, key)}")
    need(not cfg.augment_shift or cfg.dataset == "mnist1d",
         "augment_shift (random roll of a 1-D signal) applies to dataset=mnist1d only")
    need((cfg.encoder == "events") == (cfg.dataset == "nmnist"),
         "encoder=events (event frames used as they are) goes with dataset=nmnist, which "
         "needs it")
    need(cfg.dataset != "nmnist" or bool(cfg.nmnist_path),
         "dataset=nmnist needs nmnist_path=DIR: the folder with the extracted N-MNIST Train/ "
         "and Test/ folders (each with 0/ .. 9/ of .bin files). spikegrad never downloads "
         "data.")
    need(cfg.dataset != "mnist" or bool(cfg.mnist_path),
         "dataset=mnist needs mnist_path=DIR: a folder with train-images-idx3-ubyte, "
         "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally "
         ".gz; the files of yann.lecun.com/exdb/mnist or torchvision's MNIST/raw). spikegrad "
         "never downloads data.")
    return cfg


# --- data ------------------------------------------------------------------------------------

def load_data(c: Config) -> Data:
    """Samples shaped as one frame ``[N, 1, 40]``, ``[N, 1, 8, 8]`` or ``[N, 1, 28, 28]``
    (tensor datasets), or N-MNIST's ``(frames [T, 2, 34, 34], label)`` read on access."""
    if c.dataset == "nmnist":
        train, test = (sgdata.NMNISTDataset(c.nmnist_path, train=flag, n_steps=c.n_steps,
                                            binary=True) for flag in (True, False))
        if c.max_train and c.max_train < len(train):
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(c.seed))
            train = Subset(train, keep[: c.max_train].sort().values.tolist())
        return Data(train, None, test, tuple(test[0][0].shape[1:]), 10)
    if c.dataset == "mnist":
        s = sgdata.load_mnist_files(c.mnist_path)  # pixels / 255 in [0, 1]
        train, test = (TensorDataset(x.unsqueeze(1), y)
                       for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)))
        if c.max_train:
            train = TensorDataset(*(t[: c.max_train] for t in train.tensors))
        return Data(train, None, test, tuple(train.tensors[0].shape[1:]), 10)
    data = load_classification_data(c)  # the classification app's splits and scaling
    shape = (1, 40) if c.dataset == "mnist1d" else (1, 8, 8)
    train, test = (TensorDataset(ds.tensors[0].reshape(-1, *shape), ds.tensors[1])
                   for ds in (data.train, data.test))
    return Data(train, None, test, shape, data.n_classes)


def batches(ds, batch_size: int):
    """``(x, y)`` batches of a test set in order: slices of a TensorDataset (frames
    ``[B, ...]``), or an event dataset's samples stacked time-major (``[T, B, ...]``)."""
    if isinstance(ds, TensorDataset):
        for i in range(0, len(ds), batch_size):
            yield tuple(t[i:i + batch_size] for t in ds.tensors)
    else:
        yield from DataLoader(ds, batch_size=batch_size, collate_fn=sgdata.time_major_collate)


def make_encoder(c: Config):
    """``encode(x, generator) -> xs [T, B, ...]``; event frames arrive time-major already."""
    if c.encoder == "events":
        return lambda x, g=None: x
    return make_classification_encoder(c)


def _roll(x: Tensor, max_shift: int) -> Tensor:
    """:func:`spikegrad.data.random_roll` on ``[B, 1, L]``."""
    return sgdata.random_roll(x.flatten(1), max_shift).view_as(x)


# --- model -----------------------------------------------------------------------------------

def _lif(c: Config):
    return lambda shape: nn.LIF(shape, tau_mem=c.tau_mem_ms * 1e-3, dt=c.dt_ms * 1e-3,
                                surrogate=c.surrogate, beta=c.surrogate_beta)


def _norm(c: Config, n: int) -> List[torch.nn.Module]:
    if c.norm == "threshold":
        return [nn.ThresholdBatchNorm(n)]
    if c.norm == "per_step":
        return [nn.PerStepBatchNorm(n, c.n_steps)]
    return []


def build_model(c: Config, in_shape, n_classes: int) -> nn.Sequential:
    """The spiking CNN (``arch=cnn``) or MLP (``arch=mlp``) with an LI readout."""
    layers: List[torch.nn.Module] = []
    shape = tuple(in_shape)
    if c.arch == "cnn":
        for k in range(c.conv_layers):
            # the first layer sees the raw signal: a wider kernel, as in the MNIST-1D CNN
            ks = c.kernel_size + 2 if k == 0 and len(shape) == 2 else c.kernel_size
            block = nn.spiking_conv(shape, c.channels * (2 if k and c.pool != "none" else 1),
                                    ks, stride=c.stride, padding=ks // 2, norm=c.norm,
                                    n_steps=c.n_steps, pool=c.pool, neuron=_lif(c))
            layers += block.layers
            shape = block.out_shape
        layers.append(nn.Flatten())
        width = math.prod(shape)
    else:
        layers.append(nn.Flatten())
        width = math.prod(shape)
        for _ in range(2):
            layers.append(nn.Linear(width, c.hidden, bias=c.norm == "none"))
            layers += _norm(c, c.hidden)
            layers.append(_lif(c)(c.hidden))
            width = c.hidden
    layers.append(nn.Linear(width, n_classes))
    layers.append(nn.LI(n_classes, tau_mem=c.tau_out_ms * 1e-3, dt=c.dt_ms * 1e-3,
                        scale_input=True))
    return nn.Sequential(*layers)


def _synaptic(m) -> bool:
    return isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))


def layer_costs(model: nn.Sequential, xs: Tensor, outs: Optional[List[Tensor]] = None
                ) -> List[dict]:
    """Per synaptic layer of ``model`` on ``xs [T, B, ...]``: synaptic operations per inference
    (from the measured input events) and the ANN's MACs; and spikes per inference of every
    spiking layer. Averages over the batch. ``outs``: ``model.forward_all(xs)[0]`` if at hand."""
    if outs is None:
        with torch.no_grad():
            outs, _ = model.forward_all(xs)
    rows, inp = [], xs
    for i, m in enumerate(model.layers):
        if _synaptic(m):
            fan = nn.fan_out(m, inp.shape[2:])
            rows.append({"layer": f"{i}:{type(m).__name__}", "kind": "synapses",
                         "input_binary": bool(((inp == 0) | (inp == 1)).all()),
                         "synops": float(nn.synaptic_ops(m, inp, fan).mean()),
                         "ann_macs": int(fan.sum())})
        elif isinstance(m, nn.LIF):
            rows.append({"layer": f"{i}:LIF{tuple(outs[i].shape[2:])}", "kind": "neurons",
                         "spikes": float(outs[i].sum() / outs[i].shape[1]),
                         "neurons": outs[i][0, 0].numel()})
        inp = outs[i]
    return rows


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- training and evaluation -----------------------------------------------------------------

def make_objective(c: Config, encode):
    def objective(model, x, y, state):
        if c.augment_shift:
            x = _roll(x, c.augment_shift)
        out, state = model(encode(x), state)
        loss = losses.membrane_cross_entropy(out, y, "max")
        acc = (membrane(out, "max").argmax(1) == y).float().mean().item()
        return ObjectiveOutput(loss, state, {"accuracy": acc, "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(model: nn.Sequential, ds: TensorDataset, encode, seed: int,
             batch_size: int = 500) -> Dict[str, float]:
    """Accuracy, and per inference: spikes of each LIF layer, synaptic operations of each
    synaptic layer and the ANN MACs (encoder noise from a fixed generator).

    Totals: ``synops`` (all layers), ``synops_spiking`` and ``ann_macs_spiking`` (layers fed by
    binary spikes: accumulates only), ``ann_macs`` (the whole network as an ANN)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, n, rows = 0, 0, None
    for x, y in batches(ds, batch_size):
        xs = encode(x, g)
        outs, _ = model.forward_all(xs)
        correct += int((membrane(outs[-1], "max").argmax(1) == y).sum())
        batch = layer_costs(model, xs, outs)
        for row in batch:  # batch means -> sums over samples
            for key in ("synops", "spikes"):
                if key in row:
                    row[key] *= len(y)
        if rows is None:
            rows = batch
        else:
            for acc, row in zip(rows, batch):
                for key in ("synops", "spikes"):
                    if key in row:
                        acc[key] += row[key]
                if "input_binary" in row:
                    acc["input_binary"] = acc["input_binary"] and row["input_binary"]
        n += len(y)
    m: Dict[str, float] = {"accuracy": correct / n}
    totals = dict(synops=0.0, spikes=0.0, ann_macs=0.0, synops_spiking=0.0, ann_macs_spiking=0.0)
    for row in rows:
        for key in ("synops", "spikes", "ann_macs"):
            if key in row:
                v = row[key] if key == "ann_macs" else row[key] / n
                m[f"{key}/{row['layer']}"] = v
                totals[key] += v
        if row.get("input_binary"):
            totals["synops_spiking"] += row["synops"] / n
            totals["ann_macs_spiking"] += row["ann_macs"]
    m.update(totals)
    return m


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    seed_everything(c.seed, deterministic=c.deterministic)
    start = time.perf_counter()
    data = load_data(c)
    encode = make_encoder(c)
    model = build_model(c, data.n_in, data.n_classes)
    opt = make_optimizer("adam", model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed),
                        collate_fn=None if c.encoder != "events" else sgdata.time_major_collate)

    def eval_fn(model):
        m = evaluate(model, data.test, encode, seed=c.seed + 1)
        return {"test_accuracy": m["accuracy"], "spikes": m["spikes"]}

    trainer = Trainer(model, opt, make_objective(c, encode), scheduler=sched, evaluate=eval_fn,
                      log_path=rd.path / "log.jsonl", checkpoint_dir=rd.path / "checkpoints",
                      keep_checkpoints=2, progress=c.progress)
    history = trainer.fit(loader, c.epochs, resume="latest" if resume else None)
    test = evaluate(model, data.test, encode, seed=c.seed + 2)
    last = history[-1]
    metrics = {
        "test_accuracy": test["accuracy"],
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "epochs": len(history),
        "parameters": n_params(model),
        "spikes_per_inference": test["spikes"],
        "synops_per_inference": test["synops"],
        "ann_macs_per_inference": test["ann_macs"],
        "synops_over_ann_macs": test["synops"] / test["ann_macs"],
        # the layers fed by spikes: accumulates per inference vs the same layers' ANN MACs
        "synops_spike_input_per_inference": test["synops_spiking"],
        "ann_macs_spike_input_layers": test["ann_macs_spiking"],
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": sum(r["seconds"] for r in history),
    }
    metrics.update({k: v for k, v in test.items() if "/" in k})
    rd.write_metrics(metrics)
    figures = _figures(c, model, data, encode, history, rd)
    rd.write_report(f"Vision: spiking {c.arch.upper()} on {c.dataset}", __doc__, c, metrics,
                    [epoch_curve(history)], figures)
    return Result(metrics, history, rd.path)


# --- figures ---------------------------------------------------------------------------------

def _figures(c: Config, model: nn.Sequential, data, encode, history, rd: RunDir) -> List[str]:
    from .. import viz
    viz.save_curves(rd.path / "curves.png", history,
                    {"loss": ["train_loss"], "accuracy": ["train_accuracy", "test_accuracy"],
                     "activity": ["spikes"]})
    x, y = next(iter(batches(data.test, 1)))
    with torch.no_grad():
        xs = encode(x, torch.Generator().manual_seed(c.seed + 2))
        outs, _ = model.forward_all(xs)
    # feature maps as rasters: neuron index = channel-major flattening of (C, *spatial)
    panels = [] if c.encoder == "current" else [("input", xs[:, 0].flatten(1).numpy())]
    panels += [(f"layer {i} {type(m).__name__} {tuple(outs[i].shape[2:])}",
                outs[i][:, 0].flatten(1).numpy())
               for i, m in enumerate(model.layers) if isinstance(m, nn.LIF)]
    viz.save_rasters(rd.path / "rasters.png", panels, dt_ms=c.dt_ms)
    figures = ["curves.png", "rasters.png"]
    maps = [(f"layer {i} {type(m).__name__}", outs[i][:, 0].sum(0))
            for i, m in enumerate(model.layers) if isinstance(m, nn.LIF) and outs[i].dim() > 3]
    if maps:
        _save_feature_maps(rd.path / "feature_maps.png", maps, f"spike counts over {c.n_steps} "
                           f"steps, one test sample (label {int(y[0])})")
        figures.append("feature_maps.png")
    first = next(m for m in model.layers if _synaptic(m))
    if isinstance(first, (torch.nn.Conv1d, torch.nn.Conv2d)):
        _save_kernels(rd.path / "kernels.png", first.weight.detach()[:, 0],
                      "learned first-layer kernels (one per output channel)")
        figures.append("kernels.png")
    return figures


def _save_feature_maps(path: Path, maps, title: str) -> None:
    """Spike-count maps ``[C, L]`` (rows = channels) or ``[C, H, W]`` (channels side by side)."""
    from ..viz import pyplot
    plt = pyplot()
    fig, axes = plt.subplots(len(maps), 1, figsize=(7, 1.8 * len(maps) + 0.5), squeeze=False)
    for ax, (name, counts) in zip(axes[:, 0], maps):
        img = counts.numpy() if counts.dim() == 2 else _mosaic(counts).numpy()
        im = ax.imshow(img, cmap="viridis", aspect="auto" if counts.dim() == 2 else "equal",
                       interpolation="nearest")
        ax.set_title(f"{name} {tuple(counts.shape)}", fontsize=8)
        ax.set_ylabel("channel" if counts.dim() == 2 else "")
        fig.colorbar(im, ax=ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mosaic(maps: Tensor, cols: int = 8) -> Tensor:
    """``[C, H, W]`` -> one image of the channel maps in rows of ``cols``, NaN-separated."""
    C, H, W = maps.shape
    rows = -(-C // cols)
    out = torch.full((rows * (H + 1) - 1, cols * (W + 1) - 1), float("nan"))
    for k in range(C):
        r, q = divmod(k, cols)
        out[r * (H + 1):r * (H + 1) + H, q * (W + 1):q * (W + 1) + W] = maps[k]
    return out


def _save_kernels(path: Path, w: Tensor, title: str) -> None:
    """First-layer kernels ``w [C_out, *k]``: one image per 2-D kernel, one row per 1-D one."""
    from ..viz import pyplot
    plt = pyplot()
    w = w.numpy()
    lim = float(abs(w).max()) or 1.0
    if w.ndim == 2:
        fig, ax = plt.subplots(figsize=(4, 0.15 * w.shape[0] + 1.2))
        im = ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xlabel("kernel offset")
        ax.set_ylabel("output channel")
        fig.colorbar(im, ax=ax)
    else:
        cols = min(8, w.shape[0])
        rows = -(-w.shape[0] // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.4),
                                 squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.axis("off")
            if k < w.shape[0]:
                ax.imshow(w[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
