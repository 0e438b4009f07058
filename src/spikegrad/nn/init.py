"""Weight initialisation that starts a spiking network in a trainable regime.

PyTorch's default ``Linear`` init, ``U(+-1/sqrt(n))`` for weights and bias, knows nothing
about spikes: sparse spike input through it leaves most neurons silent, and the bias,
integrated by the membrane over ``tau_mem / dt`` steps, drives the others to saturation.
Surrogate gradients then vanish in both groups. Two helpers put each neuron's membrane
where the surrogate gradient lives instead:

* :func:`fluctuation_driven_` (analytic; Rossbroich, Gygax & Zenke 2022, "Fluctuation-driven
  initialization for spiking neural network training", Neuromorph. Comput. Eng. 2, 044016):
  draws ``W ~ N(mu_W, sigma_W^2)`` so that the free (subthreshold, no-reset) membrane
  ``U`` of leaky neurons driven by independent input spikes of rate ``nu`` has mean ``mu_U``
  and standard deviation ``sigma_U`` over neurons and time.
* :func:`data_driven_` (LSUV-style): runs a :class:`~spikegrad.nn.Sequential` on a batch of
  real inputs and rescales each synaptic layer in turn until its neurons reach a target
  firing rate (any spiking neuron, any encoding) or a target free-membrane mean and std.

The theory, in the library's discrete time (``functional.leaky``): an input spike at step 0
with weight 1 leaves the post-synaptic potential ``eps_k`` (``i_k = a_s^k``,
``eps_k = a_m eps_{k-1} + g i_k``; ``a_s = 0`` without a synaptic current, ``g = 1 - a_m``
with ``scale_input``). Its integrals, in steps, are::

    eps_bar = sum_k eps_k   = g / ((1 - a_s) (1 - a_m))
    eps_hat = sum_k eps_k^2 = g^2 (1 + a_s a_m) / ((1 - a_s^2) (1 - a_m^2) (1 - a_s a_m))

(``eps_hat`` is the stationary solution of the kernel's 2x2 Lyapunov equation, so it has no
``1 / (a_m - a_s)`` cancellation). With ``n`` inputs that each spike with probability
``p = nu dt`` per step (Bernoulli, independent) and i.i.d. weights of mean ``mu_W`` and
variance ``sigma_W^2``, the stationary membrane over neurons and time has::

    mu_U      = n p mu_W eps_bar
    sigma_U^2 = n p (1 - p) (sigma_W^2 + mu_W^2) eps_hat  +  n p^2 sigma_W^2 eps_bar^2

The first variance term is the paper's shot noise (Campbell's theorem; Poisson input, where
``1 - p`` is 1); the second is the spread of the neurons' own means, which the paper's
formula leaves out and which is not small (about ``2 nu tau_mem`` times the first: 0.4 at
10 Hz and 20 ms). Targets are ``mu_U`` and ``sigma_U`` directly or through
``xi = (theta - mu_U) / sigma_U``, the distance of the mean from the threshold in standard
deviations (the paper's parameter). A :class:`~spikegrad.nn.Recurrent` neuron gets a
``recurrent_share`` of ``sigma_U^2`` from its recurrent weights and the rest from the
feed-forward layer (the paper's ``alpha = 1 - recurrent_share``), both with the same
``mu_W``; its own spikes are taken as independent input of rate ``rec_rate_hz``.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .base import StatefulModule
from .layers import Dropout, Flatten
from .neurons import LI, LeakyNeuron
from .recurrent import Recurrent
from .sequential import Sequential

__all__ = ["psp_integrals", "fluctuation_driven_", "data_driven_", "FluctuationInit",
           "LayerInit"]

Number = Union[float, Tensor]
_SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# stateless modules that pass the synaptic current to the neuron unchanged in scale
_TRANSPARENT = (Dropout, Flatten, nn.Flatten, nn.Dropout, nn.Identity)


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


# --------------------------------------------------------------------------- kernel integrals

def psp_integrals(decay_mem: Number, decay_syn: Optional[Number] = None,
                  scale_input: bool = False) -> Tuple[Number, Number]:
    """Integrals of the discrete post-synaptic potential of one input spike of weight 1.

    Args:
        decay_mem: ``a_m = exp(-dt / tau_mem)`` in [0, 1) (a float or a tensor).
        decay_syn: ``a_s = exp(-dt / tau_syn)`` in [0, 1), or None (voltage-based: ``a_s = 0``).
        scale_input: the neuron multiplies its input by ``g = 1 - a_m``.

    Returns:
        ``(eps_bar, eps_hat)``: the sum of the kernel and of its square over steps (see the
        module docstring), float64 where tensors are given.

    Example:
        >>> eb, eh = psp_integrals(0.5)        # kernel 1, 0.5, 0.25, ...
        >>> eb, round(eh, 6)
        (2.0, 1.333333)
    """
    a_m, a_s = decay_mem, 0.0 if decay_syn is None else decay_syn
    for name, a in (("decay_mem", a_m), ("decay_syn", a_s)):
        bad = (a < 0) | (a >= 1) if isinstance(a, Tensor) else not 0 <= a < 1
        if bool(bad.any()) if isinstance(a, Tensor) else bad:
            raise ValueError(
                f"{name} must lie in [0, 1) for a stationary membrane, got {a!r}; a decay of 1 "
                "(no leak, e.g. IF) integrates input without bound, so no weight scale gives "
                "a target std: use data_driven_(..., target='rate') for such neurons")
    g = 1.0 - a_m if scale_input else 1.0
    eps_bar = g / ((1.0 - a_s) * (1.0 - a_m))
    eps_hat = g * g * (1.0 + a_s * a_m) / ((1.0 - a_s * a_s) * (1.0 - a_m * a_m)
                                           * (1.0 - a_s * a_m))
    return eps_bar, eps_hat


# --------------------------------------------------------------------------- helpers

def _number(x, name: str, *, positive: bool = False, allow_none: bool = False):
    if x is None and allow_none:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
            or (positive and x <= 0):
        want = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {want}, got {x!r}")
    return float(x)


def _as64(x) -> Tensor:
    return torch.as_tensor(x.detach() if isinstance(x, Tensor) else x, dtype=torch.float64)


def _neuron_of(module: nn.Module) -> nn.Module:
    return module.neuron if isinstance(module, Recurrent) else module


def _leak_of(neuron: nn.Module) -> dict:
    """The neuron's decays, input gain, threshold and dt as float64 tensors."""
    if not isinstance(neuron, LeakyNeuron):
        raise TypeError(
            f"fluctuation_driven_ reads tau_mem, tau_syn and dt from a leaky neuron (LI, LIF, "
            f"ALIF), got {type(neuron).__name__}; pass the constants yourself (neuron=None, "
            "tau_mem=..., dt=...) or use data_driven_, which works for any neuron")
    a_s = None if neuron.decay_syn is None else _as64(neuron.decay_syn())
    theta = None if isinstance(neuron, LI) else _as64(neuron.threshold())
    return dict(a_m=_as64(neuron.decay_mem()), a_s=a_s, scale_input=neuron.scale_input,
                threshold=theta, dt=neuron.decay_mem.dt)


