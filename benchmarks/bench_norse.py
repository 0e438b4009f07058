"""Norse on the benchmark workloads.

Path: the input projection hoisted as one time-folded ``nn.Linear``, then Norse's voltage-based
LIF cell ``LIFBoxCell`` stepped over ``unbind(0)`` ("cell loop"); the B readout is
``LIBoxCell``. Norse's sequence module ``norse.torch.LIF`` (and ``LIFRecurrent``) models a
current-based LIF with a hard reset only (``LIFParameters`` has no reset method) and indexes
``input[ts]`` inside its loop; ``LIFBoxParameters`` takes ``reset_method=reset_subtract``, so the
cell is the exact match for the workload. For C the recurrent input ``W_rec z_{t-1}`` is added
to the current in the same loop (Norse's ``LIFRecurrentCell`` has the same current-based/hard-
reset limits and applies the input weights inside the loop).

Mapping (docs/conventions.md, "Porting"): Norse integrates ``v += dt tau_mem_inv (x - v)``, i.e.
decay ``1 - dt tau_mem_inv`` and input gain ``g = dt tau_mem_inv``. With
``tau_mem_inv = (1 - a) / dt`` the decay is ``a = exp(-1/20)`` and every weight is divided by
``g = 1 - a`` so the membrane sees the same current as in spikegrad. Surrogate: ``method="super"``;
Norse 1.1.0's SuperSpike backward is ``1 / (1 + |x|)^2`` whatever ``alpha`` says.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class NorseBench(common.TorchBench):
    def __init__(self, wl, data):
        torch = common.torch_init()
        from norse.torch import LIBoxCell, LIBoxParameters, LIFBoxCell, LIFBoxParameters
        from norse.torch.functional.reset import reset_subtract
        nn = torch.nn
        self.torch, self.wl = torch, wl
        n_in, n = wl["n_in"], wl["n"]
        g = 1.0 - common.DECAY
        tmi = torch.as_tensor(g / common.DT)
        self.cell = LIFBoxCell(LIFBoxParameters(
            tau_mem_inv=tmi, v_leak=torch.as_tensor(0.0), v_th=torch.as_tensor(common.THRESHOLD),
            v_reset=torch.as_tensor(0.0), method="super",
            alpha=torch.as_tensor(common.SURROGATE_SLOPE), reset_method=reset_subtract),
            dt=common.DT)

        def linear(w):
            lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w) / g)
            return lin

        self.fc = linear(data["w_in"])
        self.params = [self.fc.weight]
        if wl["kind"] == "rec":
            self.w_rec = (torch.from_numpy(data["w_rec"]) / g).requires_grad_(True)
            self.params.append(self.w_rec)
        if wl["kind"] == "clf":
            self.fc2 = linear(data["w_out"])
            self.readout = LIBoxCell(LIBoxParameters(tau_mem_inv=tmi, v_leak=torch.as_tensor(0.0)),
                                     dt=common.DT)
            self.params.append(self.fc2.weight)
        self.x = torch.from_numpy(data["x"])
        self.info = {"versions": common.versions("torch", "norse"),
                     "path": "time-folded nn.Linear, then LIFBoxCell stepped over unbind(0)"
                             + (" + W_rec z_{t-1}" if wl["kind"] == "rec" else ""),
                     "model": "tau_mem_inv=(1-a)/dt, weights/(1-a), reset_subtract, SuperSpike"}

    def run(self):
        torch = self.torch
        F = torch.nn.functional
        cur = self.fc(self.x)
        spikes, s = [], None
        if self.wl["kind"] == "rec":
            z = torch.zeros_like(cur[0])
            for c in cur.unbind(0):
                z, s = self.cell(c + F.linear(z, self.w_rec), s)
                spikes.append(z)
        else:
            for c in cur.unbind(0):
                z, s = self.cell(c, s)
                spikes.append(z)
        zs = torch.stack(spikes)
        if self.wl["kind"] != "clf":
            return zs.sum(), zs
        vs, s = [], None
        for c in self.fc2(zs).unbind(0):
            v, s = self.readout(c, s)
            vs.append(v)
        return torch.stack(vs).sum(), zs


def build(wl, data, variant):
    common.no_cnn(wl, "norse")
    return NorseBench(wl, data)


if __name__ == "__main__":
    common.worker_main(build)
