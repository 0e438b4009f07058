"""snnTorch on the benchmark workloads.

Fastest documented CPU path: ``snn.Leaky`` (``snn.RLeaky`` for C) stepped in a Python loop
over ``unbind(0)`` of the input currents, the input projection hoisted out of the loop as one
time-folded ``nn.Linear``. (snnTorch's ``LeakyParallel``/``StateLeaky`` are reset-free models,
not LIF.) Mapping (docs/conventions.md, "Porting"): ``beta = exp(-dt/tau) = a``,
``reset_mechanism="subtract"``, ``reset_delay=False`` (same-step reset: spikegrad's model with
the reset not detached), ``spike_grad=fast_sigmoid(slope=10)``. The B readout is
``snn.Leaky(reset_mechanism="none")`` read out through its membrane (snnTorch has no LI).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def _readout_membranes(torch, readout, cur):
    """The non-resetting ``snn.Leaky`` readout stepped over ``cur [T, B, n]``: its membranes."""
    mem = torch.zeros_like(cur[0])
    mems = []
    for c in cur.unbind(0):
        _, mem = readout(c, mem)
        mems.append(mem)
    return torch.stack(mems)


class SnntorchBench(common.TorchBench):
    def __init__(self, wl, data):
        torch = common.torch_init()
        import snntorch as snn
        from snntorch import surrogate
        nn = torch.nn
        self.torch, self.wl = torch, wl
        n_in, n = wl["n_in"], wl["n"]
        sg = surrogate.fast_sigmoid(slope=common.SURROGATE_SLOPE)
        self.fc = nn.Linear(n_in, n, bias=False)
        kw = dict(beta=common.DECAY, threshold=common.THRESHOLD, spike_grad=sg,
                  reset_mechanism="subtract", reset_delay=False)
        if wl["kind"] == "rec":
            self.lif = snn.RLeaky(all_to_all=True, linear_features=n, **kw)
        else:
            self.lif = snn.Leaky(**kw)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(data["w_in"]))
            if wl["kind"] == "rec":
                self.lif.recurrent.weight.copy_(torch.from_numpy(data["w_rec"]))
                self.lif.recurrent.bias.zero_()
        self.params = [self.fc.weight]
        if wl["kind"] == "rec":
            self.params += list(self.lif.recurrent.parameters())
        if wl["kind"] == "clf":
            self.fc2 = nn.Linear(n, wl["n_out"], bias=False)
            with torch.no_grad():
                self.fc2.weight.copy_(torch.from_numpy(data["w_out"]))
            self.readout = snn.Leaky(beta=common.DECAY, reset_mechanism="none", spike_grad=sg)
            self.params.append(self.fc2.weight)
        self.x = torch.from_numpy(data["x"])
        self.info = {"versions": common.versions("torch", "snntorch"),
                     "path": ("time-folded nn.Linear, then snn.RLeaky" if wl["kind"] == "rec"
                              else "time-folded nn.Linear, then snn.Leaky")
                             + " stepped over unbind(0)",
                     "model": "beta=a, subtract, reset_delay=False, fast_sigmoid(slope=10)"}

    def run(self):
        torch = self.torch
        cur = self.fc(self.x)                       # [T, B, n], one GEMM
        spikes = []
        if self.wl["kind"] == "rec":
            spk = torch.zeros_like(cur[0])           # explicit zero state every run
            mem = torch.zeros_like(cur[0])
            for c in cur.unbind(0):
                spk, mem = self.lif(c, spk, mem)
                spikes.append(spk)
        else:
            mem = torch.zeros_like(cur[0])
            for c in cur.unbind(0):
                spk, mem = self.lif(c, mem)
                spikes.append(spk)
        z = torch.stack(spikes)
        if self.wl["kind"] != "clf":
            return z.sum(), z
        return _readout_membranes(torch, self.readout, self.fc2(z)).sum(), z


class SnntorchCNN(common.TorchBench):
    """The conv workload: every conv, batch norm (``nn.BatchNorm2d`` on ``[T*B, ...]``: the
    statistics over T*B, as tdBN), pooling and the readout's ``nn.Linear`` time-folded; the
    ``snn.Leaky`` neurons stepped over ``unbind(0)``, as above."""

    def __init__(self, wl, data):
        torch = common.torch_init()
        import snntorch as snn
        from snntorch import surrogate
        nn = torch.nn
        self.torch = torch
        sg = surrogate.fast_sigmoid(slope=common.SURROGATE_SLOPE)
        kw = dict(beta=common.DECAY, threshold=common.THRESHOLD, spike_grad=sg,
                  reset_mechanism="subtract", reset_delay=False)
        self.convs, self.bns, self.lifs = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for key, c_in, c_out in (("w_c1", wl["c_in"], wl["c1"]), ("w_c2", wl["c1"], wl["c2"])):
            conv, bn = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(data[key]))
                bn.weight.fill_(float(data["bn_gamma"]))
            self.convs.append(conv)
            self.bns.append(bn)
            self.lifs.append(snn.Leaky(**kw))
        self.pool = nn.AvgPool2d(2, 2)
        self.fc = nn.Linear(common.cnn_flat(wl), wl["n_out"], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(data["w_out"]))
        self.readout = snn.Leaky(beta=common.DECAY, reset_mechanism="none", spike_grad=sg)
        self.params = [p for m in (self.convs, self.bns, self.fc) for p in m.parameters()]
        self.x = torch.from_numpy(data["x"])
        self.info = {"versions": common.versions("torch", "snntorch"),
                     "path": "time-folded nn.Conv2d + nn.BatchNorm2d + nn.AvgPool2d, "
                             "snn.Leaky stepped over unbind(0)",
                     "model": "beta=a, subtract, reset_delay=False, fast_sigmoid(slope=10)"}

    def run(self):
        torch = self.torch
        x, first = self.x, None
        T, B = x.shape[:2]
        for conv, bn, lif in zip(self.convs, self.bns, self.lifs):
            cur = bn(conv(x.flatten(0, 1))).unflatten(0, (T, B))
            mem = torch.zeros_like(cur[0])
            spikes = []
            for c in cur.unbind(0):
                spk, mem = lif(c, mem)
                spikes.append(spk)
            z = torch.stack(spikes)
            first = z if first is None else first
            x = self.pool(z.flatten(0, 1)).unflatten(0, (T, B))
        return _readout_membranes(torch, self.readout, self.fc(x.flatten(2))).sum(), first


def build(wl, data, variant):
    if wl["kind"] == "cnn":
        return SnntorchCNN(wl, data)
    return SnntorchBench(wl, data)


if __name__ == "__main__":
    common.worker_main(build)
