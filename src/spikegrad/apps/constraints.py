"""Biological constraints: sparsity penalties, trainable thresholds, surrogate slope.

Methods, in the order they run (``parts`` selects them; every point is trained ``seeds``
times, seeds ``seed, seed + 1, ...``, and averaged):

1. **Sparsity** (Yin-Yang, the rate-coded network of :mod:`spikegrad.apps.coding`): an L1
   (``sparsity_penalty="l1"``: ``lambda * mean(count)``) or L2 (``lambda * mean(count^2)``)
   penalty on each hidden neuron's spike count (a :class:`spikegrad.losses.Term`), for each
   ``lambda`` in ``sparsity_weights``. Accuracy vs
   spikes per sample (hidden + output) traces the trade-off frontier; reported: the span of
   spikes per sample and the accuracy drop at the sparsest point with at most half the
   unregularised network's spikes.
2. **Intrinsic plasticity** (Yin-Yang, the coding app's time-coded network with the
   time-to-first-spike loss and input gain ``threshold_gain``): thresholds initialised
   ``silent_factor`` times too high (the population starts silent: 5 input spikes cannot
   reach them) with fixed vs trainable per-neuron thresholds (``theta = softplus(rho)``),
   against a well-initialised network (threshold 1, fixed or trainable), ``threshold_epochs``
   epochs each, ``threshold_seeds`` seeds (single seeds differ by 2-3 points here, as much
   as the effect). Thresholds learn with Adam at ``threshold_lr`` (weights at the coding
   app's ``lr``). The first four variants' loss adds the same homeostatic term, a lower bound
   of ``homeostasis_low`` spikes per sample on each hidden neuron (``rate_band``, weight
   ``homeostasis_weight``), which silent neurons feel through the surrogate; two more silent
   variants (fixed / trainable) train without it, so that the rescue by trainable thresholds
   is told apart from the rescue by the homeostatic term (which acts through the weights,
   fixed thresholds or not). Reported: accuracy, spikes per sample before and after
   training, the threshold histogram before and after, the spread of per-neuron rates, and
   the accuracy trainable thresholds add to a silent start with and without the homeostatic
   term.
3. **Surrogate slope** (Randman with ``rm_classes`` classes; the classification app's
   randman preset -- its model, max-over-time readout, objective with activity bounds and
   evaluation -- shrunk to ``rm_*``): each
   surrogate in ``surrogates`` at each slope in ``betas``; test accuracy and the mean
   global gradient norm over training. Reported per surrogate: the best accuracy and the
   range of beta within 2 points of it. Zenke & Vogels (2021) found accuracy flat over a
   broad range and falling for too broad (small beta) surrogates.

How beta scales the gradient (tested in ``tests/nn/test_threshold_gradient.py``): every
registered surrogate is ``phi(d; beta) = beta^k phi(beta d; 1)``, ``k = 0`` for
``fast_sigmoid`` (peak 1 at any beta) and ``k = 1`` for the normalised ones (sigmoid, atan,
triangle, gaussian, exponential, straight_through). A larger beta concentrates the gradient
(``dL/dtheta`` and every weight gradient) on neurons near threshold; for ``k = 1`` it also
grows the gradient at threshold in proportion to beta, which the gradient norms show.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import data as sgdata
from .. import surrogate as _surrogate
from ..train import Trainer, make_optimizer, seed_everything
from ..train.progress import Progress
from .config import ConfigError
from .report import Result, RunDir, Table
from .setups import classify, yinyang

PARTS = ("sparsity", "threshold", "surrogate")


@dataclass
class Config:
    #: comma-separated subset of PARTS to run: sparsity, threshold, surrogate
    parts: str = "sparsity,threshold,surrogate"
    seed: int = 0
    #: trainings per sparsity and surrogate point (seeds seed, seed + 1, ...), averaged
    seeds: int = 1
    threshold_seeds: int = 3        # trainings per threshold variant (seed, seed + 1, ...)
    # Yin-Yang parts (1, 2): the coding app's rate network, shrunk
    epochs: int = 10                # training epochs of each sparsity point
    n_train: int = 2000             # Yin-Yang training samples
    n_eval: int = 1000              # Yin-Yang validation samples, and as many test samples
    #: time steps per Yin-Yang sample (the temporal code's spikes fall in the first half)
    n_steps: int = 40
    rate_copies: int = 10           # rate code: Bernoulli spike trains per input value
    hidden: int = 64                # hidden LIF neurons of the Yin-Yang networks
    #: comma-separated weights (>= 0) of the sparsity penalty; one point per weight
    sparsity_weights: str = "0,0.00002,0.00005,0.0001,0.0003,0.001"
    #: penalty on each hidden neuron's spike count: l1 (mean count) or l2 (mean count^2)
    sparsity_penalty: str = "l2"
    #: silent threshold variants: initial threshold, times the well-initialised one (1)
    silent_factor: float = 3.0
    threshold_gain: float = 1.0     # threshold part: factor on the input weights (w_in_gain)
    threshold_lr: float = 0.02      # Adam learning rate of the trainable thresholds
    threshold_epochs: int = 20      # training epochs of each threshold variant
    #: homeostatic lower bound, spikes per hidden neuron per sample (threshold part); 0: off
    homeostasis_low: float = 1.0
    homeostasis_weight: float = 0.01  # weight of the homeostatic term; 0: off
    # Randman part (3): the classification app's randman preset, shrunk
    rm_epochs: int = 10             # training epochs of each surrogate point
    rm_train: int = 4000            # use the first rm_train Randman training samples
    rm_steps: int = 50              # time steps per Randman sample
    rm_hidden: int = 64             # hidden LIF neurons of the Randman network
    rm_batch: int = 50              # Randman training batch size
    rm_classes: int = 5             # Randman classes (>= 2)
    rm_samples: int = 1000          # Randman samples per class (split 80/10/10 in order)
    #: comma-separated surrogate names to sweep (spikegrad.surrogate.names())
    surrogates: str = "fast_sigmoid,sigmoid,atan"
    betas: str = "0.1,0.3,1,3,10,30,100"  # comma-separated surrogate slopes (> 0) to sweep
    progress: bool = True  # print a progress line per sweep point (its trainings stay quiet)


def _floats(text: str, key: str) -> List[float]:
    try:
        vals = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"{key} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ConfigError(f"{key} must list at least one number, got {text!r}")
    return vals


def _names(text: str, key: str, valid) -> List[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in valid]
    if not names or bad:
        raise ConfigError(f"{key} must be a comma-separated subset of {', '.join(valid)}; "
                          f"got {text!r}")
    return names


def validate(c: Config) -> Config:
    _names(c.parts, "parts", PARTS)
    if c.sparsity_penalty not in ("l1", "l2"):
        raise ConfigError(f"sparsity_penalty must be 'l1' or 'l2' (on hidden spike counts); "
                          f"got {c.sparsity_penalty!r}")
    _names(c.surrogates, "surrogates", _surrogate.names())
    if any(b <= 0 for b in _floats(c.betas, "betas")):
        raise ConfigError(f"betas must be > 0, got {c.betas!r}")
    if any(w < 0 for w in _floats(c.sparsity_weights, "sparsity_weights")):
        raise ConfigError(f"sparsity_weights must be >= 0, got {c.sparsity_weights!r}")
    for k in ("seeds", "threshold_seeds", "epochs", "threshold_epochs", "n_train", "n_eval",
              "n_steps", "rate_copies", "hidden", "rm_epochs", "rm_train", "rm_steps",
              "rm_hidden", "rm_batch"):
        if getattr(c, k) < 1:
            raise ConfigError(f"{k} must be >= 1; got {getattr(c, k)}")
    for k in ("rm_classes", "rm_samples"):
        if getattr(c, k) < 2:
            raise ConfigError(f"{k} must be >= 2; got {getattr(c, k)}")
    for k in ("silent_factor", "threshold_gain", "threshold_lr"):
        if not getattr(c, k) > 0:
            raise ConfigError(f"{k} must be > 0; got {getattr(c, k)}")
    for k in ("homeostasis_low", "homeostasis_weight"):
        if getattr(c, k) < 0:
            raise ConfigError(f"{k} must be >= 0 (0 switches it off); got {getattr(c, k)}")
    return c


# --- one point of a sweep, cached as JSON so resume skips finished points --------------------

def _cached(rd: RunDir, name: str, resume: bool, fn) -> dict:
    path = rd.path / "points" / f"{name}.json"
    if resume and path.exists():
        if rd.progress is not None:
            rd.progress.skip(1)
        return json.loads(path.read_text())
    out = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    if rd.progress is not None:
        rd.progress.update(1, f"{name}: test_accuracy {out.get('test_accuracy', float('nan')):.4g}")
    return out


def n_points(c: Config) -> int:
    """Trainings in the run (each a cached point): the unit of its progress lines."""
    parts = _names(c.parts, "parts", PARTS)
    n = len(_floats(c.sparsity_weights, "sparsity_weights")) * c.seeds if "sparsity" in parts else 0
    n += len(threshold_variants(c)) * c.threshold_seeds if "threshold" in parts else 0
    if "surrogate" in parts:
        n += (len(_names(c.surrogates, "surrogates", _surrogate.names()))
              * len(_floats(c.betas, "betas")) * c.seeds)
    return n


def _mean(rows: List[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    out = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    out["per_seed"] = rows
    return out


def _yinyang_cfg(c: Config, seed: int, loss: str = "rate", **kw) -> yinyang.Config:
    kw.setdefault("epochs", c.epochs)
    return yinyang.validate(yinyang.Config(
        dataset="yinyang", losses=loss, seed=seed, n_train=c.n_train,
        n_val=c.n_eval, n_test=c.n_eval, profile_samples=min(500, c.n_eval), n_steps=c.n_steps,
        n_code=c.n_steps // 2, rate_copies=c.rate_copies, hidden=c.hidden,
        progress=False, **kw))


def _yinyang_point(cc: yinyang.Config, data: yinyang.Data, rd: RunDir, name: str) -> dict:
    """Train one of the coding app's networks (``cc.losses``: one loss); accuracy, spikes,
    thresholds and rates before and after training."""
    loss = cc.losses
    encode = yinyang.make_encoder(cc, loss)
    seed_everything(cc.seed, deterministic=True)
    init = yinyang.build_model(cc, yinyang.n_inputs(cc, loss), data.n_classes)
    before = yinyang.evaluate(cc, loss, init, data.test, encode, seed=cc.seed + 2)
    rates_before = _hidden_rates(init, data, encode, cc)
    # train_one seeds identically, so it starts from the same initial weights as `init`
    model, hist, test, _, _ = yinyang.train_one(cc, loss, data, RunDir(rd.path / "runs" / name),
                                               resume=False)
    theta = torch.broadcast_to(model.layers[1].threshold().detach(), (cc.hidden,)).flatten()
    return {"test_accuracy": test["accuracy"], "val_accuracy": hist[-1]["val_accuracy"],
            "spikes_per_sample": test["spikes_per_sample"],
            "spikes_per_sample_before": before["spikes_per_sample"],
            "accuracy_before": before["accuracy"],
            "threshold_mean": float(theta.mean()), "threshold_std": float(theta.std()),
            "thresholds_after": theta.tolist(),
            "rates_before": rates_before, "rates_after": _hidden_rates(model, data, encode, cc),
            "grad_norm_mean": sum(r["grad_norm_mean"] for r in hist) / len(hist)}


@torch.no_grad()
def _hidden_rates(model, data, encode, cc) -> List[float]:
    """Spikes per step of each hidden neuron on the first 500 test samples."""
    x = data.test.tensors[0][:500]
    outs, _ = model.forward_all(encode(x, torch.Generator().manual_seed(cc.seed + 2)))
    return outs[1].mean((0, 1)).tolist()


# --- parts -----------------------------------------------------------------------------------

def sparsity_sweep(c: Config, rd: RunDir, resume: bool) -> List[dict]:
    data = yinyang.load_data(_yinyang_cfg(c, c.seed))
    rows = []
    key = f"count_{c.sparsity_penalty}"
    for lam in _floats(c.sparsity_weights, "sparsity_weights"):
        name = f"sparsity_{c.sparsity_penalty}_{lam:g}"
        per_seed = [_cached(rd, f"{name}_seed{s}", resume,
                            lambda s=s: _yinyang_point(_yinyang_cfg(c, s, **{key: lam}), data, rd,
                                                       f"{name}_seed{s}"))
                    for s in range(c.seed, c.seed + c.seeds)]
        rows.append(dict(_mean(per_seed), weight=lam))
    return rows


def threshold_variants(c: Config) -> Dict[str, dict]:
    """The intrinsic-plasticity variants: name -> overrides of the coding app's config."""
    trainable = dict(learn_threshold=True, threshold_lr=c.threshold_lr)
    # the same loss for the first four variants: TTFS cross-entropy + homeostatic lower bound
    # on counts; the last two drop the homeostatic term, so that what rescues a silent start
    # can be told apart: the homeostatic term (through the weights) or trainable thresholds
    common = dict(epochs=c.threshold_epochs, w_in_gain=c.threshold_gain,
                  rate_low=c.homeostasis_low, rate_low_weight=c.homeostasis_weight)
    plain = dict(rate_low_weight=0.0)
    variants = {"well_fixed": dict(threshold=1.0),
                "well_trainable": dict(threshold=1.0, **trainable),
                "silent_fixed": dict(threshold=c.silent_factor),
                "silent_trainable": dict(threshold=c.silent_factor, **trainable),
                "silent_fixed_no_homeostasis": dict(threshold=c.silent_factor, **plain),
                "silent_trainable_no_homeostasis": dict(threshold=c.silent_factor, **plain,
                                                        **trainable)}
    return {name: {**common, **kw} for name, kw in variants.items()}


