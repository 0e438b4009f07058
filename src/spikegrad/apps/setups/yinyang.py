"""The rate vs first-spike coding set-up on Yin-Yang (or Randman): config, data, encoders, the
network, both losses, evaluation and one training, shared by the ``coding`` app and the
studies of other apps (``constraints``). The coding app adds the run and its report."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Dict, List, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ... import data as sgdata
from ... import losses, nn
from ...data import yinyang as yy
from ...functional.readout import first_spike_time, spike_count
from ...train import ObjectiveOutput, Trainer, make_optimizer, seed_everything
from ...train.log import loggers_for
from ..config import ConfigError
from ..report import RunDir

__all__ = ["DATASETS", "LOSSES", "Config", "loss_list", "validate", "Data", "load_data",
           "make_encoder", "n_inputs", "build_model", "predict", "objective_loss",
           "constraint_terms", "make_objective", "evaluate", "error_profile",
           "param_groups", "train_one"]


DATASETS = ("yinyang", "randman")
LOSSES = ("rate", "temporal")


@dataclass
class Config:
    """Coding run: one network per entry of ``losses`` (comma-separated)."""

    dataset: str = "yinyang"        # one of DATASETS: yinyang or randman
    #: comma-separated subset of LOSSES (rate, temporal): one network trained per entry
    losses: str = "rate,temporal"
    seed: int = 0
    epochs: int = 30                # training epochs of each network (cosine LR over them)
    n_train: int = 5000             # yinyang: training samples (randman: see randman_samples)
    n_val: int = 1000               # yinyang: validation samples, evaluated every epoch
    n_test: int = 1000              # yinyang: test samples, evaluated after the last epoch
    n_steps: int = 60               # time steps per sample (also randman's sequence length)
    #: yinyang temporal code: input spikes fall in steps [0, n_code), x=1 at step 0 (<= n_steps)
    n_code: int = 20
    #: yinyang rate code: independent Bernoulli spike trains per input value
    rate_copies: int = 20
    hidden: int = 120               # hidden current-based LIF neurons
    tau_mem_ms: float = 10.0        # hidden membrane time constant in ms
    tau_syn_ms: float = 5.0         # hidden synaptic current time constant in ms; 0: none
    tau_out_ms: float = 10.0        # output LIF membrane time constant in ms
    dt_ms: float = 1.0              # simulation step in ms
    w_in_gain: float = 2.0          # factor on the input weights after PyTorch's init
    w_out_gain: float = 1.0         # factor on the readout weights after PyTorch's init
    #: surrogate derivative name (spikegrad.surrogate.names(), e.g. fast_sigmoid)
    surrogate: str = "fast_sigmoid"
    surrogate_beta: float = 10.0    # surrogate slope (> 0, larger is sharper)
    rate_on: float = 0.5            # rate loss: target rate of the label's output, spikes/step
    rate_off: float = 0.0           # rate loss: target rate of the other outputs, spikes/step
    #: temporal loss: soft-min temperature over first-spike times, in steps (smaller: harder)
    ttfs_tau: float = 2.0
    count_l1: float = 0.0           # weight of the L1 penalty on hidden spike counts; 0: off
    count_l2: float = 0.0           # weight of the L2 penalty on hidden spike counts; 0: off
    #: homeostasis: minimum spikes per hidden neuron per sample (with rate_low_weight); 0: off
    rate_low: float = 0.0
    rate_low_weight: float = 0.0    # weight of the rate_low penalty; 0: off
    threshold: float = 1.0          # firing threshold of the hidden and output LIF neurons
    learn_threshold: bool = False   # train per-neuron thresholds (hidden and output)
    #: Adam learning rate of the thresholds (learn_threshold); 0: the same as lr
    threshold_lr: float = 0.0
    lr: float = 5e-3                # Adam learning rate (cosine-annealed)
    grad_clip: float = 1.0          # clip the gradient norm to this value; 0: no clipping
    batch_size: int = 50            # training batch size
    randman_classes: int = 10       # randman: number of classes
    randman_units: int = 20         # randman: input units (spike trains per sample)
    randman_samples: int = 500      # randman: samples per class (split 80/10/10 in order)
    #: test samples on which the error signal |dL/du_t| at the output membranes is measured
    profile_samples: int = 500
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


def loss_list(c: Config) -> List[str]:
    names = [s.strip() for s in c.losses.split(",") if s.strip()]
    bad = [n for n in names if n not in LOSSES]
    if not names or bad:
        raise ConfigError(f"losses must be a comma-separated subset of {', '.join(LOSSES)}; "
                          f"got {c.losses!r}")
    return names


def validate(c: Config) -> Config:
    def need(ok, msg):
        if not ok:
            raise ConfigError(msg)
    need(c.dataset in DATASETS, f"dataset must be one of {', '.join(DATASETS)}; got {c.dataset!r}")
    loss_list(c)
    for k in ("epochs", "n_train", "n_val", "n_test", "n_steps", "hidden", "batch_size",
              "rate_copies", "n_code", "profile_samples"):
        need(getattr(c, k) >= 1, f"{k} must be >= 1; got {getattr(c, k)}")
    for k in ("tau_mem_ms", "tau_out_ms", "dt_ms", "lr", "surrogate_beta", "ttfs_tau",
              "w_in_gain", "w_out_gain"):
        need(getattr(c, k) > 0, f"{k} must be > 0; got {getattr(c, k)}")
    need(c.tau_syn_ms >= 0, f"tau_syn_ms must be >= 0 (0: no synaptic current); got {c.tau_syn_ms}")
    for k in ("count_l1", "count_l2", "rate_low", "rate_low_weight", "grad_clip",
              "threshold_lr"):
        need(getattr(c, k) >= 0, f"{k} must be >= 0 (0 switches it off); got {getattr(c, k)}")
    need(c.threshold > 0, f"threshold must be > 0; got {c.threshold}")
    need(c.n_code <= c.n_steps, f"n_code ({c.n_code}) must not exceed n_steps ({c.n_steps})")
    need(0 <= c.rate_off < c.rate_on <= 1, "need 0 <= rate_off < rate_on <= 1 (spikes per "
         f"step); got rate_off={c.rate_off}, rate_on={c.rate_on}")
    return c


# --- data ------------------------------------------------------------------------------------

@dataclass
class Data:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    n_classes: int


def load_data(c: Config) -> Data:
    if c.dataset == "yinyang":
        sets = [yy.make_yinyang(n, s) for n, s in ((c.n_train, 42), (c.n_val, 41), (c.n_test, 40))]
        return Data(*(TensorDataset(d.x, d.labels) for d in sets), n_classes=3)
    rm = sgdata.make_randman(n_classes=c.randman_classes, n_units=c.randman_units,
                             n_steps=c.n_steps, samples_per_class=c.randman_samples, seed=1)
    x = sgdata.randman_raster(rm)  # [N, T, U]
    tr, va, te = sgdata.split_in_order(len(x), (0.8, 0.1, 0.1))
    return Data(*(TensorDataset(x[i], rm.labels[i]) for i in (tr, va, te)),
                n_classes=c.randman_classes)


def make_encoder(c: Config, loss: str):
    """``encode(x [B, ...], generator) -> xs [T, B, F]`` for the network trained with ``loss``."""
    if c.dataset == "randman":
        return lambda x, g=None: x.transpose(0, 1)  # [B, T, U] -> [T, B, U]
    if loss == "rate":
        return lambda x, g=None: yy.encode_yinyang(x, c.n_steps, "rate", copies=c.rate_copies,
                                                   generator=g)
    return lambda x, g=None: yy.encode_yinyang(x, c.n_steps, "time", n_code=c.n_code)


def n_inputs(c: Config, loss: str) -> int:
    if c.dataset == "randman":
        return c.randman_units
    return 4 * c.rate_copies + 1 if loss == "rate" else 5


# --- model -----------------------------------------------------------------------------------

def build_model(c: Config, n_in: int, n_classes: int) -> nn.Sequential:
    common = dict(dt=c.dt_ms * 1e-3, surrogate=c.surrogate, beta=c.surrogate_beta,
                  threshold=c.threshold, learn_threshold=c.learn_threshold)
    # no bias currents: a constant current makes tonic firing that carries no information
    # and destroys a first-spike code; the Yin-Yang codes carry their own bias channel
    inp = nn.Linear(n_in, c.hidden, bias=False)
    with torch.no_grad():
        inp.weight.mul_(c.w_in_gain)
    hidden = nn.LIF(c.hidden, tau_mem=c.tau_mem_ms * 1e-3,
                    tau_syn=c.tau_syn_ms * 1e-3 if c.tau_syn_ms else None, **common)
    # voltage-based outputs: the gradient wrt their input current is dL/du_t (the profile)
    out = nn.LIF(n_classes, tau_mem=c.tau_out_ms * 1e-3, **common)
    readout = nn.Linear(c.hidden, n_classes, bias=False)
    with torch.no_grad():
        readout.weight.mul_(c.w_out_gain)
    return nn.Sequential(inp, hidden, readout, out)


def predict(loss: str, zs: Tensor) -> Tensor:
    """Class decision from output spikes ``[T, B, C]``: most spikes (rate) or earliest first
    spike, ties broken by more spikes (temporal)."""
    counts = spike_count(zs)
    if loss == "rate":
        return counts.argmax(1)
    T = zs.shape[0]
    return (-(T + 1) * first_spike_time(zs) + counts).argmax(1)


def objective_loss(c: Config, loss: str, outs: List[Tensor], y: Tensor) -> Tensor:
    zs = outs[-1]
    if loss == "rate":
        onehot = torch.nn.functional.one_hot(y, zs.shape[2]).to(zs.dtype)
        target = c.rate_off + (c.rate_on - c.rate_off) * onehot
        value = losses.spike_rate_loss(zs, target)
    else:
        value = losses.ttfs_cross_entropy(zs, y, tau=c.ttfs_tau)
    return value + losses.regularization(outs, constraint_terms(c))


def constraint_terms(c: Config) -> List[losses.Term]:
    """Activity penalties on the hidden layer (output 1 of ``forward_all``)."""
    terms = []
    if c.count_l1:
        terms.append(losses.Term(1, losses.spike_count_l1, c.count_l1))
    if c.count_l2:
        terms.append(losses.Term(1, losses.spike_count_l2, c.count_l2))
    if c.rate_low and c.rate_low_weight:
        # homeostasis: every hidden neuron should fire at least rate_low spikes per sample
        terms.append(losses.Term(1, functools.partial(losses.rate_band, low=c.rate_low),
                                 c.rate_low_weight))
    return terms


def make_objective(c: Config, loss: str, encode):
    def objective(model, x, y, state):
        outs, state = model.forward_all(encode(x), state)
        value = objective_loss(c, loss, outs, y)
        acc = predict(loss, outs[-1]) == y
        return ObjectiveOutput(value, state, {"accuracy": acc.float().mean().item(), "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(c: Config, loss: str, model, ds: TensorDataset, encode, seed: int,
             batch_size: int = 1000) -> Dict[str, float]:
    """Accuracy, spikes per sample (hidden + output) and mean first-output-spike step."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, spikes, latency, n = 0, 0.0, 0.0, 0
    for i in range(0, len(ds), batch_size):
        x, y = (t[i:i + batch_size] for t in ds.tensors)
        outs, _ = model.forward_all(encode(x, g))
        zs = outs[-1]
        correct += int((predict(loss, zs) == y).sum())
        spikes += float(outs[1].sum() + zs.sum())
        latency += float(first_spike_time(zs).min(1).values.sum())
        n += len(y)
    model.train()
    return {"accuracy": correct / n, "spikes_per_sample": spikes / n,
            "decision_latency_steps": latency / n}


