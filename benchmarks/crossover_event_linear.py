"""Where do event-driven synapses beat the dense time-folded GEMM? (issue 3, item 2)

For each shape ``x [N = T*B, in] -> [N, out]`` and spike density ``p`` this times, in
interleaved repetitions (medians), on random Bernoulli(p) spikes:

- forward: ``F.linear(x, W)`` against ``event_linear(x, W, backend="event")`` (no grad);
- weight gradient: ``g^T @ x`` (dense) against the event gather-sum from the active indices;
- forward + backward (dW only, ``x`` is an input layer's spikes): ``F.linear`` against
  ``backend="event"`` and against ``backend="auto"``;

and reports speedups (dense time / event time; > 1 means event-driven wins), the densities
where they cross 1, and the bytes each path keeps for backward. The crossover table in
``spikegrad/kernels/event_linear.py`` comes from this script.

On a machine shared with other jobs, run with ``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP's
default spin-waiting makes each of the event path's ~25 small parallel ops wait for a
descheduled thread; measured 3-4x slower with 2 threads than with 1 without it).

Run:  python benchmarks/crossover_event_linear.py            (A512, A2048, B; a few minutes)
      python benchmarks/crossover_event_linear.py --quick    (fewer repetitions)
      python benchmarks/crossover_event_linear.py --shapes 8000x512x512 --densities 0.01 0.1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from spikegrad.kernels.event_linear import (_find_events, _weight_grad_from, _use_numba,
                                            crossover_density, event_linear)

SHAPES = {"A512": (8000, 512, 512), "A2048": (8000, 2048, 2048), "B": (6400, 700, 256)}
DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)


def _medians(fns: dict, reps: int) -> dict:
    for f in fns.values():  # warm-up
        f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _saved_bytes(fn) -> int:
    """Bytes of the non-parameter tensors autograd keeps for backward during ``fn()``."""
    seen, total = set(), 0

    def pack(t):
        nonlocal total
        if not isinstance(t, torch.nn.Parameter) and not t.requires_grad:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def measure(name: str, n: int, n_in: int, n_out: int, p: float, reps: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(n, n_in, generator=gen) < p).float()
    w = torch.nn.Parameter(torch.randn(n_out, n_in, generator=gen) / math.sqrt(n_in))
    g = torch.randn(n, n_out, generator=gen)
    events = _find_events(x)

    def fwd(backend):
        def f():
            with torch.no_grad():
                return event_linear(x, w, backend=backend)
        return f

    def fwd_bwd(backend):
        def f():
            event_linear(x, w, backend=backend).backward(g)
            w.grad = None
        return f

    t = _medians({
        "fwd_dense": fwd("dense"), "fwd_event": fwd("event"),
        "dw_dense": lambda: g.t() @ x,
        "dw_event": lambda: _weight_grad_from(g, events.tensors, n, n_in),
        "fb_dense": fwd_bwd("dense"), "fb_event": fwd_bwd("event"), "fb_auto": fwd_bwd("auto"),
    }, reps)
    saved_dense = _saved_bytes(lambda: F.linear(x, w))
    saved_event = _saved_bytes(lambda: event_linear(x, w, backend="event"))
    return {"shape": name, "N": n, "in": n_in, "out": n_out, "p": p,
            "nnz": events.nnz, **{k: v * 1e3 for k, v in t.items()},
            "fwd_speedup": t["fwd_dense"] / t["fwd_event"],
            "dw_speedup": t["dw_dense"] / t["dw_event"],
            "fb_speedup": t["fb_dense"] / t["fb_event"],
            "auto_speedup": t["fb_dense"] / t["fb_auto"],
            "saved_dense_bytes": saved_dense, "saved_event_bytes": saved_event}


def crossing(rows: list, key: str) -> float:
    """Density where ``key`` crosses 1 (log-linear interpolation), nan if it never does."""
    pts = [(r["p"], r[key]) for r in rows]
    for (p0, s0), (p1, s1) in zip(pts, pts[1:]):
        if s0 >= 1.0 > s1:
            f = math.log(s0) / (math.log(s0) - math.log(s1))
            return math.exp(math.log(p0) + f * (math.log(p1) - math.log(p0)))
    return math.inf if pts and pts[-1][1] >= 1.0 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES),
                    help="names (A512 A2048 B) or NxINxOUT")
    ap.add_argument("--densities", nargs="*", type=float, default=list(DENSITIES))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 repetitions")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    reps = 3 if args.quick else args.reps
    kernels = "numba" if _use_numba(torch.zeros(1, 1)) else "embedding_bag"
    print(f"# event_linear crossover  torch {torch.__version__}  threads "
          f"{torch.get_num_threads()}  kernels {kernels}  "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}  "
          f"{platform.processor() or platform.machine()}  "
          f"{time.strftime('%Y-%m-%d %H:%M')}  (medians of {reps} interleaved runs)\n")
    print("speedup = dense time / event time (>1: event-driven wins); fb = forward + dW "
          "backward; auto = backend='auto' vs dense\n")
    print("| shape N x in -> out | p | fwd dense ms | fwd | dW | fwd+bwd | auto fwd+bwd "
          "| saved bytes event/dense |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for s in args.shapes:
        n, n_in, n_out = SHAPES[s] if s in SHAPES else map(int, s.split("x"))
        name = s if s in SHAPES else f"{n}x{n_in}x{n_out}"
        shape_rows = []
        for p in args.densities:
            r = measure(name, n, n_in, n_out, p, reps)
            shape_rows.append(r)
            print(f"| {name} {n}x{n_in}->{n_out} | {p:g} | {r['fwd_dense']:.1f} | "
                  f"{r['fwd_speedup']:.2f} | {r['dw_speedup']:.2f} | {r['fb_speedup']:.2f} | "
                  f"{r['auto_speedup']:.2f} | "
                  f"{r['saved_event_bytes'] / r['saved_dense_bytes']:.3f} |", flush=True)
        rows += shape_rows
        print(f"|   crossover ({name}) | | | p={crossing(shape_rows, 'fwd_speedup'):.3f} | "
              f"p={crossing(shape_rows, 'dw_speedup'):.3f} | "
              f"p={crossing(shape_rows, 'fb_speedup'):.3f} | rule: inference "
              f"{crossover_density(n_out, training=False):.3f}, training "
              f"{crossover_density(n_out, training=True):.3f} | |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
