"""Spike encoders: turn analog values into time-major spike trains.

Every encoder returns float spikes with values in {0, 1}, shaped ``[T, *x.shape]``
(time-major, so ``x`` of shape ``[B, *features]`` gives ``[T, B, *features]``).
Time is measured in simulation steps unless a name says otherwise (``dt`` in seconds,
``rates_hz`` in Hz).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor

from .._validate import check_int, check_real, check_tensor

__all__ = ["rate", "poisson", "latency", "latency_times", "delta", "population"]


# -- validation helpers -------------------------------------------------------------------


def _check_tensor(name: str, x: object) -> Tensor:
    return check_tensor(x, name)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        # an infinite dt, tau or width turns every probability or spike time into inf/NaN
        raise ValueError(f"{name} must be a number > 0, got {value!r}; it must be finite")
    return float(value)


def _check_finite(name: str, x: Tensor, hint: str = "") -> None:
    """NaN/inf in the data would encode silently as no spikes (every comparison is false);
    one pass over the data, the order of the encoding itself."""
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or inf values; clean the data first{hint}")


def _check_range(name: str, x: Tensor, lo: float, hi: float, hint: str = "") -> None:
    # NaN fails both comparisons, so it is reported too.
    if x.numel() and not bool(((x >= lo) & (x <= hi)).all()):
        bad = x[~((x >= lo) & (x <= hi))]
        raise ValueError(
            f"{name} must lie in [{lo}, {hi}], got values in "
            f"[{x.min().item():.4g}, {x.max().item():.4g}] "
            f"(first offending value {bad.flatten()[0].item():.4g}){hint}"
        )


def _bernoulli_steps(p: Tensor, n_steps: int, generator: torch.Generator | None) -> Tensor:
    u = torch.rand((n_steps, *p.shape), generator=generator, dtype=p.dtype, device=p.device)
    # Strict '<' makes p = 0 never spike and p = 1 always spike (rand is in [0, 1)).
    return (u < p).to(p.dtype)


# -- rate codes ---------------------------------------------------------------------------


def rate(
    x: Tensor,
    n_steps: int,
    *,
    gain: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Bernoulli rate code: at every step, each element spikes with probability ``gain * x``.

    Args:
        x: analog values, any shape, floating point; ``gain * x`` must lie in [0, 1].
        n_steps: number of time steps T (>= 1).
        gain: multiplies ``x`` to give the per-step spike probability (dimensionless).
        generator: optional ``torch.Generator`` for reproducible draws (must live on
            ``x.device``).

    Returns:
        Spikes in {0, 1}, dtype of ``x``.

    Shapes:
        x: ``[*S]`` -> ``[n_steps, *S]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> rate(torch.tensor([0.0, 1.0]), 3, generator=g)
        tensor([[0., 1.],
                [0., 1.],
                [0., 1.]])
    """
    x = _check_tensor("x", x)
    n_steps = check_int(n_steps, "n_steps")
    if isinstance(gain, bool) or not isinstance(gain, Real) or not math.isfinite(gain):
        raise ValueError(f"gain must be a finite number, got {gain!r}")
    p = x * gain
    _check_range("gain * x (the per-step spike probability)", p, 0.0, 1.0,
                 "; rescale x or lower gain")
    return _bernoulli_steps(p, n_steps, generator)


