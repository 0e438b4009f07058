"""What both initialisers share: result types, argument checks, and how a Sequential's
synaptic layers pair with the neurons they feed."""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..base import StatefulModule
from ..layers import Dropout, Flatten
from ..neurons import LI, LeakyNeuron
from ..recurrent import Recurrent
from ..sequential import Sequential

Number = Union[float, Tensor]
SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# stateless modules that pass the synaptic current to the neuron unchanged in scale
TRANSPARENT = (Dropout, Flatten, nn.Flatten, nn.Dropout, nn.Identity)


class FluctuationInit(NamedTuple):
    """What :func:`fluctuation_driven_` drew, in membrane units per input spike.

    Floats, or per-neuron float64 tensors ``[N]`` where the neuron constants are per neuron.
    ``mu_w_rec`` / ``sigma_w_rec`` are None without a :class:`~spikegrad.nn.Recurrent`."""

    mu_w: Number
    sigma_w: Number
    mu_w_rec: Optional[Number] = None
    sigma_w_rec: Optional[Number] = None
    mu_u: Number = 0.0
    sigma_u: Number = 1.0


class LayerInit(NamedTuple):
    """One layer's outcome in :func:`data_driven_`.

    Attributes:
        layer: index of the synaptic layer in the Sequential; ``neuron``: of its neuron.
        target: ``"rate"`` (value in Hz), ``"sigma_u"`` (free-membrane std; the readout of
            a rate target and every layer of a membrane target).
        value: the statistic measured on the data after the rescaling.
        gain: the factor the layer's weights were multiplied by (for a membrane target with
            ``mu_u``, the factor on their centred part).
    """

    layer: int
    neuron: int
    target: str
    value: float
    gain: float


def number(x, name: str, *, positive: bool = False, allow_none: bool = False):
    """``x`` as a float (None passes with ``allow_none``), or a ValueError naming it."""
    if x is None and allow_none:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
            or (positive and x <= 0):
        want = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {want}, got {x!r}")
    return float(x)


def as64(x) -> Tensor:
    """A number or tensor as a detached float64 tensor."""
    return torch.as_tensor(x.detach() if isinstance(x, Tensor) else x, dtype=torch.float64)


def neuron_of(module: nn.Module) -> nn.Module:
    """The neuron a Recurrent wraps, else the module itself."""
    return module.neuron if isinstance(module, Recurrent) else module


def leak_of(neuron: nn.Module) -> dict:
    """The neuron's decays, input gain, threshold and dt as float64 tensors."""
    if not isinstance(neuron, LeakyNeuron):
        raise TypeError(
            f"fluctuation_driven_ reads tau_mem, tau_syn and dt from a leaky neuron (LI, LIF, "
            f"ALIF), got {type(neuron).__name__}; pass the constants yourself (neuron=None, "
            "tau_mem=..., dt=...) or use data_driven_, which works for any neuron")
    a_s = None if neuron.decay_syn is None else as64(neuron.decay_syn())
    theta = None if isinstance(neuron, LI) else as64(neuron.threshold())
    return dict(a_m=as64(neuron.decay_mem()), a_s=a_s, scale_input=neuron.scale_input,
                threshold=theta, dt=neuron.decay_mem.dt)


def targets(mu_u, sigma_u, xi, theta: Optional[Tensor]) -> Tuple[float, Tensor]:
    """``(mu_u, sigma_u)`` from the caller's ``sigma_u`` or ``xi`` and the threshold."""
    mu_u = number(mu_u, "mu_u")
    if sigma_u is not None and xi is not None:
        raise ValueError(f"pass sigma_u or xi, not both (got sigma_u={sigma_u!r}, xi={xi!r}); "
                         "xi = (threshold - mu_u) / sigma_u")
    if sigma_u is not None:
        return mu_u, as64(number(sigma_u, "sigma_u", positive=True))
    xi = 1.0 if xi is None else number(xi, "xi", positive=True)
    if theta is None:
        raise ValueError("an LI neuron has no threshold, so xi does not define a std: pass "
                         "sigma_u (the readout membrane's std, e.g. 1.0)")
    if bool((theta <= mu_u).any()):
        raise ValueError(f"xi needs mu_u below the threshold, got mu_u={mu_u} >= threshold "
                         f"{theta.flatten()[:3].tolist()}; pass sigma_u instead")
    return mu_u, (theta - mu_u) / xi


def synapse_neuron_pairs(net: Sequential) -> List[Tuple[int, int]]:
    """``(synaptic layer index, index of the neuron it feeds)`` in order; a synaptic layer
    whose current passes through anything but Flatten/Dropout to reach a neuron is an
    error (its scale would not be the one measured or computed)."""
    pairs, layers = [], list(net.layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, SYNAPTIC):
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], TRANSPARENT):
            j += 1
        if j == len(layers):
            continue  # an output projection with no neuron: nothing defines its target
        if not isinstance(layers[j], StatefulModule):
            raise ValueError(
                f"layer {i} ({type(layer).__name__}) reaches a neuron only through layer {j} "
                f"({type(layers[j]).__name__}), which rescales its current; initialise "
                "that pair yourself (fluctuation_driven_(layer, neuron)) or put the "
                "neuron directly after the synaptic layer")
        pairs.append((i, j))
    if not pairs:
        raise ValueError("the Sequential has no synaptic layer (Linear/Conv) followed by a "
                         "neuron; nothing to initialise")
    return pairs
