"""Where workload C's training step goes: milliseconds per step in each compiled stage.

Workload C (``Linear(256->256) -> Recurrent(LIF(256))``, B=32, T=1000, input p=0.1; the
data and network of ``make bench``) run by one spikegrad variant (default ``numba``: the
fused Linear -> recurrent LIF pair). Each stage's entry point is wrapped with a timer:
the input projection (``Projection.__call__``, events or GEMM), the forward scan with the
recurrent input, the backward scan (per step the dense ``g_in W_rec`` product back through
the recurrence), the input weight gradient (``Projection.add_weight_grad``) and the
recurrent weight gradient. Medians are not taken: the sums over ``--steps`` steps after
``--warmup`` are divided by the steps. What the stages leave out (autograd, allocation, the
loss) is the rest of the step.

Run:  python benchmarks/breakdown_c.py [--variant numba] [--steps 5]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_spikegrad  # noqa: E402
import common  # noqa: E402

C = {"kind": "rec", "n_in": 256, "n": 256, "B": 32, "T": 1000, "p": 0.1, "name": "C"}


def _timed(fn, key: str, acc: dict):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[key] += time.perf_counter() - t0
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="numba", help="a spikegrad variant of make bench")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    from spikegrad.kernels import numba_leaky, projected
    acc = collections.defaultdict(float)
    # the module attributes the fused pair looks up at call time
    for mod, name in ((numba_leaky, "forward_scan_rec"), (numba_leaky, "backward_scan_rec"),
                      (projected, "recurrent_weight_grad")):
        setattr(mod, name, _timed(getattr(mod, name), name, acc))
    for name in ("__call__", "add_weight_grad"):
        setattr(projected.Projection, name,
                _timed(getattr(projected.Projection, name), f"Projection.{name}", acc))
    bench = bench_spikegrad.SpikegradBench(C, common.make_data(C), args.variant)
    net, x = bench.net, bench.x
    total = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            acc.clear()
        t0 = time.perf_counter()
        out, _ = net(x)
        out.sum().backward()
        net.zero_grad(set_to_none=True)
        if step >= args.warmup:
            total += time.perf_counter() - t0
    per = {k: v / args.steps * 1e3 for k, v in acc.items()}
    print(f"workload C, spikegrad[{args.variant}], firing rate {float(out.detach().mean()):.4f}, "
          f"{args.steps} steps after {args.warmup} warm-up; ms per training step:")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {k:30s} {v:7.1f}")
    whole = total / args.steps * 1e3
    print(f"  {'rest (autograd, loss, ...)':30s} {whole - sum(per.values()):7.1f}")
    print(f"  {'whole step':30s} {whole:7.1f}")


if __name__ == "__main__":
    main()
