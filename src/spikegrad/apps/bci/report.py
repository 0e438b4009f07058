"""The bci app's tables and figures: decoders with their scores and costs, latency, memory
against stream length, the disruption experiment; decoded against true velocity, the
sliding R² around the disruption, memory curves, training curves."""

from __future__ import annotations

from typing import Dict, List

from ..report import RunDir, Table
from .config import Config

__all__ = ["tables", "figures", "DECODERS"]

#: decoder keys in table order, with their labels
DECODERS = (("ridge", "Wiener/ridge, {ridge_history_ms:g} ms history (issue default)"),
            ("ridge{long}ms", "Wiener/ridge, {ridge_long_history_ms:g} ms history"),
            ("kalman", "Kalman (Wu et al. 2006)"),
            ("bptt", "RSNN, offline SG-BPTT"),
            ("eprop", "RSNN, online streaming e-prop (one pass)"))


def _rows(c: Config, m: Dict[str, float]) -> List[list]:
    rows = []
    for key, label in DECODERS:
        key = key.format(long=int(c.ridge_long_history_ms))
        if f"{key}_r2" not in m:
            continue
        ops = m.get(f"{key}_synops_per_s", m.get(f"{key}_macs_per_s"))
        kind = "SynOps (AC)" if f"{key}_synops_per_s" in m else "MACs"
        rows.append([label.format(**vars(c)), m[f"{key}_r2"], m[f"{key}_corr"],
                     int(m[f"{key}_parameters"]), int(m[f"{key}_footprint_bytes"]),
                     ops, kind, m.get(f"{key}_activation_sparsity")])
    return rows


def tables(c: Config, m: Dict[str, float], mem_rows, dis) -> List[Table]:
    out = [Table("Decoders on the test part",
                 ["decoder", "R²", "correlation", "parameters", "footprint (bytes)",
                  "operations / s", "kind", "activation sparsity"], _rows(c, m),
                 f"Test part: {m['test_s']:.0f} s after {m['train_s']:.0f} s of training. "
                 "Footprint: float32 weights for the RSNNs, float64 for the linear decoders "
                 "as fitted. Operations per second of test data: accumulates caused by "
                 "events for the RSNNs, multiply-accumulates per bin for the linear decoders "
                 f"(RSNN evaluated densely: {m['bptt_dense_macs_per_s']:.4g} MACs/s). "
                 f"e-prop / BPTT R² = {m['eprop_over_bptt_r2']:.3f}.")]
    out.append(Table("Online latency per bin (batch 1)",
                     ["backend", "median (µs)", "mean (µs)", "99th percentile (µs)", "bins"],
                     [[m["latency_backend"], m["latency_median_us"], m["latency_mean_us"],
                       m["latency_p99_us"], int(m["latency_bins"])]],
                     "Streaming e-prop step per 4 ms bin, plus the update (flush and Adam) "
                     f"every {c.update_every} bins counted in the bin where it happens. Wall "
                     "times on a shared machine: an upper bound of the unloaded time."))
    if mem_rows:
        out.append(Table("Memory against stream length",
                         ["training", "stream (min)", "peak RSS (MiB)", "RSS growth (MiB)",
                          "seconds"],
                         [[r["kind"], r["minutes"], r["rss_peak_mb"], r["rss_growth_mb"],
                           r["seconds"]] for r in mem_rows],
                         "Fresh process per row; growth = peak during the run minus the RSS "
                         "before it (data already allocated). e-prop streams the whole "
                         "length; BPTT takes one training step on a sequence that long "
                         "(batch 1). e-prop's state and accumulators: "
                         f"{m.get('memory_eprop_state_bytes', float('nan')):.0f} bytes at any "
                         "length."))
    for kind, res in dis.items():
        names = [n for n in res["curves"]]
        out.append(Table(
            f"Disruption ({_describe(c, kind)}) at {res['event_s']:.0f} s",
            ["decoder", "R² before", "R² last 60 s", "time to 90 % of R² before, for good (s)",
             "first window at 90 % (s)", "one stream: for good (s)", "one stream: first (s)"],
            [[n, m[f"disruption_{kind}_{n}_pre_r2"], m[f"disruption_{kind}_{n}_post_r2"],
              m[f"disruption_{kind}_{n}_recover_s"], m[f"disruption_{kind}_{n}_regain_s"],
              m[f"disruption_{kind}_{n}_first_stream_recover_s"],
              m[f"disruption_{kind}_{n}_first_stream_regain_s"]]
             for n in names],
            f"R² in sliding {c.r2_window_s:g} s windows, each pooled over "
            f"{res['streams']} independent disrupted streams (one R² of the same window of "
            "every stream); the last two columns time the first stream's windows alone. "
            "Times from the event to the end of "
            "a window wholly after it: the first from which on every window reaches 90 % of "
            "the decoder's R² before the event (for good), and the first that does; inf: "
            f"never within the {c.disruption_post_s:g} s after the event. Before the event "
            "e-prop's window R² scatters by "
            f"{m[f'disruption_{kind}_eprop_window_sd']:.3f} (sd) in one stream and "
            f"{m[f'disruption_{kind}_eprop_pooled_sd']:.3f} pooled. frozen: the BPTT "
            "decoder as trained; eprop: the same decoder with online e-prop on from the "
            "start; kalman_refit: the Kalman filter refit on a sliding window."
            + _boost_note(c, kind, m)))
    return out