def threshold_runs(c: Config, rd: RunDir, resume: bool) -> Dict[str, dict]:
    data = yinyang.load_data(_yinyang_cfg(c, c.seed))
    out = {}
    for name, kw in threshold_variants(c).items():
        per_seed = [_cached(rd, f"threshold_{name}_seed{s}", resume,
                            lambda s=s, kw=kw: _yinyang_point(
                                _yinyang_cfg(c, s, "temporal", **kw), data, rd,
                                                              f"threshold_{name}_seed{s}"))
                    for s in range(c.seed, c.seed + c.threshold_seeds)]
        out[name] = _mean(per_seed)
    return out


def _randman_cfg(c: Config, seed: int, surrogate: str, beta: float) -> classify.Config:
    return classify.validate(classify.Config(
        dataset="randman", seed=seed, epochs=c.rm_epochs, n_steps=c.rm_steps,
        hidden=c.rm_hidden, batch_size=c.rm_batch, surrogate=surrogate,
        surrogate_beta=beta, init="torch", progress=False))


def randman_data(c: Config) -> classify.Data:
    """Randman (generator seed 1) with ``rm_classes`` classes of ``rm_samples`` samples each,
    80/10/10 in order; the first ``rm_train`` training samples are used."""
    rm = sgdata.make_randman(n_classes=c.rm_classes, n_steps=c.rm_steps,
                             samples_per_class=c.rm_samples, seed=1)
    x = sgdata.randman_raster(rm)  # [N, T, U]
    tr, va, te = sgdata.split_in_order(len(x), (0.8, 0.1, 0.1))
    train = TensorDataset(x[tr][:c.rm_train], rm.labels[tr][:c.rm_train])
    val, test = (TensorDataset(x[i], rm.labels[i]) for i in (va, te))
    return classify.Data(train, val, test, x.shape[2], c.rm_classes)


