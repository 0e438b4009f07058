"""A/B timing of spikegrad at two source trees on the benchmark workloads, interleaved.

For each workload one worker per tree (``bench_spikegrad.py``, variant ``auto``, the
benchmark's environment and warm-up); then ``repeats`` rounds, each timing one forward and one
training step of A and then of B, so that load on the machine hits both alike. Prints the
medians and B/A. Use it to check that a refactor left the speed alone, e.g.::

    git worktree add /tmp/old <commit>
    python benchmarks/ab.py /tmp/old/src src --repeats 11 --workloads A512,B
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import run as bench_run  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_spikegrad.py")


def _worker(src: str, wl: dict) -> subprocess.Popen:
    env = bench_run.child_env()
    env["PYTHONPATH"] = os.path.abspath(src)
    p = subprocess.Popen([sys.executable, SCRIPT, json.dumps(wl), "auto"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    ready = json.loads(p.stdout.readline())
    if not ready.get("ok"):
        raise RuntimeError(f"worker for {src} failed: {ready.get('error')}")
    return p


def _cmd(p: subprocess.Popen, text: str) -> dict:
    p.stdin.write((text + "\n").encode())
    p.stdin.flush()
    return json.loads(p.stdout.readline())


def compare(a: str, b: str, name: str, repeats: int) -> dict:
    """Median milliseconds of ``fwd`` and ``fwdbwd`` for trees ``a`` and ``b``."""
    wl = dict(common.WORKLOADS[name], name=name)
    workers = {"a": _worker(a, wl), "b": _worker(b, wl)}
    times = {k: {"fwd": [], "fwdbwd": []} for k in workers}
    try:
        for _ in range(repeats):
            for k, p in workers.items():
                for c in ("fwd", "fwdbwd"):
                    times[k][c] += _cmd(p, f"{c} 1")["times"]
    finally:
        for p in workers.values():
            _cmd(p, "quit")
            p.wait()
    return {k: {c: 1e3 * statistics.median(v) for c, v in d.items()} for k, d in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="source folder of tree A (holding the spikegrad package)")
    ap.add_argument("b", help="source folder of tree B")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--workloads", default=",".join(common.WORKLOADS))
    args = ap.parse_args(argv)
    for name in args.workloads.split(","):
        m = compare(args.a, args.b, name, args.repeats)
        print(f"{name}: forward A {m['a']['fwd']:.1f} ms, B {m['b']['fwd']:.1f} ms (B/A "
              f"{m['b']['fwd'] / m['a']['fwd']:.2f}); training step A {m['a']['fwdbwd']:.1f} "
              f"ms, B {m['b']['fwdbwd']:.1f} ms (B/A {m['b']['fwdbwd'] / m['a']['fwdbwd']:.2f})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
