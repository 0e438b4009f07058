"""Spiking classification trained end to end with surrogate gradients.

Methods, in the order they run:

1. **Data** (offline): ``digits`` (sklearn 8x8, stratified 75/25), ``mnist1d`` (4000/1000,
   generated), ``randman`` (Zenke & Vogels 2021, 80/10/10 in order) or ``shd`` (Heidelberg
   HDF5 file from ``shd_path``; ``shd_test_path`` for the test file).
2. **Encoding** to a time-major sequence ``[T, B, F]``: ``rate`` (Bernoulli, p = x per step),
   ``latency`` (one spike, earlier for larger x), ``current`` (the analog value injected at
   every step), or ``spikes`` (data already spike trains).
3. **Model**: ``F -> hidden LIF (x layers, optionally recurrent) -> C`` readout neurons:
   LIF output neurons for the ``count`` readout, a non-spiking LI for membrane readouts.
   Weights start from PyTorch's init with the readout scaled by ``out_gain`` (``init=torch``)
   or from :func:`spikegrad.nn.init.fluctuation_driven_` for the encoded input's rate
   (``init=fluctuation``, the Randman preset).
4. **Objective**: cross-entropy on spike counts (``count``) or on the readout membrane
   reduced over time (``max``, ``mean``, ``last``), plus optional activity regularisers
   (per-neuron lower bound and per-layer upper bound on spike counts, L2).
5. **Training**: :class:`spikegrad.train.Trainer` with Adam(W), optional clipping, cosine LR,
   checkpoints every epoch; the final model is evaluated once on the test set.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from .. import data as sgdata
from .. import losses, nn
from ..functional.readout import membrane, spike_count
from ..train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from .config import ConfigError
from .datasets import Data, load_data, make_encoder
from .report import Result, RunDir

DATASETS = ("digits", "mnist1d", "randman", "shd")
ENCODERS = ("rate", "latency", "current", "spikes")
READOUTS = ("count", "max", "mean", "last")
# "torch": PyTorch's Linear init, the readout's weights times out_gain; "fluctuation":
# sg.nn.init.fluctuation_driven_ for every layer from the input's measured rate
INITS = ("torch", "fluctuation")


@dataclass
class Config:
    """Classification run. ``None`` fields take the dataset's preset (see ``PRESETS``)."""

    dataset: str = "digits"
    shd_path: str = ""
    shd_test_path: str = ""
    seed: int = 0
    deterministic: bool = True
    epochs: Optional[int] = None
    n_steps: Optional[int] = None
    dt_ms: Optional[float] = None
    encoder: Optional[str] = None
    hidden: Optional[int] = None
    layers: Optional[int] = None
    recurrent: Optional[bool] = None
    bias: Optional[bool] = None
    init: Optional[str] = None      # one of INITS
    out_gain: Optional[float] = None
    tau_mem_ms: Optional[float] = None
    tau_syn_ms: Optional[float] = None
    tau_out_ms: Optional[float] = None
    reset: Optional[str] = None
    surrogate: Optional[str] = None
    surrogate_beta: Optional[float] = None
    readout: Optional[str] = None
    count_scale: Optional[float] = None
    dropout: Optional[float] = None
    augment_shift: Optional[int] = None
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    grad_clip: Optional[float] = None
    batch_size: Optional[int] = None
    reg_low: Optional[float] = None
    reg_high: Optional[float] = None
    reg_weight: Optional[float] = None
    max_train: Optional[int] = None
    progress: bool = True


