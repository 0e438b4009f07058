"""Sequence regression with a recurrent spiking network (RSNN) and a low-pass readout.

Methods, in the order they run:

1. **Task** (generated, :mod:`spikegrad.data.patterns`). ``pattern``: the e-prop
   pattern-generation task (Bellec et al. 2020): ``n_inputs`` neurons with one frozen
   Poisson pattern (``input_rate_hz``), ``n_steps`` steps of ``dt_ms``; target per output a
   sum of sinusoids with periods 1000, 500, 333 and 200 ms, random amplitudes and phases,
   mapped onto [-1, 1]; one training sequence (batch 1), evaluated on itself. ``filter``:
   recover a random smooth signal (``horizon`` steps ahead; 0: denoise) from its noisy,
   population-coded spikes; a fixed training batch of ``batch_size`` sequences, NMSE on
   ``batch_size`` held-out sequences drawn with another seed.
2. **Model** (:func:`build_model`): input ``Linear`` (no bias) -> recurrent LIF layer
   (``nn.Recurrent(nn.LIF)``, no autapses; ``neuron=alif``: ``nn.ALIF`` with threshold
   adaptation ``tau_adapt_ms``, ``beta_adapt``, run by its reference loop) -> readout
   ``Linear`` -> ``nn.LI``: the
   readout is the exponential (synaptic) low-pass filter ``y_t = a y_{t-1} + W_out z_t + b``
   with ``a = exp(-dt / tau_out)``, fixed or trainable (``learn_tau_out``).
3. **Objective**: MSE between readout and target over all steps, plus, when
   ``sparsity_weight > 0``, ``sparsity_weight * mean_j (r_j - target_rate_hz)^2`` on the
   recurrent firing rates ``r_j`` in Hz (``target_rate_hz = 0``: an L2 spike-count
   sparsity penalty). With truncated BPTT (``tbptt_k = K``) each chunk of ``K`` steps adds
   its share ``K / T`` of both terms (rates over the chunk), so the summed loss is the
   full-sequence loss, and ``K >= T`` is exactly full BPTT.
4. **Training**: :class:`spikegrad.train.Trainer`, one optimizer step per batch
   (``steps`` steps), Adam by default with a linear warm-up and a cosine decay of the
   learning rate (``lr_warmup_steps``, ``lr_final_frac``), optional weight decay, global
   gradient-norm clipping
   (``grad_clip``; the pre-clip norm is logged either way), TBPTT with the state carried
   across chunks detached. Other ``learning`` rules (e-prop, three-factor) run in
   :mod:`spikegrad.apps.regression.online` on the same task and model.
5. **Evaluation**: one forward pass of the final model (no gradient): ``nmse = mean((y -
   y*)^2) / var(y*)`` and the mean recurrent firing rate. For ``filter`` also
   ``baseline_nmse``: a linear decoder of the low-passed input spikes (ridge), the
   non-spiking reference the RSNN has to beat. ``peak_memory_mb`` is the peak of
   the bytes that torch's allocator holds for one training step (forward, backward and
   optimizer step, all TBPTT chunks) above what was allocated before it, measured with
   ``torch.profiler`` (``profile_memory=True``) by summing its allocation and free events in
   time order on a copy of the trained model; tensors made outside torch's allocator (a few
   ``[N]``-sized numba scratch arrays) are not counted.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as TF
from torch import Tensor

from ... import losses, nn
from ... import surrogate as _surrogate
from ...data.patterns import noisy_signal_task, pattern_generation_task
from ...functional.leaky import lowpass
from ...train import Learner, ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ...train.memory import allocator_peak_mb
from ...train.optim import OPTIMIZERS
from ..config import ConfigError
from ..report import Result, RunDir, Table, curve

__all__ = ["Config", "Result", "RegressionRSNN", "TASKS", "PRESETS", "NEURONS", "LEARNING_RULES",
           "validate", "make_task", "make_test_task", "build_model", "make_objective",
           "rate_penalty", "evaluate", "linear_baseline_nmse", "lr_schedule", "make_trainer",
           "LearnerFactory", "train", "measure_step_memory", "compare_tbptt",
           "compare_clipping", "DIVERGENCE_DEMO", "save_trace_figures", "run_bptt",
           "progress_bar"]

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


@dataclass
class Config:
    """Regression run; every field can be set with ``--set key=value``.

    Times are in ms (``dt_ms``, ``tau_*_ms``), rates in Hz. ``0`` switches off
    ``tbptt_k`` (full BPTT), ``grad_clip``, ``weight_decay`` and ``sparsity_weight``. Fields
    left at None take the task's value from :data:`PRESETS` (:func:`validate`).
    """

    task: str = "pattern"
    n_inputs: int = 100
    input_rate_hz: float = 50.0
    n_steps: Optional[int] = None
    dt_ms: float = 1.0
    n_outputs: int = 1
    batch_size: Optional[int] = None  # filter task: training (and test) sequences
    noise_std: float = 0.3        # filter task: additive white noise on the signal
    horizon: int = 0              # filter task: predict the clean signal this many steps ahead
    hidden: int = 100
    neuron: str = "lif"
    tau_mem_ms: Optional[float] = None
    tau_adapt_ms: float = 500.0   # neuron=alif: adaptation time constant
    beta_adapt: float = 0.5       # neuron=alif: threshold increase per unit of adaptation trace
    tau_out_ms: Optional[float] = None
    learn_tau_out: bool = False
    threshold: float = 1.0
    surrogate: str = "fast_sigmoid"
    surrogate_beta: float = 10.0
    input_gain: float = 5.0       # input weights ~ U(-g, g) / sqrt(n_inputs)
    rec_gain: float = 1.0         # recurrent weights ~ U(-g, g) / sqrt(hidden)
    learning: str = "bptt"
    optimizer: str = "adam"
    lr: Optional[float] = None
    steps: Optional[int] = None
    # lr schedule (steps of the optimizer): linear warm-up, then cosine decay to
    # lr * lr_final_frac. Without it (0 and 1) the first Adam steps at the full lr overshoot
    # (rates 85 -> 130 Hz, NMSE 5 -> 14) and the last ones keep the training NMSE jumping by up
    # to 10x between steps, so the final NMSE depended on rounding (processor) and seed.
    lr_warmup_steps: int = 25
    lr_final_frac: float = 0.05
    tbptt_k: int = 0
    grad_clip: float = 0.0
    weight_decay: float = 0.0
    sparsity_weight: float = 0.0
    target_rate_hz: float = 10.0
    eval_every: int = 25          # filter task: held-out NMSE every this many steps
    checkpoint_every: int = 100
    compare_tbptt: str = "0,50,100,250"  # retrain with each K (0: full) for the report table
    compare_clipping: bool = True  # also train DIVERGENCE_DEMO with and without clipping
    compare_sparsity: bool = False  # also train without the sparsity penalty (rates for both)
    # online rules (learning != "bptt"; see spikegrad.apps.regression.online)
    update_every: int = 0         # apply the accumulated update every N steps (0: per sequence)
    feedback_lr: float = 1e-3     # eprop_adaptive: learning rate of the feedback weights
    feedback_decay: float = 0.0   # eprop_adaptive: weight decay of the feedback weights
    compare: str = ""             # other rules trained on the same budget, e.g. "bptt,eprop_random"
    memory_lengths: str = ""      # peak memory vs T, e.g. "500,1000,2000,4000"
    memory_rules: str = "bptt,eprop_symmetric"
    seed: int = 0
    deterministic: bool = True
    progress: bool = True


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
    _parse_ks(cfg.compare_tbptt)
    need(not cfg.compare_sparsity or cfg.sparsity_weight > 0,
         "compare_sparsity compares with and without the rate penalty: set sparsity_weight > 0 "
         "(e.g. sparsity_weight=1e-3 target_rate_hz=10)")
    return cfg


def _parse_ks(text: str) -> List[int]:
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


# --- task ------------------------------------------------------------------------------------

def make_task(cfg: Config) -> Tuple[Tensor, Tensor]:
    """The training data: ``(inputs [T, B, n_in], targets [T, B, n_outputs])``.

    ``pattern``: B = 1, the frozen pattern of seed ``cfg.seed``. ``filter``: B =
    ``batch_size`` sequences of seed ``cfg.seed``; ``n_in = n_inputs * n_outputs``.
    """
    cfg = validate(cfg)
    dt = cfg.dt_ms * 1e-3
    if cfg.task == "pattern":
        return pattern_generation_task(cfg.n_inputs, cfg.n_steps, cfg.input_rate_hz, dt,
                                       cfg.n_outputs, cfg.seed)
    return noisy_signal_task(cfg.n_inputs, cfg.n_steps, cfg.batch_size, dt, cfg.n_outputs,
                             cfg.seed, max_rate_hz=cfg.input_rate_hz, noise_std=cfg.noise_std,
                             horizon=cfg.horizon)


def make_test_task(cfg: Config) -> Tuple[Tensor, Tensor]:
    """Held-out data: the training pattern itself for ``pattern`` (the task is to replay
    it), fresh sequences (another seed) for ``filter``."""
    if cfg.task == "pattern":
        return make_task(cfg)
    return make_task(dataclasses.replace(cfg, seed=cfg.seed + 1_000_003))


def n_inputs_total(cfg: Config) -> int:
    return cfg.n_inputs * (cfg.n_outputs if cfg.task == "filter" else 1)


# --- model -----------------------------------------------------------------------------------

class RegressionRSNN(nn.Sequential):
    """Input ``Linear`` -> recurrent LIF -> readout ``Linear`` -> low-pass ``LI``.

    A :class:`spikegrad.nn.Sequential` of four layers, so ``forward`` / ``forward_all`` and
    the state tuple work as usual (``forward_all(xs)[1]`` are the recurrent spikes). The
    layers by role:

    - ``input_layer`` (``layers[0]``): ``nn.Linear(n_in, hidden, bias=False)``,
      ``weight [hidden, n_in]``.
    - ``rsnn`` (``layers[1]``): ``nn.Recurrent``; ``rsnn.weight [hidden, hidden]`` (the
      diagonal is masked: ``rsnn.recurrent_weight()``), ``rsnn.neuron`` the ``nn.LIF``.
    - ``readout_layer`` (``layers[2]``): ``nn.Linear(hidden, n_outputs)``, with bias.
    - ``readout`` (``layers[3]``): ``nn.LI(n_outputs)``, ``y_t = a y_{t-1} + x_t``.

    Shapes: ``xs [T, B, n_in] -> (ys [T, B, n_outputs], state)``.
    """

    @property
    def input_layer(self) -> nn.Linear:
        return self.layers[0]

    @property
    def rsnn(self) -> nn.Recurrent:
        return self.layers[1]

    @property
    def readout_layer(self) -> nn.Linear:
        return self.layers[2]

    @property
    def readout(self) -> nn.LI:
        return self.layers[3]


def build_model(cfg: Config) -> RegressionRSNN:
    """The RSNN of ``cfg`` (see :class:`RegressionRSNN`), initialised from torch's global RNG
    (seed it first: :func:`run` calls ``seed_everything(cfg.seed)``)."""
    cfg = validate(cfg)
    dt = cfg.dt_ms * 1e-3
    n_in = n_inputs_total(cfg)
    inp = nn.Linear(n_in, cfg.hidden, bias=False)
    with torch.no_grad():
        inp.weight.mul_(cfg.input_gain)
    kw = dict(tau_mem=cfg.tau_mem_ms * 1e-3, dt=dt, threshold=cfg.threshold,
              surrogate=cfg.surrogate, beta=cfg.surrogate_beta, backend="auto")
    neuron = (nn.LIF(cfg.hidden, **kw) if cfg.neuron == "lif" else
              nn.ALIF(cfg.hidden, tau_adapt=cfg.tau_adapt_ms * 1e-3, beta_adapt=cfg.beta_adapt,
                      **kw))
    rec = nn.Recurrent(neuron, autapses=False, init_gain=cfg.rec_gain)
    out = nn.Linear(cfg.hidden, cfg.n_outputs)
    # y = a y + W z: the filter sums about tau_out/dt steps of input, so scale the initial
    # readout weights by (1 - a) to start the output near the target's scale
    a = math.exp(-cfg.dt_ms / cfg.tau_out_ms)
    with torch.no_grad():
        out.weight.mul_(1 - a)
    li = nn.LI(cfg.n_outputs, tau_mem=cfg.tau_out_ms * 1e-3, dt=dt,
               learn_tau=cfg.learn_tau_out, backend="auto")
    return RegressionRSNN(inp, rec, out, li)


# --- objective -------------------------------------------------------------------------------

def rate_penalty(zs: Tensor, target_rate_hz: float, dt: float) -> Tensor:
    """``mean_{b, j} (r_bj - r*)^2`` with ``r_bj = sum_t z_t,b,j / (T dt)`` the rate in Hz.

    ``zs [T, B, N]`` spikes; ``target_rate_hz = 0`` gives ``spike_count_l2(zs) / (T dt)^2``,
    a plain sparsity penalty. Built on :func:`spikegrad.losses.rate_band` (with
    ``low = high = r*``)."""
    rates = zs / (zs.shape[0] * dt)  # summing over time gives rates in Hz
    return losses.rate_band(rates, low=target_rate_hz, high=target_rate_hz)


def make_objective(cfg: Config, n_steps: int, target_var: float):
    """The Trainer objective for sequences of ``n_steps`` steps (any TBPTT chunking).

    The loss of a chunk of ``K`` steps is ``(K / T) (mse_chunk + w * rate_penalty_chunk)``
    so the chunk losses add up to the full-sequence loss. Metrics: ``nmse`` and ``rate_hz``
    (recurrent mean); each chunk reports its share times the number of chunks because the
    trainer averages chunk metrics, which then gives the full-sequence values.
    """
    dt = cfg.dt_ms * 1e-3
    k = cfg.tbptt_k if 0 < cfg.tbptt_k < n_steps else n_steps
    n_chunks = math.ceil(n_steps / k)

    def objective(model, xs, ys, state):
        outs, state = model.forward_all(xs, state)
        y, zs = outs[-1], outs[1]
        share = xs.shape[0] / n_steps
        mse = losses.mse(y, ys)
        loss = share * mse
        if cfg.sparsity_weight:
            loss = loss + share * cfg.sparsity_weight * rate_penalty(zs, cfg.target_rate_hz, dt)
        rate = float(zs.detach().mean()) / dt
        return ObjectiveOutput(loss, state, {
            "nmse": n_chunks * share * float(mse.detach()) / target_var,
            "rate_hz": n_chunks * share * rate})
    return objective


@torch.no_grad()
def evaluate(model: RegressionRSNN, xs: Tensor, ys: Tensor, dt: float) -> Dict[str, float]:
    """NMSE of the readout and the recurrent layer's mean rate (Hz) on one full pass."""
    was = model.training
    model.eval()
    try:
        outs, _ = model.forward_all(xs)
    finally:
        model.train(was)
    return {"nmse": float(losses.nmse(outs[-1], ys)),
            "firing_rate_hz": float(outs[1].mean()) / dt}


