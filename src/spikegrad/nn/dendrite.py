"""Multi-compartment (dendritic) spiking neurons; dynamics in
:mod:`spikegrad.functional.dendrite`."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .. import functional as F
from .. import surrogate as _surrogate
from .._validate import check_choice, check_int, check_positive, check_real, check_sequence
from .base import StatefulModule
from .neurons import LIF

TauLike = Union[float, Sequence[float]]


class BranchDecay(nn.Module):
    """Per-branch decays ``a_d = exp(-dt / tau_d[k])`` of shape ``[N, K]``; trained as
    ``sigmoid(rho)`` (each branch of each neuron its own)."""

    def __init__(self, tau: TauLike, dt: float, n: int, k: int, learn: bool):
        super().__init__()
        if isinstance(tau, (str, bytes)) or not isinstance(tau, (int, float, list, tuple)):
            raise TypeError(f"tau_dend must be a time constant or a sequence of one per branch, "
                            f"got {type(tau).__name__} {tau!r}")
        taus = [tau] * k if isinstance(tau, (int, float)) else list(tau)
        if len(taus) != k:
            raise ValueError(f"tau_dend must be one time constant or one per branch ({k}), got "
                             f"{len(taus)} values")
        a = torch.tensor([math.exp(-dt / check_positive(t, "tau_dend")) for t in taus],
                         dtype=torch.float64).expand(n, k).clone()
        self.learn = bool(learn)
        if self.learn:
            self.rho = nn.Parameter(torch.logit(a).to(torch.get_default_dtype()))
        else:
            # per-branch, so in the default dtype (a float64 [N, K] buffer would upcast the layer)
            self.register_buffer("value", a.to(torch.get_default_dtype()))
        self.dt = dt

    def forward(self) -> Tensor:
        return torch.sigmoid(self.rho) if self.learn else self.value

    @property
    def tau(self) -> Tensor:
        return -self.dt / torch.log(self().detach())


class DendriticLIF(StatefulModule):
    """Neurons with ``branches`` leaky dendritic compartments and an LIF soma.

    Each branch integrates its own synaptic input with time constant ``tau_dend`` (per branch),
    fires a dendritic spike/plateau ``s = H(d - theta_d)`` (surrogate ``surrogate_dend``) and
    drives the soma with ``c * s + g * d`` (active coupling ``c``, passive ``g``).

    Args:
        n: number of neurons N.
        branches: dendritic branches per neuron K (1 = two-compartment neuron).
        tau_dend: branch time constant(s): one value, or one per branch (e.g. short and long).
        threshold_dend: dendritic threshold ``theta_d``.
        coupling, passive: initial ``c`` and ``g``.
        surrogate_dend, beta_dend: the dendritic surrogate (independent of the soma's).
        detach_dend: no gradient through the dendritic spike (passive path only).
        scale_input: branch input scaled by ``1 - a_d`` (unit DC gain per branch).
        learn_dend: train per-branch ``tau_dend``, ``c`` and ``g``.
        recurrent: add recurrent weights from the soma spikes onto every branch
            (``W_rec [N*K, N]``, one step delay; :class:`spikegrad.nn.Recurrent` needs equal
            input and output sizes, which a dendritic layer does not have).
        **soma: keyword arguments of the soma :class:`LIF` (``tau_mem``, ``threshold``,
            ``reset``, ``learn_threshold``, ...). Its ``backend`` is the layer's: other than
            ``"reference"``, a feed-forward layer runs its branches and soma as whole-sequence
            fused stages (:func:`spikegrad.functional.dendrite_seq`).

    Shapes: ``xs [T, B, N*K]`` (branch-major per neuron: neuron ``j``'s branches are
    ``xs[..., j*K:(j+1)*K]``, e.g. straight from ``Linear(n_in, N*K)``) ``-> (zs [T, B, N],
    state)``; the state is ``DendriteState(d [B, N, K], LIFState)``, wrapped in a
    ``RecurrentState`` with ``recurrent=True``.

    Example:
        >>> import torch, spikegrad as sg
        >>> den = sg.nn.DendriticLIF(3, branches=2, tau_dend=(5e-3, 100e-3))
        >>> zs, state = den(torch.rand(10, 4, 6))
        >>> zs.shape, state.d.shape
        (torch.Size([10, 4, 3]), torch.Size([4, 3, 2]))
    """

    def __init__(self, n: int, branches: int = 1, *, tau_dend: TauLike = 20e-3,
                 dt: float = 1e-3, threshold_dend: float = 1.0, coupling: float = 1.0,
                 passive: float = 0.0,
                 surrogate_dend: _surrogate.SurrogateLike = "fast_sigmoid",
                 beta_dend: Optional[float] = None, detach_dend: bool = False,
                 scale_input: bool = False, learn_dend: bool = False,
                 recurrent: bool = False, init_gain: float = 1.0, **soma):
        super().__init__()
        check_int(branches, "branches")
        backend = check_choice(soma.get("backend", "auto"), "backend", F.BACKENDS)
        if recurrent and backend not in ("auto", "reference"):
            raise ValueError(f"backend={backend!r}: a recurrent dendritic layer runs the "
                             "reference loop (its soma feeds its branches within a step); "
                             "use backend='auto' or 'reference'")
        self.soma = LIF(n, dt=dt, **soma)
        if len(self.soma.features) != 1:
            raise ValueError(f"n must be an int (number of neurons), got {n!r}")
        self.n, self.branches = self.soma.features[0], branches
        self.features = (self.n * branches,)
        self.decay_dend = BranchDecay(tau_dend, dt, self.n, branches, learn_dend)
        self.threshold_dend = check_positive(threshold_dend, "threshold_dend")
        for name, value in (("coupling", coupling), ("passive", passive)):
            t = torch.full((self.n, branches), float(check_real(value, name)))
            if learn_dend:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        self.surrogate_dend = _surrogate.get(surrogate_dend, beta_dend)
        self.detach_dend = bool(detach_dend)
        self.scale_input = bool(scale_input)
        self.backend = backend
        self.weight = None
        init_gain = float(check_real(init_gain, "init_gain", low=0.0))
        if recurrent:
            bound = init_gain / math.sqrt(self.n)
            self.weight = nn.Parameter(torch.empty(self.n * branches, self.n)
                                       .uniform_(-bound, bound))

    def params(self) -> F.DendriteParams:
        return F.DendriteParams(decay_dend=self.decay_dend(), threshold_dend=self.threshold_dend,
                                coupling=self.coupling, passive=self.passive,
                                scale_input=self.scale_input, detach_dend=self.detach_dend,
                                surrogate_dend=self.surrogate_dend, soma=self.soma.params())

    def _check(self, xs: Tensor) -> Tensor:
        return check_sequence(xs, "xs", self.features,
                              owner=f"DendriticLIF({self.n}, branches={self.branches})")

    def forward(self, xs: Tensor, state=None) -> Tuple[Tensor, object]:
        """Run the dendritic neurons over a sequence (the step of
        :mod:`spikegrad.functional.dendrite`).

        Args:
            xs: the branches' synaptic inputs ``[T, B, N*K]``, branch-major per neuron
                (neuron ``j``'s branches are ``xs[..., j*K:(j+1)*K]``), in the branch
                threshold's units per step (times ``1 - a_d`` with ``scale_input``).
            state: :class:`~spikegrad.functional.DendriteState` ``(d [B, N, K], soma
                LIFState)`` to continue from (with ``recurrent=True``: a
                :class:`~spikegrad.functional.RecurrentState` around it whose ``y [B, N]`` is
                the previous soma spikes), or None for zeros.

        Returns:
            ``(zs, state)``: the somatic spikes ``zs [T, B, N]`` (0 or 1; surrogate backward)
            and the state after the last step, of the type described for ``state``.
        """
        xs = self._check(xs).unflatten(-1, (self.n, self.branches))  # [T, B, N, K]
        p = self.params()
        if self.weight is None:
            return F.dendrite_seq(xs, state, p, backend=self.backend)
        if state is None:
            state = F.RecurrentState(F.dendrite.initial_state(xs[0], p),
                                     xs.new_zeros(xs.shape[1], self.n))
        # recurrent_seq checks weight, state and constants once, before the first step
        return F.recurrent_seq(xs.flatten(-2), state,
                               F.RecurrentParams(self.weight, F.dendrite.dendrite_update_flat, p))

    def trace(self, xs: Tensor, state=None):
        """``(zs, states)`` with every step's state stacked (dendritic and soma traces);
        feed-forward layers only."""
        if self.weight is not None:
            raise ValueError("trace() is for recurrent=False layers; run the recurrent layer "
                             "with forward() instead")
        xs = self._check(xs).unflatten(-1, (self.n, self.branches))
        return F.dendrite_trace(xs, state, self.params())

    def extra_repr(self) -> str:
        return (f"{self.n}, branches={self.branches}, detach_dend={self.detach_dend}, "
                f"recurrent={self.weight is not None}")

