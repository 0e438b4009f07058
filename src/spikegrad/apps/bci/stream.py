"""Streaming measurements: per-bin latency of the online decoder, and the disruption
experiment (frozen decoder, the same decoder learning online, Kalman refit on a window)."""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ...data import Disruption, ReachingData, simulate_cortex
from ...decoders import KalmanDecoder, RSNNDecoder, r2_score
from ...train import make_optimizer
from .config import Config
from .detector import ErrorJumpBoost
from .silent import compensate_silent
from .train import make_stream

__all__ = ["latency", "stream_seed", "disruption_data", "disruption_experiment", "adapt_online",
           "detector", "sliding_r2", "pooled_sliding_r2", "window_spread", "time_to_recover",
           "time_to_regain"]


def latency(c: Config, decoder: RSNNDecoder, counts: Tensor, velocity: Tensor
            ) -> Dict[str, float]:
    """Wall time per 4 ms bin of online e-prop at batch 1 (one :meth:`StreamingEProp.step`,
    plus, every ``update_every`` bins, the flush and the Adam step), on a copy of
    ``decoder``: median, mean (the update's cost spread over its bins) and 99th percentile
    in microseconds, after a warm-up of 200 bins (compilation)."""
    dec = copy.deepcopy(decoder)
    stream = make_stream(c, dec)
    opt = make_optimizer("adam", dec.parameters(), lr=c.lr_adapt)
    ys = dec.normalise(velocity).float()
    xs = dec.centre(counts).float()
    n = min(c.latency_steps + 200, xs.shape[0])
    times = []
    for t in range(n):
        t0 = time.perf_counter_ns()
        stream.step(xs[t], ys[t])
        if (t + 1) % c.update_every == 0:
            stream.flush()
            opt.step()
            opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter_ns() - t0)
    times = sorted(times[200:]) or [0]
    return {"latency_median_us": statistics.median(times) / 1e3,
            "latency_mean_us": sum(times) / len(times) / 1e3,
            "latency_p99_us": times[min(len(times) - 1, int(0.99 * len(times)))] / 1e3,
            "latency_backend": stream.backend, "latency_bins": len(times)}


def _disrupt_counts(c: Config, kind: str, counts: Tensor, start: int, repeat: int = 0
                    ) -> Tensor:
    """A recording's counts with disruption ``kind`` (dropout or swap) from bin ``start``."""
    g = torch.Generator().manual_seed(stream_seed(c.seed, repeat))
    n = counts.shape[1]
    k = int(round(c.disruption_fraction * n))
    out = counts.clone()
    chosen = torch.randperm(n, generator=g)[:k]
    if kind == "dropout":
        out[start:, chosen] = 0.0
    elif kind == "swap" and k >= 2:
        out[start:, chosen] = counts[start:, chosen.roll(-1)]
    return out


def stream_seed(seed: int, repeat: int) -> int:
    """The ``recording_seed`` of disruption stream ``repeat`` for run seed ``seed``: a
    generator of its own (numpy's SeedSequence of ``(seed, repeat)``, not ``seed`` plus an
    offset, which would be another seed's training recording), so the stream's movements
    share nothing with the training recording's or with another repeat's."""
    seq = np.random.SeedSequence(entropy=seed, spawn_key=(20, repeat))
    return int(seq.generate_state(1)[0])


