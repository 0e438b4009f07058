"""Memory of one training step against the sequence length ``T``, for BPTT and the online
rules: the allocator peak in this process and the resident-set growth in a fresh one (the
methods are in :mod:`.online`'s docstring, item 6)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import torch

from ...train import seed_everything
from . import core as reg
from .config import Config, validate
from .rules import online_learner

__all__ = ["memory_scaling", "rss_of_one_step", "rss_probe"]


def _one_step_memory(c: Config, T: int) -> float:
    rc = dataclasses.replace(c, n_steps=T, progress=False)
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    return reg.measure_step_memory(rc, model, xs, ys,
                                   None if c.learning == "bptt" else online_learner)


def rss_of_one_step(cfg, T: int, timeout: float = 600.0) -> Dict[str, float]:
    """Peak RSS growth (MiB) of one training step at length ``T`` in a fresh subprocess
    (Linux): the kernel's high-water mark ``VmHWM`` is reset after a short warm-up
    (``/proc/self/clear_refs``), then ``VmHWM`` after the step minus ``VmRSS`` before it.
    (``ru_maxrss`` is not used: Linux keeps it across ``fork``/``exec``, so a child would
    report its parent's peak.)"""
    c = validate(cfg)
    payload = json.dumps({"cfg": dataclasses.asdict(c), "T": T})
    # a fixed mmap threshold: glibc's default one rises to the size of the largest block freed,
    # after which a repeated step's big tensors come from (and stay in) the heap, and the RSS
    # of a second step would no longer show what the step allocates
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    probe = "import sys; from spikegrad.apps.regression.memory import rss_probe; " \
            "rss_probe(sys.argv[1])"
    out = subprocess.run([sys.executable, "-c", probe, payload], capture_output=True,
                         text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"RSS probe failed (T={T}, {c.learning}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key} (needs Linux)")


_RSS_REPEATS = 3


def rss_probe(payload: str) -> None:
    """Child side of the RSS measurement: run the steps of ``payload`` (JSON: the config and
    ``T``) and print the result as one JSON line."""
    args = json.loads(payload)
    c = Config(**args["cfg"])
    c = dataclasses.replace(c, n_steps=int(args["T"]), progress=False)
    torch.set_num_threads(1)
    rc = c
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    if c.learning == "bptt":
        trainer = reg.make_trainer(rc, model, reg.make_objective(rc, xs.shape[0], 1.0))
    else:
        trainer = reg.make_trainer(rc, model, learner=online_learner(rc, model, xs, ys))

    def step(xs, ys):
        trainer.fit([(xs, ys)], trainer.epoch + 1)

    # a short warm-up sequence first: lazy initialisation (numba compilation, the gradient
    # buffers, the optimizer state) is not what grows with T
    step(xs[:20], ys[:20])
    runs = []
    for _ in range(_RSS_REPEATS):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
            reset = True
        except OSError:
            reset = False
        before = _proc_status_mb("VmRSS")
        t0 = time.perf_counter()
        step(xs, ys)
        seconds = time.perf_counter() - t0
        peak = _proc_status_mb("VmHWM")
        runs.append((peak - before, before, peak, seconds))
    # the median step: single readings jitter by up to ~0.7 MiB at any T (measured; the
    # kernel's RSS counters are batched, small allocations map and unmap pages now and then),
    # even below zero, while a step that stores its sequence grows by MiBs
    growth, before, peak, seconds = sorted(runs)[len(runs) // 2]
    print(json.dumps({"rss_before_mb": before, "rss_peak_mb": peak, "rss_growth_mb": growth,
                      "step_seconds": seconds, "rss_growth_runs_mb": [r[0] for r in runs],
                      "hwm_reset": reset}))


def memory_scaling(cfg, lengths: Sequence[int], rules: Sequence[str],
                   subprocess_rss: bool = True) -> List[dict]:
    """One row per (rule, T): allocator peak of one training step (MiB) and, with
    ``subprocess_rss``, the RSS growth of one step in a fresh process (see the module
    docstring for both methods)."""
    c = validate(cfg)
    rows = []
    for rule in rules:
        for T in lengths:
            cr = dataclasses.replace(c, learning=rule)
            row = {"learning": rule, "T": T, "allocator_peak_mb": _one_step_memory(cr, T)}
            if subprocess_rss:
                row.update(rss_of_one_step(cr, T))
            rows.append(row)
    return rows
