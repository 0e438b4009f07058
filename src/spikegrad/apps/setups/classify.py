"""The spiking classifier set-up: config and presets, model, objective and evaluation, shared
by the ``classification`` app and the studies of other apps (``constraints``) that train the
same network. The classification app adds the run and its report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ... import data as sgdata
from ... import losses, nn
from ...functional.readout import membrane, spike_count
from ...train import ObjectiveOutput
from ..config import ConfigError
from ..datasets import Data, load_data, make_encoder

__all__ = ["DATASETS", "ENCODERS", "READOUTS", "INITS", "Config", "PRESETS", "validate",
           "build_model", "fluctuation_init", "spiking_layers", "scores",
           "make_objective", "evaluate", "Data", "load_data", "make_encoder"]


DATASETS = ("digits", "mnist1d", "randman", "shd")
ENCODERS = ("rate", "latency", "current", "spikes")
READOUTS = ("count", "max", "mean", "last")
# "torch": PyTorch's Linear init, the readout's weights times out_gain; "fluctuation":
# sg.nn.init.fluctuation_driven_ for every layer from the input's measured rate
INITS = ("torch", "fluctuation")


@dataclass
class Config:
    """Classification run. ``None`` fields take the dataset's preset (see ``PRESETS``)."""

    dataset: str = "digits"         # one of DATASETS: digits, mnist1d, randman, shd
    #: SHD training file (HDF5, e.g. shd_train.h5); needed for dataset=shd, never downloaded
    shd_path: str = ""
    #: SHD test file; "": hold out the last 20% of the training file as the test set
    shd_test_path: str = ""
    seed: int = 0
    deterministic: bool = True
    epochs: Optional[int] = None    # training epochs (cosine LR over them); None: preset
    n_steps: Optional[int] = None   # time steps per sample; None: the dataset's preset
    #: simulation step in ms (SHD: bin width, so n_steps * dt_ms is the time read); None: preset
    dt_ms: Optional[float] = None
    #: input coding, one of ENCODERS: rate, latency, current (analog data) or spikes
    #: (randman, shd); None: the dataset's preset
    encoder: Optional[str] = None
    hidden: Optional[int] = None    # LIF neurons per hidden layer; None: the dataset's preset
    layers: Optional[int] = None    # number of hidden LIF layers; None: the dataset's preset
    #: hidden layers get all-to-all recurrent weights (no autapses); None: preset
    recurrent: Optional[bool] = None
    bias: Optional[bool] = None     # Linear layers have a bias; None: the dataset's preset
    #: weight init, one of INITS: torch (readout times out_gain) or fluctuation; None: preset
    init: Optional[str] = None
    #: factor on the readout weights after PyTorch's init (init=torch only); None: preset
    out_gain: Optional[float] = None
    tau_mem_ms: Optional[float] = None  # hidden membrane time constant in ms; None: preset
    #: synaptic current time constant in ms (current-based LIF); 0: no synaptic filter
    tau_syn_ms: Optional[float] = None
    #: readout time constant in ms (output LIF for count, LI for max/mean/last); None: preset
    tau_out_ms: Optional[float] = None
    #: LIF reset after a spike: subtract (threshold), to_value (to 0) or none; None: preset
    reset: Optional[str] = None
    #: surrogate derivative name (spikegrad.surrogate.names(), e.g. fast_sigmoid); None: preset
    surrogate: Optional[str] = None
    surrogate_beta: Optional[float] = None  # surrogate slope (> 0, larger is sharper); None: preset
    #: class scores, one of READOUTS: count (output spike counts) or the readout membrane's
    #: max, mean or last value over time; None: the dataset's preset
    readout: Optional[str] = None
    #: count readout: logits = count_scale * spike counts in the cross-entropy; None: preset
    count_scale: Optional[float] = None
    #: dropout probability after each hidden layer, in [0, 1); 0: off; None: preset
    dropout: Optional[float] = None
    #: randomly roll training signals by up to this many positions (mnist1d only); 0: off;
    #: None: the dataset's preset
    augment_shift: Optional[int] = None
    #: optimizer: adam, adamw, sgd or rmsprop (train.OPTIMIZERS); None: the dataset's preset
    optimizer: Optional[str] = None
    lr: Optional[float] = None      # initial learning rate (cosine-annealed); None: preset
    weight_decay: Optional[float] = None  # optimizer weight decay; 0: off; None: preset
    #: clip the gradient norm to this value; 0: no clipping; None: the dataset's preset
    grad_clip: Optional[float] = None
    batch_size: Optional[int] = None  # training batch size; None: the dataset's preset
    #: lower bound on each hidden neuron's spike count per sample (squared penalty, times
    #: reg_weight); 0: off; None: the dataset's preset
    reg_low: Optional[float] = None
    #: upper bound on a hidden layer's mean spike count per neuron per sample (squared
    #: penalty, times reg_weight); 0: off; None: the dataset's preset
    reg_high: Optional[float] = None
    #: weight of the reg_low/reg_high activity penalties in the loss; 0: off; None: preset
    reg_weight: Optional[float] = None
    #: use only the first max_train training samples; 0: all; None: the dataset's preset
    max_train: Optional[int] = None
    progress: bool = True
    #: more formats of the training log beside log*.jsonl: csv, tensorboard (comma-separated)
    log: str = ""


