"""The onchip app's configuration: the methods and arrays compared, the network, the local
rule's options, the devices and the drift study; ``None`` fields take the dataset's preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from ...learning import THREE_FACTOR_BACKENDS
from ..config import ConfigError

__all__ = ["Config", "DATASETS", "METHODS", "LOCAL_RULES", "ARRAYS", "SURROGATES", "TRACES",
           "LOCAL_BACKENDS", "PRESETS", "validate", "methods", "arrays", "drift_times",
           "array_name", "time_label"]

DATASETS = ("digits", "randman")
#: ``bptt``: backpropagation through time with the smooth surrogate (``fast_sigmoid``);
#: ``bptt_ste``: the same with the straight-through estimator (``straight_through``, a boxcar
#: of width 1 around the threshold); ``local_*``: the online three-factor rule with the hidden
#: layer's error from the output error through the readout weights (``symmetric``), through a
#: fixed random matrix (``random``, eRBP) or from a fixed random local readout (``decolle``).
LOCAL_RULES = ("local_symmetric", "local_random", "local_decolle")
METHODS = ("bptt", "bptt_ste") + LOCAL_RULES
#: where a local rule's weights live: ``fp32`` (float weights, SGD through the Trainer), or a
#: crossbar of ``bits``-bit devices updated by naive rounding, stochastic pulses or mixed
#: precision, or a PCM-like crossbar (mixed-precision updates, soft-bounds devices with
#: PCM's pulse-to-pulse and device-to-device variation, PCM drift and read noise)
ARRAYS = ("fp32", "naive", "stochastic", "mixed", "pcm")
SURROGATES = ("fast_sigmoid", "straight_through")
TRACES = ("kernel", "spikes")
LOCAL_BACKENDS = THREE_FACTOR_BACKENDS


@dataclass
class Config:
    """On-chip learning run. ``None`` fields take the dataset's preset (``PRESETS``)."""

    dataset: str = "digits"               # one of DATASETS: digits, randman
    seed: int = 0
    deterministic: bool = True
    #: comma-separated METHODS to train: bptt, bptt_ste, local_symmetric, local_random,
    #: local_decolle
    methods: str = "bptt,bptt_ste,local_symmetric,local_random"
    #: comma-separated ARRAYS each local rule trains on: fp32, naive, stochastic, mixed, pcm
    arrays: str = "fp32,naive,stochastic,mixed,pcm"
    epochs: Optional[int] = None          # training epochs of every method; None: preset
    batch_size: int = 32                  # training batch size
    #: use the first max_train training samples; 0: the whole training split; None: preset
    max_train: Optional[int] = None
    # network: n_in -> hidden LIF -> n_classes LIF, spike-count readout
    hidden: int = 128                     # hidden LIF neurons
    n_steps: Optional[int] = None         # time steps per sample; None: the dataset's preset
    dt_ms: Optional[float] = None         # simulation step in ms; None: the dataset's preset
    #: membrane time constant of the hidden and output LIF in ms; None: the dataset's preset
    tau_mem_ms: Optional[float] = None
    #: input coding; must be the dataset's: rate (digits) or spikes (randman); None: preset
    encoder: Optional[str] = None
    #: initial weights U(-g, g) / sqrt(fan_in) with g = init_gain; None: the dataset's preset
    init_gain: Optional[float] = None
    count_scale: float = 0.5              # logits = count_scale * spike counts
    #: slope of fast_sigmoid (bptt, and local rules with it); the STE's width is 1
    surrogate_beta: float = 10.0
    # training
    lr_bptt: float = 2e-3                 # learning rate of bptt and bptt_ste (Adam, cosine)
    #: learning rate of the local rules (SGD on fp32, the crossbar update otherwise), cosine
    lr_local: float = 1.0
    #: surrogate phi(u) of the local rules, one of SURROGATES: fast_sigmoid, straight_through
    local_surrogate: str = "fast_sigmoid"
    #: presynaptic factor of the local rules, one of TRACES: kernel (input filtered by the
    #: membrane's kernel) or spikes (raw)
    trace: str = "kernel"
    update_every: int = 1                 # local rules: steps per weight write (1: every step)
    #: how the local rules step the neurons and traces, one of LOCAL_BACKENDS: auto (the
    #: compiled numba step where it runs), numba or reference (torch); same equations, equal
    #: to rounding
    local_backend: str = "auto"
    # devices
    bits: int = 4                         # naive/stochastic/mixed arrays: 2**bits states
    #: weight bound of every device, [-w_max, w_max] (network units)
    w_max: float = 1.0
    stochastic_bl: int = 31               # longest bit stream of the stochastic update
    pcm_dw_min: float = 0.01              # PCM-like pulse size (weight units)
    #: pulse-to-pulse spread of the PCM pulse size, relative (aihwkit's PCM preset)
    pcm_dw_min_std: float = 0.6
    #: device-to-device spread of the PCM pulse size, relative
    pcm_dw_min_dtod: float = 0.2
    # inference on the PCM-like array after training
    #: comma-separated read times in seconds after programming for the PCM drift study
    drift_times: str = "1,3600,86400,31536000"
    drift_repeats: int = 5                # read-noise draws averaged per drift time
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


