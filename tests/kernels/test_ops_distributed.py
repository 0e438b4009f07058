"""The fused kernels under torch.distributed: a 2-process DistributedDataParallel step (gloo,
CPU) with the fused Linear -> LIF pair, Recurrent(LIF) and ALIF gives the gradients and
updated weights of one process stepping on the concatenated batch (float64, 1e-10).

State is per sample, so data parallelism needs no state exchange: each rank runs its samples'
sequences, and DDP averages the weight gradients. This checks the kernels' side of issue 25's
multi-process training (the Trainer's DDP support is not built yet)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import spikegrad as sg
from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not (numba_available() and dist.is_available()),
                                reason="needs numba and torch.distributed")

WORLD, B, T = 2, 3, 10


def model():
    torch.manual_seed(0)
    return sg.nn.Sequential(sg.nn.Linear(5, 12), sg.nn.LIF(12, tau_syn=5e-3),
                            sg.nn.Linear(12, 10), sg.nn.Recurrent(sg.nn.LIF(10)),
                            sg.nn.Linear(10, 8), sg.nn.ALIF(8), sg.nn.Linear(8, 3),
                            sg.nn.LI(3)).double()


def batch():
    g = torch.Generator().manual_seed(1)
    return 3.0 * torch.rand(T, WORLD * B, 5, generator=g, dtype=torch.float64)


def loss_of(net, xs):
    out, _ = net(xs)
    return out.pow(2).mean()   # a mean over the batch: DDP's gradient average matches it


def step(net, xs):
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss_of(net, xs).backward()
    grads = [p.grad.detach().clone() for p in net.parameters()]
    opt.step()
    return grads, [p.detach().clone() for p in net.parameters()]


def _rank(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        net = torch.nn.parallel.DistributedDataParallel(model())
        grads, weights = step(net, batch()[:, rank * B:(rank + 1) * B])
        if rank == 0:
            torch.save((grads, weights), out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes that import torch and compile the kernels: 30 s to 2 min
def test_two_rank_ddp_step_equals_one_process_on_the_whole_batch(tmp_path):
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    grads, weights = torch.load(out)
    want_grads, want_weights = step(model(), batch())
    for got, want in zip(grads + weights, want_grads + want_weights, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
