"""Silent-channel compensation: a channel that has not spiked for ``silent_bins`` bins is taken
for dead (an electrode lost), and the live channels' counts are scaled by ``N / N_alive``.

Why the scale: the offline decoder was trained with input dropout (each count zeroed with
probability p, the rest scaled by ``1 / (1 - p)``, train.py), so its input weights expect the
summed drive of a full array; with a fraction of the channels gone, scaling the rest by
``N / N_alive`` restores the expected drive of every hidden neuron (inverted dropout's own
argument), the dead channels' inputs staying at zero counts as in training. Online learning
then has the remaining error to remove, not the lost drive as well.

Why the threshold is long: rates in the simulation are ``max(0, b + m cos)`` with b >= 5 Hz,
so a live channel can pause while the hand moves against its preferred direction; in the 16
default disruption streams (8 per kind) of each of seeds 0-2 no live channel paused for 5 s
(at 2 s about 2 in 10^4 channel-bins were flagged wrongly, at 3 s 6 in 10^6).

Causal: the flag of bin ``t`` depends on bins ``< t`` only.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

__all__ = ["silent_channels", "compensate_silent"]


def silent_channels(counts: Tensor, silent_bins: int) -> Tensor:
    """``[T, N]`` bool: channel ``n`` is silent at bin ``t`` if it had no count in the
    ``silent_bins`` bins before ``t`` (bins ``t - silent_bins .. t - 1``); no channel is silent
    in the first ``silent_bins`` bins (nothing seen yet)."""
    if counts.dim() != 2:
        raise ValueError(f"counts must be [T, N], got shape {tuple(counts.shape)}")
    if isinstance(silent_bins, bool) or not isinstance(silent_bins, int) or silent_bins < 1:
        raise ValueError(f"silent_bins must be an int >= 1, got {silent_bins!r}")
    n_bins = counts.shape[0]
    spiked = (counts > 0).to(torch.int64)
    cs = torch.cat([torch.zeros_like(spiked[:1]), spiked.cumsum(0)])          # [T + 1, N]
    t = torch.arange(n_bins)
    recent = cs[t] - cs[(t - silent_bins).clamp(min=0)]                         # [T, N]
    return (recent == 0) & (t >= silent_bins)[:, None]


def compensate_silent(counts: Tensor, silent_bins: int) -> Tuple[Tensor, Tensor]:
    """Counts ``[T, N]`` with the silent channels (:func:`silent_channels`) zeroed and the
    others scaled by ``N / N_alive`` per bin (1 while none is silent; 0 if all are). Returns
    ``(counts [T, N] of the input's dtype, silent [T, N] bool)``."""
    silent = silent_channels(counts, silent_bins)
    alive = (~silent).to(counts.dtype)
    n_alive = alive.sum(1, keepdim=True)
    scale = torch.where(n_alive > 0, counts.shape[1] / n_alive.clamp(min=1),
                        torch.zeros_like(n_alive))
    return counts * alive * scale, silent
