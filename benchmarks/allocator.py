"""glibc's defaults against the thresholds ``import spikegrad`` sets: minor page faults and
time of a training step of workload A's Sequential ``Linear(N, N) -> LIF`` (B=16, T=500,
input p=0.1, loss = sum of spikes, 2 threads), one fresh process per variant and round::

    .venv/bin/python benchmarks/allocator.py [--n 2048] [--rounds 3] [--steps 20]

Variants: ``defaults`` (``SPIKEGRAD_MALLOPT=0``: glibc's own thresholds), ``env`` (the
benchmark's ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``), ``import`` (spikegrad's
own setting at import, nothing in the environment). Medians over a process's steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

WORKER = """
import json, resource, statistics, sys, time, torch
import spikegrad as sg
from spikegrad.kernels import allocator
n, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(2)
torch.manual_seed(0)
net = sg.nn.Sequential(sg.nn.Linear(n, n, bias=False), sg.nn.LIF(n))
xs = (torch.rand(500, 16, n) < 0.1).float()
def step():
    zs, _ = net(xs)
    zs.sum().backward()
    net.zero_grad(set_to_none=True)
for _ in range(3):
    step()
ms, faults = [], []
for _ in range(steps):
    f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    step()
    ms.append((time.perf_counter() - t0) * 1e3)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"ms": statistics.median(ms), "faults": statistics.median(faults),
                  "tuned": bool(allocator._done)}))
"""

VARIANTS = {
    "defaults": {"SPIKEGRAD_MALLOPT": "0"},
    "env": {"SPIKEGRAD_MALLOPT": "0", "MALLOC_MMAP_THRESHOLD_": str(256 << 20),
            "MALLOC_TRIM_THRESHOLD_": str(1 << 30)},
    "import": {},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    base = {k: v for k, v in os.environ.items()
            if k not in ("SPIKEGRAD_MALLOPT", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    base["OMP_NUM_THREADS"] = "2"
    rows = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        names = list(VARIANTS)
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([sys.executable, "-c", WORKER, str(args.n), str(args.steps)],
                                 env={**base, **VARIANTS[name]}, check=True,
                                 capture_output=True, text=True).stdout
            rows[name].append(json.loads(out.strip().splitlines()[-1]))
    print(f"Linear({args.n}, {args.n}) -> LIF, B=16, T=500, 2 threads; per process: median of "
          f"{args.steps} steps; {args.rounds} processes per variant")
    for name, rs in rows.items():
        ms = ", ".join(f"{r['ms']:.0f}" for r in rs)
        faults = ", ".join(f"{r['faults']:.0f}" for r in rs)
        print(f"{name:>9}: ms {ms}; page faults per step {faults}; tuned "
              f"{rs[0]['tuned']}")


if __name__ == "__main__":
    main()
