"""Adversarial robustness and the information bottleneck for a spiking encoder, trained end to
end through surrogate gradients, with the checks that the robustness is not gradient masking.

Methods, in the order they run:

1. **Data** (offline): sklearn's 8x8 digits, stratified 75/25 split from the seed, pixels / 16
   in [0, 1], as one-channel images ``[1, 8, 8]``.
2. **Network**: ``64 -> hidden LIF -> readout LI`` over ``n_steps`` steps of ``dt_ms``
   (threshold 1, reset by subtraction, ``fast_sigmoid`` surrogate). The input enters as a
   current (``encoder=current``: the analog pixel at every step) or as Bernoulli spikes
   (``encoder=rate``, straight-through gradient; attacks then average ``eot`` gradients over
   encoder samples). Logits are the readout membranes' mean over time. The variational
   models (``vib``, ``robust_ib``) read ``code_neurons`` membranes instead; their mean and
   standard deviation over time give ``q(z|x) = N(mu, diag(sigma^2))`` (``latent_dim``),
   sampled by reparameterisation while training and taken at its mean for evaluation, and a
   linear decoder gives ``p(y|z)``; the prior ``r(z)`` is ``N(0, I)`` (``prior=standard``) or a
   learned diagonal Gaussian.
3. **Objectives** (:mod:`spikegrad.robust`), each training its own network from the same
   seed for ``epochs`` epochs (Adam, ``lr``, cosine schedule, batches of ``batch_size``):
   ``standard`` (cross-entropy); ``pgd_at`` (Madry et al. 2018: cross-entropy at the
   ``train_steps``-step L-inf PGD point of budget ``train_eps``, random start, step
   ``2.5 eps / steps``); ``trades`` (Zhang et al. 2019: ``CE + trades_beta * KL(f(x) || f(x'))``,
   ``x'`` maximising the KL by the same PGD); ``vib`` (Alemi et al. 2017:
   ``CE + vib_beta * KL(q(z|x) || r(z))``); ``robust_ib`` (``CE + rib_beta * KL(q(z|x) || r(z))
   + rib_lambda * max_d KL(q(z|x) || q(z|x + d))``, the inner maximum by the same PGD on the
   closed-form Gaussian KL). Every inner maximisation differentiates through the surrogate
   (BPTT). An **ANN twin** (the same layers with ReLU units) is trained on the same data with
   cross-entropy as the source of the transfer attack.
4. **Evaluation** on the test set, in eval mode: clean accuracy; L-inf PGD with
   ``pgd_steps`` steps and a random start at every budget of ``eps``; AutoAttack at
   ``eval_eps`` from torchattacks on the :class:`spikegrad.robust.SNNClassifier` (or VIB)
   module, by default in a **reduced form** (``autoattack=apgd``: APGD-CE, then APGD-T with
   every other class as the target on the inputs that survive; ``autoattack_steps`` steps,
   one restart; ``autoattack=full`` runs torchattacks' standard AutoAttack, which adds FAB-T
   and Square) on the first ``autoattack_subset`` test samples (0: all); the transfer attack:
   PGD crafted on the ANN twin at ``eval_eps`` and scored on the SNN. For the variational
   models the test-set mean of ``KL(q(z|x) || r(z))`` is the estimate of ``I(X; Z)`` (nats;
   a variational upper bound).
5. **Gradient-masking checks** (:func:`spikegrad.robust.masking_report`) at ``eval_eps`` on the
   first ``mask_subset`` test samples, each with pass or fail: the ``pgd_steps`` PGD
   continued to ``mask_steps`` steps (same random start, same step) is not weaker and
   ``mask_restarts`` restarts of it are not weaker than one (paired sign tests on the samples
   that flip, failing at a one-sided p < 0.01); at eps = 1 PGD drives
   accuracy to chance (at most 0.1 above); white-box PGD is at least as strong as the
   transfer attack from the ANN twin; the gradient-free SPSA attack (``spsa_steps`` Adam
   steps, ``spsa_samples`` directions, half-width ``spsa_perturbation``) on the first
   ``spsa_subset`` samples finds no more than the surrogate-gradient PGD does (within 5
   points and one sample).
6. **Information plane**: a ``vib`` network for each beta of ``ib_betas`` (``ib_epochs``
   epochs; the main ``vib`` run stands for its own beta when ``ib_epochs = epochs``): the
   estimate of ``I(X; Z)`` against clean and PGD accuracy at ``eval_eps``.

Each training checkpoints every epoch under ``checkpoints/<name>`` (``--resume`` continues
from there) and each model's evaluation is kept in ``evaluations/<name>.json``, so a resumed
run redoes neither.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from ... import robust
from ...train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ...train.log import loggers_for
from ...train.progress import Progress
from ..config import to_json
from ..report import Result, RunDir
from .config import Config, ib_betas, label, objectives, validate
from .evaluate import evaluate, flat, transfer_examples
from .network import build_ann, build_model, code_kl, load_images, make_objective
from .report import figures, tables

__all__ = ["run", "train", "ib_plan"]


def _ann_objective(model, x, y, state):
    logits = model(x)
    acc = float((logits.argmax(1) == y).float().mean())
    return ObjectiveOutput(torch.nn.functional.cross_entropy(logits, y), None,
                           {"acc": acc, "n": len(y)})


def train(c: Config, data, ckpt: Path, progress, resume: bool,
          objective: Optional[str] = None, epochs: Optional[int] = None):
    """Build and train one model (``objective``; None: the ANN twin) from the seed; returns
    ``(model in eval mode, history, seconds)``."""
    seed_everything(c.seed, deterministic=c.deterministic)
    t0 = time.perf_counter()
    if objective is None:
        model, fn = build_ann(c, data.n_classes), _ann_objective
    else:
        model, fn = build_model(c, objective, data.n_classes), make_objective(c, objective)
    epochs = c.epochs if epochs is None else epochs
    opt = make_optimizer("adam", model.parameters(), lr=c.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))
    trainer = Trainer(model, opt, fn, scheduler=sched, log_path=ckpt / "log.jsonl",
                      loggers=loggers_for(c.log, ckpt / "log.jsonl"), checkpoint_dir=ckpt, keep_checkpoints=2, progress=progress)
    history = trainer.fit(loader, epochs, resume="latest" if resume else None)
    return model.eval(), history, time.perf_counter() - t0


def ib_plan(c: Config) -> List[float]:
    """The betas of the information plane that need a network of their own (the main ``vib``
    run stands for ``vib_beta`` when it trains as long: it is then the same network)."""
    shared = "vib" in objectives(c) and c.ib_epochs == c.epochs
    return [b for b in ib_betas(c) if not (shared and b == c.vib_beta)]


def _cached(rd: RunDir, c: Config, name: str, compute, resume: bool) -> dict:
    """``compute()``, or (``resume``) its result kept in ``evaluations/<name>.json`` by the
    run being resumed, if that had the same config."""
    path = rd.path / "evaluations" / f"{name}.json"
    config = json.loads(to_json(c))
    if resume and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("config") == config:
            return saved["result"]
    result = compute()
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": config, "result": result}, indent=1) + "\n")
    tmp.replace(path)
    return result


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    data = load_images(c)
    x, y = data.test.tensors
    plan, betas = objectives(c), ib_plan(c)
    progress = Progress((1 + len(plan)) * c.epochs + len(betas) * c.ib_epochs, "robust",
                        enabled=c.progress)
    ckpt = rd.path / "checkpoints"
    metrics: Dict[str, float] = {}
    history: List[dict] = []

    ann, hist, metrics["ann_train_seconds"] = train(c, data, ckpt / "ann", progress, resume)
    history += [dict(r, model="ann") for r in hist]
    x_transfer = transfer_examples(c, ann, x, y)
    metrics["ann_clean_accuracy"] = robust.accuracy(ann, x, y)
    metrics["ann_transfer_source_accuracy"] = robust.accuracy(ann, x_transfer, y)

    results, models = {}, {}
    for name in plan:
        model, hist, metrics[f"{name}_train_seconds"] = train(c, data, ckpt / name, progress,
                                                              resume, name)
        history += [dict(r, model=name) for r in hist]
        results[name] = _cached(rd, c, name, lambda: evaluate(c, model, ann, x, y, x_transfer,
                                                              data.n_classes), resume)
        metrics.update(flat(name, results[name], c))
        models[name] = model

    plane = _information_plane(c, rd, data, progress, resume, models, results, history)
    for beta, point in plane.items():
        for key, value in point.items():
            metrics[f"ib_beta{label(beta)}_{key}"] = value
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    names = figures(c, models, results, plane, data, rd)
    rd.write_report(f"Adversarial robustness and information bottleneck: {c.dataset}, "
                    f"{c.encoder} input", __doc__, c, metrics,
                    tables(c, plan, results, plane, metrics), names)
    return Result(metrics, history, rd.path)


def _information_plane(c: Config, rd: RunDir, data, progress, resume: bool, models, results,
                       history: List[dict]) -> Dict[float, Dict[str, float]]:
    """``{beta: {"kl_nats", "clean_accuracy", "pgd_accuracy"}}`` for every beta of
    ``ib_betas`` (PGD at ``eval_eps`` with ``pgd_steps`` steps)."""
    x, y = data.test.tensors
    plane = {}
    for beta in ib_betas(c):
        if beta in ib_plan(c):
            name = f"ib_beta{label(beta)}"
            cb = dataclasses.replace(c, vib_beta=beta)
            model, hist, _ = train(cb, data, rd.path / "checkpoints" / name, progress, resume,
                                   "vib", epochs=c.ib_epochs)
            history += [dict(r, model=name) for r in hist]

            def compute(model=model):
                g = torch.Generator().manual_seed(c.seed + 3)
                model.encoder.generator = torch.Generator().manual_seed(c.seed + 3)
                clean = robust.accuracy(model, x, y)
                kl = code_kl(model, x)
                pgd = robust.robust_accuracy(model, x, y, "pgd", eps=c.eval_eps,
                                             steps=c.pgd_steps, eot=c.eot, generator=g)
                return {"kl_nats": kl, "clean_accuracy": clean, "pgd_accuracy": pgd}
            plane[beta] = _cached(rd, c, name, compute, resume)
        else:
            r = results["vib"]
            plane[beta] = {"kl_nats": r["kl"], "clean_accuracy": r["clean"],
                           "pgd_accuracy": r["pgd"].get(label(c.eval_eps))}
    return plane
