import pytest
import torch

import spikegrad as sg
from spikegrad.functional import RecurrentState

from numerics import assert_same_up_to_order


@pytest.mark.parametrize("layer, shape", [
    (lambda: sg.nn.Conv2d(2, 3, 3, padding=1, stride=2), (4, 5, 2, 8, 8)),
    (lambda: sg.nn.Conv1d(2, 3, 3), (4, 5, 2, 10)),
    (lambda: sg.nn.MaxPool2d(2), (4, 5, 2, 8, 8)),
    (lambda: sg.nn.AvgPool1d(2), (4, 5, 2, 10)),
    (lambda: sg.nn.Linear(6, 3), (4, 5, 6)),
])
def test_time_folded_layer_equals_per_step_application(layer, shape):
    torch.manual_seed(0)
    m = layer()
    xs = torch.rand(shape)
    ys = m(xs)
    per_step = torch.stack([torch.nn.Module.__call__(m, x.unsqueeze(0))[0] for x in xs])
    # one batched GEMM/convolution may sum each entry in another order than the per-step
    # ones: n = the largest fan-in here (2 x 3 x 3) plus the bias (tests/numerics.py)
    assert_same_up_to_order(ys, per_step, 2 * 3 * 3 + 1)


def test_time_folded_layers_reject_missing_time_axis():
    with pytest.raises(ValueError, match=r"Conv2d: xs must be a time-major input \[T, B, C, H, W\]"):
        sg.nn.Conv2d(2, 3, 3)(torch.rand(5, 2, 8, 8))
    with pytest.raises(ValueError, match=r"Linear\(6, 3\): xs must be a time-major input \[T, B, 6\]"):
        sg.nn.Linear(6, 3)(torch.rand(5, 6))


def test_dropout_uses_one_mask_per_sequence():
    torch.manual_seed(0)
    d = sg.nn.Dropout(0.5)
    ys = d(torch.ones(7, 4, 100))
    dropped = ys == 0
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))
    assert 0.3 < dropped[0].float().mean() < 0.7
    assert torch.allclose(ys[~dropped], torch.tensor(2.0))
    d.eval()
    assert torch.equal(d(torch.ones(3, 2, 5)), torch.ones(3, 2, 5))
    with pytest.raises(ValueError, match="probability"):
        sg.nn.Dropout(1.0)


def test_flatten_keeps_time_and_batch():
    assert sg.nn.Flatten()(torch.rand(3, 2, 4, 5, 6)).shape == (3, 2, 120)


def test_sequential_threads_state_so_chunks_equal_full_run():
    torch.manual_seed(0)
    net = sg.nn.Sequential(sg.nn.Linear(5, 8), sg.nn.Recurrent(sg.nn.LIF(8, tau_syn=5e-3)),
                           sg.nn.Linear(8, 2), sg.nn.LI(2))
    xs = torch.rand(20, 3, 5) * 3
    full, _ = net(xs)
    a, s = net(xs[:7])
    b, _ = net(xs[7:], s)
    torch.testing.assert_close(torch.cat([a, b]), full, rtol=0, atol=0)
    outs, _ = net.forward_all(xs)
    assert [o.shape[-1] for o in outs] == [8, 8, 2, 2] and torch.equal(outs[-1], full)


def test_sequential_rejects_bad_state():
    net = sg.nn.Sequential(sg.nn.Linear(5, 8), sg.nn.LIF(8))
    with pytest.raises(ValueError, match="one entry per layer"):
        net(torch.rand(3, 2, 5), (None,))


def test_recurrent_equals_hand_loop_and_masks_autapses():
    torch.manual_seed(0)
    rec = sg.nn.Recurrent(sg.nn.LIF(6), autapses=False).double()
    xs = torch.rand(15, 2, 6, dtype=torch.float64) * 2
    ys, state = rec(xs)
    W = rec.weight * (1 - torch.eye(6, dtype=torch.float64))
    p = rec.neuron.params()
    s, y, hand = None, torch.zeros(2, 6, dtype=torch.float64), []
    for x in xs:
        y, s = sg.functional.lif_step(x + y @ W.T, s, p)
        hand.append(y)
    assert torch.equal(ys, torch.stack(hand)) and torch.equal(state.inner.v, s.v)
    assert isinstance(state, RecurrentState)
    ys.sum().backward()
    assert rec.weight.grad.diagonal().abs().sum() == 0 and rec.weight.grad.abs().sum() > 0


def test_recurrent_rejects_non_neurons():
    with pytest.raises(TypeError, match="neuron module"):
        sg.nn.Recurrent(sg.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="1-D feature shape"):
        sg.nn.Recurrent(sg.nn.LIF((2, 3)))
