"""A recurrent spiking network (RSNN) as a BCI decoder: binned counts in, velocity out.

The network (:class:`RSNNDecoder`, a :class:`spikegrad.nn.Sequential` of four layers, so
:class:`spikegrad.learning.EProp` trains it as it is)::

    counts [T, B, N_in] -> Linear (bias) -> Recurrent(LIF) (no autapses) -> Linear (bias)
                        -> LI readout -> normalised velocity [T, B, K]

The network sees the counts minus their training mean (buffer ``count_mean``;
:meth:`RSNNDecoder.centre`): centred inputs keep the presynaptic traces of online rules from
all sharing one sign (which slows e-prop down a lot). Deployed, the mean folds into the
input bias (``W (c - m) + b = W c + (b - W m)``), so the network runs on the integer counts
as events and :func:`spiking_costs` counts them. The readout is trained on velocity
standardised by the training mean and standard deviation (buffers ``target_mean``,
``target_std``); :meth:`RSNNDecoder.predict` maps back to the data's units.

:class:`RandomWindows` draws the random training windows of offline (BPTT) training as a
re-iterable loader with its own generator (the Trainer saves and restores it);
:func:`spiking_costs` measures the NeuroBench-style costs (parameter footprint, synaptic
operations per second, activation sparsity) of a decoding run.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, Optional, Tuple

import torch
from torch import Tensor

from .. import nn
from .._validate import check_int
from ._checks import as_counts, as_targets

__all__ = ["RSNNDecoder", "RandomWindows", "spiking_costs"]


class RSNNDecoder(nn.Sequential):
    """``N_in -> hidden`` recurrent LIF ``-> K`` leaky-integrator readouts (see the module
    docstring).

    Args:
        n_in: input channels; n_out: decoded dimensions (2: x and y velocity).
        hidden: recurrent LIF neurons.
        dt: bin width in seconds; tau_mem, tau_syn (None: voltage-based LIF), tau_out:
            time constants in seconds.
        threshold: LIF threshold.
        input_gain: input weights ``U(-g, g) / sqrt(n_in)`` (torch's default init times g).
        rec_gain: recurrent weights ``U(-g, g) / sqrt(hidden)``.
        surrogate, beta: the spike's surrogate derivative and its slope.

    The initial readout weights are scaled by ``1 - exp(-dt / tau_out)`` (the readout sums
    about ``tau_out / dt`` steps of its input).

    Shapes: ``forward(xs [T, B, n_in]) -> (ys [T, B, n_out], state)`` in normalised units.
    """

    def __init__(self, n_in: int, n_out: int = 2, hidden: int = 64, *, dt: float = 4e-3,
                 tau_mem: float = 20e-3, tau_syn: Optional[float] = 50e-3,
                 tau_out: float = 50e-3, threshold: float = 1.0, input_gain: float = 3.0,
                 rec_gain: float = 1.0, surrogate: str = "fast_sigmoid", beta: float = 10.0):
        check_int(n_in, "n_in")
        check_int(n_out, "n_out")
        check_int(hidden, "hidden")
        inp = nn.Linear(n_in, hidden)
        with torch.no_grad():
            inp.weight.mul_(input_gain)
        lif = nn.LIF(hidden, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, threshold=threshold,
                     surrogate=surrogate, beta=beta)
        rec = nn.Recurrent(lif, autapses=False, init_gain=rec_gain)
        out = nn.Linear(hidden, n_out)
        with torch.no_grad():
            out.weight.mul_(1.0 - math.exp(-dt / tau_out))
        li = nn.LI(n_out, tau_mem=tau_out, dt=dt)
        super().__init__(inp, rec, out, li)
        self.dt = dt
        self.register_buffer("count_mean", torch.zeros(n_in))
        self.register_buffer("target_mean", torch.zeros(n_out))
        self.register_buffer("target_std", torch.ones(n_out))

    @property
    def n_in(self) -> int:
        return self.layers[0].in_features

    @property
    def hidden(self) -> int:
        return self.layers[0].out_features

    @property
    def n_out(self) -> int:
        return self.layers[2].out_features

    def set_normalisation(self, velocity: Tensor, counts: Optional[Tensor] = None
                          ) -> "RSNNDecoder":
        """Take the target mean and standard deviation from training kinematics ``[T, K]``
        and, if given, the input mean from the training ``counts [T, n_in]``."""
        v = velocity.detach().double()
        with torch.no_grad():
            if counts is not None:
                self.count_mean.copy_(counts.detach().double().mean(0))
            self.target_mean.copy_(v.mean(0))
            self.target_std.copy_(v.std(0).clamp(min=1e-12))
        return self

    def centre(self, counts: Tensor) -> Tensor:
        """Counts ``[..., n_in]`` -> the network's input (minus the training mean)."""
        return counts - self.count_mean

    def normalise(self, velocity: Tensor) -> Tensor:
        """Kinematics ``[..., K]`` in the data's units -> the readout's units."""
        return (velocity - self.target_mean) / self.target_std

    def denormalise(self, ys: Tensor) -> Tensor:
        """The readout ``[..., K]`` -> kinematics in the data's units."""
        return ys * self.target_std + self.target_mean

    @torch.no_grad()
    def predict(self, counts: Tensor, with_spikes: bool = False):
        """Decode ``counts [T, n_in]`` from rest (batch 1): float32 ``[T, n_out]`` in the
        data's units; with ``with_spikes`` also the hidden spikes ``[T, hidden]``."""
        c = as_counts(counts, "RSNNDecoder.predict", self.n_in).to(self.layers[0].weight.dtype)
        was = self.training
        self.eval()
        try:
            outs, _ = self.forward_all(self.centre(c)[:, None])
        finally:
            self.train(was)
        y = self.denormalise(outs[-1][:, 0]).float()
        return (y, outs[1][:, 0]) if with_spikes else y


class RandomWindows:
    """Random windows of a recording for offline training: each iteration yields
    ``batches`` batches ``(xs [window, batch, N], ys [window, batch, K])`` drawn uniformly
    (with replacement) from ``counts [T, N]`` and ``targets [T, K]``.

    ``generator`` is the loader's own (``spikegrad.train.Trainer`` checkpoints and restores
    it with the other RNGs, so a resumed run draws the same windows).
    """

    def __init__(self, counts: Tensor, targets: Tensor, window: int, batch: int,
                 batches: int, seed: int = 0):
        c = as_counts(counts, "RandomWindows").float()
        y = as_targets(targets, c, "RandomWindows", "targets").float()
        self.window = check_int(window, "window", hint="bins per window")
        self.batch = check_int(batch, "batch")
        self.batches = check_int(batches, "batches", hint="batches per epoch")
        if c.shape[0] < self.window:
            raise ValueError(f"RandomWindows: {c.shape[0]} bins are fewer than one window of "
                             f"{self.window}; shorten window or pass more data")
        self.counts, self.targets = c, y
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Tuple[Tensor, Tensor]]:
        span = self.counts.shape[0] - self.window + 1
        steps = torch.arange(self.window)[:, None]
        for _ in range(self.batches):
            starts = torch.randint(0, span, (self.batch,), generator=self.generator)
            idx = starts[None, :] + steps                                 # [window, batch]
            yield self.counts[idx], self.targets[idx]


