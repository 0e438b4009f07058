"""Where a workload's training step goes: milliseconds per step in each compiled stage.

A workload of ``make bench`` (default C: ``Linear(256->256) -> Recurrent(LIF(256))``, B=32,
T=1000, input p=0.1) with its data and network, run by one spikegrad variant (default
``numba``: the fused Linear -> LIF pairs). Each stage's entry point is wrapped with a timer:
finding the active inputs and choosing the path (``plan_with_events``), packing ``W`` for the
event forward (``pack_weight``), the input projection (``Projection.__call__``, events or
GEMM), the neuron loops (``ChunkedLoop.forward`` / ``backward``; the recurrent layer's
``forward_scan_rec`` / ``backward_scan_rec``, the latter with the per-step dense
``g_in W_rec`` product back through the recurrence), the input weight gradient
(``Projection.add_weight_grad``) and the recurrent weight gradient; an unfused layer's
active inputs (``event_linear._find_events``, e.g. a readout's) and a narrow layer's
products (``numba_narrow.*``). The sums over
``--steps`` steps after ``--warmup`` are divided by the steps (no medians). What the stages
leave out (autograd, allocation, the loss, a readout layer's torch ops) is the rest of the
step. The step is the benchmark's own (``train_step``: its loss, gradients to all weights).

Run:  python benchmarks/breakdown.py [--workload C] [--variant numba] [--steps 5]
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

_open: list = []  # inner time of the timed calls in progress (one list entry per call)


def _timed(fn, key: str, acc: dict):
    """``fn`` adding its exclusive time to ``acc[key]``: a timed call inside another (e.g.
    finding the active inputs inside ``plan_with_events``) counts for the inner stage only,
    so the stages and the rest add up to the step."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        _open.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - t0
            acc[key] += elapsed - _open.pop()
            if _open:
                _open[-1] += elapsed
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="C", choices=sorted(common.WORKLOADS))
    ap.add_argument("--variant", default="numba", help="a spikegrad variant of make bench")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    from spikegrad.kernels import event_linear, numba_event, numba_leaky, numba_narrow, projected
    acc = collections.defaultdict(float)
    # a narrow layer's (readout's) event path: its active inputs and its three products
    setattr(event_linear, "_find_events",
            _timed(event_linear._find_events, "event_linear._find_events", acc))
    for name in ("forward", "weight_grad", "input_grad"):
        setattr(numba_narrow, name,
                _timed(getattr(numba_narrow, name), f"numba_narrow.{name}", acc))
    # the module attributes the fused pair looks up at call time
    for mod, name in ((numba_leaky, "forward_scan_rec"), (numba_leaky, "backward_scan_rec"),
                      (projected, "recurrent_weight_grad")):
        setattr(mod, name, _timed(getattr(mod, name), name, acc))
    for mod, name in ((projected, "plan_with_events"), (numba_event, "pack_weight")):
        setattr(mod, name, _timed(getattr(mod, name), name, acc))
    for name in ("__call__", "add_weight_grad", "finish_weight_grad"):
        setattr(projected.Projection, name,
                _timed(getattr(projected.Projection, name), f"Projection.{name}", acc))
    for name in ("forward", "backward"):
        setattr(numba_leaky.ChunkedLoop, name,
                _timed(getattr(numba_leaky.ChunkedLoop, name), f"ChunkedLoop.{name}", acc))
    wl = dict(common.WORKLOADS[args.workload], name=args.workload)
    bench = bench_spikegrad.SpikegradBench(wl, common.make_data(wl), args.variant)
    total = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            acc.clear()
        t0 = time.perf_counter()
        bench.train_step()
        if step >= args.warmup:
            total += time.perf_counter() - t0
    per = {k: v / args.steps * 1e3 for k, v in acc.items()}
    print(f"workload {args.workload}, spikegrad[{args.variant}], firing rate "
          f"{bench.rate():.4f}, {args.steps} steps after {args.warmup} warm-up; ms per "
          "training step:")
    for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
        print(f"  {k:30s} {v:7.1f}")
    whole = total / args.steps * 1e3
    print(f"  {'rest (autograd, loss, ...)':30s} {whole - sum(per.values()):7.1f}")
    print(f"  {'whole step':30s} {whole:7.1f}")


if __name__ == "__main__":
    main()
