"""Plots for apps and reports: rasters, membrane traces, training curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files, no display), or an
    ImportError that names the extra."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'spikegrad[apps]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def raster(ax, zs, title: str = "", dt_ms: Optional[float] = None, max_neurons: int = 200) -> None:
    """Spike raster of one sample: ``zs [T, N]`` (0/1) as dots (time on x, neuron on y)."""
    z = np.asarray(zs)[:, :max_neurons]
    t, n = np.nonzero(z)
    scale = dt_ms if dt_ms else 1.0
    ax.scatter(t * scale, n, s=2, c="k", marker="|")
    ax.set_xlim(0, z.shape[0] * scale)
    ax.set_ylim(-0.5, z.shape[1] - 0.5)
    ax.set_xlabel("time (ms)" if dt_ms else "step")
    ax.set_ylabel("neuron")
    if title:
        ax.set_title(title)


def save_rasters(path: Path, panels: Sequence[tuple], dt_ms: Optional[float] = None) -> Path:
    """One row per ``(title, zs [T, N])`` panel."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), squeeze=False)
    for ax, (title, zs) in zip(axes[:, 0], panels):
        raster(ax, zs, title, dt_ms)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_traces(path: Path, vs, labels: Sequence[str], title: str = "",
                threshold: Optional[float] = None, highlight: Optional[int] = None,
                dt_ms: Optional[float] = None) -> Path:
    """Membrane traces ``vs [T, N]``, one line per neuron."""
    plt = pyplot()
    v = np.asarray(vs)
    t = np.arange(v.shape[0]) * (dt_ms or 1.0)
    fig, ax = plt.subplots(figsize=(7, 3))
    for k in range(v.shape[1]):
        ax.plot(t, v[:, k], lw=2.2 if k == highlight else 0.9, label=labels[k])
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="gray", lw=0.8)
    ax.set_xlabel("time (ms)" if dt_ms else "step")
    ax.set_ylabel("membrane")
    ax.legend(fontsize=6, ncol=5, loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_curves(path: Path, history: List[Dict], panels: Dict[str, Sequence[str]]) -> Path:
    """Training curves: one panel per ``title -> metric keys`` entry, x = epoch."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3), squeeze=False)
    epochs = [r["epoch"] for r in history]
    for ax, (title, keys) in zip(axes[0], panels.items()):
        for key in keys:
            if any(key in r for r in history):
                ax.plot(epochs, [r.get(key, np.nan) for r in history], marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