def poisson(
    rates_hz: Tensor,
    n_steps: int,
    dt: float,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Poisson (Bernoulli-per-bin) spike trains from firing rates.

    Each element spikes at each step with probability ``rates_hz * dt``, the
    small-``dt`` approximation of a Poisson process (at most one spike per bin).

    Args:
        rates_hz: firing rates in Hz (>= 0), floating point, any shape.
        n_steps: number of time steps T (>= 1).
        dt: step length in seconds (> 0); ``rates_hz * dt`` must be <= 1.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        Spikes in {0, 1}, dtype of ``rates_hz``.

    Shapes:
        rates_hz: ``[*S]`` -> ``[n_steps, *S]``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> poisson(torch.full((2,), 50.0), 1000, 1e-3, generator=g).shape
        torch.Size([1000, 2])
    """
    rates_hz = _check_tensor("rates_hz", rates_hz)
    n_steps = check_int(n_steps, "n_steps")
    dt = _check_positive("dt", dt)
    _check_range("rates_hz", rates_hz, 0.0, math.inf)
    p = rates_hz * dt
    _check_range(f"rates_hz * dt (the per-step spike probability, dt={dt})", p, 0.0, 1.0,
                 "; use a smaller dt")
    return _bernoulli_steps(p, n_steps, generator)


# -- latency (time-to-first-spike) codes --------------------------------------------------


def latency_times(
    x: Tensor,
    n_steps: int,
    *,
    tau: float | None = None,
    threshold: float = 0.01,
    round_to_step: bool = True,
) -> Tensor:
    """Spike step of each element under the latency code used by :func:`latency`.

    Larger values spike earlier. Two mappings:

    * ``tau=None`` (linear code): ``t = round((1 - x) * (n_steps - 1))``, so ``x = 1``
      spikes at step 0 and ``x = 0`` at the last step; every element spikes and
      ``threshold`` is not used.
    * ``tau`` given (RC-charging code): the time a leaky integrator with time constant
      ``tau`` (in steps), driven by a constant input ``x`` from rest, needs to reach
      ``threshold``: ``t = tau * log(x / (x - threshold))``, clipped to ``n_steps - 1``.
      Elements with ``x <= threshold`` never reach it and never spike.

    Rounding is half-up (``floor(t + 0.5)``). Elements that never spike get the value
    ``n_steps`` (one step past the window), which keeps the result finite for a
    time-to-first-spike loss.

    Args:
        x: analog values in [0, 1], floating point, any shape.
        n_steps: number of time steps T (>= 1).
        tau: RC time constant in steps (> 0), or ``None`` for the linear code.
        threshold: firing threshold of the RC code, in [0, 1).
        round_to_step: if False, return the un-rounded (but clipped) time of the RC code;
            the linear code is integer-valued either way.

    Returns:
        Spike steps, dtype of ``x``; integer-valued when ``round_to_step``.

    Shapes:
        x: ``[*S]`` -> ``[*S]``.

    Example:
        >>> latency_times(torch.tensor([1.0, 0.5, 0.0]), 5)
        tensor([0., 2., 4.])
    """
    x = _check_tensor("x", x)
    n_steps = check_int(n_steps, "n_steps")
    _check_range("x", x, 0.0, 1.0, "; normalise x to [0, 1] first")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, Real)
        or not 0.0 <= threshold < 1.0
    ):
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if tau is None:
        t = (1.0 - x) * (n_steps - 1)
        # The product is integral up to float error; rounding always removes that error.
        return torch.floor(t + 0.5)
    tau = _check_positive("tau", tau)
    fires = x > threshold
    # Substitute a safe value where x <= threshold so that log() sees no 0 or negative.
    safe_x = torch.where(fires, x, torch.ones_like(x))
    t = tau * torch.log(safe_x / (safe_x - threshold))
    t = t.clamp(max=n_steps - 1)
    if round_to_step:
        t = torch.floor(t + 0.5)
    return torch.where(fires, t, torch.full_like(t, float(n_steps)))


def latency(
    x: Tensor,
    n_steps: int,
    *,
    tau: float | None = None,
    threshold: float = 0.01,
) -> Tensor:
    """Latency code: at most one spike per element, earlier for larger values.

    Deterministic; the spike of each element sits at the step given by
    :func:`latency_times` (see there for the linear and RC-charging mappings).

    Args:
        x: analog values in [0, 1], floating point, any shape.
        n_steps: number of time steps T (>= 1).
        tau: RC time constant in steps (> 0), or ``None`` for the linear code.
        threshold: firing threshold of the RC code, in [0, 1); with the RC code,
            elements with ``x <= threshold`` never spike.

    Returns:
        Spikes in {0, 1}, dtype of ``x``.

    Shapes:
        x: ``[*S]`` -> ``[n_steps, *S]``.

    Example:
        >>> latency(torch.tensor([1.0, 0.0]), 3)
        tensor([[1., 0.],
                [0., 0.],
                [0., 1.]])
    """
    t = latency_times(x, n_steps, tau=tau, threshold=threshold)
    steps = torch.arange(n_steps, device=x.device, dtype=t.dtype)
    steps = steps.view(n_steps, *([1] * x.dim()))
    # A never-firing element has t = n_steps, which matches no step.
    return (steps == t.unsqueeze(0)).to(x.dtype)


# -- delta (change) code ------------------------------------------------------------------


def delta(xs: Tensor, threshold: float, *, off_spikes: bool = True) -> Tensor:
    """Delta modulation (send-on-delta, as in event cameras and silicon cochleas).

    Each element keeps a reference, initially ``xs[0]``. At step ``t >= 1`` an ON spike
    is emitted when ``xs[t] - ref > threshold`` and an OFF spike when
    ``ref - xs[t] > threshold``; after either event the reference becomes ``xs[t]``.
    Step 0 never spikes. A signal that drifts slowly by less than ``threshold`` per
    event never fires, because the reference only moves on events. With
    ``off_spikes=False`` the OFF channel is dropped but still resets the reference, so
    the ON spikes are the same either way.

    Args:
        xs: analog sequence, time-major, floating point, rank >= 2.
        threshold: change that triggers an event, in the units of ``xs`` (> 0).
        off_spikes: return separate ON and OFF channels (True) or ON only.

    Returns:
        Spikes in {0, 1}, dtype of ``xs``.

    Shapes:
        xs: ``[T, B, *F]`` -> ``[T, B, 2, *F]`` (channel 0 ON, channel 1 OFF) when
        ``off_spikes``, else ``[T, B, *F]``.

    Example:
        >>> xs = torch.tensor([0.0, 0.5, 1.0, 0.2]).view(4, 1)
        >>> delta(xs, 0.3)[:, 0]
        tensor([[0., 0.],
                [1., 0.],
                [1., 0.],
                [0., 1.]])
    """
    xs = _check_tensor("xs", xs)
    if xs.dim() < 2:
        raise ValueError(
            f"xs must be time-major with rank >= 2 ([T, B, ...]), got shape {tuple(xs.shape)}"
        )
    threshold = _check_positive("threshold", threshold)
    _check_finite("xs", xs)
    on = torch.zeros_like(xs)
    off = torch.zeros_like(xs)
    ref = xs[0].clone()
    # The reference depends on earlier events, so this is inherently a scan over time.
    for t in range(1, xs.shape[0]):
        x = xs[t]
        up = (x - ref) > threshold
        down = (ref - x) > threshold
        on[t] = up.to(xs.dtype)
        off[t] = down.to(xs.dtype)
        ref = torch.where(up | down, x, ref)
    if off_spikes:
        return torch.stack([on, off], dim=2)
    return on


# -- population (place) code ---------------------------------------------------------------


def population(x: Tensor, n_neurons: int, low: float, high: float, *,
               width: float | None = None) -> Tensor:
    """Gaussian tuning curves: each value drives ``n_neurons`` input currents.

    Neuron ``k`` prefers ``c_k = low + k (high - low) / (n_neurons - 1)`` and responds
    ``exp(-(x - c_k)^2 / (2 width^2))`` (width defaults to the spacing of the centres). The
    output is an analog current in (0, 1], not spikes: feed it to a neuron layer, or to
    :func:`rate` for Bernoulli spikes. Used for sequences whose time axis is data (e.g. a
    1-D signal read left to right): a neuron layer can then respond to the *value* at each
    step nonlinearly from the first layer on.

    Args:
        x: analog values, floating point, any shape.
        n_neurons: number of tuning curves (>= 2).
        low, high: centres of the first and last curve (``low < high``).
        width: standard deviation of each curve, in the units of ``x`` (> 0).

    Shapes:
        x: ``[*S]`` -> ``[*S, n_neurons]``.

    Example:
        >>> population(torch.tensor([0.0]), 3, -1.0, 1.0)
        tensor([[0.6065, 1.0000, 0.6065]])
    """
    x = _check_tensor("x", x)
    check_int(n_neurons, "n_neurons", minimum=2)
    check_real(low, "low")
    check_real(high, "high")
    if not low < high:
        raise ValueError(f"need numbers low < high, got low={low!r}, high={high!r}")
    _check_finite("x", x)
    spacing = (high - low) / (n_neurons - 1)
    width = spacing if width is None else _check_positive("width", width)
    centres = torch.linspace(low, high, n_neurons, dtype=x.dtype, device=x.device)
    return torch.exp(-0.5 * ((x.unsqueeze(-1) - centres) / width) ** 2)
