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


def build(wl, data, variant):
    return SpikingJellyBench(wl, data)


if __name__ == "__main__":
    common.worker_main(build)
