"""Activation scales, and that after weight normalisation each layer's percentile is 1."""

import math

import pytest
import torch
from torch import nn

import spikegrad as sg
from spikegrad.convert import QCFS, activation_scales, convert
from spikegrad.convert.scales import percentile_of

F64 = torch.float64


@pytest.mark.parametrize("q", [0.1, 25.0, 50.0, 99.9, 100.0])
@pytest.mark.parametrize("n", [1, 2, 1001])
def test_percentile_equals_torch_quantile(q, n):
    torch.manual_seed(n)
    x = torch.randn(n, dtype=F64)
    want = torch.quantile(x, q / 100).item()
    assert percentile_of(x, q) == pytest.approx(want, rel=0, abs=8 * 2**-53 * x.abs().max().item())


def test_percentile_of_a_tensor_too_large_for_torch_quantile():
    n = 2**24 + 3  # torch.quantile refuses more than 2^24 entries
    x = torch.arange(n, dtype=F64)
    assert percentile_of(x, 99.0) == 0.99 * (n - 1)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 12),
                         nn.ReLU(), nn.Linear(12, 3)).double()


def _relu_outputs(ann, x):
    outs, h = [], x
    with torch.no_grad():
        for m in ann:
            h = m(h)
            if isinstance(m, (nn.ReLU, QCFS)):
                outs.append(h)
    return outs


def test_scales_are_the_max_and_the_percentile_of_positive_activations():
    ann = _mlp().eval()
    x = torch.randn(200, 5, dtype=F64)
    acts = _relu_outputs(ann, x)
    assert activation_scales(ann, x, norm="max") == [a.max().item() for a in acts]
    for got, a in zip(activation_scales(ann, x, percentile=90.0), acts):
        assert got == pytest.approx(torch.quantile(a[a > 0], 0.9).item(), rel=1e-14)
    # percentile=100 is the maximum
    assert activation_scales(ann, x, percentile=100) == activation_scales(ann, x, norm="max")


def test_a_qcfs_layer_is_scaled_by_its_clip_value_whatever_the_norm():
    ann = nn.Sequential(nn.Linear(4, 8), QCFS(4, 3.0), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 2))
    x = torch.randn(50, 4)
    for norm in ("max", "percentile"):
        scales = activation_scales(ann, x, norm=norm)
        assert scales[0] == pytest.approx(3.0) and scales[1] != pytest.approx(3.0)


def test_a_layer_that_never_fires_gets_scale_one():
    ann = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        ann[0].weight.zero_(), ann[0].bias.fill_(-1.0)
    assert activation_scales(ann, torch.randn(10, 3)) == [1.0]


@pytest.mark.parametrize("norm, percentile", [("max", 99.9), ("percentile", 99.9),
                                              ("percentile", 80.0)])
def test_after_normalisation_each_layers_percentile_is_one(norm, percentile):
    """Run the rescaled weights of the converted net as an ANN with ReLU: the chosen
    statistic of every layer's positive activations is then 1, i.e. rate 1."""
    ann = _mlp().eval()
    x = torch.randn(300, 5, dtype=F64)
    snn = convert(ann, x, norm=norm, percentile=percentile)
    weights = [m for m in snn.layers if isinstance(m, sg.nn.Linear)]
    h = x
    q = 100.0 if norm == "max" else percentile
    for lin in weights[:-1]:
        h = torch.relu(torch.nn.functional.linear(h, lin.weight, lin.bias))
        # a/lambda computed through rescaled weights: a few roundings per layer
        assert percentile_of(h[h > 0], q) == pytest.approx(1.0, rel=0, abs=1e-13)
    # the output layer gets W_L * lambda_{L-1} and b_L: in the ANN's units again (no
    # activation is clipped with norm="max", so the rescaled net computes the ANN's logits)
    if norm == "max":
        out = torch.nn.functional.linear(h, weights[-1].weight, weights[-1].bias)
        with torch.no_grad():
            torch.testing.assert_close(out, ann(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm="mean"), "norm must be one of 'percentile', 'max'"),
    (dict(percentile=0.0), r"percentile must be a finite number in \(0, 100\]"),
    (dict(percentile=100.5), "percentile"), (dict(percentile=-3), "percentile"),
    (dict(percentile=math.nan), "percentile"), (dict(percentile="99"), "percentile"),
])
def test_bad_norm_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        activation_scales(_mlp(), torch.randn(4, 5, dtype=F64), **kwargs)


def test_calibration_must_fit_the_ann():
    ann = _mlp()
    with pytest.raises(TypeError, match=r"calibration is torch.float32.*calibration.to"):
        activation_scales(ann, torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"calibration must be a batch .*\[B, \.\.\.\]"):
        activation_scales(ann, torch.randn(5, dtype=F64))
    with pytest.raises(ValueError, match=r"layer 0 \(Linear\) failed on the calibration data"):
        activation_scales(ann, torch.randn(4, 6, dtype=F64))
