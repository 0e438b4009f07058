"""The spiking vision set-up (the ``vision`` app's, also the ``conversion`` app's direct
surrogate-gradient baseline): data as frames, encoders, the spiking CNN or MLP, the objective,
and accuracy with per-layer spike and synaptic-operation counts. ``c`` is any config with the
``vision`` app's fields."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset, TensorDataset

from ... import data as sgdata
from ... import losses, nn
from ...functional.readout import membrane
from ...train import ObjectiveOutput
from ..datasets import Data
from ..datasets import load_data as load_classification_data
from ..datasets import make_encoder as make_classification_encoder

__all__ = ["SetupFields", "PRESETS", "load_data", "batches", "make_encoder", "roll_signal", "ConvSpec", "plan",
           "build_model", "layer_costs", "n_params", "make_objective", "evaluate"]


@dataclass
class SetupFields:
    """The set-up's fields, shared by the configs of the apps that train it; ``None`` takes
    the dataset's value from :data:`PRESETS`."""

    epochs: Optional[int] = None    # training epochs (Adam, cosine LR over them); None: preset
    #: time steps per inference (nmnist: event frames per sample; unused by conversion,
    #: where steps and direct_steps set T); None: the dataset's preset
    n_steps: Optional[int] = None
    #: input coding: current (analog frame every step), rate, latency, or events (nmnist
    #: only); None: the dataset's preset
    encoder: Optional[str] = None
    #: arch=cnn: output channels of the first conv block (doubled after it when pool is not
    #: none); None: the dataset's preset
    channels: Optional[int] = None
    conv_layers: Optional[int] = None  # arch=cnn: number of conv blocks; None: preset
    #: arch=cnn: conv kernel size (+2 for the first block of a 1-D net), padding
    #: kernel_size // 2; None: the dataset's preset
    kernel_size: Optional[int] = None
    stride: Optional[int] = None    # arch=cnn: conv stride of every block; None: preset
    #: arch=cnn: pooling after each conv block (window and stride 2): none, max, avg or sum
    #: (sum: vision only); None: the dataset's preset
    pool: Optional[str] = None
    #: arch=mlp: LIF neurons in each of the two dense hidden layers; None: the dataset's preset
    hidden: Optional[int] = None
    #: batch norm on every spiking layer's currents: threshold (tdBN), per_step (BNTT) or
    #: none (then layers have a bias); None: the dataset's preset
    norm: Optional[str] = None
    tau_mem_ms: Optional[float] = None  # LIF membrane time constant in ms; None: preset
    tau_out_ms: Optional[float] = None  # LI readout time constant in ms; None: preset
    #: simulation step in ms (sets the LIF and LI decay per step); None: the dataset's preset
    dt_ms: Optional[float] = None
    #: surrogate derivative name (spikegrad.surrogate.names(), e.g. fast_sigmoid); None: preset
    surrogate: Optional[str] = None
    surrogate_beta: Optional[float] = None  # surrogate slope (> 0, larger is sharper); None: preset
    lr: Optional[float] = None      # Adam learning rate (cosine-annealed); None: preset
    weight_decay: Optional[float] = None  # Adam weight decay (L2); 0: off; None: preset
    batch_size: Optional[int] = None  # training batch size; None: the dataset's preset
    #: randomly roll training signals by up to this many positions (mnist1d only); 0: off;
    #: None: the dataset's preset
    augment_shift: Optional[int] = None
    #: train on at most this many samples (the first ones; nmnist: a seeded random subset);
    #: 0: all; None: the dataset's preset
    max_train: Optional[int] = None


#: Per-dataset values of the set-up's fields (the ``vision`` app's presets).
PRESETS: Dict[str, dict] = {
    # 1 x 40 -> 3 conv blocks of 32 (k5 s2 / k3 s2 / k3 s2, like the MNIST-1D paper's CNN),
    # tdBN, LIF -> 10 LI (max over T = 8 steps), 8.1k parameters; rolls of +-5 in training.
    # arch=mlp: 40 -> 64 -> 64 -> 10 with the same norm, neurons and budget, 7.6k parameters.
    "mnist1d": dict(epochs=30, n_steps=8, encoder="current", channels=32, conv_layers=3,
                    kernel_size=3, stride=2, pool="none", hidden=64, norm="threshold",
                    tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                    surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                    augment_shift=5, max_train=0),
    # 1 x 8 x 8 -> conv 16 (k3 p1) -> max pool 2 -> conv 32 -> max pool 2 -> 10 LI (6.1k
    # parameters); arch=mlp: 64 -> 48 -> 48 -> 10 (6.1k parameters).
    "digits": dict(epochs=15, n_steps=8, encoder="current", channels=16, conv_layers=2,
                   kernel_size=3, stride=1, pool="max", hidden=48, norm="threshold",
                   tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                   surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                   augment_shift=0, max_train=0),
    # 1 x 28 x 28 -> conv 16 (k3 p1) -> max pool 2 -> conv 32 -> max pool 2 -> 10 LI; MNIST
    # is not shipped: it is read from the IDX files the user downloaded (mnist_path)
    "mnist": dict(epochs=5, n_steps=8, encoder="current", channels=16, conv_layers=2,
                  kernel_size=3, stride=1, pool="max", hidden=128, norm="threshold",
                  tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                  surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=128,
                  augment_shift=0, max_train=0),
    # 2 x 34 x 34 event frames (T = 10 bins of each ~300 ms recording) -> conv 16 (k3 p1) ->
    # max pool 2 -> conv 32 -> max pool 2 -> 10 LI; read from the user's extracted N-MNIST
    # (nmnist_path), decoded and binned on access
    "nmnist": dict(epochs=5, n_steps=10, encoder="events", channels=16, conv_layers=2,
                   kernel_size=3, stride=1, pool="max", hidden=128, norm="threshold",
                   tau_mem_ms=10.0, tau_out_ms=10.0, dt_ms=1.0, surrogate="fast_sigmoid",
                   surrogate_beta=10.0, lr=1e-2, weight_decay=0.0, batch_size=64,
                   augment_shift=0, max_train=0),
}


