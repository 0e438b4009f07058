"""Brain-computer-interface decoding: offline SG-BPTT against online streaming e-prop, next to
the linear decoders BCI studies use, on simulated motor cortex or a real recording.

Methods, in the order they run:

1. **Data.** ``simulation`` (:func:`spikegrad.data.simulate_cortex`): 2-D hand velocity from
   an Ornstein-Uhlenbeck process (tau 0.3 s, 10 cm/s per component), ``n_channels`` Poisson
   channels cosine-tuned to it (uniform preferred directions, baseline U(5, 20) Hz, depth
   U(2, 6) Hz) leading movement by 100 ms, ``dt_ms`` bins, ``duration_s`` with a
   chronological 75/25 split. ``odoherty`` / ``nlb``: the recording in ``path``
   (:func:`spikegrad.data.load_odoherty`, :func:`spikegrad.data.load_nlb_mc_maze`), binned
   at ``dt_ms``, bins without behaviour (NaN velocity) dropped, the same split.
2. **Linear decoders** fit on the training part: Wiener filters (ridge on a causal history of
   counts in taps of ``ridge_tap_ms``; ``ridge_history_ms`` = 100 ms is the issue's default
   row, ``ridge_long_history_ms`` = 200 ms a second, labelled row) and the Kalman filter of
   Wu et al. 2006 (velocity state, counts lagging by ``kalman_lag_ms``).
3. **Spiking decoder** (:class:`spikegrad.decoders.RSNNDecoder`): the counts through an input
   ``Linear`` (bias) into ``hidden`` recurrent LIF neurons (no autapses, ``tau_mem_ms``;
   ``tau_syn_ms`` > 0 makes them current-based with that synaptic time constant), a
   ``Linear`` to 2 leaky-integrator readouts (``tau_out_ms``); the readout is trained on the
   velocity standardised by its training mean and standard deviation.
4. **Offline SG-BPTT**: Adam (``lr_bptt``, one warm-up epoch, cosine decay to
   ``lr_final_frac``) on batches of ``batch_size`` random ``window_s`` windows of the
   training part, ``bptt_steps`` steps; loss = MSE after a ``burn_in_ms`` burn-in plus
   ``rate_weight * mean_j (r_j - target_rate_hz)^2`` on the hidden rates in Hz; input
   dropout ``input_dropout`` (each count zeroed with that probability, the rest scaled up)
   during training only; fast-sigmoid surrogate (slope 10).
5. **Online streaming e-prop** (:class:`spikegrad.learning.StreamingEProp`, symmetric
   feedback), from the same initial weights: one pass over the training part in time order,
   batch 1, Adam (``lr_eprop`` for the input and recurrent weights, ``lr_eprop *
   eprop_readout_lr_frac`` for the readout, cosine decay over the pass) every
   ``update_every`` bins on the gradient the eligibility traces accumulated since the last
   update; loss
   ``1/2 sum (y - y*)^2`` plus e-prop's rate regulariser (``eprop_reg``, towards
   ``target_rate_hz``, over each update window); the eligibility traces use the
   fast-sigmoid pseudo-derivative of slope ``eprop_beta`` (1: it spans the distance to
   threshold, as e-prop's does in Bellec et al. 2020; the forward pass is the same).
   Nothing is stored but the traces: memory
   does not depend on the stream's length. Both trainings run in
   :class:`spikegrad.train.Trainer` (log, checkpoints, exact resume; the e-prop pass one
   ``chunk_s`` chunk of the stream per epoch, its traces checkpointed with it).
6. **Evaluation**: every decoder decodes the test part from rest, causally; R² and Pearson
   correlation per velocity component, averaged. Costs (NeuroBench-style): parameters and
   their float32 footprint, synaptic operations per second of test data (spiking: one
   accumulate per input count per hidden neuron and per hidden spike per outgoing synapse;
   linear decoders: their MACs per second, which do not depend on activity), activation
   sparsity of the hidden layer.
7. **Latency**: wall time per bin of online e-prop at batch 1 (the step, plus the update and
   Adam step spread over its ``update_every`` bins), after 200 warm-up bins:
   median, mean and 99th percentile over ``latency_steps`` bins. **Memory against stream
   length**: the peak resident-set growth of a fresh process (kernel high-water mark reset
   first) while it streams ``memory_minutes`` of data through online e-prop, and while it
   takes one BPTT training step on a sequence of ``bptt_memory_minutes`` (a 60 s simulated
   recording replayed to that length; the data are allocated before the measurement).
8. **Disruption**: ``disruption_streams`` independent streams of ``disruption_pre_s`` +
   ``disruption_post_s`` with an abrupt change at ``disruption_pre_s`` (simulation: new
   recordings of the same population, each with its own velocity, spikes and disrupted
   channels drawn from a generator of its own (:func:`spikegrad.apps.bci.stream.stream_seed`),
   with :class:`spikegrad.data.Disruption`; a recording: its test part with channels silenced
   or swapped, other channels per stream): (a) the BPTT decoder frozen, (b) the same decoder
   with online e-prop on from the stream's start (``lr_adapt``; each bin decoded before its
   update; with ``silent_channel_s`` > 0 a channel without a count for that long counts as
   dead and the live channels' counts are scaled by N / N_alive; with ``adapt_boost`` > 1 a
   change detector multiplies the rate by it while the unexplained fraction of the target's
   power, averaged over ``adapt_fast_s``, exceeds ``adapt_threshold`` times its
   ``adapt_slow_s`` average), (c) the Kalman filter refit every ``kalman_refit_s`` on the
   last ``kalman_window_s`` of the stream. R² in sliding ``r2_window_s`` windows every second,
   each window pooled over the streams (per velocity component ``1 - sum SSE / sum SST``
   over the same window of every stream, then averaged); pre-event R² over the last 60 s
   before the event, post-event R² over the last 60 s; time to recover: from the event to
   the end of the first window wholly after it from which on every pooled window's R²
   reaches 90 % of that decoder's pre-event R² (for good), and to the end of the first such
   window that does (the first crossing). The same timings on the first stream alone are
   reported beside them, with e-prop's window-to-window spread before the event in one
   stream and pooled (the curves are in ``disruption.json``). The decoders are given the
   true velocity online (a supervised recalibration).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict

import torch

from ...data import ReachingData, load_nlb_mc_maze, load_odoherty, simulate_cortex
from ...decoders import (KalmanDecoder, WienerFilter, correlation, r2_score, spiking_costs)
from ...train import seed_everything
from ..report import Result, RunDir
from . import memory as mem
from . import stream as st
from .config import Config, disruptions, validate
from .report import figures, tables
from .train import build_decoder, train_bptt, train_eprop

__all__ = ["run", "load_data"]


def load_data(c: Config) -> ReachingData:
    """The recording of ``c`` (bins with NaN velocity dropped)."""
    dt = c.dt_ms * 1e-3
    if c.data == "simulation":
        return simulate_cortex(c.duration_s, c.n_channels, dt=dt, seed=c.seed)
    d = (load_odoherty(c.path, dt) if c.data == "odoherty" else load_nlb_mc_maze(c.path, dt))
    ok = torch.isfinite(d.velocity).all(1)
    if not bool(ok.all()):
        counts, velocity = d.counts[ok], d.velocity[ok]
        d = ReachingData(counts=counts, velocity=velocity, dt=d.dt,
                         split=int(round(0.75 * counts.shape[0])),
                         channel_names=d.channel_names, t_start=d.t_start,
                         source=d.source + f" ({int((~ok).sum())} bins without behaviour "
                                           "dropped)", velocity_unit=d.velocity_unit)
    return d


def _scores(name: str, pred, target) -> Dict[str, float]:
    return {f"{name}_r2": r2_score(pred, target).mean,
            f"{name}_corr": correlation(pred, target).mean}


def _linear_costs(name: str, n_params: int, macs_per_bin: float, dt: float
                  ) -> Dict[str, float]:
    return {f"{name}_parameters": float(n_params), f"{name}_footprint_bytes": 8.0 * n_params,
            f"{name}_macs_per_s": macs_per_bin / dt}


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    seed_everything(c.seed, deterministic=c.deterministic)
    data = load_data(c)
    dt = data.dt
    (ctr, vtr), (cte, vte) = data.train, data.test
    m: Dict[str, float] = {"n_channels": float(data.n_channels),
                           "train_s": ctr.shape[0] * dt, "test_s": cte.shape[0] * dt}
    preds = {}
    # --- linear decoders
    tap = max(1, int(round(c.ridge_tap_ms / c.dt_ms)))
    rows = [("ridge", c.ridge_history_ms)]
    if c.ridge_long_history_ms:
        rows.append((f"ridge{int(c.ridge_long_history_ms)}ms", c.ridge_long_history_ms))
    for name, hist_ms in rows:
        hist = max(1, int(round(hist_ms / (tap * c.dt_ms))))
        t0 = time.perf_counter()
        w = WienerFilter(history=hist, ridge=c.ridge, tap_bins=tap).fit(ctr, vtr)
        preds[name] = w.predict(cte)
        m.update(_scores(name, preds[name], vte))
        m[f"{name}_fit_seconds"] = time.perf_counter() - t0
        m.update(_linear_costs(name, w.weights.numel() + w.bias.numel(),
                               w.weights.numel(), dt))
    lag = int(round(c.kalman_lag_ms / c.dt_ms))
    kalman = KalmanDecoder(lag=lag).fit(ctr, vtr)
    preds["kalman"] = kalman.predict(cte)
    m.update(_scores("kalman", preds["kalman"], vte))
    n_act, d_state = kalman.H.shape
    m.update(_linear_costs("kalman", kalman.A.numel() + 2 * n_act * d_state,
                           2 * n_act * d_state + d_state * d_state, dt))
    # --- spiking decoders: same initial weights, two trainings
    progress = c.progress
    torch.manual_seed(c.seed)
    init = build_decoder(c, ctr, vtr).state_dict()
    models, history = {}, {}
    for name in ("bptt", "eprop"):
        dec = build_decoder(c, ctr, vtr)
        dec.load_state_dict(init)
        seed_everything(c.seed, deterministic=c.deterministic)
        t0 = time.perf_counter()
        ckpt = rd.path / "checkpoints" / name
        if name == "bptt":
            history[name] = train_bptt(c, dec, ctr, vtr, ckpt, resume, progress)
        else:
            history[name], _ = train_eprop(c, dec, ctr, vtr, ckpt, resume, progress)
        m[f"{name}_train_seconds"] = time.perf_counter() - t0
        pred, spikes = dec.predict(cte, with_spikes=True)
        preds[name] = pred
        m.update(_scores(name, pred, vte))
        m.update({f"{name}_{k}": v for k, v in spiking_costs(dec, cte, spikes, dt).items()})
        m[f"{name}_rate_hz"] = float(spikes.mean()) / dt
        models[name] = dec
    m["eprop_over_bptt_r2"] = m["eprop_r2"] / m["bptt_r2"]
    # --- latency and memory
    m.update(st.latency(c, models["bptt"], ctr, vtr))
    mem_rows = mem.memory_curves(c) if c.data == "simulation" and c.memory_minutes.strip() \
        else []
    _memory_metrics(mem_rows, m)
    # --- disruption
    dis = {}
    for kind in disruptions(c):
        streams = [st.disruption_data(c, kind, data, r) for r in range(c.disruption_streams)]
        t0 = time.perf_counter()
        dis[kind] = st.disruption_experiment(c, models["bptt"], kalman, streams)
        m.update(st.as_metrics(kind, dis[kind]))
        m[f"disruption_{kind}_seconds"] = time.perf_counter() - t0
    if dis:
        (rd.path / "disruption.json").write_text(json.dumps(
            {kind: {"event_s": r["event_s"], "dt": r["dt"], "streams": r["streams"],
                    "curves": {n: cv.tolist() for n, cv in r["curves"].items()},
                    "first_stream_curves": {n: cv.tolist()
                                            for n, cv in r["first_stream_curves"].items()}}
             for kind, r in dis.items()}) + "\n")
    m["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(m)
    names = figures(c, data, preds, mem_rows, dis, history, rd)
    title = f"BCI decoding: {data.source or c.data}"
    rd.write_report(title, __doc__, c, m, tables(c, m, mem_rows, dis), names)
    hist = [dict(r, training=n) for n, h in history.items() for r in h]
    return Result(m, hist, rd.path)


def _memory_metrics(rows, m: Dict[str, float]) -> None:
    """Per kind: peak RSS and growth at each length, and e-prop's peak ratio longest /
    shortest (the flatness floor)."""
    for r in rows:
        key = f"memory_{r['kind']}_{r['minutes']:g}min"
        m[f"{key}_rss_peak_mb"] = r["rss_peak_mb"]
        m[f"{key}_rss_growth_mb"] = r["rss_growth_mb"]
    ep = sorted((r for r in rows if r["kind"] == "eprop"), key=lambda r: r["minutes"])
    if len(ep) >= 2:
        m["memory_eprop_peak_ratio"] = ep[-1]["rss_peak_mb"] / ep[0]["rss_peak_mb"]
        m["memory_eprop_state_bytes"] = float(ep[-1]["state_bytes"])
    bp = sorted((r for r in rows if r["kind"] == "bptt"), key=lambda r: r["minutes"])
    if len(bp) >= 2 and bp[-1]["minutes"] > bp[0]["minutes"]:
        slope = ((bp[-1]["rss_growth_mb"] - bp[0]["rss_growth_mb"])
                 / (bp[-1]["minutes"] - bp[0]["minutes"]))
        m["memory_bptt_mb_per_min"] = slope
    if not math.isfinite(m.get("memory_eprop_peak_ratio", 1.0)):
        m.pop("memory_eprop_peak_ratio")