def _per_row(x: Tensor, layer: nn.Module, name: str) -> Tensor:
    """A per-neuron constant as one value, or one per weight row of a Linear."""
    x = x.reshape(-1)
    if x.numel() == 1 or bool((x == x[0]).all()):
        return x[0]
    if isinstance(layer, nn.Linear) and x.numel() == layer.out_features:
        return x
    raise ValueError(f"{name} differs between neurons in a way the layer's weight cannot follow "
                     f"({x.numel()} values for a {type(layer).__name__}); use data_driven_")


def _fan_in(weight: Tensor) -> int:
    return int(weight.shape[1] * math.prod(weight.shape[2:]))


def _out(x: Tensor) -> Number:
    return float(x) if x.dim() == 0 else x


def _draw_(weight: Tensor, mu: Tensor, sigma: Tensor, generator, mask=None) -> None:
    shape = (-1,) + (1,) * (weight.dim() - 1)  # per-row constants broadcast over fan-in
    w = torch.empty(weight.shape, dtype=torch.float64, device="cpu").normal_(
        generator=generator)
    w = w * sigma.reshape(shape) + mu.reshape(shape)
    if mask is not None:
        w = w * mask.to(w)
    with torch.no_grad():
        weight.copy_(w.to(weight))


# --------------------------------------------------------------------------- analytic

