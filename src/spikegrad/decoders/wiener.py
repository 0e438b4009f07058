"""Wiener filter: ridge regression of velocity on a causal history of binned spike counts.

The classic linear BCI decoder (e.g. Carmena et al. 2003; Glaser et al. 2020). The features
of bin ``t`` are ``history`` taps, tap ``j`` the summed counts of ``tap_bins`` consecutive
bins ending ``lag + j * tap_bins`` bins before ``t``, plus a bias::

    x_t = [c(t - lag - j*s - s + 1 .. t - lag - j*s) summed,  j = 0..history-1] (N each), 1
    yhat_t = x_t W                            W: [history * N + 1, D]

``W`` minimises ``mean_t |y_t - x_t W|^2 + ridge * |W without its bias row|^2`` in closed
form (normal equations; the bias is not penalised, which equals centring features and
targets by their training means). The window spans ``history * tap_bins`` bins: it must
reach back over the time by which neural activity leads movement (about 100 ms in motor
cortex and in :func:`spikegrad.data.simulate_cortex`); summing a few bins per tap averages
the sparse counts of short bins and keeps the design matrix small.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validate import check_int
from ._checks import as_counts, as_targets, check_nonneg

__all__ = ["WienerFilter", "history_features"]

# Rows of the design matrix built at a time (memory: rows * history * N float64).
_CHUNK_ROWS = 8192


def history_features(counts: Tensor, history: int, tap_bins: int = 1, lag: int = 0,
                     rows: Optional[slice] = None) -> Tensor:
    """The history taps of every bin, without the bias column.

    Counts before bin 0 are taken as 0 (a decoder that starts from silence).

    Args:
        counts: ``[T, N]`` spike counts per bin.
        history: number of taps.
        tap_bins: bins summed per tap.
        lag: bins between ``t`` and the newest bin of tap 0.
        rows: the bins ``t`` to build (default all).

    Returns:
        float64 ``[len(rows), history * N]``; column ``j * N + i`` is channel ``i`` in tap ``j``.

    Example:
        >>> c = torch.arange(1.0, 6.0)[:, None]            # one channel, counts 1..5
        >>> history_features(c, history=2, tap_bins=2).tolist()
        [[1.0, 0.0], [3.0, 0.0], [5.0, 1.0], [7.0, 3.0], [9.0, 5.0]]
    """
    return _taps(_cumulative(counts), history, tap_bins, lag, rows)


def _cumulative(counts: Tensor) -> Tensor:
    """``[T + 1, N]`` running sums from 0, so a tap is a difference of two rows."""
    c = counts.detach().double().cpu()
    return torch.cat([torch.zeros(1, c.shape[1], dtype=torch.float64), c.cumsum(0)])


def _taps(cum: Tensor, history: int, tap_bins: int, lag: int,
          rows: Optional[slice]) -> Tensor:
    n_bins = cum.shape[0] - 1
    t = torch.arange(n_bins)[rows if rows is not None else slice(None)]
    taps = []
    for j in range(history):
        end = (t - lag - j * tap_bins + 1).clamp(0, n_bins)        # exclusive end of tap j
        start = (end - tap_bins).clamp(min=0)
        taps.append(cum[end] - cum[start])                         # [rows, N]
    return torch.cat(taps, 1)


class WienerFilter:
    """Ridge regression of ``[T, D]`` targets on a history of ``[T, N]`` counts.

    Args:
        history: number of history taps (>= 1).
        ridge: L2 penalty on the weights (not the bias), relative to the mean squared error
            per bin (so it does not grow with the length of the training data); >= 0.
        tap_bins: bins summed per tap (>= 1). The default window, 10 taps of 5 bins, spans
            200 ms of 4 ms bins: twice the 100 ms lead of motor cortex, in 20 ms taps.
        lag: bins skipped between the decoded bin and the newest counts (>= 0).

    Attributes (after :meth:`fit`):
        weights: float64 ``[history * N, D]``.
        bias: float64 ``[D]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> counts = torch.poisson(torch.full((500, 3), 2.0), generator=g)
        >>> velocity = counts[:, :2] - 2.0                       # decodable from bin t itself
        >>> f = WienerFilter(history=2, tap_bins=1, ridge=0.0).fit(counts, velocity)
        >>> bool(torch.allclose(f.predict(counts)[1:], velocity[1:], atol=1e-4))
        True
    """

    def __init__(self, history: int = 10, ridge: float = 1e-3, *, tap_bins: int = 5,
                 lag: int = 0) -> None:
        self.history = check_int(history, "history", hint="number of history taps")
        self.ridge = check_nonneg(ridge, "ridge", "WienerFilter")
        self.tap_bins = check_int(tap_bins, "tap_bins", hint="bins summed per tap")
        self.lag = check_int(lag, "lag", minimum=0, hint="bins")
        self.weights: Optional[Tensor] = None
        self.bias: Optional[Tensor] = None
        self.n_channels: Optional[int] = None

    @property
    def window(self) -> int:
        """Bins from the oldest counts used to the decoded bin, inclusive."""
        return self.lag + self.history * self.tap_bins

    def fit(self, counts: Tensor, velocity: Tensor) -> "WienerFilter":
        """Fit on the bins whose whole window lies inside the data (the first
        ``window - 1`` bins are left out).

        Args:
            counts: ``[T, N]`` spike counts per bin.
            velocity: ``[T, D]`` targets (e.g. cm/s).

        Returns:
            ``self``.
        """
        c = as_counts(counts, "WienerFilter.fit")
        y = as_targets(velocity, c, "WienerFilter.fit")
        first = self.window - 1
        if c.shape[0] - first < 2:
            raise ValueError(f"WienerFilter.fit: {c.shape[0]} bins leave {c.shape[0] - first} "
                             f"with a full window of {self.window} bins; pass more data or "
                             "shorten history, tap_bins or lag")
        n_feat = self.history * c.shape[1]
        cum = _cumulative(c)
        gram = torch.zeros(n_feat, n_feat, dtype=torch.float64)
        cross = torch.zeros(n_feat, y.shape[1], dtype=torch.float64)
        total = torch.zeros(n_feat, dtype=torch.float64)
        for lo in range(first, c.shape[0], _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, c.shape[0])
            x = _taps(cum, self.history, self.tap_bins, self.lag, slice(lo, hi))
            gram += x.T @ x
            cross += x.T @ y[lo:hi]
            total += x.sum(0)
        m = c.shape[0] - first
        mean_x, mean_y = total / m, y[first:].mean(0)
        # Centred normal equations: the unpenalised bias drops out.
        cov = gram / m - torch.outer(mean_x, mean_x)
        cov_xy = cross / m - torch.outer(mean_x, mean_y)
        cov.diagonal().add_(self.ridge)
        try:
            weights = torch.linalg.solve(cov, cov_xy)
        except RuntimeError as err:  # singular: ridge = 0 with silent or duplicate channels
            raise ValueError("WienerFilter.fit: the normal equations are singular (silent or "
                             "identical channels, or fewer bins than features); pass "
                             "ridge > 0") from err
        self.weights = weights
        self.bias = mean_y - mean_x @ weights
        self.n_channels = c.shape[1]
        return self

    def predict(self, counts: Tensor) -> Tensor:
        """Decode every bin of ``counts [T, N]``; returns float32 ``[T, D]``. Bins whose
        window reaches before bin 0 see zeros there."""
        if self.weights is None:
            raise RuntimeError("WienerFilter.predict: call fit(counts, velocity) first")
        c = as_counts(counts, "WienerFilter.predict", self.n_channels)
        out = torch.empty(c.shape[0], self.weights.shape[1], dtype=torch.float64)
        cum = _cumulative(c)
        for lo in range(0, c.shape[0], _CHUNK_ROWS):
            hi = min(lo + _CHUNK_ROWS, c.shape[0])
            x = _taps(cum, self.history, self.tap_bins, self.lag, slice(lo, hi))
            out[lo:hi] = x @ self.weights + self.bias
        return out.float()