def linear_baseline_nmse(cfg: Config, xs: Tensor, ys: Tensor, test_xs: Tensor,
                         test_ys: Tensor, ridge: float = 1e-3) -> float:
    """Held-out NMSE of a non-spiking reference: the input spikes through the readout's
    low-pass filter (``tau_out_ms``, unit DC gain), then an affine map fitted by ridge
    regression (float64) on the training data. What the RSNN must beat to have used its
    hidden layer."""
    cfg = validate(cfg)
    a = math.exp(-cfg.dt_ms / cfg.tau_out_ms)

    def features(x: Tensor) -> Tensor:
        f = (1 - a) * lowpass(x.double(), a)                          # [T, B, n_in]
        f = torch.cat([f, torch.ones_like(f[..., :1])], -1)
        return f.reshape(-1, f.shape[-1])                              # [T*B, n_in + 1]

    f = features(xs)
    w = torch.linalg.solve(f.T @ f + ridge * torch.eye(f.shape[1], dtype=f.dtype),
                           f.T @ ys.reshape(-1, ys.shape[-1]).double())
    pred = (features(test_xs) @ w).reshape(test_ys.shape)
    return float(losses.nmse(pred, test_ys.double()))


# --- training --------------------------------------------------------------------------------

@dataclass
class Trained:
    model: RegressionRSNN
    history: List[dict]
    metrics: Dict[str, float]
    diverged: bool