def _randman_point(cc: classify.Config, data: classify.Data) -> dict:
    """The classification app's training (its model, objective and evaluation), no figures."""
    seed_everything(cc.seed, deterministic=cc.deterministic)
    encode = classify.make_encoder(cc)
    model = classify.build_model(cc, data.n_in, data.n_classes)
    opt = make_optimizer(cc.optimizer, model.parameters(), lr=cc.lr, weight_decay=cc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cc.epochs)
    loader = DataLoader(data.train, batch_size=cc.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cc.seed))
    trainer = Trainer(model, opt, classify.make_objective(cc, encode), scheduler=sched,
                      grad_clip=cc.grad_clip or None, progress=cc.progress)
    hist = trainer.fit(loader, cc.epochs)
    test = classify.evaluate(cc, model, data.test, encode, seed=cc.seed + 2)
    grad = [r["grad_norm_mean"] for r in hist]
    return {"test_accuracy": test["accuracy"], "train_accuracy": hist[-1]["train_accuracy"],
            "spikes_per_neuron": test["spikes_per_neuron"],
            "grad_norm_mean": sum(grad) / len(grad), "grad_norm_first_epoch": grad[0]}


def surrogate_sweep(c: Config, rd: RunDir, resume: bool) -> List[dict]:
    names = _names(c.surrogates, "surrogates", _surrogate.names())
    betas = _floats(c.betas, "betas")
    data = randman_data(c)
    rows = []
    for name in names:
        for beta in betas:
            per_seed = [_cached(rd, f"surrogate_{name}_{beta:g}_seed{s}", resume,
                                lambda s=s: _randman_point(_randman_cfg(c, s, name, beta), data))
                        for s in range(c.seed, c.seed + c.seeds)]
            rows.append(dict(_mean(per_seed), surrogate=name, beta=beta))
    return rows


