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

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ...functional.leaky import integrate
from ...learning import EProp, Factors, ThreeFactor, random_projection
from ...train import ObjectiveOutput, seed_everything
from ...train.memory import allocator_peak_mb
from . import core as reg
from ..config import ConfigError
from ..report import Result, RunDir, Table, curve

__all__ = ["Config", "ONLINE_RULES", "run_online", "run", "train_online", "make_learner",
           "OnlineLearner", "online_learner", "memory_scaling", "rss_of_one_step"]

ONLINE_RULES = ("eprop_symmetric", "eprop_random", "eprop_adaptive", "three_factor")
ALL_RULES = ("bptt",) + ONLINE_RULES


@dataclass
class Config(reg.Config):
    """The regression config (which holds the online learners' options too), with an online
    rule as the default.

    ``update_every``: apply the accumulated gradient every this many time steps inside the
    sequence (0: once per sequence). ``feedback_decay`` / ``feedback_lr``: adaptive feedback.
    ``compare``: other rules to train with the same config and budget for the report table,
    e.g. ``"bptt,eprop_random"``. ``memory_lengths``: sequence lengths for the memory
    comparison, e.g. ``"500,1000,2000,4000"`` (``memory_rules`` lists the rules measured).
    """

    learning: str = "eprop_symmetric"


def _as_online(cfg) -> Config:
    if isinstance(cfg, Config):
        c = cfg
    elif isinstance(cfg, reg.Config):
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
    c = _as_online(cfg)
    if c.learning not in ALL_RULES:
        raise ConfigError(f"learning must be one of {', '.join(ALL_RULES)}; got {c.learning!r}")
    # the regression checks and the task's presets (with a learning rule it knows, so
    # eprop_adaptive passes too)
    base = reg.validate(reg.Config(**{f.name: getattr(c, f.name)
                                     for f in dataclasses.fields(reg.Config)
                                     if f.name != "learning"}))
    c = dataclasses.replace(c, **{f.name: getattr(base, f.name)
                                  for f in dataclasses.fields(reg.Config) if f.name != "learning"})
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


def _regression_cfg(c: Config, learning: str = "bptt") -> reg.Config:
    fields = {f.name: getattr(c, f.name) for f in dataclasses.fields(reg.Config)}
    fields["learning"] = learning
    return reg.Config(**fields)


# --- learners --------------------------------------------------------------------------------

class _ThreeFactorNet:
    """The RSNN trained by the local three-factor rule (hidden) and the delta rule (readout),
    with :class:`spikegrad.learning.EProp`'s ``step`` / ``flush`` / ``run``."""

    def __init__(self, c: Config, model: reg.RegressionRSNN, loss_scale: float):
        self.model, self.loss_scale = model, loss_scale
        self.rule = ThreeFactor(model.input_layer, model.rsnn, trace="kernel")
        n, k = c.hidden, c.n_outputs
        g = torch.Generator().manual_seed(c.seed + 17)
        out = model.readout_layer
        self.B = (torch.randn(n, k, generator=g, dtype=torch.float64) / math.sqrt(n)).to(
            out.weight.dtype)
        self.acc_w = torch.zeros_like(out.weight)
        self.acc_b = None if out.bias is None else torch.zeros_like(out.bias)

    @torch.no_grad()
    def step(self, x: Tensor, target: Tensor, state: Optional[dict] = None):
        """One time step (``state`` None starts a sequence); returns ``(y [B, K], state)``."""
        out, po = self.model.readout_layer, self.model.readout.params()
        z, neuron, pre, post = self.rule.forward(x, None if state is None else state["neuron"])
        if state is None:
            def zero(t):
                return torch.zeros_like(t), (torch.zeros_like(t) if po.decay_syn is not None
                                             else None)
            state = {"y": zero(x.new_zeros(x.shape[0], out.out_features)), "zbar": zero(z),
                     "ones": zero(x.new_zeros(x.shape[0], 1))}
        y = integrate(torch.nn.functional.linear(z, out.weight, out.bias), *state["y"], po)
        zbar = integrate(z, *state["zbar"], po)
        ones = integrate(torch.ones_like(state["ones"][0]), *state["ones"], po)
        err = self.loss_scale * (y[0] - target)                              # dE/dy_t
        self.rule.accumulate(Factors(pre, post, random_projection(err, self.B)))
        self.acc_w += err.t() @ zbar[0]
        if self.acc_b is not None:
            self.acc_b += (err * ones[0]).sum(0)
        return y[0], {"neuron": neuron, "y": y, "zbar": zbar, "ones": ones}

    def flush(self, state: Optional[dict] = None) -> None:
        """Write the accumulated estimate into ``.grad`` (overwriting) and clear it."""
        self.rule.flush()
        out = self.model.readout_layer
        out.weight.grad = self.acc_w.clone()
        self.acc_w.zero_()
        if self.acc_b is not None:
            out.bias.grad = self.acc_b.clone()
            self.acc_b.zero_()

    def state_dict(self) -> dict:
        return {"B": self.B}

    def load_state_dict(self, state: dict) -> None:
        self.B = state["B"]