def spiking_costs(decoder: RSNNDecoder, counts: Tensor, spikes: Tensor,
                  dt: float) -> Dict[str, float]:
    """NeuroBench-style costs of one decoding run: ``counts [T, n_in]`` in (the integer
    counts: the input mean folded into the bias), hidden ``spikes [T, hidden]``.

    Returns ``parameters`` (weights and biases), ``footprint_bytes`` (float32),
    ``synops_per_s`` (accumulate operations: each input count reaches ``hidden`` neurons,
    each hidden spike its recurrent synapses (``hidden - 1`` without autapses) and ``n_out``
    readout synapses; the neurons' own leak updates are not counted), ``dense_macs_per_s``
    (the same synapses evaluated densely every bin) and ``activation_sparsity`` (fraction
    of zero hidden activations over neurons and bins).
    """
    n_params = sum(p.numel() for p in decoder.parameters())
    rec = decoder.layers[1]
    hidden, n_out = decoder.hidden, decoder.n_out
    fan_rec = hidden - (0 if rec.autapses else 1)
    duration = counts.shape[0] * dt
    ops = (float(counts.sum()) * hidden + float(spikes.sum()) * (fan_rec + n_out))
    dense = counts.shape[0] * (decoder.n_in * hidden + hidden * fan_rec + hidden * n_out)
    return {"parameters": float(n_params), "footprint_bytes": float(4 * n_params),
            "synops_per_s": ops / duration, "dense_macs_per_s": dense / duration,
            "activation_sparsity": 1.0 - float((spikes != 0).float().mean())}
