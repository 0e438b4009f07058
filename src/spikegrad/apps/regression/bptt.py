"""The regression app's (T)BPTT run: train, then compare chunk lengths, clipping and the
sparsity penalty on the same config, and write the run folder."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..config import ConfigError
from ..report import Result, RunDir
from .config import DIVERGENCE_DEMO, Config, parse_ks, validate
from ...train import seed_everything
from .core import Trained, build_model, make_task, measure_step_memory, train
from .report import bptt_figures, save_curves, write_bptt_report

__all__ = ["compare_tbptt", "compare_clipping", "run_bptt"]

OTHER_MODE = {"whole": "chunks", "chunks": "whole"}


def compare_tbptt(cfg: Config, ks: Sequence[int], done: Optional[Dict[int, dict]] = None
                  ) -> List[dict]:
    """Retrain ``cfg`` with each chunk length in ``ks`` (0 = full BPTT): one row per K with
    ``nmse``, ``train_seconds``, ``peak_memory_mb``, ``firing_rate_hz``, and
    ``peak_memory_other_mb``: one step's peak memory in the other ``tbptt_mode`` (the same
    gradient; ``chunks`` holds one chunk, ``whole`` the sequence). ``done`` maps a K to
    metrics already measured (e.g. the main run's) to reuse."""
    other = OTHER_MODE[cfg.tbptt_mode]
    rows = []
    for k in ks:
        if done and k in done:
            m = done[k]
        else:
            m = train(dataclasses.replace(cfg, tbptt_k=k, progress=False)).metrics
        row = {"tbptt_k": k, **{key: m[key] for key in
                                ("nmse", "train_seconds", "peak_memory_mb", "firing_rate_hz",
                                 "diverged")}}
        row["peak_memory_other_mb"] = m["peak_memory_mb"]
        if k:  # full BPTT is the same in both modes
            c = dataclasses.replace(cfg, tbptt_k=k, tbptt_mode=other, progress=False)
            seed_everything(c.seed, deterministic=c.deterministic)
            xs, ys = make_task(c)
            row["peak_memory_other_mb"] = measure_step_memory(c, build_model(c), xs, ys)
        rows.append(row)
    return rows


def compare_clipping(cfg: Config, overrides: Optional[dict] = None) -> Dict[str, Trained]:
    """Train ``cfg`` with ``overrides`` (default :data:`DIVERGENCE_DEMO`) twice: with its
    ``grad_clip`` and with clipping off. Returns ``{"clipped": ..., "unclipped": ...}``."""
    demo = dataclasses.replace(cfg, progress=False, **(overrides or DIVERGENCE_DEMO))
    if not demo.grad_clip:
        raise ConfigError("compare_clipping needs a grad_clip > 0 in the demo overrides")
    return {"clipped": train(demo, measure_memory=False),
            "unclipped": train(dataclasses.replace(demo, grad_clip=0.0), measure_memory=False)}


def run_bptt(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    """Train with BPTT (or TBPTT) and evaluate; write ``config.json``, ``metrics.json``
    (``nmse``, ``firing_rate_hz``, ``wall_seconds``, ``peak_memory_mb``, ...), ``log.jsonl``,
    figures and ``report.md`` to ``out_dir``."""
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    result = train(c, rd.path, resume=resume)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = time.perf_counter() - start
    ks = parse_ks(c.compare_tbptt)
    table = compare_tbptt(c, ks, done={c.tbptt_k: metrics}) if ks else []
    clip = compare_clipping(c) if c.compare_clipping else {}
    sparse = []
    if c.compare_sparsity:
        off = train(dataclasses.replace(c, sparsity_weight=0.0, compare_sparsity=False,
                                        progress=False),
                    measure_memory=False).metrics
        sparse = [("without penalty", off), (f"sparsity_weight={c.sparsity_weight:g}", metrics)]
    for name, t in clip.items():  # the README quotes them (scripts/results.py)
        metrics[f"clip_{name}_steps"] = t.metrics["steps"]
        metrics[f"clip_{name}_diverged"] = t.diverged
    # wall_seconds is the main training alone (the TBPTT table compares it); this is the command
    metrics["run_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    figures = bptt_figures(c, result, rd)
    if clip:
        save_curves(rd.path / "clipping.png", {name: t.history for name, t in clip.items()})
        figures.append("clipping.png")
    write_bptt_report(rd, c, metrics, result.history, table, figures, clip, sparse)
    if table:
        (rd.path / "tbptt_table.json").write_text(json.dumps(table, indent=2) + "\n")
    return Result(metrics, result.history, rd.path)