PRESETS: Dict[str, dict] = {
    # 64 -> 128 LIF -> 10 LIF, rate-coded pixels, spike-count cross-entropy.
    "digits": dict(epochs=30, n_steps=25, dt_ms=1.0, encoder="rate", hidden=128, layers=1,
                   recurrent=False, bias=True, init="torch", out_gain=1.0, tau_mem_ms=10.0,
                   tau_syn_ms=0.0,
                   tau_out_ms=10.0, reset="subtract", surrogate="fast_sigmoid", surrogate_beta=10.0,
                   readout="count", count_scale=0.5, dropout=0.0, augment_shift=0, optimizer="adam",
                   lr=2e-3,
                   weight_decay=0.0, grad_clip=0.0, batch_size=64, reg_low=0.0, reg_high=0.0,
                   reg_weight=0.0, max_train=0),
    # stork example 1 (Rossbroich, Gygax & Zenke 2022): 20 -> 128 LIF -> 10 LI, max-over-time
    # CE, SuperSpike beta 20, batch 250, tau 20/10/200 ms, dt 2 ms, reset to zero, activity
    # bounds (upper 4 spikes/neuron/trial), fluctuation-driven init as in stork (out_gain is
    # used only with --set init=torch).
    "randman": dict(epochs=60, n_steps=100, dt_ms=2.0, encoder="spikes", hidden=128, layers=1,
                    recurrent=False, bias=False, init="fluctuation", out_gain=10.0, tau_mem_ms=20.0,
                    tau_syn_ms=10.0, tau_out_ms=200.0,
                    reset="to_value", surrogate="fast_sigmoid", surrogate_beta=20.0,
                    readout="max", count_scale=1.0, dropout=0.0, augment_shift=0,
                    optimizer="adam", lr=5e-3,
                    weight_decay=0.0, grad_clip=0.0, batch_size=250, reg_low=0.01,
                    reg_high=4.0, reg_weight=1e-3, max_train=0),
    # 40 -> 512 LIF -> 512 LIF -> 10 LI (max over time); the 40 samples are injected as
    # currents at every step; training signals are randomly rolled by up to +-5 positions.
    "mnist1d": dict(epochs=40, n_steps=10, dt_ms=1.0, encoder="current", hidden=512, layers=2,
                    recurrent=False, bias=True, init="torch", out_gain=10.0, tau_mem_ms=10.0,
                    tau_syn_ms=0.0, tau_out_ms=10.0, reset="subtract",
                    surrogate="fast_sigmoid", surrogate_beta=10.0, readout="max",
                    count_scale=1.0, dropout=0.0, augment_shift=5, optimizer="adam", lr=2e-3,
                    weight_decay=0.0, grad_clip=0.0, batch_size=64, reg_low=0.0, reg_high=0.0,
                    reg_weight=0.0, max_train=0),
    # Cramer et al. 2022 recurrent baseline: 700 -> 256 recurrent LIF -> 20 LI (max).
    "shd": dict(epochs=30, n_steps=100, dt_ms=14.0, encoder="spikes", hidden=256, layers=1,
                recurrent=True, bias=False, init="torch", out_gain=10.0, tau_mem_ms=20.0,
                tau_syn_ms=10.0,
                tau_out_ms=20.0,
                reset="subtract", surrogate="fast_sigmoid", surrogate_beta=10.0,
                readout="max", count_scale=1.0, dropout=0.0, augment_shift=0, optimizer="adam",
                lr=2e-3, weight_decay=0.0, grad_clip=5.0, batch_size=64, reg_low=0.0, reg_high=10.0,
                reg_weight=1e-4, max_train=0),
}


