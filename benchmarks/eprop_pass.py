"""One e-prop pass of the regression app's default network, torch steps against the compiled
stream: milliseconds per pass (T = 1000 steps, batch 1, 100 inputs -> 100 recurrent LIF ->
2 leaky readouts, one Adam step at the end), each backend's median over ``--repeats`` passes
after one warm-up pass, the backends interleaved.

Run:  python benchmarks/eprop_pass.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spikegrad.apps import regression as reg
from spikegrad.apps.regression import online as app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    c = app.validate(app.Config(progress=False))
    rc = app._regression_cfg(c)
    torch.manual_seed(c.seed)
    xs, ys = reg.make_task(rc)
    runs = {}
    for backend in ("reference", "numba"):
        model = reg.build_model(rc)
        learner = app.OnlineLearner(app.make_learner(c, model, xs.shape[1]), c.update_every,
                                    1.0, backend)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        learner(model, xs, ys, opt.step)  # warm-up (numba compiles or loads its cache)
        runs[backend] = (model, learner, opt, [])
    for _ in range(args.repeats):
        for model, learner, opt, times in runs.values():
            t0 = time.perf_counter()
            learner(model, xs, ys, opt.step)
            times.append(time.perf_counter() - t0)
    T, B, n_in = xs.shape
    print(f"e-prop pass, T={T}, batch {B}, {n_in} inputs, {c.hidden} recurrent LIF, "
          f"{torch.get_num_threads()} threads; ms per pass, median (min-max) of {args.repeats}")
    med = {}
    for backend, (_, _, _, times) in runs.items():
        ms = [t * 1e3 for t in times]
        med[backend] = statistics.median(ms)
        print(f"  {backend:10s} {med[backend]:8.1f} ({min(ms):.1f}-{max(ms):.1f})")
    print(f"  speed-up {med['reference'] / med['numba']:.1f}x")


if __name__ == "__main__":
    main()
