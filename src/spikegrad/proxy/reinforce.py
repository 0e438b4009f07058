"""REINFORCE: the score-function gradient of an expected reward, and its baselines.

For samples ``x ~ p_theta`` and any reward ``r(x)`` (no derivative needed, ``r`` may be a
black box),

    grad_theta E[r(x)] = E[(r(x) - b) grad_theta log p_theta(x)]

for every baseline ``b`` that does not depend on the sample ``x`` (its term has expectation
``b * grad_theta sum_x p_theta(x) = 0``). The estimate is unbiased; a baseline close to
``E[r]`` lowers its variance, which is the price of needing no derivative of ``r``. For a
sequence ``x = (x_1 .. x_T)`` drawn step by step, ``log p(x) = sum_t log p(x_t | x_<t)``.

Baselines here: a number (or ``None`` for 0), :class:`MovingAverageBaseline` (mean reward of
past batches) and :class:`LearnedBaseline` (a small network that predicts the reward from a
context that does not depend on the sample, trained by MSE).
"""

from __future__ import annotations

import numbers
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int
from ._checks import check_number, check_rewards, sequence_log_prob

__all__ = ["reinforce_loss", "MovingAverageBaseline", "LearnedBaseline"]

BaselineLike = Union[None, float, Tensor]


def reinforce_loss(log_probs: Tensor, rewards: Tensor, baseline: BaselineLike = None) -> Tensor:
    """The score-function surrogate loss ``-mean_b (r_b - b_b) * sum_t log p(x_bt)``.

    Its gradient is the REINFORCE estimate of ``-grad E[r]``: minimising it ascends the
    expected reward. Its value is not the expected reward; log ``rewards.mean()`` instead.

    Args:
        log_probs: log-probabilities of the sampled actions (nats), ``[B]`` or time-major
            ``[T, B]`` (one per step, summed over ``T``; zero the steps after a sequence
            ended). This is the only argument that carries the gradient.
        rewards: ``[B]``, one per sample, finite; treated as constants (detached).
        baseline: ``None`` (0), a number, or a tensor ``[B]`` or ``[]`` (e.g. the value of a
            :class:`MovingAverageBaseline` or a :class:`LearnedBaseline`); detached. It must
            not depend on the sample it is subtracted from, or the estimate is biased.

    Returns:
        A scalar loss, in reward units times nats.

    Example:
        >>> import torch
        >>> logp = torch.log(torch.tensor([0.5, 0.25]))
        >>> round(reinforce_loss(logp, torch.tensor([1.0, 3.0]), baseline=2.0).item(), 4)
        0.3466
    """
    owner = "reinforce_loss"
    seq_logp = sequence_log_prob(log_probs, "log_probs", owner)   # [B]
    rewards = check_rewards(rewards, seq_logp.shape[0], owner)
    b = _baseline_value(baseline, rewards, owner)
    advantage = (rewards - b).to(seq_logp.dtype)                  # [B], constant
    return -(advantage * seq_logp).mean()


def _baseline_value(baseline, rewards: Tensor, owner: str):
    if baseline is None:
        return 0.0
    if isinstance(baseline, Tensor) and baseline.dim() > 0:
        if not baseline.is_floating_point() or baseline.shape != rewards.shape:
            raise ValueError(f"{owner}: a tensor baseline must be floating with shape [] or "
                             f"[B] = {list(rewards.shape)}, got dtype {baseline.dtype} and shape "
                             f"{list(baseline.shape)}; for a LearnedBaseline pass "
                             "baseline_net(context) with context [B, features]")
        if not bool(torch.isfinite(baseline).all()):
            raise ValueError(f"{owner}: baseline must be finite, got non-finite values")
        return baseline.detach()
    if isinstance(baseline, (Tensor, numbers.Real)):
        return check_number(baseline, "baseline", owner)
    raise TypeError(f"{owner}: baseline must be None, a number or a tensor [B], got "
                    f"{type(baseline).__name__}; call a MovingAverageBaseline on the rewards "
                    "and pass the number it returns")


