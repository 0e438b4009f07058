"""TBPTT against full BPTT: one training step of the regression app's default network.

The step is what the app runs (:func:`spikegrad.apps.regression.core.make_trainer`, one
``Trainer.fit`` epoch over the one training sequence): forward, loss and backward
(``tbptt_k = K``; 0 is full BPTT), the gradient norm, the Adam step and the schedule.
Default config: pattern task, T = 1000 steps, batch 1, 100 inputs -> 100 recurrent LIF ->
1 low-pass readout. Both TBPTT modes are timed: ``whole`` (the app's default: one pass, the
gradient cut every K steps inside the kernels) and ``chunks`` (``T / K`` chunks, each one
fused-kernel call per neuron layer forward and backward, so its cost over full BPTT is the
fixed cost per call; memory of one chunk).

All chunk lengths are timed interleaved in one process (each repeat visits every K, starting
one further along each time), the weights and optimizer state restored before every step so
that every K times the same network; medians over the repeats and their ratio to full BPTT,
in wall-clock time and in the process's CPU time (one thread: on a loaded machine the CPU
time is the steadier of the two). Only these in-process ratios mean anything on a shared
machine.

``floor`` (chunks mode): what torch alone costs per chunk for a graph of the same shape (``Linear ->
autograd Function -> Linear -> autograd Function -> MSE``, backward, two ``float`` reads), with
Functions that do nothing but copy their input; the bound column is ``1 + (chunks - 1) *
floor / full``, the ratio a TBPTT step would have if everything but that torch overhead cost
nothing more per chunk than it costs once in full BPTT. Run with one thread::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/tbptt.py [--repeats 41] [--ks 25,50]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

from spikegrad.apps.regression.config import Config, validate
from spikegrad.apps.regression.core import build_model, make_objective, make_task, make_trainer
from spikegrad.train import seed_everything


class Step:
    """One chunk length's trainer on its own copy of the network."""

    def __init__(self, cfg: Config, k: int, xs, ys, model, mode: str = "whole"):
        self.k, self.mode = k, mode
        self.cfg = dataclasses.replace(cfg, tbptt_k=k, tbptt_mode=mode)
        self.model = copy.deepcopy(model)
        self.xs, self.ys = xs, ys
        objective = make_objective(self.cfg, xs.shape[0], float(ys.var(unbiased=False)))
        self.trainer = make_trainer(self.cfg, self.model, objective)
        self.run()  # the first step creates Adam's state: keep it, so every timed step is alike
        self.weights = copy.deepcopy(self.model.state_dict())
        self.opt_state = copy.deepcopy(self.trainer.optimizer.state_dict())

    def run(self) -> None:
        self.trainer.fit([(self.xs, self.ys)], self.trainer.epoch + 1)

    def timed(self) -> tuple:
        """``(wall ms, CPU ms)`` of one step."""
        self.model.load_state_dict(self.weights)
        self.trainer.optimizer.load_state_dict(self.opt_state)
        self.trainer.history.clear()  # its length picks the epoch of a once-only warning
        start, cpu = time.perf_counter(), time.process_time()
        self.run()
        return (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3


class _Copy(torch.autograd.Function):
    """The cheapest autograd Function: a copy forward, the gradient passed through."""

    @staticmethod
    def forward(x, w):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g, None


def floor_chunk_ms(cfg: Config, k: int, calls: int = 500) -> float:
    """CPU ms per chunk of ``k`` steps of torch's own overhead for the network's graph shape
    (see the module docstring): the minimum over 5 blocks of ``calls`` chunks."""
    n_in, n = cfg.n_inputs, cfg.hidden
    x = (torch.rand(k, 1, n_in) < 0.05).float()
    y = torch.rand(k, 1, cfg.n_outputs)
    lin_in = torch.nn.Linear(n_in, n, bias=False)
    w, mask = torch.nn.Parameter(torch.rand(n, n)), 1 - torch.eye(n)
    lin_out = torch.nn.Linear(n, cfg.n_outputs)

    def chunk():
        z = _Copy.apply(lin_in(x), w * mask)
        v = _Copy.apply(lin_out(z), None)
        loss = (k / cfg.n_steps) * torch.nn.functional.mse_loss(v, y)
        loss.backward()
        float(loss.detach()), float(z.detach().mean())

    for _ in range(50):
        chunk()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            chunk()
        best = min(best, (time.process_time() - start) / calls * 1e3)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", default="25,50,100,250", help="TBPTT chunk lengths (full BPTT too)")
    ap.add_argument("--modes", default="whole,chunks", help="TBPTT modes to time")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    ap.add_argument("--floor", action="store_true",
                    help="also measure torch's own per-chunk overhead (see the docstring)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="Config overrides, e.g. hidden=200 (ints and floats)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {}
    for kv in args.set:
        key, value = kv.split("=", 1)
        kind = type(getattr(Config(), key))
        overrides[key] = float(value) if kind is float else int(value)
    cfg = validate(Config(progress=False, **overrides))
    seed_everything(cfg.seed, deterministic=cfg.deterministic)
    xs, ys = make_task(cfg)
    model = build_model(cfg)
    ks = [int(k) for k in args.ks.split(",") if k]
    modes = [m for m in args.modes.split(",") if m]
    keys = [(0, "whole")] + [(k, m) for m in modes for k in ks]
    steps = [Step(cfg, k, xs, ys, model, m) for k, m in keys]
    for _ in range(args.warmup):
        for s in steps:
            s.timed()
    wall = {key: [] for key in keys}
    cpu = {key: [] for key in keys}
    for r in range(args.repeats):
        for j in range(len(steps)):
            s = steps[(r + j) % len(steps)]
            w, c = s.timed()
            wall[s.k, s.mode].append(w)
            cpu[s.k, s.mode].append(c)
    med = {key: (statistics.median(wall[key]), statistics.median(cpu[key])) for key in keys}
    full_wall, full_cpu = med[0, "whole"]
    floor = ({k: floor_chunk_ms(cfg, k) for k in ks} if args.floor and "chunks" in modes
             else {})
    print(f"regression default (T={cfg.n_steps}, B=1, hidden={cfg.hidden}), one training step, "
          f"median of {args.repeats} interleaved repeats, torch threads "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    head = (f"{'K':>6} {'mode':>6} {'chunks':>6} {'wall ms':>8} {'x full':>7} {'CPU ms':>8} "
            f"{'x full':>7}")
    print(head + (f" {'floor ms':>9} {'bound':>6}" if floor else ""))
    rows = []
    for k, m in keys:
        chunks = -(-cfg.n_steps // k) if k and m == "chunks" else 1
        w, c = med[k, m]
        line = (f"{k or 'full':>6} {m if k else '':>6} {chunks:>6} {w:8.2f} "
                f"{w / full_wall:7.2f} {c:8.2f} {c / full_cpu:7.2f}")
        row = {"k": k, "mode": m if k else "full", "chunks": chunks, "wall_ms": w,
               "wall_x_full": w / full_wall, "cpu_ms": c, "cpu_x_full": c / full_cpu}
        if floor and k and m == "chunks":
            bound = 1 + (chunks - 1) * floor[k] / full_cpu
            line += f" {floor[k]:9.3f} {bound:6.2f}"
            row.update(floor_ms=floor[k], bound=bound)
        print(line)
        rows.append(row)
    if args.json:
        args.json.write_text(json.dumps({
            "rows": rows, "T": cfg.n_steps, "hidden": cfg.hidden, "repeats": args.repeats,
            "threads": torch.get_num_threads()}, indent=1))


if __name__ == "__main__":
    main()