def error_profile(c: Config, loss: str, model, ds: TensorDataset, encode, seed: int,
                  max_lag: int = 20) -> Tuple[Tensor, Tensor, Dict[str, float]]:
    """The error signal at the output membranes on ``profile_samples`` test samples.

    Returns ``|dL/du_t|`` averaged over samples and output neurons per step ``[T]``; the same
    aligned to each neuron's first spike, per lag ``t - t_first`` in ``[-max_lag, max_lag]``
    (neurons that fire; ``[2 max_lag + 1]``, NaN where no neuron has that lag); and the share
    of the total that arrives after each neuron's first spike.
    """
    x, y = (t[:c.profile_samples] for t in ds.tensors)
    outs, _ = model.forward_all(encode(x, torch.Generator().manual_seed(seed)))
    current = outs[-2]  # [T, B, C], input current of the output LIF
    current.retain_grad()
    # the readout loss alone: constraint terms act on the hidden layer, not on this signal
    objective_loss(dataclasses.replace(c, count_l1=0.0, count_l2=0.0, rate_low_weight=0.0),
                   loss, outs, y).backward()
    model.zero_grad(set_to_none=True)
    g = current.grad.detach().abs()  # [T, B, C]
    T = g.shape[0]
    t1 = first_spike_time(outs[-1].detach())  # [B, C]
    lag = torch.arange(T).view(T, 1, 1) - t1  # [T, B, C]
    after = lag > 0
    fired = (t1 < T).expand_as(g) & (lag.abs() <= max_lag)
    idx = (lag[fired] + max_lag).long()
    sums = torch.zeros(2 * max_lag + 1, dtype=g.dtype).index_add_(0, idx, g[fired])
    counts = torch.zeros(2 * max_lag + 1, dtype=g.dtype).index_add_(
        0, idx, torch.ones_like(g[fired]))
    aligned = sums / counts  # NaN where no neuron has the lag
    total = float(g.sum())
    share = {"grad_share_after_first_spike": float(g[after].sum()) / max(total, 1e-300),
             "grad_max_after_first_spike": float(g[after].max()) if bool(after.any()) else 0.0}
    return g.mean((1, 2)), aligned, share


