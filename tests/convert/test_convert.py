"""convert: the converted SNN's rates approach the normalised ANN's activations as O(1/T),
its accumulated output approaches the logits, it reaches the ANN's accuracy, and it trains."""

import math

import pytest
import torch
from torch import nn

import spikegrad as sg
from spikegrad.convert import (QCFS, SpikingMaxPool2d, activation_scales, convert,
                               repeat_input)

F64 = torch.float64
TS = (16, 64, 256)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 24), nn.BatchNorm1d(24),
                         nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, 4)).double().eval()


def _cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 2 * 2, 3)).double().eval()


def _clipped_normalised_activations(snn, x):
    """The SNN's rate limits: its own rescaled layers run as an ANN on ``x``, each IF layer
    replaced by ``clamp(., 0, 1)`` (a ReLU normalised by its scale, saturating at rate 1)."""
    h, acts = x, []
    with torch.no_grad():
        for m in snn.layers:
            if isinstance(m, sg.nn.IF):
                h = h.clamp(0, 1)
                acts.append(h)
            elif isinstance(m, sg.nn.LI):
                pass
            else:
                h = m(h.unsqueeze(0))[0]  # one time step of a time-folded layer
    return acts, h


@pytest.mark.parametrize("make, shape, norm", [(_mlp, (10,), "percentile"),
                                               (_mlp, (10,), "max"),
                                               (_cnn, (1, 8, 8), "percentile")])
def test_rates_approach_the_clipped_normalised_activations_as_one_over_T(make, shape, norm):
    ann = make()
    torch.manual_seed(2)
    x = torch.rand(48, *shape, dtype=F64)
    snn = convert(ann, x, norm=norm, percentile=99.0)
    acts, out = _clipped_normalised_activations(snn, x)
    for T in TS:
        with torch.no_grad():
            outs, _ = snn.forward_all(repeat_input(x, T))
        rates = [o.mean(0) for m, o in zip(snn.layers, outs) if isinstance(m, sg.nn.IF)]
        errs = [(r - a).abs().max().item() for r, a in zip(rates, acts)]
        # first layer: a constant current z for T steps from v = 0 gives floor-like counts,
        # |count / T - clamp(z, 0, 1)| < 1 / T; deeper layers add the residual membranes of
        # the layers before them (each bounded, independent of T) through their weights
        assert errs[0] <= 1.0 / T + 1e-12, (T, errs)
        assert max(errs[1:]) <= 4.0 / T, (T, errs)
        assert (outs[-1][-1] / T - out).abs().max().item() <= 4.0 / T


def test_accumulated_output_over_T_approaches_the_logits():
    ann = _mlp()
    x = torch.rand(64, 10, dtype=F64)
    snn = convert(ann, x, norm="max")  # nothing is clipped on these inputs
    with torch.no_grad():
        logits = ann(x)
        vs, _ = snn(repeat_input(x, max(TS)))
    errs = [(vs[T - 1] / T - logits).abs().max().item() for T in TS]
    assert all(e * T <= 4.0 for e, T in zip(errs, TS)), errs
    assert errs[-1] < errs[0] / 8


