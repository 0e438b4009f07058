"""Data-parallel training over several processes with ``torch.distributed``: what the
:class:`~spikegrad.train.Trainer` and ``spikegrad run`` do under ``torchrun``.

Why data parallelism fits spiking networks: a network's state (currents, membranes,
adaptation, refractory counters, eligibility traces) belongs to one sample. Each process
runs its own samples' whole sequences, and the processes exchange nothing but the weight
gradients, once per optimizer step (DDP's all-reduce averages them). No state crosses
processes, whatever the sequence length.

Everything the trainer needs from the job lives here, so the training loop only asks
questions of one :class:`Ranks` object (which answers trivially in a single process):

- join the job ``torchrun`` started (:func:`init_from_env`: ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``; gloo on CPU, nccl with CUDA);
- wrap the objective's forward pass in ``DistributedDataParallel`` (:meth:`Ranks.wrap`);
- shard a ``DataLoader`` with a ``DistributedSampler`` (:meth:`Ranks.shard`) and give it
  the epoch (:meth:`Ranks.set_epoch`), so every epoch is shuffled anew and all ranks agree
  on the permutation;
- agree on per-step decisions: stop on a signal any rank got, skip a batch whose loss is
  not finite on some rank (:meth:`Ranks.all_true`, :meth:`Ranks.max_int`);
- run something on rank 0 only and hand its result (or its exception) to every rank
  (:meth:`Ranks.on_main`): checkpoints, logs, evaluation, resume;
- collect per-rank objects on rank 0 (:meth:`Ranks.gather`): each rank's RNG states and
  running sums go into rank 0's checkpoint, and each rank takes its own back on resume
  (:meth:`Ranks.own_part`).
"""

from __future__ import annotations

import atexit
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset,
                              RandomSampler, SequentialSampler)

__all__ = ["Ranks", "init_from_env", "current_ranks"]

R = TypeVar("R")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} must be an integer (torchrun "
                         "sets it; unset it to train in one process)") from None


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        # every rank done communicating first: a rank that tears down while another still
        # talks to it can leave gloo's threads working on freed state at exit
        dist.barrier()
        dist.destroy_process_group()


def init_from_env(device: Any = None) -> "Ranks":
    """Join the process group this process belongs to, and return its :class:`Ranks`.

    Under ``torchrun`` (environment ``RANK`` and ``WORLD_SIZE > 1`` set) the default process
    group is initialised here if nobody did so yet: with ``nccl`` when ``device`` is CUDA (or
    ``None`` and CUDA is available), else ``gloo``; it is destroyed at exit. A group the user
    initialised is used as it is. Without a group and without those variables, or with a
    world of one process, this is a single process: ``Ranks()``.

    Args:
        device: the training device (``None``: CUDA if available, else CPU).

    Raises:
        ValueError: ``RANK`` is set but ``MASTER_ADDR``/``MASTER_PORT`` are not (start the
            job with torchrun), or a variable is not an integer.
    """
    if not dist.is_available():
        return Ranks()
    if not dist.is_initialized():
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1 or "RANK" not in os.environ:
            return Ranks()
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if missing:
            raise ValueError(f"RANK and WORLD_SIZE={world} are set but {' and '.join(missing)} "
                             "not: start the job with torchrun (e.g. torchrun "
                             "--nproc_per_node=2 -m spikegrad.cli run APP), which sets them all")
        cuda = (torch.cuda.is_available() if device is None
                else torch.device(device).type == "cuda")
        if cuda:
            # nccl talks to the current device: one GPU per local rank
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_destroy)
    return current_ranks()