# --- data ------------------------------------------------------------------------------------

def load_data(c) -> Data:
    """Samples shaped as one frame ``[N, 1, 40]``, ``[N, 1, 8, 8]`` or ``[N, 1, 28, 28]``
    (tensor datasets), or N-MNIST's ``(frames [T, 2, 34, 34], label)`` read on access."""
    if c.dataset == "nmnist":
        train, test = (sgdata.NMNISTDataset(c.nmnist_path, train=flag, n_steps=c.n_steps,
                                            binary=True) for flag in (True, False))
        if c.max_train and c.max_train < len(train):
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(c.seed))
            train = Subset(train, keep[: c.max_train].sort().values.tolist())
        return Data(train, None, test, tuple(test[0][0].shape[1:]), 10)
    if c.dataset == "mnist":
        s = sgdata.load_mnist_files(c.mnist_path)  # pixels / 255 in [0, 1]
        train, test = (TensorDataset(x.unsqueeze(1), y)
                       for x, y in ((s.x_train, s.y_train), (s.x_test, s.y_test)))
        if c.max_train:
            train = TensorDataset(*(t[: c.max_train] for t in train.tensors))
        return Data(train, None, test, tuple(train.tensors[0].shape[1:]), 10)
    data = load_classification_data(c)  # the classification app's splits and scaling
    shape = (1, 40) if c.dataset == "mnist1d" else (1, 8, 8)
    train, test = (TensorDataset(ds.tensors[0].reshape(-1, *shape), ds.tensors[1])
                   for ds in (data.train, data.test))
    return Data(train, None, test, shape, data.n_classes)


def batches(ds, batch_size: int):
    """``(x, y)`` batches of a test set in order: slices of a TensorDataset (frames
    ``[B, ...]``), or an event dataset's samples stacked time-major (``[T, B, ...]``)."""
    if isinstance(ds, TensorDataset):
        for i in range(0, len(ds), batch_size):
            yield tuple(t[i:i + batch_size] for t in ds.tensors)
    else:
        yield from DataLoader(ds, batch_size=batch_size, collate_fn=sgdata.time_major_collate)


def make_encoder(c):
    """``encode(x, generator) -> xs [T, B, ...]``; event frames arrive time-major already."""
    if c.encoder == "events":
        return lambda x, g=None: x
    return make_classification_encoder(c)


def roll_signal(x: Tensor, max_shift: int) -> Tensor:
    """:func:`spikegrad.data.random_roll` on ``[B, 1, L]``."""
    return sgdata.random_roll(x.flatten(1), max_shift).view_as(x)


# --- model -----------------------------------------------------------------------------------

def _lif(c):
    return lambda shape: nn.LIF(shape, tau_mem=c.tau_mem_ms * 1e-3, dt=c.dt_ms * 1e-3,
                                surrogate=c.surrogate, beta=c.surrogate_beta)


def _norm(c, n: int) -> List[torch.nn.Module]:
    if c.norm == "threshold":
        return [nn.ThresholdBatchNorm(n)]
    if c.norm == "per_step":
        return [nn.PerStepBatchNorm(n, c.n_steps)]
    return []


class ConvSpec(NamedTuple):
    """One conv block of :func:`plan`: conv (padding ``kernel_size // 2``) -> activation ->
    pooling (``pool``, window and stride 2, or ``"none"``)."""

    out_channels: int
    kernel_size: int
    stride: int
    pool: str


def plan(c, in_shape) -> Tuple[List[ConvSpec], List[int]]:
    """The architecture of ``c`` for samples ``in_shape``, whatever the neurons: the conv blocks
    (``arch=cnn``: ``conv_layers`` of ``channels``, doubled after the first when pooling
    halves the maps; the first block of a 1-D net, which sees the raw signal, has a kernel
    2 wider, as in the MNIST-1D CNN) and the hidden dense widths (``arch=mlp``: two of
    ``hidden``). The spiking model (:func:`build_model`) and its ANN twin are built from it."""
    if c.arch != "cnn":
        return [], [c.hidden, c.hidden]
    convs = []
    for k in range(c.conv_layers):
        ks = c.kernel_size + 2 if k == 0 and len(in_shape) == 2 else c.kernel_size
        convs.append(ConvSpec(c.channels * (2 if k and c.pool != "none" else 1), ks, c.stride,
                              c.pool))
    return convs, []