def fluctuation_driven_(layer: nn.Module, neuron: Optional[nn.Module] = None, *,
                        rate_hz: float, mu_u: float = 0.0, sigma_u: Optional[float] = None,
                        xi: Optional[float] = None, dt: Optional[float] = None,
                        tau_mem: Optional[float] = None, tau_syn: Optional[float] = None,
                        scale_input: bool = False, threshold: float = 1.0,
                        recurrent_share: float = 0.1, rec_rate_hz: Optional[float] = None,
                        hidden_rate_hz: Optional[float] = None, readout_sigma_u: float = 1.0,
                        bias: Optional[float] = 0.0,
                        generator: Optional[torch.Generator] = None
                        ) -> Union[FluctuationInit, List[FluctuationInit]]:
    """Draw a synaptic layer's weights so its neurons sit in the fluctuation-driven regime.

    In place. Equations in the module docstring; the targets are the mean ``mu_u`` and std
    ``sigma_u`` of the free (no-reset) membrane over neurons and time, in the membrane's
    units (the threshold's).

    Args:
        layer: a ``Linear``/``Conv`` layer (weights ``[N, fan_in, ...]``), or a
            :class:`~spikegrad.nn.Sequential`: then every synaptic layer followed by a
            leaky neuron (only ``Flatten``/``Dropout`` between them) is initialised, the
            first with ``rate_hz``, later ones with ``hidden_rate_hz``, layers into a
            non-spiking ``LI`` readout with ``mu_u = 0, sigma_u = readout_sigma_u``.
        neuron: the neuron module the layer feeds (``LI``, ``LIF``, ``ALIF`` or a
            ``Recurrent`` around one): ``dt``, decays, ``scale_input`` and threshold are read
            from it. None: give ``tau_mem`` and ``dt`` (and ``tau_syn``, ``scale_input``,
            ``threshold``) instead.
        rate_hz: mean rate of each input, in spikes per unit of ``dt``'s time (Hz for
            ``dt`` in seconds, the library default); ``rate_hz * dt`` must be in (0, 1).
        mu_u: target membrane mean (0: balanced, the paper's centred init).
        sigma_u, xi: target std, or ``xi = (threshold - mu_u) / sigma_u``; at most one.
            Neither: ``xi = 1`` (``sigma_u = threshold - mu_u``).
        dt, tau_mem, tau_syn, scale_input, threshold: the neuron's constants when
            ``neuron`` is None (same time unit for ``dt`` and the taus).
        recurrent_share: fraction of ``sigma_u^2`` from a ``Recurrent`` neuron's own
            weights, in [0, 1) (the paper's ``1 - alpha``; 0.1 as its default).
        rec_rate_hz: rate assumed for the recurrent spikes (default ``rate_hz``).
        hidden_rate_hz: input rate of later layers of a Sequential (default ``rate_hz``).
        readout_sigma_u: membrane std of a Sequential's ``LI`` readout.
        bias: value the layer's bias is set to (0 by default: a constant input is
            integrated into a large offset); None leaves it as it is.
        generator: a ``torch.Generator`` for the draw (the global RNG when None).

    Returns:
        :class:`FluctuationInit` (``mu_w``, ``sigma_w``, and the recurrent pair); a list
        of them, one per initialised layer, for a Sequential.

    Raises:
        ValueError: a bad argument (named in the message), a rate with ``rate_hz * dt``
            outside (0, 1), a neuron without leak, or a ``mu_u`` so large for ``sigma_u``
            that equal weights alone would fluctuate more than ``sigma_u``.

    Example:
        >>> import torch, spikegrad as sg
        >>> lin, lif = sg.nn.Linear(100, 50), sg.nn.LIF(50, tau_mem=20e-3, tau_syn=5e-3)
        >>> w = sg.nn.init.fluctuation_driven_(lin, lif, rate_hz=10.0)
        >>> round(w.mu_w, 6), round(w.sigma_w, 4), float(lin.bias.detach().abs().max())
        (0.0, 0.0512, 0.0)
    """
    rate_hz = _number(rate_hz, "rate_hz", positive=True)
    if isinstance(layer, Sequential):
        if neuron is not None:
            raise ValueError("neuron must be None when layer is a Sequential (each layer's "
                             "neuron is the one that follows it)")
        return _fluctuation_net(layer, rate_hz=rate_hz, mu_u=mu_u, sigma_u=sigma_u, xi=xi,
                                recurrent_share=recurrent_share, rec_rate_hz=rec_rate_hz,
                                hidden_rate_hz=hidden_rate_hz,
                                readout_sigma_u=readout_sigma_u, bias=bias,
                                generator=generator)
    if not isinstance(layer, _SYNAPTIC):
        raise TypeError(f"layer must be a Linear or Conv layer (or a Sequential), got "
                        f"{type(layer).__name__}")
    if neuron is not None:
        given = [k for k, v in (("dt", dt), ("tau_mem", tau_mem), ("tau_syn", tau_syn))
                 if v is not None]
        if given:
            raise ValueError(f"pass either neuron or the constants, not both: {given} are "
                             "read from the neuron; drop them (or pass neuron=None)")
        c = _leak_of(_neuron_of(neuron))
    else:
        dt = _number(dt, "dt", positive=True, allow_none=True)
        tau_mem = _number(tau_mem, "tau_mem", positive=True, allow_none=True)
        if dt is None or tau_mem is None:
            raise ValueError("without a neuron, pass tau_mem and dt (same time unit), e.g. "
                             "tau_mem=20e-3, dt=1e-3; or pass the neuron the layer feeds")
        tau_syn = _number(tau_syn, "tau_syn", positive=True, allow_none=True)
        c = dict(a_m=_as64(math.exp(-dt / tau_mem)),
                 a_s=None if tau_syn is None else _as64(math.exp(-dt / tau_syn)),
                 scale_input=bool(scale_input),
                 threshold=_as64(_number(threshold, "threshold", positive=True)), dt=dt)
    rec = neuron if isinstance(neuron, Recurrent) else None
    return _fluctuation_layer(layer, c, rec, rate_hz=rate_hz, mu_u=mu_u, sigma_u=sigma_u,
                              xi=xi, recurrent_share=recurrent_share, rec_rate_hz=rec_rate_hz,
                              bias=bias, generator=generator)


