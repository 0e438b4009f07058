"""Training under a competing CPU load: how much slower a training step gets when other
processes want the same cores, for spikegrad's fused kernels and for the plain torch loop of
the same model (spikegrad's ``backend="torch"``: torch ops only, torch's own threading), and
for the fused kernels made to split whether or not it pays (``auto-split``: they split over
torch's threads however busy the machine is).

Both run in one process, interleaved block by block, quiet and then with competitors running:

- ``spin``: one pure-Python busy loop per competitor (a CPU hog with no threads of its own);
- ``torch``: one process per competitor multiplying 256 x 256 matrices on ``THREADS`` torch
  threads (another training job: an OpenMP team of its own whose idle workers spin).

The slowdown is the loaded median step time over the quiet one. A parallel runtime that
spin-waits for a core that another process holds can be slowed far beyond the fair share
(the issue measured 29x on the biophysics app at load ~10 on 2 cores).

    .venv/bin/python benchmarks/contention.py                # B and C (T=250), both kinds
    .venv/bin/python benchmarks/contention.py --workloads B,C:1000 --kinds torch --competitors 4

``make bench`` runs the default and puts the table in RESULTS.md.

Every process (this one and the competitors) runs at the niceness this one was started with,
so the competition is fair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_spikegrad  # noqa: E402
import common  # noqa: E402

_SPIN = "while True:\n    pass\n"
_TORCH = ("import torch\n"
          f"torch.set_num_threads({common.THREADS})\n"
          "a = torch.rand(256, 256)\n"
          "while True:\n"
          "    a = torch.tanh(a @ a)\n")
VARIANTS = ("auto", "auto-split", "torch")


class _AlwaysSplit:
    """The fused kernels splitting over torch's threads whether or not it pays (what they did
    before they measured it)."""

    def __init__(self, bench):
        from spikegrad.kernels import parallel
        self.bench, self.parallel = bench, parallel

    def train_step(self):
        judge = self.parallel.splitting_pays
        self.parallel.splitting_pays = lambda: True
        try:
            self.bench.train_step()
        finally:
            self.parallel.splitting_pays = judge


def _competitors(kind: str, n: int) -> list:
    code = _SPIN if kind == "spin" else _TORCH
    env = dict(os.environ, OMP_NUM_THREADS=str(common.THREADS))
    return [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(n)]


def _measure(benches: dict, blocks: int, steps: int) -> dict:
    """Median step time (ms) per variant; blocks alternate between the variants so that a
    change in the machine's load hits both alike."""
    times = {name: [] for name in benches}
    for _ in range(blocks):
        for name, bench in benches.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                bench.train_step()
            times[name].append((time.perf_counter() - t0) / steps * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def run(workload: str, kinds, competitors: int, blocks: int, steps: int) -> list:
    """Rows for ``workload`` (a name from ``common.WORKLOADS``, optionally ``NAME:T``)."""
    name, _, T = workload.partition(":")
    wl = common.workload(name, int(T) if T else None)
    data = common.make_data(wl)
    benches = {v: bench_spikegrad.build(wl, data, v.split("-")[0]) for v in VARIANTS}
    benches["auto-split"] = _AlwaysSplit(benches["auto-split"])
    for bench in benches.values():  # compilation, caches, allocator
        for _ in range(3):
            bench.train_step()
    rows = []
    quiet = _measure(benches, blocks, steps)
    for kind in kinds:
        procs = _competitors(kind, competitors)
        try:
            time.sleep(1.0)  # let the competitors start (imports) before timing
            loaded = _measure(benches, blocks, steps)
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()
        for v in VARIANTS:
            rows.append(dict(workload=name, T=wl["T"], kind=kind, competitors=competitors,
                             variant=v, quiet_ms=quiet[v], loaded_ms=loaded[v],
                             slowdown=loaded[v] / quiet[v]))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="B,C:250",
                    help="NAME or NAME:T (C at T=1000 takes minutes: the torch loop under load)")
    ap.add_argument("--kinds", default="spin,torch")
    ap.add_argument("--competitors", type=int, default=2 * common.THREADS,
                    help="competing processes (default: twice the threads, load ~2x cores)")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    import spikegrad
    import torch
    print(f"torch {torch.__version__}, spikegrad {spikegrad.__version__}, "
          f"{os.cpu_count()} CPUs, torch threads {common.THREADS}, nice {os.nice(0)}")
    rows = []
    print("| workload | competitors | variant | quiet ms | loaded ms | slowdown |")
    print("|---|---|---|---:|---:|---:|")
    for w in a.workloads.split(","):
        for r in run(w, a.kinds.split(","), a.competitors, a.blocks, a.steps):
            rows.append(r)
            print(f"| {r['workload']} (T={r['T']}) | {r['competitors']} x {r['kind']} | "
                  f"{r['variant']} | {r['quiet_ms']:.2f} | {r['loaded_ms']:.2f} | "
                  f"{r['slowdown']:.2f}x |", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count(),
                                      "threads": common.THREADS}, indent=1))


if __name__ == "__main__":
    main()