def disruption_data(c: Config, kind: str, data: ReachingData, repeat: int = 0) -> ReachingData:
    """The stream of the experiment: ``disruption_pre_s`` before the event and
    ``disruption_post_s`` after it. Simulation: a new recording of the same population (the
    tuning drawn from the seed; velocity, spikes and the disrupted channels from
    :func:`stream_seed` of ``repeat``) with the :class:`Disruption`; a recording: its test
    part with the dropout or swap applied to the counts (``repeat`` picks the channels)."""
    if c.data == "simulation":
        ev = {"dropout": dict(dropout=c.disruption_fraction),
              "swap": dict(swap=c.disruption_fraction),
              "rotation": dict(rotation_deg=c.rotation_deg),
              "gain": dict(gain=c.gain)}[kind]
        total = c.disruption_pre_s + c.disruption_post_s
        return simulate_cortex(total, c.n_channels, dt=c.dt_ms * 1e-3, seed=c.seed,
                               disruptions=[Disruption(c.disruption_pre_s, **ev)],
                               train_fraction=0.0, recording_seed=stream_seed(c.seed, repeat))
    counts, velocity = data.test
    dt = data.dt
    pre = min(int(round(c.disruption_pre_s / dt)), counts.shape[0] // 2)
    return ReachingData(counts=_disrupt_counts(c, kind, counts, pre, repeat), velocity=velocity,
                        dt=dt, split=0, source=data.source + " (test part, disrupted)")


def sliding_r2(pred: Tensor, target: Tensor, window: int, stride: int) -> Tensor:
    """R² of each window of ``window`` bins, every ``stride`` bins: ``[W, 2]`` rows of
    (window end bin, R²)."""
    rows = []
    for end in range(window, pred.shape[0] + 1, stride):
        rows.append((end, r2_score(pred[end - window:end], target[end - window:end]).mean))
    return torch.tensor(rows, dtype=torch.float64)


def time_to_recover(curve: Tensor, event: int, window: int, level: float, dt: float
                    ) -> Optional[float]:
    """Seconds from the event to the end of the first window wholly after it from which on
    every window's R² reaches ``level`` (recovered and stays so); None if none does."""
    after = [(end, r2) for end, r2 in curve.tolist() if end - window >= event]
    found = None
    for end, r2 in reversed(after):
        if r2 < level:
            break
        found = end
    return None if found is None else (found - event) * dt


def time_to_regain(curve: Tensor, event: int, window: int, level: float, dt: float
                   ) -> Optional[float]:
    """Seconds from the event to the end of the first window wholly after it whose R²
    reaches ``level`` (the first crossing, whether or not it lasts); None if none does."""
    for end, r2 in curve.tolist():
        if end - window >= event and r2 >= level:
            return (end - event) * dt
    return None


def _kalman_refit(c: Config, kalman: KalmanDecoder, counts: Tensor, velocity: Tensor,
                  dt: float) -> Tensor:
    """Kalman decoding of the stream, refit every ``kalman_refit_s`` on the last
    ``kalman_window_s`` (the trained filter until a window has passed); each segment is
    decoded with one second of counts before it as warm-up."""
    every = int(round(c.kalman_refit_s / dt))
    window = int(round(c.kalman_window_s / dt))
    warm = int(round(1.0 / dt))
    out = torch.empty(counts.shape[0], velocity.shape[1])
    dec = kalman
    for lo in range(0, counts.shape[0], every):
        if lo >= window:
            dec = KalmanDecoder(lag=kalman.lag).fit(counts[lo - window:lo],
                                                    velocity[lo - window:lo])
        hi = min(lo + every, counts.shape[0])
        start = max(0, lo - warm)
        out[lo:hi] = dec.predict(counts[start:hi])[lo - start:]
    return out


def detector(c: Config) -> ErrorJumpBoost:
    """The change detector of the online adaptation (:mod:`.detector`), its time constants
    converted from seconds to updates of ``update_every`` bins."""
    per_s = 1e3 / (c.dt_ms * c.update_every)
    return ErrorJumpBoost(max(1.0, c.adapt_fast_s * per_s), c.adapt_slow_s * per_s,
                          c.adapt_threshold, c.adapt_boost,
                          warmup=int(round(c.adapt_fast_s * per_s)))


def adapt_online(c: Config, decoder: RSNNDecoder, counts: Tensor, velocity: Tensor
                 ) -> tuple:
    """A copy of ``decoder`` learning online by e-prop along ``counts [T, N]`` with targets
    ``velocity [T, K]``: Adam at ``lr_adapt`` (times the change detector's factor) every
    ``update_every`` bins, each bin decoded before the update that sees it; with
    ``silent_channel_s`` > 0 the counts pass :func:`.silent.compensate_silent` first; with
    ``adapt_reset_adam`` Adam's moments are cleared when an alarm starts. Returns the
    decoded velocity ``[T, K]`` (float32, data units) and the detector's alarm per bin
    ``[T]`` (bool: the update at the end of that bin's window was boosted)."""
    dec = copy.deepcopy(decoder)
    stream = make_stream(c, dec)
    opt = make_optimizer("adam", dec.parameters(), lr=c.lr_adapt)
    det = detector(c)
    if c.silent_channel_s > 0:
        counts, _ = compensate_silent(counts, max(1, int(round(c.silent_channel_s * 1e3
                                                                 / c.dt_ms))))
    xs, ys = dec.centre(counts).float(), dec.normalise(velocity).float()
    outs, alarms = [], torch.zeros(xs.shape[0], dtype=torch.bool)
    for lo in range(0, xs.shape[0], c.update_every):
        hi = min(lo + c.update_every, xs.shape[0])
        y = stream.run(xs[lo:hi], ys[lo:hi])
        outs.append(y)
        was = det.alarm
        factor = det.update(float((y - ys[lo:hi]).pow(2).sum()), float(ys[lo:hi].pow(2).sum()))
        alarms[lo:hi] = det.alarm
        if c.adapt_reset_adam and det.alarm and not was:
            opt.state.clear()        # Adam restarts (bias correction too) from the next step
        for group in opt.param_groups:
            group["lr"] = c.lr_adapt * factor
        stream.flush()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return dec.denormalise(torch.cat(outs)).float(), alarms


def pooled_sliding_r2(preds: Sequence[Tensor], targets: Sequence[Tensor], window: int,
                      stride: int) -> Tensor:
    """R² of each window pooled over K streams of equal length: per component ``1 - sum_k
    SSE_k / sum_k SST_k`` (each stream's window about its own mean), averaged over the
    components, so the windows of the streams weigh by their target variance as bins do in
    one R². ``preds``, ``targets``: K tensors ``[T, C]``. Returns ``[W, 2]`` rows (window end
    bin, R²); with K = 1 it is :func:`sliding_r2`."""
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"need as many predictions as targets (>= 1), got {len(preds)} and "
                         f"{len(targets)}")
    p = torch.stack([x.double() for x in preds])                     # [K, T, C]
    y = torch.stack([x.double() for x in targets])
    if p.shape != y.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(y.shape)} differ")

    def window_sums(x: Tensor) -> Tensor:                             # [K, W, C]
        cs = torch.cat([torch.zeros_like(x[:, :1]), x.cumsum(1)], 1)
        ends = torch.arange(window, x.shape[1] + 1, stride)
        return cs[:, ends] - cs[:, ends - window]
    sse = window_sums((p - y) ** 2).sum(0)
    sst = (window_sums(y ** 2) - window_sums(y) ** 2 / window).sum(0)
    r2 = (1.0 - sse / sst.clamp(min=1e-300)).mean(1)
    ends = torch.arange(window, p.shape[1] + 1, stride, dtype=torch.float64)
    return torch.stack([ends, r2], 1)


