"""Biophysical neurons trained with surrogate gradients: memory from adaptation and dendrites.

Methods, in the order they run:

1. **Cue accumulation** (Bellec et al. 2020, e-prop tutorial set-up; ``spikegrad.data.cue``):
   40 input channels (left, right, recall, noise), 7 cues of 100 ms every 150 ms, a delay,
   a 150 ms recall cue; the label is the side with more cues. Network: 40 -> 100 recurrent
   neurons -> 2 leaky-integrator readouts, cross-entropy on the readout averaged over the
   recall window, plus a firing-rate penalty (spike counts above ``rate_high`` per neuron per
   trial). Models (``cue_models``): ``alif`` = 50 LIF + 50 ALIF (``tau_a`` = 2 s, per-neuron
   trainable ``tau_a`` and ``beta_a``, 5 ms absolute refractory period); ``lif`` = 100 plain
   LIF (same budget); ``lif_ref`` = 100 LIF with the 5 ms absolute period, a trainable relative
   refractory current and a trainable reset target ``v_reset + r``; ``dendritic`` = 100
   two-compartment neurons (a long-time-constant dendrite per neuron) with recurrence onto the
   dendrite.
2. **Delayed spiking XOR** (Zheng et al. 2024, DH-SNN): 20 channels, a 10-step pattern at rate
   0.2 or 0.6, background noise, a second pattern at the end; label = XOR of the two rates.
   Feed-forward networks 20 -> N -> 2 leaky-integrator readouts with a short time constant,
   cross-entropy on the readout averaged over the second pattern and the response steps.
   Models (``xor_models``): ``dendritic`` = neurons with ``xor_branches`` dendritic branches
   whose time constants are spread log-uniformly from ``xor_tau_dend_short`` to
   ``xor_tau_dend_long`` steps (trainable per branch, with trainable active/passive coupling
   and a thresholded dendritic non-linearity with its own surrogate) and a short-``tau`` LIF
   soma with a trainable reset target; ``lif`` = single-compartment LIF with the same short
   membrane time constant.
3. **Training**: :class:`spikegrad.train.Trainer`, Adam, gradient clipping, cosine learning
   rate, checkpoints per experiment; every model is evaluated once on its held-out test set.
4. **Reports**: accuracy and spikes per neuron for every model, the distributions of the
   learned neuron parameters (adaptation time constants and strengths, refractory currents,
   reset offsets, dendritic time constants and couplings), and example membrane / adaptive
   threshold / dendrite traces.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from .. import functional as F
from .. import losses, nn
from .. import surrogate as _surrogate
from ..data.cue import cue_accumulation, delayed_xor
from ..surrogate import Surrogate
from ..train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ..train.log import loggers_for
from ..train.progress import Progress
from .config import ConfigError
from .report import Result, RunDir, epoch_curve

TASKS = ("cue", "xor")
CUE_MODELS = ("alif", "lif", "lif_ref", "dendritic")
XOR_MODELS = ("dendritic", "lif")


@dataclass
class Config:
    """Biophysics run. Time constants of the cue task in ms, of the XOR task in steps."""

    seed: int = 0
    deterministic: bool = True
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""
    tasks: str = "cue,xor"          # comma-separated subset of TASKS: cue, xor
    # cue accumulation (dt 5 ms by default to keep CPU runs short; the paper uses 1 ms)
    #: cue task: comma-separated subset of CUE_MODELS: alif, lif, lif_ref, dendritic
    cue_models: str = "alif,lif"
    cue_dt_ms: float = 5.0          # cue task: simulation step in ms
    cue_delay_ms: float = 500.0     # cue task: delay between the cue period and the recall in ms
    cue_train: int = 1000           # cue task: training trials
    cue_test: int = 500             # cue task: test trials
    cue_epochs: int = 8             # cue task: training epochs per model
    cue_batch: int = 64             # cue task: batch size
    cue_lr: float = 1e-2            # cue task: Adam learning rate (cosine-annealed)
    #: cue task: recurrent hidden neurons (even: the alif model is half LIF, half ALIF)
    cue_hidden: int = 100
    cue_tau_mem_ms: float = 20.0    # cue task: hidden membrane time constant in ms
    cue_tau_out_ms: float = 20.0    # cue task: leaky-integrator readout time constant in ms
    #: cue task: initial adaptation time constant of the ALIF neurons in ms (alif); also the
    #: dendrite's time constant of the dendritic model
    cue_tau_adapt_ms: float = 2000.0
    cue_beta_adapt: float = 1.0     # cue task: initial adaptation strength of the ALIF half (alif)
    cue_t_ref_ms: float = 5.0       # cue task: absolute refractory period in ms (alif, lif_ref)
    cue_in_gain: float = 3.0        # cue task: factor on the input weights after PyTorch's init
    # delayed spiking XOR (dt = 1 step)
    xor_models: str = "dendritic,lif"  # XOR task: comma-separated subset of XOR_MODELS
    xor_delay_steps: int = 50       # XOR task: steps between the two input patterns
    xor_noise_rate: float = 0.02    # XOR task: background spike probability per step and channel
    xor_train: int = 2000           # XOR task: training trials
    xor_test: int = 500             # XOR task: test trials
    xor_epochs: int = 10            # XOR task: training epochs per model
    xor_batch: int = 64             # XOR task: batch size
    xor_lr: float = 1e-2            # XOR task: Adam learning rate (cosine-annealed)
    xor_hidden: int = 32            # XOR task: hidden neurons
    xor_branches: int = 2           # XOR task: dendritic branches per neuron (dendritic)
    xor_tau_mem: float = 2.0        # XOR task: soma and readout time constant in steps
    xor_tau_dend_short: float = 2.0  # XOR task: shortest initial branch time constant, steps
    xor_tau_dend_long: float = 200.0  # XOR task: longest initial branch time constant, steps
    xor_in_gain: float = 1.0        # XOR task: factor on the input weights after PyTorch's init
    #: XOR task, dendritic: scale each branch's input by 1 - its decay (unit DC gain per branch)
    xor_scale_dend: bool = False
    # shared
    #: surrogate derivative name (spikegrad.surrogate.names(), e.g. fast_sigmoid)
    surrogate: str = "fast_sigmoid"
    surrogate_beta: float = 5.0     # surrogate slope (> 0, larger is sharper)
    #: factor on the surrogate derivative: dampening for long BPTT (Bellec et al. use 0.3)
    surrogate_scale: float = 1.0
    #: upper bound on each hidden neuron's spikes per trial (squared penalty); 0: off
    rate_high: float = 0.0
    rate_weight: float = 1e-3       # weight of the rate_high penalty in the loss; 0: off
    grad_clip: float = 1.0          # clip the gradient norm to this value; 0: no clipping


def _names(text: str, allowed, key: str) -> List[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"{key} must be a comma-separated subset of {', '.join(allowed)}; "
                          f"got {text!r}")
    return names


def validate(c: Config) -> Config:
    """``c`` checked (ConfigError naming the key); this app has no presets to fill."""
    _names(c.tasks, TASKS, "tasks")
    _names(c.cue_models, CUE_MODELS, "cue_models")
    _names(c.xor_models, XOR_MODELS, "xor_models")
    for key in ("cue_train", "cue_test", "cue_epochs", "cue_batch", "cue_hidden", "xor_train",
                "xor_test", "xor_epochs", "xor_batch", "xor_hidden", "xor_branches"):
        if getattr(c, key) < 1:
            raise ConfigError(f"{key} must be >= 1; got {getattr(c, key)}")
    for key in ("cue_dt_ms", "cue_lr", "cue_tau_mem_ms", "cue_tau_out_ms", "cue_tau_adapt_ms",
                "cue_beta_adapt", "cue_in_gain", "xor_lr", "xor_tau_mem", "xor_tau_dend_short",
                "xor_tau_dend_long", "xor_in_gain", "surrogate_beta", "surrogate_scale"):
        if not getattr(c, key) > 0:
            raise ConfigError(f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("cue_delay_ms", "cue_t_ref_ms", "xor_delay_steps", "xor_noise_rate",
                "rate_high", "rate_weight", "grad_clip"):
        if getattr(c, key) < 0:
            raise ConfigError(f"{key} must be >= 0; got {getattr(c, key)}")
    if c.cue_hidden % 2:
        raise ConfigError(f"cue_hidden must be even (half LIF, half ALIF); got {c.cue_hidden}")
    if c.xor_tau_dend_long < c.xor_tau_dend_short:
        raise ConfigError("xor_tau_dend_long must be >= xor_tau_dend_short")
    return c


# --- models ----------------------------------------------------------------------------------

class Net(nn.Sequential):
    """``Linear -> hidden neurons -> Linear -> LI``; ``hidden`` is layer 1."""

    @property
    def hidden(self):
        return self.layers[1]


def make_surrogate(c: Config) -> Surrogate:
    """The configured surrogate, its derivative (and primitive) multiplied by
    ``surrogate_scale``: the dampened pseudo-derivative that keeps BPTT over thousands of
    recurrent steps from exploding (Bellec et al. 2018 use 0.3)."""
    base = _surrogate.get(c.surrogate, c.surrogate_beta)
    k = float(c.surrogate_scale)
    if k == 1.0:
        return base
    return Surrogate(f"{base.name}*{k:g}", lambda x, b: k * base.derivative(x, b),
                     lambda x, b: k * base.primitive(x, b), base.beta)


def _linear(n_in: int, n_out: int, gain: float) -> nn.Linear:
    lin = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        lin.weight.mul_(gain)
    return lin


def build_cue_model(c: Config, kind: str) -> Net:
    dt = c.cue_dt_ms * 1e-3
    n = c.cue_hidden
    surr = make_surrogate(c)
    common = dict(tau_mem=c.cue_tau_mem_ms * 1e-3, dt=dt, surrogate=surr)
    t_ref = c.cue_t_ref_ms * 1e-3
    width = n
    if kind == "lif":
        hidden = nn.Recurrent(nn.LIF(n, **common), autapses=False)
    elif kind == "alif":
        beta = [0.0] * (n // 2) + [c.cue_beta_adapt] * (n - n // 2)
        hidden = nn.Recurrent(nn.ALIF(n, tau_adapt=c.cue_tau_adapt_ms * 1e-3, beta_adapt=beta,
                                      t_ref=t_ref, learn_adapt=True, **common),
                              autapses=False)
    elif kind == "lif_ref":
        hidden = nn.Recurrent(nn.ALIF(n, beta_adapt=0.0, t_ref=t_ref, ref_strength=0.2,
                                      tau_ref=4 * dt, learn_refractory=True, reset="to_value",
                                      learn_reset=True, **common), autapses=False)
    else:  # dendritic: one long dendrite per neuron, recurrence onto the dendrite
        hidden = nn.DendriticLIF(n, branches=1, tau_dend=c.cue_tau_adapt_ms * 1e-3, dt=dt,
                                 threshold_dend=0.5, passive=0.5, learn_dend=True,
                                 recurrent=True, scale_input=True,
                                 surrogate_dend=surr, tau_mem=c.cue_tau_mem_ms * 1e-3,
                                 surrogate=surr, reset="to_value", learn_reset=True)
        width = n
    in_width = (hidden.neuron if isinstance(hidden, nn.Recurrent) else hidden).features[0]
    return Net(_linear(40, in_width, c.cue_in_gain), hidden, _linear(width, 2, 1.0),
               nn.LI(2, tau_mem=c.cue_tau_out_ms * 1e-3, dt=dt))


def _log_spaced(lo: float, hi: float, k: int) -> List[float]:
    if k == 1:
        return [hi]
    return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * j / (k - 1))
            for j in range(k)]


def build_xor_model(c: Config, kind: str) -> Net:
    n = c.xor_hidden
    surr = make_surrogate(c)
    common = dict(tau_mem=c.xor_tau_mem, dt=1.0, surrogate=surr)
    if kind == "lif":
        hidden = nn.LIF(n, **common)
    else:
        hidden = nn.DendriticLIF(n, branches=c.xor_branches,
                                 tau_dend=_log_spaced(c.xor_tau_dend_short, c.xor_tau_dend_long,
                                                      c.xor_branches),
                                 threshold_dend=0.5, coupling=1.0, passive=0.5,
                                 scale_input=c.xor_scale_dend, learn_dend=True,
                                 surrogate_dend=surr, reset="to_value", learn_reset=True,
                                 **common)
    return Net(_linear(20, hidden.features[0], c.xor_in_gain), hidden, _linear(n, 2, 1.0),
               nn.LI(2, tau_mem=c.xor_tau_mem, dt=1.0))


# --- data, objective, evaluation -------------------------------------------------------------

@dataclass
class Task:
    name: str
    train: TensorDataset
    test: TensorDataset
    window: int        # first step of the decision window
    T: int


def load_task(c: Config, name: str) -> Task:
    if name == "cue":
        kw = dict(dt_ms=c.cue_dt_ms, t_delay_ms=c.cue_delay_ms)
        tr = cue_accumulation(c.cue_train, seed=c.seed * 2 + 1, **kw)
        te = cue_accumulation(c.cue_test, seed=c.seed * 2 + 2, **kw)
        return Task(name, TensorDataset(tr.x, tr.y), TensorDataset(te.x, te.y),
                    tr.recall_start, tr.x.shape[1])
    kw = dict(delay_steps=c.xor_delay_steps, noise_rate=c.xor_noise_rate)
    tr = delayed_xor(c.xor_train, seed=c.seed * 2 + 1, **kw)
    te = delayed_xor(c.xor_test, seed=c.seed * 2 + 2, **kw)
    return Task(name, TensorDataset(tr.x, tr.y), TensorDataset(te.x, te.y),
                tr.response_start, tr.x.shape[1])


def _forward(model: Net, x: Tensor) -> Tuple[Tensor, Tensor]:
    """``x [B, T, C]`` -> ``(readout [T, B, 2], hidden spikes [T, B, N])``."""
    outs, _ = model.forward_all(x.transpose(0, 1))
    return outs[-1], outs[1]


def make_objective(c: Config, task: Task):
    def objective(model, x, y, state):
        out, spikes = _forward(model, x)
        loss = losses.membrane_cross_entropy(out[task.window:], y, "mean")
        if c.rate_high and c.rate_weight:
            loss = loss + c.rate_weight * losses.rate_band(spikes, high=c.rate_high)
        acc = (out[task.window:].mean(0).argmax(1) == y).float().mean().item()
        return ObjectiveOutput(loss, None, {"accuracy": acc, "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(model: Net, ds: TensorDataset, task: Task, batch: int = 250) -> Dict[str, float]:
    model.eval()
    correct, spikes, n = 0, 0.0, 0
    for i in range(0, len(ds), batch):
        x, y = (t[i:i + batch] for t in ds.tensors)
        out, z = _forward(model, x)
        correct += int((out[task.window:].mean(0).argmax(1) == y).sum())
        spikes += float(z.sum()) / z.shape[-1]
        n += len(y)
    model.train()
    return {"accuracy": correct / n, "spikes_per_neuron": spikes / n}


def learned_parameters(model: Net) -> Dict[str, Tensor]:
    """The trained neuron constants worth plotting, as flat tensors (physical units)."""
    h = model.hidden
    neuron = h.neuron if isinstance(h, nn.Recurrent) else h
    found: Dict[str, Tensor] = {}
    with torch.no_grad():
        if isinstance(neuron, nn.ALIF):
            mask = neuron.beta_adapt.mask.bool()
            if mask.any() and neuron.decay_adapt.learn:
                found["tau_adapt_s"] = neuron.decay_adapt.tau[mask]
                found["beta_adapt"] = neuron.beta_adapt()[mask]
            if neuron.ref_strength is not None:
                found["ref_strength"] = neuron.ref_strength().flatten()
                found["tau_ref_s"] = neuron.decay_ref.tau.flatten()
        soma = neuron.soma if isinstance(neuron, nn.DendriticLIF) else neuron
        if soma.reset_potential.learn:
            found["reset_offset"] = soma.reset_potential.offset.flatten().clone()
            found["v_reset"] = soma.reset_potential.v_reset.reshape(1).clone()
        if isinstance(neuron, nn.DendriticLIF):
            taus = neuron.decay_dend.tau
            for k in range(neuron.branches):
                found[f"tau_dend_{k}"] = taus[:, k].clone()
            found["coupling"] = neuron.coupling.flatten().clone()
            found["passive"] = neuron.passive.flatten().clone()
    return {k: v.float() for k, v in found.items()}


# --- run -------------------------------------------------------------------------------------

def _experiments(c: Config) -> List[Tuple[str, str]]:
    out = []
    for task in _names(c.tasks, TASKS, "tasks"):
        models = c.cue_models if task == "cue" else c.xor_models
        out += [(task, m) for m in _names(models, CUE_MODELS if task == "cue" else XOR_MODELS,
                                          f"{task}_models")]
    return out


def run(cfg: Config, out_dir: Path, resume: bool = False) -> Result:
    c = validate(cfg)
    rd = RunDir(out_dir)
    rd.write_config(c)
    start = time.perf_counter()
    metrics: Dict[str, float] = {}
    history: List[dict] = []
    trained = {}
    # one ETA for all the networks of the run
    rd.progress = Progress(sum(c.cue_epochs if t == "cue" else c.xor_epochs
                               for t, _ in _experiments(c)), "biophysics", enabled=c.progress)
    for task_name, kind in _experiments(c):
        seed_everything(c.seed, deterministic=c.deterministic)
        task = load_task(c, task_name)
        model = (build_cue_model if task_name == "cue" else build_xor_model)(c, kind)
        epochs = c.cue_epochs if task_name == "cue" else c.xor_epochs
        lr = c.cue_lr if task_name == "cue" else c.xor_lr
        batch = c.cue_batch if task_name == "cue" else c.xor_batch
        opt = make_optimizer("adam", model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        loader = DataLoader(task.train, batch_size=batch, shuffle=True,
                            generator=torch.Generator().manual_seed(c.seed))
        tag = f"{task_name}_{kind}"
        trainer = Trainer(model, opt, make_objective(c, task), scheduler=sched,
                          grad_clip=c.grad_clip or None,
                          evaluate=lambda m, t=task: {
                              "test_accuracy": evaluate(m, t.test, t)["accuracy"]},
                          log_path=rd.path / f"log_{tag}.jsonl",
                          loggers=loggers_for(c.log, rd.path / f"log_{tag}.jsonl"),
                          checkpoint_dir=rd.path / "checkpoints" / tag, keep_checkpoints=1,
                          progress=rd.progress)
        t0 = time.perf_counter()
        hist = trainer.fit(loader, epochs, resume="latest" if resume else None)
        test = evaluate(model, task.test, task)
        metrics[f"{tag}_test_accuracy"] = test["accuracy"]
        metrics[f"{tag}_train_accuracy"] = hist[-1]["train_accuracy"]
        metrics[f"{tag}_spikes_per_neuron"] = test["spikes_per_neuron"]
        metrics[f"{tag}_seconds"] = time.perf_counter() - t0
        for name, values in learned_parameters(model).items():
            metrics[f"{tag}_{name}_mean"] = float(values.mean())
            metrics[f"{tag}_{name}_std"] = float(values.std()) if values.numel() > 1 else 0.0
        history += [dict(r, experiment=tag) for r in hist]
        trained[tag] = (model, task)
    metrics["wall_seconds"] = time.perf_counter() - start
    rd.write_metrics(metrics)
    figures = _figures(c, trained, history, rd)
    rd.write_report("Biophysical neurons: adaptation, refractoriness, dendrites", __doc__, c,
                    metrics, [epoch_curve(history, [("model", "experiment")])], figures)
    return Result(metrics, history, rd.path)


# --- figures ---------------------------------------------------------------------------------

def _hidden_trace(model: Net, x: Tensor):
    """Per-step states of the hidden layer for one trial ``x [1, T, C]`` (stacked ``[T, ...]``)."""
    xs = model.layers[0](x.transpose(0, 1))
    h = model.hidden
    with torch.no_grad():
        if isinstance(h, nn.Recurrent):
            state = F.RecurrentState(h.neuron.initial_state(xs[0]), torch.zeros_like(xs[0]))
            zs, st = F.scan_trace(F.recurrent_step, xs, state, F.RecurrentParams(
                h.recurrent_weight(), type(h.neuron).step, h.neuron.params()))
            return zs, st.inner, h.neuron.params()
        if isinstance(h, nn.DendriticLIF) and h.weight is not None:
            p = h.params()
            state = F.RecurrentState(F.dendrite.initial_state(
                xs[0].unflatten(-1, (h.n, h.branches)), p), torch.zeros(1, h.n))
            zs, st = F.scan_trace(F.recurrent_step, xs, state,
                                  F.RecurrentParams(h.weight, F.dendrite.dendrite_update_flat, p))
            return zs, st.inner, p
        zs, st = h.trace(xs)
        return zs, st, h.params()


def _figures(c: Config, trained, history, rd: RunDir) -> List[str]:
    from .. import viz
    names = []
    for tag, (model, task) in trained.items():
        hist = [r for r in history if r["experiment"] == tag]
        viz.save_curves(rd.path / f"curves_{tag}.png", hist,
                        {"loss": ["train_loss"],
                         "accuracy": ["train_accuracy", "test_accuracy"]})
        names.append(f"curves_{tag}.png")
        x = task.test.tensors[0][:1]
        zs, st, p = _hidden_trace(model, x)
        dt = c.cue_dt_ms if tag.startswith("cue") else None     # the XOR task counts steps
        which = f"{tag}, test sample 0, label {int(task.test.tensors[1][0])}"
        viz.save_rasters(rd.path / f"raster_{tag}.png",
                         [(f"input ({which})", x[0].numpy()),
                          (f"hidden ({which})", zs[:, 0].numpy())], dt_ms=dt)
        names.append(f"raster_{tag}.png")
        traces, labels = [], []
        if isinstance(st, F.ALIFState):
            ap = p if isinstance(p, F.ALIFParams) else p.soma
            a_prev = torch.cat([torch.zeros_like(st.a[:1]), st.a[:-1]])
            thr = ap.lif.threshold + ap.beta_adapt * a_prev          # [T, 1, N]
            j = st.v.shape[-1] - 1                                    # an adaptive neuron
            traces += [st.v[:, 0, j], thr[:, 0, j] if thr.dim() == 3 else thr[:, 0]]
            labels += [f"v (neuron {j})", f"threshold A (neuron {j})"]
            traces += [st.v[:, 0, 0]]
            labels += ["v (neuron 0, LIF)"]
        elif isinstance(st, F.DendriteState):
            for k in range(st.d.shape[-1]):
                traces.append(st.d[:, 0, 0, k])
                labels.append(f"dendrite {k} (neuron 0)")
            traces.append(st.soma.v[:, 0, 0])
            labels.append("soma v (neuron 0)")
        else:
            traces.append(st.v[:, 0, 0])
            labels.append("v (neuron 0)")
        vs = torch.stack(traces, 1).numpy()
        viz.save_traces(rd.path / f"traces_{tag}.png", vs, labels,
                        f"{tag}: label {int(task.test.tensors[1][0])}", dt_ms=dt)
        names.append(f"traces_{tag}.png")
        params = learned_parameters(model)
        if params:
            _histograms(rd.path / f"params_{tag}.png", params, tag)
            names.append(f"params_{tag}.png")
    return names


def _histograms(path: Path, params: Dict[str, Tensor], title: str) -> None:
    from ..viz import pyplot
    plt = pyplot()
    fig, axes = plt.subplots(1, len(params), figsize=(3 * len(params), 2.6), squeeze=False)
    for ax, (name, values) in zip(axes[0], params.items()):
        ax.hist(values.numpy(), bins=20)
        ax.set_title(name, fontsize=8)
        # the cue task's time constants carry their unit (tau_adapt_s); the XOR network runs
        # with dt = 1, so its dendritic time constants are in steps; the rest are factors
        unit = ("s" if name.endswith("_s") else "steps" if name.startswith("tau_dend")
                else "dimensionless")
        ax.set_xlabel(f"learned value ({unit})", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
    fig.suptitle(f"learned parameters: {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
