"""Three-factor rule against autograd (float64) and its pieces."""

import pytest
import torch

import spikegrad as sg
from spikegrad.learning import (Factors, LocalReadout, ThreeFactor, random_projection,
                                target_error)


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _layer(n_in=6, n=5, bias=True, recurrent=False, seed=0, gain=3.0, **lif):
    torch.manual_seed(seed)
    layer = sg.nn.Linear(n_in, n, bias=bias)
    neuron = sg.nn.LIF(n, tau_mem=10e-3, backend="reference", **lif)
    if recurrent:
        neuron = sg.nn.Recurrent(neuron, autapses=False)
    with torch.no_grad():
        layer.weight.mul_(gain)
    return layer, neuron


def _data(T=50, B=3, n_in=6, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = (torch.rand(T, B, n_in, generator=g) < 0.3).double()      # input spikes
    target = (torch.rand(T, B, n, generator=g) < 0.2).double()     # target spike trains
    return xs, target


def _run(rule, xs, error_fn):
    state, total = None, torch.zeros(())
    for t, x in enumerate(xs.unbind(0)):
        z, state, pre, post = rule.forward(x, state)
        loss, e = error_fn(t, z)
        total = total + loss
        rule.accumulate(Factors(pre, post, e))
    return rule.flush(), total


@pytest.mark.parametrize("lif", [dict(), dict(surrogate="straight_through", beta=2.0),
                                 dict(tau_syn=5e-3, scale_input=True), dict(reset="none"),
                                 dict(surrogate="sigmoid", beta=4.0, threshold=0.5)])
def test_summed_three_factor_update_equals_autograd_for_one_layer(lif):
    """Issue 8, test (c): per-step loss 1/2 sum_t ||z_t - z*_t||^2 on one LIF layer; with the
    neuron's own kernel as presynaptic trace, sum_t e phi x^T == autograd to 1e-10."""
    gain = 30.0 if lif.get("scale_input") else 3.0
    layer, neuron = _layer(gain=gain, **lif)
    xs, target = _data()
    zs, _ = neuron(layer(xs))
    assert 0.05 < float(zs.detach().mean()) < 0.7
    loss = 0.5 * (zs - target).pow(2).sum()
    loss.backward()
    want = {"weight": layer.weight.grad.clone(), "bias": layer.bias.grad.clone()}
    rule = ThreeFactor(layer, neuron, trace="kernel")
    got, total = _run(rule, xs, lambda t, z: (0.5 * (z - target[t]).pow(2).sum(),
                                              target_error(z, target[t])))
    torch.testing.assert_close(total, loss.detach(), rtol=0, atol=1e-12)   # same forward
    for name in want:
        assert want[name].abs().max() > 1e-2
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-10, msg=name)
        torch.testing.assert_close(layer.weight.grad if name == "weight" else layer.bias.grad,
                                   want[name], rtol=0, atol=1e-10)


def test_decolle_local_readout_error_is_exact_for_a_per_step_local_loss():
    layer, neuron = _layer()
    xs, _ = _data()
    g = torch.Generator().manual_seed(3)
    y_star = torch.randn(xs.shape[0], xs.shape[1], 2, generator=g)
    readout = LocalReadout(5, 2, generator=torch.Generator().manual_seed(4),
                           dtype=torch.float64)
    zs, _ = neuron(layer(xs))
    loss = 0.5 * (zs @ readout.weight.t() - y_star).pow(2).sum()
    loss.backward()
    got, total = _run(ThreeFactor(layer, neuron), xs,
                      lambda t, z: readout.error(z, y_star[t]))
    torch.testing.assert_close(got["weight"], layer.weight.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(total, loss.detach(), rtol=0, atol=1e-12)


def test_raw_spike_trace_is_only_an_approximation():
    layer, neuron = _layer()
    xs, target = _data()
    exact, _ = _run(ThreeFactor(layer, neuron, trace="kernel"), xs,
                    lambda t, z: (0.0, target_error(z, target[t])))
    raw, _ = _run(ThreeFactor(layer, neuron, trace="spikes"), xs,
                  lambda t, z: (0.0, target_error(z, target[t])))
    assert (raw["weight"] - exact["weight"]).abs().max() > 1e-3
    # a custom exponential trace with the membrane decay *is* the kernel (voltage-based, g=1)
    a = float(neuron.params().decay_mem)
    expo, _ = _run(ThreeFactor(layer, neuron, trace=a), xs,
                   lambda t, z: (0.0, target_error(z, target[t])))
    torch.testing.assert_close(expo["weight"], exact["weight"], rtol=0, atol=1e-10)


def test_factors_outer_is_a_sum_of_rank_one_products():
    g = torch.Generator().manual_seed(0)
    pre, post, err = (torch.randn(3, k, generator=g) for k in (4, 2, 2))
    f = Factors(pre, post, err)
    want = sum(torch.outer(err[b] * post[b], pre[b]) for b in range(3))
    torch.testing.assert_close(f.outer(), want)
    assert torch.linalg.matrix_rank(Factors(pre[:1], post[:1], err[:1]).outer()) == 1


def test_apply_updates_in_place_and_recurrent_weights_keep_a_zero_diagonal():
    layer, neuron = _layer(recurrent=True, gain=5.0)
    rule = ThreeFactor(layer, neuron)
    xs, target = _data(T=10)
    w0, r0 = layer.weight.detach().clone(), neuron.weight.detach().clone()
    state = None
    for t, x in enumerate(xs.unbind(0)):
        z, state, pre, post = rule.forward(x, state)
        f = Factors(pre, post, target_error(z, target[t]))
        dw = f.outer()
        before = layer.weight.detach().clone()
        rule.apply(f, lr=0.1)
        torch.testing.assert_close(layer.weight.detach(), before - 0.1 * dw[:, :6])
    assert not torch.equal(w0, layer.weight)
    assert torch.equal((neuron.weight - r0).diagonal(), torch.zeros(5))


def test_random_projection_broadcasts_the_output_error():
    e = random_projection(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, 0.0], [0.5, 1.0],
                                                                       [0.0, 2.0]]))
    assert e.tolist() == [[1.0, -1.5, -4.0]]
    with pytest.raises(ValueError, match="feedback must be \\[N, K\\] with K = 2"):
        random_projection(torch.zeros(1, 2), torch.zeros(3, 3))


@pytest.mark.parametrize("trace, match", [("filtered", "trace must be one of 'kernel', 'spikes'"),
                                          (1.5, "trace must be 'kernel', 'spikes' or a decay")])
def test_bad_trace(trace, match):
    layer, neuron = _layer()
    with pytest.raises(ValueError, match=match):
        ThreeFactor(layer, neuron, trace=trace)


def test_bad_inputs_name_the_fix():
    layer, neuron = _layer()
    rule = ThreeFactor(layer, neuron)
    with pytest.raises(ValueError, match=r"x must have shape \[B, 6\]"):
        rule.forward(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        rule.apply(Factors(torch.zeros(1, 7), torch.zeros(1, 5), torch.zeros(1, 5)), lr=0)
    with pytest.raises(TypeError, match="neuron must be a spikegrad.nn.LIF"):
        ThreeFactor(layer, sg.nn.LI(5))
    with pytest.raises(ValueError, match="target must have the spikes' shape"):
        target_error(torch.zeros(2, 5), torch.zeros(2, 4))
