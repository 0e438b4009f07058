"""Multi-compartment neurons: K leaky dendritic branches with a thresholded non-linearity
(its own surrogate) coupled to a spiking soma. K = 1 is the two-compartment neuron.

One step t, for neuron n and branch k (``x_t [B, N, K]`` is the synaptic input of each
branch; the soma gets no direct input)::

    d_t[k]  = a_d[k] * d_{t-1}[k] + g_d[k] * x_t[k]          g_d = 1 - a_d if scale_input else 1
    s_t[k]  = H(d_t[k] - theta_d)                            dendritic spike / plateau;
                                                             backward: phi_d(d_t - theta_d)
    I_t     = sum_k ( c[k] * s_t[k] + g[k] * d_t[k] )        active + passive coupling
    z_t, soma_t = soma_step(I_t, soma_{t-1})                 LIF or ALIF soma (its own surrogate)

The dendritic potential is not reset by its spike: ``s`` stays 1 while ``d`` is above
``theta_d`` (a plateau), so a long branch time constant ``tau_d`` turns a burst of input into a
lasting, binary memory (the mechanism the delayed XOR task needs; cf. the dendritic
heterogeneity of Zheng et al. 2024). With ``detach_dend=True`` the dendritic spike carries no
gradient: every gradient reaching a branch flows through the passive coupling ``g`` alone,
while the coupling ``c`` still learns from the spike's forward value. Gradients w.r.t. the
dendritic inputs therefore lose exactly the term ``dL/dI_t * c[k] * phi_d(d_t[k] - theta_d)``
at each step (and what it feeds back through ``d``'s leak).

State :class:`DendriteState` ``(d [B, N, K], soma)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .. import surrogate as _surrogate
from .._validate import (ParamCheck, check_decay, check_sequence, check_state_like,
                         check_state_type, check_tensor)
from ..kernels import registry
from ..kernels.registry import Call
from ..surrogate import Surrogate, spike
from . import adaptation, leaky, lif
from .leaky import Scalar
from .scan import scan, scan_trace


class DendriteParams(NamedTuple):
    """Branch parameters broadcast against ``[B, N, K]`` (per-branch tensors ``[N, K]``);
    ``soma``: :class:`LIFParams` or :class:`ALIFParams` of the soma."""

    decay_dend: Scalar = 0.9
    threshold_dend: Scalar = 1.0
    coupling: Scalar = 1.0
    passive: Scalar = 0.0
    scale_input: bool = False
    detach_dend: bool = False
    surrogate_dend: Surrogate = _surrogate.get("fast_sigmoid")
    soma: Any = lif.LIFParams()


class DendriteState(NamedTuple):
    """``d [B, N, K]`` the dendritic potentials, ``soma`` the soma's :class:`LIFState` or
    :class:`ALIFState` (``[B, N]`` tensors)."""

    d: Tensor   # dendritic potentials [B, N, K]
    soma: Any   # LIFState or ALIFState [B, N]


def _soma_step(p):
    if isinstance(p, adaptation.ALIFParams):
        return adaptation.alif_update
    if isinstance(p, lif.LIFParams):
        return lif.lif_update
    raise TypeError(f"DendriteParams.soma must be LIFParams or ALIFParams, got "
                    f"{type(p).__name__}")


def dendrite_currents(d: Tensor, p: DendriteParams) -> Tuple[Tensor, Tensor]:
    """``(s, I)``: dendritic spikes ``[B, N, K]`` and the soma current ``[B, N]``."""
    s = spike(d - p.threshold_dend, p.surrogate_dend)
    if p.detach_dend:
        s = s.detach()
    return s, (p.coupling * s + p.passive * d).sum(-1)


def _dendrite_step(x: Tensor, state: DendriteState, p: DendriteParams
                   ) -> Tuple[Tensor, DendriteState]:
    g = (1.0 - p.decay_dend) if p.scale_input else 1.0
    d = p.decay_dend * state.d + g * x
    _, current = dendrite_currents(d, p)
    z, soma = _soma_step(p.soma)(current, state.soma, p.soma)
    return z, DendriteState(d, soma)


def dendrite_update_flat(x: Tensor, state: DendriteState, p: DendriteParams
                         ) -> Tuple[Tensor, DendriteState]:
    """The step on a flattened input ``x [B, N*K]`` (for a recurrent wrapper, whose feedback
    ``W_rec [N*K, N]`` adds to every branch)."""
    return _dendrite_step(x.reshape(state.d.shape), state, p)


def initial_state(x: Tensor, p: DendriteParams) -> DendriteState:
    """Zeros for one input step ``x [B, N, K]``."""
    soma_x = x[..., 0]
    soma = (adaptation.initial_state(soma_x, p.soma) if isinstance(p.soma, adaptation.ALIFParams)
            else lif.LIFState(torch.zeros_like(soma_x),
                              torch.zeros_like(soma_x) if p.soma.decay_syn is not None else None))
    return DendriteState(torch.zeros_like(x), soma)


def prepare_state(x0: Tensor, state, p: DendriteParams, tensor_values: bool = True
                  ) -> DendriteState:
    """Checks the branch and soma constants (tensor values too with ``tensor_values``: one
    sync for all of them) and the state; returns the state, zeros for None."""
    if not isinstance(p, DendriteParams):
        raise TypeError(f"p must be DendriteParams, got {type(p).__name__}")
    _soma_step(p.soma)
    if x0.dim() < 3:
        raise ValueError(f"dendritic input xs must be [T, B, N, K] (K branches), got one step "
                         f"of shape {list(x0.shape)}")
    check = ParamCheck(shape=x0.shape, tensor_values=tensor_values)
    check_decay(p.decay_dend, "decay_dend", check)
    check.real(p.threshold_dend, "threshold_dend", low=0.0, low_open=True)
    check.real(p.coupling, "coupling")
    check.real(p.passive, "passive")
    if not isinstance(p.surrogate_dend, _surrogate.Surrogate):
        raise TypeError(f"surrogate_dend must be a spikegrad.surrogate.Surrogate, got "
                        f"{type(p.surrogate_dend).__name__}")
    soma_check = ParamCheck(shape=x0.shape[:-1], tensor_values=tensor_values)
    if isinstance(p.soma, adaptation.ALIFParams):
        adaptation.check_alif(p.soma, soma_check, "DendriteParams.soma")
    else:
        lif.check_lif(p.soma, soma_check, "DendriteParams.soma")
    check._pending += soma_check._pending   # one read for branch and soma constants
    check.done()
    if state is None:
        return initial_state(x0, p)
    check_state_type(state, DendriteState)
    check_state_like(state.d, x0, "state.d")
    soma_x = x0[..., 0]
    if isinstance(p.soma, adaptation.ALIFParams):
        adaptation.prepare_state(soma_x, state.soma, p.soma, tensor_values=False)
    else:
        lif.prepare_state(soma_x, state.soma, p.soma, tensor_values=False)
    return state


def dendrite_step(x: Tensor, state: Optional[DendriteState], p: DendriteParams = DendriteParams()
                  ) -> Tuple[Tensor, DendriteState]:
    """One step. ``x [B, N, K]`` -> ``(z [B, N], state)``. Like :func:`lif_step` it leaves the
    values inside tensor constants to :func:`dendrite_seq` (no sync per step)."""
    check_tensor(x, "x")
    if x.dim() < 3:
        raise ValueError(f"x must be [B, N, K] (K branches), got shape {list(x.shape)}")
    return _dendrite_step(x, prepare_state(x, state, p, tensor_values=False), p)


def dendrite_seq(xs: Tensor, state: Optional[DendriteState] = None,
                 p: DendriteParams = DendriteParams(), backend: str = "auto"
                 ) -> Tuple[Tensor, DendriteState]:
    """``xs [T, B, N, K] -> (zs [T, B, N], state)``.

    ``backend="reference"`` runs :func:`scan` over the step. Any other runs the sequence in
    three whole-sequence stages, since neither stage reads a later one within a step (the
    soma does not feed back into the branches): the branches are leaky integrators without
    reset (:func:`~spikegrad.functional.li_seq` over ``[T, B, N, K]``), their currents one
    elementwise expression over all steps (:func:`dendrite_currents`), and the soma an
    ordinary LIF/ALIF sequence (:func:`~spikegrad.functional.lif_seq` /
    :func:`~spikegrad.functional.alif_seq`). The integrators and the soma then run their
    fused kernels (``backend`` is passed on: ``"auto"`` picks each stage's own), and trained
    branch or soma constants, initial states and truncated BPTT are handled by those stages.
    The arithmetic per element is the step's, in its order, so the result equals the
    reference loop (tests: states and spikes, and gradients to float rounding)."""
    check_sequence(xs, "xs")
    if registry.choose(backend, Call("dendrite", xs)) == "reference":
        return scan(_dendrite_step, xs, prepare_state(xs[0], state, p), p)
    alif = isinstance(p.soma, adaptation.ALIFParams)
    if alif:  # before any stage runs: an explicit backend without an ALIF kernel
        adaptation.check_backend(backend)
    st = prepare_state(xs[0], state, p)
    ds, branches = leaky.li_seq(xs, leaky.LIState(st.d, None),
                                leaky.LIParams(decay_mem=p.decay_dend, scale_input=p.scale_input),
                                backend=backend)
    _, current = dendrite_currents(ds, p)
    if alif:
        zs, soma = adaptation.alif_seq(current, st.soma, p.soma, backend=backend)
    else:
        zs, soma = lif.lif_seq(current, st.soma, p.soma, backend=backend)
    return zs, DendriteState(branches.v, soma)


def dendrite_trace(xs: Tensor, state: Optional[DendriteState] = None,
                   p: DendriteParams = DendriteParams()) -> Tuple[Tensor, DendriteState]:
    """Like :func:`dendrite_seq` with every state stacked ``[T, ...]`` (dendrite traces)."""
    check_sequence(xs, "xs")
    return scan_trace(_dendrite_step, xs, prepare_state(xs[0], state, p), p)
