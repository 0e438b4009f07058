"""Three-factor local learning rules: ``dW_jp = -lr * e_j * phi(u_j - theta) * x_p``.

Writing one step of the surrogate gradient of a spiking layer as a product of three
factors (SuperSpike, Zenke & Ganguli 2018; DECOLLE, Kaiser et al. 2020)::

    pre   x_p(t)     presynaptic trace: the raw input/spike, or the input filtered with the
                     neuron's own kernel (synaptic filter, then membrane leak; ``integrate``)
    post  phi_j(t)   the surrogate derivative at the membrane, phi(u_j(t) - theta)
    error e_j(t)     a per-neuron modulatory signal: dl_t/dz_j(t) of a per-step loss on the
                     layer's spikes (a target), a random projection of the output error, or
                     the error of a fixed local readout (DECOLLE)

each step's update is the rank-1 outer product ``(e * phi) x^T`` (per sample), which is what a
crossbar array applies in one shot (:class:`Factors` keeps the three apart).

Relation to BPTT: for a single LIF layer whose reset carries no gradient (``subtract`` with
``detach_reset=True``, the default, or ``none``) and a loss that is a sum of per-step terms of
its spikes, ``sum_t e_t phi_t x_t^T`` with ``trace="kernel"`` and ``e_t = dl_t/dz_t`` *is*
autograd's gradient (``du_t/dW = sum_s kappa(t-s) x_s``, the neuron kernel; tested to 1e-10
in float64). Raw spikes (``trace="spikes"``) or another decay approximate it. Recurrent input
is treated as one more presynaptic input (its effect through other neurons is dropped, as in
e-prop). :mod:`spikegrad.functional.three_factor` computes the same offline gradient for
dense and convolutional layers from recorded sequences; this module runs online, step by
step, with memory independent of the sequence length.

Each step's neurons and trace are :func:`lif_trace_step` of the layer's current; by default
(``backend="auto"``) one compiled call does them (:mod:`spikegrad.learning.three_factor_fused`),
the torch code above being the reference.

Example:
    >>> import torch, spikegrad as sg
    >>> from spikegrad.learning import ThreeFactor, Factors
    >>> layer, lif = sg.nn.Linear(3, 4, bias=False), sg.nn.LIF(4)
    >>> rule = ThreeFactor(layer, lif, trace="kernel")
    >>> z, state, pre, post = rule.forward(torch.rand(2, 3))
    >>> f = Factors(pre, post, error=z - 1.0)          # per-step loss 1/2 (z - 1)^2
    >>> f.outer().shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import nn as sgnn
from .._validate import check_int, check_tensor
from ..functional.leaky import integrate
from ..functional.lif import LIFParams, LIFState, reset
from .three_factor_fused import fused_step, resolve_backend

__all__ = ["Factors", "ThreeFactor", "ThreeFactorState", "TRACES", "target_error",
           "random_projection", "LocalReadout", "lif_trace_step"]

TRACES = ("kernel", "spikes")


class Factors(NamedTuple):
    """The three factors of one step. ``pre [B, P]``, ``post [B, N]``, ``error [B, N]``."""

    pre: Tensor
    post: Tensor
    error: Tensor

    def outer(self) -> Tensor:
        """``sum_b (error * post)[b]^T pre[b]``: the gradient estimate ``[N, P]`` of this step
        (a rank-1 outer product per sample). The update is ``-lr`` times it."""
        return (self.error * self.post).t() @ self.pre


class ThreeFactorState(NamedTuple):
    """The rule's state after step ``t``: ``neuron`` the layer's :class:`LIFState`, ``z [B, N]``
    this step's spikes (the recurrent input of step ``t+1``), ``pre [B, P]`` the presynaptic
    trace and ``pre_i [B, P]`` its synaptic stage (``trace="kernel"`` with a synaptic decay;
    else None)."""

    neuron: LIFState          # the layer's neuron state after step t
    z: Tensor                 # [B, N] spikes of step t (recurrent input of step t+1)
    pre: Tensor               # [B, P] presynaptic trace
    pre_i: Optional[Tensor]   # [B, P] its synaptic stage (trace="kernel" with decay_syn)


def target_error(z: Tensor, target: Tensor) -> Tensor:
    """``e = z - z*``: the error of the per-step loss ``1/2 ||z_t - z*_t||^2`` on spikes."""
    check_tensor(target, "target")
    if z.shape != target.shape:
        raise ValueError(f"target must have the spikes' shape {list(z.shape)}, got "
                         f"{list(target.shape)}")
    return z - target


def random_projection(output_error: Tensor, feedback: Tensor) -> Tensor:
    """``e = output_error @ B^T``: a fixed (random) ``B [N, K]`` broadcasts an output error
    ``[B, K]`` to the ``N`` neurons of a hidden layer (``[B, N]``)."""
    check_tensor(output_error, "output_error")
    if output_error.dim() != 2 or feedback.dim() != 2 or feedback.shape[1] != output_error.shape[1]:
        raise ValueError(f"feedback must be [N, K] with K = {output_error.shape[-1]} (the output "
                         f"error's width), got {list(feedback.shape)}")
    return output_error @ feedback.t()


def lif_trace_step(current: Tensor, xhat: Tensor, neuron: LIFState, pre: Tensor,
                   pre_i: Optional[Tensor], p: LIFParams, trace: Union[str, float],
                   backend: str = "reference"
                   ) -> Tuple[Tensor, LIFState, Tensor, Optional[Tensor], Tensor]:
    """One step of a layer's LIF neurons and of its presynaptic trace, from the layer's input
    current: the two local factors of the three-factor rule.

    Args:
        current: the input current ``[B, N]`` of this step (``W x + b (+ W_rec z)``, or the
            read of an analog array that holds ``W``).
        xhat: the presynaptic values ``[B, P]`` of this step (inputs, a 1 per bias, ...).
        neuron: the neurons' :class:`LIFState` after the previous step (``[B, N]``).
        pre: the presynaptic trace ``[B, P]``; pre_i: its synaptic stage ``[B, P]``
            (``trace="kernel"`` with a synaptic decay), else None.
        p: the neurons' parameters; trace: as :class:`ThreeFactor`'s.
        backend: ``"reference"`` (torch) or ``"numba"`` (one compiled call; resolve a
            user's ``"auto"`` with :func:`~spikegrad.learning.three_factor_fused.resolve_backend`).

    Returns:
        ``(z [B, N], neuron state, pre [B, P], pre_i or None, post [B, N])``, new tensors;
        ``post = phi(u - theta)``.
    """
    if backend == "numba":
        z, v, i, pre, pre_i, post = fused_step(current, xhat, neuron.v, neuron.i, pre, pre_i,
                                               p, trace)
        return z, LIFState(v, i), pre, pre_i, post
    u, i = integrate(current, neuron.v, neuron.i, p)
    z = (u - p.threshold > 0).to(u.dtype)                        # H(0) = 0
    post = p.surrogate.grad(u - p.threshold)
    v = reset(u, z, p)
    if trace == "kernel":
        pre, pre_i = integrate(xhat, pre, pre_i, p)              # du_t/dW: neuron kernel
    elif trace == "spikes":
        pre = xhat
    else:
        pre = trace * pre + xhat
    return z, LIFState(v, i), pre, pre_i, post


class LocalReadout:
    """DECOLLE's fixed random local readout: ``y_t = R s_t`` of a layer's per-step signal
    ``s_t`` (its spikes, or a trace of them) with ``R [K, N] ~ U(-1/sqrt N, 1/sqrt N)``
    frozen; the local loss ``1/2 ||y_t - y*_t||^2`` gives the layer its own error
    ``e_t = R^T (y_t - y*_t)`` (no error travels between layers).

    Args:
        n: the layer's width; k: targets per step; generator: RNG for ``R``.
        dtype: of ``R``.
    """

    def __init__(self, n: int, k: int, generator: Optional[torch.Generator] = None,
                 dtype: torch.dtype = torch.float32):
        check_int(n, "n")
        check_int(k, "k")
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        bound = 1.0 / math.sqrt(n)
        self.weight = (torch.rand(k, n, generator=g, dtype=torch.float64) * 2 - 1).mul(
            bound).to(dtype)

    def error(self, s: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """``(loss_t, e_t)`` for ``s [B, N]`` and ``target [B, K]``."""
        y = s @ self.weight.t()
        if target.shape != y.shape:
            raise ValueError(f"target must have shape {list(y.shape)} [B, K], got "
                             f"{list(target.shape)}")
        d = y - target
        return 0.5 * d.pow(2).sum(), d @ self.weight


class ThreeFactor:
    """Online three-factor rule for one layer ``Linear -> LIF`` (or ``Recurrent(LIF)``).

    Args:
        layer: the input :class:`spikegrad.nn.Linear` ``[N, N_in]`` (its bias is a presynaptic
            input that is always 1).
        neuron: :class:`spikegrad.nn.LIF`, or :class:`spikegrad.nn.Recurrent` wrapping one
            (its recurrent weights then learn too, with ``z_{t-1}`` as presynaptic input).
        trace: ``"kernel"`` (the neuron's own PSP kernel: exact for a single layer),
            ``"spikes"`` (raw presynaptic values), or a float decay ``d`` in [0, 1) for an
            exponential trace ``x_t = d x_{t-1} + xhat_t`` (SuperSpike's filtered trace).
        backend: ``"auto"`` (default: the compiled step where numba is installed and the
            neurons are of a kind it runs, else the torch reference), ``"numba"`` (raises,
            naming what is unsupported, where it cannot run) or ``"reference"``; see
            :mod:`spikegrad.learning.three_factor_fused`. Both compute the same equations
            (tested equal: spikes exactly, states and gradients to rounding).

    Attributes:
        backend: the backend in use (``"numba"`` or ``"reference"``).

    Use :meth:`forward` each step, compute the error from its spikes, then
    :meth:`accumulate` (and :meth:`flush` into ``.grad``) or :meth:`apply` (in place).
    """

    def __init__(self, layer: sgnn.Linear, neuron, *, trace: Union[str, float] = "kernel",
                 backend: str = "auto"):
        if not isinstance(layer, torch.nn.Linear):
            raise TypeError(f"layer must be a spikegrad.nn.Linear, got {type(layer).__name__}")
        self.recurrent = neuron if isinstance(neuron, sgnn.Recurrent) else None
        lif = neuron.neuron if self.recurrent is not None else neuron
        if type(lif) not in (sgnn.LIF, sgnn.IF):
            raise TypeError("neuron must be a spikegrad.nn.LIF or nn.Recurrent(nn.LIF), got "
                            f"{type(lif).__name__}")
        if lif.features != (layer.out_features,):
            raise ValueError(f"layer has {layer.out_features} outputs but the neurons have "
                             f"shape {lif.features}")
        if isinstance(trace, str):
            if trace not in TRACES:
                raise ValueError(f"trace must be one of {', '.join(map(repr, TRACES))} or a "
                                 f"decay in [0, 1); got {trace!r}")
        elif isinstance(trace, bool) or not isinstance(trace, (int, float)) \
                or not 0.0 <= trace < 1.0:
            raise ValueError(f"trace must be 'kernel', 'spikes' or a decay in [0, 1); got "
                             f"{trace!r}")
        self.layer, self.lif, self.trace = layer, lif, trace
        self.n, self.n_in = layer.out_features, layer.in_features
        self.P = self.n_in + (layer.bias is not None) + (self.n if self.recurrent else 0)
        w = layer.weight
        self.backend = resolve_backend(backend, lif.params(), w.dtype, w.device,
                                       "this three-factor layer")
        self.zero_grad()

    def zero_grad(self) -> None:
        w = self.layer.weight
        self._acc = torch.zeros(self.n, self.P, dtype=w.dtype, device=w.device)

    def parameters(self) -> Dict[str, Tensor]:
        out = {"weight": self.layer.weight}
        if self.layer.bias is not None:
            out["bias"] = self.layer.bias
        if self.recurrent is not None:
            out["w_rec"] = self.recurrent.weight
        return out

    def init_state(self, batch: int) -> ThreeFactorState:
        p = self.lif.params()
        w = self.layer.weight
        z = lambda *s: torch.zeros(*s, dtype=w.dtype, device=w.device)  # noqa: E731
        syn = p.decay_syn is not None
        return ThreeFactorState(LIFState(z(batch, self.n), z(batch, self.n) if syn else None),
                                z(batch, self.n), z(batch, self.P),
                                z(batch, self.P) if syn and self.trace == "kernel" else None)

    @torch.no_grad()
    def forward(self, x: Tensor, state: Optional[ThreeFactorState] = None
                ) -> Tuple[Tensor, ThreeFactorState, Tensor, Tensor]:
        """One step of the layer: ``x [B, N_in] -> (z [B, N], state, pre [B, P], post [B, N])``.

        ``pre`` and ``post`` are two of the three factors; the error comes from ``z``.
        """
        check_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x must have shape [B, {self.n_in}] (one step), got {list(x.shape)}")
        if state is None:
            state = self.init_state(x.shape[0])
        p = self.lif.params()
        current = F.linear(x, self.layer.weight, self.layer.bias)
        if self.recurrent is not None:
            current = current + F.linear(state.z, self.recurrent.recurrent_weight())
        parts = [x]
        if self.layer.bias is not None:
            parts.append(torch.ones_like(x[:, :1]))
        if self.recurrent is not None:
            parts.append(state.z)
        xhat = torch.cat(parts, 1) if len(parts) > 1 else x           # [B, P]
        z, neuron, pre, pre_i, post = lif_trace_step(current, xhat, state.neuron, state.pre,
                                                     state.pre_i, p, self.trace, self.backend)
        return z, ThreeFactorState(neuron, z, pre, pre_i), pre, post

    def accumulate(self, factors: Factors) -> None:
        """Add this step's ``outer()`` to the gradient estimate (``pre [B, P]``, ``post`` and
        ``error [B, N]``)."""
        if self.backend == "numba":
            # one in-place BLAS call (see three_factor_fused: faster than a compiled loop)
            self._acc.addmm_((factors.error * factors.post).t(), factors.pre)
        else:
            self._acc += factors.outer()

    def gradients(self) -> Dict[str, Tensor]:
        acc, out = self._acc, {"weight": self._acc[:, :self.n_in].clone()}
        col = self.n_in
        if self.layer.bias is not None:
            out["bias"] = acc[:, col].clone()
            col += 1
        if self.recurrent is not None:
            g = acc[:, col:col + self.n].clone()
            out["w_rec"] = g if self.recurrent.autapses else g * self.recurrent.mask
        return out

    def flush(self) -> Dict[str, Tensor]:
        """Write the accumulated estimate into ``.grad`` (overwriting), clear it, return it."""
        grads = self.gradients()
        for name, p in self.parameters().items():
            p.grad = grads[name].detach().clone()
        self.zero_grad()
        return grads

    @torch.no_grad()
    def apply(self, factors: Factors, lr: float) -> None:
        """The local update in place: ``W -= lr * outer()`` (what an on-chip learner does
        every step; the factors are all it needs)."""
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        dw = factors.outer()
        self.layer.weight -= lr * dw[:, :self.n_in]
        col = self.n_in
        if self.layer.bias is not None:
            self.layer.bias -= lr * dw[:, col]
            col += 1
        if self.recurrent is not None:
            g = dw[:, col:col + self.n]
            if not self.recurrent.autapses:
                g = g * self.recurrent.mask
            self.recurrent.weight -= lr * g
