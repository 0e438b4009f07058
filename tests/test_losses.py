import math

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


# --- coding losses -------------------------------------------------------------------------

def test_membrane_rate_loss_hand_value_and_dense_gradient():
    vs = torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    loss = losses.membrane_rate_loss(vs, y)
    # 1/2 [(1-2)^2 + (0-1)^2 + (3-2)^2 + (2-1)^2] = 2
    assert loss.item() == pytest.approx(2.0)
    loss.backward()
    assert vs.grad.tolist() == [[[-1.0, -1.0]], [[1.0, 1.0]]]  # v_t - y at every step
    # a per-step target gives the same value when it is constant
    assert losses.membrane_rate_loss(vs, y.expand(2, 1, 2)).item() == pytest.approx(2.0)


def test_spike_rate_loss_hand_value():
    zs = torch.zeros(4, 1, 2, requires_grad=True)
    with torch.no_grad():
        zs[:2, 0, 0] = 1  # rates [0.5, 0]
    loss = losses.spike_rate_loss(zs, torch.tensor([[0.25, 0.5]]))
    assert loss.item() == pytest.approx(0.5 * (0.25 ** 2 + 0.5 ** 2))
    loss.backward()
    # (r - y) / T at every step
    assert zs.grad[:, 0].tolist() == [[0.0625, -0.125]] * 4


def test_first_spike_nll_hand_value():
    vs = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).view(3, 1, 1)
    t_f = torch.tensor([[1]])
    # t=0: -log(1 - sigmoid(-1)) = log(1 + e^-1); t=1: -log sigmoid(0) = log 2; t=2: not counted
    expected = math.log(1 + math.exp(-1)) + math.log(2)
    assert losses.first_spike_nll(vs, t_f, threshold=1.0, beta_esc=1.0).item() \
        == pytest.approx(expected, rel=1e-12)
    # t_f = T: probability of no spike in the window
    no_spike = sum(math.log(1 + math.exp(b * (v - 1))) for b, v in [(1, 0), (1, 1), (1, 2)])
    assert losses.first_spike_nll(vs, torch.tensor([[3]]), 1.0, 1.0).item() \
        == pytest.approx(no_spike, rel=1e-12)


def test_first_spike_nll_is_minus_log_probability_and_gradient_stops_at_t_f():
    torch.manual_seed(0)
    T, B, C, beta = 10, 3, 4, 3.0
    vs = torch.randn(T, B, C, dtype=torch.float64, requires_grad=True)
    t_f = torch.randint(0, T + 1, (B, C))
    loss = losses.first_spike_nll(vs, t_f, threshold=0.5, beta_esc=beta)
    p = torch.sigmoid(beta * (vs.detach() - 0.5))
    nll = 0.0
    for b in range(B):
        for c in range(C):
            tf = int(t_f[b, c])
            prob = torch.prod(1 - p[:tf, b, c]) * (p[tf, b, c] if tf < T else 1.0)
            nll = nll - torch.log(prob)
    torch.testing.assert_close(loss, nll / B, rtol=1e-10, atol=0)
    loss.backward()
    steps = torch.arange(T).view(T, 1, 1)
    # analytic: beta p_t / B before t_f, -beta (1 - p_t) / B at t_f, exactly 0 after
    expected = torch.where(steps < t_f, beta * p / B,
                           torch.where(steps == t_f, -beta * (1 - p) / B, torch.zeros_like(p)))
    torch.testing.assert_close(vs.grad, expected, rtol=1e-12, atol=1e-15)
    assert bool((vs.grad[steps.expand(T, B, C) > t_f] == 0).all())


