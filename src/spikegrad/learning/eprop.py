"""e-prop: forward-only, online gradients for recurrent networks of LIF neurons.

Bellec et al. (2020), "A solution to the learning dilemma for recurrent networks of spiking
neurons", Nat. Commun. 11:3625. The network is the one spikegrad builds from modules::

    I_t = W_in x_t (+ b_in) + W_rec z_{t-1}              (W_rec only for nn.Recurrent)
    u_t, z_t, v_t = one LIF step of I_t                  (docs/conventions.md: integrate, fire,
                                                          reset, all in step t)
    y_t = LI readout of W_out z_t (+ b_out)              (low-pass, decay kappa)
    E   = loss_scale * 1/2 sum_t ||y_t - y*_t||^2  +  reg/2 sum_j (r_j - r*)^2

with ``r_j`` the mean spike count per step of neuron ``j`` over batch and time (spikes/step:
``r* = f_Hz * dt_s``). For every synapse ``(j <- p)`` whose presynaptic value at step ``t`` is
``xhat_p(t)`` (an input ``x_t``, the constant 1 of a bias, or a spike ``z_{t-1}``), e-prop keeps

    q_t    = du_t/dW  = a_mem eps_{t-1} + g ihat_t      ihat: xhat through the synaptic filter
    eps_t  = dv_t/dW  = D_t q_t                         D_t = dv_t/du_t (the reset's slope)
    e_t    = psi_t q_t                                  psi_t = phi(u_t - theta): the surrogate
    ebar_t = readout kernel applied to e_t               (the readout's own integrate step)

and accumulates ``dE/dW_jp = sum_t L_j(t) ebar_jp(t)`` with the learning signal
``L_j(t) = sum_k B_jk (y_k(t) - y*_k(t))``. ``B = W_out^T`` (symmetric feedback) makes this
the exact gradient when the only path from ``W`` to ``E`` is the neuron's own dynamics (a
feed-forward layer; tested to 1e-10 in float64); with recurrence e-prop drops the paths
through other neurons' spikes. ``B`` may also be a fixed random matrix (random e-prop) or
one that receives the same updates as ``W_out^T`` plus a decay on both (adaptive e-prop,
Kolen-Pollack style). The regulariser's e-prop gradient is ``reg (r_j - r*) mean_{b,t} e_t``
(the e-prop tutorial code).

ALIF (:class:`spikegrad.nn.ALIF`, threshold ``A_t = theta + beta a_{t-1}``, ``a_t = rho
a_{t-1} + z_t``) adds the adaptation eligibility vector ``eps_a = da_t/dW`` (per synapse)::

    e_t      = psi_t (q_t - beta eps_a_{t-1})           psi_t = phi(u_t - A_t)
    eps_a_t  = rho eps_a_{t-1} + e_t

and its absolute refractory period (``u_t = v_{t-1}``, no spike, ``psi = 0`` while
refractory); the relative refractory current and an attached reset are not supported.

With the default ``reset="subtract"`` and ``detach_reset=True`` (``D_t = 1``) and scalar
decays the traces factorise, ``e_t = psi_j(t) * xbar_p(t)``, and ``xbar`` is one vector per
presynaptic unit; otherwise (``to_value``, ``detach_reset=False``, per-neuron decays) ``eps``
is kept per synapse. Memory is ``O(B N P)`` whatever the sequence length: no step is stored.
Weights can be updated every ``update_every`` steps (online) or once per sequence.

Only weights and biases learn; neuron constants (decays, thresholds) are left as they are.

Example:
    >>> import torch, spikegrad as sg
    >>> from spikegrad.learning import EProp
    >>> net = sg.nn.Sequential(sg.nn.Linear(3, 8, bias=False),
    ...                        sg.nn.Recurrent(sg.nn.LIF(8), autapses=False),
    ...                        sg.nn.Linear(8, 1, bias=False), sg.nn.LI(1))
    >>> learner = EProp.from_sequential(net, feedback="symmetric")
    >>> ys, _ = learner.run(torch.rand(20, 2, 3), torch.zeros(20, 2, 1))
    >>> ys.shape, net[0].weight.grad.shape
    (torch.Size([20, 2, 1]), torch.Size([8, 3]))
"""

