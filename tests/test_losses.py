import pytest
import torch

import spikegrad as sg
from spikegrad import losses
from spikegrad.functional import LIFParams, lif_trace


def _output_layer(T=12, B=4, C=3, decay=0.8, seed=0):
    torch.manual_seed(seed)
    xs = (torch.rand(T, B, C, dtype=torch.float64) * 1.5).requires_grad_()
    y = torch.randint(0, C, (B,))
    return xs, y, LIFParams(decay_mem=decay, threshold=1.0,
                            surrogate=sg.surrogate.get("fast_sigmoid", beta=5.0))


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_count_ce_spreads_error_evenly_over_spikes(scale):
    xs, y, p = _output_layer()
    zs, _ = sg.functional.lif_seq(xs, None, p)
    zs.retain_grad()
    losses.count_cross_entropy(zs, y, scale=scale).backward()
    T, B, C = zs.shape
    prob = torch.softmax(scale * zs.detach().sum(0), dim=1)
    err = scale * (prob - torch.nn.functional.one_hot(y, C)) / B  # [B, C]
    torch.testing.assert_close(zs.grad, err.expand(T, B, C), rtol=1e-12, atol=1e-15)


def test_count_ce_membrane_gradient_is_error_times_surrogate():
    # memoryless neuron (decay 0): dL/dv_t is exactly the spike error times phi(v_t - theta)
    xs, y, p = _output_layer(decay=0.0)
    zs, _ = sg.functional.lif_seq(xs, None, p)
    losses.count_cross_entropy(zs, y).backward()
    B, C = y.shape[0], zs.shape[2]
    err = (torch.softmax(zs.detach().sum(0), 1) - torch.nn.functional.one_hot(y, C)) / B
    v = xs.detach()  # with no leak v_t = x_t
    torch.testing.assert_close(xs.grad, err * p.surrogate.grad(v - 1.0), rtol=1e-12, atol=1e-15)


def test_count_ce_membrane_gradient_with_leak_follows_backward_recursion():
    # reset detached: v_{t+1} = a (v_t - z_t theta) + x_{t+1}, so
    # dL/dv_t = e * phi(v_t - theta) + a * dL/dv_{t+1}; and dL/dx_t = dL/dv_t.
    xs, y, p = _output_layer(decay=0.8)
    zs, tr = lif_trace(xs, None, p)
    losses.count_cross_entropy(zs, y).backward()
    B, C = y.shape[0], zs.shape[2]
    err = (torch.softmax(zs.detach().sum(0), 1) - torch.nn.functional.one_hot(y, C)) / B
    v_pre = tr.v.detach() + zs.detach() * 1.0  # membrane before the subtractive reset
    g = torch.zeros_like(err)
    expected = []
    for t in reversed(range(zs.shape[0])):
        g = err * p.surrogate.grad(v_pre[t] - 1.0) + 0.8 * g
        expected.append(g)
    torch.testing.assert_close(xs.grad, torch.stack(expected[::-1]), rtol=1e-12, atol=1e-15)


def test_membrane_ce_and_readouts():
    vs = torch.tensor([[[0.0, 1.0]], [[3.0, -1.0]], [[1.0, 2.0]]])  # [T=3, B=1, C=2]
    assert sg.readout.membrane(vs, "max").tolist() == [[3.0, 2.0]]
    assert sg.readout.membrane(vs, "last").tolist() == [[1.0, 2.0]]
    assert sg.readout.membrane(vs, "mean")[0].tolist() == pytest.approx([4 / 3, 2 / 3])
    y = torch.tensor([0])
    expected = torch.nn.functional.cross_entropy(torch.tensor([[3.0, 2.0]]), y)
    torch.testing.assert_close(losses.membrane_cross_entropy(vs, y, "max"), expected)


def test_first_spike_time_and_count():
    zs = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1.0]]).unsqueeze(1)  # [4,1,3]
    assert sg.readout.first_spike_time(zs).tolist() == [[1.0, 4.0, 2.0]]
    assert sg.readout.spike_count(zs).tolist() == [[2.0, 0.0, 2.0]]


def test_regularisers_values():
    zs = torch.zeros(5, 2, 3)
    zs[:, 0, 0] = 1  # neuron 0 of sample 0 fires 5 times
    zs[:2, 1, 1] = 1  # neuron 1 of sample 1 fires twice
    # counts [[5,0,0],[0,2,0]]
    assert losses.spike_count_l1(zs).item() == pytest.approx(7 / 6)
    assert losses.spike_count_l2(zs).item() == pytest.approx(29 / 6)
    assert losses.spike_count_l1(zs, per="layer").item() == pytest.approx((5 / 3 + 2 / 3) / 2)
    # band [1, 3]: below -> (1-0)^2 four times; above -> (5-3)^2 once
    assert losses.rate_band(zs, 1.0, 3.0).item() == pytest.approx((4 * 1 + 4) / 6)
    assert losses.rate_band(zs, high=3.0, power=1).item() == pytest.approx(2 / 6)


def test_mse_nmse_filtered():
    target = torch.linspace(-1, 1, 10).view(10, 1, 1)
    assert losses.nmse(torch.zeros_like(target) + target.mean(), target).item() == pytest.approx(1.0)
    zs = torch.zeros(4, 1, 1)
    zs[0] = 1
    tgt = torch.tensor([1.0, 0.5, 0.25, 0.125]).view(4, 1, 1)
    assert losses.filtered_mse(zs, tgt, decay=0.5).item() == pytest.approx(0.0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: losses.count_cross_entropy(torch.rand(5, 3), torch.zeros(3).long()), ValueError, r"\[T, B, C\]"),
    (lambda: losses.count_cross_entropy(torch.rand(5, 2, 3), torch.zeros(3).long()), ValueError, r"shape \[B\] = \[2\]"),
    (lambda: losses.count_cross_entropy(torch.rand(5, 2, 3), torch.tensor([0, 3])), ValueError, r"\[0, 2\]"),
    (lambda: losses.count_cross_entropy(torch.rand(5, 2, 3), torch.tensor([0.0, 1.0])), TypeError, "integer"),
    (lambda: losses.membrane_cross_entropy(torch.rand(5, 2, 3), torch.tensor([0, 1]), "median"), ValueError, "reduce must be one of"),
    (lambda: losses.mse(torch.rand(5, 2, 3), torch.rand(5, 2, 2)), ValueError, "same shape"),
    (lambda: losses.rate_band(torch.rand(5, 2, 3)), ValueError, "low, high"),
    (lambda: losses.rate_band(torch.rand(5, 2, 3), 3.0, 1.0), ValueError, "must not exceed"),
    (lambda: losses.spike_count_l1(torch.rand(5, 2, 3), per="batch"), ValueError, "per must be one of"),
])
def test_bad_loss_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