def _boost_note(c: Config, kind: str, m: Dict[str, float]) -> str:
    if c.adapt_boost == 1:
        return ""
    return (f" e-prop's change detector raised its learning rate {c.adapt_boost:g}-fold for "
            f"{m[f'disruption_{kind}_eprop_boost_pre_s']:.1f} s before the event and "
            f"{m[f'disruption_{kind}_eprop_boost_post_s']:.1f} s after it.")


def _describe(c: Config, kind: str) -> str:
    return {"dropout": f"{c.disruption_fraction:.0%} of the channels silent",
            "swap": f"{c.disruption_fraction:.0%} of the channels swapped",
            "rotation": f"preferred directions rotated by {c.rotation_deg:g}°",
            "gain": f"rates times {c.gain:g}"}[kind]


def figures(c: Config, data, preds, mem_rows, dis: Dict[str, dict], history,
            rd: RunDir) -> List[str]:
    from ... import viz
    plt = viz.pyplot()
    names = [_traces(data, preds, rd, plt)]
    if mem_rows:
        names.append(_memory(mem_rows, rd, plt))
    if dis:
        names.append(_disruption(c, dis, rd, plt))
    names.append(_training(history, rd, plt))
    return names


_TRACE_LABELS = {"ridge": "Wiener (ridge)", "kalman": "Kalman", "bptt": "RSNN, SG-BPTT",
                 "eprop": "RSNN, online e-prop"}


def _traces(data, preds, rd: RunDir, plt) -> str:
    _, vte = data.test
    n = min(vte.shape[0], int(round(10.0 / data.dt)))
    t = [k * data.dt for k in range(n)]
    fig, axes = plt.subplots(2, 1, figsize=(9, 5.2), sharex=True)
    for d, ax in enumerate(axes):
        ax.plot(t, vte[:n, d].numpy(), "k", lw=1.6, label="true")
        for name in ("ridge", "kalman", "bptt", "eprop"):
            if name in preds:
                ax.plot(t, preds[name][:n, d].numpy(), lw=0.9, label=_TRACE_LABELS[name])
        ax.set_ylabel(f"v{'xy'[d]} ({data.velocity_unit})")
    axes[0].legend(fontsize=7, ncol=5)
    axes[-1].set_xlabel("time into the test part (s)")
    fig.suptitle("Decoded vs true velocity (first 10 s of the test part)", fontsize=10)
    return rd.save_figure(fig, "traces.png")


def _memory(rows, rd: RunDir, plt) -> str:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for kind, style in (("eprop", "o-"), ("bptt", "s--")):
        pts = sorted((r["minutes"], r["rss_growth_mb"]) for r in rows if r["kind"] == kind)
        if pts:
            ax.plot([p[0] for p in pts], [max(p[1], 1e-2) for p in pts], style, label={"eprop": "online e-prop (stream)", "bptt": "BPTT (sequence)"}[kind])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stream / sequence length (min)")
    ax.set_ylabel("RSS growth (MiB, floor 0.01)")
    ax.set_title("Memory against stream length")
    ax.legend(fontsize=8)
    return rd.save_figure(fig, "memory.png")


_DISRUPTION_LABELS = {"frozen": "BPTT decoder, frozen",
                      "eprop": "same decoder + online e-prop",
                      "kalman_refit": "Kalman, refit on a sliding window"}


def _disruption(c: Config, dis: Dict[str, dict], rd: RunDir, plt) -> str:
    fig, axes = plt.subplots(1, len(dis), figsize=(6.5 * len(dis), 3.8), squeeze=False)
    for ax, (kind, res) in zip(axes[0], dis.items()):
        dt = res["dt"]
        for name, cv in res["curves"].items():
            ax.plot((cv[:, 0] * dt).numpy(), cv[:, 1].numpy(),
                    label=_DISRUPTION_LABELS.get(name, name))
        ax.axvline(res["event_s"], color="k", ls=":", lw=1, label="disruption")
        low = min(float(cv[:, 1].min()) for cv in res["curves"].values())
        ax.set_ylim(max(-0.5, low - 0.05), 1.0)
        ax.set_xlabel("stream time (s)")
        ax.set_ylabel(f"R² ({c.r2_window_s:g} s window, end time; "
                      f"{res['streams']} streams)")
        ax.set_title(_describe(c, kind), fontsize=9)
        ax.legend(fontsize=7)
    return rd.save_figure(fig, "disruption.png")


def _training(history, rd: RunDir, plt) -> str:
    fig, axes = plt.subplots(1, len(history), figsize=(4.5 * len(history), 3.2),
                             squeeze=False)
    for ax, (name, h) in zip(axes[0], history.items()):
        ax.plot([r["epoch"] for r in h], [r["train_loss"] for r in h], "o-", ms=3)
        ax.set_title(name)
        ax.set_xlabel("epoch" if name == "bptt" else "stream chunk")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("training loss")
    return rd.save_figure(fig, "training.png")
