"""Training epochs of the Trainer in one process and data-parallel under torchrun.

    OMP_NUM_THREADS=1 python benchmarks/data_parallel.py                          # 1 process
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 benchmarks/data_parallel.py     # 2 processes

Synthetic data (2048 samples, T=50 steps, 64 inputs, 10 classes), ``64 -> 512 LIF -> 10 LI``,
batch 64 per process, Adam, no evaluation, so an epoch is training alone. Rank 0 prints one
JSON line: per epoch, the wall seconds and the CPU seconds each process spent
(``time.process_time``). Epoch 1 holds numba's compilation; compare the later ones. CPU
seconds do not depend on what else runs on the machine, wall seconds do.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import spikegrad as sg
from spikegrad.train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from spikegrad.train.distributed import init_from_env


def objective(model, xs, y, state):
    out, state = model(xs, state)
    logits = out.max(0).values  # [B, 10]
    return ObjectiveOutput(F.cross_entropy(logits, y), state, {"n": len(y)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--samples", type=int, default=2048)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    ranks = init_from_env("cpu")
    seed_everything(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x = (torch.rand(args.samples, args.steps, 64, generator=g) < 0.1).float()
    y = torch.randint(0, 10, (args.samples,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed),
                        collate_fn=lambda s: (torch.stack([a for a, _ in s]).transpose(0, 1),
                                              torch.stack([b for _, b in s])))
    model = sg.nn.Sequential(sg.nn.Linear(64, args.hidden), sg.nn.LIF(args.hidden),
                             sg.nn.Linear(args.hidden, 10), sg.nn.LI(10))
    trainer = Trainer(model, make_optimizer("adam", model, lr=1e-3), objective, progress=False)
    wall, cpu = [], []
    for epoch in range(1, args.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(loader, epoch)
        wall.append(time.perf_counter() - t0)
        cpu.append(ranks.all_gather(time.process_time() - c0))
    if ranks.main:
        print(json.dumps({"seed": args.seed, "processes": ranks.world_size, "threads": torch.get_num_threads(),
                          "omp": os.environ.get("OMP_NUM_THREADS"),
                          "steps_per_epoch": trainer.step // args.epochs,
                          "train_loss": trainer.history[-1]["train_loss"],
                          "epoch_wall_s": [round(w, 3) for w in wall],
                          "epoch_cpu_s_per_process": [[round(c, 3) for c in cs] for cs in cpu],
                          "load_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
