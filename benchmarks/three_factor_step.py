"""Per-step time of the online three-factor rule: the torch reference against the compiled
step (``backend="numba"``), at the onchip app's layer size, one thread.

Three measurements, each at batch 1 and 32:

- ``rule``: :class:`spikegrad.learning.ThreeFactor` on ``Linear(64 -> 128, no bias) -> LIF``,
  one :meth:`forward` and one :meth:`accumulate` (error ``z - target``) per step;
- ``app``: :meth:`spikegrad.apps.onchip.rules.ThreeFactorNet.step` of the app's network
  ``64 -> 128 LIF -> 10 LIF`` (float weights, ``local_symmetric``): both layers, the errors
  and the factors of one step (without the weight write);
- ``eprop``: :class:`spikegrad.learning.StreamingEProp` with ``batch`` streams through
  ``64 -> Recurrent(128 LIF) -> 10 LI`` (the compiled e-prop step, in place), one
  :meth:`step` per step and a flush per block.

Each (case, batch, seed) runs ``--blocks`` blocks of ``--steps`` steps per backend, the two
backends alternating block by block (both see the same load), after one warm-up block each
(numba compiles there); a backend's time is its median block's time per step, the ratio the
median of the alternating pairs' ratios; the table shows the median (min-max) over the
seeds. The machine's load (``os.getloadavg``) is printed next to the numbers: on a shared
machine absolute times are comparable within one run only.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/three_factor_step.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

import spikegrad as sg
from spikegrad.apps import onchip
from spikegrad.apps.onchip.network import build_network, initial_weights
from spikegrad.apps.onchip.rules import ThreeFactorNet
from spikegrad.learning import EProp, Factors, StreamingEProp, ThreeFactor

N_IN, HIDDEN, CLASSES = 64, 128, 10


def _interleaved(blocks: Dict[str, Callable[[], None]], steps: int, n: int) -> Dict[str, list]:
    """Time per step (us) of ``n`` blocks of each backend, run alternately (ref, numba, ref,
    ...) so that both see the same load of a shared machine; one warm-up block each first
    (numba compiles there)."""
    for run_block in blocks.values():
        run_block()
    times: Dict[str, list] = {name: [] for name in blocks}
    for _ in range(n):
        for name, run_block in blocks.items():
            start = time.perf_counter()
            run_block()
            times[name].append((time.perf_counter() - start) / steps * 1e6)
    return times


def rule_block(backend: str, batch: int, seed: int, steps: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    layer = sg.nn.Linear(N_IN, HIDDEN, bias=False)
    lif = sg.nn.LIF(HIDDEN, tau_mem=10e-3)
    with torch.no_grad():
        layer.weight.mul_(2.0)
    rule = ThreeFactor(layer, lif, trace="kernel", backend=backend)
    assert rule.backend == backend
    g = torch.Generator().manual_seed(seed)
    xs = (torch.rand(steps, batch, N_IN, generator=g) < 0.2).float()
    target = (torch.rand(steps, batch, HIDDEN, generator=g) < 0.1).float()

    def block() -> None:
        state = None
        for t in range(steps):
            z, state, pre, post = rule.forward(xs[t], state)
            rule.accumulate(Factors(pre, post, z - target[t]))
    return block


def app_block(backend: str, batch: int, seed: int, steps: int) -> Callable[[], None]:
    c = onchip.validate(onchip.Config(hidden=HIDDEN, seed=seed, local_backend=backend))
    model = build_network(c, initial_weights(c, N_IN, CLASSES), "fast_sigmoid", "fp32")
    net = ThreeFactorNet(c, model, "local_symmetric", torch.Generator().manual_seed(seed))
    assert net.backends == [backend, backend]
    g = torch.Generator().manual_seed(seed)
    xs = (torch.rand(steps, batch, N_IN, generator=g) < 0.2).float()
    onehot = F.one_hot(torch.randint(0, CLASSES, (batch,), generator=g), CLASSES).float()

    def block() -> None:
        state = net.init_state(batch)
        for t in range(steps):
            _, state, _ = net.step(xs[t], onehot, state, t % c.n_steps)
    return block


def eprop_block(backend: str, batch: int, seed: int, steps: int) -> Callable[[], None]:
    torch.manual_seed(seed)
    net = sg.nn.Sequential(sg.nn.Linear(N_IN, HIDDEN),
                           sg.nn.Recurrent(sg.nn.LIF(HIDDEN, tau_mem=20e-3), autapses=False),
                           sg.nn.Linear(HIDDEN, CLASSES), sg.nn.LI(CLASSES, tau_mem=20e-3))
    stream = StreamingEProp(EProp.from_sequential(net), backend=backend, batch=batch)
    assert stream.backend == backend
    g = torch.Generator().manual_seed(seed)
    xs = (torch.rand(steps, batch, N_IN, generator=g) < 0.2).float()
    ts = torch.randn(steps, batch, CLASSES, generator=g)

    def block() -> None:
        for t in range(steps):
            stream.step(xs[t], ts[t])
        stream.flush()
    return block


def main(argv: List[str] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="steps per timed block")
    ap.add_argument("--blocks", type=int, default=15, help="timed blocks per backend")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(1/5/15 min), {os.cpu_count()} cores; {args.blocks} blocks x {args.steps} steps "
          f"per backend, alternating; median block per seed, then median (min-max) over seeds "
          f"{seeds}")
    print(f"{'case':5s} {'batch':>5s} {'reference us/step':>22s} {'numba us/step':>22s} "
          f"{'ref/numba':>18s}")
    fmt = lambda xs, d=1: (f"{statistics.median(xs):.{d}f} "  # noqa: E731
                           f"({min(xs):.{d}f}-{max(xs):.{d}f})")
    for name, make in (("rule", rule_block), ("app", app_block), ("eprop", eprop_block)):
        for batch in (1, 32):
            per_seed = {"reference": [], "numba": [], "ratio": []}
            for s in seeds:
                times = _interleaved({b: make(b, batch, s, args.steps)
                                      for b in ("reference", "numba")}, args.steps, args.blocks)
                for b in ("reference", "numba"):
                    per_seed[b].append(statistics.median(times[b]))
                # the ratio of each alternating pair, then its median: robust to load drifts
                per_seed["ratio"].append(statistics.median(
                    r / f for r, f in zip(times["reference"], times["numba"])))
            print(f"{name:5s} {batch:5d} {fmt(per_seed['reference']):>22s} "
                  f"{fmt(per_seed['numba']):>22s} {fmt(per_seed['ratio'], 2):>18s}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
