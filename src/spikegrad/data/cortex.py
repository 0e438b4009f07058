"""Simulated motor-cortex population for brain-computer-interface (BCI) decoding.

A 2-D hand velocity ``v(t)`` (cm/s) follows an Ornstein-Uhlenbeck (OU) process with time
constant ``tau_s`` (0.3 s) and stationary standard deviation ``velocity_std`` (10 cm/s) in
each component, sampled exactly on the bin grid::

    v[k + 1] = a * v[k] + sqrt(1 - a**2) * velocity_std * eps[k],   a = exp(-dt / tau_s)

``n_channels`` (96) Poisson neurons are cosine-tuned to velocity in the linear form of
Georgopoulos et al. (1986) and Moran & Schwartz (1999)::

    r_i(t) = max(0, b_i + m_i * (v(t + lead_s) . d_i) / velocity_std)          [Hz]
           = max(0, b_i + m_i * |v| / velocity_std * cos(theta - theta_i))

with preferred direction ``d_i = (cos theta_i, sin theta_i)``, ``theta_i ~ U(0, 2 pi)``,
baseline ``b_i ~ U(5, 20)`` Hz and modulation depth ``m_i ~ U(2, 6)`` Hz. The depth is per
``velocity_std``: a movement at one standard deviation of speed along the preferred direction
raises the rate by ``m_i``. Rates are rectified at 0 (a Poisson rate cannot be negative),
which happens when the hand moves fast against a unit's preferred direction. Spikes lead
movement by ``lead_s`` (100 ms): bin ``k`` fires for the velocity of bin
``k + round(lead_s / dt)``, so a decoder of ``v(t)`` finds its information in the counts of
about 100 ms earlier. Counts of bin ``k`` are Poisson with mean ``r * dt``.

Non-stationarity (both off by default):

* **Drift**: every preferred direction rotates at ``drift_deg_per_min`` (a coherent rotation
  of the whole population, so a fixed decoder's output rotates by the same angle).
* **Disruptions**: :class:`Disruption` events at given times silence a fraction of channels
  (rate 0), swap the signals of a fraction of channels among themselves (the electrode
  mapping changes), multiply every rate by a gain, or rotate every preferred direction by an
  angle; each lasts until the end of the recording and later events compose with earlier
  ones.

Randomness: one ``torch.Generator`` seeded with ``seed`` draws, in a fixed order, the tuning,
the velocity noise and one uniform number per bin and channel; the disruptions draw their
channels last. With ``recording_seed`` the tuning still comes from ``seed`` but a second
generator, seeded with ``recording_seed``, draws everything after it (velocity, uniforms,
disruption channels): a new recording of the same population, with its own movements.
Poisson counts come from those uniforms by inverting the Poisson CDF, so each count depends
only on its own uniform and rate: turning drift or disruptions on changes the counts only
where it changes the rates, and a disrupted recording equals the undisrupted one
before its first event (same seed and length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .._validate import check_int

__all__ = ["ReachingData", "CortexTruth", "Disruption", "simulate_cortex"]

# Block length of the exact AR(1) scan: a [L, L] matrix of decay powers per block, then one
# carry per block (a Python loop of T / L steps instead of T).
_SCAN_BLOCK = 256


@dataclass(frozen=True)
class ReachingData:
    """Binned spike counts and hand velocity, from the simulation or a real recording.

    Bin ``k`` covers ``[t_start + k * dt, t_start + (k + 1) * dt)`` seconds; ``counts[k]``
    are the spikes in that interval and ``velocity[k]`` the mean hand velocity over it.

    Attributes:
        counts: float32 ``[T, N]`` spike counts per bin (non-negative integers).
        velocity: float32 ``[T, 2]`` hand velocity in cm/s.
        dt: bin width in seconds.
        split: first test bin: ``[:split]`` is the training part, ``[split:]`` the test part
            (chronological, no shuffling, as a decoder meets the data).
        position: float32 ``[T, 2]`` hand position in cm at the start of each bin (for the
            simulation the integral of ``velocity`` from 0), or None.
        channel_names: one name per column of ``counts``.
        t_start: time of the first bin edge in seconds (the recording's clock).
        source: where the data came from (``"simulation"`` or the loader and file).
        truth: the simulation's ground truth (:class:`CortexTruth`); None for recordings.
        trials: a recording's trial table, column name -> array ``[n_trials]``; or None.
        velocity_unit: the unit of ``velocity`` (``"cm/s"`` unless a file's unit was not
            recognised, which is then kept as written there).
    """

    counts: Tensor
    velocity: Tensor
    dt: float
    split: int
    position: Optional[Tensor] = None
    channel_names: tuple = ()
    t_start: float = 0.0
    source: str = ""
    truth: Optional["CortexTruth"] = None
    trials: Optional[Mapping[str, np.ndarray]] = field(default=None, repr=False)
    velocity_unit: str = "cm/s"

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.counts.shape[1])

    @property
    def time_s(self) -> Tensor:
        """float64 ``[T]``: the start time of each bin in seconds."""
        return self.t_start + self.dt * torch.arange(self.n_bins, dtype=torch.float64)

    @property
    def train(self) -> tuple[Tensor, Tensor]:
        """``(counts [split, N], velocity [split, 2])``."""
        return self.counts[:self.split], self.velocity[:self.split]

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        """``(counts [T - split, N], velocity [T - split, 2])``."""
        return self.counts[self.split:], self.velocity[self.split:]


@dataclass(frozen=True)
class Disruption:
    """An abrupt change of the recording at ``time_s`` that lasts to the end.

    Args:
        time_s: when it happens, in seconds from the start (0 < time_s < duration).
        dropout: fraction of channels that fall silent (rate 0), drawn among all channels
            (one already silent stays silent).
        swap: fraction of channels whose signals are exchanged: the drawn channels are put
            in a cycle, each now reporting the neuron its successor reported (so every
            drawn channel changes).
        gain: multiplies every channel's rate (baseline and modulation), e.g. an impedance
            change; composes multiplicatively with earlier gains.
        rotation_deg: rotates every preferred direction by this angle (degrees,
            counter-clockwise), on top of any drift.
    """

    time_s: float
    dropout: float = 0.0
    swap: float = 0.0
    gain: float = 1.0
    rotation_deg: float = 0.0


@dataclass(frozen=True)
class CortexTruth:
    """Ground truth of :func:`simulate_cortex`: the tuning and how it changed.

    Neurons own the tuning; channel ``c`` reports neuron ``channel_map[e, c]`` during epoch
    ``e``. Epoch 0 runs until the first disruption, epoch ``e`` starts at bin
    ``event_bins[e - 1]``.

    Attributes:
        preferred_rad: float64 ``[N]`` preferred directions of the neurons at t = 0.
        baseline_hz: float64 ``[N]`` baselines ``b_i`` in Hz.
        depth_hz: float64 ``[N]`` modulation depths ``m_i`` in Hz per ``velocity_std``.
        velocity_std: stationary standard deviation of each velocity component, cm/s.
        tau_s: OU time constant in seconds.
        lead_s: how far spikes lead movement, seconds (``lead_bins`` bins).
        lead_bins: the lead in bins.
        drift_deg_per_min: rotation rate of all preferred directions.
        disruption_times_s: the events' times in seconds, sorted.
        event_bins: int64 ``[E]`` the first bin of each epoch after the first.
        channel_map: int64 ``[E + 1, N]`` neuron reported by each channel, per epoch.
        alive: bool ``[E + 1, N]`` whether each channel records, per epoch.
        gain: float64 ``[E + 1]`` rate multiplier, per epoch.
        rotation_rad: float64 ``[E + 1]`` rotation of the preferred directions by the
            disruptions (drift not included), per epoch.
    """

    preferred_rad: Tensor
    baseline_hz: Tensor
    depth_hz: Tensor
    velocity_std: float
    tau_s: float
    lead_s: float
    lead_bins: int
    drift_deg_per_min: float
    disruption_times_s: tuple
    event_bins: Tensor
    channel_map: Tensor
    alive: Tensor
    gain: Tensor
    rotation_rad: Tensor

    def epoch_at(self, k: int) -> int:
        """The epoch (0 = before any disruption) of bin ``k``."""
        return int(torch.searchsorted(self.event_bins, torch.tensor([k]), right=True))

    def tuning_at(self, k: int, dt: float) -> dict:
        """Effective per-channel tuning at bin ``k`` (bins of ``dt`` seconds).

        Returns a dict of float64/bool tensors ``[N]``, one entry per channel:
        ``preferred_rad`` (drift and rotations included), ``baseline_hz`` and ``depth_hz``
        (gain and dropout included: 0 on a silent channel), and ``alive``; the rate of
        channel ``c`` is ``max(0, baseline + depth * (v(t + lead) . d) / velocity_std)``.
        """
        e = self.epoch_at(k)
        neuron = self.channel_map[e]
        scale = self.gain[e] * self.alive[e].double()
        drift = math.radians(self.drift_deg_per_min) * k * dt / 60.0
        return {
            "preferred_rad": self.preferred_rad[neuron] + self.rotation_rad[e] + drift,
            "baseline_hz": self.baseline_hz[neuron] * scale,
            "depth_hz": self.depth_hz[neuron] * scale,
            "alive": self.alive[e].clone(),
        }


def _check_number(value, name: str, *, low: float = -math.inf, low_open: bool = False,
                  high: float = math.inf, unit: str = "") -> float:
    unit = f" ({unit})" if unit else ""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number{unit}, got {type(value).__name__} {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        top = f" and <= {high:g}" if high < math.inf else ""
        raise ValueError(f"{name} must be a finite number {bound}{top}{unit}, got {value!r}")
    return v


def _check_range(pair, name: str) -> tuple[float, float]:
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or any(isinstance(p, bool) or not isinstance(p, Real) for p in pair)):
        raise TypeError(f"{name} must be a pair (low, high) of numbers in Hz, got {pair!r}")
    low, high = float(pair[0]), float(pair[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"{name} must satisfy 0 <= low <= high (Hz), got {pair!r}")
    return low, high


def ar1_scan(decay: float, drive: Tensor, x0: Tensor) -> Tensor:
    """Exact ``x[k] = decay * x[k - 1] + drive[k]`` for ``k = 0..T-1`` from ``x[-1] = x0``.

    Vectorised in blocks: inside a block of length L the response to the drive is one
    product with the lower-triangular matrix ``decay**(i - j)``; the state carried into the
    next block is a loop over T / L blocks.

    Args:
        decay: the AR(1) coefficient (|decay| < 1 keeps the powers bounded).
        drive: ``[T, D]`` input of each step.
        x0: ``[D]`` state before the first step.

    Returns:
        ``[T, D]`` the states, dtype of ``drive``.
    """
    n, dims = drive.shape
    length = min(_SCAN_BLOCK, max(n, 1))
    i = torch.arange(length, dtype=drive.dtype)
    lags = i[:, None] - i[None, :]                                    # [L, L]
    powers = torch.where(lags >= 0, decay ** lags.clamp(min=0), torch.zeros((), dtype=drive.dtype))
    carry_in = decay ** (i + 1)                                       # [L] decay of x[-1]
    n_blocks = -(-n // length)
    padded = torch.zeros(n_blocks * length, dims, dtype=drive.dtype)
    padded[:n] = drive
    blocks = padded.view(n_blocks, length, dims)                      # [B, L, D]
    local = torch.einsum("ij,bjd->bid", powers, blocks)               # zero-state responses
    out = torch.empty_like(local)
    state = x0.to(drive.dtype)
    for b in range(n_blocks):
        out[b] = local[b] + carry_in[:, None] * state
        state = out[b, -1]
    return out.reshape(-1, dims)[:n]


def poisson_from_uniform(mean: Tensor, u: Tensor) -> Tensor:
    """Poisson counts with the given means by inverting the CDF at the uniforms ``u``.

    ``count = min {k : P(X <= k) >= u}``: one uniform per count, so a count depends only on
    its own mean and uniform (unlike ``torch.poisson``, whose draws shift with every rate).
    The loop runs once per count value reached, on the still-undecided entries only.

    Args:
        mean: float64 means (>= 0), any shape.
        u: uniforms in [0, 1), same shape.

    Returns:
        float32 counts, same shape.
    """
    counts = torch.zeros(mean.shape, dtype=torch.float32)
    flat_counts = counts.view(-1)
    lam = mean.reshape(-1)
    p = torch.exp(-lam)                                   # P(X = 0)
    cdf = p.clone()
    idx = torch.nonzero(u.reshape(-1) > cdf).squeeze(1)   # entries whose count is > 0
    lam, p, cdf, uu = lam[idx], p[idx], cdf[idx], u.reshape(-1)[idx].double()
    k = 0
    while idx.numel():
        k += 1
        p = p * lam / k
        cdf = cdf + p
        flat_counts[idx] = k
        # p == 0: the CDF cannot grow further (float rounding left u above it); stop there
        more = (uu > cdf) & (p > 0)
        idx, lam, p, cdf, uu = idx[more], lam[more], p[more], cdf[more], uu[more]
    return counts


def simulate_cortex(
    duration_s: float = 300.0,
    n_channels: int = 96,
    *,
    dt: float = 0.004,
    tau_s: float = 0.3,
    velocity_std: float = 10.0,
    baseline_hz: tuple = (5.0, 20.0),
    depth_hz: tuple = (2.0, 6.0),
    lead_s: float = 0.1,
    train_fraction: float = 0.75,
    drift_deg_per_min: float = 0.0,
    disruptions: Sequence[Disruption] = (),
    seed: int = 0,
    recording_seed: Optional[int] = None,
) -> ReachingData:
    """Simulate binned motor-cortex spike counts and hand velocity (see the module docstring).

    Args:
        duration_s: length of the recording in seconds; ``T = round(duration_s / dt)`` bins.
        n_channels: number of recorded channels N (one neuron each).
        dt: bin width in seconds (4 ms).
        tau_s: time constant of the OU velocity, seconds.
        velocity_std: stationary standard deviation of each velocity component, cm/s; also
            the velocity scale of the tuning (depths are per ``velocity_std``).
        baseline_hz: ``(low, high)`` of the uniform baseline rates, Hz.
        depth_hz: ``(low, high)`` of the uniform modulation depths, Hz per ``velocity_std``.
        lead_s: how long spikes lead movement, seconds (rounded to whole bins, >= 0).
        train_fraction: the first ``round(train_fraction * T)`` bins form the training part.
        drift_deg_per_min: rotation rate of all preferred directions, degrees per minute.
        disruptions: :class:`Disruption` events (any order; applied in time order).
        seed: seeds the ``torch.Generator`` of all draws (the global RNG is untouched).
        recording_seed: if given, seeds a separate generator for every draw after the
            tuning (velocity, spikes, disruption channels): the same population (from
            ``seed``) in a recording whose movements share nothing with ``seed``'s.

    Returns:
        :class:`ReachingData` with ``counts [T, N]``, ``velocity [T, 2]`` (cm/s),
        ``position [T, 2]`` (cm), ``split`` and ``truth`` (:class:`CortexTruth`).

    Example:
        >>> d = simulate_cortex(10.0, 8, seed=1)
        >>> d.counts.shape, d.velocity.shape, d.split, d.truth.lead_bins
        (torch.Size([2500, 8]), torch.Size([2500, 2]), 1875, 25)
    """
    duration_s = _check_number(duration_s, "duration_s", low=0.0, low_open=True, unit="seconds")
    check_int(n_channels, "n_channels")
    dt = _check_number(dt, "dt", low=0.0, low_open=True, unit="seconds")
    tau_s = _check_number(tau_s, "tau_s", low=0.0, low_open=True, unit="seconds")
    velocity_std = _check_number(velocity_std, "velocity_std", low=0.0, low_open=True,
                                 unit="cm/s")
    b_lo, b_hi = _check_range(baseline_hz, "baseline_hz")
    m_lo, m_hi = _check_range(depth_hz, "depth_hz")
    lead_s = _check_number(lead_s, "lead_s", low=0.0, unit="seconds")
    train_fraction = _check_number(train_fraction, "train_fraction", low=0.0, high=1.0)
    drift_deg_per_min = _check_number(drift_deg_per_min, "drift_deg_per_min",
                                      unit="degrees per minute")
    check_int(seed, "seed", minimum=0)
    if recording_seed is not None:
        recording_seed = check_int(recording_seed, "recording_seed", minimum=0)
    n_bins = int(round(duration_s / dt))
    if n_bins < 2:
        raise ValueError(f"duration_s={duration_s} s gives {n_bins} bin(s) of dt={dt} s; "
                         "simulate at least 2 bins (lengthen duration_s or shorten dt)")
    events = _check_disruptions(disruptions, duration_s)
    lead = int(round(lead_s / dt))
    n = n_channels

    gen = torch.Generator().manual_seed(seed)
    # Fixed-size draws first, in a fixed order, so drift and disruptions change nothing else.
    preferred = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    baseline = b_lo + (b_hi - b_lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    depth = m_lo + (m_hi - m_lo) * torch.rand(n, generator=gen, dtype=torch.float64)
    if recording_seed is not None:
        gen = torch.Generator().manual_seed(recording_seed)
    v0 = velocity_std * torch.randn(2, generator=gen, dtype=torch.float64)
    noise = torch.randn(n_bins + lead - 1, 2, generator=gen, dtype=torch.float64)
    uniforms = torch.rand(n_bins, n, generator=gen, dtype=torch.float64)

    # Exact OU on the bin grid, started in its stationary distribution: [T + lead, 2]
    a = math.exp(-dt / tau_s)
    drive = math.sqrt(1.0 - a * a) * velocity_std * noise
    vel = torch.cat([v0[None], ar1_scan(a, drive, v0)])                     # [T + lead, 2]

    # Epochs between disruptions: which neuron each channel reports, alive, gain, rotation.
    n_epochs = len(events) + 1
    channel_map = torch.arange(n).repeat(n_epochs, 1)                  # [E + 1, N]
    alive = torch.ones(n_epochs, n, dtype=torch.bool)
    gain = torch.ones(n_epochs, dtype=torch.float64)
    rotation = torch.zeros(n_epochs, dtype=torch.float64)
    for e, ev in enumerate(events, start=1):
        channel_map[e], alive[e] = channel_map[e - 1], alive[e - 1]
        gain[e] = gain[e - 1] * ev.gain
        rotation[e] = rotation[e - 1] + math.radians(ev.rotation_deg)
        n_drop = int(round(ev.dropout * n))
        if n_drop:
            alive[e, torch.randperm(n, generator=gen)[:n_drop]] = False
        n_swap = int(round(ev.swap * n))
        if n_swap >= 2:
            chosen = torch.randperm(n, generator=gen)[:n_swap]
            channel_map[e, chosen] = channel_map[e - 1, chosen.roll(-1)]
    event_bins = torch.tensor([int(round(ev.time_s / dt)) for ev in events], dtype=torch.int64)
    epoch = torch.zeros(n_bins, dtype=torch.int64)                      # [T]
    for e, k in enumerate(event_bins.tolist(), start=1):
        epoch[k:] = e

    # Rates [T, N] in Hz. Bin k is driven by the velocity lead bins later. Rotating every
    # preferred direction by phi equals rotating the velocity by -phi, so the projection is
    # one [T, 2] x [2, N] product per epoch instead of a cosine per bin and channel.
    t = dt * torch.arange(n_bins, dtype=torch.float64)
    phi = rotation[epoch] + math.radians(drift_deg_per_min) * t / 60.0       # [T]
    vx, vy = (vel[lead:lead + n_bins] / velocity_std).unbind(1)               # [T] each
    cos_p, sin_p = torch.cos(phi), torch.sin(phi)
    v_rot = torch.stack([cos_p * vx + sin_p * vy, cos_p * vy - sin_p * vx], 1)  # [T, 2]
    directions = torch.stack([torch.cos(preferred), torch.sin(preferred)], 1)   # [N, 2]
    rates = torch.empty(n_bins, n, dtype=torch.float64)
    bounds = [0] + event_bins.tolist() + [n_bins]
    for e in range(n_epochs):
        seg, neuron = slice(bounds[e], bounds[e + 1]), channel_map[e]
        scale = gain[e] * alive[e]                                            # [N]
        rates[seg] = ((baseline[neuron] + depth[neuron] * (v_rot[seg] @ directions[neuron].T))
                      .clamp_(min=0.0) * scale)
    counts = poisson_from_uniform(rates * dt, uniforms)

    velocity = vel[:n_bins]
    position = torch.cat([torch.zeros(1, 2, dtype=torch.float64),
                          torch.cumsum(velocity[:-1] * dt, 0)])
    truth = CortexTruth(
        preferred_rad=preferred, baseline_hz=baseline, depth_hz=depth,
        velocity_std=velocity_std, tau_s=tau_s, lead_s=lead * dt, lead_bins=lead,
        drift_deg_per_min=drift_deg_per_min,
        disruption_times_s=tuple(ev.time_s for ev in events), event_bins=event_bins,
        channel_map=channel_map, alive=alive, gain=gain, rotation_rad=rotation)
    return ReachingData(
        counts=counts, velocity=velocity.float(), dt=dt,
        split=int(round(train_fraction * n_bins)), position=position.float(),
        channel_names=tuple(f"ch{c:03d}" for c in range(n)), t_start=0.0,
        source="simulation", truth=truth)


def _check_disruptions(disruptions, duration_s: float) -> list:
    if isinstance(disruptions, Disruption):
        disruptions = (disruptions,)
    events = list(disruptions)
    for i, ev in enumerate(events):
        if not isinstance(ev, Disruption):
            raise TypeError(f"disruptions[{i}] must be a Disruption(time_s, dropout=..., "
                            f"swap=..., gain=..., rotation_deg=...), got {type(ev).__name__}")
        name = f"disruptions[{i}]"
        _check_number(ev.time_s, f"{name}.time_s", low=0.0, low_open=True, unit="seconds")
        if ev.time_s >= duration_s:
            raise ValueError(f"{name}.time_s={ev.time_s} s is not inside the recording of "
                             f"duration_s={duration_s} s; put it earlier or simulate longer")
        _check_number(ev.dropout, f"{name}.dropout", low=0.0, high=1.0)
        _check_number(ev.swap, f"{name}.swap", low=0.0, high=1.0)
        _check_number(ev.gain, f"{name}.gain", low=0.0)
        _check_number(ev.rotation_deg, f"{name}.rotation_deg", unit="degrees")
    return sorted(events, key=lambda ev: ev.time_s)