def lr_schedule(cfg: Config, opt: torch.optim.Optimizer):
    """Linear warm-up over ``lr_warmup_steps``, then cosine decay to ``lr * lr_final_frac`` at
    ``steps`` (one optimizer step per Trainer epoch here); None when both are off."""
    cfg = validate(cfg)
    warm, final, total = cfg.lr_warmup_steps, cfg.lr_final_frac, cfg.steps
    if warm == 0 and final == 1.0:
        return None

    def factor(step: int) -> float:
        ramp = min(1.0, (step + 1) / warm) if warm else 1.0
        progress = min(step, total) / total
        return ramp * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


#: ``learner_factory(cfg, model, xs, ys) -> Learner``: an online rule for
#: :class:`spikegrad.train.Trainer` (see :mod:`.online`) that trains ``model`` on the
#: training data ``(xs, ys)``; None trains by (T)BPTT.
LearnerFactory = Callable[[Config, RegressionRSNN, Tensor, Tensor], Learner]


def make_trainer(cfg: Config, model, objective=None, learner=None, log_path=None,
                 checkpoint_dir=None, evaluate_fn=None) -> Trainer:
    """The Trainer of ``cfg``: its optimizer, schedule and clipping, with ``objective``
    (BPTT, TBPTT when ``tbptt_k``) or ``learner`` (an online rule)."""
    cfg = validate(cfg)
    opt = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr,
                         weight_decay=cfg.weight_decay)
    return Trainer(model, opt, objective, learner=learner, scheduler=lr_schedule(cfg, opt),
                   grad_clip=cfg.grad_clip or None,
                   tbptt=(cfg.tbptt_k or None) if learner is None else None,
                   evaluate=evaluate_fn, log_path=log_path,
                   checkpoint_dir=checkpoint_dir, checkpoint_every=cfg.checkpoint_every,
                   keep_checkpoints=2, progress=False)


