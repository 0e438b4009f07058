"""The robust app's configuration: the objectives compared, the spiking network and its
variational code, the training attack, the evaluation attacks and the gradient-masking
checks, and the information-plane sweep over beta."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..config import ConfigError

__all__ = ["Config", "DATASETS", "OBJECTIVES", "VIB_OBJECTIVES", "ENCODERS", "PRIORS",
           "AUTOATTACK", "validate", "objectives", "eps_list", "ib_betas", "label"]

DATASETS = ("digits",)
#: ``standard``: cross-entropy on clean inputs; ``pgd_at``: PGD adversarial training (Madry
#: et al.); ``trades``: TRADES (Zhang et al.); ``vib``: the variational information bottleneck
#: (Alemi et al.) at ``vib_beta``; ``robust_ib``: VIB plus the largest KL between the code of
#: an input and of its perturbation
OBJECTIVES = ("standard", "pgd_at", "trades", "vib", "robust_ib")
VIB_OBJECTIVES = ("vib", "robust_ib")
#: ``current``: the analog pixel injected at every step (deterministic); ``rate``: Bernoulli
#: spikes with the pixel as the probability per step (stochastic: attacks average their
#: gradient over ``eot`` encoder samples)
ENCODERS = ("current", "rate")
PRIORS = ("standard", "learned")
#: ``apgd``: torchattacks' APGD-CE and APGD-T (targeted DLR) in sequence, the two gradient
#: attacks of AutoAttack; ``full``: torchattacks' AutoAttack (APGD-CE, APGD-T, FAB-T, Square);
#: ``off``: no AutoAttack column
AUTOATTACK = ("apgd", "full", "off")


@dataclass
class Config:
    """Adversarial robustness and information bottleneck run; ``None`` fields take the
    encoder's preset (``PRESETS``)."""

    dataset: str = "digits"              # one of DATASETS: digits (sklearn 8x8, 75/25 split)
    seed: int = 0
    deterministic: bool = True
    #: comma-separated training objectives to compare, from OBJECTIVES
    objectives: str = "standard,pgd_at,trades,vib,robust_ib"
    # network: 64 pixels -> hidden LIF -> LI readout (C classes, or code_neurons for the VIB
    # models, whose readout membranes' mean and std over time parameterise q(z|x))
    encoder: str = "current"             # input coding, one of ENCODERS: current or rate
    n_steps: Optional[int] = None        # time steps per sample; None: the encoder's preset
    dt_ms: float = 1.0                   # simulation step in ms
    tau_mem_ms: float = 10.0             # hidden LIF membrane time constant in ms
    tau_out_ms: float = 10.0             # LI readout time constant in ms
    hidden: int = 256                    # hidden LIF neurons
    surrogate: str = "fast_sigmoid"      # surrogate derivative (spikegrad.surrogate.names())
    surrogate_beta: float = 10.0         # surrogate slope (> 0, larger is sharper)
    code_neurons: int = 32               # VIB models: readout neurons whose membranes give q(z|x)
    latent_dim: int = 32                 # VIB models: dimension of the Gaussian code z
    log_var_init: float = 0.0            # initial log-variance of q(z|x) (the prior's)
    prior: str = "standard"              # r(z): N(0, I), or a learned diagonal Gaussian
    # training (Adam, cosine schedule, the same for every objective)
    epochs: int = 30                     # training epochs per objective (cosine LR)
    batch_size: int = 64                 # training batch size
    lr: float = 2e-3                     # Adam learning rate
    max_train: int = 0                   # 0: the whole training split
    train_eps: float = 0.1               # L-inf budget of the inner maximisation
    train_steps: int = 7                 # its PGD steps (step 2.5 eps / steps)
    trades_beta: float = 6.0             # TRADES: weight of KL(f(x) || f(x'))
    vib_beta: float = 1e-3               # vib: weight of KL(q(z|x) || r(z))
    rib_beta: float = 1e-3               # robust_ib: weight of KL(q(z|x) || r(z))
    rib_lambda: float = 1.0              # robust_ib: weight of max KL(q(z|x) || q(z|x+delta))
    # evaluation (L-inf, inputs in [0, 1])
    eps: str = "0.05,0.1,0.2"            # PGD budgets of the table
    pgd_steps: int = 20                  # PGD steps of the table's attacks
    eval_eps: float = 0.1                # AutoAttack, transfer and masking checks
    eot: Optional[int] = None            # encoder samples per attack gradient
    autoattack: str = "apgd"             # one of AUTOATTACK: apgd, full or off
    autoattack_steps: int = 100          # APGD iterations (per target class for APGD-T)
    autoattack_subset: int = 0           # first N test samples (0: all)
    mask_subset: int = 200               # first N test samples for the masking checks
    mask_steps: int = 50                 # the stronger PGD of the steps/restarts checks
    mask_restarts: int = 5               # random restarts of the restarts check
    spsa_subset: int = 32                # first N test samples for the SPSA comparison
    spsa_steps: int = 100                # SPSA attack iterations
    spsa_samples: int = 64               # Rademacher directions per gradient estimate
    spsa_perturbation: float = 0.05      # finite-difference half-width (input units)
    # information plane: a VIB per beta (accuracy and I(X;Z) estimate); empty: none
    ib_betas: str = "1e-4,1e-3,1e-2,1e-1,1"  # VIB betas of the information plane
    ib_epochs: Optional[int] = None      # None: epochs
    examples: int = 3                    # adversarial examples in the raster figure
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