PRESETS: Dict[str, dict] = {
    # 64 -> 128 LIF -> 10 LIF, rate-coded pixels, spike-count cross-entropy.
    "digits": dict(epochs=30, n_steps=25, dt_ms=1.0, encoder="rate", hidden=128, layers=1,
                   recurrent=False, bias=True, init="torch", out_gain=1.0, tau_mem_ms=10.0,
                   tau_syn_ms=0.0,
                   tau_out_ms=10.0, reset="subtract", surrogate="fast_sigmoid", surrogate_beta=10.0,
                   readout="count", count_scale=0.5, dropout=0.0, augment_shift=0, optimizer="adam",
                   lr=2e-3,
                   weight_decay=0.0, grad_clip=0.0, batch_size=64, reg_low=0.0, reg_high=0.0,
                   reg_weight=0.0, max_train=0),
    # stork example 1 (Rossbroich, Gygax & Zenke 2022): 20 -> 128 LIF -> 10 LI, max-over-time
    # CE, SuperSpike beta 20, batch 250, tau 20/10/200 ms, dt 2 ms, reset to zero, activity
    # bounds (upper 4 spikes/neuron/trial), fluctuation-driven init as in stork (out_gain is
    # used only with --set init=torch).
    "randman": dict(epochs=60, n_steps=100, dt_ms=2.0, encoder="spikes", hidden=128, layers=1,
                    recurrent=False, bias=False, init="fluctuation", out_gain=10.0, tau_mem_ms=20.0,
                    tau_syn_ms=10.0, tau_out_ms=200.0,
                    reset="to_value", surrogate="fast_sigmoid", surrogate_beta=20.0,
                    readout="max", count_scale=1.0, dropout=0.0, augment_shift=0,
                    optimizer="adam", lr=5e-3,
                    weight_decay=0.0, grad_clip=0.0, batch_size=250, reg_low=0.01,
                    reg_high=4.0, reg_weight=1e-3, max_train=0),
    # 40 -> 512 LIF -> 512 LIF -> 10 LI (max over time); the 40 samples are injected as
    # currents at every step; training signals are randomly rolled by up to +-5 positions.
    "mnist1d": dict(epochs=40, n_steps=10, dt_ms=1.0, encoder="current", hidden=512, layers=2,
                    recurrent=False, bias=True, init="torch", out_gain=10.0, tau_mem_ms=10.0,
                    tau_syn_ms=0.0, tau_out_ms=10.0, reset="subtract",
                    surrogate="fast_sigmoid", surrogate_beta=10.0, readout="max",
                    count_scale=1.0, dropout=0.0, augment_shift=5, optimizer="adam", lr=2e-3,
                    weight_decay=0.0, grad_clip=0.0, batch_size=64, reg_low=0.0, reg_high=0.0,
                    reg_weight=0.0, max_train=0),
    # Cramer et al. 2022 recurrent baseline: 700 -> 256 recurrent LIF -> 20 LI (max).
    "shd": dict(epochs=30, n_steps=100, dt_ms=14.0, encoder="spikes", hidden=256, layers=1,
                recurrent=True, bias=False, init="torch", out_gain=10.0, tau_mem_ms=20.0,
                tau_syn_ms=10.0,
                tau_out_ms=20.0,
                reset="subtract", surrogate="fast_sigmoid", surrogate_beta=10.0,
                readout="max", count_scale=1.0, dropout=0.0, augment_shift=0, optimizer="adam",
                lr=2e-3, weight_decay=0.0, grad_clip=5.0, batch_size=64, reg_low=0.0, reg_high=10.0,
                reg_weight=1e-4, max_train=0),
}


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the dataset preset, then validate."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    preset = PRESETS[cfg.dataset]
    if cfg.init == "fluctuation" and cfg.out_gain is not None:
        raise ConfigError("out_gain scales PyTorch's readout init (init=torch); init=fluctuation "
                          "draws the readout weights itself: drop out_gain or use init=torch")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in preset.items()
                                      if getattr(cfg, k) is None})
    _check(cfg)
    return cfg


