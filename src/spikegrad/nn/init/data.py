"""Data-driven (LSUV-style) initialisation: rescale each layer until its neurons reach a
target on real inputs."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from ... import functional as F
from ..base import StatefulModule
from ..neurons import LI, LeakyNeuron
from ..recurrent import Recurrent
from ..sequential import Sequential
from .common import (LayerInit, leak_of, neuron_of, number, synapse_neuron_pairs, targets)

__all__ = ["data_driven_"]


def _run(layers, xs: Tensor) -> Tensor:
    for layer in layers:
        xs = layer(xs)[0] if isinstance(layer, StatefulModule) else layer(xs)
    return xs


def _free_membrane(neuron: nn.Module, current: Tensor) -> Tensor:
    """The neuron's membrane without firing or reset (a linear filter of its input)."""
    if not isinstance(neuron, LeakyNeuron):
        raise ValueError(f"target='membrane' needs a leaky neuron (LI, LIF, ALIF), whose free "
                         f"membrane is a linear filter; {type(neuron).__name__} is not: use "
                         "target='rate'")
    p = F.LIParams(decay_mem=neuron.decay_mem(),
                   decay_syn=None if neuron.decay_syn is None else neuron.decay_syn(),
                   scale_input=neuron.scale_input)
    return F.li_seq(current, None, p, backend="reference")[0]


def _scale_(layer: nn.Module, rec: Optional[Recurrent], gain: float) -> None:
    with torch.no_grad():
        layer.weight.mul_(gain)
        if layer.bias is not None:
            layer.bias.mul_(gain)
        if rec is not None:
            rec.weight.mul_(gain)


def _moments(u: Tensor) -> Tuple[float, float]:
    u = u.double()
    return float(u.mean()), float(u.var(unbiased=False))


def _membrane_(layer, neuron, h: Tensor, between, mu_u: float, sigma_u: float) -> float:
    """Exact for the free membrane, which is linear in the weights: with the centred
    weights ``W0`` and the all-ones weights giving membranes ``A`` and ``S``, the weights
    ``s W0 + d`` give ``s A + d S``; ``d`` fixes the mean, then ``s`` solves a quadratic."""
    from torch.func import functional_call
    w = layer.weight.detach()
    params = {"weight": w - w.mean()}
    if layer.bias is not None:
        params["bias"] = torch.zeros_like(layer.bias)
    cur = _run(between, functional_call(layer, params, (h,)))
    a = _free_membrane(neuron_of(neuron), cur).double()
    params["weight"] = torch.ones_like(w)
    s_ = _free_membrane(neuron_of(neuron), _run(between, functional_call(layer, params, (h,))))
    s_ = s_.double()
    ma, va = _moments(a)
    ms, vs = _moments(s_)
    if mu_u == 0.0 or ms == 0.0:
        if mu_u != 0.0:
            raise ValueError("the data carry no input to this layer (all-zero), so no weight "
                             "mean reaches mu_u; check xs or use mu_u=0")
        # d = -s ma / ms keeps the mean at 0 where the input has any, else leave it
        d1 = -ma / ms if ms != 0.0 else 0.0
        d0 = 0.0
    else:
        d0, d1 = mu_u / ms, -ma / ms
    cab = float(((a - ma) * (s_ - ms)).mean())
    # var(s A + (d0 + d1 s) S) = k2 s^2 + k1 s + k0 = sigma_u^2
    k2 = va + 2 * d1 * cab + d1 * d1 * vs
    k1 = 2 * (d0 * cab + d0 * d1 * vs)
    k0 = d0 * d0 * vs - sigma_u * sigma_u
    if k2 <= 0:
        raise ValueError("the data give this layer's neurons no input fluctuation (the "
                         "membrane does not vary); check xs")
    disc = k1 * k1 - 4 * k2 * k0
    if k0 > 0 or disc < 0:
        raise ValueError(f"mu_u={mu_u} is too large for sigma_u={sigma_u} on this data: the "
                         "weight mean that gives mu_u already makes the membrane fluctuate "
                         "more; lower mu_u or raise sigma_u")
    s = (-k1 + math.sqrt(disc)) / (2 * k2)
    with torch.no_grad():
        layer.weight.copy_((s * (w - w.mean()) + (d0 + d1 * s)).to(w))
        if layer.bias is not None:
            layer.bias.zero_()
    return s


