"""Sequence regression learned online: e-prop and a three-factor rule beside BPTT.

The task, the network and the objective are those of :mod:`spikegrad.apps.regression`
(``make_task``, ``build_model``); only the way the gradient is computed changes
(``learning``):

1. ``eprop_symmetric`` / ``eprop_random``: e-prop (Bellec et al. 2020,
   :class:`spikegrad.learning.EProp`): forward-only eligibility traces of the input and
   recurrent weights, filtered by the readout kernel, times a learning signal (the output
   error through ``W_out^T`` or a fixed random matrix); the readout weights get their exact
   gradient. ``eprop_adaptive`` (this module's config only) uses feedback that learns like
   ``W_out^T``.
2. ``three_factor``: the local rule ``dW = -lr e phi(u) x`` (:class:`spikegrad.learning.
   ThreeFactor`) on the input and recurrent weights, ``x`` the presynaptic trace through the
   neuron's kernel, ``e`` a fixed random projection of the output error at the same step
   (no readout filtering of the traces: a purely step-local rule); the readout weights learn by
   the delta rule.
3. **Objective** (the regression app's): ``mean (y - y*)^2`` over steps, plus
   ``sparsity_weight * mean_j (r_j - target_rate_hz)^2`` on the rates in Hz, which the
   learners implement as ``loss_scale = 2 / (T B K)`` and ``reg = 2 w / (N dt^2)`` on rates in
   spikes per step (equal for the batch-1 pattern task; with ``B > 1`` the rate is pooled over
   the batch, as in the e-prop paper).
4. **Training**: the regression app's :class:`spikegrad.train.Trainer` (its optimizer,
   learning-rate schedule over the ``steps`` passes, weight decay, clipping ``grad_clip``,
   NaN/Inf guard, checkpoints and exact resume), with the rule as its learner
   (:class:`OnlineLearner`) instead of backpropagation: one update per pass over the training
   batch, or, with ``update_every = N``, one every ``N`` time steps inside the sequence
   (online). The logged loss is the pass's MSE, taken while the weights change.
5. **Evaluation**: the regression app's ``evaluate`` (NMSE, recurrent rate) on the trained
   model. ``peak_memory_mb``: the same measure as the BPTT app, the peak of torch's
   allocator during one training step above what was allocated before it
   (``torch.profiler`` memory events), here for the online rule.
6. **Memory against sequence length** (``memory_lengths``): for each rule and ``T``, (a) the
   allocator peak of one training step, in this process, and (b) the peak resident set size
   of a fresh Python subprocess that builds the model, runs a 20-step warm-up, resets the
   kernel's high-water mark (``VmHWM``, via ``/proc/self/clear_refs``) and runs one training
   step: ``VmHWM`` after it minus ``VmRSS`` before it (imports, the model and one-off
   initialisation are not counted; pages the allocator keeps after freeing count as used);
   three such steps, the median reported, with glibc's mmap threshold fixed at 128 KiB.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ...learning import cosine_similarity
from ..config import ConfigError
from ..report import Result, RunDir
from . import config as base
from . import core as reg
from .memory import memory_scaling, rss_of_one_step
from .report import online_figures, write_online_report
from .rules import OnlineLearner, make_learner, online_learner

__all__ = ["Config", "ONLINE_RULES", "validate", "run_online", "run", "train_online",
           "make_learner", "OnlineLearner", "online_learner", "memory_scaling", "rss_of_one_step"]

ONLINE_RULES = tuple(r for r in base.LEARNING_RULES if r != "bptt")
ALL_RULES = base.LEARNING_RULES


@dataclass
class Config(base.Config):
    """The regression config (which holds the online learners' options too), with an online
    rule as the default.

    ``update_every``: apply the accumulated gradient every this many time steps inside the
    sequence (0: once per sequence). ``feedback_decay`` / ``feedback_lr``: adaptive feedback.
    ``compare``: other rules to train with the same config and budget for the report table,
    e.g. ``"bptt,eprop_random"``. ``memory_lengths``: sequence lengths for the memory
    comparison, e.g. ``"500,1000,2000,4000"`` (``memory_rules`` lists the rules measured).
    """

    learning: str = "eprop_symmetric"  # gradient rule, one of LEARNING_RULES (bptt, eprop_*, ...)


def _as_online(cfg) -> Config:
    if isinstance(cfg, Config):
        c = cfg
    elif isinstance(cfg, base.Config):
        c = Config(**dataclasses.asdict(cfg))
    else:
        raise TypeError(f"cfg must be a spikegrad.apps.regression(_online).Config, got "
                        f"{type(cfg).__name__}")
    return c


def _rules(text: str, name: str) -> List[str]:
    rules = [r for r in text.replace(" ", "").split(",") if r]
    bad = [r for r in rules if r not in ALL_RULES]
    if bad:
        raise ConfigError(f"{name} must be a comma-separated list of {', '.join(ALL_RULES)}; "
                          f"got {text!r}")
    return rules


def _lengths(text: str) -> List[int]:
    try:
        ks = [int(k) for k in text.replace(" ", "").split(",") if k]
    except ValueError:
        ks = [0]
    if any(k < 2 for k in ks):
        raise ConfigError(f"memory_lengths must be a comma-separated list of sequence lengths "
                          f">= 2, e.g. '500,1000,2000,4000'; got {text!r}")
    return ks


def validate(cfg) -> Config:
    # the regression checks and the task's presets (its rules are this module's too)
    c = base.validate(_as_online(cfg))
    for key in ("update_every",):
        if getattr(c, key) < 0:
            raise ConfigError(f"{key} must be >= 0 (0: once per sequence); got {getattr(c, key)}")
    for key in ("feedback_lr", "feedback_decay"):
        v = getattr(c, key)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{key} must be a finite number >= 0; got {v}")
    _rules(c.compare, "compare")
    _rules(c.memory_rules, "memory_rules")
    _lengths(c.memory_lengths)
    return c


def _regression_cfg(c: Config, learning: str = "bptt") -> base.Config:
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(base.Config)}
    fields["learning"] = learning
    return base.Config(**fields)


# --- learners --------------------------------------------------------------------------------

def train_online(cfg, out_dir: Optional[Path] = None, resume: bool = False,
                 measure_memory: bool = True) -> reg.Trained:
    """:func:`spikegrad.apps.regression.core.train` with ``cfg.learning``'s online rule."""
    c = validate(cfg)
    if c.learning == "bptt":
        raise ConfigError("train_online runs the online rules; learning=bptt is "
                          "spikegrad.apps.regression.train")
    return reg.train(_regression_cfg(c, c.learning), out_dir, resume=resume,
                     measure_memory=measure_memory, learner=online_learner)


# --- run -------------------------------------------------------------------------------------

def run_online(cfg, out_dir: Path, resume: bool = False) -> Result:
    """Train with an online rule (``cfg.learning``), optionally compare other rules and the
    memory against ``T``; write ``config.json``, ``metrics.json`` (``nmse``,
    ``firing_rate_hz``, ``wall_seconds``, ``peak_memory_mb``, ...), figures and
    ``report.md``."""
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    if c.learning == "bptt":
        trained = reg.train(_regression_cfg(c), rd.path, resume=resume)
    else:
        trained = train_online(c, rd.path, resume=resume)
    metrics = dict(trained.metrics)
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics.update(_gradient_alignment(c, trained.model))
    table, curves = [], {c.learning: trained.history}
    for rule in _rules(c.compare, "compare"):
        if rule == c.learning:
            continue
        cr = dataclasses.replace(c, learning=rule, progress=False)
        t0 = time.perf_counter()
        other = (reg.train(_regression_cfg(cr)) if rule == "bptt" else train_online(cr))
        row = {"learning": rule, **{k: other.metrics[k] for k in
                                    ("nmse", "firing_rate_hz", "train_seconds",
                                     "peak_memory_mb")},
               "wall_seconds": time.perf_counter() - t0}
        table.append(row)
        curves[rule] = other.history
    if table:
        table.insert(0, {"learning": c.learning, **{k: metrics[k] for k in
                                                    ("nmse", "firing_rate_hz", "train_seconds",
                                                     "peak_memory_mb", "wall_seconds")}})
        (rd.path / "compare.json").write_text(json.dumps(table, indent=2) + "\n")
    mem_rows = []
    lengths = _lengths(c.memory_lengths)
    if lengths:
        mem_rows = memory_scaling(c, lengths, _rules(c.memory_rules, "memory_rules"))
        (rd.path / "memory.json").write_text(json.dumps(mem_rows, indent=2) + "\n")
    # wall_seconds is the main training alone (the rules table compares it); this is the command
    metrics["run_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    figures = online_figures(c, trained, curves, mem_rows, rd)
    write_online_report(rd, c, metrics, trained.history, table, mem_rows, figures, __doc__)
    return Result(metrics, trained.history, rd.path)


def run(cfg, out_dir: Path, resume: bool = False) -> Result:
    """App entry point (``Config`` of this module); same as :func:`run_online`."""
    return run_online(cfg, out_dir, resume=resume)


def _gradient_alignment(c: Config, model: reg.RegressionRSNN) -> Dict[str, float]:
    """Cosine similarity between the e-prop (symmetric and random) and BPTT gradients of the
    objective on the training task at the trained weights (issue 8, test (b))."""
    rc = _regression_cfg(c)
    xs, ys = reg.make_task(rc)
    twin = copy.deepcopy(model)
    objective = reg.make_objective(rc, xs.shape[0], float(ys.var(unbiased=False)))
    twin.zero_grad()
    objective(twin, xs, ys, None).loss.backward()
    names = {"w_in": twin.input_layer.weight, "w_rec": twin.rsnn.weight,
             "w_out": twin.readout_layer.weight, "b_out": twin.readout_layer.bias}
    bptt = {k: v.grad.clone() for k, v in names.items()}
    out = {}
    for rule in ("eprop_symmetric", "eprop_random"):
        learner = make_learner(dataclasses.replace(c, learning=rule), twin, xs.shape[1])
        learner.run(xs, ys, record=False)
        g = {k: v.grad.clone() for k, v in learner.parameters().items()}
        out[f"cosine_{rule}_vs_bptt"] = cosine_similarity(g, bptt)
        out[f"cosine_{rule}_vs_bptt_hidden"] = cosine_similarity(
            {k: g[k] for k in ("w_in", "w_rec")}, {k: bptt[k] for k in ("w_in", "w_rec")})
    return out