def train(cfg: Config, out_dir: Optional[Path] = None, resume: bool = False,
          measure_memory: bool = True, learner: Optional[LearnerFactory] = None) -> Trained:
    """Seed, build task and model, train ``cfg.steps`` passes over the training batch (by
    (T)BPTT, or by the online rule ``learner(cfg, model, xs, ys)`` builds), evaluate.

    A NaN/Inf loss or gradient (a diverged run) stops training; ``diverged`` is then True and
    the history holds the steps before it. With ``out_dir``, the log and checkpoints go there.
    """
    c = validate(cfg)
    seed_everything(c.seed, deterministic=c.deterministic)
    dt = c.dt_ms * 1e-3
    xs, ys = make_task(c)
    test_xs, test_ys = make_test_task(c)
    model = build_model(c)
    target_var = float(ys.var(unbiased=False))
    objective = make_objective(c, xs.shape[0], target_var)
    bar = progress_bar(c)
    held_out = c.task != "pattern"

    def evaluate_fn(m):
        # the trainer calls this after every step (one step = one "epoch" here)
        out = {}
        n = len(trainer.history) + 1
        if held_out and (n % c.eval_every == 0 or n == c.steps):
            out["test_nmse"] = evaluate(m, test_xs, test_ys, dt)["nmse"]
        if bar is not None:
            bar.update(1)
        return out

    ckpt = None if out_dir is None else Path(out_dir) / "checkpoints"
    log = None if out_dir is None else Path(out_dir) / "log.jsonl"
    rule = None if learner is None else learner(c, model, xs, ys)
    trainer = make_trainer(c, model, None if rule else objective, rule, log, ckpt, evaluate_fn)
    start = time.perf_counter()
    diverged = False
    try:
        trainer.fit([(xs, ys)], c.steps, resume="latest" if resume else None)
    except FloatingPointError:
        diverged = True
    finally:
        if bar is not None:
            bar.close()
    train_seconds = time.perf_counter() - start
    final = evaluate(model, test_xs, test_ys, dt)
    if not math.isfinite(final["nmse"]):
        diverged = True
    metrics = {"nmse": final["nmse"], "firing_rate_hz": final["firing_rate_hz"],
               "train_seconds": train_seconds, "steps": trainer.step,
               "diverged": diverged}
    if held_out:
        metrics["train_nmse"] = evaluate(model, xs, ys, dt)["nmse"]
        metrics["baseline_nmse"] = linear_baseline_nmse(c, xs, ys, test_xs, test_ys)
    if measure_memory:
        metrics["peak_memory_mb"] = measure_step_memory(c, model, xs, ys, learner)
    return Trained(model, list(trainer.history), metrics, diverged)