def _check(c: Config) -> None:
    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)
    need(c.encoder in ENCODERS, f"encoder must be one of {', '.join(ENCODERS)}; got {c.encoder!r}")
    need(c.init in INITS, f"init must be one of {', '.join(INITS)}; got {c.init!r}")
    need(c.init != "fluctuation" or c.encoder != "current",
         "init=fluctuation sets weights for spike input of a measured rate; encoder=current "
         "injects analog currents: use init=torch (with out_gain) or a spiking encoder")
    need(c.readout in READOUTS, f"readout must be one of {', '.join(READOUTS)}; got {c.readout!r}")
    for key in ("epochs", "n_steps", "hidden", "layers", "batch_size"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    for key in ("dt_ms", "tau_mem_ms", "tau_out_ms", "lr", "surrogate_beta", "count_scale",
                "out_gain"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("tau_syn_ms", "weight_decay", "grad_clip", "reg_low", "reg_high", "reg_weight",
                "max_train", "augment_shift"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0 (0 switches it off); got {getattr(c, key)}")
    need(0 <= c.dropout < 1, f"dropout must be in [0, 1); got {c.dropout}")
    need(not c.augment_shift or c.dataset == "mnist1d",
         "augment_shift (random roll of a 1-D signal) applies to dataset=mnist1d only")
    need(c.dataset != "shd" or bool(c.shd_path),
         "dataset=shd needs --set shd_path=PATH/shd_train.h5 (download SHD from "
         "zenkelab.org; spikegrad never downloads at run time)")
    need((c.encoder == "spikes") == (c.dataset in ("randman", "shd")),
         f"encoder={c.encoder!r} does not fit dataset={c.dataset!r}: randman and shd are spike "
         "trains (encoder=spikes); digits and mnist1d are analog (rate, latency or current)")


# --- data ------------------------------------------------------------------------------------

# --- model -----------------------------------------------------------------------------------

def build_model(c: Config, n_in: int, n_classes: int, x_train: Optional[Tensor] = None,
                encode=None) -> nn.Sequential:
    """The network of ``c``; ``init=fluctuation`` needs the training inputs ``x_train``
    (as stored, ``[N, ...]``) and the encoder to measure the input rate from."""
    if c.init == "fluctuation" and (x_train is None or encode is None):
        raise ValueError("init=fluctuation draws the weights for the input's spike rate: pass "
                         "x_train and encode to build_model")
    common = dict(dt=c.dt_ms * 1e-3, surrogate=c.surrogate, beta=c.surrogate_beta,
                  reset=c.reset, tau_syn=c.tau_syn_ms * 1e-3 if c.tau_syn_ms else None)
    layers: List[torch.nn.Module] = []
    width = n_in
    for _ in range(c.layers):
        # a bias is a constant current: with slow synapses and membranes it is integrated
        # into tonic firing, so spike-timing data sets train without one
        layers.append(nn.Linear(width, c.hidden, bias=c.bias))
        lif = nn.LIF(c.hidden, tau_mem=c.tau_mem_ms * 1e-3, **common)
        layers.append(nn.Recurrent(lif, autapses=False) if c.recurrent else lif)
        if c.dropout:
            layers.append(nn.Dropout(c.dropout))
        width = c.hidden
    out = nn.Linear(width, n_classes, bias=c.bias)
    if c.init == "torch":
        with torch.no_grad():
            out.weight.mul_(c.out_gain)
    layers.append(out)
    if c.readout == "count":
        layers.append(nn.LIF(n_classes, tau_mem=c.tau_out_ms * 1e-3, **common))
    else:
        # unit DC gain: the readout membrane is a low-pass of its weighted input whatever
        # tau_out is, so logits start at a sane scale
        layers.append(nn.LI(n_classes, tau_mem=c.tau_out_ms * 1e-3, dt=c.dt_ms * 1e-3,
                            scale_input=True))
    model = nn.Sequential(*layers)
    if c.init == "fluctuation":
        fluctuation_init(c, model, x_train, encode)
    return model


def fluctuation_init(c: Config, model: nn.Sequential, x_train: Tensor, encode) -> float:
    """Draw every layer's weights with :func:`spikegrad.nn.init.fluctuation_driven_`
    (Rossbroich et al. 2022: centred, membrane std = threshold), for input spikes at the rate
    the encoder produces on (up to 1000) training samples; hidden layers assume the same
    rate. Uses the global RNG (seeded). Returns that rate in Hz."""
    with torch.no_grad():
        xs = encode(x_train[:1000], torch.Generator().manual_seed(c.seed))
    rate_hz = float(xs.float().mean()) / (c.dt_ms * 1e-3)
    if not 0 < rate_hz * c.dt_ms * 1e-3 < 1:
        raise ConfigError(f"init=fluctuation needs input spikes with a rate in (0, 1/dt); the "
                          f"encoded training inputs fire at {rate_hz:.3g} Hz: use init=torch")
    with torch.no_grad():
        nn.init.fluctuation_driven_(model, rate_hz=rate_hz)
    return rate_hz


def spiking_layers(model: nn.Sequential) -> List[int]:
    """Indices of hidden layers whose output is spikes."""
    return [i for i, m in enumerate(model.layers[:-1]) if isinstance(m, (nn.LIF, nn.Recurrent))]


def scores(c: Config, out: Tensor) -> Tensor:
    """Class scores ``[B, C]`` from the readout output ``[T, B, C]``."""
    return spike_count(out) if c.readout == "count" else membrane(out, c.readout)


def make_objective(c: Config, encode):
    def objective(model, x, y, state):
        if c.augment_shift:
            x = sgdata.random_roll(x, c.augment_shift)
        outs, state = model.forward_all(encode(x), state)
        out = outs[-1]
        if c.readout == "count":
            loss = losses.count_cross_entropy(out, y, c.count_scale)
        else:
            loss = losses.membrane_cross_entropy(out, y, c.readout)
        if c.reg_weight:
            for i in spiking_layers(model):
                if c.reg_low:
                    loss = loss + c.reg_weight * losses.rate_band(outs[i], low=c.reg_low)
                if c.reg_high:
                    loss = loss + c.reg_weight * losses.rate_band(outs[i], high=c.reg_high,
                                                                  per="layer")
        acc = (scores(c, out).argmax(1) == y).float().mean().item()
        return ObjectiveOutput(loss, state, {"accuracy": acc, "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(c: Config, model: nn.Sequential, ds: TensorDataset, encode, seed: int,
             batch_size: int = 500) -> Dict[str, float]:
    """Accuracy and mean spikes per hidden neuron per sample; the encoder's noise is drawn
    from a fixed generator so every evaluation sees the same spike trains."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, spikes, n = 0, 0.0, 0
    for i in range(0, len(ds), batch_size):
        x, y = (t[i:i + batch_size] for t in ds.tensors)
        outs, _ = model.forward_all(encode(x, g))
        correct += int((scores(c, outs[-1]).argmax(1) == y).sum())
        hidden = spiking_layers(model)
        spikes += sum(float(outs[j].sum()) / outs[j][0, 0].numel() for j in hidden) / max(len(hidden), 1)
        n += len(y)
    return {"accuracy": correct / n, "spikes_per_neuron": spikes / n}


# --- run -------------------------------------------------------------------------------------

def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    seed_everything(c.seed, deterministic=c.deterministic)
    start = time.perf_counter()
    data = load_data(c)
    encode = make_encoder(c)
    model = build_model(c, data.n_in, data.n_classes, data.train.tensors[0], encode)
    opt = make_optimizer(c.optimizer, model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))
    held_out = data.val if data.val is not None else data.test
    prefix = "val" if data.val is not None else "test"

    def eval_fn(model):
        m = evaluate(c, model, held_out, encode, seed=c.seed + 1)
        return {f"{prefix}_accuracy": m["accuracy"], "spikes_per_neuron": m["spikes_per_neuron"]}

    trainer = Trainer(model, opt, make_objective(c, encode), scheduler=sched,
                      grad_clip=c.grad_clip or None, evaluate=eval_fn,
                      log_path=rd.path / "log.jsonl", checkpoint_dir=rd.path / "checkpoints",
                      keep_checkpoints=2, progress=c.progress)
    history = trainer.fit(loader, c.epochs, resume="latest" if resume else None)
    test = evaluate(c, model, data.test, encode, seed=c.seed + 2)
    last = history[-1]
    metrics = {
        "test_accuracy": test["accuracy"],
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "epochs": len(history),
        "spikes_per_neuron": test["spikes_per_neuron"],
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": sum(r["seconds"] for r in history),
    }
    if data.val is not None:
        metrics["val_accuracy"] = last["val_accuracy"]
    rd.write_metrics(metrics)
    _figures(c, model, data, encode, history, rd)
    rd.write_report(f"Classification: {c.dataset}", __doc__, c, metrics, history,
                    ["curves.png", "rasters.png", "membrane.png"])
    return Result(metrics, history, rd.path)


def _figures(c: Config, model, data: Data, encode, history, rd: RunDir) -> None:
    from .. import viz
    viz.save_curves(rd.path / "curves.png", history,
                    {"loss": ["train_loss"],
                     "accuracy": ["train_accuracy", "val_accuracy", "test_accuracy"],
                     "activity": ["spikes_per_neuron"]})
    x, y = (t[:1] for t in data.test.tensors)
    with torch.no_grad():
        xs = encode(x, torch.Generator().manual_seed(c.seed + 2))
        outs, _ = model.forward_all(xs)
    panels = [("input", xs[:, 0].numpy())]
    panels += [(f"hidden layer {k + 1}", outs[i][:, 0].numpy())
               for k, i in enumerate(spiking_layers(model))]
    if c.encoder == "current":
        panels = panels[1:]
    viz.save_rasters(rd.path / "rasters.png", panels, dt_ms=c.dt_ms)
    readout = model.layers[-1]
    if isinstance(readout, nn.LIF):
        with torch.no_grad():
            zs, tr = readout.trace(outs[-2])
            p = readout.params()
            # show the membrane that was compared to the threshold (before the reset)
            v_pre = tr.v + zs * p.threshold if p.reset == "subtract" else tr.v
        v, thr = v_pre[:, 0].numpy(), float(p.threshold)
        title = "output LIF membranes (before reset)"
    else:
        v, thr, title = outs[-1][:, 0].numpy(), None, "readout LI membranes"
    viz.save_traces(rd.path / "membrane.png", v, [str(k) for k in range(v.shape[1])],
                    f"{title}; label {int(y[0])}", threshold=thr, highlight=int(y[0]),
                    dt_ms=c.dt_ms)
