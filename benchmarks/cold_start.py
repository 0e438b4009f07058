"""Seconds from a new process's first call to its first gradient, compiling against loading
numba's disk cache: a fresh cache directory, then ``--runs`` processes in a row on it.

    python benchmarks/cold_start.py              # this checkout's src
    python benchmarks/cold_start.py --src /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

_CHILD = """
import time
t0 = time.perf_counter()
import torch
import spikegrad as sg
t1 = time.perf_counter()
torch.manual_seed(0)
if {conv}:
    block = sg.nn.spiking_conv((2, 16, 16), 8, 3, padding=1, pool="avg")
    net = sg.nn.Sequential(*block.layers)
    x = (torch.rand(5, 2, 2, 16, 16) < 0.2).float()
else:
    net = sg.nn.Sequential(sg.nn.Linear(20, 30), sg.nn.LIF(30), sg.nn.Linear(30, 5), sg.nn.LI(5))
    x = (torch.rand(10, 4, 20) < 0.2).float()
out, _ = net(x)
out.sum().backward()
print(f"{{t1 - t0:.2f}} {{time.perf_counter() - t1:.2f}}")
"""


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(here, "src"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for name, conv in (("Linear-LIF-Linear-LI", False), ("spiking conv block", True)):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=os.path.abspath(args.src))
            times = []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, "-c", _CHILD.format(conv=conv)], env=env,
                                     capture_output=True, text=True, check=True)
                times.append(out.stdout.split()[-1])
            print(f"{name}: first forward + backward, process 1..{args.runs}: "
                  f"{' / '.join(times)} s (import not counted)")


if __name__ == "__main__":
    main()
