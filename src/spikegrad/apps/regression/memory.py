"""Memory of one training step against the sequence length ``T``, for BPTT and the online
rules: the allocator peak in this process and the resident-set growth in a fresh one (the
methods are in :mod:`.online`'s docstring, item 6)."""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Sequence

import torch

from ...train import seed_everything
from ...train.memory import rss_growth_mb, run_rss_probe
from . import core as reg
from .config import Config, validate
from .rules import online_learner

__all__ = ["memory_scaling", "rss_of_one_step", "rss_probe"]


def _one_step_memory(c: Config, T: int) -> float:
    rc = dataclasses.replace(c, n_steps=T, progress=False)
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    return reg.measure_step_memory(rc, model, xs, ys,
                                   None if c.learning == "bptt" else online_learner)


def rss_of_one_step(cfg, T: int, timeout: float = 600.0) -> Dict[str, float]:
    """Peak RSS growth (MiB) of one training step at length ``T`` in a fresh subprocess
    (:func:`spikegrad.train.memory.run_rss_probe`; Linux): the kernel's high-water mark
    ``VmHWM`` is reset after a short warm-up, then ``VmHWM`` after the step minus ``VmRSS``
    before it, the median of three steps."""
    c = validate(cfg)
    try:
        return run_rss_probe(__name__, "rss_probe", {"cfg": dataclasses.asdict(c), "T": T},
                             timeout)
    except RuntimeError as err:
        raise RuntimeError(f"RSS probe failed (T={T}, {c.learning}): {err}") from None


def rss_probe(payload: str) -> None:
    """Child side of the RSS measurement: run the steps of ``payload`` (JSON: the config and
    ``T``) and print the result as one JSON line."""
    args = json.loads(payload)
    c = Config(**args["cfg"])
    c = dataclasses.replace(c, n_steps=int(args["T"]), progress=False)
    torch.set_num_threads(1)
    rc = c
    seed_everything(c.seed)
    xs, ys = reg.make_task(rc)
    model = reg.build_model(rc)
    if c.learning == "bptt":
        trainer = reg.make_trainer(rc, model, reg.make_objective(rc, xs.shape[0], 1.0))
    else:
        trainer = reg.make_trainer(rc, model, learner=online_learner(rc, model, xs, ys))

    def step(xs, ys):
        trainer.fit([(xs, ys)], trainer.epoch + 1)

    # a short warm-up sequence first: lazy initialisation (numba compilation, the gradient
    # buffers, the optimizer state) is not what grows with T
    step(xs[:20], ys[:20])
    out = rss_growth_mb(lambda: step(xs, ys))
    out["step_seconds"] = out.pop("seconds")
    print(json.dumps(out))


def memory_scaling(cfg, lengths: Sequence[int], rules: Sequence[str],
                   subprocess_rss: bool = True) -> List[dict]:
    """One row per (rule, T): allocator peak of one training step (MiB) and, with
    ``subprocess_rss``, the RSS growth of one step in a fresh process (see the module
    docstring for both methods)."""
    c = validate(cfg)
    rows = []
    for rule in rules:
        for T in lengths:
            cr = dataclasses.replace(c, learning=rule)
            row = {"learning": rule, "T": T, "allocator_peak_mb": _one_step_memory(cr, T)}
            if subprocess_rss:
                row.update(rss_of_one_step(cr, T))
            rows.append(row)
    return rows