PRESETS: Dict[str, dict] = {
    "current": dict(n_steps=8, eot=1),
    # Bernoulli input needs more steps to carry the pixel values, and attacks an average
    # over encoder samples (EOT)
    "rate": dict(n_steps=16, eot=8),
}


def _floats(text: str, key: str, example: str, allow_empty: bool = False) -> List[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = [math.nan]
    if (not values and not allow_empty) or any(not (math.isfinite(v) and v > 0)
                                               for v in values) \
            or len(set(values)) != len(values):
        raise ConfigError(f"{key} must be a comma-separated list of distinct numbers > 0, e.g. "
                          f"{example!r}" + (" (empty: none)" if allow_empty else "")
                          + f"; got {text!r}")
    return sorted(values)


def eps_list(c: Config) -> List[float]:
    """The PGD budgets of the table, ascending."""
    return _floats(c.eps, "eps", "0.05,0.1,0.2")


def ib_betas(c: Config) -> List[float]:
    """The betas of the information plane, ascending (may be empty)."""
    return _floats(c.ib_betas, "ib_betas", "1e-4,1e-3,1e-2", allow_empty=True)


def objectives(c: Config) -> List[str]:
    names = [m for m in c.objectives.replace(" ", "").split(",") if m]
    if not names or any(m not in OBJECTIVES for m in names) or len(set(names)) != len(names):
        raise ConfigError(f"objectives must be a comma-separated list of distinct names from "
                          f"{', '.join(OBJECTIVES)}; got {c.objectives!r}")
    return names


def label(value: float) -> str:
    """A number as a metric-key fragment: ``0.05 -> '0p05'``, ``1e-3 -> '0p001'``."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text.replace(".", "p")


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the encoder's preset, then check every field (a
    :class:`~spikegrad.apps.config.ConfigError` naming the key)."""
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a spikegrad.apps.robust.Config, got {type(cfg).__name__}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}; got {cfg.encoder!r}")
    c = dataclasses.replace(cfg, **{k: v for k, v in PRESETS[cfg.encoder].items()
                                    if getattr(cfg, k) is None})
    if c.ib_epochs is None:
        c = dataclasses.replace(c, ib_epochs=c.epochs)
    _check(c)
    return c


def _check(c: Config) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)
    objectives(c)
    eps_list(c)
    ib_betas(c)
    need(c.prior in PRIORS, f"prior must be one of {', '.join(PRIORS)}; got {c.prior!r}")
    need(c.autoattack in AUTOATTACK, f"autoattack must be one of {', '.join(AUTOATTACK)}; "
                                     f"got {c.autoattack!r}")
    for key in ("n_steps", "hidden", "code_neurons", "latent_dim", "epochs", "ib_epochs",
                "batch_size", "train_steps", "pgd_steps", "eot", "autoattack_steps",
                "mask_subset", "mask_restarts", "spsa_subset", "spsa_steps", "spsa_samples"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    need(c.mask_steps > c.pgd_steps, f"mask_steps must exceed pgd_steps={c.pgd_steps} (the "
                                     f"masking check runs a stronger PGD); got {c.mask_steps}")
    need(c.mask_restarts >= 2, f"mask_restarts must be >= 2 (more restarts than the table's "
                               f"one); got {c.mask_restarts}")
    for key in ("max_train", "autoattack_subset", "examples"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0; got {getattr(c, key)}")
    for key in ("dt_ms", "tau_mem_ms", "tau_out_ms", "surrogate_beta", "lr", "train_eps",
                "eval_eps", "spsa_perturbation", "trades_beta", "vib_beta", "rib_beta",
                "rib_lambda"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("train_eps", "eval_eps"):
        need(getattr(c, key) < 1, f"{key} must be < 1 (a budget in input units; the inputs "
                                  f"lie in [0, 1]); got {getattr(c, key)}")
    need(c.eval_eps in eps_list(c), f"eval_eps must be one of the PGD budgets eps={c.eps!r} "
                                    f"(its PGD column is the white-box number the AutoAttack, "
                                    f"transfer and masking columns are read against); got "
                                    f"{c.eval_eps}")
    need(max(eps_list(c)) < 1, f"eps must hold budgets < 1 (eps -> 1 is the masking "
                               f"check's); got {c.eps!r}")
    need(math.isfinite(c.log_var_init), f"log_var_init must be finite; got {c.log_var_init}")
    need(0 <= c.seed < 2 ** 32, f"seed must be in [0, 2**32); got {c.seed}")
