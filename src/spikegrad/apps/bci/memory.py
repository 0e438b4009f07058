"""Memory against stream length, in fresh processes (:func:`spikegrad.train.memory.
run_rss_probe`): online e-prop over 1 min to 1 h of stream, and one BPTT step over a
sequence of the same kind of length (which stores every bin for the backward pass)."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List

import torch

from ...data import simulate_cortex
from ...train import make_optimizer, seed_everything
from ...train.memory import rss_growth_mb, run_rss_probe
from .config import Config, minutes
from .train import build_decoder, make_stream

__all__ = ["memory_curves", "probe"]

_CHUNK_S = 60.0


def _setup(c: Config):
    seed_everything(c.seed)
    d = simulate_cortex(_CHUNK_S, c.n_channels, dt=c.dt_ms * 1e-3, seed=c.seed)
    dec = build_decoder(c, d.counts, d.velocity)
    return dec.centre(d.counts).float(), dec.normalise(d.velocity).float(), dec


def probe(payload: str) -> None:
    """Child side: ``payload`` JSON ``{"cfg", "kind": "eprop" | "bptt", "minutes"}``; prints
    :func:`spikegrad.train.memory.rss_growth_mb`'s result plus ``state_bytes`` (e-prop: the
    bytes of its state and accumulators)."""
    args = json.loads(payload)
    c = Config(**args["cfg"])
    torch.set_num_threads(1)
    counts, ys, dec = _setup(c)
    n_bins = int(round(args["minutes"] * 60e3 / c.dt_ms))
    chunk = counts.shape[0]
    if args["kind"] == "eprop":
        stream = make_stream(c, dec)
        opt = make_optimizer("adam", dec.parameters(), lr=c.lr_adapt)
        n = c.update_every

        def run(bins: int) -> None:
            # the 60 s recording replayed: the stream's content does not change its memory
            for lo in range(0, bins, n):
                k = lo % chunk
                stream.run(counts[k:k + n], ys[k:k + n])
                stream.flush()
                opt.step()
                opt.zero_grad(set_to_none=True)
        run(10 * n)                                       # warm-up: compile, Adam state
        out = rss_growth_mb(lambda: run(n_bins), repeats=1)
        state = stream.state_dict()
        out["state_bytes"] = sum(t.numel() * t.element_size()
                                 for t in list(state["state"]) + list(state["acc"])
                                 if t is not None)
    else:
        reps = -(-n_bins // chunk)
        xs = counts.repeat(reps, 1)[:n_bins, None]       # [T, 1, N]
        targets = ys.repeat(reps, 1)[:n_bins, None]
        opt = make_optimizer("adam", dec.parameters(), lr=c.lr_bptt)

        def step(x, y) -> None:
            out, _ = dec(x)
            loss = (out - y).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step(xs[:200], targets[:200])                      # warm-up
        out = rss_growth_mb(lambda: step(xs, targets), repeats=1)
    out["minutes"] = args["minutes"]
    out["kind"] = args["kind"]
    print(json.dumps(out))


def memory_curves(c: Config) -> List[Dict[str, float]]:
    """One row per (kind, length): the RSS probe's numbers (see :func:`probe`)."""
    rows = []
    plan = [("eprop", m) for m in minutes(c.memory_minutes, "memory_minutes")]
    plan += [("bptt", m) for m in minutes(c.bptt_memory_minutes, "bptt_memory_minutes")]
    cfg = dataclasses.asdict(dataclasses.replace(c, progress=False))
    for kind, m in plan:
        rows.append(run_rss_probe(__name__, "probe", {"cfg": cfg, "kind": kind, "minutes": m},
                                  timeout=900.0))
    return rows
