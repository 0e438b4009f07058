"""The onchip app's tables and figures: every method's accuracy and write cost, the PCM-like
array's accuracy against drift time, its conductances before and after training, and the
three factors of the local rule for one neuron over one trial."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from ..report import RunDir, Table
from .config import Config, drift_times, time_label

__all__ = ["tables", "figures", "factor_traces"]


def _parts(name: str, method: str, array: Optional[str]) -> List[str]:
    if array is None:
        return [name, "BPTT", "fp32"]
    return [name, method.replace("local_", "three-factor, "), name[len(method) + 1:]]


def tables(c: Config, plan, metrics: Dict[str, float], extra: dict) -> List[Table]:
    rows = [_parts(name, method, array)
            + [metrics[f"{name}_accuracy"], metrics.get(f"{name}_pulses_per_sample"),
               metrics.get(f"{name}_writes_per_sample"), metrics[f"{name}_train_seconds"]]
            for name, method, array in plan]
    out = [Table("Accuracy and write cost", ["run", "learning", "weights", "test accuracy",
                             "pulses per sample", "devices written per sample",
                             "training (s)"], rows,
                 f"Every run trains the same network from the same initial weights for "
                 f"{c.epochs} epochs on the same batches of {c.batch_size}. Pulses and "
                 "written devices are summed over both arrays and divided by the training "
                 "samples seen.")]
    run = extra.get("drift_run")
    if run is not None:
        labels = ["t0"] + [time_label(t) for t in drift_times(c)]
        out.append(Table(
            "PCM-like array after drift", ["read", "compensated", "not compensated"],
            [[lab, metrics[f"pcm_drift_{lab}_comp_accuracy"],
              metrics[f"pcm_drift_{lab}_nocomp_accuracy"]] for lab in labels],
            f"Test accuracy of `{run}` read at t0 (20 s after programming) and later, mean "
            f"over {c.drift_repeats} draws of the read noise; right after training, read "
            f"without noise, it reaches {metrics[f'{run}_accuracy']:.4f}."))
    return out


@torch.no_grad()
def factor_traces(net, x, label: int) -> Dict[str, torch.Tensor]:
    """One trial of ``x [T, n_in]`` through a :class:`~.rules.ThreeFactorNet`: the hidden
    neuron with the largest summed ``|e * phi|`` and its most active input; returns the
    series ``x`` (presynaptic factor), ``phi``, ``e`` and ``update`` (``e * phi * x``, the
    weight change per unit of ``-lr``) over the trial, and the neuron and input indices."""
    onehot = F.one_hot(torch.tensor([label]), net.w2.out_features).float()
    state = net.init_state(1)
    pre, post, err = [], [], []
    for t in range(x.shape[0]):
        _, state, (hidden, _) = net.step(x[t:t + 1], onehot, state, t)
        pre.append(hidden.pre[0])
        post.append(hidden.post[0])
        err.append(hidden.error[0])
    pre, post, err = torch.stack(pre), torch.stack(post), torch.stack(err)  # [T, P], [T, H]
    j = int((err * post).abs().sum(0).argmax())
    p = int(pre.sum(0).argmax())
    return {"x": pre[:, p], "phi": post[:, j], "e": err[:, j],
            "update": err[:, j] * post[:, j] * pre[:, p], "neuron": j, "input": p}


def figures(c: Config, plan, trained, extra: dict, metrics: Dict[str, float], data, encode,
            rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = [_bars(plan, metrics, rd, plt)]
    if extra.get("drift_run") is not None:
        names += [_conductances(extra, rd, plt), _drift(c, extra, metrics, rd, plt)]
    local = [name for name, method, array in plan if array is not None]
    if local:
        names.append(_factors(c, local[0], trained[local[0]][1].net, data, encode, rd, plt))
    return names


def _bars(plan, metrics, rd: RunDir, plt) -> str:
    runs = [name for name, _, _ in plan]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(runs) + 2), 3.8))
    acc = [metrics[f"{n}_accuracy"] for n in runs]
    colors = ["C0" if array is None else ("C2" if array == "fp32" else "C1")
              for _, _, array in plan]
    ax.bar(range(len(runs)), acc, color=colors)
    for i, a in enumerate(acc):
        ax.text(i, a + 0.01, f"{a:.3f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, rotation=55, ha="right", fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("test accuracy")
    ax.set_title("BPTT (blue), local rule in fp32 (green) and on crossbars (orange)")
    return rd.save_figure(fig, "accuracy.png")


def _conductances(extra: dict, rd: RunDir, plt) -> str:
    layers = list(extra["after"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for key, color in (("before", "C7"), ("after", "C1")):
            ax.hist(extra[key][layer].numpy(), bins=60, alpha=0.6, color=color,
                    label=f"{key} training")
        ax.set_yscale("log")
        ax.set_xlabel("conductance G+ and G- (uS)")
        ax.set_title(f"{extra['drift_run']}: {layer} array")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("devices")
    return rd.save_figure(fig, "conductances.png")


def _drift(c: Config, extra: dict, metrics, rd: RunDir, plt) -> str:
    times = drift_times(c)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for comp, style in (("comp", "o-"), ("nocomp", "s--")):
        acc = [metrics[f"pcm_drift_{time_label(t)}_{comp}_accuracy"] for t in times]
        ax.plot(times, acc, style, label="compensated" if comp == "comp" else
                "not compensated")
    ax.axhline(metrics["pcm_drift_t0_comp_accuracy"], color="k", lw=1, ls=":", label="t0")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"PCM drift: {extra['drift_run']}")
    ax.legend(fontsize=8)
    return rd.save_figure(fig, "drift.png")


def _factors(c: Config, name: str, net, data, encode, rd: RunDir, plt) -> str:
    x, y = (t[:1] for t in data.test.tensors)
    xs = encode(x, torch.Generator().manual_seed(c.seed + 2))[:, 0]       # [T, n_in]
    tr = factor_traces(net, xs, int(y[0]))
    fig, axes = plt.subplots(4, 1, figsize=(6, 6.4), sharex=True)
    steps = range(len(tr["x"]))
    panels = (("x", f"x: trace of input {tr['input']}"), ("phi", "phi(u)"), ("e", "e"),
              ("update", "e * phi(u) * x"))
    for ax, (key, label) in zip(axes, panels):
        ax.plot(steps, tr[key].numpy(), drawstyle="steps-mid")
        ax.set_ylabel(label, fontsize=8)
    axes[0].set_title(f"{name}: three factors of hidden neuron {tr['neuron']}, test sample "
                      f"(label {int(y[0])})", fontsize=9)
    axes[-1].set_xlabel(f"time step ({c.dt_ms:g} ms)")
    return rd.save_figure(fig, "factors.png")
