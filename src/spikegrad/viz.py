"""Plots of spiking networks (matplotlib, imported on first use with the Agg backend):
:func:`raster`, :func:`membrane`, :func:`rate_histogram` and :func:`curves` draw into an
``Axes`` (a new figure when none is given) and return it; every axis says its quantity and
unit, and a panel of one sample says which sample and label it shows. The ``save_*``
functions are the apps' figure files built from them.

Inputs are time-major, as everywhere in spikegrad: ``[T, N]`` for one sample, or
``[T, B, N]`` with ``sample=b`` choosing one; tensors or arrays.

    >>> ax = sg.viz.raster(spikes, sample=0, label=int(y[0]), dt_ms=1.0)
    >>> ax.figure.savefig("raster.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["pyplot", "raster", "membrane", "rate_histogram", "curves", "save_rasters",
           "save_traces", "save_curves"]


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


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _one_sample(x, sample: Optional[int], what: str) -> np.ndarray:
    """``[T, N]`` from ``[T, N]`` or ``[T, B, N]`` (``sample`` picks ``b``)."""
    a = _array(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim == 3:
        if sample is None:
            raise ValueError(f"{what} has shape {tuple(a.shape)} ([T, B, N]): pass sample=b to "
                             "choose which batch entry to plot")
        if not -a.shape[1] <= sample < a.shape[1]:
            raise ValueError(f"sample={sample} is out of range for a batch of {a.shape[1]}")
        a = a[:, sample]
    elif a.ndim != 2:
        raise ValueError(f"{what} must be [T, N] or [T, B, N] (time first); got shape "
                         f"{tuple(a.shape)}")
    return a


def _axes(ax, figsize=(7, 3)):
    if ax is None:
        _, ax = pyplot().subplots(figsize=figsize)
    return ax


def _time(n_steps: int, dt_ms: Optional[float]):
    """Step times and their axis label."""
    if dt_ms:
        return np.arange(n_steps) * dt_ms, "time (ms)"
    return np.arange(n_steps), "time (steps)"


def _sample_title(title: Optional[str], sample: Optional[int], label) -> str:
    parts = [title] if title else []
    if sample is not None:
        parts.append(f"sample {sample}" + (f", label {label}" if label is not None else ""))
    elif label is not None:
        parts.append(f"label {label}")
    return " - ".join(parts)


def raster(spikes, ax=None, *, sample: Optional[int] = None, label=None,
           dt_ms: Optional[float] = None, title: Optional[str] = None,
           max_neurons: int = 200, neuron_name: str = "neuron"):
    """Spike raster of one sample: a tick at (time, neuron) for each spike.

    Args:
        spikes: ``[T, N]`` or ``[T, B, N]`` (0/1, or counts per step).
        sample: the batch entry of a ``[T, B, N]`` input; named in the title.
        label: the sample's class or target, named in the title.
        dt_ms: step in ms (the x axis in ms); ``None``: in steps.
        max_neurons: plot the first this many neurons only (the y label says so).
        neuron_name: what the rows are (e.g. ``"input channel"``).
    """
    z = _one_sample(spikes, sample, "spikes")
    n_all = z.shape[1]
    z = z[:, :max_neurons]
    ax = _axes(ax)
    t, n = np.nonzero(z)
    times, xlabel = _time(z.shape[0], dt_ms)
    ax.scatter(times[t] if len(t) else t, n, s=4, c="k", marker="|", linewidths=0.8)
    step = dt_ms or 1.0
    ax.set_xlim(-0.5 * step, z.shape[0] * step)
    ax.set_ylim(-0.5, z.shape[1] - 0.5)
    ax.set_xlabel(xlabel)
    shown = f" (first {z.shape[1]} of {n_all})" if n_all > z.shape[1] else ""
    ax.set_ylabel(f"{neuron_name} index{shown}")
    text = _sample_title(title, sample, label)
    if text:
        ax.set_title(text)
    return ax


def membrane(v, ax=None, *, threshold: Optional[float] = None, spikes=None,
             sample: Optional[int] = None, label=None, neurons: Optional[Sequence[int]] = None,
             dt_ms: Optional[float] = None, title: Optional[str] = None,
             highlight: Optional[int] = None, unit: str = "a.u."):
    """Membrane potential over time, one line per neuron, with the threshold dashed and,
    when ``spikes`` are given, a dot where each plotted neuron spiked.

    Args:
        v: ``[T, N]`` or ``[T, B, N]`` membrane potentials.
        threshold: drawn as a dashed line (e.g. 1.0, spikegrad's default).
        spikes: the same shape as ``v``; spike times marked on the traces.
        neurons: which neurons to plot (default: all, up to 10).
        highlight: index into ``neurons`` of a line drawn thicker.
        unit: the potential's unit for the y label (spikegrad's neurons are unitless, with
            the threshold at 1).
    """
    a = _one_sample(v, sample, "v")
    idx = list(range(min(a.shape[1], 10))) if neurons is None else list(neurons)
    ax = _axes(ax)
    times, xlabel = _time(a.shape[0], dt_ms)
    z = None if spikes is None else _one_sample(spikes, sample, "spikes")
    for k, n in enumerate(idx):
        line, = ax.plot(times, a[:, n], lw=2.2 if k == highlight else 0.9,
                        label=f"neuron {n}")
        if z is not None:
            at = np.nonzero(z[:, n])[0]
            ax.plot(times[at], np.maximum(a[at, n], threshold or 0), "o", ms=3,
                    color=line.get_color())
    if threshold is not None:
        ax.axhline(threshold, ls="--", c="gray", lw=0.8, label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"membrane potential ({unit})")
    ax.legend(fontsize=6, ncol=5, loc="upper left")
    text = _sample_title(title, sample, label)
    if text:
        ax.set_title(text)
    return ax


def rate_histogram(spikes, ax=None, *, dt_ms: Optional[float] = None, bins: int = 30,
                   title: Optional[str] = None):
    """Histogram over neurons of each neuron's firing rate, averaged over time and batch.

    Args:
        spikes: ``[T, N]`` or ``[T, B, N]``.
        dt_ms: step in ms: rates in Hz; ``None``: in spikes per step.

    Returns the Axes; the rates are ``ax.rates`` (one per neuron) for checking.
    """
    a = _array(spikes)
    if a.ndim not in (2, 3):
        raise ValueError(f"spikes must be [T, N] or [T, B, N]; got shape {tuple(a.shape)}")
    per_step = a.reshape(a.shape[0], -1, a.shape[-1]).mean(axis=(0, 1))
    rates = per_step * 1000.0 / dt_ms if dt_ms else per_step
    ax = _axes(ax, (5, 3))
    ax.hist(rates, bins=bins, color="0.3")
    ax.set_xlabel("firing rate (Hz)" if dt_ms else "firing rate (spikes per step)")
    ax.set_ylabel("neurons")
    ax.set_title(title or f"{len(rates)} neurons, mean {rates.mean():.3g}"
                 + (" Hz" if dt_ms else " per step"))
    ax.rates = rates
    return ax


def curves(history: Sequence[Mapping], keys: Sequence[str], ax=None, *,
           ylabel: Optional[str] = None, title: Optional[str] = None, log_y: bool = False):
    """Training curves: each key of the per-epoch records against the epoch (a key missing
    from an epoch is a gap).

    Args:
        history: ``Trainer.history`` (records with ``"epoch"``), or the lines of
            ``log.jsonl``.
        keys: record keys to plot, e.g. ``["train_loss"]`` or ``["train_acc", "val_acc"]``.
        ylabel: the y axis' quantity and unit; default: the keys' common word ("loss",
            "accuracy") or the key itself.
    """
    ax = _axes(ax, (5, 3))
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    for key in keys:
        if any(key in r for r in history):
            ax.plot(epochs, [r.get(key, np.nan) for r in history], marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or _common_word(keys))
    if log_y:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(keys) > 1:
        ax.legend(fontsize=7)
    return ax


def _common_word(keys: Sequence[str]) -> str:
    for word in ("loss", "accuracy", "acc", "nmse", "rate"):
        if all(word in k for k in keys):
            return {"acc": "accuracy"}.get(word, word)
    return keys[0] if len(keys) == 1 else "value"


# --- the apps' figure files ------------------------------------------------------------------

def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return Path(path)


def save_rasters(path: Path, panels: Sequence[tuple], dt_ms: Optional[float] = None) -> Path:
    """One raster per ``(title, spikes [T, N])`` panel, stacked; the titles should name the
    sample and its label."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.2 * len(panels)), squeeze=False)
    for ax, (title, zs) in zip(axes[:, 0], panels):
        raster(zs, ax, title=title, dt_ms=dt_ms)
    return _save(fig, path)


def save_traces(path: Path, vs, labels: Sequence[str], title: str = "",
                threshold: Optional[float] = None, highlight: Optional[int] = None,
                dt_ms: Optional[float] = None) -> Path:
    """Membrane traces ``vs [T, N]``, one line per neuron named by ``labels``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3))
    membrane(vs, ax, threshold=threshold, dt_ms=dt_ms, title=title or None,
             highlight=highlight, neurons=range(len(labels)))
    for line, text in zip(ax.get_lines(), labels):
        line.set_label(text)
    ax.legend(fontsize=6, ncol=5, loc="upper left")
    return _save(fig, path)


def save_curves(path: Path, history: List[Dict], panels: Dict[str, Sequence[str]]) -> Path:
    """Training curves: one panel per ``title -> metric keys`` entry, x = epoch, the title
    also the y label."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels.items()):
        curves(history, keys, ax, ylabel=title, title=title)
        if len(keys) == 1:
            ax.legend(fontsize=7)
    return _save(fig, path)
