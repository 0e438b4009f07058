import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from spikegrad.train.rng import loader_generators, rng_state, set_rng_state


def _draws(loader):
    return (torch.rand(3), np.random.rand(3), random.random(),
            [b[0].tolist() for b in loader])


def test_a_restored_state_repeats_every_generator_exactly(tmp_path):
    loader = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=3, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
    saved = rng_state(loader)
    first = _draws(loader)
    set_rng_state(saved, loader, tmp_path / "x.pt")
    again = _draws(loader)
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]
    assert set(loader_generators(loader)) == {"loader"}


def test_a_loader_without_the_saved_generator_warns_that_the_order_will_differ(tmp_path):
    shuffled = DataLoader(TensorDataset(torch.arange(4.0)), shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    saved = rng_state(shuffled)
    with pytest.warns(UserWarning, match="data order after resuming will differ"):
        set_rng_state(saved, [(torch.zeros(1), None)], tmp_path / "x.pt")
