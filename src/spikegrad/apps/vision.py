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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .. import data as sgdata
from .. import nn
from ..train import Trainer, make_optimizer, seed_everything
from ..train.log import loggers_for
from .config import ConfigError
from .report import Result, RunDir, epoch_curve
from .setups.vision import (PRESETS, SetupFields, batches, build_model, evaluate, layer_costs, load_data,
                            make_encoder, make_objective, n_params)

__all__ = ["Config", "PRESETS", "validate", "build_model", "layer_costs", "run", "Result"]

DATASETS = ("mnist1d", "digits", "mnist", "nmnist")
ARCHS = ("cnn", "mlp")
ENCODERS = ("current", "rate", "latency", "events")
POOLS = ("none", "max", "avg", "sum")


@dataclass
class Config(SetupFields):
    """Vision run. ``None`` fields take the dataset's preset (see ``PRESETS``).

    ``arch=cnn``: ``conv_layers`` blocks of ``channels`` channels (doubled after the first
    block when pooling halves the maps), kernel ``kernel_size`` (+2 for the first block of a
    1-D net, which sees the raw signal), stride ``stride``, padding ``kernel_size // 2``.
    ``arch=mlp``: two dense layers of ``hidden`` LIF neurons. ``norm``: ``threshold`` (tdBN),
    ``per_step`` (BNTT) or ``none``, on the currents of every spiking layer.
    """

    dataset: str = "mnist1d"      # one of DATASETS: mnist1d, digits, mnist, nmnist
    mnist_path: str = ""          # dataset=mnist: folder with the four MNIST IDX files
    nmnist_path: str = ""         # dataset=nmnist: folder with the extracted Train/ and Test/
    arch: str = "cnn"             # one of ARCHS: cnn (conv blocks) or mlp (two dense layers)
    seed: int = 0
    deterministic: bool = True
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


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
                      loggers=loggers_for(c.log, rd.path / "log.jsonl"), keep_checkpoints=2,
                      progress=c.progress)
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
                     "spikes per test inference": ["spikes"]})
    x, y = next(iter(batches(data.test, 1)))
    with torch.no_grad():
        xs = encode(x, torch.Generator().manual_seed(c.seed + 2))
        outs, _ = model.forward_all(xs)
    # feature maps as rasters: neuron index = channel-major flattening of (C, *spatial)
    which = f"test sample 0, label {int(y[0])}"
    panels = [] if c.encoder == "current" else [(f"input ({which})",
                                                 xs[:, 0].flatten(1).numpy())]
    panels += [(f"layer {i} {type(m).__name__} {tuple(outs[i].shape[2:])} ({which})",
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
    first = next(m for m in model.layers
                 if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)))
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
        ax.set_xlabel("position along the (downsampled) signal" if counts.dim() == 2
                      else "channel maps, 8 per row")
        fig.colorbar(im, ax=ax).set_label("spikes", fontsize=8)
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
        fig.colorbar(im, ax=ax).set_label("weight", fontsize=8)
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
