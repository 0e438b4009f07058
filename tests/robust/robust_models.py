"""Tiny seeded data and SNNs for the tests of spikegrad.robust (built fresh on every call:
no shared state between tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import spikegrad as sg
from spikegrad.robust import SNNClassifier

N_FEATURES, N_CLASSES = 8, 3


def blobs(n: int = 60, seed: int = 0, spread: float = 0.05):
    """``n`` inputs ``[n, 8]`` in [0, 1] around three class centres, and labels ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.8, 0.8, 0.2, 0.2, 0.5, 0.5, 0.8, 0.2],
                            [0.2, 0.8, 0.8, 0.2, 0.5, 0.2, 0.5, 0.8],
                            [0.5, 0.2, 0.2, 0.8, 0.8, 0.8, 0.2, 0.5]])
    y = torch.arange(n) % N_CLASSES
    x = centres[y] + spread * torch.randn(n, N_FEATURES, generator=g)
    return x.clamp(0, 1), y


def snn(seed: int = 0, hidden: int = 24, readout_neuron: str = "li",
        image: bool = False) -> sg.nn.Sequential:
    """Linear -> LIF -> Linear -> LI (or LIF); ``image``: inputs [T, B, 1, 2, 4] flattened."""
    torch.manual_seed(seed)
    last = sg.nn.LI(N_CLASSES) if readout_neuron == "li" else sg.nn.LIF(N_CLASSES)
    layers = [sg.nn.Linear(N_FEATURES, hidden), sg.nn.LIF(hidden, tau_mem=5e-3),
              sg.nn.Linear(hidden, N_CLASSES), last]
    return sg.nn.Sequential(*([sg.nn.Flatten()] if image else []), *layers)


def classifier(seed: int = 0, encoder="current", readout="max_membrane", T: int = 8,
               generator=None, image: bool = False) -> SNNClassifier:
    neuron = "lif" if readout == "count" else "li"
    return SNNClassifier(snn(seed, readout_neuron=neuron, image=image), encoder, T,
                         readout=readout, generator=generator)


def train(model, x, y, steps: int = 60, lr: float = 0.03):
    """Full-batch Adam on cross-entropy; returns the model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def as_images(x):
    """``[B, 8] -> [B, 1, 2, 4]``: the shape torchattacks' L2 and APGD attacks assume."""
    return x.view(-1, 1, 2, 4)


def trained(seed: int = 0, image: bool = False, **kw) -> SNNClassifier:
    x, y = blobs(60, seed=seed + 100)
    return train(classifier(seed, image=image, **kw), as_images(x) if image else x, y)


def ann_twin(seed: int = 0) -> torch.nn.Module:
    """An MLP on the same inputs, trained on the same data (the transfer source)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 24), torch.nn.ReLU(),
                              torch.nn.Linear(24, N_CLASSES))
    x, y = blobs(60, seed=seed + 100)
    return train(net, x, y, steps=100)
