"""The regression app's figures and ``report.md`` sections, for the (T)BPTT run and the
online-rule run."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..report import RunDir, Table, curve
from . import core
from .config import DIVERGENCE_DEMO, Config
from .core import RegressionRSNN, Trained, make_test_task

__all__ = ["save_trace_figures", "bptt_figures", "save_curves", "write_bptt_report",
           "online_figures", "write_online_report"]


def save_trace_figures(c: Config, model: RegressionRSNN, title: str, rd: RunDir) -> List[str]:
    """``output.png`` (target vs readout on the first test sequence, titled ``title``) and
    ``rasters.png`` (input and recurrent spikes); returns the file names."""
    from ... import viz
    plt = viz.pyplot()
    xs, ys = make_test_task(c)
    with torch.no_grad():
        outs, _ = model.forward_all(xs[:, :1])
    t = torch.arange(xs.shape[0]) * c.dt_ms
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for k in range(ys.shape[2]):
        ax.plot(t, ys[:, 0, k], c=f"C{k}", lw=2, alpha=0.5, label=f"target {k}")
        ax.plot(t, outs[-1][:, 0, k], c=f"C{k}", lw=1, label=f"output {k}")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("signal (target units)")
    ax.set_title(f"{title}, test sequence 0")
    ax.legend(fontsize=7, ncol=2)
    rd.save_figure(fig, "output.png")
    viz.save_rasters(rd.path / "rasters.png", [("input, test sequence 0", xs[:, 0].numpy()),
                                                (f"recurrent {c.neuron.upper()}, same sequence",
                                                 outs[1][:, 0].numpy())],
                     dt_ms=c.dt_ms)
    return ["output.png", "rasters.png"]


def bptt_figures(c: Config, result: Trained, rd: RunDir) -> List[str]:
    from ... import viz
    names = save_trace_figures(
        c, result.model, f"{c.task}: target vs readout (NMSE {result.metrics['nmse']:.4f})", rd)
    save_curves(rd.path / "curves.png", {"": result.history})
    return names + ["curves.png"]


def save_curves(path: Path, runs: Dict[str, List[dict]]) -> None:
    """NMSE, firing rate and pre-clip gradient norm against the step, for each run."""
    from ... import viz
    plt = viz.pyplot()
    panels = [("NMSE (train pass)", "train_nmse", True), ("recurrent rate (Hz)", "train_rate_hz",
                                                          False),
              ("gradient norm before clipping", "grad_norm_max", True)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, (title, key, log) in zip(axes, panels):
        for name, hist in runs.items():
            steps = [r["step"] for r in hist]
            ax.plot(steps, [r.get(key, float("nan")) for r in hist], lw=1, label=name or key)
            if key == "train_nmse" and any("test_nmse" in r for r in hist):
                pts = [(r["step"], r["test_nmse"]) for r in hist if "test_nmse" in r]
                ax.plot(*zip(*pts), marker=".", lw=1, label=f"{name} held-out".strip())
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_bptt_report(rd: RunDir, c: Config, metrics: Dict[str, float], history: List[dict],
                  table: List[dict], figures: List[str],
                  clip: Optional[Dict[str, Trained]] = None,
                  sparse: Sequence[Tuple[str, dict]] = ()) -> None:
    tables = []
    other = "chunks" if c.tbptt_mode == "whole" else "whole"
    if table:
        tables.append(Table(
            "Full BPTT vs truncated BPTT",
            ["K", "final NMSE", "rate (Hz)", "train wall (s)",
             f"peak memory, {c.tbptt_mode} (MiB)", f"peak memory, {other} (MiB)"],
            [[r["tbptt_k"] or "full", r["nmse"], r["firing_rate_hz"], r["train_seconds"],
              r["peak_memory_mb"], r.get("peak_memory_other_mb", float("nan"))]
             for r in table],
            f"Same config, seed and number of steps; only the chunk length K changes "
            f"(0 = full BPTT). Trained with tbptt_mode={c.tbptt_mode}; tbptt_mode={other} "
            "gives the same gradient (whole: one pass, the gradient cut every K steps; "
            "chunks: chunk by chunk, memory of one chunk). Peak memory: torch allocator, one "
            "training step."))
    if clip:
        demo = ", ".join(f"{k}={v}" for k, v in DIVERGENCE_DEMO.items())
        tables.append(Table(
            "Gradient clipping",
            ["run", "steps done", "diverged", "final NMSE", "max pre-clip grad norm"],
            [[name, t.metrics["steps"], t.diverged, t.metrics["nmse"],
              max((r["grad_norm_max"] for r in t.history), default=float("nan"))]
             for name, t in clip.items()],
            f"The run's config with {demo}, trained with and without clipping (curves in "
            "clipping.png). A diverged run stopped at a NaN/Inf loss or gradient."))
    if sparse:
        tables.append(Table(
            "Sparsity / target-rate penalty", ["run", "recurrent rate (Hz)", "final NMSE"],
            [[name, m["firing_rate_hz"], m["nmse"]] for name, m in sparse],
            f"Same config with and without the penalty (target {c.target_rate_hz:g} Hz)."))
    tables.append(curve(history, [("step", "step"), ("loss", "train_loss"),
                                  ("NMSE", "train_nmse"), ("rate (Hz)", "train_rate_hz"),
                                  ("grad norm", "grad_norm_max")], max_rows=21))
    rd.write_report(f"Regression: {c.task}", core.__doc__, c, metrics, tables, figures)


def online_figures(c: Config, trained: Trained, curves: Dict[str, List[dict]], mem_rows,
                   rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = save_trace_figures(
        dataclasses.replace(c, learning="bptt"), trained.model,
        f"{c.learning}: target vs readout (NMSE {trained.metrics['nmse']:.4f})", rd)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, hist in curves.items():
        ax.plot([r["epoch"] for r in hist], [r.get("train_nmse", float("nan")) for r in hist],
                lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training pass")
    ax.set_ylabel("NMSE (training pass)")
    ax.legend(fontsize=7)
    figures = names + [rd.save_figure(fig, "curves.png")]
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
        figures.append(rd.save_figure(fig, "memory.png"))
    return figures


def write_online_report(rd: RunDir, c: Config, metrics, history, table, mem_rows, figures,
                        methods: str) -> None:
    tables = []
    other = "chunks" if c.tbptt_mode == "whole" else "whole"
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
    rd.write_report(f"Regression ({c.task}) learned with {c.learning}", methods, c, metrics,
                    tables, figures)