def progress_bar(c: Config):
    if not c.progress:
        return None
    from ...train.progress import Progress

    # lines with an ETA (about 50 per run), readable in a batch job's log as on a terminal
    return Progress(c.steps, f"regression {c.task} step")


def measure_step_memory(cfg: Config, model: RegressionRSNN, xs: Tensor, ys: Tensor,
                        learner: Optional[LearnerFactory] = None) -> float:
    """Peak MiB held by torch's allocator during one training step of ``model`` on ``(xs,
    ys)`` with ``cfg``'s optimizer, TBPTT and clipping (or ``learner``'s online rule), above
    what was allocated before.

    Runs on a deep copy (the model is not changed) under ``torch.profiler`` with
    ``profile_memory=True``; the allocation (+) and free (-) events are summed in time
    order and the running maximum is the peak. This counts activations saved for backward,
    gradients, optimizer state created by the step and temporaries; it does not count
    memory allocated outside torch (numba's per-step ``[N]`` scratch arrays) or Python
    objects. Returns NaN if this torch has no such profiler events or the step is not
    finite (a diverged model).
    """
    c = dataclasses.replace(validate(cfg), progress=False)
    twin = copy.deepcopy(model)
    objective = make_objective(c, xs.shape[0], float(ys.var(unbiased=False)))

    def fresh() -> Trainer:
        if learner is None:
            return make_trainer(c, twin, objective)
        return make_trainer(c, twin, learner=learner(c, twin, xs, ys))
    trainer = fresh()
    # one unprofiled step first: numba compilation and lazy torch initialisation are
    # one-off costs, not the step's memory; then reset the optimizer state so the
    # profiled step creates it as a first step does
    try:
        trainer.fit([(xs, ys)], 1)
        trainer = fresh()
        return allocator_peak_mb(lambda: trainer.fit([(xs, ys)], 1))
    except FloatingPointError:  # a diverged model cannot take a step to measure
        return float("nan")