def _decode_stream(c: Config, decoder: RSNNDecoder, kalman: KalmanDecoder,
                   stream_data: ReachingData) -> tuple:
    counts, velocity = stream_data.counts, stream_data.velocity
    preds = {"frozen": decoder.predict(counts)}
    preds["eprop"], alarms = adapt_online(c, decoder, counts, velocity)
    preds["kalman_refit"] = _kalman_refit(c, kalman, counts, velocity, stream_data.dt)
    return preds, alarms


def _timing(curve: Tensor, event: int, window: int, last: int, n_bins: int, dt: float
            ) -> Dict[str, float]:
    """Pre-event R² (windows of the last ``last`` bins before the event), post-event R² (the
    last ``last`` bins), seconds to 90 % of the pre-event R² for good and first."""
    ends = curve[:, 0]
    pre_rows = (ends <= event) & (ends - window >= event - last)
    pre = float(curve[pre_rows, 1].mean()) if bool(pre_rows.any()) else math.nan
    post_rows = ends - window >= max(event, n_bins - last)
    post = float(curve[post_rows, 1].mean()) if bool(post_rows.any()) else math.nan
    rec = time_to_recover(curve, event, window, 0.9 * pre, dt)
    first = time_to_regain(curve, event, window, 0.9 * pre, dt)
    return {"pre_r2": pre, "post_r2": post, "recover_s": math.inf if rec is None else rec,
            "regain_s": math.inf if first is None else first}


