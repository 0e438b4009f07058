"""The conversion app's configuration: the methods compared, the time steps, conversion's
options and the vision set-up's fields (filled from its per-dataset presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List

from ..config import ConfigError
from ..setups.vision import PRESETS, SetupFields

__all__ = ["Config", "DATASETS", "ARCHS", "METHODS", "validate", "int_list", "methods"]

DATASETS = ("digits", "mnist1d")
ARCHS = ("mlp", "cnn")
#: ``plain``: the ReLU ANN converted; ``qcfs``: an ANN trained with the QCFS activation,
#: converted; ``hybrid``: ``plain`` fine-tuned with surrogate gradients at ``hybrid_steps``;
#: ``direct``: the spiking net trained from scratch with surrogate gradients at each of
#: ``direct_steps`` (the vision app's recipe).
METHODS = ("plain", "qcfs", "hybrid", "direct")


@dataclass
class Config(SetupFields):
    """Conversion run; ``None`` fields (:class:`~spikegrad.apps.setups.vision.SetupFields`)
    take the dataset's vision preset (architecture,
    epochs, learning rate, batch size, neuron constants of the direct baseline)."""

    dataset: str = "digits"       # one of DATASETS: digits, mnist1d
    arch: str = "cnn"             # one of ARCHS: mlp or cnn, for the ANN and the direct SNN
    seed: int = 0
    deterministic: bool = True
    #: comma-separated T (steps) at which every converted and hybrid net is evaluated
    steps: str = "1,2,4,8,16,32,64,128,256"
    #: comma-separated subset of METHODS to run: plain, qcfs, hybrid, direct
    methods: str = "plain,qcfs,hybrid,direct"
    direct_steps: str = "1,2,4,8"             # comma-separated T of each directly trained net
    #: layer-wise weight normalisation: percentile (of positive activations) or max
    #: (threshold balancing by the maximum)
    norm_method: str = "percentile"
    percentile: float = 99.9                  # norm_method=percentile: the percentile, (0, 100]
    #: converted max pooling: gate (spiking max-pool gate) or avg (average pooling instead)
    max_pool: str = "gate"
    calibration: int = 1000                   # first training samples used for the normalisation
    qcfs_levels: int = 8                      # quantisation levels of the QCFS activation (qcfs)
    hybrid_steps: int = 4                     # T of the hybrid surrogate-gradient fine-tuning
    hybrid_epochs: int = 5                    # epochs of hybrid fine-tuning; 0: none
    hybrid_lr: float = 1e-3                   # Adam learning rate of the hybrid fine-tuning
    #: input coding; must be current: conversion injects the analog input at every step
    encoder: str = "current"
    progress: bool = True


def int_list(text: str, key: str) -> List[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``; ConfigError naming ``key`` unless all are ints >= 1."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = [0]
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{key} must be a comma-separated list of ints >= 1, e.g. '1,2,4,8'; "
                          f"got {text!r}")
    return sorted(set(values))


def methods(c: Config) -> List[str]:
    names = [m for m in c.methods.replace(" ", "").split(",") if m]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(f"methods must be a comma-separated list of {', '.join(METHODS)}; "
                          f"got {c.methods!r}")
    return names


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the dataset's preset, then check every field."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a spikegrad.apps.conversion.Config, got "
                        f"{type(cfg).__name__}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    preset = {k: v for k, v in PRESETS[cfg.dataset].items() if hasattr(cfg, k)}
    c = dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) is None})

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)
    need(c.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}; got {c.arch!r}")
    need(c.encoder == "current", "encoder must be 'current': conversion injects the analog "
                                 f"input as a current; got {c.encoder!r}")
    need(c.pool in ("none", "max", "avg"), f"pool must be none, max or avg; got {c.pool!r}")
    need(c.norm_method in ("percentile", "max"),
         f"norm_method must be percentile or max; got {c.norm_method!r}")
    need(0 < c.percentile <= 100, f"percentile must be in (0, 100]; got {c.percentile}")
    need(c.max_pool in ("gate", "avg"), f"max_pool must be gate or avg; got {c.max_pool!r}")
    for key in ("calibration", "qcfs_levels", "hybrid_steps", "epochs", "channels",
                "conv_layers", "kernel_size", "stride", "hidden", "batch_size"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    need(c.hybrid_epochs >= 0, f"hybrid_epochs must be >= 0; got {c.hybrid_epochs}")
    for key in ("hybrid_lr", "lr", "tau_mem_ms", "tau_out_ms", "dt_ms", "surrogate_beta"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    need(not c.augment_shift or c.dataset == "mnist1d",
         "augment_shift (random roll of a 1-D signal) applies to dataset=mnist1d only")
    int_list(c.steps, "steps")
    int_list(c.direct_steps, "direct_steps")
    methods(c)
    return c
