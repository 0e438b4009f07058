"""The online rules as :class:`spikegrad.train.Trainer` learners for the regression model:
e-prop (:class:`spikegrad.learning.EProp`) and a three-factor rule with a delta-rule readout,
with the app's objective mapped onto them (see :mod:`.online`).

``online_backend`` (config) picks how their steps run. e-prop: ``numba`` runs the pass
through :class:`spikegrad.learning.StreamingEProp` (``batch=B``, ``rate_window="stream"``),
one compiled call per :data:`CHUNK` steps, flushing at the same steps as the reference
(:meth:`EProp.step`, one torch step at a time; tested equal); ``auto`` takes it wherever
:func:`spikegrad.learning.numba_unsupported` finds nothing against the network (not ALIF,
not float16, ...). The three-factor rule's neuron step takes the same choice
(:class:`spikegrad.learning.ThreeFactor`'s ``backend``)."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ...functional.leaky import integrate
from ...learning import EProp, Factors, StreamingEProp, ThreeFactor, random_projection
from ...learning.eprop_stream import numba_unsupported
from ...learning.three_factor_fused import fused_unsupported
from ...train import ObjectiveOutput
from ..config import ConfigError
from . import core as reg
from .config import Config

__all__ = ["make_learner", "OnlineLearner", "online_learner", "CHUNK"]

#: Steps per compiled call of the e-prop pass: the outputs of one chunk are the only buffer
#: that the pass allocates, so its memory stays independent of the sequence length.
CHUNK = 64


class _ThreeFactorNet:
    """The RSNN trained by the local three-factor rule (hidden) and the delta rule (readout),
    with :class:`spikegrad.learning.EProp`'s ``step`` / ``flush`` / ``run``."""

    def __init__(self, c: Config, model: reg.RegressionRSNN, loss_scale: float):
        self.model, self.loss_scale = model, loss_scale
        if c.online_backend == "numba":  # the config's error, not the library's ValueError
            w = model.input_layer.weight
            reason = fused_unsupported(model.rsnn.neuron.params(), w.dtype, w.device)
            if reason is not None:
                raise ConfigError(f"online_backend=numba cannot run this three-factor "
                                  f"network: {reason}; use online_backend=auto or reference")
        self.rule = ThreeFactor(model.input_layer, model.rsnn, trace="kernel",
                                backend=c.online_backend)
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


def eprop_backend(rule, backend: str) -> str:
    """``"numba"`` or ``"reference"``: how :class:`OnlineLearner` runs ``rule`` for the
    config's ``online_backend`` (ConfigError when ``numba`` is asked for and cannot run)."""
    if not isinstance(rule, EProp) or backend == "reference":
        return "reference"
    reason = numba_unsupported(rule)
    if reason is None:
        return "numba"
    if backend == "numba":
        raise ConfigError(f"online_backend=numba cannot run this e-prop network: {reason}; "
                          "use online_backend=auto or reference")
    return "reference"


class OnlineLearner:
    """An online rule as a :class:`spikegrad.train.Trainer` learner: it runs the sequence
    step by step and has the trainer apply the gradient every ``update_every`` steps (and at
    the end); the loss it reports is the pass's mean squared error, its metric the NMSE.
    Memory does not grow with ``T``: no output or state is kept past its step (the compiled
    e-prop pass keeps one chunk's outputs).

    ``backend``: ``"numba"`` (e-prop only; see :func:`eprop_backend`) or ``"reference"``."""

    def __init__(self, rule, update_every: int, target_var: float,
                 backend: str = "reference"):
        self.rule, self.update_every, self.target_var = rule, update_every, target_var
        self.backend = backend

    @torch.no_grad()
    def __call__(self, model, xs: Tensor, ys: Tensor, update) -> ObjectiveOutput:
        if self.backend == "numba":
            return self._compiled(xs, ys, update)
        state, sq, T = None, xs.new_zeros(()), xs.shape[0]
        for t in range(T):
            y, state = self.rule.step(xs[t], ys[t], state)
            sq += (y - ys[t]).pow(2).sum()
            if (self.update_every and (t + 1) % self.update_every == 0) or t + 1 == T:
                self.rule.flush(state)
                update()
        return self._output(sq, ys)

    def _compiled(self, xs: Tensor, ys: Tensor, update) -> ObjectiveOutput:
        # a new stream per pass starts from the zero state, as EProp.step with state None;
        # "stream" keeps the regulariser's spike counts across flushes, as EProp.step does
        stream = StreamingEProp(self.rule, backend="numba", rate_window="stream",
                                batch=xs.shape[1])
        T = xs.shape[0]
        every = self.update_every or T
        sq = xs.new_zeros((), dtype=torch.float64)
        for w0 in range(0, T, every):
            w1 = min(T, w0 + every)
            for t0 in range(w0, w1, CHUNK):
                t1 = min(w1, t0 + CHUNK)
                y = stream.run(xs[t0:t1], ys[t0:t1])
                sq += (y - ys[t0:t1].to(y.dtype)).pow(2).sum()
            stream.flush()
            update()
        return self._output(sq.to(xs.dtype), ys)

    def _output(self, sq: Tensor, ys: Tensor) -> ObjectiveOutput:
        mse = sq / ys.numel()
        return ObjectiveOutput(mse, None, {"nmse": float(mse) / self.target_var})

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rule.load_state_dict(state)


def online_learner(c: reg.Config, model: reg.RegressionRSNN, xs: Tensor, ys: Tensor
                   ) -> OnlineLearner:
    """The :data:`~spikegrad.apps.regression.core.LearnerFactory` of the online rules."""
    rule = make_learner(c, model, xs.shape[1])
    return OnlineLearner(rule, c.update_every, float(ys.var(unbiased=False)),
                         eprop_backend(rule, c.online_backend))