def window_spread(curves: Sequence[Tensor], event: int) -> float:
    """Standard deviation of the window R² about each curve's own mean over the windows
    ending before ``event`` (the undisrupted steady state): the noise of one window."""
    res = []
    for cv in curves:
        r = cv[cv[:, 0] <= event, 1]
        if r.numel() >= 2:
            res.append(r - r.mean())
    return float(torch.cat(res).std()) if res else math.nan


def disruption_experiment(c: Config, decoder: RSNNDecoder, kalman: KalmanDecoder,
                          streams: Sequence[ReachingData]) -> Dict[str, object]:
    """Decode each of the independent disrupted ``streams`` (equal length, the event at the
    same bin) with (a) ``decoder`` frozen, (b) a copy of it learning online by e-prop
    (:func:`adapt_online`, afresh per stream), (c) the Kalman filter refit on a sliding
    window. Per decoder: the sliding ``r2_window_s`` R² pooled over the streams
    (:func:`pooled_sliding_r2`), and from it the pre-event R² (windows of the last 60 s
    before the event), post-event R² (the last 60 s), the seconds to 90 % of the pre-event
    R² for good (``_recover_s``) and to the first window at that level (``_regain_s``); the
    same from the first stream alone (``_first_stream_*``, the definition of one stream);
    e-prop's single-window and pooled-window spread before the event (``eprop_window_sd``,
    ``eprop_pooled_sd``); the seconds of boosted learning rate before and after the event
    (mean over the streams)."""
    if not streams:
        raise ValueError("disruption_experiment needs at least one stream")
    dt = streams[0].dt
    n_bins = streams[0].counts.shape[0]
    if any(sd.counts.shape[0] != n_bins for sd in streams):
        raise ValueError("the disruption streams must have equal length")
    event = int(round(c.disruption_pre_s / dt)) if c.data == "simulation" else \
        min(int(round(c.disruption_pre_s / dt)), n_bins // 2)
    runs = [_decode_stream(c, decoder, kalman, sd) for sd in streams]
    window = int(round(c.r2_window_s / dt))
    stride = max(1, int(round(1.0 / dt)))
    last = int(round(60.0 / dt))
    alarms = torch.stack([a for _, a in runs]).float()
    out: Dict[str, object] = {"event_s": event * dt, "dt": dt, "streams": len(streams),
                              "curves": {}, "first_stream_curves": {}, "preds": runs[0][0],
                              "eprop_boost_pre_s": float(alarms[:, :event].sum(1).mean()) * dt,
                              "eprop_boost_post_s": float(alarms[:, event:].sum(1).mean()) * dt}
    targets = [sd.velocity for sd in streams]
    for name in runs[0][0]:
        preds = [p[name] for p, _ in runs]
        pooled = pooled_sliding_r2(preds, targets, window, stride)
        singles = [sliding_r2(p, y, window, stride) for p, y in zip(preds, targets)]
        out["curves"][name] = pooled
        out["first_stream_curves"][name] = singles[0]
        for key, v in _timing(pooled, event, window, last, n_bins, dt).items():
            out[f"{name}_{key}"] = v
        for key, v in _timing(singles[0], event, window, last, n_bins, dt).items():
            out[f"{name}_first_stream_{key}"] = v
        if name == "eprop":
            out["eprop_window_sd"] = window_spread(singles, event)
            out["eprop_pooled_sd"] = window_spread([pooled], event)
    return out


def as_metrics(kind: str, res: Dict[str, object]) -> Dict[str, float]:
    return {f"disruption_{kind}_{k}": float(v) for k, v in res.items()
            if k.endswith(("_pre_r2", "_post_r2", "_recover_s", "_regain_s", "_boost_pre_s",
                           "_boost_post_s", "_sd")) or k == "streams"}


def curve_rows(res: Dict[str, object]) -> List[list]:
    """(time s, R² per decoder) rows of the sliding curves, every 5 s."""
    dt = res["dt"]
    names = list(res["curves"])
    first = res["curves"][names[0]]
    rows = []
    for i in range(0, first.shape[0], 5):
        rows.append([float(first[i, 0]) * dt] + [float(res["curves"][n][i, 1]) for n in names])
    return rows