def compare_tbptt(cfg: Config, ks: Sequence[int], done: Optional[Dict[int, dict]] = None
                  ) -> List[dict]:
    """Retrain ``cfg`` with each chunk length in ``ks`` (0 = full BPTT): one row per K with
    ``nmse``, ``train_seconds``, ``peak_memory_mb``, ``firing_rate_hz``. ``done`` maps a K
    to metrics already measured (e.g. the main run's) to reuse."""
    rows = []
    for k in ks:
        if done and k in done:
            m = done[k]
        else:
            m = train(dataclasses.replace(cfg, tbptt_k=k, progress=False)).metrics
        rows.append({"tbptt_k": k, **{key: m[key] for key in
                                      ("nmse", "train_seconds", "peak_memory_mb",
                                       "firing_rate_hz", "diverged")}})
    return rows


def compare_clipping(cfg: Config, overrides: Optional[dict] = None) -> Dict[str, Trained]:
    """Train ``cfg`` with ``overrides`` (default :data:`DIVERGENCE_DEMO`) twice: with its
    ``grad_clip`` and with clipping off. Returns ``{"clipped": ..., "unclipped": ...}``."""
    demo = dataclasses.replace(cfg, progress=False, **(overrides or DIVERGENCE_DEMO))
    if not demo.grad_clip:
        raise ConfigError("compare_clipping needs a grad_clip > 0 in the demo overrides")
    return {"clipped": train(demo, measure_memory=False),
            "unclipped": train(dataclasses.replace(demo, grad_clip=0.0), measure_memory=False)}


