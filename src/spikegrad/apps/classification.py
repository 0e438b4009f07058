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

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import nn
from ..train import Trainer, make_optimizer, seed_everything
from ..train.log import loggers_for
from .report import Result, RunDir, epoch_curve
from .setups.classify import (  # the set-up this app runs, re-exported
    DATASETS, ENCODERS, READOUTS, INITS, Config, PRESETS, validate, build_model,
    fluctuation_init, spiking_layers, scores, make_objective, evaluate, Data, load_data,
    make_encoder)

__all__ = ["DATASETS", "ENCODERS", "READOUTS", "INITS", "Config", "PRESETS", "validate",
           "build_model", "fluctuation_init", "spiking_layers", "scores",
           "make_objective", "evaluate", "Data", "load_data", "make_encoder", "run"]


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
                      loggers=loggers_for(c.log, rd.path / "log.jsonl"), keep_checkpoints=2,
                      progress=c.progress)
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
    rd.write_report(f"Classification: {c.dataset}", __doc__, c, metrics, [epoch_curve(history)],
                    ["curves.png", "rasters.png", "membrane.png"])
    return Result(metrics, history, rd.path)


def _figures(c: Config, model, data: Data, encode, history, rd: RunDir) -> None:
    from .. import viz
    viz.save_curves(rd.path / "curves.png", history,
                    {"loss": ["train_loss"],
                     "accuracy": ["train_accuracy", "val_accuracy", "test_accuracy"],
                     "hidden spikes per neuron per held-out sample": ["spikes_per_neuron"]})
    x, y = (t[:1] for t in data.test.tensors)
    with torch.no_grad():
        xs = encode(x, torch.Generator().manual_seed(c.seed + 2))
        outs, _ = model.forward_all(xs)
    which = f"test sample 0, label {int(y[0])}"
    panels = [(f"input ({which})", xs[:, 0].numpy())]
    panels += [(f"hidden layer {k + 1} ({which})", outs[i][:, 0].numpy())
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