def test_first_spike_nll_error_signal_after_t_f_is_exactly_zero_through_a_neuron():
    # the loss on an LI readout driven through a weight: dL/dv_t (retained) is 0 for t > t_f,
    # and so the input gradient is 0 after t_f as well (the leak only carries errors backward)
    torch.manual_seed(1)
    xs = torch.rand(20, 2, 3, dtype=torch.float64, requires_grad=True)
    vs, _ = sg.functional.li_seq(xs, None, sg.functional.LIParams(decay_mem=0.9))
    vs.retain_grad()
    t_f = torch.tensor([[4, 9, 20], [0, 13, 19]])
    losses.first_spike_nll(vs, t_f, threshold=2.0, beta_esc=4.0).backward()
    after = torch.arange(20).view(20, 1, 1) > t_f
    assert bool((vs.grad[after] == 0).all()) and bool((xs.grad[after] == 0).all())
    assert bool((vs.grad[~after] != 0).all())


def test_soft_first_spike_time_value_and_counterfactual_gradient():
    zs = torch.zeros(6, 1, 3, dtype=torch.float64)
    zs[2, 0, 0] = zs[4, 0, 0] = 1  # neuron 0: spikes at 2 and 4
    zs[1, 0, 2] = 1  # neuron 2: one spike at 1; neuron 1 silent
    zs.requires_grad_()
    t = losses.soft_first_spike_time(zs)
    assert t.tolist() == [[2.0, 6.0, 1.0]]
    assert t.tolist() == sg.readout.first_spike_time(zs.detach()).tolist()
    t.sum().backward()
    g = zs.grad[:, 0]
    # neuron 0: -(2 - t) before, -(4 - 2) at the first spike, 0 after
    assert g[:, 0].tolist() == [-2.0, -1.0, -2.0, 0.0, 0.0, 0.0]
    assert g[:, 1].tolist() == [-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]  # silent: -(T - t)
    assert g[:, 2].tolist() == [-1.0, -5.0, 0.0, 0.0, 0.0, 0.0]


def test_ttfs_cross_entropy_hand_value():
    zs = torch.zeros(5, 1, 3)
    zs[1, 0, 0] = zs[3, 0, 1] = 1  # first spikes at 1, 3, never (5)
    loss = losses.ttfs_cross_entropy(zs, torch.tensor([0]), tau=2.0)
    logits = torch.tensor([-0.5, -1.5, -2.5])
    assert loss.item() == pytest.approx(-torch.log_softmax(logits, 0)[0].item(), rel=1e-6)


def test_ttfs_error_signal_is_zero_after_each_first_spike_through_lif():
    # output LIF layer; the gradient wrt its input (= dL/du_t, reset detached) vanishes after
    # each neuron's first spike, and is nonzero before it where phi > 0
    torch.manual_seed(2)
    xs = (torch.rand(30, 8, 3, dtype=torch.float64) * 0.6).requires_grad_()
    p = LIFParams(decay_mem=0.9, threshold=1.0, surrogate=sg.surrogate.get("fast_sigmoid", 10.0))
    zs, _ = sg.functional.lif_seq(xs, None, p)
    y = torch.randint(0, 3, (8,))
    losses.ttfs_cross_entropy(zs, y, tau=3.0).backward()
    t1 = sg.readout.first_spike_time(zs.detach())
    steps = torch.arange(30, dtype=torch.float64).view(30, 1, 1)
    assert bool((xs.grad[steps > t1] == 0).all())
    assert bool((xs.grad[steps <= t1] != 0).all())


# --- constraint terms ----------------------------------------------------------------------

def test_membrane_penalties_hand_values():
    vs = torch.tensor([[[0.5, 1.5]], [[-1.0, 3.0]]])  # [T=2, B=1, N=2]
    # above theta = 1: excursions 0, 0.5, 0, 2 -> L1 mean 2.5/4, L2 mean 4.25/4
    assert losses.membrane_penalty(vs, "above", 1.0, power=1).item() == pytest.approx(2.5 / 4)
    assert losses.membrane_penalty(vs, "above", 1.0, power=2).item() == pytest.approx(4.25 / 4)
    # below a floor of -0.5: only -1.0 -> 0.5; L2 0.25 / 4
    assert losses.membrane_penalty(vs, "below", -0.5, power=2).item() == pytest.approx(0.25 / 4)
    # all: |v| -> (0.5 + 1.5 + 1 + 3) / 4, v^2 -> (0.25 + 2.25 + 1 + 9) / 4
    assert losses.membrane_penalty(vs, "all", power=1).item() == pytest.approx(6.0 / 4)
    assert losses.membrane_penalty(vs).item() == pytest.approx(12.5 / 4)
    # per layer: the layer's mean membrane per step, 1.0 and 1.0, above 0.5: 0.5 each
    assert losses.membrane_penalty(vs, "above", 0.5, power=1, per="layer").item() \
        == pytest.approx(0.5)