def validate(cfg: Config) -> Config:
    """Fill ``None`` fields from the dataset preset, then validate."""
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}; got {cfg.dataset!r}")
    preset = PRESETS[cfg.dataset]
    if cfg.init == "fluctuation" and cfg.out_gain is not None:
        raise ConfigError("out_gain scales PyTorch's readout init (init=torch); init=fluctuation "
                          "draws the readout weights itself: drop out_gain or use init=torch")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in preset.items()
                                      if getattr(cfg, k) is None})
    _check(cfg)
    return cfg


def _check(c: Config) -> None:
    def need(ok: bool, msg: str):
        if not ok:
            raise ConfigError(msg)
    need(c.encoder in ENCODERS, f"encoder must be one of {', '.join(ENCODERS)}; got {c.encoder!r}")
    need(c.init in INITS, f"init must be one of {', '.join(INITS)}; got {c.init!r}")
    need(c.init != "fluctuation" or c.encoder != "current",
         "init=fluctuation sets weights for spike input of a measured rate; encoder=current "
         "injects analog currents: use init=torch (with out_gain) or a spiking encoder")
    need(c.readout in READOUTS, f"readout must be one of {', '.join(READOUTS)}; got {c.readout!r}")
    for key in ("epochs", "n_steps", "hidden", "layers", "batch_size"):
        need(getattr(c, key) >= 1, f"{key} must be >= 1; got {getattr(c, key)}")
    for key in ("dt_ms", "tau_mem_ms", "tau_out_ms", "lr", "surrogate_beta", "count_scale",
                "out_gain"):
        need(getattr(c, key) > 0, f"{key} must be > 0; got {getattr(c, key)}")
    for key in ("tau_syn_ms", "weight_decay", "grad_clip", "reg_low", "reg_high", "reg_weight",
                "max_train", "augment_shift"):
        need(getattr(c, key) >= 0, f"{key} must be >= 0 (0 switches it off); got {getattr(c, key)}")
    need(0 <= c.dropout < 1, f"dropout must be in [0, 1); got {c.dropout}")
    need(not c.augment_shift or c.dataset == "mnist1d",
         "augment_shift (random roll of a 1-D signal) applies to dataset=mnist1d only")
    need(c.dataset != "shd" or bool(c.shd_path),
         "dataset=shd needs --set shd_path=PATH/shd_train.h5 (download SHD from "
         "zenkelab.org; spikegrad never downloads at run time)")
    need((c.encoder == "spikes") == (c.dataset in ("randman", "shd")),
         f"encoder={c.encoder!r} does not fit dataset={c.dataset!r}: randman and shd are spike "
         "trains (encoder=spikes); digits and mnist1d are analog (rate, latency or current)")


# --- data ------------------------------------------------------------------------------------

# --- model -----------------------------------------------------------------------------------

def build_model(c: Config, n_in: int, n_classes: int, x_train: Optional[Tensor] = None,
                encode=None) -> nn.Sequential:
    """The network of ``c``; ``init=fluctuation`` needs the training inputs ``x_train``
    (as stored, ``[N, ...]``) and the encoder to measure the input rate from."""
    if c.init == "fluctuation" and (x_train is None or encode is None):
        raise ValueError("init=fluctuation draws the weights for the input's spike rate: pass "
                         "x_train and encode to build_model")
    common = dict(dt=c.dt_ms * 1e-3, surrogate=c.surrogate, beta=c.surrogate_beta,
                  reset=c.reset, tau_syn=c.tau_syn_ms * 1e-3 if c.tau_syn_ms else None)
    layers: List[torch.nn.Module] = []
    width = n_in
    for _ in range(c.layers):
        # a bias is a constant current: with slow synapses and membranes it is integrated
        # into tonic firing, so spike-timing data sets train without one
        layers.append(nn.Linear(width, c.hidden, bias=c.bias))
        lif = nn.LIF(c.hidden, tau_mem=c.tau_mem_ms * 1e-3, **common)
        layers.append(nn.Recurrent(lif, autapses=False) if c.recurrent else lif)
        if c.dropout:
            layers.append(nn.Dropout(c.dropout))
        width = c.hidden
    out = nn.Linear(width, n_classes, bias=c.bias)
    if c.init == "torch":
        with torch.no_grad():
            out.weight.mul_(c.out_gain)
    layers.append(out)
    if c.readout == "count":
        layers.append(nn.LIF(n_classes, tau_mem=c.tau_out_ms * 1e-3, **common))
    else:
        # unit DC gain: the readout membrane is a low-pass of its weighted input whatever
        # tau_out is, so logits start at a sane scale
        layers.append(nn.LI(n_classes, tau_mem=c.tau_out_ms * 1e-3, dt=c.dt_ms * 1e-3,
                            scale_input=True))
    model = nn.Sequential(*layers)
    if c.init == "fluctuation":
        fluctuation_init(c, model, x_train, encode)
    return model