class MovingAverageBaseline:
    """An exponential moving average of past batches' mean reward.

    ``b = baseline(rewards)`` returns the baseline for this batch, computed from earlier
    batches only (0 before the first), then folds this batch's mean reward in:
    ``m <- rewards.mean()`` at the first call, ``m <- decay * m + (1 - decay) * rewards.mean()``
    after. Using only past rewards keeps ``b`` independent of the current samples, so the
    REINFORCE estimate stays unbiased.

    Args:
        decay: weight of the past in ``[0, 1)``; ``0`` uses the previous batch alone. The
            average remembers about ``1 / (1 - decay)`` batches.

    Example:
        >>> import torch
        >>> baseline = MovingAverageBaseline(decay=0.5)
        >>> baseline(torch.tensor([1.0, 3.0])), baseline(torch.tensor([4.0])), baseline.value
        (0.0, 2.0, 3.0)
    """

    def __init__(self, decay: float = 0.9):
        decay = check_number(decay, "decay", "MovingAverageBaseline")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MovingAverageBaseline: decay must be in [0, 1), got {decay!r}; "
                             "it weighs the past, 1 would never learn")
        self.decay = decay
        self.value: Optional[float] = None   # None until the first batch

    def __call__(self, rewards: Tensor) -> float:
        """The baseline for ``rewards`` ``[B]`` (from past batches), then updated with them."""
        rewards = check_rewards(rewards, _batch(rewards), "MovingAverageBaseline")
        current = 0.0 if self.value is None else self.value
        mean = rewards.double().mean().item()
        self.value = mean if self.value is None else (
            self.decay * self.value + (1.0 - self.decay) * mean)
        return current

    def state_dict(self) -> dict:
        return {"decay": self.decay, "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.value = float(state["decay"]), state["value"]

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value})"


def _batch(rewards) -> int:
    if isinstance(rewards, Tensor) and rewards.dim() == 1 and rewards.numel() > 0:
        return rewards.shape[0]
    return -1   # makes check_rewards report the shape it wants


class LearnedBaseline(nn.Module):
    """A small network that predicts the expected reward from a context vector.

    The context must not depend on the sample whose reward is predicted (a conditioning
    input, or a state before the action is drawn), else the baseline biases the estimate.
    Train it with :meth:`loss` (MSE to the observed rewards) by any optimizer, and pass
    ``baseline(context)`` to :func:`reinforce_loss`, which detaches it.

    Args:
        in_features: size of the context vector.
        hidden: width of one tanh hidden layer; ``0`` for a linear baseline.

    Shapes:
        ``forward(context [B, in_features]) -> [B]`` predicted reward.
    """

    def __init__(self, in_features: int, hidden: int = 64):
        super().__init__()
        in_features = check_int(in_features, "LearnedBaseline: in_features")
        hidden = check_int(hidden, "LearnedBaseline: hidden", minimum=0,
                           hint="0 for a linear baseline")
        self.in_features = in_features
        self.net = (nn.Linear(in_features, 1) if hidden == 0 else
                    nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(),
                                  nn.Linear(hidden, 1)))

    def forward(self, context: Tensor) -> Tensor:
        """Predict the expected reward for each context.

        Args:
            context: ``[B, in_features]``, independent of the sample whose reward is
                predicted (see the class docstring).

        Returns:
            ``[B]``, the predicted reward in the reward's units (pass it to
            :func:`reinforce_loss` as the baseline; that detaches it).
        """
        if not isinstance(context, Tensor) or context.dim() != 2 or \
                context.shape[1] != self.in_features:
            got = list(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"LearnedBaseline: context must have shape [B, {self.in_features}]"
                             f", got {got}")
        return self.net(context).squeeze(-1)   # [B]

    def loss(self, context: Tensor, rewards: Tensor) -> Tensor:
        """MSE between the predicted and the observed rewards ``[B]`` (rewards detached).

        The context is used as given: detach it if this loss should not train the network
        that produced it."""
        pred = self(context)                                          # [B]
        rewards = check_rewards(rewards, pred.shape[0], "LearnedBaseline.loss")
        return F.mse_loss(pred, rewards.to(pred.dtype))
