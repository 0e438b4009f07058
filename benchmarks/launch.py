"""What a split region costs beyond its slices: GIL-free (kernels/native.py) vs Python callbacks.

Part 1, an empty region: a numba kernel that does nothing, split in two slices on torch's
OpenMP team, launched natively (``parallel.run_kernel_slices``) and through Python callbacks
(``parallel.run_slices``), back to back, after a torch op (its workers still spinning) and
after a 2 ms sleep; median microseconds per region.

Part 2, whole training steps: one process per workload and variant, the native launches
switched on and off between alternating steps (``native._runtime``), median ms per step and
native / Python.

Run:  python benchmarks/launch.py [--steps 21] [--specs A512:auto,B:auto,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_spikegrad  # noqa: E402
import common  # noqa: E402


def empty_regions() -> None:
    import numba
    import torch
    from spikegrad.kernels import native, parallel

    @numba.njit(nogil=True)
    def kernel(a, lo, hi):
        a[lo] = 0.0

    a = np.zeros(1000)
    slices = [(0, 500), (500, 1000)]
    parallel._openmp()
    if native._runtime is None:
        print("no native launches in this process (no OpenMP runtime, or switched off)")
        return
    x = torch.randn(1000, 1000)
    ways = {"native": lambda: parallel.run_kernel_slices(kernel, (a,), slices),
            "python": lambda: parallel.run_slices(lambda lo, hi: kernel(a, lo, hi), slices)}
    for name, before in (("back to back", lambda: None), ("after a torch op", lambda: x.add_(1)),
                         ("after a 2 ms sleep", lambda: time.sleep(0.002))):
        res = {}
        for way, f in ways.items():
            for _ in range(50):
                f()
            ts = []
            for _ in range(300 if "sleep" in name else 2000):
                before()
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            res[way] = np.median(ts) * 1e6
        print(f"empty region, {name}: native {res['native']:.1f} us, "
              f"Python callbacks {res['python']:.1f} us", flush=True)


def steps(specs: str, n: int) -> None:
    from spikegrad.kernels import native, parallel
    parallel._openmp()
    modes = {"python": None, "native": native._runtime}
    if modes["native"] is None:
        return
    for spec in specs.split(","):
        name, variant = spec.split(":")
        wl = dict(common.WORKLOADS[name], name=name)
        bench = bench_spikegrad.SpikegradBench(wl, common.make_data(wl), variant)
        for m in modes.values():
            native._runtime = m
            for _ in range(3):
                bench.train_step()
        res = {k: [] for k in modes}
        for rep in range(n):
            for k in (list(modes) if rep % 2 else list(modes)[::-1]):
                native._runtime = modes[k]
                t = time.perf_counter()
                bench.train_step()
                res[k].append(time.perf_counter() - t)
        native._runtime = modes["native"]
        p, q = np.median(res["python"]), np.median(res["native"])
        print(f"{spec}: training step, Python callbacks {p * 1e3:.2f} ms, native "
              f"{q * 1e3:.2f} ms, native / Python {q / p:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--specs", default="A512:auto,B:auto,C:numba,D:auto,"
                                        "A512:auto+recompute,C:auto+recompute")
    args = ap.parse_args()
    common.torch_init()  # the benchmark's threads (2)
    empty_regions()
    steps(args.specs, args.steps)


if __name__ == "__main__":
    main()
