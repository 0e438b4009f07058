"""RSNNDecoder (normalisation, predict from rest, an EProp-trainable Sequential),
RandomWindows (shapes, windows lie in the data, its generator drives it) and spiking_costs
against a hand count."""

import pytest
import torch

from spikegrad.decoders import RandomWindows, RSNNDecoder, spiking_costs
from spikegrad.learning import EProp


def test_decoder_normalises_targets_and_predicts_in_the_datas_units():
    torch.manual_seed(0)
    dec = RSNNDecoder(5, 2, hidden=8)
    v = torch.randn(300, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([1.0, -2.0])
    dec.set_normalisation(v)
    z = dec.normalise(v)
    assert z.mean(0).abs().max() < 1e-5 and (z.std(0) - 1).abs().max() < 1e-5
    torch.testing.assert_close(dec.denormalise(z), v, rtol=1e-5, atol=1e-5)
    counts = torch.poisson(torch.full((50, 5), 0.3))
    y, spikes = dec.predict(counts, with_spikes=True)
    assert y.shape == (50, 2) and spikes.shape == (50, 8)
    ys, _ = dec(counts[:, None])
    torch.testing.assert_close(y, dec.denormalise(ys[:, 0]))
    EProp.from_sequential(dec)                       # the four layers e-prop trains
    with pytest.raises(ValueError, match="fitted on 5"):
        dec.predict(torch.zeros(4, 6))


def test_voltage_based_without_tau_syn():
    dec = RSNNDecoder(3, tau_syn=None)
    assert dec.layers[1].neuron.params().decay_syn is None


def test_random_windows_are_slices_of_the_data_drawn_by_its_generator():
    counts = torch.arange(100.0)[:, None].repeat(1, 3)
    targets = torch.arange(100.0)[:, None].repeat(1, 2)
    loader = RandomWindows(counts, targets, window=10, batch=4, batches=3, seed=1)
    batches = list(loader)
    assert len(batches) == 3 == len(loader)
    for xs, ys in batches:
        assert xs.shape == (10, 4, 3) and ys.shape == (10, 4, 2)
        steps = xs[1:, :, 0] - xs[:-1, :, 0]
        assert torch.all(steps == 1)                 # consecutive bins, in order
        assert torch.equal(xs[:, :, 0], ys[:, :, 0])  # inputs and targets aligned
    again = list(RandomWindows(counts, targets, window=10, batch=4, batches=3, seed=1))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="fewer than one window"):
        RandomWindows(counts[:5], targets[:5], window=10, batch=1, batches=1)


def test_spiking_costs_count_events_times_fan_out():
    dec = RSNNDecoder(4, 2, hidden=3)
    counts = torch.tensor([[1.0, 0, 2, 0], [0, 0, 0, 0]])     # 3 input events
    spikes = torch.tensor([[1.0, 0, 0], [1, 1, 0]])            # 3 hidden spikes
    c = spiking_costs(dec, counts, spikes, dt=0.5)             # 1 s of data
    # inputs reach 3 neurons; a spike reaches 2 recurrent (no autapses) + 2 readout synapses
    assert c["synops_per_s"] == 3 * 3 + 3 * (2 + 2)
    assert c["parameters"] == 4 * 3 + 3 + 3 * 3 + 3 * 2 + 2
    assert c["footprint_bytes"] == 4 * c["parameters"]
    assert c["activation_sparsity"] == pytest.approx(0.5)
    assert c["dense_macs_per_s"] == 2 * (4 * 3 + 3 * 2 + 3 * 2)
