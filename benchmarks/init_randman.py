"""Randman with the net a new user writes from the README: torch's default Linear init vs
sg.nn.init (fluctuation-driven and data-driven). Prints hidden rates at the start and test
accuracy after a short training, per seed.

    python benchmarks/init_randman.py [--seeds 0 1 2] [--epochs 20]

Set-up: 10 classes x 100 samples, 20 units firing once per 100-step trial (dt 2 ms: 5 Hz),
80/20 split in order; 20 -> 128 LIF (tau 20/10 ms, reset to 0) -> 10 LI (tau 200 ms);
max-over-time cross-entropy, Adam 5e-3, batch 100.
"""

from __future__ import annotations

import argparse
import time

import torch

import spikegrad as sg
from spikegrad.data.randman import make_randman, randman_raster

DT = 2e-3


def make_net() -> sg.nn.Sequential:
    return sg.nn.Sequential(
        sg.nn.Linear(20, 128),
        sg.nn.LIF(128, tau_mem=20e-3, tau_syn=10e-3, dt=DT, reset="to_value"),
        sg.nn.Linear(128, 10),
        sg.nn.LI(10, tau_mem=200e-3, dt=DT))


def hidden_rate(net, xs) -> tuple:
    with torch.no_grad():
        r = net.forward_all(xs)[0][1].mean((0, 1)) / DT  # [128] Hz
    return float(r.mean()), float((r == 0).float().mean()), float((r > 100).float().mean())


def accuracy(net, xs, y) -> float:
    with torch.no_grad():
        return float((net(xs)[0].amax(0).argmax(-1) == y).float().mean())


def run(init: str, seed: int, epochs: int, data) -> dict:
    xs_tr, y_tr, xs_te, y_te = data
    torch.manual_seed(seed)
    net = make_net()
    if init == "fluctuation":
        sg.nn.init.fluctuation_driven_(net, rate_hz=float(xs_tr.mean()) / DT)
    elif init == "data":
        sg.nn.init.data_driven_(net, xs_tr[:, :200], rate_hz=10.0)
    start = hidden_rate(net, xs_tr)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(epochs):
        order = torch.randperm(xs_tr.shape[1])
        for k in range(0, len(order), 100):
            idx = order[k:k + 100]
            loss = sg.losses.membrane_cross_entropy(net(xs_tr[:, idx])[0], y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return dict(rate=start, acc=accuracy(net, xs_te, y_te))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    d = make_randman(n_classes=10, n_units=20, n_steps=100, samples_per_class=100, seed=1)
    xs = randman_raster(d).transpose(0, 1)  # [T, N, 20]
    data = (xs[:, :800], d.labels[:800], xs[:, 800:], d.labels[800:])
    print(f"{'init':12s} seed  start rate Hz (silent, >100 Hz)   test acc after "
          f"{args.epochs} epochs")
    for init in ("default", "fluctuation", "data"):
        accs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            r = run(init, seed, args.epochs, data)
            accs.append(r["acc"])
            m, silent, sat = r["rate"]
            print(f"{init:12s} {seed:4d}  {m:6.1f} ({silent:4.0%}, {sat:4.0%})"
                  f"              {r['acc']:.3f}   ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        accs = sorted(accs)
        print(f"{init:12s} median {accs[len(accs) // 2]:.3f} (min {accs[0]:.3f}, "
              f"max {accs[-1]:.3f})", flush=True)


if __name__ == "__main__":
    main()
