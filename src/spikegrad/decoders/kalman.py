"""Kalman filter decoder of Wu et al. (2006, Neural Computation 18:80-118).

A linear-Gaussian state-space model of the kinematics ``x_t`` (velocity, optionally position
too) observed through the binned spike counts ``z_t``; both are centred by their training
means (so ``H`` needs no bias column)::

    x_t = A x_{t-1} + w_t,    w_t ~ N(0, W)          (state model)
    z_t = H x_t + q_t,        q_t ~ N(0, Q)          (observation model)

Fitting is least squares on paired training data (``M`` pairs each)::

    A = X1 X0^T (X0 X0^T)^-1,  W = (X1 - A X0)(X1 - A X0)^T / M     (X0 = x_{t-1}, X1 = x_t)
    H = Z X^T (X X^T)^-1,      Q = (Z - H X)(Z - H X)^T / M

Decoding is the standard recursion, from the training mean with the training covariance
``P0`` of the state::

    prior     x- = A x_{t-1},   P- = A P A^T + W           (at t = 0: x- = 0, P- = P0)
    gain      K  = P- H^T (H P- H^T + Q)^-1
    update    x  = x- + K (z_t - H x-),   P = (I - K H) P-

The gain does not depend on the data; once it stops changing (to 1e-13 relative) the rest
of the recursion is the fixed linear filter ``x_t = (I - K H) A x_{t-1} + K z_t``. The gain
is computed in the information form ``P = (P-^-1 + H^T Q^-1 H)^-1``, ``K = P H^T Q^-1``,
which needs only state-sized inverses per bin. Channels that never fire in the training data
carry no information in this model (zero rows of ``H`` and ``Q``) and are left out.

``lag``: motor cortex leads movement, so the counts of bin ``t - lag`` observe the state of
bin ``t`` (the decoder stays causal: the estimate of bin ``t`` uses counts up to
``t - lag``; the first ``lag`` bins get the prior alone).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validate import check_choice, check_int
from ._checks import as_counts, as_targets

__all__ = ["KalmanDecoder", "fit_linear_gaussian", "kalman_gains"]

STATES = ("velocity", "position_velocity")
# Relative change of the gain below which the recursion is taken as converged.
_GAIN_TOL = 1e-13


def fit_linear_gaussian(states: Tensor, obs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Least-squares ``A, W, H, Q`` from centred states ``[T, d]`` and observations ``[T, N]``
    (the formulas of the module docstring; ``A``/``W`` from the ``T - 1`` consecutive pairs,
    ``H``/``Q`` from the ``T`` bins)."""
    x0, x1 = states[:-1], states[1:]
    a = torch.linalg.solve(x0.T @ x0, x0.T @ x1).T                   # [d, d]
    r = x1 - x0 @ a.T
    w = r.T @ r / x0.shape[0]
    h = torch.linalg.solve(states.T @ states, states.T @ obs).T       # [N, d]
    e = obs - states @ h.T
    q = e.T @ e / states.shape[0]
    return a, w, h, q


def kalman_gains(a: Tensor, w: Tensor, h: Tensor, q: Tensor, p0: Tensor,
                 max_steps: int) -> tuple[Tensor, bool]:
    """The gains ``K_t`` of the first bins, until they converge or ``max_steps``.

    Returns:
        ``(gains [S, d, N], converged)``: after a converged run, ``K_t = gains[-1]`` for
        every ``t >= S - 1``.
    """
    q_inv_h = torch.linalg.solve(q, h)                                 # [N, d] = Q^-1 H
    info_obs = h.T @ q_inv_h                                           # [d, d] = H^T Q^-1 H
    gains, prior, prev = [], p0, None
    for _ in range(max_steps):
        post = torch.linalg.inv(torch.linalg.inv(prior) + info_obs)
        post = (post + post.T) / 2                                     # keep it symmetric
        k = post @ q_inv_h.T                                           # [d, N]
        gains.append(k)
        if prev is not None and (k - prev).abs().max() <= _GAIN_TOL * k.abs().max():
            return torch.stack(gains), True
        prev = k
        prior = a @ post @ a.T + w
    return torch.stack(gains), False


