"""The conversion app's tables and figures: accuracy and cost against T for every method,
the cost-accuracy frontier, the converted net's firing rates and the trade-off summary."""

from __future__ import annotations

from typing import Dict, List, Optional

from ..report import RunDir, Table
from .config import Config
from .measure import layer_rates

__all__ = ["tables", "figures"]


def tables(c: Config, curves: Dict[str, Dict[int, dict]], rates: Optional[dict],
           metrics: Dict[str, float]) -> List[Table]:
    names = list(curves)
    steps = sorted({T for by_t in curves.values() for T in by_t})
    ann = metrics["ann_test_accuracy"]
    out = [Table("Accuracy against T", ["T"] + names,
                 [[T] + [curves[n][T]["accuracy"] if T in curves[n] else None for n in names]
                  for T in steps],
                 f"Test accuracy; the ANN reaches {ann:.4f}"
                 + (f", the QCFS ANN {metrics['qcfs_ann_test_accuracy']:.4f}"
                    if "qcfs_ann_test_accuracy" in metrics else "") + "."),
           Table("Synaptic operations per inference against T", ["T"] + names,
                 [[T] + [curves[n][T]["synops"] if T in curves[n] else None for n in names]
                  for T in steps],
                 f"The ANN needs {metrics['ann_macs']:.0f} multiply-accumulates per inference."),
           Table("Trade-off at equal accuracy", ["method", "T needed", "synaptic operations",
                                                 "training (s)"],
                 [[n, metrics.get(f"{n}_steps_to_target", "not reached"),
                   metrics.get(f"{n}_synops_to_target"), _train_seconds(n, metrics)]
                  for n in names],
                 f"Smallest T of the grid at which each method reaches "
                 f"{metrics['target_accuracy']:.4f} (the ANN's accuracy minus one point). "
                 "Training time of a converted net includes its ANN's; of a direct net, the "
                 "run at that T.")]
    if rates:  # before the trade-off, which ends the report
        t_max = max(steps)
        out.insert(2, Table("Firing rates of the converted ReLU net",
                            ["layer", "rate (Hz)", "spikes per neuron per step"],
                            layer_rates(rates, t_max, c.dt_ms * 1e-3),
                            f"Mean over the test set and {t_max} steps of {c.dt_ms:g} ms."))
    return out


def _train_seconds(name: str, metrics: Dict[str, float]) -> Optional[float]:
    if name == "direct":
        T = metrics.get("direct_steps_to_target")
        return None if T is None else metrics.get(f"direct_train_seconds_T{int(T)}")
    return metrics.get(f"{name}_train_seconds")


def figures(c: Config, curves: Dict[str, Dict[int, dict]], rates: Optional[dict],
            metrics: Dict[str, float], rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, by_t in curves.items():
        ts = sorted(by_t)
        axes[0].plot(ts, [by_t[T]["accuracy"] for T in ts], marker="o", label=name)
        axes[1].plot([by_t[T]["synops"] for T in ts], [by_t[T]["accuracy"] for T in ts],
                     marker="o", label=name)
    for ax in axes:
        ax.axhline(metrics["ann_test_accuracy"], color="k", lw=1, ls="--", label="ANN")
        ax.set_xscale("log", base=2 if ax is axes[0] else 10)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    axes[0].set_xlabel("time steps T")
    axes[1].set_xlabel(f"synaptic operations per inference (ANN: {metrics['ann_macs']:.3g} MACs)")
    axes[0].set_title("accuracy against latency")
    axes[1].set_title("cost-accuracy frontier")
    names = [rd.save_figure(fig, "accuracy.png")]
    if rates:
        rows = layer_rates(rates, max(T for by_t in curves.values() for T in by_t),
                           c.dt_ms * 1e-3)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(rows)), [r[2] for r in rows])
        ax.set_xticks(range(len(rows)), [r[0] for r in rows], rotation=20, fontsize=7)
        ax.set_xlabel("spiking layer of the converted net")
        ax.set_ylabel("spikes per neuron per step")
        ax.set_title(f"converted ReLU net: firing rate per layer (test set, "
                     f"T = {max(T for by_t in curves.values() for T in by_t)})", fontsize=9)
        names.append(rd.save_figure(fig, "rates.png"))
    return names