# --- run -------------------------------------------------------------------------------------

def param_groups(c: Config, model) -> List[dict]:
    """Adam groups: thresholds at ``threshold_lr`` when it is set (intrinsic plasticity may
    run on its own time scale), everything else at ``lr``."""
    theta = [p for n, p in model.named_parameters() if n.endswith("threshold.rho")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("threshold.rho")]
    if not (c.threshold_lr and theta):
        return [{"params": rest + theta}]
    return [{"params": rest}, {"params": theta, "lr": c.threshold_lr}]


def train_one(c: Config, loss: str, data: Data, rd: RunDir, resume: bool):
    seed_everything(c.seed, deterministic=True)
    encode = make_encoder(c, loss)
    model = build_model(c, n_inputs(c, loss), data.n_classes)
    opt = make_optimizer("adam", param_groups(c, model), lr=c.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    loader = DataLoader(data.train, batch_size=c.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(c.seed))

    def eval_fn(m):
        r = evaluate(c, loss, m, data.val, encode, seed=c.seed + 1)
        return {"val_accuracy": r["accuracy"], "spikes_per_sample": r["spikes_per_sample"]}

    sub = rd.path / loss
    sub.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, opt, make_objective(c, loss, encode), scheduler=sched,
                      grad_clip=c.grad_clip or None, evaluate=eval_fn, log_path=sub / "log.jsonl",
                      loggers=loggers_for(c.log, sub / "log.jsonl"),
                      checkpoint_dir=sub / "checkpoints", keep_checkpoints=1,
                      progress=rd.progress if rd.progress is not None else c.progress)
    history = trainer.fit(loader, c.epochs, resume="latest" if resume else None)
    test = evaluate(c, loss, model, data.test, encode, seed=c.seed + 2)
    prof, aligned, share = error_profile(c, loss, model, data.test, encode, seed=c.seed + 2)
    return model, history, test, (prof, aligned), share
