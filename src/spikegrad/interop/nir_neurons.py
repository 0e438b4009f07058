"""spikegrad's LIF, IF and LI neurons <-> NIR's neuron nodes (see :mod:`spikegrad.interop`).

Export: one node per layer (``LIF``, ``CubaLIF``, ``IF``, ``LI``, ``CubaLI``, ``I``), or for
``reset="none"`` a leaky node followed by a ``Threshold``. Import: the reverse, with an input gain
that is neither 1 nor ``1 - a`` (``scale_input``) handed back to the caller to fold into the
preceding weights.
"""

from __future__ import annotations

import math
import warnings
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .. import nn as snn
from .. import surrogate
from ..functional import BACKENDS
from .discretisation import (decay_of_tau, elementwise, gain_of_r, logit_float32, r_of_gain,
                             softplus_inverse_float32, tau_of_decay)
from .nir_meta import read_hints, require_nir, write_hints

# a per-step input gain within this relative distance of 1 (or of 1 - a) is taken as exactly
# that: graphs written in float32 (snnTorch, Norse) carry gains of 1 +- a few 1e-7
GAIN_RTOL = 1e-5

NEURON_MODULES = (snn.LIF, snn.LI)  # IF is an LIF


# --- export --------------------------------------------------------------------------------

def _array(value, shape: tuple) -> np.ndarray:
    """A constant (float, 0-dim or per-neuron tensor) as a float64 array of ``shape``."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().double().numpy()
    return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()


def check_exportable(m, where: str) -> None:
    """Raise for a neuron module that NIR cannot express (named by ``where``)."""
    if isinstance(m, snn.ALIF):
        raise ValueError(f"{where}: NIR has no adaptive neuron (threshold adaptation, "
                         "refractoriness); export an LIF, or keep the model in spikegrad")
    if not isinstance(m, NEURON_MODULES):
        raise ValueError(f"{where}: {type(m).__name__} has no NIR node (NIR 1.0 has LIF, "
                         "CubaLIF, IF, LI, CubaLI and I neurons); the exportable spikegrad "
                         "neurons are LIF, IF and LI")
    if isinstance(m, snn.LIF) and m.v_init != 0.0:
        raise ValueError(f"{where}: v_init={m.v_init:g} starts the membrane at "
                         f"{m.v_init:g} * threshold, but a NIR graph starts from v = 0; set "
                         "the layer's v_init = 0 to export it")


def _leak_fields(a_mem, a_syn, gain, dt: float, disc: str, where: str) -> Tuple[str, dict]:
    """The leaky part of a node: its NIR type name (LI, CubaLI or I) and fields."""
    shape = a_mem.shape
    integrator = bool(np.all(a_mem == 1.0))
    if not integrator and bool(np.any(a_mem == 1.0)):
        raise ValueError(f"{where}: some neurons leak and some (tau_mem = inf) do not; NIR "
                         "needs one node type per layer")
    tau = lambda a: elementwise(lambda x: tau_of_decay(x, dt, disc), a)  # noqa: E731
    r = r_of_gain(gain, a_mem, dt)
    if integrator:
        if a_syn is not None:
            raise ValueError(f"{where}: a synaptic current (tau_syn) without membrane leak "
                             "(tau_mem = inf) has no NIR node (CubaLIF/CubaLI need a finite "
                             "tau_mem); use a finite tau_mem or drop tau_syn")
        return "I", dict(r=r)
    zeros = np.zeros(shape)
    if a_syn is None:
        return "LI", dict(tau=tau(a_mem), r=r, v_leak=zeros)
    # w_in = 1 / (1 - a_syn): NIR's current I_t = a_syn I + (1 - a_syn) w_in x_t is then
    # spikegrad's i_t = a_syn i + x_t itself (snnTorch's w_in = tau_syn / dt, in Euler terms)
    return "CubaLI", dict(tau_syn=tau(a_syn), tau_mem=tau(a_mem), r=r, v_leak=zeros,
                          w_in=1.0 / (1.0 - a_syn))


_SPIKING = {"I": "IF", "LI": "LIF", "CubaLI": "CubaLIF"}


def _reset_value(m, shape: tuple, approximate_reset: bool, where: str) -> np.ndarray:
    if m.reset == "to_value" or (m.reset == "subtract" and approximate_reset):
        return _array(m.v_reset, shape)
    raise ValueError(
        f"{where}: reset={m.reset!r} has no NIR equivalent (NIR's LIF, CubaLIF and IF set the "
        "membrane to v_reset after a spike). Fine-tune the layer with reset='to_value' "
        "(v_reset=0.0 is what snnTorch's and Norse's importers assume), or pass "
        "to_nir(..., approximate_reset=True) to export it as a reset to v_reset anyway "
        "(spikes then differ wherever the membrane overshoots the threshold)")


def export_neuron(m, dt: float, disc: str, approximate_reset: bool, where: str
                  ) -> List[Tuple[str, object]]:
    """``[(kind, node)]``: the NIR node(s) of neuron module ``m`` for steps of ``dt``."""
    nir = require_nir()
    check_exportable(m, where)
    shape = tuple(m.features)
    a_mem = _array(m.decay_mem(), shape)
    a_syn = None if m.decay_syn is None else _array(m.decay_syn(), shape)
    gain = 1.0 - a_mem if m.scale_input else np.ones(shape)
    kind, fields = _leak_fields(a_mem, a_syn, gain, dt, disc, where)
    hints = dict(layer=type(m).__name__, learn_tau=m.decay_mem.learn, backend=m.backend)
    if isinstance(m, snn.LI):
        return [(kind.lower(), write_hints(getattr(nir, kind)(**fields), **hints))]
    theta = _array(m.threshold(), shape)
    hints.update(learn_threshold=m.threshold.learn, learn_reset=m.reset_potential.learn,
                 detach_reset=m.detach_reset, surrogate=m.surrogate.name,
                 surrogate_beta=m.surrogate.beta)
    if m.reset == "none":  # a leaky node and a Threshold: no reset at all, exactly
        return [(kind.lower(), write_hints(getattr(nir, kind)(**fields), **hints)),
                ("threshold", nir.Threshold(threshold=theta))]
    kind = _SPIKING[kind]
    node = getattr(nir, kind)(v_threshold=theta,
                              v_reset=_reset_value(m, shape, approximate_reset, where), **fields)
    return [(kind.lower(), write_hints(node, **hints))]


# --- import --------------------------------------------------------------------------------

LEAKY_NODES = ("LI", "CubaLI", "I")
SPIKING_NODES = ("LIF", "CubaLIF", "IF")


def is_neuron(node) -> bool:
    return type(node).__name__ in LEAKY_NODES + SPIKING_NODES


def _fields(node, shape: Optional[tuple], where: str) -> Tuple[tuple, dict]:
    """The node's constants as float64 arrays broadcast to the layer's feature shape (from the
    graph where known, else from the node's own ``r``)."""
    names = {"tau": "tau_mem", "tau_mem": "tau_mem", "tau_syn": "tau_syn", "r": "r",
             "v_leak": "v_leak", "w_in": "w_in", "v_threshold": "v_threshold",
             "v_reset": "v_reset"}
    raw = {key: np.asarray(getattr(node, name), dtype=np.float64)
           for name, key in names.items() if getattr(node, name, None) is not None}
    features = tuple(int(s) for s in (shape if shape is not None else raw["r"].shape))
    if not features or math.prod(features) == 0:
        raise ValueError(f"{where}: cannot tell the number of neurons (its r has shape "
                         f"{raw['r'].shape} and no Input type precedes it); give the graph "
                         "an Input node with a type")
    try:
        return features, {k: np.broadcast_to(v, features).copy() for k, v in raw.items()}
    except ValueError:
        raise ValueError(f"{where}: its constants have shapes "
                         f"{ {k: v.shape for k, v in raw.items()} }, which do not fit the "
                         f"layer's {features} neurons") from None


def _decays(tau: np.ndarray, dt: float, disc: str, name: str, where: str) -> np.ndarray:
    if np.any(np.isnan(tau)) or np.any(tau <= 0):
        raise ValueError(f"{where}: {name} must be > 0, got {tau.ravel()[:5].tolist()}")
    a = elementwise(lambda t: decay_of_tau(t, dt, disc), tau)
    if np.any(a <= 0):
        raise ValueError(f"{where}: {name} = {tau.min():g} < dt = {dt:g}: a forward-Euler step "
                         "longer than the time constant overshoots (decay <= 0); import with "
                         "discretisation='exp' or a smaller dt")
    return a


def _input_gain(kind: str, f: dict, a_mem, a_syn, dt: float, where: str):
    """``(scale_input, gain to fold into the preceding weights or None)``."""
    if np.any(f.get("v_leak", 0.0) != 0.0):
        raise ValueError(f"{where}: v_leak = {f['v_leak'].ravel()[:3].tolist()}...: spikegrad's "
                         "neurons leak towards 0. Shift v_threshold and v_reset by -v_leak "
                         "and set v_leak = 0 (exact if the membrane starts at v_leak)")
    gain = gain_of_r(f["r"], a_mem, dt)
    if a_syn is not None:
        gain = gain * (1.0 - a_syn) * f["w_in"]
    if np.allclose(gain, 1.0, rtol=GAIN_RTOL, atol=0.0):
        return False, None
    if kind not in ("I", "IF") and np.allclose(gain, 1.0 - a_mem, rtol=GAIN_RTOL, atol=0.0):
        return True, None
    return False, gain


def _uniform(x: np.ndarray) -> bool:
    return bool(np.all(x == x.ravel()[0]))


class NeuronSpec(NamedTuple):
    """What a NIR neuron node says, in spikegrad's terms (arrays of the feature shape)."""

    features: tuple
    a_mem: np.ndarray             # membrane decay per step (1: no leak)
    a_syn: Optional[np.ndarray]   # synaptic decay, or None without a synaptic current
    scale_input: bool
    theta: Optional[np.ndarray]   # threshold; None for a non-spiking LI
    reset: Optional[str]          # "to_value" or "none" (a leaky node + Threshold)
    v_reset: Optional[np.ndarray]
    hints: dict


def read_neuron(nodes: Sequence, shape: Optional[tuple], dt: float, disc: str, where: str
                ) -> Tuple[NeuronSpec, Optional[np.ndarray]]:
    """The spec of ``[node]`` or ``[leaky node, Threshold]``, and the input gain to fold into
    the preceding weights (None if the neuron takes its input as it is)."""
    kind = type(nodes[0]).__name__
    features, f = _fields(nodes[0], shape, where)
    a_mem = (np.ones(features) if kind in ("I", "IF")
             else _decays(f["tau_mem"], dt, disc, "tau", where))
    a_syn = _decays(f["tau_syn"], dt, disc, "tau_syn", where) if "tau_syn" in f else None
    scale_input, fold = _input_gain(kind, f, a_mem, a_syn, dt, where)
    theta = reset = v_reset = None
    if len(nodes) == 2:
        theta = np.broadcast_to(np.asarray(nodes[1].threshold, np.float64), features).copy()
        reset = "none"
    elif kind in SPIKING_NODES:
        theta, reset, v_reset = f["v_threshold"], "to_value", f["v_reset"]
    if theta is not None and (np.any(theta <= 0) or not np.all(np.isfinite(theta))):
        raise ValueError(f"{where}: spikegrad's thresholds must be finite and > 0, got "
                         f"{theta.ravel()[:5].tolist()}; shift v_threshold and v_reset "
                         "together to make it so")
    spec = NeuronSpec(features, a_mem, a_syn, scale_input, theta, reset, v_reset,
                      read_hints(nodes[0]))
    return spec, fold


def _surrogate(hints: dict, where: str):
    name, beta = hints.get("surrogate", "fast_sigmoid"), hints.get("surrogate_beta")
    try:
        return surrogate.get(name, beta)
    except (TypeError, ValueError, KeyError):
        warnings.warn(f"{where}: surrogate {name!r} (beta={beta}) is not registered here; "
                      "using fast_sigmoid (the surrogate only shapes gradients)", stacklevel=5)
        return surrogate.get("fast_sigmoid")


def _tau(a: np.ndarray, dt: float) -> float:
    """A time constant for the module's constructor, spikegrad's ``exp(-dt/tau)`` of ``a``'s
    first element; :func:`build_neuron` then sets the decays themselves."""
    return tau_of_decay(float(a.ravel()[0]), dt, "exp")


def _spiking_kwargs(spec: NeuronSpec, where: str) -> Tuple[type, dict]:
    h = spec.hints
    learn_reset = spec.reset == "to_value" and (bool(h.get("learn_reset"))
                                                or not _uniform(spec.v_reset))
    integrator = bool(np.all(spec.a_mem == 1.0))
    # IF cannot train its reset potential; an LIF with tau_mem = inf is the same neuron
    cls = snn.IF if integrator and not learn_reset and h.get("layer") != "LIF" else snn.LIF
    kw = dict(threshold=float(spec.theta.ravel()[0]), reset=spec.reset,
              learn_threshold=bool(h.get("learn_threshold")) or not _uniform(spec.theta),
              detach_reset=bool(h.get("detach_reset", True)), surrogate=_surrogate(h, where))
    if spec.reset == "to_value":
        kw["v_reset"] = float(spec.v_reset.ravel()[0])
    if cls is snn.LIF:
        kw["learn_reset"] = learn_reset
    return cls, kw


def build_neuron(spec: NeuronSpec, dt: float, where: str) -> torch.nn.Module:
    """The spikegrad module of ``spec``, every constant set bit for bit (per-neuron constants
    as trainable per-neuron parameters: spikegrad keeps fixed constants as scalars)."""
    learn_tau = bool(spec.hints.get("learn_tau")) or not _uniform(spec.a_mem) or (
        spec.a_syn is not None and not _uniform(spec.a_syn))
    cls, kw = (snn.LI, {}) if spec.theta is None else _spiking_kwargs(spec, where)
    kw.update(dt=dt, tau_syn=None if spec.a_syn is None else _tau(spec.a_syn, dt))
    if spec.hints.get("backend") in BACKENDS:
        kw["backend"] = spec.hints["backend"]
    if cls is not snn.IF:
        kw.update(tau_mem=_tau(spec.a_mem, dt), learn_tau=learn_tau,
                  scale_input=spec.scale_input)
    try:
        m = cls(spec.features, **kw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: cannot build a spikegrad {cls.__name__}: {e}") from None
    with torch.no_grad():
        for decay, a in ((m.decay_mem, spec.a_mem), (m.decay_syn, spec.a_syn)):
            if decay is None:
                continue
            if decay.learn:
                decay.rho.copy_(logit_float32(a))
            else:  # exp(-dt/tau) cannot reach every decay (0.5, say); the buffer takes it as is
                decay.value.fill_(float(a.ravel()[0]))
        if spec.theta is not None and m.threshold.learn:
            m.threshold.rho.copy_(softplus_inverse_float32(spec.theta))
        if spec.v_reset is not None and m.reset_potential.learn:
            # the shared v_reset takes a uniform value, the per-neuron offset the rest; both
            # splits sum to the float32 constants exactly
            base = float(spec.v_reset.ravel()[0]) if _uniform(spec.v_reset) else 0.0
            m.reset_potential.v_reset.fill_(base)
            m.reset_potential.offset.copy_(torch.from_numpy(spec.v_reset - base))
    return m


def import_neuron(nodes: Sequence, shape: Optional[tuple], dt: float, disc: str, where: str
                  ) -> Tuple[torch.nn.Module, Optional[np.ndarray]]:
    """A spikegrad LIF, IF or LI for ``[node]`` or ``[leaky node, Threshold]``, and the input
    gain to fold into the preceding weights (or None)."""
    spec, fold = read_neuron(nodes, shape, dt, disc, where)
    return build_neuron(spec, dt, where), fold