def make_learner(c: Config, model: reg.RegressionRSNN, batch: int):
    """The e-prop or three-factor rule of ``c.learning`` for ``model`` (the regression
    app's objective mapped as in the module docstring)."""
    T, N, K = c.n_steps, c.hidden, c.n_outputs
    dt = c.dt_ms * 1e-3
    loss_scale = 2.0 / (T * batch * K)
    if c.learning == "three_factor":
        return _ThreeFactorNet(c, model, loss_scale)
    feedback = c.learning.split("_", 1)[1]
    return EProp.from_sequential(model, feedback=feedback,
                                 reg=2.0 * c.sparsity_weight / (N * dt * dt),
                                 rate_target=c.target_rate_hz * dt, loss_scale=loss_scale,
                                 feedback_lr=c.feedback_lr, feedback_decay=c.feedback_decay,
                                 generator=torch.Generator().manual_seed(c.seed + 17))


class OnlineLearner:
    """An online rule as a :class:`spikegrad.train.Trainer` learner: it runs the sequence
    step by step and has the trainer apply the gradient every ``update_every`` steps (and at
    the end); the loss it reports is the pass's mean squared error, its metric the NMSE.
    Memory does not grow with ``T``: no output or state is kept past its step."""

    def __init__(self, rule, update_every: int, target_var: float):
        self.rule, self.update_every, self.target_var = rule, update_every, target_var

    @torch.no_grad()
    def __call__(self, model, xs: Tensor, ys: Tensor, update) -> ObjectiveOutput:
        state, sq, T = None, xs.new_zeros(()), xs.shape[0]
        for t in range(T):
            y, state = self.rule.step(xs[t], ys[t], state)
            sq += (y - ys[t]).pow(2).sum()
            if (self.update_every and (t + 1) % self.update_every == 0) or t + 1 == T:
                self.rule.flush(state)
                update()
        mse = sq / ys.numel()
        return ObjectiveOutput(mse, None, {"nmse": float(mse) / self.target_var})

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)


def online_learner(c: reg.Config, model: reg.RegressionRSNN, xs: Tensor, ys: Tensor
                   ) -> OnlineLearner:
    """The :data:`~spikegrad.apps.regression.core.LearnerFactory` of the online rules."""
    return OnlineLearner(make_learner(c, model, xs.shape[1]), c.update_every,
                         float(ys.var(unbiased=False)))


def train_online(cfg, out_dir: Optional[Path] = None, resume: bool = False,
                 measure_memory: bool = True) -> reg.Trained:
    """:func:`spikegrad.apps.regression.core.train` with ``cfg.learning``'s online rule."""
    c = validate(cfg)
    if c.learning == "bptt":
        raise ConfigError("train_online runs the online rules; learning=bptt is "
                          "spikegrad.apps.regression.train")
    return reg.train(_regression_cfg(c, c.learning), out_dir, resume=resume, measure_memory=measure_memory,
                     learner=online_learner)


