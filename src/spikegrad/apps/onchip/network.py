"""The one network every method trains, ``n_in -> hidden LIF -> n_classes LIF`` with a
spike-count readout, with its two weight layers either float (:class:`spikegrad.nn.Linear`)
or analog crossbars (:class:`spikegrad.hardware.CrossbarLinear`); the arrays' devices; the
data and the evaluation."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ... import nn
from ...hardware import ConstantStep, CrossbarLinear, PCMNoise, PulsedDevice, SoftBounds
from ..datasets import Data, load_data, make_encoder
from .config import Config

__all__ = ["SCHEMES", "Data", "load_data", "make_encoder", "initial_weights", "device",
           "build_network", "weight_layers", "crossbars", "read_weight", "evaluate",
           "conductances"]

#: the crossbar update scheme of each array
SCHEMES = {"naive": "naive", "stochastic": "stochastic", "mixed": "mixed_precision",
           "pcm": "mixed_precision"}


def initial_weights(c: Config, n_in: int, n_classes: int) -> List[Tensor]:
    """The initial weights ``[out, in]`` of both layers, the same for every method:
    ``U(-g/sqrt(in), g/sqrt(in))`` with ``g = init_gain`` (1: the range of
    ``torch.nn.Linear``'s init), drawn from the seed."""
    g = torch.Generator().manual_seed(c.seed + 101)
    out = []
    for fan_in, fan_out in ((n_in, c.hidden), (c.hidden, n_classes)):
        bound = c.init_gain / math.sqrt(fan_in)
        out.append((torch.rand(fan_out, fan_in, generator=g, dtype=torch.float64) * 2 - 1)
                   .mul(bound).float())
    return out


def device(c: Config, array: str) -> Tuple[PulsedDevice, Optional[PCMNoise]]:
    """The device model (and inference noise) of the cross-points of ``array``.

    ``naive``/``stochastic``/``mixed``: :class:`~spikegrad.hardware.ConstantStep` with
    ``2**bits`` evenly spaced states in ``[-w_max, w_max]`` (one pulse moves one state).
    ``pcm``: :class:`~spikegrad.hardware.SoftBounds` with pulse size ``pcm_dw_min``, the
    pulse-to-pulse spread (``pcm_dw_min_std``) and device-to-device spreads of pulse size
    (``pcm_dw_min_dtod``), up/down asymmetry (0.05) and bounds (0.1) of aihwkit's
    ``PCMPresetDevice``, and :class:`~spikegrad.hardware.PCMNoise` (programming noise, drift,
    1/f read noise).
    """
    if array == "pcm":
        return SoftBounds(dw_min=c.pcm_dw_min, w_max=c.w_max, dw_min_dtod=c.pcm_dw_min_dtod,
                          up_down_dtod=0.05, w_max_dtod=0.1, w_min_dtod=0.1,
                          dw_min_std=c.pcm_dw_min_std), PCMNoise()
    return ConstantStep(n_states=2 ** c.bits, w_max=c.w_max), None


def _lif(c: Config, n: int, surrogate: str) -> nn.LIF:
    beta = c.surrogate_beta if surrogate == "fast_sigmoid" else None
    return nn.LIF(n, tau_mem=c.tau_mem_ms * 1e-3, dt=c.dt_ms * 1e-3, surrogate=surrogate,
                  beta=beta)


def build_network(c: Config, weights: List[Tensor], surrogate: str, array: str = "fp32",
                  layer_devices: Optional[List[PulsedDevice]] = None) -> nn.Sequential:
    """``Sequential(W1, LIF, W2, LIF)`` with the given initial ``weights``: float layers for
    ``array="fp32"``, else crossbars of ``device(c, array)`` (or of ``layer_devices``, one
    per layer) programmed with them (snapped to the device states, with PCM programming
    noise) and their counters zeroed. Each crossbar draws its devices and noise from its own
    generator, seeded from ``c.seed`` and the layer."""
    layers: List[torch.nn.Module] = []
    for k, w in enumerate(weights):
        n_out, n_in = w.shape
        if array == "fp32":
            layer = nn.Linear(n_in, n_out, bias=False)
            with torch.no_grad():
                layer.weight.copy_(w)
        else:
            dev, noise = device(c, array)
            if layer_devices is not None:
                dev = layer_devices[k]
            gen = torch.Generator().manual_seed(c.seed * 1000 + 7 + k)
            layer = CrossbarLinear(n_in, n_out, device=dev, noise=noise, generator=gen)
            layer.program(w)
            layer.reset_counters()
        layers += [layer, _lif(c, n_out, surrogate)]
    return nn.Sequential(*layers)


def weight_layers(model: nn.Sequential) -> List[torch.nn.Module]:
    """The two weight layers (``Linear`` or ``CrossbarLinear``)."""
    return [model.layers[0], model.layers[2]]


def crossbars(model: nn.Sequential) -> List[CrossbarLinear]:
    return [m for m in weight_layers(model) if isinstance(m, CrossbarLinear)]


def read_weight(layer: torch.nn.Module) -> Tensor:
    """The weights ``[out, in]`` a layer applies now (a crossbar's as read)."""
    return layer.weights() if isinstance(layer, CrossbarLinear) else layer.weight.detach()


@torch.no_grad()
def evaluate(model: nn.Sequential, ds: TensorDataset, encode, seed: int,
             batch_size: int = 500) -> float:
    """Accuracy of the spike-count readout; the encoder draws from a fixed generator, so
    every evaluation sees the same spike trains."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    correct, n = 0, 0
    for i in range(0, len(ds), batch_size):
        x, y = (t[i:i + batch_size] for t in ds.tensors)
        out, _ = model(encode(x, g))                  # [T, B, C] output spikes
        correct += int((out.sum(0).argmax(1) == y).sum())
        n += len(y)
    return correct / n


def conductances(model: nn.Sequential) -> Dict[str, Tensor]:
    """``{"hidden", "output"}``: each crossbar's ``G+`` and ``G-`` (uS) as one flat tensor."""
    names = ("hidden", "output")
    return {name: torch.cat([g.flatten() for g in xbar.conductances()])
            for name, xbar in zip(names, weight_layers(model))
            if isinstance(xbar, CrossbarLinear)}
