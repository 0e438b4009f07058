"""Accuracy and cost of a converted SNN at every T of a list in one pass: the input is
constant and the network causal, so the run of the longest T holds every shorter one (the
accumulated output at step ``T - 1``, the spikes and synaptic operations up to it)."""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch.utils.data import TensorDataset

from ... import nn
from ...convert import repeat_input

__all__ = ["over_time", "layer_rates"]


def _synaptic(m) -> bool:
    return isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))


@torch.no_grad()
def over_time(snn: nn.Sequential, ds: TensorDataset, steps: Sequence[int],
              batch_size: int = 100) -> Dict[int, Dict[str, float]]:
    """``{T: {"accuracy", "spikes", "synops"}}`` per inference for each ``T`` in ``steps``,
    and under ``-1`` the spikes of each spiking layer at the longest ``T``
    (``"spikes/<layer>"``, with ``"neurons/<layer>"``). The prediction at ``T`` is the
    argmax of the accumulated output after ``T`` steps; synaptic operations are counted
    from the events each layer receives (:func:`spikegrad.nn.synaptic_ops`)."""
    snn.eval()
    t_max, n = max(steps), 0
    correct = {t: 0 for t in steps}
    spikes, synops = torch.zeros(t_max, dtype=torch.float64), torch.zeros(t_max,
                                                                          dtype=torch.float64)
    per_layer: Dict[str, float] = {}
    x_all, y_all = ds.tensors
    for i0 in range(0, len(y_all), batch_size):
        x, y = x_all[i0:i0 + batch_size], y_all[i0:i0 + batch_size]
        xs = repeat_input(x, t_max)
        outs, _ = snn.forward_all(xs)
        for t in steps:
            correct[t] += int((outs[-1][t - 1].argmax(1) == y).sum())
        inp = xs
        for i, m in enumerate(snn.layers):
            if _synaptic(m):
                fan = nn.fan_out(m, inp.shape[2:])
                synops += nn.synaptic_ops(m, inp, fan, per_step=True).sum(1).double()
            elif isinstance(m, nn.LIF):
                counts = outs[i].flatten(2).sum(2)                         # [T, B]
                spikes += counts.sum(1).double()
                name = f"{i}:{type(m).__name__}{tuple(outs[i].shape[2:])}"
                per_layer[f"spikes/{name}"] = per_layer.get(f"spikes/{name}", 0.0) + \
                    float(counts.sum())
                per_layer[f"neurons/{name}"] = float(outs[i][0, 0].numel())
            inp = outs[i]
        n += len(y)
    spikes, synops = spikes.cumsum(0) / n, synops.cumsum(0) / n
    out = {t: {"accuracy": correct[t] / n, "spikes": float(spikes[t - 1]),
               "synops": float(synops[t - 1])} for t in steps}
    out[-1] = {k: (v / n if k.startswith("spikes/") else v) for k, v in per_layer.items()}
    return out


def layer_rates(per_layer: Dict[str, float], t_max: int, dt_s: float) -> List[tuple]:
    """``(layer, mean rate in Hz, spikes per neuron per step)`` from :func:`over_time`'s
    ``-1`` entry, for a run of ``t_max`` steps of ``dt_s`` seconds."""
    rows = []
    for key, total in per_layer.items():
        if key.startswith("spikes/"):
            name = key[len("spikes/"):]
            per_step = total / (per_layer[f"neurons/{name}"] * t_max)
            rows.append((name, per_step / dt_s, per_step))
    return rows


