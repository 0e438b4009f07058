"""spikegrad on the benchmark workloads, one backend per worker; also the dense-GEMM baseline.

Variants: every name in ``spikegrad.functional.BACKENDS`` but the GPU-only ``triton`` (read at
run time, so new backends are benchmarked as soon as they exist), each in a ``Sequential``, which
fuses ``Linear -> LIF`` with the membrane kept where the backend is auto or numba;
``auto+recompute``: ``auto`` in a ``Sequential(recompute=True)`` (the membrane recomputed in
backward: less memory, more time); ``numba+unfused``: the numba neurons with the layers called
one by one (what the fusion saves); and ``dense``: the time-folded GEMMs of the same shapes,
forward and backward, with no neuron (the floor a neuron layer built on dense GEMMs cannot
beat).

    python benchmarks/bench_spikegrad.py --list-variants
"""

from __future__ import annotations

import inspect
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def variants() -> list:
    from spikegrad.functional import BACKENDS
    # the CPU benchmark: "triton" runs on CUDA tensors only
    return [*(b for b in BACKENDS if b != "triton"), "auto+recompute", "numba+unfused", "dense"]


def _backend_kw(cls, backend: str) -> dict:
    """Pass ``backend=`` to every module that takes one (LIF today; LI, Recurrent maybe later)."""
    return {"backend": backend} if "backend" in inspect.signature(cls).parameters else {}


class SpikegradBench(common.TorchBench):
    def __init__(self, wl, data, variant):
        torch = common.torch_init()
        backend, _, option = variant.partition("+")
        import spikegrad as sg
        self.torch, self.wl = torch, wl
        neuron = dict(tau_mem=common.TAU_MEM, dt=common.DT, threshold=common.THRESHOLD,
                      reset="subtract", surrogate="fast_sigmoid", beta=common.SURROGATE_SLOPE)
        if wl["kind"] == "cnn":
            layers = self._cnn(sg, wl, data, neuron, backend)
        else:
            layers = self._dense_layers(sg, wl, data, neuron, backend)
        self.net = sg.nn.Sequential(*layers, recompute=option == "recompute")
        self.unfused = option == "unfused"
        # the first spiking layer's output gives the firing rate
        self.rate_index = next(i for i, m in enumerate(layers)
                               if isinstance(m, (sg.nn.LIF, sg.nn.Recurrent)))
        self.x = torch.from_numpy(data["x"])
        self.sg_stateful = sg.nn.base.StatefulModule
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.info = {"versions": {**common.versions("torch", "spikegrad")},
                     "path": (f"spikegrad.nn.Sequential(recompute={option == 'recompute'}), "
                              if not self.unfused else "the layers called one by one, ")
                             + f"LIF(backend={backend!r})",
                     "model": "u = a v + x; z = H(u - 1); v = u - z (detached reset); "
                              "fast_sigmoid beta 10"}

    @staticmethod
    def _dense_layers(sg, wl, data, neuron, backend):
        torch = common.torch_init()
        n_in, n = wl["n_in"], wl["n"]
        lif = sg.nn.LIF(n, **neuron, **_backend_kw(sg.nn.LIF, backend))
        layers = [sg.nn.Linear(n_in, n, bias=False)]
        if wl["kind"] == "ff":
            layers.append(lif)
        elif wl["kind"] == "clf":
            layers += [lif, sg.nn.Linear(n, wl["n_out"], bias=False),
                       sg.nn.LI(wl["n_out"], tau_mem=common.TAU_MEM, dt=common.DT,
                                **_backend_kw(sg.nn.LI, backend))]
        else:
            layers.append(sg.nn.Recurrent(lif, autapses=True,
                                          **_backend_kw(sg.nn.Recurrent, backend)))
        with torch.no_grad():
            layers[0].weight.copy_(torch.from_numpy(data["w_in"]))
            if wl["kind"] == "clf":
                layers[2].weight.copy_(torch.from_numpy(data["w_out"]))
            if wl["kind"] == "rec":
                layers[1].weight.copy_(torch.from_numpy(data["w_rec"]))
        return layers

    @staticmethod
    def _cnn(sg, wl, data, neuron, backend):
        """``sg.nn.spiking_conv`` blocks (time-folded conv, tdBN, LIF, average pool), then
        ``Flatten -> Linear -> LI``."""
        torch = common.torch_init()

        def lif(shape):
            return sg.nn.LIF(shape, **neuron, **_backend_kw(sg.nn.LIF, backend))
        b1 = sg.nn.spiking_conv((wl["c_in"], wl["hw"], wl["hw"]), wl["c1"], 3, padding=1,
                                norm="threshold", pool="avg", neuron=lif)
        b2 = sg.nn.spiking_conv(b1.out_shape, wl["c2"], 3, padding=1, norm="threshold",
                                pool="avg", neuron=lif)
        layers = [*b1.layers, *b2.layers, sg.nn.Flatten(),
                  sg.nn.Linear(common.cnn_flat(wl), wl["n_out"], bias=False),
                  sg.nn.LI(wl["n_out"], tau_mem=common.TAU_MEM, dt=common.DT,
                           **_backend_kw(sg.nn.LI, backend))]
        convs = [m for m in layers if isinstance(m, torch.nn.Conv2d)]
        norms = [m for m in layers if isinstance(m, sg.nn.ThresholdBatchNorm)]
        with torch.no_grad():
            for m, key in zip(convs, ("w_c1", "w_c2")):
                m.weight.copy_(torch.from_numpy(data[key]))
            for m in norms:  # tdBN's scale is weight x alpha x threshold = weight here
                m.weight.fill_(float(data["bn_gamma"]))
            layers[-2].weight.copy_(torch.from_numpy(data["w_out"]))
        return layers

    def run(self):
        # the network's output only (as a training loop holds it): forward_all would keep every
        # layer's output alive through backward, and it never fuses
        if self.unfused:  # Sequential would fuse Linear -> LIF
            out = self.x
            for layer in self.net.layers:
                out = layer(out)[0] if isinstance(layer, self.sg_stateful) else layer(out)
        else:
            out, _ = self.net(self.x)
        return out.sum(), out

    def rate(self) -> float:
        with self.torch.no_grad():
            outs, _ = self.net.forward_all(self.x)
        return float(outs[self.rate_index].float().mean())