from __future__ import annotations

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import nn as sgnn
from .._validate import check_choice, check_sequence, check_tensor
from ..functional.leaky import LIParams, LIState, integrate
from ..functional.adaptation import ALIFState, adaptive_threshold
from ..functional.lif import LIFParams, LIFState, reset
from ..functional.refractory import after_spike, clamp, free_mask, has_relative

__all__ = ["FEEDBACK", "EProp", "EPropState", "reset_slope", "cosine_similarity"]

FEEDBACK = ("symmetric", "random", "adaptive")


class EPropState(NamedTuple):
    """Everything e-prop carries from step to step (no history). ``B`` batch, ``N`` hidden
    neurons, ``P`` presynaptic units of the hidden layer (inputs, bias, recurrent spikes),
    ``Q`` presynaptic units of the readout (hidden spikes, bias)."""

    neuron: object            # hidden LIFState / ALIFState after step t
    z: Tensor                 # [B, N] spikes of step t (the recurrent input of step t+1)
    readout: LIState          # readout state; readout.v is y_t [B, K]
    pre_i: Optional[Tensor]   # [B, P] presynaptic values through the synaptic filter, or None
    eps: Tensor               # [B, P] (factorised) or [B, N, P]: dv_t/dW
    eps_a: Optional[Tensor]   # [B, N, P]: da_t/dW of ALIF's adaptation, or None for LIF
    ebar: Tensor              # [B, N, P]: eligibility traces through the readout kernel
    ebar_i: Optional[Tensor]  # readout synaptic stage of ebar, or None
    zbar: Tensor              # [B, Q]: readout presynaptic values through the readout kernel
    zbar_i: Optional[Tensor]  # readout synaptic stage of zbar, or None
    count: Tensor             # [N]: spikes so far in this sequence (summed over batch)
    steps: int                # steps so far in this sequence


def reset_slope(u: Tensor, z: Tensor, psi: Tensor, p: LIFParams) -> Optional[Tensor]:
    """``D_t = dv_t/du_t`` of the reset (docs/conventions.md), or None where it is 1.

    ``u`` membrane before reset, ``z`` spikes, ``psi = phi(u - theta)``; all ``[B, N]``.
    """
    if p.reset == "none" or (p.reset == "subtract" and p.detach_reset):
        return None
    if p.reset == "subtract":
        return 1.0 - p.threshold * psi
    if p.detach_reset:
        return 1.0 - z
    return 1.0 - z - psi * (u - p.v_reset)


def cosine_similarity(a: Dict[str, Tensor], b: Dict[str, Tensor]) -> float:
    """Cosine similarity of two gradients given as ``{name: tensor}`` (all entries
    flattened and concatenated, in the order of ``a``'s keys)."""
    va = torch.cat([a[k].flatten() for k in a])
    vb = torch.cat([b[k].flatten() for k in a])
    return float(torch.dot(va, vb) / (va.norm() * vb.norm()).clamp_min(1e-300))


def _scalar(x) -> bool:
    return not isinstance(x, Tensor) or x.numel() == 1


def _per_neuron(x, n: int, dtype: torch.dtype):
    """A per-neuron constant ``[N]`` as ``[N, 1]`` (so it broadcasts over ``[B, N, P]``), in
    the working dtype (a float64 buffer must not promote float32 traces)."""
    if not isinstance(x, Tensor):
        return x
    x = x.to(dtype) if x.dim() else x
    return x.reshape(n, 1) if x.numel() == n and n > 1 else x