def _rate_(layer, neuron, h: Tensor, between, rate_hz: float, dt: float, tol: float,
           max_iter: int, index: int) -> float:
    """Bisection on log(gain): the rate rises with the scale of zero-mean input."""
    rec = neuron if isinstance(neuron, Recurrent) else None

    def rate(g: float) -> float:
        _scale_(layer, rec, g)
        try:
            z = _run([*between, neuron], _run([layer], h))
        finally:
            _scale_(layer, rec, 1.0 / g)
        return float(z.double().mean()) / dt

    lo, hi, r, g = None, None, rate(1.0), 1.0
    for _ in range(max_iter):
        if abs(r / rate_hz - 1.0) <= tol:
            break
        if r < rate_hz:
            lo = g
        else:
            hi = g
        g = math.sqrt(lo * hi) if lo is not None and hi is not None else \
            (g * 4.0 if hi is None else g / 4.0)
        r = rate(g)
    else:
        raise ValueError(
            f"data_driven_: layer {index} ({type(layer).__name__}) did not reach "
            f"rate_hz={rate_hz:g} within {max_iter} steps (last: gain {g:.3g}, "
            f"{r:.3g} Hz); the data may give it too little input, or the rate may not be "
            "reachable by scaling (e.g. a refractory period caps it): check xs, raise "
            "max_iter or tol, or lower rate_hz")
    _scale_(layer, rec, g)
    return g


def _membrane_pair(net: Sequential, i: int, j: int, h: Tensor, targets: tuple) -> LayerInit:
    """Rescale layer ``i`` to the membrane targets ``(mu_u, sigma_u, xi, readout_sigma_u)``
    of neuron ``j``, given its input ``h``."""
    layer, neuron, between = net[i], net[j], list(net.layers[i + 1:j])
    inner = neuron_of(neuron)
    mu, sig = _membrane_targets(inner, *targets)
    gain = _membrane_(layer, neuron, h, between, mu, sig)
    u = _free_membrane(inner, _run(between, layer(h)))
    return LayerInit(i, j, "sigma_u", float(u.double().std(unbiased=False)), gain)


def _rate_pair(net: Sequential, i: int, j: int, h: Tensor, rate_hz: float, tol: float,
               max_iter: int) -> LayerInit:
    """Rescale layer ``i`` until neuron ``j`` fires at ``rate_hz``, given its input ``h``."""
    layer, neuron, between = net[i], net[j], list(net.layers[i + 1:j])
    dt = _dt(neuron_of(neuron))
    gain = _rate_(layer, neuron, h, between, rate_hz, dt, tol, max_iter, i)
    z = _run([*between, neuron], layer(h))
    return LayerInit(i, j, "rate", float(z.double().mean()) / dt, gain)