def build_model(c, in_shape, n_classes: int) -> nn.Sequential:
    """The spiking CNN (``arch=cnn``) or MLP (``arch=mlp``) of :func:`plan`, with batch norm
    ``c.norm`` on every spiking layer's currents and an LI readout."""
    layers: List[torch.nn.Module] = []
    shape = tuple(in_shape)
    convs, dense = plan(c, shape)
    for spec in convs:
        block = nn.spiking_conv(shape, spec.out_channels, spec.kernel_size, stride=spec.stride,
                                padding=spec.kernel_size // 2, norm=c.norm, n_steps=c.n_steps,
                                pool=spec.pool, neuron=_lif(c))
        layers += block.layers
        shape = block.out_shape
    layers.append(nn.Flatten())
    width = math.prod(shape)
    for hidden in dense:
        layers.append(nn.Linear(width, hidden, bias=c.norm == "none"))
        layers += _norm(c, hidden)
        layers.append(_lif(c)(hidden))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    layers.append(nn.LI(n_classes, tau_mem=c.tau_out_ms * 1e-3, dt=c.dt_ms * 1e-3,
                        scale_input=True))
    return nn.Sequential(*layers)


def _synaptic(m) -> bool:
    return isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))


def layer_costs(model: nn.Sequential, xs: Tensor, outs: Optional[List[Tensor]] = None
                ) -> List[dict]:
    """Per synaptic layer of ``model`` on ``xs [T, B, ...]``: synaptic operations per inference
    (from the measured input events) and the ANN's MACs; and spikes per inference of every
    spiking layer. Averages over the batch. ``outs``: ``model.forward_all(xs)[0]`` if at hand."""
    if outs is None:
        with torch.no_grad():
            outs, _ = model.forward_all(xs)
    rows, inp = [], xs
    for i, m in enumerate(model.layers):
        if _synaptic(m):
            fan = nn.fan_out(m, inp.shape[2:])
            rows.append({"layer": f"{i}:{type(m).__name__}", "kind": "synapses",
                         "input_binary": bool(((inp == 0) | (inp == 1)).all()),
                         "synops": float(nn.synaptic_ops(m, inp, fan).mean()),
                         "ann_macs": int(fan.sum())})
        elif isinstance(m, nn.LIF):
            rows.append({"layer": f"{i}:LIF{tuple(outs[i].shape[2:])}", "kind": "neurons",
                         "spikes": float(outs[i].sum() / outs[i].shape[1]),
                         "neurons": outs[i][0, 0].numel()})
        inp = outs[i]
    return rows


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- training and evaluation -----------------------------------------------------------------

def make_objective(c, encode):
    def objective(model, x, y, state):
        if c.augment_shift:
            x = roll_signal(x, c.augment_shift)
        out, state = model(encode(x), state)
        loss = losses.membrane_cross_entropy(out, y, "max")
        acc = (membrane(out, "max").argmax(1) == y).float().mean().item()
        return ObjectiveOutput(loss, state, {"accuracy": acc, "n": len(y)})
    return objective


@torch.no_grad()
def evaluate(model: nn.Sequential, ds: TensorDataset, encode, seed: int,
             batch_size: int = 500) -> Dict[str, float]:
    """Accuracy, and per inference: spikes of each LIF layer, synaptic operations of each
    synaptic layer and the ANN MACs (encoder noise from a fixed generator).

    Totals: ``synops`` (all layers), ``synops_spiking`` and ``ann_macs_spiking`` (layers fed by
    binary spikes: accumulates only), ``ann_macs`` (the whole network as an ANN)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, n, rows = 0, 0, None
    for x, y in batches(ds, batch_size):
        xs = encode(x, g)
        outs, _ = model.forward_all(xs)
        correct += int((membrane(outs[-1], "max").argmax(1) == y).sum())
        batch = layer_costs(model, xs, outs)
        for row in batch:  # batch means -> sums over samples
            for key in ("synops", "spikes"):
                if key in row:
                    row[key] *= len(y)
        if rows is None:
            rows = batch
        else:
            for acc, row in zip(rows, batch):
                for key in ("synops", "spikes"):
                    if key in row:
                        acc[key] += row[key]
                if "input_binary" in row:
                    acc["input_binary"] = acc["input_binary"] and row["input_binary"]
        n += len(y)
    m: Dict[str, float] = {"accuracy": correct / n}
    totals = dict(synops=0.0, spikes=0.0, ann_macs=0.0, synops_spiking=0.0, ann_macs_spiking=0.0)
    for row in rows:
        for key in ("synops", "spikes", "ann_macs"):
            if key in row:
                v = row[key] if key == "ann_macs" else row[key] / n
                m[f"{key}/{row['layer']}"] = v
                totals[key] += v
        if row.get("input_binary"):
            totals["synops_spiking"] += row["synops"] / n
            totals["ann_macs_spiking"] += row["ann_macs"]
    m.update(totals)
    return m