class EProp:
    """e-prop learner for ``Linear -> LIF or Recurrent(LIF) -> Linear -> LI``.

    Args:
        w_in: the input :class:`spikegrad.nn.Linear` (``[N, N_in]``, optional bias).
        hidden: an :class:`spikegrad.nn.LIF` (feed-forward) or :class:`spikegrad.nn.Recurrent`
            wrapping one (its ``autapses=False`` mask is respected).
        w_out: the readout :class:`spikegrad.nn.Linear` (``[K, N]``, optional bias).
        readout: the :class:`spikegrad.nn.LI` readout; its decays must be scalars.
        feedback: ``"symmetric"`` (``B = W_out^T``, read at every step), ``"random"`` (fixed
            ``B ~ N(0, 1/N)`` as in the e-prop tutorial) or ``"adaptive"`` (starts random,
            then gets ``W_out``'s gradient, transposed, plus ``feedback_decay * B``; see
            :meth:`flush`).
        reg: firing-rate regularisation coefficient (0 switches it off).
        rate_target: target mean spikes per step ``r*`` (``f_Hz * dt_s``, e.g. 0.01 for
            10 Hz at 1 ms).
        loss_scale: the output loss is ``loss_scale / 2 * sum (y - y*)^2`` (the paper: 1).
        feedback_lr, feedback_decay: SGD rate of ``B`` and the decay added to both
            ``W_out``'s and ``B``'s gradient (adaptive feedback only).
        generator: RNG for the random feedback matrix.

    Shapes: ``xs [T, B, N_in]``, targets ``[T, B, K]``; outputs ``[T, B, K]``.
    """

    def __init__(self, w_in: sgnn.Linear, hidden, w_out: sgnn.Linear, readout: sgnn.LI, *,
                 feedback: str = "symmetric", reg: float = 0.0, rate_target: float = 0.0,
                 loss_scale: float = 1.0, feedback_lr: float = 1e-3,
                 feedback_decay: float = 0.0, generator: Optional[torch.Generator] = None):
        if not isinstance(w_in, torch.nn.Linear):
            raise TypeError(f"w_in must be a spikegrad.nn.Linear, got {type(w_in).__name__}")
        if not isinstance(w_out, torch.nn.Linear):
            raise TypeError(f"w_out must be a spikegrad.nn.Linear, got {type(w_out).__name__}")
        if isinstance(hidden, sgnn.Recurrent):
            lif, self.recurrent = hidden.neuron, hidden
        else:
            lif, self.recurrent = hidden, None
        if type(lif) not in (sgnn.LIF, sgnn.IF, sgnn.ALIF):
            raise TypeError("hidden must be a spikegrad.nn.LIF, nn.ALIF or nn.Recurrent of "
                            f"one, got {type(lif).__name__}"
                            + (" inside Recurrent" if self.recurrent is not None else ""))
        self.adaptive = isinstance(lif, sgnn.ALIF)
        if self.adaptive:
            pa = lif.params()
            if has_relative(pa.refractory) or not pa.lif.detach_reset:
                raise ValueError("e-prop for ALIF supports the absolute refractory period and "
                                 "a detached reset; got ref_strength > 0 or detach_reset=False "
                                 "(their gradient couples the membrane and adaptation traces)."
                                 " Use ref_strength=0 and detach_reset=True")
        if not isinstance(readout, sgnn.LI):
            raise TypeError(f"readout must be a spikegrad.nn.LI, got {type(readout).__name__}")
        n = lif.features[0]
        if len(lif.features) != 1 or w_in.out_features != n or w_out.in_features != n:
            raise ValueError(f"shapes do not chain: w_in {tuple(w_in.weight.shape)}, hidden "
                             f"{lif.features}, w_out {tuple(w_out.weight.shape)}; need "
                             "w_in [N, N_in], hidden (N,), w_out [K, N]")
        if readout.features != (w_out.out_features,):
            raise ValueError(f"readout has {readout.features} neurons but w_out has "
                             f"{w_out.out_features} outputs")
        self.w_in, self.lif, self.w_out, self.readout = w_in, lif, w_out, readout
        self.feedback = check_choice(feedback, "feedback", FEEDBACK)
        for name, val in (("reg", reg), ("rate_target", rate_target),
                          ("feedback_lr", feedback_lr), ("feedback_decay", feedback_decay)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not val >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {val!r}")
        if isinstance(loss_scale, bool) or not isinstance(loss_scale, (int, float)) \
                or not loss_scale > 0:
            raise ValueError(f"loss_scale must be a number > 0, got {loss_scale!r}")
        self.reg, self.rate_target = float(reg), float(rate_target)
        self.loss_scale = float(loss_scale)
        self.feedback_lr, self.feedback_decay = float(feedback_lr), float(feedback_decay)
        self.n, self.n_in, self.k = n, w_in.in_features, w_out.out_features
        self.P = self.n_in + (w_in.bias is not None) + (n if self.recurrent is not None else 0)
        self.Q = n + (w_out.bias is not None)
        w = w_out.weight
        if feedback == "symmetric":
            self.B = None
        else:
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            self.B = (torch.randn(n, self.k, generator=g, dtype=torch.float64)
                      / math.sqrt(n)).to(w.dtype)
        self.zero_grad()

    @classmethod
    def from_sequential(cls, model: sgnn.Sequential, **kwargs) -> "EProp":
        """Build from ``Sequential(Linear, LIF | Recurrent(LIF), Linear, LI)``."""
        if not isinstance(model, sgnn.Sequential) or len(model) != 4:
            raise TypeError("from_sequential expects spikegrad.nn.Sequential(Linear, "
                            "LIF or Recurrent(LIF), Linear, LI); got "
                            f"{type(model).__name__} with layers "
                            f"{[type(m).__name__ for m in getattr(model, 'layers', [])]}")
        return cls(*model.layers, **kwargs)

    # --- parameters -------------------------------------------------------------------------

    def parameters(self) -> Dict[str, Tensor]:
        """The tensors e-prop computes gradients for, by name."""
        out = {"w_in": self.w_in.weight}
        if self.w_in.bias is not None:
            out["b_in"] = self.w_in.bias
        if self.recurrent is not None:
            out["w_rec"] = self.recurrent.weight
        out["w_out"] = self.w_out.weight
        if self.w_out.bias is not None:
            out["b_out"] = self.w_out.bias
        return out

    def feedback_matrix(self) -> Tensor:
        """``B [N, K]``: the matrix that maps output errors to learning signals."""
        return self.w_out.weight.detach().t() if self.B is None else self.B

    def state_dict(self) -> Dict[str, Optional[Tensor]]:
        """The learner's own state: the feedback matrix ``B`` (None for symmetric feedback),
        for checkpoints (an adaptive ``B`` changes as it learns)."""
        return {"B": None if self.B is None else self.B.clone()}

    def load_state_dict(self, state: Dict[str, Optional[Tensor]]) -> None:
        """Restore :meth:`state_dict`; ValueError if it belongs to another feedback mode or
        shape."""
        b = state.get("B") if isinstance(state, dict) else None
        if (b is None) != (self.B is None) or (b is not None and b.shape != self.B.shape):
            want = "no B (symmetric feedback)" if self.B is None else f"B {list(self.B.shape)}"
            got = "no B" if b is None else f"B {list(b.shape)}"
            raise ValueError(f"e-prop state has {got}, but this learner ({self.feedback} "
                             f"feedback) needs {want}")
        self.B = None if b is None else b.to(self.B.dtype).clone()

    def zero_grad(self) -> None:
        """Clear the accumulated gradients (not the neurons' state)."""
        w = self.w_out.weight
        self._acc_w = torch.zeros(self.n, self.P, dtype=w.dtype, device=w.device)
        self._acc_out = torch.zeros(self.k, self.Q, dtype=w.dtype, device=w.device)
        self._acc_e = torch.zeros(self.n, self.P, dtype=w.dtype, device=w.device)
        self.loss_sum = 0.0

    def accumulators(self) -> Tuple[Tensor, Tensor, Tensor]:
        """The live gradient accumulators that :meth:`step` adds into: hidden ``[N, P]``,
        readout ``[K, Q]`` and the summed eligibility traces ``[N, P]`` of the regulariser
        (new tensors after every :meth:`zero_grad`). For compiled steps that write them in
        place (:class:`spikegrad.learning.StreamingEProp`)."""
        return self._acc_w, self._acc_out, self._acc_e

    # --- dynamics ---------------------------------------------------------------------------

    def _params(self):
        p, po = self.lif.params(), self.readout.params()
        if not (_scalar(po.decay_mem) and (po.decay_syn is None or _scalar(po.decay_syn))):
            raise ValueError("e-prop filters the eligibility traces with the readout kernel, "
                             "which must be the same for every output: use a readout LI with "
                             "learn_tau=False")
        return p, po

    def _factorised(self, p) -> bool:
        if self.adaptive:
            if p.refractory.n_ref > 0:
                return False
            p = p.lif
        return (reset_slope(torch.zeros(()), torch.zeros(()), torch.zeros(()), p) is None
                and _scalar(p.decay_mem) and (p.decay_syn is None or _scalar(p.decay_syn)))

    def init_state(self, batch: int) -> EPropState:
        """Zero state for ``batch`` sequences."""
        pn, po = self._params()
        w = self.w_out.weight
        z = lambda *s: torch.zeros(*s, dtype=w.dtype, device=w.device)  # noqa: E731
        n, P, Q, B = self.n, self.P, self.Q, batch
        p = pn.lif if self.adaptive else pn
        syn = p.decay_syn is not None
        rsyn = po.decay_syn is not None
        eps = z(B, P) if self._factorised(pn) else z(B, n, P)
        if self.adaptive:
            neuron = ALIFState(z(B, n), z(B, n), z(B, n) if syn else None,
                               z(B, n) if pn.refractory.n_ref > 0 else None, None)
        else:
            neuron = LIFState(z(B, n), z(B, n) if syn else None)
        return EPropState(neuron, z(B, n),
                          LIState(z(B, self.k), z(B, self.k) if rsyn else None),
                          z(*eps.shape) if syn else None, eps,
                          z(B, n, P) if self.adaptive else None, z(B, n, P),
                          z(B, n, P) if rsyn else None, z(B, Q), z(B, Q) if rsyn else None,
                          z(n), 0)

    def _presyn(self, x: Tensor, z_prev: Tensor) -> Tensor:
        parts = [x]
        if self.w_in.bias is not None:
            parts.append(torch.ones_like(x[:, :1]))
        if self.recurrent is not None:
            parts.append(z_prev)
        return torch.cat(parts, 1) if len(parts) > 1 else x  # [B, P]

    @torch.no_grad()
    def step(self, x: Tensor, target: Tensor, state: Optional[EPropState] = None
             ) -> Tuple[Tensor, EPropState]:
        """One time step: simulate, update the traces, accumulate the gradient.

        Args:
            x: input ``[B, N_in]`` at step t.
            target: target output ``[B, K]`` at step t.
            state: the previous :class:`EPropState`, or None for zeros.

        Returns:
            ``(y_t [B, K], state)``. Gradients accumulate inside the learner until
            :meth:`flush`.
        """
        self._check_step(x, target)
        if state is None:
            state = self.init_state(x.shape[0])
        pn, po = self._params()
        p = pn.lif if self.adaptive else pn
        s = state.neuron
        # forward dynamics: the library's own pieces (integrate, clamp, reset) in its order
        current = F.linear(x, self.w_in.weight, self.w_in.bias)
        if self.recurrent is not None:
            current = current + F.linear(state.z, self.recurrent.recurrent_weight())
        u, i = integrate(current, s.v, s.i, p)
        free = None
        if self.adaptive:
            free = free_mask(s.ref)
            u = clamp(u, s.v, free)
            theta = adaptive_threshold(s, pn)
        else:
            theta = p.threshold
        zt = (u - theta > 0).to(u.dtype)                              # H(0) = 0
        psi = p.surrogate.grad(u - theta)                             # [B, N]
        if free is not None:
            zt, psi = zt * free, psi * free
        v = reset(u, zt, p)
        d = reset_slope(u, zt, psi, p)
        eps, pre_i, e, eps_a = self._eligibility(x, state, p, pn, psi, free, d)
        # readout and its kernel applied to the traces
        zq = zt if self.w_out.bias is None else torch.cat([zt, torch.ones_like(zt[:, :1])], 1)
        y, yi = integrate(F.linear(zt, self.w_out.weight, self.w_out.bias), state.readout.v,
                          state.readout.i, po)
        ebar, ebar_i = integrate(e, state.ebar, state.ebar_i, po)
        zbar, zbar_i = integrate(zq, state.zbar, state.zbar_i, po)
        # learning signal and gradient accumulation (sum over the batch)
        err = self.loss_scale * (y - target)                          # [B, K] = dE/dy_t
        learn = err @ self.feedback_matrix().t()                      # [B, N]
        self._acc_w += torch.einsum("bj,bjp->jp", learn, ebar)
        self._acc_out += err.t() @ zbar
        if self.reg:
            self._acc_e += e.sum(0)
        self.loss_sum += 0.5 * self.loss_scale * float((y - target).pow(2).sum())
        if self.adaptive:
            ref, _ = after_spike(zt, s.ref, None, free, pn.refractory)
            neuron = ALIFState(v, pn.decay_adapt * s.a + zt, i, ref, None)
        else:
            neuron = LIFState(v, i)
        return y, EPropState(neuron, zt, LIState(y, yi), pre_i, eps, eps_a, ebar, ebar_i,
                             zbar, zbar_i, state.count + zt.sum(0), state.steps + 1)

    def _check_step(self, x: Tensor, target: Tensor) -> None:
        check_tensor(x, "x")
        check_tensor(target, "target")
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x must have shape [B, {self.n_in}] (one step), got {list(x.shape)}")
        if target.shape != (x.shape[0], self.k):
            raise ValueError(f"target must have shape [B, K] = [{x.shape[0]}, {self.k}], got "
                             f"{list(target.shape)}")

    def _eligibility(self, x: Tensor, state: EPropState, p, pn, psi: Tensor,
                     free: Optional[Tensor], d: Optional[Tensor]):
        """This step's eligibility: ``(eps, pre_i, e, eps_a)``, with ``e = dz_t/dW`` the
        eligibility trace ``[B, N, P]`` and ``eps``/``eps_a`` the vectors carried on."""
        # eligibility vectors: q = du_t/dW, eps = dv_t/dW (integrate == the neuron's kernel)
        xhat = self._presyn(x, state.z)                               # [B, P]
        if state.eps.dim() == 2:
            q, pre_i = integrate(xhat, state.eps, state.pre_i, p)     # [B, P], factorised
            eps = q
            q3 = q.unsqueeze(1)                                       # [B, 1, P]
        else:
            syn = None if p.decay_syn is None else _per_neuron(p.decay_syn, self.n, psi.dtype)
            kp = LIParams(_per_neuron(p.decay_mem, self.n, psi.dtype), syn, p.scale_input)
            q3, pre_i = integrate(xhat.unsqueeze(1), state.eps, state.pre_i, kp)  # [B, N, P]
            if free is not None:      # refractory: u_t = v_{t-1}, so du_t/dW = eps_{t-1}
                f3 = free.unsqueeze(2)
                q3 = f3 * q3 + (1.0 - f3) * state.eps
            eps = q3 if d is None else d.unsqueeze(2) * q3
        if self.adaptive:
            # ALIF: dz/dW = psi (q - beta eps_a); eps_a = da_t/dW = rho eps_a + dz/dW
            beta = _per_neuron(pn.beta_adapt, self.n, psi.dtype)
            e = psi.unsqueeze(2) * (q3 - beta * state.eps_a)          # [B, N, P]
            eps_a = _per_neuron(pn.decay_adapt, self.n, psi.dtype) * state.eps_a + e
        else:
            e = psi.unsqueeze(2) * q3                                 # [B, N, P]
            eps_a = None
        return eps, pre_i, e, eps_a

    def gradients(self, state: EPropState) -> Dict[str, Tensor]:
        """The gradient accumulated since the last :meth:`zero_grad`, by parameter name
        (the regulariser uses the rate of this sequence so far, ``state.count``)."""
        acc = self._acc_w.clone()
        if self.reg and state.steps:
            nb = state.steps * state.z.shape[0]
            rate = state.count / nb                                   # [N] spikes per step
            acc += self.reg * (rate - self.rate_target).unsqueeze(1) * self._acc_e / nb
        out, col = {}, 0
        out["w_in"] = acc[:, col:col + self.n_in]
        col += self.n_in
        if self.w_in.bias is not None:
            out["b_in"] = acc[:, col]
            col += 1
        if self.recurrent is not None:
            g = acc[:, col:col + self.n]
            out["w_rec"] = g if self.recurrent.autapses else g * self.recurrent.mask
        out["w_out"] = self._acc_out[:, :self.n].clone()
        if self.w_out.bias is not None:
            out["b_out"] = self._acc_out[:, self.n].clone()
        if self.feedback == "adaptive" and self.feedback_decay:
            out["w_out"] += self.feedback_decay * self.w_out.weight.detach()
        return out

    def flush(self, state: EPropState) -> Dict[str, Tensor]:
        """Write the accumulated gradient into the parameters' ``.grad`` (overwriting it),
        update an adaptive feedback matrix, clear the accumulators, and return the gradient.
        Call ``optimizer.step()`` after it."""
        grads = self.gradients(state)
        params = self.parameters()
        for name, g in grads.items():
            params[name].grad = g.detach().clone()
        if self.feedback == "adaptive":
            # B gets W_out's gradient (transposed) and its own decay: with SGD at the same rate
            # on both, B - W_out^T shrinks by (1 - lr * decay) per update (Kolen-Pollack)
            g_b = self._acc_out[:, :self.n].t() + self.feedback_decay * self.B
            self.B -= self.feedback_lr * g_b
        self.zero_grad()
        return grads

    def run(self, xs: Tensor, targets: Tensor, state: Optional[EPropState] = None, *,
            optimizer: Optional[torch.optim.Optimizer] = None,
            update_every: Optional[int] = None, record: bool = True
            ) -> Tuple[Optional[Tensor], EPropState]:
        """Run a sequence step by step.

        Args:
            xs: inputs ``[T, B, N_in]``; targets: ``[T, B, K]``.
            state: initial state or None.
            optimizer: applied after every flush (its ``step()``), if given.
            update_every: flush (and step the optimizer) every this many steps: online
                learning; None flushes once, at the end of the sequence.
            record: return the outputs ``[T, B, K]`` (``False`` keeps memory independent of
                ``T``, returning None).

        Returns:
            ``(ys or None, final state)``. After it the gradient of the last window is in
            the parameters' ``.grad``.

        This is the torch reference, step by step. The compiled step runs the same from a
        zero state as :class:`~spikegrad.learning.StreamingEProp` with ``batch=B`` and
        ``rate_window="stream"``: its ``run`` on each window, then ``flush`` and the
        optimizer (tested equal in float64).
        """
        check_sequence(xs, "xs", (self.n_in,))
        check_sequence(targets, "targets", (self.k,))
        if targets.shape[:2] != xs.shape[:2]:
            raise ValueError(f"targets {list(targets.shape)} must match xs {list(xs.shape)} in "
                             "[T, B]")
        if update_every is not None and (isinstance(update_every, bool) or not
                                         isinstance(update_every, int) or update_every < 1):
            raise ValueError(f"update_every must be an int >= 1 or None, got {update_every!r}")
        ys = [] if record else None
        T = xs.shape[0]
        for t in range(T):
            # indexing (not unbind): no list of T views, so memory stays independent of T
            y, state = self.step(xs[t], targets[t], state)
            if record:
                ys.append(y)
            if (update_every is not None and (t + 1) % update_every == 0) or t + 1 == T:
                self.flush(state)
                if optimizer is not None:
                    optimizer.step()
        return (torch.stack(ys) if record else None), state
