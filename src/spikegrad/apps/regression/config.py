"""The regression app's configuration: its fields, the tasks' presets and the checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from ... import surrogate as _surrogate
from ...train.arguments import TBPTT_MODES
from ...train.optim import OPTIMIZERS
from ..config import ConfigError

__all__ = ["Config", "TASKS", "PRESETS", "NEURONS", "LEARNING_RULES", "ONLINE_BACKENDS",
           "DIVERGENCE_DEMO", "validate", "parse_ks"]

TASKS = ("pattern", "filter")
#: Overrides that make the default pattern run diverge unless gradients are clipped: plain
#: SGD, whose first steps (pre-clip gradient norm ~76 at the initial weights) start a feedback
#: loop of larger weights, errors and gradients (NaN/Inf within ~10 steps); clipped to norm 1,
#: the same step size trains steadily (measured: seed 0).
DIVERGENCE_DEMO = {"optimizer": "sgd", "lr": 0.02, "grad_clip": 1.0, "lr_warmup_steps": 0,
                   "lr_final_frac": 1.0}
#: Per-task values of the fields a Config leaves at None (``--set`` any of them to override).
#: ``filter`` (held-out sequences, noisy population-coded input): shorter sequences, a bigger
#: batch, faster membranes and readout, a smaller learning rate than the pattern task's.
PRESETS: Dict[str, dict] = {
    "pattern": dict(n_steps=1000, batch_size=32, steps=500, lr=1e-2, tau_mem_ms=20.0,
                    tau_out_ms=20.0),
    "filter": dict(n_steps=500, batch_size=64, steps=400, lr=3e-3, tau_mem_ms=10.0,
                   tau_out_ms=10.0),
}
NEURONS = ("lif", "alif")  # alif: spike-triggered threshold adaptation (nn.ALIF)
#: "bptt" runs here; the others are run by spikegrad.apps.regression.online
LEARNING_RULES = ("bptt", "eprop_symmetric", "eprop_random", "eprop_adaptive", "three_factor")
ONLINE_BACKENDS = ("auto", "numba", "reference")


@dataclass
class Config:
    """Regression run; every field can be set with ``--set key=value``.

    Times are in ms (``dt_ms``, ``tau_*_ms``), rates in Hz. ``0`` switches off
    ``tbptt_k`` (full BPTT), ``grad_clip``, ``weight_decay`` and ``sparsity_weight``. Fields
    left at None take the task's value from :data:`PRESETS` (:func:`validate`).
    """

    task: str = "pattern"         # one of TASKS: pattern (e-prop pattern generation) or filter
    #: input neurons (filter: per output, so n_inputs * n_outputs input channels)
    n_inputs: int = 100
    #: pattern: rate of the frozen Poisson input pattern in Hz; filter: peak rate of the
    #: population code in Hz
    input_rate_hz: float = 50.0
    n_steps: Optional[int] = None  # time steps per sequence; None: the task's preset
    dt_ms: float = 1.0            # simulation step in ms
    n_outputs: int = 1            # readout channels (target signals)
    #: filter task: training (and test) sequences; unused by pattern (batch 1); None: preset
    batch_size: Optional[int] = None
    noise_std: float = 0.3        # filter task: std of the additive white noise on the signal
    horizon: int = 0              # filter task: predict the clean signal this many steps ahead
    hidden: int = 100             # recurrent neurons
    neuron: str = "lif"           # recurrent neuron, one of NEURONS: lif or alif (adaptive)
    tau_mem_ms: Optional[float] = None  # membrane time constant in ms; None: the task's preset
    tau_adapt_ms: float = 500.0   # neuron=alif: adaptation time constant in ms
    beta_adapt: float = 0.5       # neuron=alif: threshold increase per unit of adaptation trace
    #: readout low-pass time constant in ms (y_t = a y_t-1 + W z_t + b); None: the task's preset
    tau_out_ms: Optional[float] = None
    learn_tau_out: bool = False   # train the readout time constant
    #: train the recurrent neurons' constants: membrane time constant and threshold (neuron=alif:
    #: also the adaptation time constant and strength), per neuron
    learn_neuron: bool = False
    threshold: float = 1.0        # firing threshold of the recurrent neurons
    #: surrogate derivative name (spikegrad.surrogate.names(), e.g. fast_sigmoid)
    surrogate: str = "fast_sigmoid"
    surrogate_beta: float = 10.0  # surrogate slope (> 0, larger is sharper)
    input_gain: float = 5.0       # input weights ~ U(-g, g) / sqrt(fan_in) (torch's init times g)
    rec_gain: float = 1.0         # recurrent weights ~ U(-g, g) / sqrt(hidden)
    #: how gradients are computed, one of LEARNING_RULES: bptt, eprop_symmetric,
    #: eprop_random, eprop_adaptive, three_factor (all but bptt run online)
    learning: str = "bptt"
    optimizer: str = "adam"       # adam, adamw, sgd or rmsprop (train.OPTIMIZERS)
    lr: Optional[float] = None    # peak learning rate; None: the task's preset
    #: optimizer steps, one per pass over the training batch; None: the task's preset
    steps: Optional[int] = None
    # lr schedule (steps of the optimizer): linear warm-up, then cosine decay to
    # lr * lr_final_frac. Without it (0 and 1) the first Adam steps at the full lr overshoot
    # (rates 85 -> 130 Hz, NMSE 5 -> 14) and the last ones keep the training NMSE jumping by up
    # to 10x between steps, so the final NMSE depended on rounding (processor) and seed.
    lr_warmup_steps: int = 25     # steps of linear learning-rate warm-up; 0: none
    lr_final_frac: float = 0.05   # cosine decay to lr * lr_final_frac, in (0, 1]; 1: no decay
    tbptt_k: int = 0              # truncated BPTT chunk length in steps; 0: full BPTT
    #: how TBPTT runs (Trainer tbptt_mode): whole (one pass, the gradient cut every tbptt_k
    #: steps; same gradient, the rate penalty then over the whole sequence) or chunks
    tbptt_mode: str = "whole"
    grad_clip: float = 0.0        # clip the global gradient norm to this value; 0: off
    weight_decay: float = 0.0     # optimizer weight decay; 0: off
    #: weight of the penalty mean_j (r_j - target_rate_hz)^2 on recurrent rates; 0: off
    sparsity_weight: float = 0.0
    #: target firing rate in Hz of the sparsity penalty; 0: a plain L2 spike-count penalty
    target_rate_hz: float = 10.0
    eval_every: int = 25          # filter task: held-out NMSE every this many steps
    checkpoint_every: int = 100   # save a checkpoint every this many optimizer steps
    #: comma-separated TBPTT chunk lengths to retrain with for the report table (0: full); "": none
    compare_tbptt: str = "0,50,100,250"
    compare_clipping: bool = True  # also train DIVERGENCE_DEMO with and without clipping
    compare_sparsity: bool = False  # also train without the sparsity penalty (rates for both)
    # online rules (learning != "bptt"; see spikegrad.apps.regression.online)
    #: online rules: apply the accumulated update every N time steps (0: once per sequence)
    update_every: int = 0
    #: how e-prop's steps run: auto (one compiled numba call per chunk of steps where the
    #: network is of the kind the kernel supports: LIF, fixed constants), numba, or reference
    #: (EProp.step, torch, one step at a time); the same numbers
    online_backend: str = "auto"
    feedback_lr: float = 1e-3     # eprop_adaptive: learning rate of the feedback weights
    feedback_decay: float = 0.0   # eprop_adaptive: weight decay of the feedback weights
    #: other LEARNING_RULES trained on the same config and budget for the report table, e.g.
    #: "bptt,eprop_random"; "": none
    compare: str = ""
    #: sequence lengths for the peak-memory vs T comparison, e.g. "500,1000,2000,4000"; "": off
    memory_lengths: str = ""
    #: comma-separated LEARNING_RULES whose memory is measured at each of memory_lengths
    memory_rules: str = "bptt,eprop_symmetric"
    seed: int = 0
    deterministic: bool = True
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


def validate(cfg: Config) -> Config:
    """Fill the None fields from the task's :data:`PRESETS`, validate (raises
    :class:`ConfigError` naming the key) and return the filled config."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a spikegrad.apps.regression.Config, got "
                        f"{type(cfg).__name__}")

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(cfg.task in TASKS, f"task must be one of {', '.join(TASKS)}; got {cfg.task!r}")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in PRESETS[cfg.task].items()
                                      if getattr(cfg, k) is None})
    need(cfg.neuron in NEURONS, f"neuron must be one of {', '.join(NEURONS)}; got "
         f"{cfg.neuron!r}")
    need(cfg.tau_adapt_ms > 0 and math.isfinite(cfg.tau_adapt_ms),
         f"tau_adapt_ms must be a finite number > 0; got {cfg.tau_adapt_ms}")
    need(cfg.beta_adapt >= 0 and math.isfinite(cfg.beta_adapt),
         f"beta_adapt must be a finite number >= 0; got {cfg.beta_adapt}")
    need(cfg.learning in LEARNING_RULES, f"learning must be one of "
         f"{', '.join(LEARNING_RULES)}; got {cfg.learning!r}")
    need(cfg.online_backend in ONLINE_BACKENDS, f"online_backend must be one of "
         f"{', '.join(ONLINE_BACKENDS)}; got {cfg.online_backend!r}")
    need(cfg.optimizer.lower() in OPTIMIZERS, f"optimizer must be one of "
         f"{', '.join(sorted(OPTIMIZERS))}; got {cfg.optimizer!r}")
    need(cfg.surrogate in _surrogate.names(), f"surrogate must be one of "
         f"{', '.join(_surrogate.names())}; "
         f"got {cfg.surrogate!r}")
    for key in ("n_inputs", "n_steps", "n_outputs", "batch_size", "hidden", "steps",
                "eval_every", "checkpoint_every"):
        need(getattr(cfg, key) >= 1, f"{key} must be >= 1; got {getattr(cfg, key)}")
    need(cfg.n_steps >= 2, f"n_steps must be >= 2; got {cfg.n_steps}")
    for key in ("input_rate_hz", "dt_ms", "tau_mem_ms", "tau_out_ms", "threshold",
                "surrogate_beta", "lr", "input_gain"):
        v = getattr(cfg, key)
        need(math.isfinite(v) and v > 0, f"{key} must be a finite number > 0; got {v}")
    need(isinstance(cfg.lr_warmup_steps, int) and cfg.lr_warmup_steps >= 0,
         f"lr_warmup_steps must be an int >= 0 (0: no warm-up); got {cfg.lr_warmup_steps!r}")
    need(math.isfinite(cfg.lr_final_frac) and 0 < cfg.lr_final_frac <= 1,
         f"lr_final_frac must be in (0, 1] (1: no decay); got {cfg.lr_final_frac}")
    for key in ("tbptt_k", "grad_clip", "weight_decay", "sparsity_weight", "target_rate_hz",
                "rec_gain", "noise_std", "horizon"):
        v = getattr(cfg, key)
        need(math.isfinite(v) and v >= 0,
             f"{key} must be >= 0 (0 switches it off); got {v}")
    need(cfg.input_rate_hz * cfg.dt_ms * 1e-3 <= 1, f"input_rate_hz * dt_ms / 1000 must be <= 1 "
         f"(a spike probability per step); got {cfg.input_rate_hz} Hz at {cfg.dt_ms} ms")
    need(cfg.task == "filter" or cfg.horizon == 0,
         "horizon (prediction ahead) applies to task=filter only")
    need(cfg.task != "filter" or cfg.n_inputs >= 2,
         f"task=filter needs n_inputs >= 2 (tuning curves per channel); got {cfg.n_inputs}")
    parse_ks(cfg.compare_tbptt)
    need(not cfg.learn_neuron or cfg.learning == "bptt",
         f"learn_neuron trains the neurons' constants by backpropagation; learning="
         f"{cfg.learning} updates the weights only: use learning=bptt or learn_neuron=false")
    need(cfg.tbptt_mode in TBPTT_MODES,
         f"tbptt_mode must be one of {', '.join(TBPTT_MODES)}; got {cfg.tbptt_mode!r}")
    need(not cfg.compare_sparsity or cfg.sparsity_weight > 0,
         "compare_sparsity compares with and without the rate penalty: set sparsity_weight > 0 "
         "(e.g. sparsity_weight=1e-3 target_rate_hz=10)")
    return cfg


def parse_ks(text: str) -> List[int]:
    if not text.strip():
        return []
    try:
        ks = [int(k) for k in text.replace(" ", "").split(",") if k]
    except ValueError:
        ks = [-1]
    if any(k < 0 for k in ks):
        raise ConfigError(f"compare_tbptt must be a comma-separated list of chunk lengths >= 0 "
                          f"(0 = full BPTT), e.g. '0,50,100,250'; got {text!r}")
    return ks
