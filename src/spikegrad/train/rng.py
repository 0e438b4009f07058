"""Every random number generator a training run draws from, saved and restored together:
torch (CPU, and CUDA when initialised), NumPy, Python's ``random`` and the generators of the
data loader and its sampler. States are tensors and plain Python types, so checkpoints load
with ``weights_only=True``."""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["loader_generators", "rng_state", "set_rng_state"]


def loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The loader's own generator and, if it is another object, its sampler's."""
    found: dict[str, torch.Generator] = {}
    for key, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found.values()):
            found[key] = gen
    return found


def rng_state(loader: Any) -> dict:
    """Every RNG state, as tensors and plain Python types (loadable with weights_only=True)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),  # uint32 -> int64: lossless
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "generators": {k: g.get_state() for k, g in loader_generators(loader).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, loader: Any, path: Path) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["bit_generator"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate(
        (
            py_state["version"],
            tuple(int(v) for v in py_state["internal"].tolist()),
            py_state["gauss_next"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            warnings.warn(
                f"checkpoint {path} holds CUDA RNG states of {len(state['cuda'])} devices but "
                f"{torch.cuda.device_count()} are visible; CUDA random numbers will differ from "
                "the original run",
                stacklevel=3,
            )
    saved, current = state.get("generators", {}), loader_generators(loader)
    for key in saved.keys() | current.keys():
        if key in saved and key in current:
            current[key].set_state(saved[key])
        else:
            warnings.warn(
                f"checkpoint {path} {'has' if key in saved else 'has no'} a {key} generator state "
                "but the "
                f"train_loader {'has no' if key in saved else 'has a'} {key} generator; the data "
                "order "
                "after resuming will differ from the original run. Build the loader as in that "
                "run.",
                stacklevel=3,
            )
