"""The analytic, fluctuation-driven initialisation (Rossbroich, Gygax & Zenke 2022); the
theory is in :mod:`spikegrad.nn.init`."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..recurrent import Recurrent
from ..sequential import Sequential
from .common import (SYNAPTIC, FluctuationInit, Number, as64, leak_of, neuron_of, number,
                     synapse_neuron_pairs, targets)

__all__ = ["psp_integrals", "fluctuation_driven_"]


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
    rate_hz = number(rate_hz, "rate_hz", positive=True)
    if isinstance(layer, Sequential):
        if neuron is not None:
            raise ValueError("neuron must be None when layer is a Sequential (each layer's "
                             "neuron is the one that follows it)")
        return _fluctuation_net(layer, rate_hz=rate_hz, mu_u=mu_u, sigma_u=sigma_u, xi=xi,
                                recurrent_share=recurrent_share, rec_rate_hz=rec_rate_hz,
                                hidden_rate_hz=hidden_rate_hz,
                                readout_sigma_u=readout_sigma_u, bias=bias,
                                generator=generator)
    if not isinstance(layer, SYNAPTIC):
        raise TypeError(f"layer must be a Linear or Conv layer (or a Sequential), got "
                        f"{type(layer).__name__}")
    c = _constants(neuron, dt, tau_mem, tau_syn, scale_input, threshold)
    rec = neuron if isinstance(neuron, Recurrent) else None
    return _fluctuation_layer(layer, c, rec, rate_hz=rate_hz, mu_u=mu_u, sigma_u=sigma_u,
                              xi=xi, recurrent_share=recurrent_share, rec_rate_hz=rec_rate_hz,
                              bias=bias, generator=generator)


def _fluctuation_layer(layer, c: dict, rec: Optional[Recurrent], *, rate_hz, mu_u, sigma_u, xi,
                       recurrent_share, rec_rate_hz, bias, generator) -> FluctuationInit:
    mu_u, sig_u = targets(mu_u, sigma_u, xi, c["threshold"])
    p = rate_hz * c["dt"]
    if not 0.0 < p < 1.0:
        raise ValueError(f"rate_hz * dt = {rate_hz} * {c['dt']} = {p:g} is the spike "
                         "probability per step and must lie in (0, 1); give rate_hz in "
                         "spikes per unit of dt's time (Hz for dt in seconds)")
    share = number(recurrent_share, "recurrent_share")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"recurrent_share must lie in [0, 1) (the recurrent weights' share "
                         f"of the membrane variance), got {recurrent_share!r}")
    if bias is not None:
        bias = number(bias, "bias")
    eps_bar, eps_hat = psp_integrals(c["a_m"], c["a_s"], c["scale_input"])
    eps_bar = _per_row(eps_bar, layer, "the PSP integral (tau_mem, tau_syn)")
    eps_hat = _per_row(eps_hat, layer, "the PSP integral (tau_mem, tau_syn)")
    sig_u = _per_row(sig_u, layer, "sigma_u (from the threshold)")

    groups = [(_fan_in(layer.weight), p, 1.0 - share if rec is not None else 1.0)]
    if rec is not None:
        p_rec = p if rec_rate_hz is None else number(rec_rate_hz, "rec_rate_hz",
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


def _fluctuation_net(net: Sequential, *, rate_hz, hidden_rate_hz, readout_sigma_u, mu_u,
                     sigma_u, xi, **kw) -> List[FluctuationInit]:
    hidden = rate_hz if hidden_rate_hz is None else number(hidden_rate_hz, "hidden_rate_hz",
                                                            positive=True)
    readout_sigma_u = number(readout_sigma_u, "readout_sigma_u", positive=True)
    out = []
    for k, (i, j) in enumerate(synapse_neuron_pairs(net)):
        neuron = net[j]
        c = leak_of(neuron_of(neuron))
        readout = c["threshold"] is None
        out.append(_fluctuation_layer(
            net[i], c, neuron if isinstance(neuron, Recurrent) else None,
            rate_hz=rate_hz if k == 0 else hidden, mu_u=0.0 if readout else mu_u,
            sigma_u=readout_sigma_u if readout else sigma_u, xi=None if readout else xi,
            **kw))
    return out


def _constants(neuron, dt, tau_mem, tau_syn, scale_input, threshold) -> dict:
    """The leak constants from the neuron, or from the caller's numbers without one."""
    if neuron is not None:
        given = [k for k, v in (("dt", dt), ("tau_mem", tau_mem), ("tau_syn", tau_syn))
                 if v is not None]
        if given:
            raise ValueError(f"pass either neuron or the constants, not both: {given} are "
                             "read from the neuron; drop them (or pass neuron=None)")
        return leak_of(neuron_of(neuron))
    dt = number(dt, "dt", positive=True, allow_none=True)
    tau_mem = number(tau_mem, "tau_mem", positive=True, allow_none=True)
    if dt is None or tau_mem is None:
        raise ValueError("without a neuron, pass tau_mem and dt (same time unit), e.g. "
                         "tau_mem=20e-3, dt=1e-3; or pass the neuron the layer feeds")
    tau_syn = number(tau_syn, "tau_syn", positive=True, allow_none=True)
    return dict(a_m=as64(math.exp(-dt / tau_mem)),
                a_s=None if tau_syn is None else as64(math.exp(-dt / tau_syn)),
                scale_input=bool(scale_input),
                threshold=as64(number(threshold, "threshold", positive=True)), dt=dt)
