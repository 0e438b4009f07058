"""Per-call overhead of a fused sequence call: ``Linear(100, 100) -> Recurrent(LIF(100))``,
batch 1, forward + backward, one thread, for T = 10, 100, 1000 steps.

Short sequences (TBPTT chunks, online use) are dominated by this fixed cost, not by the time
loop; ``make bench`` measures the long workloads. Run: ``.venv/bin/python benchmarks/overhead.py``.
"""

import time

import torch

import spikegrad as sg


def per_call_ms(rec, lin, steps: int, calls: int = 200) -> float:
    xs = (torch.rand(steps, 1, 100) < 0.05).float()
    for _ in range(50):  # numba compilation, lazy initialisation, caches and clocks
        zs, _ = rec(lin(xs))
        zs.sum().backward()
    best = float("inf")
    for _ in range(3):  # the minimum of 3 blocks: the first block of a process is often slow
        start = time.perf_counter()
        for _ in range(calls):
            zs, _ = rec(lin(xs))
            zs.sum().backward()
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rec = sg.nn.Recurrent(sg.nn.LIF(100, tau_mem=20e-3), autapses=False)
    lin = sg.nn.Linear(100, 100, bias=False)
    for steps in (10, 100, 1000):
        print(f"T={steps:5d}: {per_call_ms(rec, lin, steps):.3f} ms per fwd+bwd call")


if __name__ == "__main__":
    main()
