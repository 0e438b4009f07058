"""The online three-factor rule on the app's network, and the two
:class:`spikegrad.train.Trainer` learners that apply it: to float weights through the
optimizer, or to crossbars through their own update scheme.

One time step ``t`` of a trial (:meth:`ThreeFactorNet.step`), for each layer ``W [N, P]``
followed by LIF neurons (the equations of :class:`spikegrad.learning.ThreeFactor`)::

    u_t = a u_{t-1}' + W x_t,   z_t = H(u_t - theta),   u_t' = u_t - z_t theta
    pre_t  = a pre_{t-1} + x_t          (trace="kernel": the membrane's PSP kernel; or x_t)
    post_t = phi(u_t - theta)           (the surrogate derivative of the layer's neurons)
    dW     = -lr (e_t * post_t)^T pre_t (:meth:`spikegrad.learning.Factors.outer`)

The output layer's error is that of the count cross-entropy ``CE(s c_T, y)`` read online
from the running spike count ``c_t``: ``e_t = s (softmax(s c_t T / (t+1)) - onehot(y)) / B``
(at ``t = T-1`` it is the exact ``dCE/dz``). The hidden layer's error ``e1_t [B, H]`` is
``e_t W2`` (``symmetric``: the readout's weights, transposed), ``e_t B^T`` with a fixed random
``B [H, C]`` of the readout's initial scale (``random``, eRBP: Neftci et al. 2017), or
``R^T (R pre2_t - onehot(y)) / B`` of a fixed random local readout ``R [C, H]`` of the hidden
layer's filtered spikes (``decolle``: Kaiser et al. 2020). Nothing is kept past its step.
"""

from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...functional.lif import LIFState
from ...hardware import CrossbarLinear
from ...learning import Factors, LocalReadout, lif_trace_step, random_projection
from ...learning.three_factor_fused import resolve_backend
from ...train import ObjectiveOutput
from .config import Config
from .network import read_weight

__all__ = ["StepState", "ThreeFactorNet", "LocalLearner", "FloatWrites", "CrossbarWrites"]


class StepState(NamedTuple):
    v1: Tensor       # [B, H] hidden membranes (after reset)
    pre1: Tensor     # [B, n_in] presynaptic factor of the hidden layer
    v2: Tensor       # [B, C] output membranes
    pre2: Tensor     # [B, H] presynaptic factor of the output layer
    count: Tensor    # [B, C] output spikes so far


class ThreeFactorNet:
    """The network of :func:`~.network.build_network` run one step at a time, returning the
    three factors of both weight layers (see the module docstring).

    Args:
        c: the config (``count_scale``, ``trace``, ``n_steps``, ``local_backend``).
        model: the network; its weight layers may be float or crossbars.
        rule: ``"local_symmetric"``, ``"local_random"`` or ``"local_decolle"``.
        generator: for the fixed random feedback or local readout.
    """

    def __init__(self, c: Config, model, rule: str, generator: torch.Generator):
        self.c, self.model, self.rule = c, model, rule
        self.w1, self.lif1, self.w2, self.lif2 = model.layers
        hidden, n_classes = self.w2.in_features, self.w2.out_features
        self.feedback: Optional[Tensor] = None
        self.readout: Optional[LocalReadout] = None
        if rule == "local_random":
            bound = 1.0 / math.sqrt(hidden)               # the readout's initial scale
            self.feedback = ((torch.rand(hidden, n_classes, generator=generator,
                                         dtype=torch.float64) * 2 - 1) * bound).float()
        elif rule == "local_decolle":
            self.readout = LocalReadout(hidden, n_classes, generator)
        # each layer's neurons and trace: one compiled call per step where numba runs them
        # (c.local_backend); the current stays the layer's own read (a crossbar's included)
        self.backends = [resolve_backend(c.local_backend, lif.params(), torch.get_default_dtype(),
                                         torch.device("cpu"), f"the local rule's layer {k + 1}")
                         for k, lif in enumerate((self.lif1, self.lif2))]

    def init_state(self, batch: int) -> StepState:
        zeros = lambda n: torch.zeros(batch, n)             # noqa: E731
        return StepState(zeros(self.w1.out_features), zeros(self.w1.in_features),
                         zeros(self.w2.out_features), zeros(self.w2.in_features),
                         zeros(self.w2.out_features))

    def _layer(self, k: int, layer, lif, x: Tensor, v: Tensor, pre: Tensor):
        current = layer(x.unsqueeze(0)).squeeze(0)        # [B, N]: one read of the array
        z, neuron, pre, _, post = lif_trace_step(current, x, LIFState(v), pre, None,
                                                 lif.params(), self.c.trace, self.backends[k])
        return z, neuron.v, pre, post

    def output_error(self, count: Tensor, onehot: Tensor, t: int) -> Tensor:
        """``e_t [B, C]`` of the count cross-entropy from the running count (batch mean)."""
        s, T = self.c.count_scale, self.c.n_steps
        return s * (torch.softmax(s * count * (T / (t + 1)), 1) - onehot) / len(onehot)

    def hidden_error(self, e2: Tensor, pre2: Tensor, onehot: Tensor) -> Tensor:
        if self.rule == "local_symmetric":
            return e2 @ read_weight(self.w2)
        if self.rule == "local_random":
            return random_projection(e2, self.feedback)
        return self.readout.error(pre2, onehot)[1] / len(onehot)

    @torch.no_grad()
    def step(self, x: Tensor, onehot: Tensor, state: StepState, t: int
             ) -> Tuple[Tensor, StepState, Tuple[Factors, Factors]]:
        """``x [B, n_in]`` at step ``t`` -> ``(z2 [B, C], state, (hidden, output) factors)``."""
        z1, v1, pre1, post1 = self._layer(0, self.w1, self.lif1, x, state.v1, state.pre1)
        z2, v2, pre2, post2 = self._layer(1, self.w2, self.lif2, z1, state.v2, state.pre2)
        count = state.count + z2
        e2 = self.output_error(count, onehot, t)
        e1 = self.hidden_error(e2, pre2, onehot)
        return z2, StepState(v1, pre1, v2, pre2, count), (Factors(pre1, post1, e1),
                                                          Factors(pre2, post2, e2))

    def state_dict(self) -> dict:
        out = {}
        if self.feedback is not None:
            out["feedback"] = self.feedback
        if self.readout is not None:
            out["readout"] = self.readout.weight
        return out

    def load_state_dict(self, state: dict) -> None:
        if "feedback" in state:
            self.feedback = state["feedback"]
        if "readout" in state:
            self.readout.weight = state["readout"]