PRESETS: Dict[str, dict] = {
    # the classification set-up's digits: 8x8 pixels rate-coded over 25 steps of 1 ms
    "digits": dict(epochs=10, n_steps=25, dt_ms=1.0, tau_mem_ms=10.0, encoder="rate",
                   max_train=0, init_gain=1.0),
    # Randman spike trains (20 units, one spike each per trial), 50 steps of 2 ms; 2000
    # training samples keep the step-by-step local rules to minutes; twice the init scale so
    # that the sparse input drives the hidden layer at all
    "randman": dict(epochs=10, n_steps=50, dt_ms=2.0, tau_mem_ms=20.0, encoder="spikes",
                    max_train=2000, init_gain=2.0),
}


def _names(text: str, key: str, allowed) -> List[str]:
    names = [m for m in text.replace(" ", "").split(",") if m]
    bad = [m for m in names if m not in allowed]
    if bad or not names or len(set(names)) != len(names):
        raise ConfigError(f"{key} must be a comma-separated list of distinct names from "
                          f"{', '.join(allowed)}; got {text!r}")
    return names


def methods(c: Config) -> List[str]:
    return _names(c.methods, "methods", METHODS)


def arrays(c: Config) -> List[str]:
    return _names(c.arrays, "arrays", ARRAYS)


def array_name(c: Config, array: str) -> str:
    """The name an array has in metric keys: ``naive4`` for 4-bit naive rounding."""
    return f"{array}{c.bits}" if array in ("naive", "stochastic", "mixed") else array


def drift_times(c: Config) -> List[float]:
    try:
        values = [float(v) for v in c.drift_times.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(not v > 0 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"drift_times must be a comma-separated list of distinct times > 0 "
                          f"in seconds, e.g. '1,3600,86400'; got {c.drift_times!r}")
    return sorted(values)


def time_label(seconds: float) -> str:
    """``86400`` -> ``'1d'``: the largest unit of s, h, d, y that divides the time."""
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s".replace(".", "p")


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the dataset's preset, then check every field (a
    :class:`~spikegrad.apps.config.ConfigError` naming the key)."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a spikegrad.apps.onchip.Config, got {type(cfg).__name__}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    preset = PRESETS[cfg.dataset]
    c = dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) is None})
    _check(c)
    return c


def _check(c: Config) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)
    methods(c)
    arrays(c)
    drift_times(c)
    want = PRESETS[c.dataset]["encoder"]
    need(c.encoder == want, f"encoder must be {want!r} for dataset={c.dataset}; got "
                            f"{c.encoder!r}")
    for key in ("epochs", "batch_size", "hidden", "n_steps", "update_every", "stochastic_bl",
                "drift_repeats"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    need(c.max_train >= 0, f"max_train must be >= 0 (0: the whole split); got {c.max_train}")
    need(0 <= c.seed < 2 ** 32, f"seed must be in [0, 2**32); got {c.seed}")
    for key in ("dt_ms", "tau_mem_ms", "init_gain", "count_scale", "surrogate_beta",
                "lr_bptt", "lr_local", "w_max", "pcm_dw_min"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("pcm_dw_min_std", "pcm_dw_min_dtod"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0 (a relative spread); got "
                                   f"{getattr(c, key)}")
    need(2 <= c.bits <= 12, f"bits must be in 2..12 (2**bits device states); got {c.bits}")
    need(c.pcm_dw_min < 2 * c.w_max, f"pcm_dw_min must be below the device range 2 * w_max = "
                                     f"{2 * c.w_max}; got {c.pcm_dw_min}")
    need(c.local_surrogate in SURROGATES, f"local_surrogate must be one of "
                                          f"{', '.join(SURROGATES)}; got {c.local_surrogate!r}")
    need(c.trace in TRACES, f"trace must be one of {', '.join(TRACES)}; got {c.trace!r}")
    need(c.local_backend in LOCAL_BACKENDS,
         f"local_backend must be one of {', '.join(LOCAL_BACKENDS)}; got {c.local_backend!r}")
