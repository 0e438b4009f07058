"""An SNN seen as an ordinary classifier: analog input ``[B, ...]`` in [0, 1] -> logits ``[B, C]``.

Attack libraries written for ANNs (torchattacks, AutoAttack) call ``model(x)`` on a batch and
differentiate the logits with respect to ``x``. :class:`SNNClassifier` gives them that view:
it encodes ``x`` into a time-major sequence ``[T, B, ...]``, runs the SNN and reads the output
sequence out; the gradient flows back by BPTT through the surrogate derivative of every spike.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from .._validate import check_int, check_tensor
from ..data.encoders import rate
from ..functional.readout import membrane, spike_count
from ..nn.base import StatefulModule

__all__ = ["SNNClassifier", "ENCODERS", "READOUTS", "current_encoder", "rate_encoder"]

ENCODERS = ("current", "rate")
READOUTS = ("count", "max_membrane", "mean_membrane", "last_membrane", "membrane_stats")

Encoder = Callable[..., Tensor]
Readout = Callable[[Tensor], Tensor]


def current_encoder(x: Tensor, n_steps: int, generator: Optional[torch.Generator] = None
                    ) -> Tensor:
    """Deterministic current code: the analog value is injected at every step.
    ``[B, ...] -> [T, B, ...]``; differentiable (the gradient is the sum over steps)."""
    return x.unsqueeze(0).expand(n_steps, *x.shape)


def rate_encoder(x: Tensor, n_steps: int, generator: Optional[torch.Generator] = None
                 ) -> Tensor:
    """Bernoulli rate code (:func:`spikegrad.data.encoders.rate`, spike probability ``x`` per
    step) with a straight-through gradient: the forward value is the sampled spikes in {0, 1},
    the backward pass that of their expectation ``x`` (exact for the mean input current, a
    BPDA-style identity for the sample). Stochastic: attack it with EOT (``eot=n``).
    ``[B, ...] -> [T, B, ...]``; ``x`` must lie in [0, 1]."""
    spikes = rate(x.detach(), n_steps, generator=generator)
    p = x.unsqueeze(0)
    # value: exactly the spikes (p - p.detach() is exactly 0); gradient: that of p
    return spikes + (p - p.detach())


def _membrane_stats(vs: Tensor) -> Tensor:
    # [T, B, C] -> [B, 2C]: mean and (biased, so T = 1 is defined) std over time
    return torch.cat([vs.mean(0), vs.std(0, unbiased=False)], dim=-1)


_READOUTS = {
    "count": spike_count,
    "max_membrane": lambda vs: membrane(vs, "max"),
    "mean_membrane": lambda vs: membrane(vs, "mean"),
    "last_membrane": lambda vs: membrane(vs, "last"),
    "membrane_stats": _membrane_stats,
}


class SNNClassifier(nn.Module):
    """``logits = readout(snn(encoder(x, T)))``: an SNN as a module on analog batches.

    Args:
        snn: a :class:`spikegrad.nn.StatefulModule` (e.g. :class:`spikegrad.nn.Sequential`)
            mapping ``[T, B, ...]`` to ``([T, B, C], state)``, or any module mapping
            ``[T, B, ...]`` to ``[T, B, C]``; run from the zero state on every call.
        encoder: ``"current"`` (deterministic, :func:`current_encoder`), ``"rate"``
            (Bernoulli, :func:`rate_encoder`) or a callable
            ``encoder(x, n_steps, generator=None) -> [T, B, ...]``. A callable that is not
            differentiable can be wrapped with :func:`spikegrad.robust.bpda`.
        T: number of time steps (>= 1).
        readout: ``"count"`` (spikes per output neuron), ``"max_membrane"``,
            ``"mean_membrane"``, ``"last_membrane"`` (of e.g. an LI readout),
            ``"membrane_stats"`` (mean and std over time, ``[B, 2C]``; features for a
            :class:`~spikegrad.robust.GaussianHead`) or a callable ``[T, B, C] -> [B, C']``.
        generator: ``torch.Generator`` for a stochastic encoder's draws (None: global RNG).
        stochastic: whether the encoder draws random numbers (default: True for ``"rate"``,
            False for ``"current"`` and for callables).

    Shapes: ``x [B, *features] -> logits [B, C]``; :meth:`encode` gives ``[T, B, *features]``
    and :meth:`run` the output sequence ``[T, B, C]``.

    Example:
        >>> import torch, spikegrad as sg
        >>> snn = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.LIF(8), sg.nn.Linear(8, 3),
        ...                        sg.nn.LI(3))
        >>> model = SNNClassifier(snn, "current", T=10, readout="max_membrane")
        >>> model(torch.rand(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, snn: nn.Module, encoder: Union[str, Encoder], T: int,
                 readout: Union[str, Readout] = "count",
                 generator: Optional[torch.Generator] = None,
                 stochastic: Optional[bool] = None):
        super().__init__()
        if not isinstance(snn, nn.Module):
            raise TypeError(f"snn must be an nn.Module (e.g. spikegrad.nn.Sequential), got "
                            f"{type(snn).__name__}")
        self.snn = snn
        self.encoder = _check_encoder(encoder)
        self.T = check_int(T, "T", hint="the number of time steps of the encoding")
        self.readout = _check_readout(readout)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")
        self.generator = generator
        self.stochastic = bool(encoder == "rate") if stochastic is None else bool(stochastic)

    def encode(self, x: Tensor) -> Tensor:
        """The input sequence ``[T, B, ...]`` that the SNN sees for ``x [B, ...]``."""
        check_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(f"SNNClassifier: x must be a batch [B, *features], got shape "
                             f"{list(x.shape)}; add a batch dimension with x.unsqueeze(0)")
        encode = current_encoder if self.encoder == "current" else (
            rate_encoder if self.encoder == "rate" else self.encoder)
        return encode(x, self.T, generator=self.generator)

    def run(self, xs: Tensor) -> Tensor:
        """The SNN's output sequence ``[T, B, C]`` for an input sequence ``xs``."""
        if isinstance(self.snn, StatefulModule):
            return self.snn(xs)[0]
        return self.snn(xs)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (or readout features) ``[B, C]`` for analog inputs ``x [B, ...]``."""
        ys = self.run(self.encode(x))
        read = _READOUTS.get(self.readout) if isinstance(self.readout, str) else self.readout
        return read(ys)

    def extra_repr(self) -> str:
        name = lambda f: f if isinstance(f, str) else getattr(f, "__name__", type(f).__name__)
        return (f"encoder={name(self.encoder)}, T={self.T}, readout={name(self.readout)}, "
                f"stochastic={self.stochastic}")


def _check_encoder(encoder):
    if callable(encoder) and not isinstance(encoder, str):
        return encoder
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be 'current', 'rate' or a callable "
                         f"encoder(x, n_steps, generator=None) -> [T, B, ...]; got {encoder!r}")
    return encoder


def _check_readout(readout):
    if callable(readout) and not isinstance(readout, str):
        return readout
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {', '.join(map(repr, READOUTS))} or a "
                         f"callable [T, B, C] -> [B, C']; got {readout!r}")
    return readout