def _targets(mu_u, sigma_u, xi, theta: Optional[Tensor]) -> Tuple[float, Tensor]:
    mu_u = _number(mu_u, "mu_u")
    if sigma_u is not None and xi is not None:
        raise ValueError(f"pass sigma_u or xi, not both (got sigma_u={sigma_u!r}, xi={xi!r}); "
                         "xi = (threshold - mu_u) / sigma_u")
    if sigma_u is not None:
        return mu_u, _as64(_number(sigma_u, "sigma_u", positive=True))
    xi = 1.0 if xi is None else _number(xi, "xi", positive=True)
    if theta is None:
        raise ValueError("an LI neuron has no threshold, so xi does not define a std: pass "
                         "sigma_u (the readout membrane's std, e.g. 1.0)")
    if bool((theta <= mu_u).any()):
        raise ValueError(f"xi needs mu_u below the threshold, got mu_u={mu_u} >= threshold "
                         f"{theta.flatten()[:3].tolist()}; pass sigma_u instead")
    return mu_u, (theta - mu_u) / xi


def _fluctuation_layer(layer, c: dict, rec: Optional[Recurrent], *, rate_hz, mu_u, sigma_u, xi,
                       recurrent_share, rec_rate_hz, bias, generator) -> FluctuationInit:
    mu_u, sig_u = _targets(mu_u, sigma_u, xi, c["threshold"])
    p = rate_hz * c["dt"]
    if not 0.0 < p < 1.0:
        raise ValueError(f"rate_hz * dt = {rate_hz} * {c['dt']} = {p:g} is the spike "
                         "probability per step and must lie in (0, 1); give rate_hz in "
                         "spikes per unit of dt's time (Hz for dt in seconds)")
    share = _number(recurrent_share, "recurrent_share")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"recurrent_share must lie in [0, 1) (the recurrent weights' share "
                         f"of the membrane variance), got {recurrent_share!r}")
    if bias is not None:
        bias = _number(bias, "bias")
    eps_bar, eps_hat = psp_integrals(c["a_m"], c["a_s"], c["scale_input"])
    eps_bar = _per_row(eps_bar, layer, "the PSP integral (tau_mem, tau_syn)")
    eps_hat = _per_row(eps_hat, layer, "the PSP integral (tau_mem, tau_syn)")
    sig_u = _per_row(sig_u, layer, "sigma_u (from the threshold)")

    groups = [(_fan_in(layer.weight), p, 1.0 - share if rec is not None else 1.0)]
    if rec is not None:
        p_rec = p if rec_rate_hz is None else _number(rec_rate_hz, "rec_rate_hz",
                                                      positive=True) * c["dt"]
        if not 0.0 < p_rec < 1.0:
            raise ValueError(f"rec_rate_hz * dt = {p_rec:g} must lie in (0, 1)")
        n = rec.weight.shape[1] - (0 if rec.autapses else 1)
        if n < 1:
            raise ValueError("the Recurrent layer has no recurrent inputs (one neuron without "
                             "autapses); wrap fewer neurons in Recurrent or pass its weight")
        groups.append((n, p_rec, share))
    # one mu_W for every afferent group (as in the paper), so the mean drive splits by rate
    mu_w = mu_u / (eps_bar * sum(n * q for n, q, _ in groups))
    sigmas = []
    for n, q, s in groups:
        free = s * sig_u ** 2 - n * q * (1 - q) * eps_hat * mu_w ** 2
        if bool((free <= 0).any()) and s > 0:
            floor = torch.sqrt(n * q * (1 - q) * eps_hat * mu_w ** 2 / s).max()
            raise ValueError(
                f"mu_u={mu_u} is too large for sigma_u={_out(sig_u)}: with {n} inputs at "
                f"{q / c['dt']:g} spikes per unit time, weights that all equal mu_W already "
                f"give a membrane std of {float(floor):.3g}; lower mu_u or raise sigma_u "
                "(lower xi)")
        sigmas.append(torch.sqrt(free.clamp_min(0.0) / (n * q * ((1 - q) * eps_hat
                                                                 + q * eps_bar ** 2))))
    _draw_(layer.weight, mu_w, sigmas[0], generator)
    if bias is not None and layer.bias is not None:
        with torch.no_grad():
            layer.bias.fill_(bias)
    if rec is None:
        return FluctuationInit(_out(mu_w), _out(sigmas[0]), mu_u=mu_u, sigma_u=_out(sig_u))
    mask = None if rec.autapses else rec.mask
    _draw_(rec.weight, mu_w, sigmas[1], generator, mask)
    return FluctuationInit(_out(mu_w), _out(sigmas[0]), _out(mu_w), _out(sigmas[1]),
                           mu_u, _out(sig_u))


