"""An independent NIR executor for the tests, written from NIR's node equations and the
discrete reading documented in :mod:`spikegrad.interop` (float64, one step at a time):

    I_t = a_syn I_{t-1} + (1 - a_syn) w_in x_t;   v_t = a v_{t-1} + (1 - a)(v_leak + r I_t)
    integrators: v_t = v_{t-1} + dt r x_t;  spike z_t = v_t > v_threshold, then v_t = v_reset

with a = exp(-dt/tau) ("exp") or 1 - dt/tau ("euler"). A node's input is the sum of its incoming
edges; an edge that closes a cycle delivers the previous step's value. It shares no code with
spikegrad.
"""

from __future__ import annotations

import math
from collections import defaultdict

import nir
import numpy as np
import torch
import torch.nn.functional as F


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.array(a), dtype=torch.float64)


def _decay(tau, dt: float, disc: str) -> torch.Tensor:
    tau = _t(tau)
    return torch.exp(-dt / tau) if disc == "exp" else 1.0 - dt / tau


class Reference:
    """``Reference(graph, dt, disc).run(xs [T, B, ...]) -> (ys [T, B, ...], traces)`` with
    ``traces[name]``: the membrane after reset of every neuron node, ``[T, B, ...]``."""

    def __init__(self, graph, dt: float, disc: str):
        self.graph, self.dt, self.disc = graph, dt, disc
        start = next(k for k, n in graph.nodes.items() if isinstance(n, nir.Input))
        self.order, seen, queue = [], {start}, [start]
        succ = defaultdict(list)
        for a, b in graph.edges:
            succ[a].append(b)
        while queue:  # breadth first from the input: the order nodes are evaluated in
            name = queue.pop(0)
            self.order.append(name)
            for b in succ[name]:
                if b not in seen:
                    seen.add(b)
                    queue.append(b)
        rank = {k: i for i, k in enumerate(self.order)}
        self.pred = defaultdict(list)  # (source, delayed?)
        for a, b in graph.edges:
            self.pred[b].append((a, rank[a] >= rank[b]))
        self.sub = {k: Reference(n, dt, disc) for k, n in graph.nodes.items()
                    if isinstance(n, nir.NIRGraph)}
        self.state, self.out, self.traces = {}, {}, defaultdict(list)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        prev, out = dict(self.out), {}
        for name in self.order:
            node = self.graph.nodes[name]
            if isinstance(node, nir.Input):
                out[name] = x
                continue
            ins = [prev.get(a) if delayed else out[a] for a, delayed in self.pred[name]]
            ins = [i for i in ins if i is not None]  # a delayed edge carries 0 at the start
            u = ins[0] if len(ins) == 1 else sum(ins[1:], ins[0])
            out[name] = self._node(name, node, u)
        self.out = out
        return out[next(k for k in self.order if isinstance(self.graph.nodes[k], nir.Output))]

    def run(self, xs: torch.Tensor):
        ys = torch.stack([self.step(x) for x in xs.double()])
        traces = {k: torch.stack(v) for k, v in self.traces.items()}
        for k, ref in self.sub.items():
            traces.update({f"{k}.{n}": torch.stack(v) for n, v in ref.traces.items()})
        return ys, traces

    def _node(self, name: str, node, u: torch.Tensor) -> torch.Tensor:
        kind = type(node).__name__
        if kind == "Output":
            return u
        if kind == "NIRGraph":
            return self.sub[name].step(u)
        if kind in ("Affine", "Linear"):
            y = u @ _t(node.weight).T
            return y + _t(node.bias) if kind == "Affine" else y
        if kind in ("Conv1d", "Conv2d"):
            conv = F.conv1d if kind == "Conv1d" else F.conv2d
            pad = node.padding
            pad = str(pad) if isinstance(pad, (str, np.str_)) else tuple(np.atleast_1d(pad))
            return conv(u, _t(node.weight), _t(node.bias), tuple(np.atleast_1d(node.stride)),
                        pad, tuple(np.atleast_1d(node.dilation)), int(node.groups))
        if kind in ("SumPool2d", "AvgPool2d"):
            k = tuple(int(v) for v in node.kernel_size)
            y = F.avg_pool2d(u, k, tuple(int(v) for v in node.stride),
                             tuple(int(v) for v in node.padding), count_include_pad=True)
            return y * math.prod(k) if kind == "SumPool2d" else y
        if kind == "Flatten":
            return u.flatten(1)
        if kind == "Threshold":
            return (u > _t(node.threshold)).double()
        return self._neuron(name, node, kind, u)

    def _neuron(self, name: str, node, kind: str, u: torch.Tensor) -> torch.Tensor:
        v, i = self.state.get(name, (torch.zeros_like(u), torch.zeros_like(u)))
        if kind in ("CubaLIF", "CubaLI"):
            a_syn = _decay(node.tau_syn, self.dt, self.disc)
            i = a_syn * i + (1 - a_syn) * _t(node.w_in) * u
            u = i
        if kind in ("I", "IF"):
            v = v + self.dt * _t(node.r) * u
        else:
            a = _decay(node.tau if kind in ("LIF", "LI") else node.tau_mem, self.dt, self.disc)
            v = a * v + (1 - a) * (_t(node.v_leak) + _t(node.r) * u)
        y = v
        if kind in ("LIF", "CubaLIF", "IF"):
            y = (v > _t(node.v_threshold)).double()
            v = torch.where(y > 0, _t(node.v_reset).expand_as(v), v)
        self.state[name] = (v, i)
        self.traces[name].append(v)
        return y
