"""Spyx (JAX, Flax NNX) on the benchmark workloads.

Path: ``jax.jit`` of the whole forward (and of ``jax.value_and_grad`` for the training step);
the input projection hoisted as one time-folded matmul, then ``spyx.nn.run`` (a
``jax.lax.scan``) over ``spyx.nn.LIF`` (``spyx.nn.RLIF`` for C, its recurrent weights set to
``W_rec``); the B readout is a time-folded matmul then ``spyx.nn.LI``. Gradients are taken with
respect to the weights only (the decays are fixed constants closed over by the jitted function).

Mapping (docs/conventions.md, "Porting"): ``beta = a``, ``threshold = 1``,
``activation = superspike(k=10)`` (= spikegrad's fast_sigmoid(10)). Spyx's LIF reads the spike
from the membrane *before* this step's input and subtracts the reset after the leak, so its
spikes come one step later than spikegrad's; rates are comparable, trains are not identical.
XLA runs on the same 2 cores (the worker's CPU affinity; XLA sizes its thread pool from it).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


class SpyxBench:
    def __init__(self, wl, data):
        import jax
        import jax.numpy as jnp
        import spyx
        from flax import nnx
        self.jax, self.wl = jax, wl
        T, B, n_in, n = wl["T"], wl["B"], wl["n_in"], wl["n"]
        act = spyx.axn.superspike(k=common.SURROGATE_SLOPE)
        rngs = nnx.Rngs(common.SEED)
        if wl["kind"] == "rec":
            neuron = spyx.nn.RLIF((n,), beta=common.DECAY, threshold=common.THRESHOLD,
                                  activation=act, rngs=rngs)
        else:
            neuron = spyx.nn.LIF((n,), beta=common.DECAY, threshold=common.THRESHOLD,
                                 activation=act, rngs=rngs)
        graphdef, state = nnx.split(neuron)
        readout = None
        if wl["kind"] == "clf":
            readout = nnx.split(spyx.nn.LI((wl["n_out"],), beta=common.DECAY, rngs=rngs))
        # trainable weights, in x @ W layout
        self.weights = {"w_in": jnp.asarray(data["w_in"].T)}
        if wl["kind"] == "clf":
            self.weights["w_out"] = jnp.asarray(data["w_out"].T)
        if wl["kind"] == "rec":
            self.weights["w_rec"] = jnp.asarray(data["w_rec"].T)   # spikes @ recurrent_w
        self.x = jnp.asarray(data["x"])
        kind = wl["kind"]

        def model(weights, x):
            cur = (x.reshape(T * B, n_in) @ weights["w_in"]).reshape(T, B, n)
            m = nnx.merge(graphdef, state)
            if kind == "rec":
                m.recurrent_w = nnx.Param(weights["w_rec"])   # fresh Param in this trace
            spikes, _ = spyx.nn.run(m, cur)
            if kind != "clf":
                return spikes.sum(), spikes
            cur2 = (spikes.reshape(T * B, n) @ weights["w_out"]).reshape(T, B, wl["n_out"])
            vs, _ = spyx.nn.run(nnx.merge(*readout), cur2)
            return vs.sum(), spikes

        self._fwd = jax.jit(lambda w, x: model(w, x)[0])
        self._step = jax.jit(jax.value_and_grad(lambda w, x: model(w, x)[0]))
        self._rate = jax.jit(lambda w, x: model(w, x)[1].mean())
        self.info = {"versions": common.versions("jax", "jaxlib", "flax", "spyx"),
                     "path": "jax.jit; hoisted matmul + spyx.nn.run("
                             + ("RLIF" if kind == "rec" else "LIF") + ")",
                     "model": "beta=a, threshold 1, superspike(10); spike read before input"}

    def forward(self):
        self._fwd(self.weights, self.x).block_until_ready()

    def train_step(self):
        loss, grads = self._step(self.weights, self.x)
        self.jax.block_until_ready((loss, grads))

    def rate(self) -> float:
        return float(self._rate(self.weights, self.x))


def build(wl, data, variant):
    common.no_cnn(wl, "spyx")
    return SpyxBench(wl, data)


if __name__ == "__main__":
    common.worker_main(build)
