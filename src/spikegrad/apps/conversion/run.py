"""ANN-to-SNN conversion next to direct surrogate-gradient training: accuracy, latency and
cost of each, on the same data, architecture and budget.

Methods, in the order they run:

1. **Data and architecture**: the vision set-up (:mod:`spikegrad.apps.setups.vision`):
   ``digits`` (sklearn 8x8, a 2-D CNN or an MLP) or ``mnist1d`` (a 1-D CNN), the dataset's
   preset architecture, epochs, learning rate and batch size.
2. **ANN**: the same architecture with batch norm and ReLU in place of the spiking norm and
   neurons (:func:`.ann.build_ann`), trained with Adam, a cosine learning rate and
   cross-entropy. ``qcfs``: a second ANN with the QCFS activation (quantisation-clip-floor-
   shift, ``qcfs_levels`` levels, trainable clip; Bu et al. 2022) instead of ReLU.
3. **Conversion** (:func:`spikegrad.convert.convert`): batch norm folded into the weights,
   layer-wise normalisation by the ``percentile`` of each layer's activations on
   ``calibration`` training samples (``norm_method=max``: threshold balancing by the maximum),
   IF neurons with reset by subtraction and threshold 1, biases as constant currents, the
   analog input injected as a current at every step, max pooling by the spiking max-pool gate
   (``max_pool``), and an accumulating non-spiking output layer. A QCFS layer's scale is its
   trained clip and its neurons start at half threshold.
4. **Hybrid**: the converted ReLU net fine-tuned with surrogate gradients (the IF neurons'
   surrogate) at ``hybrid_steps`` steps for ``hybrid_epochs`` epochs (Adam, ``hybrid_lr``),
   cross-entropy on the accumulated output divided by T (Rathi et al. 2020).
5. **Direct**: the vision app's spiking network (threshold-dependent batch norm, LIF, LI
   readout, cross-entropy on the membrane's maximum over time) trained from scratch at each T
   of ``direct_steps`` for the preset's epochs.
6. **Evaluation** on the test set: the converted and hybrid nets at every T of ``steps`` (one
   run of the longest T: the input is constant and the net causal, so the prediction at T is
   the argmax of the output accumulated over the first T steps), each direct net at its own
   T. Cost per inference: spikes of all spiking layers and synaptic operations (each event
   into a layer costs its fan-out; the analog input costs one operation per synapse of each
   nonzero input per step), next to the ANN's multiply-accumulates. Training time is the
   time of each method's training epochs (conversion adds the ANN's).
7. **Trade-off**: the target accuracy is the ANN's minus one point; for each method the
   smallest T of the grid that reaches it, with its synaptic operations.

Each training (the ANN, the QCFS ANN, the hybrid fine-tuning, each direct net) checkpoints
every epoch under ``checkpoints/<name>`` and ``--resume`` continues from there: a finished
training is loaded, not repeated, and the evaluations (no randomness) are redone.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from ...convert import QCFS, convert, repeat_input
from ...train import ObjectiveOutput, make_optimizer, seed_everything
from ..report import Result, RunDir
from ..setups.vision import build_model, evaluate, load_data, make_encoder, make_objective
from .ann import ann_accuracy, ann_macs, build_ann, fit_stage, train_ann, train_seconds
from .config import Config, int_list, methods, validate
from .measure import over_time
from .report import figures, tables

__all__ = ["run", "fine_tune", "train_direct"]


def fine_tune(c: Config, snn, train, checkpoint_dir: Optional[Path] = None,
              resume: bool = False) -> float:
    """Surrogate-gradient fine-tuning of a converted net at ``c.hybrid_steps``; seconds of
    training. ``checkpoint_dir``, ``resume``: as in :func:`.ann.fit_stage`."""
    T = c.hybrid_steps
    opt = make_optimizer("adam", snn.parameters(), lr=c.hybrid_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, c.hybrid_epochs))
    loader = DataLoader(train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed + 1))

    def objective(model, x, y, state):
        out, _ = model(repeat_input(x, T))
        logits = out[-1] / T
        acc = float((logits.argmax(1) == y).float().mean())
        return ObjectiveOutput(torch.nn.functional.cross_entropy(logits, y), None,
                               {"accuracy": acc, "n": len(y)})

    if not c.hybrid_epochs:
        return 0.0
    return train_seconds(fit_stage((snn, opt, objective), loader, c.hybrid_epochs,
                                   checkpoint_dir, resume, scheduler=sched))


def train_direct(c: Config, data, T: int, checkpoint_dir: Optional[Path] = None,
                 resume: bool = False) -> Dict[str, float]:
    """The vision set-up's spiking net trained from scratch at ``T`` steps; its test
    accuracy, spikes and synaptic operations per inference and training seconds.
    ``checkpoint_dir``, ``resume``: as in :func:`.ann.fit_stage`."""
    vc = dataclasses.replace(c, n_steps=T)
    seed_everything(c.seed, deterministic=c.deterministic)
    model = build_model(vc, data.n_in, data.n_classes)
    encode = make_encoder(vc)
    opt = make_optimizer("adam", model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))
    history = fit_stage((model, opt, make_objective(vc, encode)), loader, c.epochs,
                        checkpoint_dir, resume, scheduler=sched)
    seconds = train_seconds(history)
    m = evaluate(model, data.test, encode, seed=c.seed + 2)
    return {"accuracy": m["accuracy"], "spikes": m["spikes"], "synops": m["synops"],
            "train_seconds": seconds}


def _say(c: Config, text: str) -> None:
    if c.progress:
        print(f"conversion: {text}", flush=True)


def _ann(c: Config, data, activation, checkpoint_dir: Path, resume: bool) -> tuple:
    seed_everything(c.seed, deterministic=c.deterministic)
    model = build_ann(c, data.n_in, data.n_classes, activation)
    return model, train_seconds(train_ann(c, model, data.train, checkpoint_dir, resume))


def _converted(c: Config, ann, data) -> torch.nn.Module:
    calib = data.train.tensors[0][:c.calibration]
    return convert(copy.deepcopy(ann).eval(), calib, norm=c.norm_method,
                   percentile=c.percentile, max_pool=c.max_pool, surrogate=c.surrogate,
                   beta=c.surrogate_beta)


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    """Train the ANNs and spiking nets of ``cfg.methods``, convert, evaluate over T; write
    ``config.json``, ``metrics.json``, ``curves.json`` (every method's accuracy and cost at
    every T), figures and ``report.md``; ``resume``: continue each training from its
    checkpoints under ``checkpoints/<name>`` (a finished one is loaded, not trained again),
    which gives the numbers of an uninterrupted run."""
    c = validate(cfg)
    names = methods(c)
    rd = RunDir(out_dir)
    rd.write_config(c)
    ckpt = rd.path / "checkpoints"
    start = time.perf_counter()
    data = load_data(c)
    steps = int_list(c.steps, "steps")
    _say(c, f"training the ANN ({c.dataset} {c.arch}, {c.epochs} epochs)")
    ann, ann_seconds = _ann(c, data, torch.nn.ReLU, ckpt / "ann", resume)
    metrics: Dict[str, float] = {"ann_test_accuracy": ann_accuracy(ann, data.test),
                                 "ann_train_seconds": ann_seconds,
                                 "ann_macs": ann_macs(ann, data.n_in)["total"]}
    curves: Dict[str, Dict[int, dict]] = {}
    rates = None
    if "plain" in names or "hybrid" in names:
        plain = _converted(c, ann, data)
        curves["plain"] = over_time(plain, data.test, steps)
        rates = curves["plain"].pop(-1)
        metrics["plain_train_seconds"] = ann_seconds
        if "hybrid" in names:
            _say(c, f"fine-tuning the converted net at T = {c.hybrid_steps}")
            seconds = fine_tune(c, plain, data.train, ckpt / "hybrid", resume)
            curves["hybrid"] = over_time(plain, data.test, steps)
            curves["hybrid"].pop(-1)
            metrics["hybrid_train_seconds"] = ann_seconds + seconds
        if "plain" not in names:
            curves.pop("plain")
    if "qcfs" in names:
        _say(c, f"training the QCFS ANN ({c.qcfs_levels} levels)")
        qann, q_seconds = _ann(c, data, lambda: QCFS(levels=c.qcfs_levels), ckpt / "qcfs_ann",
                               resume)
        metrics["qcfs_ann_test_accuracy"] = ann_accuracy(qann, data.test)
        curves["qcfs"] = over_time(_converted(c, qann, data), data.test, steps)
        curves["qcfs"].pop(-1)
        metrics["qcfs_train_seconds"] = q_seconds
    if "direct" in names:
        curves["direct"] = {}
        for T in int_list(c.direct_steps, "direct_steps"):
            _say(c, f"training the spiking net directly at T = {T}")
            d = train_direct(c, data, T, ckpt / f"direct_T{T}", resume)
            curves["direct"][T] = {k: d[k] for k in ("accuracy", "spikes", "synops")}
            metrics[f"direct_train_seconds_T{T}"] = d["train_seconds"]
    for name, by_t in curves.items():
        for T, row in by_t.items():
            for key, value in row.items():
                metrics[f"{name}_{key}_T{T}"] = value
    metrics.update(_tradeoff(metrics["ann_test_accuracy"], curves))
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    _write_curves(rd, curves)
    figs = figures(c, curves, rates, metrics, rd)
    rd.write_report(f"Conversion vs direct training: {c.dataset} {c.arch.upper()}", __doc__, c,
                    metrics, tables(c, curves, rates, metrics), figs)
    return Result(metrics, [], rd.path)


def _tradeoff(ann_acc: float, curves: Dict[str, Dict[int, dict]]) -> Dict[str, float]:
    """Per method that reaches the ANN's accuracy minus one point at some T of the grid: the
    smallest such T and its synaptic operations (no keys for a method that does not)."""
    target, out = ann_acc - 0.01, {"target_accuracy": ann_acc - 0.01}
    for name, by_t in curves.items():
        hit = [T for T in sorted(by_t) if by_t[T]["accuracy"] >= target]
        if hit:
            out[f"{name}_steps_to_target"] = float(hit[0])
            out[f"{name}_synops_to_target"] = by_t[hit[0]]["synops"]
    return out


def _write_curves(rd: RunDir, curves: Dict[str, Dict[int, dict]]) -> None:
    import json
    rows: List[dict] = [{"method": name, "T": T, **row} for name, by_t in curves.items()
                        for T, row in sorted(by_t.items())]
    (rd.path / "curves.json").write_text(json.dumps(rows, indent=2) + "\n")
