"""On-chip learning: backpropagation through time next to a local three-factor rule, in float
and on analog crossbar arrays, on one network, data set and training budget.

Methods, in the order they run:

1. **Data** (offline, the classification set-up's): ``digits`` (sklearn 8x8, stratified
   75/25 split, pixels rate-coded as Bernoulli spikes over ``n_steps`` = 25 steps of 1 ms)
   or ``randman`` (Randman spike trains of 20 units, ``max_train`` training samples).
2. **Network**, the same for every method and starting from the same initial weights
   (``U(-g, g) / sqrt(fan_in)``, ``g = init_gain``: 1 for digits, 2 for the sparse Randman
   input): ``n_in -> hidden LIF -> n_classes LIF`` (``tau_mem_ms``, threshold 1, reset by
   subtraction, no biases); the class is the output neuron with the most spikes. Its two
   weight layers are float or analog crossbars (:class:`spikegrad.hardware.CrossbarLinear`:
   differential conductance pairs, 0-25 uS, programmed with the initial weights).
3. **BPTT**: the spike-count cross-entropy (logits ``count_scale`` times the counts)
   minimised by Adam (``lr_bptt``, cosine schedule) through time with the smooth surrogate
   (``fast_sigmoid``, slope ``surrogate_beta``) or the straight-through estimator
   (``straight_through``: a boxcar of width 1 around the threshold).
4. **Local three-factor rule** (:mod:`spikegrad.apps.onchip.rules`): online, step by step,
   no memory of past steps: at every step each layer's update is the rank-1 outer product
   ``-lr (e * phi(u))^T x`` of the presynaptic factor ``x`` (the input filtered by the
   membrane's kernel, ``trace=kernel``, or the raw spikes), the surrogate derivative
   ``phi(u)`` at the postsynaptic membrane (``local_surrogate``: smooth or STE) and an error
   ``e``: for the output layer the count cross-entropy's, read from the running spike count;
   for the hidden layer that error sent back through the readout's own weights
   (``local_symmetric``), through a fixed random matrix (``local_random``, eRBP) or a
   fixed random local readout's (``local_decolle``). Learning rate ``lr_local`` with a cosine
   schedule; the update is applied every ``update_every`` steps.
5. **Where the weights live** (``arrays``): ``fp32``: float weights, the rule's outer products
   written into ``.grad`` and applied by the Trainer's SGD step. On crossbars the array
   applies the update itself, online, from the two factors (rows ``x``, columns
   ``e * phi``), at the learning rate of a Trainer whose optimizer holds no weights (the
   conductances are buffers) but carries the schedule; the Trainer still logs, stops on a
   non-finite loss and checkpoints conductances, accumulators, counters and RNG states.
   ``naive``: each step's update rounded to whole device steps; ``stochastic``: stochastic
   bit streams on rows and columns whose coincidences fire pulses (Gokmen & Vlasov 2016,
   up to ``stochastic_bl`` bits); ``mixed``: a digital accumulator that writes whole device
   steps when it holds one (Nandakumar et al. 2018; Demirag et al. 2021); all three on
   devices of ``2**bits`` states in ``[-w_max, w_max]``. ``pcm``: mixed-precision updates on
   PCM-like soft-bounds devices (pulse size ``pcm_dw_min``, 60 % pulse-to-pulse and 20 %
   device-to-device spread, as in aihwkit's PCM preset), programmed with PCM programming
   noise. The symmetric rule reads its feedback weights from the output array. Pulses and
   written devices per training sample come from the arrays' counters.
6. **Evaluation**: test accuracy of every method (a fixed draw of the test spike trains).
   The PCM-like array trained by the first local rule is then read ``drift_times`` after
   programming (PCM drift ``(t/t0)^-nu`` with ``nu`` per device and 1/f read noise; aihwkit's
   ``PCMLikeNoiseModel``), with and without global drift compensation, each time averaged
   over ``drift_repeats`` noise draws; ``t0`` is the first read, 20 s after programming.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader

from ... import losses
from ...train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ...train.log import loggers_for
from ...train.progress import Progress
from ..report import Result, RunDir
from .config import Config, array_name, arrays, drift_times, methods, time_label, validate
from .network import (SCHEMES, build_network, conductances, crossbars, evaluate,
                      initial_weights, load_data, make_encoder)
from .report import figures, tables
from .rules import CrossbarWrites, FloatWrites, LocalLearner, ThreeFactorNet

__all__ = ["run", "runs", "train"]

SURROGATE = {"bptt": "fast_sigmoid", "bptt_ste": "straight_through"}


def runs(c: Config) -> List[tuple]:
    """``(name, method, array)`` of every training in order: each BPTT method, then each
    local rule on each array."""
    out = []
    for m in methods(c):
        if m in SURROGATE:
            out.append((m, m, None))
        else:
            out += [(f"{m}_{array_name(c, a)}", m, a) for a in arrays(c)]
    return out


def _objective(c: Config, encode):
    def objective(model, x, y, state):
        out, _ = model(encode(x))                         # [T, B, C] output spikes
        loss = losses.count_cross_entropy(out, y, c.count_scale)
        acc = float((out.sum(0).argmax(1) == y).float().mean())
        return ObjectiveOutput(loss, None, {"accuracy": acc, "n": len(y)})
    return objective


def train(c: Config, method: str, array, data, encode, weights, ckpt: Path,
          progress, resume: bool):
    """Train one method; returns ``(model, history, learner or None)``."""
    seed_everything(c.seed, deterministic=c.deterministic)    # same spike trains for all
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))
    surrogate = SURROGATE.get(method, c.local_surrogate)
    model = build_network(c, weights, surrogate, array or "fp32")
    learner = None
    if array is None:
        opt = make_optimizer("adam", model.parameters(), lr=c.lr_bptt)
        kw = dict(objective=_objective(c, encode))
    else:
        net = ThreeFactorNet(c, model, method, torch.Generator().manual_seed(c.seed + 17))
        if array == "fp32":
            opt = make_optimizer("sgd", model.parameters(), lr=c.lr_local)
            writes = FloatWrites(net)
        else:
            # the conductances are buffers, not parameters: the optimizer only carries the
            # learning rate and its schedule
            opt = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(0))], lr=c.lr_local)
            writes = CrossbarWrites(net, opt, SCHEMES[array], c.stochastic_bl)
        learner = LocalLearner(net, writes, encode, c.update_every)
        kw = dict(learner=learner)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    trainer = Trainer(model, opt, scheduler=sched, log_path=ckpt / "log.jsonl",
                      loggers=loggers_for(c.log, ckpt / "log.jsonl"), checkpoint_dir=ckpt, keep_checkpoints=1, progress=progress, **kw)
    history = trainer.fit(loader, c.epochs, resume="latest" if resume else None)
    return model, history, learner


@torch.no_grad()
def drift_study(c: Config, model, data, encode) -> Dict[str, float]:
    """Accuracy of a trained PCM-like network read at ``t0`` and each drift time, with and
    without global drift compensation (mean over ``drift_repeats`` noise draws)."""
    out = {}
    for label, t in [("t0", 0.0)] + [(time_label(t), t) for t in drift_times(c)]:
        for comp in (True, False):
            accs = []
            for _ in range(c.drift_repeats):
                for xbar in crossbars(model):
                    xbar.compensation = comp
                    xbar.drift_to(t)
                accs.append(evaluate(model, data.test, encode, seed=c.seed + 2))
            out[f"pcm_drift_{label}_{'comp' if comp else 'nocomp'}_accuracy"] = (
                sum(accs) / len(accs))
    return out


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    seed_everything(c.seed, deterministic=c.deterministic)
    data = load_data(c)
    encode = make_encoder(c)
    weights = initial_weights(c, data.n_in, data.n_classes)
    plan = runs(c)
    progress = Progress(len(plan) * c.epochs, "onchip", enabled=c.progress)
    metrics: Dict[str, float] = {}
    trained, history = {}, {}
    for name, method, array in plan:
        t0 = time.perf_counter()
        model, hist, learner = train(c, method, array, data, encode, weights,
                                     rd.path / "checkpoints" / name, progress, resume)
        metrics[f"{name}_train_seconds"] = time.perf_counter() - t0
        metrics[f"{name}_accuracy"] = evaluate(model, data.test, encode, seed=c.seed + 2)
        samples = c.epochs * len(data.train)
        for xbar_key in ("pulses", "writes"):
            xbars = crossbars(model)
            if xbars:
                metrics[f"{name}_{xbar_key}_per_sample"] = (
                    sum(x.counters[xbar_key] for x in xbars) / samples)
        trained[name], history[name] = (model, learner), hist
    extra = _after_training(c, plan, trained, data, encode, weights, metrics)
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    names = figures(c, plan, trained, extra, metrics, data, encode, rd)
    rd.write_report(f"On-chip learning: {c.dataset}", __doc__, c, metrics,
                    tables(c, plan, metrics, extra), names)
    return Result(metrics, [dict(r, method=n) for n, h in history.items() for r in h],
                  rd.path)


def _after_training(c, plan, trained, data, encode, weights, metrics) -> dict:
    """The drift study of the first PCM-like network, and the conductances before and after
    its training (for the figures)."""
    pcm = [name for name, method, array in plan if array == "pcm"]
    extra = {"drift_run": pcm[0] if pcm else None}
    if pcm:
        model = trained[pcm[0]][0]
        extra["after"] = conductances(model)
        before = build_network(c, weights, c.local_surrogate, "pcm")
        extra["before"] = conductances(before)
        metrics.update(drift_study(c, model, data, encode))
    return extra