def data_driven_(net: Sequential, xs: Tensor, *, target: str = "rate",
                 rate_hz: Optional[float] = None, mu_u: float = 0.0,
                 sigma_u: Optional[float] = None, xi: Optional[float] = None,
                 readout_sigma_u: float = 1.0, bias: Optional[float] = 0.0,
                 tol: float = 0.05, max_iter: int = 40) -> List[LayerInit]:
    """Rescale each synaptic layer of ``net``, first to last, until its neurons reach a
    target on the data ``xs`` (LSUV-style; Mishkin & Matas 2016 for ANNs).

    The statistics are measured with the network's own forward under ``torch.no_grad()``
    in eval mode (so Dropout is off), over all steps, the whole batch and every neuron of
    the layer; each layer sees the layers before it already rescaled. Layers into an
    ``LI`` (non-spiking readout) always get a membrane target (``mu = 0``,
    ``readout_sigma_u``); a synaptic layer at the very end, with no neuron after it, is
    left alone.

    Args:
        net: a :class:`~spikegrad.nn.Sequential`.
        xs: a batch of real input sequences ``[T, B, *in]`` (the more, the closer the
            rescaling is to the population's statistics).
        target: ``"rate"``: the mean firing rate of each spiking layer becomes ``rate_hz``
            (any spiking neuron, including ``Recurrent``, whose recurrent weights are
            scaled by the same factor; within ``tol`` relative, by bisection on the gain).
            ``"membrane"``: the free (no-reset) membrane of each leaky layer gets mean
            ``mu_u`` and std ``sigma_u`` (or ``xi``) exactly, by setting the weights to
            ``s (W - mean W) + d``; a ``Recurrent`` neuron's recurrent weights are left
            as they are.
        rate_hz: target rate for ``target="rate"`` (Hz for the neurons' ``dt`` in seconds).
        mu_u, sigma_u, xi: membrane targets as in :func:`fluctuation_driven_` (neither
            sigma_u nor xi: ``xi = 1``).
        readout_sigma_u: std of an ``LI`` readout's membrane.
        bias: the value biases are set to before rescaling (0 by default); None keeps them
            (and the rate search scales them with the weights).
        tol, max_iter: the rate search's relative tolerance and step budget.

    Returns:
        One :class:`LayerInit` per rescaled layer, in order.

    Raises:
        ValueError: a bad argument (named in the message), a rate the scaling cannot reach
            on this data, or a membrane target with a neuron that is not leaky.

    Example:
        >>> import torch, spikegrad as sg
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = sg.nn.Sequential(sg.nn.Linear(20, 32), sg.nn.LIF(32, tau_syn=5e-3),
        ...                        sg.nn.Linear(32, 4), sg.nn.LI(4))
        >>> xs = (torch.rand(100, 16, 20) < 0.02).float()      # 20 Hz at dt = 1 ms
        >>> out = sg.nn.init.data_driven_(net, xs, rate_hz=10.0)
        >>> [(o.target, round(o.value)) for o in out]
        [('rate', 10), ('sigma_u', 1)]
    """
    rate_hz, tol, readout_sigma_u, bias = _checked(net, xs, target, rate_hz, tol, max_iter,
                                                   readout_sigma_u, bias)
    pairs = synapse_neuron_pairs(net)
    modes = [m.training for m in net.modules()]
    net.eval()
    results, h, done = [], xs, 0
    try:
        with torch.no_grad():
            for i, j in pairs:
                h = _run(net.layers[done:i], h)  # the input of layer i, earlier ones rescaled
                done = i
                if bias is not None and net[i].bias is not None:
                    net[i].bias.fill_(bias)
                if isinstance(neuron_of(net[j]), LI) or target == "membrane":
                    results.append(_membrane_pair(net, i, j, h, (mu_u, sigma_u, xi,
                                                                 readout_sigma_u)))
                else:
                    results.append(_rate_pair(net, i, j, h, rate_hz, tol, max_iter))
    finally:
        for m, mode in zip(net.modules(), modes):
            m.training = mode
    return results


def _checked(net, xs, target, rate_hz, tol, max_iter, readout_sigma_u, bias):
    """:func:`data_driven_`'s arguments checked: ``(rate_hz, tol, readout_sigma_u, bias)``."""
    if not isinstance(net, Sequential):
        raise TypeError(f"net must be a spikegrad.nn.Sequential, got {type(net).__name__}")
    if not isinstance(xs, Tensor) or not xs.is_floating_point() or xs.dim() < 3:
        raise ValueError("xs must be a floating-point time-major batch [T, B, *features], got "
                         f"{type(xs).__name__} "
                         f"{list(xs.shape) if isinstance(xs, Tensor) else ''}")
    if target not in ("rate", "membrane"):
        raise ValueError(f"target must be 'rate' or 'membrane', got {target!r}")
    if target == "rate":
        if rate_hz is None:
            raise ValueError("target='rate' needs rate_hz, e.g. rate_hz=10.0")
        rate_hz = number(rate_hz, "rate_hz", positive=True)
    tol = number(tol, "tol", positive=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    readout_sigma_u = number(readout_sigma_u, "readout_sigma_u", positive=True)
    return rate_hz, tol, readout_sigma_u, None if bias is None else number(bias, "bias")


def _membrane_targets(inner, mu_u, sigma_u, xi, readout_sigma_u) -> Tuple[float, float]:
    """``(mu, sigma)`` of one layer's free membrane: the readout's, or from the targets."""
    if isinstance(inner, LI):
        return 0.0, float(readout_sigma_u)
    theta = leak_of(inner)["threshold"] if isinstance(inner, LeakyNeuron) else None
    mu, sig = targets(mu_u, sigma_u, xi, theta)
    if sig.numel() > 1 and not bool((sig == sig.flatten()[0]).all()):
        raise ValueError("per-neuron thresholds with xi give per-neuron targets, which one "
                         "gain cannot meet; pass sigma_u")
    return mu, float(sig.flatten()[0])


def _dt(inner) -> float:
    dt = inner.decay_mem.dt if isinstance(inner, LeakyNeuron) else getattr(inner, "dt", None)
    if dt is None:
        raise ValueError(f"data_driven_ cannot find dt on {type(inner).__name__} to turn spike "
                         "counts into Hz")
    return dt