def test_regularization_combines_weighted_terms_per_layer():
    import functools
    zs = torch.zeros(5, 2, 3)
    zs[:, 0, 0] = 1
    zs[:2, 1, 1] = 1  # counts [[5,0,0],[0,2,0]]
    vs = torch.full((5, 2, 3), 2.0)
    outs = {"hidden": zs, "hidden_v": vs}
    terms = [losses.Term("hidden", losses.spike_count_l1, 0.5),
             losses.Term("hidden", functools.partial(losses.rate_band, low=1.0, high=3.0), 2.0),
             losses.Term("hidden_v", functools.partial(losses.membrane_penalty, region="above",
                                                       level=1.0), 0.1, name="v_above")]
    parts = losses.regularization_terms(outs, terms)
    assert list(parts) == ["hidden:spike_count_l1", "hidden:rate_band", "v_above"]
    assert parts["hidden:spike_count_l1"].item() == pytest.approx(0.5 * 7 / 6)
    assert parts["hidden:rate_band"].item() == pytest.approx(2.0 * 8 / 6)
    assert parts["v_above"].item() == pytest.approx(0.1 * 1.0)
    total = losses.regularization(outs, terms).item()
    assert total == pytest.approx(0.5 * 7 / 6 + 2.0 * 8 / 6 + 0.1)
    # list outputs (Sequential.forward_all) indexed by layer; no terms -> 0
    assert losses.regularization([zs, zs], [losses.Term(1, losses.spike_count_l2, 1.0)]).item() \
        == pytest.approx(29 / 6)
    assert losses.regularization([zs], []).item() == 0.0


@pytest.mark.parametrize("call, exc, match", [
    (lambda: losses.membrane_rate_loss(torch.rand(5, 2, 3), torch.rand(2, 2)), ValueError,
     r"target must have shape \[5, 2, 3\] \(per step\) or \[2, 3\]"),
    (lambda: losses.spike_rate_loss(torch.rand(5, 2, 3), torch.rand(5, 2, 3)), ValueError,
     "spikes per step"),
    (lambda: losses.first_spike_nll(torch.rand(5, 2, 3), torch.zeros(2, 3)), TypeError,
     "integer steps"),
    (lambda: losses.first_spike_nll(torch.rand(5, 2, 3), torch.full((2, 3), 6)), ValueError,
     r"\[0, T\] = \[0, 5\]"),
    (lambda: losses.first_spike_nll(torch.rand(5, 2, 3), torch.zeros(2, 3).long(), beta_esc=0),
     ValueError, "beta_esc must be"),
    (lambda: losses.ttfs_cross_entropy(torch.rand(5, 2, 3), torch.tensor([0, 1]), tau=-1.0),
     ValueError, "tau must be a finite number > 0"),
    (lambda: losses.membrane_penalty(torch.rand(5, 2, 3), "middle"), ValueError,
     "region must be one of"),
    (lambda: losses.membrane_penalty(torch.rand(5, 2, 3), power=3), ValueError, "power must be 1"),
    (lambda: losses.regularization([torch.rand(5, 2, 3)], [losses.Term(2, losses.spike_count_l1)]),
     ValueError, "no layer output 2"),
    (lambda: losses.regularization([torch.rand(5, 2, 3)], [losses.Term(0, losses.spike_count_l1,
                                                                       -1.0)]),
     ValueError, "weight must be a finite number >= 0"),
    (lambda: losses.regularization([torch.rand(5, 2, 3)], losses.Term(0, losses.spike_count_l1)),
     TypeError, "sequence of spikegrad.losses.Term"),
])
def test_bad_coding_and_constraint_inputs(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