def plateau(rows: List[dict], name: str, tol: float = 0.02) -> dict:
    """Best accuracy of one surrogate and the betas within ``tol`` of it."""
    mine = [r for r in rows if r["surrogate"] == name]
    best = max(r["test_accuracy"] for r in mine)
    ok = [r["beta"] for r in mine if r["test_accuracy"] >= best - tol - 1e-12]
    return {"best": best, "best_beta": max(mine, key=lambda r: r["test_accuracy"])["beta"],
            "beta_low": min(ok), "beta_high": max(ok),
            "contiguous": all(r["test_accuracy"] >= best - tol - 1e-12 for r in mine
                              if min(ok) <= r["beta"] <= max(ok))}


# --- run -------------------------------------------------------------------------------------

def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    rd.progress = Progress(max(1, n_points(c)), "constraints point", enabled=c.progress)
    start = time.perf_counter()
    parts = _names(c.parts, "parts", PARTS)
    metrics: Dict[str, float] = {}
    results: dict = {}
    if "sparsity" in parts:
        rows = sparsity_sweep(c, rd, resume)
        results["sparsity"] = rows
        base = min(rows, key=lambda r: r["weight"])  # the reference: weight 0 normally
        spikes = [r["spikes_per_sample"] for r in rows]
        metrics["sparsity_spike_span"] = max(spikes) / max(min(spikes), 1e-12)
        # the part of the frontier that still classifies (within 10 points of the reference)
        useful = [r["spikes_per_sample"] for r in rows
                  if r["test_accuracy"] >= base["test_accuracy"] - 0.10]
        metrics["sparsity_spike_span_within_10_points"] = max(useful) / max(min(useful), 1e-12)
        half = [r for r in rows if r["spikes_per_sample"] <= 0.5 * base["spikes_per_sample"]]
        if half:
            # the sparsest point that still has at most half the reference's spikes is the
            # strictest reading; report the best such point's drop, too
            metrics["sparsity_drop_at_half_spikes_best"] = (
                base["test_accuracy"] - max(r["test_accuracy"] for r in half))
            first = min(half, key=lambda r: r["weight"])
            metrics["sparsity_drop_at_first_half_point"] = (
                base["test_accuracy"] - first["test_accuracy"])
            metrics["sparsity_first_half_point_spike_ratio"] = (
                first["spikes_per_sample"] / base["spikes_per_sample"])
        metrics["sparsity_reference_accuracy"] = base["test_accuracy"]
    if "threshold" in parts:
        th = threshold_runs(c, rd, resume)
        results["threshold"] = th
        for k, r in th.items():
            metrics[f"threshold_{k}_accuracy"] = r["test_accuracy"]
            metrics[f"threshold_{k}_spikes_before"] = r["spikes_per_sample_before"]
            metrics[f"threshold_{k}_spikes_after"] = r["spikes_per_sample"]
        metrics["threshold_recovery_gap"] = (th["well_fixed"]["test_accuracy"]
                                             - th["silent_trainable"]["test_accuracy"])
        # what trainable thresholds add to a silent start, with and without homeostasis
        metrics["threshold_trainable_gain_with_homeostasis"] = (
            th["silent_trainable"]["test_accuracy"] - th["silent_fixed"]["test_accuracy"])
        metrics["threshold_trainable_gain_without_homeostasis"] = (
            th["silent_trainable_no_homeostasis"]["test_accuracy"]
            - th["silent_fixed_no_homeostasis"]["test_accuracy"])
    if "surrogate" in parts:
        rows = surrogate_sweep(c, rd, resume)
        results["surrogate"] = rows
        for name in dict.fromkeys(r["surrogate"] for r in rows):
            p = plateau(rows, name)
            results.setdefault("plateau", {})[name] = p
            metrics[f"surrogate_{name}_best_accuracy"] = p["best"]
            metrics[f"surrogate_{name}_beta_low"] = p["beta_low"]
            metrics[f"surrogate_{name}_beta_high"] = p["beta_high"]
            mine = [r for r in rows if r["surrogate"] == name]
            metrics[f"surrogate_{name}_worst_accuracy"] = min(r["test_accuracy"] for r in mine)
            default = _surrogate.get(name).beta
            hit = [r for r in mine if math.isclose(r["beta"], default)]
            if hit:
                metrics[f"surrogate_{name}_default_beta_on_plateau"] = float(
                    p["beta_low"] <= default <= p["beta_high"])
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    (rd.path / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    figures = _figures(rd.path, results)
    _report(rd, c, metrics, results, figures)
    return Result(metrics, [], rd.path)


def _figures(path: Path, results: dict) -> List[str]:
    from ..viz import pyplot
    plt = pyplot()
    out = []
    if "sparsity" in results:
        rows = results["sparsity"]
        fig, ax = plt.subplots(figsize=(5, 3.3))
        ax.plot([r["spikes_per_sample"] for r in rows], [r["test_accuracy"] for r in rows], "o-")
        for r in rows:
            ax.annotate(f"{r['weight']:g}", (r["spikes_per_sample"], r["test_accuracy"]),
                        fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("spikes per sample")
        ax.set_ylabel("test accuracy")
        ax.set_title("sparsity penalty on hidden counts (labels: weight)")
        fig.tight_layout()
        fig.savefig(path / "sparsity.png", dpi=120)
        plt.close(fig)
        out.append("sparsity.png")
    if "threshold" in results:
        th = results["threshold"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
        for name, r in th.items():
            axes[0].hist(r["per_seed"][0]["thresholds_after"], bins=30, alpha=0.6,
                         label=f"{name} (after)")
        axes[0].axvline(1.0, ls="--", c="gray", lw=0.8)
        axes[0].set_xlabel("threshold")
        axes[0].set_ylabel("hidden neurons")
        axes[0].set_title("hidden thresholds after training (init: 1 or silent)")
        axes[0].legend(fontsize=7)
        r = th["silent_trainable"]["per_seed"][0]
        axes[1].hist(r["rates_before"], bins=30, histtype="step", lw=2,
                     label="before (all silent)" if max(r["rates_before"]) == 0 else "before")
        axes[1].hist(r["rates_after"], bins=30, alpha=0.6, label="after")
        axes[1].set_xlabel("spikes per step (per hidden neuron)")
        axes[1].set_ylabel("hidden neurons")
        axes[1].set_title("silent init, trainable thresholds: rates")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path / "thresholds.png", dpi=120)
        plt.close(fig)
        out.append("thresholds.png")
    if "surrogate" in results:
        rows = results["surrogate"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
        for name in dict.fromkeys(r["surrogate"] for r in rows):
            mine = [r for r in rows if r["surrogate"] == name]
            axes[0].plot([r["beta"] for r in mine], [r["test_accuracy"] for r in mine], "o-",
                         label=name)
            axes[1].plot([r["beta"] for r in mine], [r["grad_norm_mean"] for r in mine], "o-",
                         label=name)
        for ax, lab in zip(axes, ("test accuracy", "mean gradient norm")):
            ax.set_xscale("log")
            ax.set_xlabel("surrogate slope beta")
            ax.set_ylabel(lab)
            ax.legend(fontsize=7)
        axes[1].set_yscale("log")
        axes[0].set_title("Randman: accuracy vs slope")
        fig.tight_layout()
        fig.savefig(path / "surrogate.png", dpi=120)
        plt.close(fig)
        out.append("surrogate.png")
    return out


def _report(rd: RunDir, c: Config, metrics: dict, results: dict, figures: List[str]) -> None:
    tables = []
    if "sparsity" in results:
        tables.append(Table(
            "Sparsity sweep (Yin-Yang, rate network)",
            [f"{c.sparsity_penalty.upper()} weight", "test accuracy", "spikes per sample"],
            [[f"{r['weight']:g}", r["test_accuracy"], f"{r['spikes_per_sample']:.1f}"]
             for r in results["sparsity"]]))
    if "threshold" in results:
        tables.append(Table(
            "Silent initialisation and trainable thresholds",
            ["variant", "test accuracy", "spikes/sample before", "after",
             "threshold mean (std)"],
            [[k, r["test_accuracy"], f"{r['spikes_per_sample_before']:.1f}",
              f"{r['spikes_per_sample']:.1f}",
              f"{r['threshold_mean']:.3f} ({r['threshold_std']:.3f})"]
             for k, r in results["threshold"].items()]))
    if "surrogate" in results:
        tables.append(Table(
            "Surrogate x slope (Randman)",
            ["surrogate", "beta", "test accuracy", "mean grad norm", "first-epoch grad norm"],
            [[r["surrogate"], f"{r['beta']:g}", r["test_accuracy"], r["grad_norm_mean"],
              r["grad_norm_first_epoch"]] for r in results["surrogate"]]))
        tables.append(Table(
            "Surrogate slope plateau (Randman)",
            ["surrogate", "best accuracy (beta)", "beta within 2 points of best",
             "library default beta"],
            [[n, f"{p['best']:.4f} ({p['best_beta']:g})",
              f"{p['beta_low']:g} - {p['beta_high']:g}"
              + ("" if p["contiguous"] else " (not contiguous)"),
              f"{_surrogate.get(n).beta:g}"] for n, p in results["plateau"].items()]))
    rd.write_report("Constraints: sparsity, trainable thresholds, surrogate slope", __doc__, c,
                    metrics, tables, figures)