def _blobs(n, seed):
    """A tiny separable 4-class problem: 16-d inputs in [0, 1], class by quadrant of two
    random projections (like digits: non-negative pixel-like features)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 16, generator=g)
    proj = torch.randn(2, 16, generator=torch.Generator().manual_seed(99))
    u = (x - 0.5) @ proj.T
    return x, (u[:, 0] > 0).long() + 2 * (u[:, 1] > 0).long()


def test_a_converted_mlp_reaches_the_anns_accuracy_at_large_T():
    torch.manual_seed(3)
    x, y = _blobs(600, 0)
    xt, yt = _blobs(400, 1)
    ann = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 32),
                        nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(ann.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(ann(x), y).backward()
        opt.step()
    ann.eval()
    with torch.no_grad():
        acc_ann = (ann(xt).argmax(1) == yt).float().mean().item()
    assert acc_ann > 0.9
    snn = convert(ann, x[:200])
    with torch.no_grad():
        vs, _ = snn(repeat_input(xt, 256))
    acc = {T: (vs[T - 1].argmax(1) == yt).float().mean().item() for T in (4, 256)}
    assert acc[256] >= acc_ann - 0.01, (acc, acc_ann)
    assert acc[256] > acc[4]


def test_the_converted_net_is_a_spikegrad_sequential_of_spiking_layers():
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                        nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(4, 4, 3), QCFS(4, 2.0),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(), nn.Linear(4, 3))
    x = torch.rand(8, 1, 10, 10)
    snn = convert(ann, x, surrogate="atan", beta=3.0)
    assert isinstance(snn, sg.nn.Sequential)
    assert [type(m) for m in snn.layers] == [
        sg.nn.Conv2d, sg.nn.IF, SpikingMaxPool2d, sg.nn.Conv2d, sg.nn.IF, sg.nn.AvgPool2d,
        sg.nn.Flatten, sg.nn.Linear, sg.nn.LI]
    if1, if2 = snn[1], snn[4]
    assert if1.features == (4, 10, 10) and if2.features == (4, 3, 3)
    assert (if1.v_init, if2.v_init) == (0.0, 0.5)
    for n in (if1, if2):
        assert n.reset == "subtract" and n.detach_reset and float(n.threshold()) == 1.0
        assert n.surrogate.name == "atan" and n.surrogate.beta == 3.0
        assert float(n.params().decay_mem) == 1.0
    assert snn[-1].features == (3,) and float(snn[-1].params().decay_mem) == 1.0
    assert snn[0].bias is not None   # the BatchNorm's shift
    # max_pool="avg" swaps the gate for average pooling that ignores the padding
    avg = convert(ann, x, max_pool="avg")
    assert type(avg[2]) is sg.nn.AvgPool2d and not avg[2].count_include_pad


def test_conversion_leaves_the_ann_alone_and_follows_its_dtype():
    ann = _mlp()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    ann.train()
    snn = convert(ann, torch.rand(16, 10, dtype=F64))
    assert ann.training and all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert all(p.dtype == F64 for p in snn.parameters())


def test_a_converted_net_takes_a_surrogate_gradient_step():
    torch.manual_seed(4)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    snn = convert(ann, x)
    opt = torch.optim.SGD(snn.parameters(), lr=0.1)
    vs, _ = snn(repeat_input(x, 8))
    loss = nn.functional.cross_entropy(vs[-1] / 8, y)
    loss.backward()
    for name, p in snn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt.step()
    vs2, _ = snn(repeat_input(x, 8))
    assert not torch.equal(vs, vs2)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(norm="l2"), ValueError, "norm must be one of"),
    (dict(percentile=0), ValueError, "percentile"),
    (dict(percentile=101), ValueError, "percentile"),
    (dict(max_pool="min"), ValueError, "max_pool must be one of 'gate', 'avg'"),
    (dict(surrogate="nope"), ValueError, "unknown surrogate"),
    (dict(beta=-1.0), ValueError, "beta"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        convert(_mlp(), torch.rand(4, 10, dtype=F64), **kwargs)


def test_max_pool_avg_rejects_a_dilated_max_pool():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, dilation=2),
                        nn.Flatten(), nn.Linear(2 * 2 * 2, 2))
    with pytest.raises(ValueError, match=r"layer 2 \(MaxPool2d\).*dilation"):
        convert(ann, torch.rand(2, 1, 8, 8), max_pool="avg")
    assert convert(ann, torch.rand(2, 1, 8, 8))[2].dilation == (2, 2)   # the gate takes it


def test_scales_used_by_convert_are_activation_scales():
    ann = _mlp()
    x = torch.rand(32, 10, dtype=F64)
    lam = activation_scales(ann, x)
    snn = convert(ann, x)
    folded = [m for m in ann if isinstance(m, nn.Linear)]
    # first layer W / lambda_1; output layer W * lambda_2
    torch.testing.assert_close(snn[0].weight, folded[0].weight / lam[0], rtol=1e-15, atol=0)
    torch.testing.assert_close(snn[4].weight, folded[2].weight * lam[1], rtol=1e-15, atol=0)
    torch.testing.assert_close(snn[4].bias, folded[2].bias, rtol=0, atol=0)
    assert not math.isnan(lam[0]) and len(lam) == 2


def test_weight_layers_in_a_row_compose():
    """A weight layer feeding another directly keeps the ANN's units; the second carries the
    normalisation of the activation they feed."""
    torch.manual_seed(5)
    ann = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3),
                        nn.Linear(3, 2)).double()
    x = torch.rand(32, 6, dtype=F64)
    snn = convert(ann, x, norm="max")
    with torch.no_grad():
        vs, _ = snn(repeat_input(x, 256))
        err = (vs[-1] / 256 - ann(x)).abs().max().item()
    assert err <= 4.0 / 256