def _pairs(net: Sequential) -> List[Tuple[int, int]]:
    """``(synaptic layer index, index of the neuron it feeds)`` in order; a synaptic layer
    whose current passes through anything but Flatten/Dropout to reach a neuron is an
    error (its scale would not be the one measured or computed)."""
    pairs, layers = [], list(net.layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, _SYNAPTIC):
            continue
        j = i + 1
        while j < len(layers) and isinstance(layers[j], _TRANSPARENT):
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


def _fluctuation_net(net: Sequential, *, rate_hz, hidden_rate_hz, readout_sigma_u, mu_u,
                     sigma_u, xi, **kw) -> List[FluctuationInit]:
    hidden = rate_hz if hidden_rate_hz is None else _number(hidden_rate_hz, "hidden_rate_hz",
                                                            positive=True)
    readout_sigma_u = _number(readout_sigma_u, "readout_sigma_u", positive=True)
    out = []
    for k, (i, j) in enumerate(_pairs(net)):
        neuron = net[j]
        c = _leak_of(_neuron_of(neuron))
        readout = c["threshold"] is None
        out.append(_fluctuation_layer(
            net[i], c, neuron if isinstance(neuron, Recurrent) else None,
            rate_hz=rate_hz if k == 0 else hidden, mu_u=0.0 if readout else mu_u,
            sigma_u=readout_sigma_u if readout else sigma_u, xi=None if readout else xi,
            **kw))
    return out