class KalmanDecoder:
    """Kalman filter decoder (see the module docstring).

    Args:
        state: ``"velocity"`` (state = velocity ``[D]``) or ``"position_velocity"``
            (state = position and velocity ``[2 D]``; :meth:`fit` then needs ``position``).
        lag: bins by which the counts lead the state they observe (>= 0); 25 bins of 4 ms
            match the 100 ms lead of :func:`spikegrad.data.simulate_cortex`.

    Attributes (after :meth:`fit`; float64, in centred units):
        A ``[d, d]``, W ``[d, d]``, H ``[N_active, d]``, Q ``[N_active, N_active]``,
        P0 ``[d, d]``, state_mean ``[d]``, count_mean ``[N_active]``,
        active: bool ``[N]`` the channels used.

    Example:
        >>> from spikegrad.data import simulate_cortex
        >>> d = simulate_cortex(60.0, 32, seed=0)
        >>> dec = KalmanDecoder(lag=25).fit(*d.train)
        >>> dec.predict(d.test[0]).shape
        torch.Size([3750, 2])
    """

    def __init__(self, state: str = "velocity", *, lag: int = 0) -> None:
        self.state = check_choice(state, "state", STATES)
        self.lag = check_int(lag, "lag", minimum=0, hint="bins")
        self.A: Optional[Tensor] = None

    def fit(self, counts: Tensor, velocity: Tensor,
            position: Optional[Tensor] = None) -> "KalmanDecoder":
        """Fit ``A, W, H, Q`` by least squares.

        Args:
            counts: ``[T, N]`` spike counts per bin.
            velocity: ``[T, D]`` velocity (e.g. cm/s).
            position: ``[T, D]`` position (e.g. cm); required for
                ``state="position_velocity"``, ignored otherwise.

        Returns:
            ``self``.
        """
        c = as_counts(counts, "KalmanDecoder.fit")
        v = as_targets(velocity, c, "KalmanDecoder.fit")
        if self.state == "position_velocity":
            if position is None:
                raise ValueError("KalmanDecoder.fit: state='position_velocity' needs position "
                                 "[T, D] (e.g. ReachingData.position); pass it, or use "
                                 "state='velocity'")
            p = as_targets(position, c, "KalmanDecoder.fit", "position")
            if p.shape != v.shape:
                raise ValueError(f"KalmanDecoder.fit: position {list(p.shape)} and velocity "
                                 f"{list(v.shape)} must have the same shape [T, D]")
            x = torch.cat([p, v], 1)
        else:
            x = v
        lag = self.lag
        if c.shape[0] - lag < x.shape[1] + 2:
            raise ValueError(f"KalmanDecoder.fit: {c.shape[0]} bins with lag={lag} leave too "
                             "few pairs to fit; pass more data")
        x, z = x[lag:], c[:c.shape[0] - lag]       # counts of bin t - lag observe x_t
        self.active = z.var(0) > 0
        if not bool(self.active.any()):
            raise ValueError("KalmanDecoder.fit: no channel fires in the training data")
        z = z[:, self.active]
        self.state_mean, self.count_mean = x.mean(0), z.mean(0)
        xc, zc = x - self.state_mean, z - self.count_mean
        self.A, self.W, self.H, self.Q = fit_linear_gaussian(xc, zc)
        self.P0 = xc.T @ xc / xc.shape[0]
        self.n_channels, self.n_velocity = c.shape[1], v.shape[1]
        return self

    def filter(self, counts: Tensor) -> Tensor:
        """The state estimates ``[T, d]`` (float64; position then velocity for
        ``state="position_velocity"``) of every bin of ``counts [T, N]``."""
        if self.A is None:
            raise RuntimeError("KalmanDecoder: call fit(counts, velocity) first")
        c = as_counts(counts, "KalmanDecoder.predict", self.n_channels)
        n_bins, lag = c.shape[0], self.lag
        z = c[:, self.active] - self.count_mean           # [T, N_active], observes bin t + lag
        a, h = self.A, self.H
        d = a.shape[0]
        out = torch.zeros(n_bins, d, dtype=torch.float64)
        n_obs = max(n_bins - lag, 0)
        gains, converged = kalman_gains(a, self.W, h, self.Q, self.P0, max(n_obs, 1))
        x = torch.zeros(d, dtype=torch.float64)
        # The prior alone for the first lag bins: x = A^t 0 = 0 (the training mean).
        s = min(gains.shape[0], n_obs)
        for t in range(s):                                 # time-varying gain
            prior = a @ x if t > 0 else x
            x = prior + gains[t] @ (z[t] - h @ prior)
            out[lag + t] = x
        if s < n_obs:
            # converged: x_t = F x_{t-1} + K z_t with the steady gain K
            k = gains[-1]
            f = (a - k @ h @ a).numpy()
            drive = (z[s:n_obs] @ k.T).numpy()             # [T', d]
            xs = out[lag + s:].numpy()
            xn = x.numpy()
            for t in range(drive.shape[0]):
                xn = f @ xn + drive[t]
                xs[t] = xn
        return out + self.state_mean

    def predict(self, counts: Tensor) -> Tensor:
        """Decoded velocity, float32 ``[T, D]``, of every bin of ``counts [T, N]``."""
        return self.filter(counts)[:, -self.n_velocity:].float()