def fluctuation_init(c: Config, model: nn.Sequential, x_train: Tensor, encode) -> float:
    """Draw every layer's weights with :func:`spikegrad.nn.init.fluctuation_driven_`
    (Rossbroich et al. 2022: centred, membrane std = threshold), for input spikes at the rate
    the encoder produces on (up to 1000) training samples; hidden layers assume the same
    rate. Uses the global RNG (seeded). Returns that rate in Hz."""
    with torch.no_grad():
        xs = encode(x_train[:1000], torch.Generator().manual_seed(c.seed))
    rate_hz = float(xs.float().mean()) / (c.dt_ms * 1e-3)
    if not 0 < rate_hz * c.dt_ms * 1e-3 < 1:
        raise ConfigError(f"init=fluctuation needs input spikes with a rate in (0, 1/dt); the "
                          f"encoded training inputs fire at {rate_hz:.3g} Hz: use init=torch")
    with torch.no_grad():
        nn.init.fluctuation_driven_(model, rate_hz=rate_hz)
    return rate_hz


def spiking_layers(model: nn.Sequential) -> List[int]:
    """Indices of hidden layers whose output is spikes."""
    return [i for i, m in enumerate(model.layers[:-1]) if isinstance(m, (nn.LIF, nn.Recurrent))]


def scores(c: Config, out: Tensor) -> Tensor:
    """Class scores ``[B, C]`` from the readout output ``[T, B, C]``."""
    return spike_count(out) if c.readout == "count" else membrane(out, c.readout)


def make_objective(c: Config, encode):
    def objective(model, x, y, state):
        if c.augment_shift:
            x = sgdata.random_roll(x, c.augment_shift)
        outs, state = model.forward_all(encode(x), state)
        out = outs[-1]
        if c.readout == "count":
            loss = losses.count_cross_entropy(out, y, c.count_scale)
        else:
            loss = losses.membrane_cross_entropy(out, y, c.readout)
        if c.reg_weight:
            for i in spiking_layers(model):
                if c.reg_low:
                    loss = loss + c.reg_weight * losses.rate_band(outs[i], low=c.reg_low)
                if c.reg_high:
                    loss = loss + c.reg_weight * losses.rate_band(outs[i], high=c.reg_high,
                                                                  per="layer")
        acc = (scores(c, out).argmax(1) == y).float().mean().item()
        return ObjectiveOutput(loss, state, {"accuracy": acc, "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(c: Config, model: nn.Sequential, ds: TensorDataset, encode, seed: int,
             batch_size: int = 500) -> Dict[str, float]:
    """Accuracy and mean spikes per hidden neuron per sample; the encoder's noise is drawn
    from a fixed generator so every evaluation sees the same spike trains."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, spikes, n = 0, 0.0, 0
    for i in range(0, len(ds), batch_size):
        x, y = (t[i:i + batch_size] for t in ds.tensors)
        outs, _ = model.forward_all(encode(x, g))
        correct += int((scores(c, outs[-1]).argmax(1) == y).sum())
        hidden = spiking_layers(model)
        spikes += sum(float(outs[j].sum()) / outs[j][0, 0].numel() for j in hidden) / max(len(hidden), 1)
        n += len(y)
    return {"accuracy": correct / n, "spikes_per_neuron": spikes / n}


# --- run -------------------------------------------------------------------------------------