# --- memory ----------------------------------------------------------------------------------

def _one_step_memory(c: Config, T: int) -> float:
    c = dataclasses.replace(c, n_steps=T, progress=False)
    rc = _regression_cfg(c, c.learning)
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    return reg.measure_step_memory(rc, model, xs, ys,
                                   None if c.learning == "bptt" else online_learner)


def rss_of_one_step(cfg, T: int, timeout: float = 600.0) -> Dict[str, float]:
    """Peak RSS growth (MiB) of one training step at length ``T`` in a fresh subprocess
    (Linux): the kernel's high-water mark ``VmHWM`` is reset after a short warm-up
    (``/proc/self/clear_refs``), then ``VmHWM`` after the step minus ``VmRSS`` before it.
    (``ru_maxrss`` is not used: Linux keeps it across ``fork``/``exec``, so a child would
    report its parent's peak.)"""
    c = validate(cfg)
    payload = json.dumps({"cfg": dataclasses.asdict(c), "T": T})
    # a fixed mmap threshold: glibc's default one rises to the size of the largest block freed,
    # after which a repeated step's big tensors come from (and stay in) the heap, and the RSS
    # of a second step would no longer show what the step allocates
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    probe = "import sys; from spikegrad.apps.regression.online import rss_probe; " \
            "rss_probe(sys.argv[1])"
    out = subprocess.run([sys.executable, "-c", probe, payload], capture_output=True,
                         text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"RSS probe failed (T={T}, {c.learning}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key} (needs Linux)")


_RSS_REPEATS = 3