# --- run -------------------------------------------------------------------------------------

def run_bptt(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    """Train with BPTT (or TBPTT) and evaluate; write ``config.json``, ``metrics.json``
    (``nmse``, ``firing_rate_hz``, ``wall_seconds``, ``peak_memory_mb``, ...), ``log.jsonl``,
    figures and ``report.md`` to ``out_dir``."""
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    result = train(c, rd.path, resume=resume)
    metrics = dict(result.metrics)
    metrics["wall_seconds"] = time.perf_counter() - start
    ks = _parse_ks(c.compare_tbptt)
    table = compare_tbptt(c, ks, done={c.tbptt_k: metrics}) if ks else []
    clip = compare_clipping(c) if c.compare_clipping else {}
    sparse = []
    if c.compare_sparsity:
        off = train(dataclasses.replace(c, sparsity_weight=0.0, compare_sparsity=False,
                                        progress=False),
                    measure_memory=False).metrics
        sparse = [("without penalty", off), (f"sparsity_weight={c.sparsity_weight:g}", metrics)]
    for name, t in clip.items():  # the README quotes them (scripts/results.py)
        metrics[f"clip_{name}_steps"] = t.metrics["steps"]
        metrics[f"clip_{name}_diverged"] = t.diverged
    # wall_seconds is the main training alone (the TBPTT table compares it); this is the command
    metrics["run_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    figures = _figures(c, result, rd)
    if clip:
        from ... import viz
        _save_curves(viz.pyplot(), rd.path / "clipping.png",
                     {name: t.history for name, t in clip.items()})
        figures.append("clipping.png")
    _write_report(rd, c, metrics, result.history, table, figures, clip, sparse)
    if table:
        import json
        (rd.path / "tbptt_table.json").write_text(json.dumps(table, indent=2) + "\n")
    return Result(metrics, result.history, rd.path)


# --- report ----------------------------------------------------------------------------------

def save_trace_figures(c: Config, model: RegressionRSNN, title: str, rd: RunDir) -> List[str]:
    """``output.png`` (target vs readout on the first test sequence, titled ``title``) and
    ``rasters.png`` (input and recurrent spikes); returns the file names."""
    from ... import viz
    plt = viz.pyplot()
    xs, ys = make_test_task(c)
    with torch.no_grad():
        outs, _ = model.forward_all(xs[:, :1])
    t = torch.arange(xs.shape[0]) * c.dt_ms
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for k in range(ys.shape[2]):
        ax.plot(t, ys[:, 0, k], c=f"C{k}", lw=2, alpha=0.5, label=f"target {k}")
        ax.plot(t, outs[-1][:, 0, k], c=f"C{k}", lw=1, label=f"output {k}")
    ax.set_xlabel("time (ms)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(rd.path / "output.png", dpi=110)
    plt.close(fig)
    viz.save_rasters(rd.path / "rasters.png", [("input", xs[:, 0].numpy()),
                                                (f"recurrent {c.neuron.upper()}",
                                                 outs[1][:, 0].numpy())],
                     dt_ms=c.dt_ms)
    return ["output.png", "rasters.png"]


def _figures(c: Config, result: Trained, rd: RunDir) -> List[str]:
    from ... import viz
    names = save_trace_figures(
        c, result.model, f"{c.task}: target vs readout (NMSE {result.metrics['nmse']:.4f})", rd)
    _save_curves(viz.pyplot(), rd.path / "curves.png", {"": result.history})
    return names + ["curves.png"]


def _save_curves(plt, path: Path, runs: Dict[str, List[dict]]) -> None:
    """NMSE, firing rate and pre-clip gradient norm against the step, for each run."""
    panels = [("NMSE (train pass)", "train_nmse", True), ("recurrent rate (Hz)", "train_rate_hz",
                                                          False),
              ("gradient norm before clipping", "grad_norm_max", True)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, (title, key, log) in zip(axes, panels):
        for name, hist in runs.items():
            steps = [r["step"] for r in hist]
            ax.plot(steps, [r.get(key, float("nan")) for r in hist], lw=1, label=name or key)
            if key == "train_nmse" and any("test_nmse" in r for r in hist):
                pts = [(r["step"], r["test_nmse"]) for r in hist if "test_nmse" in r]
                ax.plot(*zip(*pts), marker=".", lw=1, label=f"{name} held-out".strip())
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_report(rd: RunDir, c: Config, metrics: Dict[str, float], history: List[dict],
                  table: List[dict], figures: List[str],
                  clip: Optional[Dict[str, Trained]] = None,
                  sparse: Sequence[Tuple[str, dict]] = ()) -> None:
    tables = []
    if table:
        tables.append(Table(
            "Full BPTT vs truncated BPTT",
            ["K", "final NMSE", "rate (Hz)", "train wall (s)", "peak memory (MiB)"],
            [[r["tbptt_k"] or "full", r["nmse"], r["firing_rate_hz"], r["train_seconds"],
              r["peak_memory_mb"]] for r in table],
            "Same config, seed and number of steps; only the chunk length K changes "
            "(0 = full BPTT). Peak memory: torch allocator, one training step."))
    if clip:
        demo = ", ".join(f"{k}={v}" for k, v in DIVERGENCE_DEMO.items())
        tables.append(Table(
            "Gradient clipping",
            ["run", "steps done", "diverged", "final NMSE", "max pre-clip grad norm"],
            [[name, t.metrics["steps"], t.diverged, t.metrics["nmse"],
              max((r["grad_norm_max"] for r in t.history), default=float("nan"))]
             for name, t in clip.items()],
            f"The run's config with {demo}, trained with and without clipping (curves in "
            "clipping.png). A diverged run stopped at a NaN/Inf loss or gradient."))
    if sparse:
        tables.append(Table(
            "Sparsity / target-rate penalty", ["run", "recurrent rate (Hz)", "final NMSE"],
            [[name, m["firing_rate_hz"], m["nmse"]] for name, m in sparse],
            f"Same config with and without the penalty (target {c.target_rate_hz:g} Hz)."))
    tables.append(curve(history, [("step", "step"), ("loss", "train_loss"),
                                  ("NMSE", "train_nmse"), ("rate (Hz)", "train_rate_hz"),
                                  ("grad norm", "grad_norm_max")], max_rows=21))
    rd.write_report(f"Regression: {c.task}", __doc__, c, metrics, tables, figures)
