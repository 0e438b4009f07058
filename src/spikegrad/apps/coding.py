"""Neural coding: the same network trained with a rate loss and with a temporal loss.

Methods, in the order they run:

1. **Data** (generated): Yin-Yang (Kriener et al. 2022; train 5000 / val 1000 / test 1000,
   seeds 42 / 41 / 40; ``n_train`` etc. shrink them) or Randman (Zenke & Vogels 2021, spike
   timing only, 80/10/10 in order).
2. **Codes.** Rate network: Yin-Yang inputs as Bernoulli spike trains (``rate_copies``
   independent trains per input, plus a bias channel firing every step). Temporal network:
   one spike per input (linear latency code over the first ``n_code`` steps) plus one bias
   spike at step 0. Randman is a spike-timing code for both.
3. **Model** (identical for both): ``F -> hidden current-based LIF -> C output LIF``.
4. **Objectives.** ``rate``: the spike-rate form of ``L_rate`` on the output spikes,
   ``1/2 sum_k (r_k - y_k)^2`` with target rates ``rate_on`` (label) / ``rate_off``
   (others) in spikes per step; prediction = most spikes. ``temporal``: time-to-first-spike
   cross-entropy (soft-min over relaxed first-spike times, temperature ``ttfs_tau`` steps);
   prediction = earliest output spike (ties: more spikes). Both optionally add L1 / L2
   penalties on hidden spike counts (``count_l1``, ``count_l2``) and a homeostatic lower
   bound on each hidden neuron's count (``rate_low``, ``rate_low_weight``); thresholds may be
   trained (``learn_threshold``, at their own learning rate ``threshold_lr`` if set).
5. **Training**: :class:`spikegrad.train.Trainer`, Adam, cosine learning rate; the model is
   evaluated once on the test set after the last epoch.
6. **Measurements** on the test set: accuracy, spikes per sample (hidden + output, input
   excluded), decision latency (first output spike of any output neuron, in steps; samples
   without an output spike count as ``T``), and the error signal ``|dL/du_t|`` at the output
   membranes (the gradient wrt the output layer's input current, which equals ``dL/du_t`` for
   voltage-based LIF with unit input gain), averaged over samples and output neurons per
   step, with the share of it that arrives after each neuron's first spike (exactly 0 for the
   temporal loss: no gradient flows after a first spike).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

from ..train.progress import Progress
from .report import Result, RunDir, Table
from .setups.yinyang import (  # the set-up this app runs, re-exported
    DATASETS, LOSSES, Config, loss_list, validate, Data, load_data, make_encoder, n_inputs,
    build_model, predict, objective_loss, constraint_terms, make_objective, evaluate,
    error_profile, param_groups, train_one)

__all__ = ["DATASETS", "LOSSES", "Config", "loss_list", "validate", "Data", "load_data",
           "make_encoder", "n_inputs", "build_model", "predict", "objective_loss",
           "constraint_terms", "make_objective", "evaluate", "error_profile",
           "param_groups", "train_one", "run"]


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    # one ETA for all the networks of the run
    rd.progress = Progress(len(loss_list(c)) * c.epochs, "coding", enabled=c.progress)
    start = time.perf_counter()
    data = load_data(c)
    metrics: Dict[str, float] = {}
    profiles: Dict[str, List[float]] = {}
    aligned: Dict[str, List[float]] = {}
    history: List[dict] = []
    for loss in loss_list(c):
        t0 = time.perf_counter()
        _, hist, test, prof, share = train_one(c, loss, data, rd, resume)
        metrics.update({f"{loss}_test_accuracy": test["accuracy"],
                        f"{loss}_val_accuracy": hist[-1]["val_accuracy"],
                        f"{loss}_spikes_per_sample": test["spikes_per_sample"],
                        f"{loss}_decision_latency_steps": test["decision_latency_steps"],
                        f"{loss}_grad_share_after_first_spike":
                            share["grad_share_after_first_spike"],
                        f"{loss}_grad_max_after_first_spike": share["grad_max_after_first_spike"],
                        f"{loss}_seconds": time.perf_counter() - t0})
        profiles[loss] = prof[0].tolist()
        aligned[loss] = prof[1].tolist()
        history += [dict(r, loss=loss) for r in hist]
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    (rd.path / "error_profile.json").write_text(
        json.dumps({"per_step": profiles, "aligned_to_first_spike": aligned}, indent=1) + "\n")
    _figure(rd.path / "error_profile.png", profiles, aligned, c.dt_ms)
    _report(rd, c, metrics, profiles, aligned)
    return Result(metrics, history, rd.path)


def _figure(path: Path, profiles: Dict[str, List[float]], aligned: Dict[str, List[float]],
            dt_ms: float) -> None:
    import math
    from ..viz import pyplot
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for name, p in profiles.items():
        peak = max(p) or 1.0
        axes[0].plot([t * dt_ms for t in range(len(p))], [v / peak for v in p], label=name)
    axes[0].set_xlabel("time (ms)")
    axes[0].set_ylabel("|dL/du_t| (normalised)")
    axes[0].set_title("error signal at the output membranes")
    for name, a in aligned.items():
        k = (len(a) - 1) // 2
        peak = max((v for v in a if not math.isnan(v)), default=1.0) or 1.0
        axes[1].plot(range(-k, k + 1), [v / peak for v in a], marker=".", label=name)
    axes[1].axvline(0, ls="--", c="gray", lw=0.8)
    axes[1].set_xlabel("steps after the neuron's first spike")
    axes[1].set_ylabel("|dL/du_t| (normalised)")
    axes[1].set_title("aligned to each output neuron's first spike")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report(rd: RunDir, c: Config, metrics: Dict[str, float],
            profiles: Dict[str, List[float]], aligned: Dict[str, List[float]]) -> None:
    names = list(profiles)
    keys = ["test_accuracy", "val_accuracy", "spikes_per_sample", "decision_latency_steps",
            "grad_share_after_first_spike", "seconds"]
    k = (len(next(iter(aligned.values()))) - 1) // 2
    tables = [
        Table("Rate vs temporal code", ["metric"] + names,
              [[key] + [metrics[f"{n}_{key}"] for n in names] for key in keys]),
        Table("Error signal |dL/du_t| per step (mean over samples and output neurons)",
              ["step"] + names,
              [[t] + [f"{profiles[n][t]:.3e}" for n in names]
               for t in range(len(profiles[names[0]]))]),
        Table("Error signal aligned to each output neuron's first spike (neurons that fire)",
              ["steps after first spike"] + names,
              [[j - k] + [f"{aligned[n][j]:.3e}" for n in names] for j in range(2 * k + 1)]),
    ]
    rd.write_report(f"Coding: rate vs temporal loss on {c.dataset}", __doc__, c, metrics,
                    tables, ["error_profile.png"])