def rss_probe(payload: str) -> None:
    """Child side of the RSS measurement: run the steps of ``payload`` (JSON: the config and
    ``T``) and print the result as one JSON line."""
    args = json.loads(payload)
    c = Config(**args["cfg"])
    c = dataclasses.replace(c, n_steps=int(args["T"]), progress=False)
    torch.set_num_threads(1)
    rc = _regression_cfg(c, c.learning)
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    if c.learning == "bptt":
        trainer = reg.make_trainer(rc, model, reg.make_objective(rc, xs.shape[0], 1.0))
    else:
        trainer = reg.make_trainer(rc, model, learner=online_learner(rc, model, xs, ys))

    def step(xs, ys):
        trainer.fit([(xs, ys)], trainer.epoch + 1)

    # a short warm-up sequence first: lazy initialisation (numba compilation, the gradient
    # buffers, the optimizer state) is not what grows with T
    step(xs[:20], ys[:20])
    runs = []
    for _ in range(_RSS_REPEATS):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            reset = True
        except OSError:
            reset = False
        before = _proc_status_mb("VmRSS")
        t0 = time.perf_counter()
        step(xs, ys)
        seconds = time.perf_counter() - t0
        peak = _proc_status_mb("VmHWM")
        runs.append((peak - before, before, peak, seconds))
    # the median step: single readings jitter by up to ~0.7 MiB at any T (measured; the
    # kernel's RSS counters are batched, small allocations map and unmap pages now and then),
    # even below zero, while a step that stores its sequence grows by MiBs
    growth, before, peak, seconds = sorted(runs)[len(runs) // 2]
    print(json.dumps({"rss_before_mb": before, "rss_peak_mb": peak, "rss_growth_mb": growth,
                      "step_seconds": seconds, "rss_growth_runs_mb": [r[0] for r in runs],
                      "hwm_reset": reset}))


def memory_scaling(cfg, lengths: Sequence[int], rules: Sequence[str],
                   subprocess_rss: bool = True) -> List[dict]:
    """One row per (rule, T): allocator peak of one training step (MiB) and, with
    ``subprocess_rss``, the RSS growth of one step in a fresh process (see the module
    docstring for both methods)."""
    c = validate(cfg)
    rows = []
    for rule in rules:
        for T in lengths:
            cr = dataclasses.replace(c, learning=rule)
            row = {"learning": rule, "T": T, "allocator_peak_mb": _one_step_memory(cr, T)}
            if subprocess_rss:
                row.update(rss_of_one_step(cr, T))
            rows.append(row)
    return rows


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
    figures = _figures(c, trained, curves, mem_rows, rd)
    _write_report(rd, c, metrics, trained.history, table, mem_rows, figures)
    return Result(metrics, trained.history, rd.path)


def run(cfg, out_dir: Path, resume: bool = False) -> Result:
    """App entry point (``Config`` of this module); same as :func:`run_online`."""
    return run_online(cfg, out_dir, resume=resume)


def _gradient_alignment(c: Config, model: reg.RegressionRSNN) -> Dict[str, float]:
    """Cosine similarity between the e-prop (symmetric and random) and BPTT gradients of the
    objective on the training task at the trained weights (issue 8, test (b))."""
    from ...learning import cosine_similarity
    import copy
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


# --- report ----------------------------------------------------------------------------------

def _figures(c: Config, trained: reg.Trained, curves: Dict[str, List[dict]], mem_rows, rd: RunDir
             ) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = reg.save_trace_figures(
        _regression_cfg(c), trained.model,
        f"{c.learning}: target vs readout (NMSE {trained.metrics['nmse']:.4f})", rd)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, hist in curves.items():
        ax.plot([r["epoch"] for r in hist], [r.get("train_nmse", float("nan")) for r in hist],
                lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training pass")
    ax.set_ylabel("NMSE (training pass)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(rd.path / "curves.png", dpi=110)
    plt.close(fig)
    figures = names + ["curves.png"]
    if mem_rows:
        keys = [("allocator_peak_mb", "torch allocator peak, one step (MiB)")]
        if "rss_growth_mb" in mem_rows[0]:
            keys.append(("rss_growth_mb", "peak RSS growth, fresh process (MiB)"))
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.4), squeeze=False)
        for ax, (key, title) in zip(axes[0], keys):
            for rule in dict.fromkeys(r["learning"] for r in mem_rows):
                rows = [r for r in mem_rows if r["learning"] == rule]
                ax.plot([r["T"] for r in rows], [r[key] for r in rows], marker="o", label=rule)
            ax.set_xlabel("sequence length T (steps)")
            ax.set_title(title, fontsize=9)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(rd.path / "memory.png", dpi=110)
        plt.close(fig)
        figures.append("memory.png")
    return figures


def _write_report(rd: RunDir, c: Config, metrics, history, table, mem_rows, figures) -> None:
    tables = []
    if table:
        tables.append(Table(
            "Learning rules on the same budget",
            ["learning", "final NMSE", "rate (Hz)", "train (s)", "peak memory (MiB)"],
            [[r["learning"], r["nmse"], r["firing_rate_hz"], r["train_seconds"],
              r["peak_memory_mb"]] for r in table],
            f"Same task, model, seed, optimizer ({c.optimizer}, lr {c.lr}, its schedule) and "
            f"{c.steps} passes over the training data; only the gradient differs."))
    if mem_rows:
        tables.append(Table(
            "Memory against sequence length",
            ["learning", "T", "allocator peak (MiB)", "RSS growth (MiB)", "step (s)"],
            [[r["learning"], r["T"], r["allocator_peak_mb"], r.get("rss_growth_mb"),
              r.get("step_seconds")] for r in mem_rows],
            "One training step per row. `allocator` = peak bytes torch's allocator holds "
            "above the start of the step (profiler memory events). `RSS` = peak resident "
            "set of a fresh process minus its size just before the step."))
    tables.append(curve(history, [("pass", "epoch"), ("updates", "step"),
                                  ("NMSE (training pass)", "train_nmse"),
                                  ("grad norm", "grad_norm_max")], max_rows=21))
    rd.write_report(f"Regression ({c.task}) learned with {c.learning}", __doc__, c, metrics,
                    tables, figures)