Writes = Callable[[List[Tuple[Factors, Factors]], Callable[[], None]], None]


class FloatWrites:
    """fp32 weights: the summed outer products of the buffered steps become the layers'
    ``.grad`` and the trainer's ``update()`` applies them (SGD: ``W -= lr * grad``; the
    trainer clips, guards against NaN/Inf and steps)."""

    def __init__(self, net: ThreeFactorNet):
        self.layers = [net.w1, net.w2]

    def __call__(self, steps, update) -> None:
        for k, layer in enumerate(self.layers):
            layer.weight.grad = sum(f[k].outer() for f in steps)
        update()


class CrossbarWrites:
    """Crossbars: the buffered factors go to each array's own update scheme
    (:meth:`spikegrad.hardware.CrossbarLinear.update`: rows get ``pre``, columns get
    ``error * post``) at the learning rate of the trainer's optimizer, which holds no weights
    (the conductances are the array's buffers) but carries the learning-rate schedule. The
    learner does not call ``update()``; the trainer then calls it once per batch, which steps
    nothing (its logged gradient norm is 0). A non-finite factor raises
    ``FloatingPointError`` before anything is written; the trainer still logs every epoch,
    stops on a non-finite loss and checkpoints the conductances (model buffers) with the
    learner's state."""

    def __init__(self, net: ThreeFactorNet, optimizer: torch.optim.Optimizer, scheme: str,
                 bl: int):
        self.layers: List[CrossbarLinear] = [net.w1, net.w2]
        self.optimizer, self.scheme, self.bl = optimizer, scheme, bl

    def __call__(self, steps, update) -> None:
        lr = float(self.optimizer.param_groups[0]["lr"])
        for k, xbar in enumerate(self.layers):
            pre = torch.cat([f[k].pre for f in steps])                 # [k*B, P]
            d = torch.cat([f[k].error * f[k].post for f in steps])     # [k*B, N]
            if not (torch.isfinite(pre).all() and torch.isfinite(d).all()):
                raise FloatingPointError(
                    f"non-finite three-factor update for crossbar layer {k}; nothing was "
                    "written. Lower lr_local.")
            xbar.update(pre, d, lr, scheme=self.scheme, bl=self.bl)


class LocalLearner:
    """The three-factor rule as a :class:`spikegrad.train.Trainer` learner: runs each batch's
    trial step by step and writes the update every ``update_every`` steps (and at the end)
    with ``writes`` (:class:`FloatWrites` or :class:`CrossbarWrites`). The loss it reports is
    the trial's count cross-entropy; its metric the batch accuracy."""

    def __init__(self, net: ThreeFactorNet, writes: Writes, encode, update_every: int):
        self.net, self.writes, self.encode = net, writes, encode
        self.update_every = update_every

    @torch.no_grad()
    def __call__(self, model, x: Tensor, y: Tensor, update) -> ObjectiveOutput:
        xs = self.encode(x)                                  # [T, B, n_in]; global RNG
        onehot = F.one_hot(y, self.net.w2.out_features).to(xs.dtype)
        state, steps, T = self.net.init_state(len(y)), [], xs.shape[0]
        for t in range(T):
            _, state, factors = self.net.step(xs[t], onehot, state, t)
            steps.append(factors)
            if (t + 1) % self.update_every == 0 or t + 1 == T:
                self.writes(steps, update)
                steps = []
        loss = F.cross_entropy(self.net.c.count_scale * state.count, y)
        acc = float((state.count.argmax(1) == y).float().mean())
        return ObjectiveOutput(loss, None, {"accuracy": acc, "n": len(y)})

    def state_dict(self) -> dict:
        """The fixed feedback (or local readout), and the crossbars' generator states and
        counters, so a resumed run draws the same pulses and counts all of them."""
        state = self.net.state_dict()
        xbars = self._crossbars()
        state["generators"] = [xbar.generator.get_state() for xbar in xbars]
        state["counters"] = [dict(xbar.counters) for xbar in xbars]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state)
        for xbar, g, counts in zip(self._crossbars(), state["generators"], state["counters"]):
            xbar.generator.set_state(g)
            xbar.counters = dict(counts)

    def _crossbars(self) -> List[CrossbarLinear]:
        return [m for m in (self.net.w1, self.net.w2) if isinstance(m, CrossbarLinear)]