def current_ranks() -> "Ranks":
    """This process's place in the initialised default group (``Ranks()`` if none or of
    one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Ranks()
    rank = dist.get_rank()
    return Ranks(rank, dist.get_world_size(), _env_int("LOCAL_RANK", rank),
                 dist.get_backend() == "nccl")


@dataclass(frozen=True)
class Ranks:
    """One process of a data-parallel job (``world_size == 1``: the only one).

    Every method is the identity (or a local answer) in a single process, so the training
    loop runs the same code either way and a single process is unchanged.

    Attributes:
        rank: this process's index in ``0 .. world_size - 1``; rank 0 writes all files.
        world_size: number of processes.
        local_rank: index on this machine (the GPU it uses with nccl).
        nccl: the group talks nccl (tensors for collectives must be on this rank's GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    nccl: bool = False

    @property
    def active(self) -> bool:
        """Several processes train together."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """This is rank 0, the one that writes checkpoints and logs and shows progress."""
        return self.rank == 0

    # ------------------------------------------------------------------ devices, model

    def device(self, device: Optional[torch.device]) -> Optional[torch.device]:
        """The device this rank trains on: in a job, its own GPU (``cuda:LOCAL_RANK``) in place
        of an unnumbered ``cuda``; anything else as given."""
        if self.active and device is not None and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.nccl else torch.device("cpu")

    def wrap(self, model: nn.Module) -> Optional[nn.Module]:
        """``DistributedDataParallel`` around ``model``'s objective (``None`` in a single
        process). Call the result as ``ddp(objective, inputs, targets, state)``; DDP then sees
        the forward pass whatever methods of the model the objective calls, and averages the
        gradients over the ranks during ``backward``. Building it broadcasts rank 0's parameters
        and buffers, so every rank starts from the same weights."""
        if not self.active:
            return None
        where = next(model.parameters()).device
        return nn.parallel.DistributedDataParallel(
            _ObjectiveModule(model), device_ids=[where] if where.type == "cuda" else None)

    def broadcast_module(self, model: nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (what DDP does when it wraps a model;
        for a learner, whose gradients do not come from ``backward``)."""
        if self.active:
            with torch.no_grad():
                for t in [*model.parameters(), *model.buffers()]:
                    dist.broadcast(t, 0)

    def average_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Replace every ``.grad`` by its mean over the ranks (what DDP does in ``backward``;
        for a learner, which writes its gradients itself). Parameters without a gradient are
        left alone (the optimizer skips them); every rank must give gradients to the same
        parameters."""
        if not self.active:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)

    # ------------------------------------------------------------------ data

    def shard(self, loader: Any) -> Any:
        """This rank's share of ``loader``'s data.

        A ``DataLoader`` over a map-style dataset with the default sampler (shuffled or not)
        is rebuilt with a ``DistributedSampler`` (same batch size per rank, so the global
        batch is ``world_size`` times the loader's; shuffling seeded with rank 0's loader
        seed, reshuffled by :meth:`set_epoch`). A loader that already has a
        ``DistributedSampler`` is kept. Any other iterable is taken as this rank's share as
        given (every rank must then yield the same number of batches).
        """
        if not self.active:
            return loader
        if not isinstance(loader, DataLoader):
            if self.main:
                warnings.warn(
                    f"train_loader is a {type(loader).__name__}, not a DataLoader, so it is not "
                    f"sharded: each of the {self.world_size} ranks trains on it as given. Give a "
                    "DataLoader (sharded with a DistributedSampler) or yield each rank's share.",
                    stacklevel=3)
            return loader
        sampler = loader.sampler
        if isinstance(sampler, DistributedSampler):
            return loader
        fix = ("build it with DataLoader(dataset, batch_size=..., shuffle=True/False) or give it "
               "a torch.utils.data.DistributedSampler yourself")
        if isinstance(loader.dataset, IterableDataset):
            raise ValueError("train_loader iterates an IterableDataset, which a DistributedSampler "
                             "cannot shard; yield each rank's share from the dataset (use "
                             "torch.distributed.get_rank()) or use a map-style dataset")
        if type(loader.batch_sampler) is not BatchSampler:
            raise ValueError(f"train_loader has a custom batch_sampler "
                             f"({type(loader.batch_sampler).__name__}) that cannot be sharded; "
                             f"{fix}")
        shuffle = type(sampler) is RandomSampler
        if shuffle and (sampler.replacement or sampler._num_samples is not None):
            raise ValueError("train_loader samples with replacement or a num_samples, which a "
                             f"DistributedSampler cannot reproduce; {fix}")
        if not shuffle and type(sampler) is not SequentialSampler:
            raise ValueError(f"train_loader has a custom sampler ({type(sampler).__name__}); "
                             f"{fix}")
        seed = self.on_main(lambda: _loader_seed(loader))
        shards = DistributedSampler(loader.dataset, num_replicas=self.world_size, rank=self.rank,
                                    shuffle=shuffle, seed=seed, drop_last=loader.drop_last)
        extra = {"in_order": loader.in_order} if hasattr(loader, "in_order") else {}
        return DataLoader(
            loader.dataset, batch_size=loader.batch_size, sampler=shards,
            num_workers=loader.num_workers, collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            # kept so that the checkpoint holds (and resume restores) the same generator
            generator=loader.generator, prefetch_factor=loader.prefetch_factor,
            persistent_workers=loader.persistent_workers,
            pin_memory_device=loader.pin_memory_device, **extra)

    def set_epoch(self, loader: Any, epoch: int) -> None:
        """Tell a ``DistributedSampler`` the (0-based) epoch: the same permutation on every
        rank, a new one each epoch, and the same again when a resumed run redoes the epoch."""
        sampler = getattr(loader, "sampler", None)
        if self.active and isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)

    def check_same_length(self, loader: Any) -> None:
        """ValueError unless every rank's loader has as many batches (when it has a length):
        a rank with an extra batch would wait forever for the others' gradients."""
        if not self.active or not hasattr(loader, "__len__"):
            return
        lengths = self.all_gather(len(loader))
        if len(set(lengths)) > 1:
            raise ValueError(f"the ranks' train_loaders have {lengths} batches per epoch; every "
                             "rank must take the same number of optimizer steps. Shard a "
                             "DataLoader with a DistributedSampler (the Trainer does so for a "
                             "plain DataLoader) or give every rank equally many batches")

    def check_same(self, settings: dict) -> None:
        """ValueError unless every rank passed the same ``settings`` (name -> picklable): a
        rank that checkpoints, clips, evaluates or truncates differently would wait at a
        collective the others never reach."""
        if not self.active:
            return
        every = self.all_gather(settings)
        differ = sorted(k for k in settings if any(s.get(k) != settings[k] for s in every))
        if differ:
            raise ValueError(f"the ranks built their Trainer with different {', '.join(differ)} "
                             f"({[{k: s.get(k) for k in differ} for s in every]}); give every "
                             "rank the same arguments (only rank 0 writes files)")

    # ------------------------------------------------------------------ collectives

    def all_true(self, flag: bool) -> bool:
        """``flag`` and the same on every other rank."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def max_int(self, value: int) -> int:
        """The largest of the ranks' ``value``."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def all_gather(self, obj: R) -> List[R]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather(self, obj: R) -> Optional[List[R]]:
        """Every rank's ``obj`` in rank order on rank 0; ``None`` on the others."""
        if not self.active:
            return [obj]
        out: Optional[List[Any]] = [None] * self.world_size if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def on_main(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` on rank 0 and return its result on every rank; an exception it raised
        is raised on every rank (so none waits for a rank that failed). The others wait here
        until rank 0 is done, which makes it the barrier after rank 0's writes."""
        if not self.active:
            return fn()
        box: List[Any] = [None]
        if self.main:
            try:
                box[0] = (True, fn())
            except Exception as exc:  # handed to the other ranks, then raised here too
                box[0] = (False, exc)
        dist.broadcast_object_list(box, src=0,
                                   device=self._comm_device() if self.nccl else None)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    # ------------------------------------------------------------------ checkpoints

    def own_part(self, payload: dict, path: Path) -> dict:
        """``payload`` (a trainer checkpoint written by rank 0) with this rank's own RNG states
        and running sums in place of rank 0's.

        Raises:
            ValueError: the checkpoint was written by a job of another size, whose shards and
                per-rank random streams cannot be continued exactly.
        """
        per_rank = payload.get("ranks")
        written = 1 if per_rank is None else len(per_rank)
        if written != self.world_size:
            raise ValueError(
                f"checkpoint {path} was written by a run of {written} process(es) but this one "
                f"has {self.world_size}: the data shards and each rank's random numbers depend "
                f"on it. Resume with {written} process(es) (torchrun --nproc_per_node ... so that "
                f"WORLD_SIZE={written}), or start a new run from its weights "
                "(load_checkpoint(path)['model'])")
        if per_rank is None:
            return payload
        return {**payload, **per_rank[self.rank]}


class _ObjectiveModule(nn.Module):
    """The objective as the module DDP wraps: its forward is the objective's call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, objective: Callable, inputs: Any, targets: Any, state: Any) -> Any:
        return objective(self.model, inputs, targets, state)


def _loader_seed(loader: DataLoader) -> int:
    """The seed a sharded loader shuffles with: that of the loader's own generator, else
    torch's global seed (both set by the user, so a restarted job finds the same)."""
    gen = loader.generator
    return int(gen.initial_seed() if gen is not None else torch.initial_seed()) % 2**63
