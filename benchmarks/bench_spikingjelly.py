"""SpikingJelly on the benchmark workloads.

Path: multi-step mode (``step_mode="m"``) throughout: ``layer.Linear`` (time folded) then
``neuron.LIFNode``, whose multi-step call runs SpikingJelly's registered ``sj_lif`` operator
(SpikingJelly 2.x picks the implementation from the device; on CPU it is the registered
forward/backward pair, used for the built-in surrogates; 1.x's ``backend="cupy"`` is GPU only
and gone in 2.x). C uses ``layer.LinearRecurrentContainer`` around a single-step ``LIFNode``
with ``rc.weight = [W_in, W_rec]`` on the input spikes (the documented recurrent construction;
it folds the input projection into the per-step GEMM). The B readout is
``neuron.NonSpikingLIFNode``. ``functional.reset_net`` before every sequence.

Mapping (docs/conventions.md, "Porting"): ``tau = 1 / (1 - a)`` (decay ``1 - 1/tau = a``),
``decay_input=False`` (the input is not scaled), ``v_reset=None`` (soft reset: subtract the
threshold), ``detach_reset=True`` (as spikegrad), surrogate ``SoftSign(alpha=10)``:
``alpha / (2 (1 + alpha |x|)^2)``, the fast-sigmoid shape (x5). SpikingJelly fires at
``h >= 1`` (spikegrad: ``>``); ties have probability ~0 with these inputs. The non-spiking readout
integrates ``v += (x - v) / tau``, so its weights are multiplied by ``tau``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402


class SpikingJellyBench(common.TorchBench):
    def __init__(self, wl, data):
        torch = common.torch_init()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
        self.torch, self.wl, self.functional = torch, wl, functional
        n_in, n = wl["n_in"], wl["n"]
        tau = 1.0 / (1.0 - common.DECAY)

        def lif(step_mode):
            return neuron.LIFNode(tau=tau, decay_input=False, v_threshold=common.THRESHOLD,
                                  v_reset=None, detach_reset=True, step_mode=step_mode,
                                  surrogate_function=surrogate.SoftSign(
                                      alpha=common.SURROGATE_SLOPE))

        def linear(w, scale=1.0):
            lin = layer.Linear(w.shape[1], w.shape[0], bias=False, step_mode="m")
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w) * scale)
            return lin

        if wl["kind"] == "rec":
            self.rec = layer.LinearRecurrentContainer(lif("s"), in_features=n_in,
                                                      out_features=n, bias=False, step_mode="m")
            with torch.no_grad():
                self.rec.rc.weight.copy_(torch.from_numpy(
                    np.concatenate([data["w_in"], data["w_rec"]], axis=1)))
            self.modules = [self.rec]
            self.params = [self.rec.rc.weight]
        else:
            self.fc, self.lif = linear(data["w_in"]), lif("m")
            self.modules = [self.fc, self.lif]
            self.params = [self.fc.weight]
        if wl["kind"] == "clf":
            self.fc2 = linear(data["w_out"], scale=tau)
            self.readout = neuron.NonSpikingLIFNode(tau=tau)
            self.modules += [self.fc2, self.readout]
            self.params.append(self.fc2.weight)
        self.x = torch.from_numpy(data["x"])
        self.info = {"versions": common.versions("torch", "spikingjelly"),
                     "path": ("LinearRecurrentContainer(LIFNode('s'), rc=[W_in, W_rec]), "
                              "step_mode='m'" if wl["kind"] == "rec"
                              else "layer.Linear + neuron.LIFNode, step_mode='m'"),
                     "model": "tau=1/(1-a), decay_input=False, v_reset=None, detach_reset, "
                              "SoftSign(10)"}

    def run(self):
        torch = self.torch
        for m in self.modules:
            self.functional.reset_net(m)
        if self.wl["kind"] == "rec":
            zs = self.rec(self.x)
        else:
            zs = self.lif(self.fc(self.x))
        if self.wl["kind"] != "clf":
            return zs.sum(), zs
        vs = self.readout(self.fc2(zs))
        return torch.stack(vs).sum(), zs


class SpikingJellyCNN(common.TorchBench):
    """The conv workload, multi-step throughout: ``layer.Conv2d`` -> ``layer.BatchNorm2d``
    (statistics over T*B, as tdBN) -> ``neuron.LIFNode`` -> ``layer.AvgPool2d``, twice, then
    ``layer.Flatten`` -> ``layer.Linear`` -> ``NonSpikingLIFNode``; the mapping as above."""

    def __init__(self, wl, data):
        torch = common.torch_init()
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
        self.torch, self.functional = torch, functional
        tau = 1.0 / (1.0 - common.DECAY)
        mods = []
        for key, c_in, c_out in (("w_c1", wl["c_in"], wl["c1"]), ("w_c2", wl["c1"], wl["c2"])):
            conv = layer.Conv2d(c_in, c_out, 3, padding=1, bias=False, step_mode="m")
            bn = layer.BatchNorm2d(c_out, step_mode="m")
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(data[key]))
                bn.weight.fill_(float(data["bn_gamma"]))
            mods += [conv, bn,
                     neuron.LIFNode(tau=tau, decay_input=False, v_threshold=common.THRESHOLD,
                                    v_reset=None, detach_reset=True, step_mode="m",
                                    surrogate_function=surrogate.SoftSign(
                                        alpha=common.SURROGATE_SLOPE)),
                     layer.AvgPool2d(2, 2, step_mode="m")]
        fc = layer.Linear(common.cnn_flat(wl), wl["n_out"], bias=False, step_mode="m")
        with torch.no_grad():
            fc.weight.copy_(torch.from_numpy(data["w_out"]) * tau)
        self.net = torch.nn.Sequential(*mods, layer.Flatten(step_mode="m"), fc)
        self.readout = neuron.NonSpikingLIFNode(tau=tau)  # over [T, ...]: a list of steps
        self.first = self.net[:3]
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.x = torch.from_numpy(data["x"])
        self.info = {"versions": common.versions("torch", "spikingjelly"),
                     "path": "layer.Conv2d + layer.BatchNorm2d + neuron.LIFNode + "
                             "layer.AvgPool2d, step_mode='m'",
                     "model": "tau=1/(1-a), decay_input=False, v_reset=None, detach_reset, "
                              "SoftSign(10)"}

    def _loss(self):
        for m in (self.net, self.readout):
            self.functional.reset_net(m)
        return self.torch.stack(list(self.readout(self.net(self.x)))).sum()

    def run(self):
        loss = self._loss()
        self.functional.reset_net(self.first)
        return loss, self.first(self.x)

    def train_step(self):
        for p in self.params:
            p.grad = None
        self._loss().backward()


def build(wl, data, variant):
    if wl["kind"] == "cnn":
        return SpikingJellyCNN(wl, data)
    return SpikingJellyBench(wl, data)


if __name__ == "__main__":
    common.worker_main(build)
