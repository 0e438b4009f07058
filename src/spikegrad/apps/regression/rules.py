"""The online rules as :class:`spikegrad.train.Trainer` learners for the regression model:
e-prop (:class:`spikegrad.learning.EProp`) and a three-factor rule with a delta-rule readout,
with the app's objective mapped onto them (see :mod:`.online`)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...functional.leaky import integrate
from ...learning import EProp, Factors, ThreeFactor, random_projection
from ...train import ObjectiveOutput
from . import core as reg
from .config import Config

__all__ = ["make_learner", "OnlineLearner", "online_learner"]


class _ThreeFactorNet:
    """The RSNN trained by the local three-factor rule (hidden) and the delta rule (readout),
    with :class:`spikegrad.learning.EProp`'s ``step`` / ``flush`` / ``run``."""

    def __init__(self, c: Config, model: reg.RegressionRSNN, loss_scale: float):
        self.model, self.loss_scale = model, loss_scale
        self.rule = ThreeFactor(model.input_layer, model.rsnn, trace="kernel")
        n, k = c.hidden, c.n_outputs
        g = torch.Generator().manual_seed(c.seed + 17)
        out = model.readout_layer
        self.B = (torch.randn(n, k, generator=g, dtype=torch.float64) / math.sqrt(n)).to(
            out.weight.dtype)
        self.acc_w = torch.zeros_like(out.weight)
        self.acc_b = None if out.bias is None else torch.zeros_like(out.bias)

    @torch.no_grad()
    def step(self, x: Tensor, target: Tensor, state: Optional[dict] = None):
        """One time step (``state`` None starts a sequence); returns ``(y [B, K], state)``."""
        out, po = self.model.readout_layer, self.model.readout.params()
        z, neuron, pre, post = self.rule.forward(x, None if state is None else state["neuron"])
        if state is None:
            def zero(t):
                return torch.zeros_like(t), (torch.zeros_like(t) if po.decay_syn is not None
                                             else None)
            state = {"y": zero(x.new_zeros(x.shape[0], out.out_features)), "zbar": zero(z),
                     "ones": zero(x.new_zeros(x.shape[0], 1))}
        y = integrate(torch.nn.functional.linear(z, out.weight, out.bias), *state["y"], po)
        zbar = integrate(z, *state["zbar"], po)
        ones = integrate(torch.ones_like(state["ones"][0]), *state["ones"], po)
        err = self.loss_scale * (y[0] - target)                              # dE/dy_t
        self.rule.accumulate(Factors(pre, post, random_projection(err, self.B)))
        self.acc_w += err.t() @ zbar[0]
        if self.acc_b is not None:
            self.acc_b += (err * ones[0]).sum(0)
        return y[0], {"neuron": neuron, "y": y, "zbar": zbar, "ones": ones}

    def flush(self, state: Optional[dict] = None) -> None:
        """Write the accumulated estimate into ``.grad`` (overwriting) and clear it."""
        self.rule.flush()
        out = self.model.readout_layer
        out.weight.grad = self.acc_w.clone()
        self.acc_w.zero_()
        if self.acc_b is not None:
            out.bias.grad = self.acc_b.clone()
            self.acc_b.zero_()

    def state_dict(self) -> dict:
        return {"B": self.B}

    def load_state_dict(self, state: dict) -> None:
        self.B = state["B"]


def make_learner(c: Config, model: reg.RegressionRSNN, batch: int):
    """The e-prop or three-factor rule of ``c.learning`` for ``model`` (the regression
    app's objective mapped as in the module docstring)."""
    T, N, K = c.n_steps, c.hidden, c.n_outputs
    dt = c.dt_ms * 1e-3
    loss_scale = 2.0 / (T * batch * K)
    if c.learning == "three_factor":
        return _ThreeFactorNet(c, model, loss_scale)
    feedback = c.learning.split("_", 1)[1]
    return EProp.from_sequential(model, feedback=feedback,
                                 reg=2.0 * c.sparsity_weight / (N * dt * dt),
                                 rate_target=c.target_rate_hz * dt, loss_scale=loss_scale,
                                 feedback_lr=c.feedback_lr, feedback_decay=c.feedback_decay,
                                 generator=torch.Generator().manual_seed(c.seed + 17))


class OnlineLearner:
    """An online rule as a :class:`spikegrad.train.Trainer` learner: it runs the sequence
    step by step and has the trainer apply the gradient every ``update_every`` steps (and at
    the end); the loss it reports is the pass's mean squared error, its metric the NMSE.
    Memory does not grow with ``T``: no output or state is kept past its step."""

    def __init__(self, rule, update_every: int, target_var: float):
        self.rule, self.update_every, self.target_var = rule, update_every, target_var

    @torch.no_grad()
    def __call__(self, model, xs: Tensor, ys: Tensor, update) -> ObjectiveOutput:
        state, sq, T = None, xs.new_zeros(()), xs.shape[0]
        for t in range(T):
            y, state = self.rule.step(xs[t], ys[t], state)
            sq += (y - ys[t]).pow(2).sum()
            if (self.update_every and (t + 1) % self.update_every == 0) or t + 1 == T:
                self.rule.flush(state)
                update()
        mse = sq / ys.numel()
        return ObjectiveOutput(mse, None, {"nmse": float(mse) / self.target_var})

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)


def online_learner(c: reg.Config, model: reg.RegressionRSNN, xs: Tensor, ys: Tensor
                   ) -> OnlineLearner:
    """The :data:`~spikegrad.apps.regression.core.LearnerFactory` of the online rules."""
    return OnlineLearner(make_learner(c, model, xs.shape[1]), c.update_every,
                         float(ys.var(unbiased=False)))