class DenseBench:
    """Time-folded GEMMs of the workload's synapses, forward and backward, no neuron.

    ff:  Y = X W^T             backward: dW = G^T X
    clf: Y1 = X W1^T, Y2 = H W2^T  backward: dW1, dW2 and dH = G2 W2 (H: hidden spikes)
    rec: Y1 = X Win^T, Y2 = Z Wrec^T  backward: dWin, dWrec, dZ (recurrence folded in time)
    X are the input spikes, H/Z random spikes at 5 %; G fixed dense output gradients.
    """

    def __init__(self, wl, data):
        torch = common.torch_init()
        self.torch = torch
        T, B = wl["T"], wl["B"]
        x = torch.from_numpy(data["x"]).reshape(T * B, wl["n_in"])
        w1 = torch.from_numpy(data["w_in"]).clone().requires_grad_(True)
        self.pairs = [(x, w1)]
        if wl["kind"] in ("clf", "rec"):
            w2 = torch.from_numpy(data["w_out" if wl["kind"] == "clf" else "w_rec"]).clone()
            h = (torch.rand(T * B, wl["n"]) < 0.05).float().requires_grad_(True)
            self.pairs.append((h, w2.requires_grad_(True)))
        self.grads = [torch.ones(T * B, w.shape[0]) for _, w in self.pairs]
        self.params = [t for pair in self.pairs for t in pair if t.requires_grad]
        self.info = {"versions": common.versions("torch"),
                     "path": "torch.nn.functional.linear on [T*B, n_in] (+ backward GEMMs)",
                     "model": "no neuron"}

    def _run(self):
        F = self.torch.nn.functional
        return [F.linear(a, w) for a, w in self.pairs]

    def forward(self):
        with self.torch.no_grad():
            self._run()

    def train_step(self):
        for p in self.params:
            p.grad = None
        self.torch.autograd.backward(self._run(), self.grads)

    def rate(self) -> float:
        return float("nan")


def build(wl, data, variant):
    if variant == "dense" and wl["kind"] == "cnn":
        raise NotImplementedError("the dense-GEMM baseline covers the fully connected "
                                  "workloads only")
    if variant == "dense":
        return DenseBench(wl, data)
    return SpikegradBench(wl, data, variant)


if __name__ == "__main__":
    if sys.argv[1:] == ["--list-variants"]:
        print(json.dumps(variants()))
    else:
        common.worker_main(build)