# --------------------------------------------------------------------------- data-driven

def _run(layers, xs: Tensor) -> Tensor:
    for layer in layers:
        xs = layer(xs)[0] if isinstance(layer, StatefulModule) else layer(xs)
    return xs


def _free_membrane(neuron: nn.Module, current: Tensor) -> Tensor:
    """The neuron's membrane without firing or reset (a linear filter of its input)."""
    from .. import functional as F
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
    a = _free_membrane(_neuron_of(neuron), cur).double()
    params["weight"] = torch.ones_like(w)
    s_ = _free_membrane(_neuron_of(neuron), _run(between, functional_call(layer, params, (h,))))
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
        rate_hz = _number(rate_hz, "rate_hz", positive=True)
    tol = _number(tol, "tol", positive=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an int >= 1, got {max_iter!r}")
    readout_sigma_u = _number(readout_sigma_u, "readout_sigma_u", positive=True)
    if bias is not None:
        bias = _number(bias, "bias")
    pairs = _pairs(net)
    modes = [m.training for m in net.modules()]
    net.eval()
    results, h, done = [], xs, 0
    try:
        with torch.no_grad():
            for i, j in pairs:
                h = _run(net.layers[done:i], h)  # the input of layer i, earlier ones rescaled
                done = i
                layer, neuron, between = net[i], net[j], list(net.layers[i + 1:j])
                if bias is not None and layer.bias is not None:
                    layer.bias.fill_(bias)
                inner = _neuron_of(neuron)
                if isinstance(inner, LI) or target == "membrane":
                    if isinstance(inner, LI):
                        mu, sig = 0.0, torch.tensor(readout_sigma_u)
                    else:
                        theta = _leak_of(inner)["threshold"] if isinstance(inner, LeakyNeuron) \
                            else None
                        mu, sig = _targets(mu_u, sigma_u, xi, theta)
                        if sig.numel() > 1 and not bool((sig == sig.flatten()[0]).all()):
                            raise ValueError("per-neuron thresholds with xi give per-neuron "
                                             "targets, which one gain cannot meet; pass "
                                             "sigma_u")
                    gain = _membrane_(layer, neuron, h, between, mu, float(sig.flatten()[0]))
                    u = _free_membrane(inner, _run(between, layer(h)))
                    results.append(LayerInit(i, j, "sigma_u", float(u.double().std(
                        unbiased=False)), gain))
                else:
                    dt = inner.decay_mem.dt if isinstance(inner, LeakyNeuron) else \
                        getattr(inner, "dt", None)
                    if dt is None:
                        raise ValueError(f"data_driven_ cannot find dt on {type(inner).__name__}"
                                         " to turn spike counts into Hz")
                    gain = _rate_(layer, neuron, h, between, rate_hz, dt, tol, max_iter, i)
                    z = _run([*between, neuron], layer(h))
                    results.append(LayerInit(i, j, "rate", float(z.double().mean()) / dt, gain))
    finally:
        for m, mode in zip(net.modules(), modes):
            m.training = mode
    return results
