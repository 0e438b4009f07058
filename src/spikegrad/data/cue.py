"""Generated memory tasks for biophysical neurons: cue accumulation and delayed spiking XOR.

Both generators are deterministic functions of ``seed`` (a private ``torch.Generator``; the
global RNG is untouched) and return sample-major spike trains ``x [N, T, C]`` (float32 in
{0, 1}) with labels ``y [N]`` (int64); transpose to ``[T, B, C]`` for a network.

- :func:`cue_accumulation`: the evidence-accumulation task of Bellec et al. 2020 (Nat.
  Commun. 11:3625; e-prop tutorial set-up). 40 channels in four groups of 10: left cues,
  right cues, recall cue, background noise. Each trial has ``n_cues`` (7) cues of
  ``t_cue_ms`` (100 ms) every ``t_spacing_ms`` (150 ms; each slot starts with 50 ms of
  silence); a cue is a burst of the left or the right group at ``rate_hz`` (40 Hz). The side
  of each cue is drawn with probability ``p_group`` (0.3) for the trial's minority side and
  ``1 - p_group`` for its majority side (the majority side is a fair coin per trial). After a
  delay (``t_delay_ms``) the recall group fires for ``t_recall_ms`` (150 ms); the noise group
  fires at ``rate_hz / 4`` throughout. Label: 1 if right cues outnumber left cues (``n_cues``
  is odd, so there are no ties).
- :func:`delayed_xor`: the delayed spiking XOR of Zheng et al. 2024 (DH-SNN, Nat. Commun.
  15:277): 20 channels; a first pattern of ``pattern_steps`` (10) steps in which every channel
  fires with probability 0.2 (low) or 0.6 (high), ``delay_steps`` steps of background noise
  (``noise_rate`` per channel and step), a second pattern at the end of the trial, then
  ``response_steps`` of noise for the decision. Label: ``first_high XOR second_high``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from .._validate import check_int

__all__ = ["CueData", "XORData", "cue_accumulation", "delayed_xor"]


class CueData(NamedTuple):
    x: Tensor             # [N, T, 40] spikes
    y: Tensor             # [N] 1 = more right cues
    cues: Tensor          # [N, n_cues] 0 = left, 1 = right
    recall_start: int     # first step of the recall (decision) window


class XORData(NamedTuple):
    x: Tensor             # [N, T, C] spikes
    y: Tensor             # [N] first XOR second
    first: Tensor         # [N] 1 = first pattern at the high rate
    second: Tensor        # [N] 1 = second pattern at the high rate
    response_start: int   # first step of the decision window (the second pattern's start)


def _steps(ms: float, dt_ms: float, name: str) -> int:
    n = int(round(ms / dt_ms))
    if n < 1:
        raise ValueError(f"{name}={ms} ms is shorter than one step (dt_ms={dt_ms}); "
                         "lengthen it or use a smaller dt_ms")
    return n


def cue_accumulation(n_trials: int, *, dt_ms: float = 1.0, n_cues: int = 7,
                     t_cue_ms: float = 100.0, t_spacing_ms: float = 150.0,
                     t_delay_ms: float = 1000.0, t_recall_ms: float = 150.0,
                     n_channels: int = 40, rate_hz: float = 40.0, p_group: float = 0.3,
                     seed: int = 0) -> CueData:
    """Evidence-accumulation trials (see the module docstring). ``T = n_cues * spacing +
    delay + recall`` steps of ``dt_ms``.

    Example:
        >>> d = cue_accumulation(4, dt_ms=10.0, t_delay_ms=200.0)
        >>> d.x.shape, d.recall_start, bool(((d.cues.sum(1) > 3).long() == d.y).all())
        (torch.Size([4, 140, 40]), 125, True)
    """
    check_int(n_trials, "n_trials")
    check_int(n_cues, "n_cues")
    if n_cues % 2 == 0:
        raise ValueError(f"n_cues must be odd (the majority must be defined), got {n_cues}")
    if n_channels < 4 or n_channels % 4:
        raise ValueError(f"n_channels must be a positive multiple of 4 (left, right, recall, "
                         f"noise groups), got {n_channels}")
    if not 0.0 <= p_group <= 0.5:
        raise ValueError(f"p_group is the minority side's cue probability, in [0, 0.5]; "
                         f"got {p_group}")
    if t_cue_ms > t_spacing_ms:
        raise ValueError(f"t_cue_ms ({t_cue_ms}) must not exceed t_spacing_ms ({t_spacing_ms})")
    cue, spacing = _steps(t_cue_ms, dt_ms, "t_cue_ms"), _steps(t_spacing_ms, dt_ms, "t_spacing_ms")
    delay = int(round(t_delay_ms / dt_ms))
    recall = _steps(t_recall_ms, dt_ms, "t_recall_ms")
    p = rate_hz * dt_ms * 1e-3
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rate_hz * dt gives a spike probability {p} per step; it must be in "
                         "(0, 1]: lower rate_hz or dt_ms")
    g = torch.Generator().manual_seed(seed)
    T = n_cues * spacing + delay + recall
    group = n_channels // 4
    majority = torch.randint(0, 2, (n_trials, 1), generator=g)               # 0 left, 1 right
    flip = (torch.rand(n_trials, n_cues, generator=g) < p_group).long()
    cues = majority ^ flip                                                   # [N, n_cues]
    prob = torch.zeros(n_trials, T, n_channels)
    silence = spacing - cue
    for k in range(n_cues):
        t0 = k * spacing + silence
        for side in (0, 1):
            rows = cues[:, k] == side
            prob[rows, t0:t0 + cue, side * group:(side + 1) * group] = p
    prob[:, T - recall:, 2 * group:3 * group] = p
    prob[:, :, 3 * group:] = p / 4
    x = (torch.rand(prob.shape, generator=g) < prob).float()
    y = (cues.sum(1) > n_cues // 2).long()
    return CueData(x, y, cues, T - recall)


def delayed_xor(n_trials: int, *, n_channels: int = 20, pattern_steps: int = 10,
                delay_steps: int = 50, response_steps: int = 5,
                rates: Sequence[float] = (0.2, 0.6), noise_rate: float = 0.02,
                seed: int = 0) -> XORData:
    """Delayed spiking XOR trials (see the module docstring). ``T = 2 * pattern_steps +
    delay_steps + response_steps``; the decision window is the second pattern and the
    response steps.

    Example:
        >>> d = delayed_xor(8, delay_steps=20)
        >>> d.x.shape, d.response_start, bool((d.y == d.first ^ d.second).all())
        (torch.Size([8, 45, 20]), 30, True)
    """
    check_int(n_trials, "n_trials")
    check_int(n_channels, "n_channels")
    check_int(pattern_steps, "pattern_steps")
    check_int(delay_steps, "delay_steps", minimum=0)
    check_int(response_steps, "response_steps", minimum=0)
    low, high = (float(r) for r in rates)
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"rates must be (low, high) spike probabilities per step with "
                         f"0 <= low < high <= 1, got {tuple(rates)}")
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be a probability in [0, 1), got {noise_rate}")
    g = torch.Generator().manual_seed(seed)
    T = 2 * pattern_steps + delay_steps + response_steps
    first = torch.randint(0, 2, (n_trials,), generator=g)
    second = torch.randint(0, 2, (n_trials,), generator=g)
    prob = torch.full((n_trials, T, n_channels), noise_rate)
    rate = torch.tensor([low, high])
    prob[:, :pattern_steps] = rate[first][:, None, None]
    start2 = pattern_steps + delay_steps
    prob[:, start2:start2 + pattern_steps] = rate[second][:, None, None]
    x = (torch.rand(prob.shape, generator=g) < prob).float()
    return XORData(x, first ^ second, first, second, start2)
