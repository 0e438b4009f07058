"""Batch normalisation for spiking layers on ``[T, B, C, *spatial]``.

Two normalisations of the pre-activations (the currents a conv or linear layer feeds into its
neurons), both one ``F.batch_norm`` call for all time steps:

- :class:`ThresholdBatchNorm` (tdBN; Zheng et al. 2021, AAAI): one set of statistics per
  channel over time, batch and space, and the normalised current scaled to the threshold,
  ``y = gamma * alpha * theta * (x - mean) / sqrt(var + eps) + beta``.
- :class:`PerStepBatchNorm` (BNTT; Kim & Panda 2021, Front. Neurosci.): separate statistics and
  a separate scale for every time step ``t``, over batch and space.

Both accept ``[T, B, C]`` (after a linear layer), ``[T, B, C, L]`` (Conv1d) and
``[T, B, C, H, W]`` (Conv2d). Running statistics follow ``torch.nn.BatchNorm*``: the unbiased
batch variance is tracked with ``momentum``; evaluation mode normalises with them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_tensor

__all__ = ["ThresholdBatchNorm", "PerStepBatchNorm"]


def _check_number(value, name: str, owner: str, *, high: float = math.inf) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and 0 < value <= high)
    if not ok:
        bound = "> 0" + (f" and <= {high:g}" if high < math.inf else "")
        raise ValueError(f"{owner}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


class _SpikingBatchNorm(nn.Module):
    """Shared checks and parameters: channels are dimension 2 of ``[T, B, C, *spatial]``."""

    def __init__(self, num_features: int, n_stats: int, eps: float, momentum: float,
                 affine: bool, bias: bool, track_running_stats: bool):
        super().__init__()
        owner = type(self).__name__
        self.num_features = check_int(num_features, f"{owner}: num_features")
        self.eps = _check_number(eps, "eps", owner)
        self.momentum = _check_number(momentum, "momentum", owner, high=1.0)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        shape = (n_stats,)
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(shape))
            self.register_buffer("running_var", torch.ones(shape))
        else:
            self.running_mean = self.running_var = None

    def _check(self, xs: Tensor) -> Tensor:
        check_tensor(xs, "xs")
        if not 3 <= xs.dim() <= 5 or xs.shape[2] != self.num_features:
            C = self.num_features
            raise ValueError(
                f"{type(self).__name__}({C}): expected a time-major input [T, B, {C}], "
                f"[T, B, {C}, L] or [T, B, {C}, H, W], got shape {list(xs.shape)}. Put time "
                "first and channels third (xs.transpose(0, 1) for batch-major data).")
        return xs

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class ThresholdBatchNorm(_SpikingBatchNorm):
    """Threshold-dependent batch norm (tdBN): statistics per channel over ``T, B, *spatial``.

    ``y = weight * alpha * threshold * (x - mean_c) / sqrt(var_c + eps) + bias`` with ``mean_c``
    and ``var_c`` (biased, as in training-mode BatchNorm) over every time step, sample and
    position of channel ``c``. Scaling by the threshold puts the normalised currents at the
    firing threshold of the next neuron, so that a fixed fraction of them can fire whatever the
    threshold; ``alpha = 1`` (``1/sqrt(2)`` before a residual sum in the paper).

    Args:
        num_features: channels ``C``.
        threshold: the firing threshold of the neurons that follow (> 0).
        alpha: extra scale (> 0).
        eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm2d`.

    Shapes: ``[T, B, C, *spatial] -> [T, B, C, *spatial]`` with 0, 1 or 2 spatial dimensions.

    Example:
        >>> import torch, spikegrad as sg
        >>> bn = sg.nn.ThresholdBatchNorm(3, threshold=0.5)
        >>> ys = bn(torch.randn(4, 8, 3, 5) * 7 + 2)
        >>> [round(v, 3) for v in (ys.mean().item(), ys.std(unbiased=False).item())]
        [0.0, 0.5]
    """

    def __init__(self, num_features: int, threshold: float = 1.0, alpha: float = 1.0,
                 eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__(num_features, num_features, eps, momentum, affine, True,
                         track_running_stats)
        self.threshold = _check_number(threshold, "threshold", type(self).__name__)
        self.alpha = _check_number(alpha, "alpha", type(self).__name__)

    def forward(self, xs: Tensor) -> Tensor:
        """Normalise each channel over all steps, samples and positions.

        Args:
            xs: currents ``[T, B, C, *spatial]`` (0, 1 or 2 spatial dimensions).

        Returns:
            The same shape: ``weight * alpha * threshold * (x - mean_c) / sqrt(var_c + eps)
            + bias`` per channel ``c``, with the batch's statistics in training mode (which
            also updates the running ones) or without running statistics, and the running
            statistics in eval mode.
        """
        self._check(xs)
        scale = self.alpha * self.threshold
        weight = (self.weight * scale if self.weight is not None
                  else xs.new_full((self.num_features,), scale))
        ys = F.batch_norm(xs.flatten(0, 1), self.running_mean, self.running_var,  # [T*B, C, ...]
                          weight, self.bias, self._use_batch_stats(), self.momentum, self.eps)
        return ys.unflatten(0, xs.shape[:2])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", threshold={self.threshold:g}, alpha={self.alpha:g}"


class PerStepBatchNorm(_SpikingBatchNorm):
    """Batch norm through time (BNTT): statistics and scale per time step and channel.

    ``y_t = weight[t, c] * (x_t - mean_{t,c}) / sqrt(var_{t,c} + eps) + bias[t, c]``, the
    statistics over ``B, *spatial`` of step ``t`` alone; running statistics are kept per step.
    The sequence length is therefore fixed at construction. As in the paper the scale is
    learned and there is no shift by default (``bias=False``): the threshold sets the offset.

    Args:
        num_features: channels ``C``.
        n_steps: the sequence length ``T`` every input must have.
        bias: learn a shift per step and channel too.
        eps, momentum, affine, track_running_stats: as :class:`torch.nn.BatchNorm2d`.

    Shapes: ``[T, B, C, *spatial] -> [T, B, C, *spatial]`` with 0, 1 or 2 spatial dimensions.

    Example:
        >>> import torch, spikegrad as sg
        >>> bn = sg.nn.PerStepBatchNorm(2, n_steps=3)
        >>> xs = torch.randn(3, 16, 2) * torch.tensor([1.0, 5.0, 9.0]).view(3, 1, 1)
        >>> [round(v, 3) for v in bn(xs).std(dim=(1, 2), unbiased=False).tolist()]
        [1.0, 1.0, 1.0]
    """

    def __init__(self, num_features: int, n_steps: int, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True, bias: bool = False,
                 track_running_stats: bool = True):
        n_steps = check_int(n_steps, f"{type(self).__name__}: n_steps")
        super().__init__(num_features, n_steps * num_features, eps, momentum, affine, bias,
                         track_running_stats)
        self.n_steps = n_steps

    def forward(self, xs: Tensor) -> Tensor:
        """Normalise each step's channels with that step's own statistics and scale.

        Args:
            xs: currents ``[T, B, C, *spatial]`` with ``T == n_steps`` (0, 1 or 2 spatial
                dimensions); another ``T`` raises ValueError.

        Returns:
            The same shape: step ``t``, channel ``c`` normalised over ``B, *spatial`` (batch
            statistics in training mode or without running statistics, else the running ones
            of step ``t``), times ``weight[t, c]`` plus ``bias[t, c]`` if there is one.
        """
        self._check(xs)
        T, B = xs.shape[:2]
        if T != self.n_steps:
            raise ValueError(f"PerStepBatchNorm: xs has T = {T} steps but the layer keeps "
                             f"statistics for n_steps = {self.n_steps}; build it with "
                             f"n_steps={T}, or use ThresholdBatchNorm for any length")
        # steps become channels: one batch_norm call with T*C statistics
        folded = xs.transpose(0, 1).flatten(1, 2)  # [B, T*C, ...]
        ys = F.batch_norm(folded, self.running_mean, self.running_var, self.weight, self.bias,
                          self._use_batch_stats(), self.momentum, self.eps)
        return ys.unflatten(1, (T, self.num_features)).transpose(0, 1)  # [T, B, C, ...]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", n_steps={self.n_steps}"
