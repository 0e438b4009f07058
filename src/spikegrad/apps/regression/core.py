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
   sparsity penalty). With truncated BPTT (``tbptt_k = K``) the gradient through the
   state is cut every ``K`` steps. ``tbptt_mode="whole"`` (default) runs one pass over the
   sequence with the cut made inside the kernels; ``"chunks"`` runs the chunks one by one,
   each adding its share ``K / T`` of both terms (rates over the chunk), so the summed loss
   is the full-sequence loss. The MSE gradients of the two are equal; ``K >= T`` is exactly
   full BPTT.
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
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ... import losses, nn
from ...data.patterns import noisy_signal_task, pattern_generation_task
from ...functional.leaky import lowpass
from ...train import Learner, ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ...train.log import loggers_for
from ...train.memory import allocator_peak_mb
from .config import Config, validate

__all__ = ["RegressionRSNN", "Trained", "make_task", "make_test_task", "build_model",
           "make_objective", "rate_penalty", "evaluate", "linear_baseline_nmse", "lr_schedule",
           "make_trainer", "LearnerFactory", "train", "measure_step_memory", "progress_bar"]

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
              surrogate=cfg.surrogate, beta=cfg.surrogate_beta, backend="auto",
              learn_tau=cfg.learn_neuron, learn_threshold=cfg.learn_neuron)
    neuron = (nn.LIF(cfg.hidden, **kw) if cfg.neuron == "lif" else
              nn.ALIF(cfg.hidden, tau_adapt=cfg.tau_adapt_ms * 1e-3, beta_adapt=cfg.beta_adapt,
                      learn_adapt=cfg.learn_neuron, **kw))
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
    k = cfg.tbptt_k if 0 < cfg.tbptt_k < n_steps and cfg.tbptt_mode == "chunks" else n_steps
    n_chunks = math.ceil(n_steps / k)  # calls per sequence (tbptt_mode=whole: one)

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
                   tbptt_mode=cfg.tbptt_mode,
                   evaluate=evaluate_fn, log_path=log_path,
                   loggers=() if log_path is None else loggers_for(cfg.log, log_path),
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
