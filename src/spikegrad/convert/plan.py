"""What :func:`~spikegrad.convert.convert` accepts: the ANN read into a checked list of layers.

The ANN is a ``torch.nn.Sequential`` of hidden blocks ``weight layer -> (BatchNorm) ->
(pooling) -> activation -> (pooling, Flatten, Dropout)`` and an output block ``weight layer
-> (AvgPool, Flatten, Dropout)`` without an activation. BatchNorms are folded into their
weight layer, Dropouts dropped, and a MaxPool between a weight layer and its activation is
moved after the activation (exact: ReLU and QCFS are nondecreasing, so they commute with max),
where it pools spikes.
"""

from __future__ import annotations

from typing import List, NamedTuple

from torch import nn

from .batchnorm import BATCH_NORMS, WEIGHT_LAYERS, fold_into, misplaced
from .qcfs import QCFS

SUPPORTED = ("nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool1d/2d, nn.MaxPool1d/2d, nn.Flatten, "
             "nn.Dropout, nn.BatchNorm1d/2d directly after a Linear/Conv, and nn.ReLU or "
             "spikegrad.convert.QCFS as activations")

ACTIVATIONS = (nn.ReLU, QCFS)
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_KINDS = ((WEIGHT_LAYERS, "weight"), (ACTIVATIONS, "activation"),
          ((nn.AvgPool1d, nn.AvgPool2d), "avgpool"), ((nn.MaxPool1d, nn.MaxPool2d), "maxpool"),
          ((nn.Flatten,), "flatten"))


class Layer(NamedTuple):
    """``index``: position in the user's ANN (for messages); ``kind``: ``"weight"``,
    ``"activation"``, ``"avgpool"``, ``"maxpool"`` or ``"flatten"``; ``module``: the torch
    module (a weight layer with its BatchNorm folded in)."""

    index: int
    kind: str
    module: nn.Module

    @property
    def name(self) -> str:
        return f"layer {self.index} ({type(self.module).__name__})"


def _classify(i: int, module: nn.Module) -> str:
    name = f"layer {i} ({type(module).__name__})"
    if type(module).__module__.startswith("spikegrad.nn"):
        raise TypeError(f"{name} is a spikegrad layer; convert takes an ANN of plain torch "
                        f"layers ({SUPPORTED}) and builds the spiking layers itself")
    kind = next((k for types, k in _KINDS if isinstance(module, types)), None)
    if kind is None:
        raise TypeError(f"{name} is not supported by ANN-to-SNN conversion; supported: "
                        f"{SUPPORTED}. Replace it (e.g. nn.Sigmoid or nn.Tanh by nn.ReLU) and "
                        "retrain")
    if kind == "maxpool" and module.return_indices:
        raise ValueError(f"{name}: return_indices=True is not supported; use return_indices="
                         "False")
    if kind == "flatten" and (module.start_dim, module.end_dim) != (1, -1):
        raise ValueError(f"{name}: only nn.Flatten() over all features (start_dim=1, "
                         f"end_dim=-1) is supported, got start_dim={module.start_dim}, "
                         f"end_dim={module.end_dim}")
    return kind


def _read(ann: nn.Sequential) -> List[Layer]:
    """Classify every layer, fold BatchNorms, drop Dropouts."""
    layers: List[Layer] = []
    for i, module in enumerate(ann):
        if isinstance(module, BATCH_NORMS):
            if not (layers and layers[-1].kind == "weight" and layers[-1].index == i - 1):
                raise misplaced(ann, i)
            folded = fold_into(layers[-1].module, module, f"layer {i} ({type(module).__name__})")
            layers[-1] = layers[-1]._replace(module=folded)
        elif not isinstance(module, DROPOUTS):
            layers.append(Layer(i, _classify(i, module), module))
    return layers


def read_ann(ann: nn.Sequential) -> List[Layer]:
    """The checked layers of ``ann`` in the order the SNN runs them.

    Raises:
        TypeError: ``ann`` is not an nn.Sequential, or has a layer type that does not convert.
        ValueError: a layer in a place where it does not convert (an activation on the input
        or right after another activation, a BatchNorm not after a weight layer, a MaxPool on
        the output layer's currents, no output layer). Each message names the layer's index
        and type.
    """
    if not isinstance(ann, nn.Sequential):
        raise TypeError(f"ann must be a torch.nn.Sequential of {SUPPORTED}; got "
                        f"{type(ann).__name__}")
    layers = _read(ann)
    if not any(layer.kind == "weight" for layer in layers):
        raise ValueError("ann has no nn.Linear or nn.Conv1d/2d layer: there is nothing to "
                         "convert")
    signal, last = "input", None  # what flows at this point: input, currents or spikes
    k = 0
    while k < len(layers):
        layer = layers[k]
        if layer.kind == "activation":
            if signal == "input":
                raise ValueError(f"{layer.name} acts on the analog input; a converted SNN "
                                 "takes its input as a current, so remove it (or put a weight "
                                 "layer before it)")
            if signal == "spikes":
                raise ValueError(f"{layer.name} follows the activation {last.name} with no "
                                 "weight layer in between; remove one of the two")
            signal, last = "spikes", layer
        elif layer.kind == "weight":
            signal = "current"
        elif layer.kind == "maxpool" and signal == "current":
            nxt = layers[k + 1] if k + 1 < len(layers) else None
            if nxt is None or nxt.kind != "activation":
                raise ValueError(
                    f"{layer.name} pools the currents of a weight layer without an activation "
                    "right after it; put the MaxPool directly before or after the activation "
                    "(max commutes with ReLU/QCFS), or use nn.AvgPool after the output layer")
            layers[k], layers[k + 1] = nxt, layer  # exact: the activation is nondecreasing
            continue  # read the activation in its new place
        k += 1
    if signal == "spikes":
        raise ValueError(f"ann ends with the activation {last.name}; conversion needs an "
                         "output layer after it (an nn.Linear or nn.Conv without activation, "
                         "e.g. nn.Linear(n_hidden, n_classes)) whose currents the SNN "
                         "accumulates")
    return layers
