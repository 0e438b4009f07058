"""Trained neuron constants against fixed ones: one training step of the regression app's
network (the step of ``benchmarks/tbptt.py``: full BPTT, Adam, T = 1000, batch 1, 100
recurrent neurons), for LIF and ALIF, with ``learn_neuron`` off and on, and, for reference,
ALIF with trained constants on the reference loop (what ran before the fused kernel trained
them). Interleaved in one process; medians of wall and CPU time. Run with one thread::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/neuron_constants.py [--repeats 21]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from spikegrad.apps.regression.config import Config, validate
from spikegrad.apps.regression.core import build_model, make_task
from spikegrad.train import seed_everything
from tbptt import Step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    variants = [("lif", False, "auto"), ("lif", True, "auto"), ("alif", False, "auto"),
                ("alif", True, "auto"), ("alif", True, "reference")]
    steps = []
    for neuron, learn, backend in variants:
        cfg = validate(Config(progress=False, neuron=neuron, learn_neuron=learn))
        seed_everything(cfg.seed, deterministic=cfg.deterministic)
        xs, ys = make_task(cfg)
        model = build_model(cfg)
        model.layers[1].neuron.backend = backend
        steps.append(Step(cfg, 0, xs, ys, model))
    for _ in range(args.warmup):
        for s in steps:
            s.timed()
    times = [[] for _ in steps]
    for r in range(args.repeats):
        for j in range(len(steps)):
            i = (r + j) % len(steps)
            times[i].append(steps[i].timed())
    print(f"regression default (T={cfg.n_steps}, B=1, hidden={cfg.hidden}), one full-BPTT "
          f"training step, median of {args.repeats} interleaved repeats, 1 thread")
    print(f"{'neuron':>6} {'constants':>9} {'backend':>9} {'wall ms':>8} {'CPU ms':>8} "
          f"{'x fixed':>8}")
    fixed = {}
    for (neuron, learn, backend), t in zip(variants, times):
        wall = statistics.median(w for w, _ in t)
        cpu = statistics.median(c for _, c in t)
        if not learn:
            fixed[neuron] = cpu
        print(f"{neuron:>6} {'trained' if learn else 'fixed':>9} {backend:>9} {wall:8.2f} "
              f"{cpu:8.2f} {cpu / fixed[neuron]:8.2f}")


if __name__ == "__main__":
    main()
