"""SNNClassifier: an SNN as a module on analog batches (encode, run, read out)."""

import pytest
import torch

import spikegrad as sg
from spikegrad.robust import SNNClassifier, bpda, rate_encoder

from robust_models import N_CLASSES, N_FEATURES, blobs, classifier, snn


@pytest.mark.parametrize("readout, width", [("count", N_CLASSES), ("max_membrane", N_CLASSES),
                                            ("mean_membrane", N_CLASSES),
                                            ("last_membrane", N_CLASSES),
                                            ("membrane_stats", 2 * N_CLASSES)])
def test_readouts_map_a_batch_to_one_row_per_sample(readout, width):
    x, _ = blobs(5)
    out = classifier(readout=readout)(x)
    assert out.shape == (5, width)
    assert torch.isfinite(out).all()


def test_the_current_encoder_repeats_the_input_at_every_step_and_the_readout_matches():
    model = classifier(T=6)
    x, _ = blobs(4)
    xs = model.encode(x)
    assert xs.shape == (6, 4, N_FEATURES) and torch.equal(xs, x.expand(6, 4, N_FEATURES))
    vs, _ = model.snn(xs)
    assert torch.equal(model(x), vs.max(0).values)


def test_count_readout_is_the_spike_count_of_the_output_layer():
    model = classifier(readout="count", T=6)
    x, _ = blobs(4)
    zs, _ = model.snn(model.encode(x))
    assert torch.equal(model(x), zs.sum(0))


def test_the_rate_encoder_samples_spikes_with_the_gradient_of_their_expectation():
    x = torch.tensor([[0.0, 0.3, 1.0]], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    zs = rate_encoder(x, 2000, generator=g)
    assert set(zs.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(zs[:, 0, 0], torch.zeros(2000))
    assert torch.equal(zs[:, 0, 2], torch.ones(2000))
    # mean of 2000 Bernoulli(0.3): standard error 0.01, so 5 sigma is 0.05
    assert abs(zs[:, 0, 1].mean().item() - 0.3) < 0.05
    zs.sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 2000.0))  # d/dx of sum_t E[z_t] = T


def test_a_stochastic_encoder_is_reproducible_with_a_seeded_generator():
    x, _ = blobs(6)
    a = classifier(encoder="rate", generator=torch.Generator().manual_seed(3))(x)
    b = classifier(encoder="rate", generator=torch.Generator().manual_seed(3))(x)
    c = classifier(encoder="rate", generator=torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert classifier(encoder="rate").stochastic and not classifier().stochastic


def test_the_input_gradient_reaches_x_through_the_surrogate():
    x, y = blobs(6)
    x.requires_grad_(True)
    torch.nn.functional.cross_entropy(classifier(readout="count")(x), y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_callable_encoder_and_readout_are_used():
    model = SNNClassifier(snn(), lambda x, n, generator=None: x.expand(n, *x.shape) * 2, 4,
                          readout=lambda vs: vs.sum(0))
    x, _ = blobs(3)
    vs, _ = model.snn(2 * x.expand(4, *x.shape))
    assert torch.equal(model(x), vs.sum(0))


def test_bpda_keeps_the_value_and_takes_the_gradient_of_the_approximation():
    quantise = bpda(lambda x: torch.round(x * 4) / 4)
    x = torch.tensor([0.1, 0.3, 0.9], requires_grad=True)
    out = quantise(x)
    assert torch.equal(out, torch.tensor([0.0, 0.25, 1.0]))
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0]))  # identity backward

    squared = bpda(torch.round, approx=lambda x: x ** 2)
    x = torch.tensor([0.4, 0.7], requires_grad=True)
    squared(x).sum().backward()
    assert torch.allclose(x.grad, 2 * x.detach())


def test_bpda_makes_a_latency_encoder_attackable():
    latency = sg.data.encoders.latency
    enc = bpda(lambda x, n, generator=None: latency(x.detach(), n))
    model = SNNClassifier(snn(), enc, 6)
    x, y = blobs(4)
    x.requires_grad_(True)
    spikes = model.encode(x)
    assert torch.equal(spikes, latency(x.detach(), 6))  # forward value: the exact spikes
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kw, name", [(dict(encoder="poisson"), "encoder"),
                                      (dict(readout="mean"), "readout"),
                                      (dict(T=0), "T")])
def test_bad_arguments_raise_value_error_naming_the_argument(kw, name):
    args = dict(encoder="current", T=4, readout="count")
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        SNNClassifier(snn(), args.pop("encoder"), args.pop("T"), **args)


def test_an_unbatched_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="unsqueeze"):
        classifier()(torch.rand(N_FEATURES))
