"""sg.nn.Linear backends: 'dense', 'event' and 'auto' give the dense results."""

import pytest
import torch

import spikegrad as sg

from numerics import assert_same_up_to_order, chain, linear_terms

BACKENDS = ["dense", "event", "auto"]


def layer_pair(n_in, n_out, backend, dtype, bias=True):
    torch.manual_seed(0)
    dense = sg.nn.Linear(n_in, n_out, bias=bias, backend="dense", dtype=dtype)
    other = sg.nn.Linear(n_in, n_out, bias=bias, backend=backend, dtype=dtype)
    other.load_state_dict(dense.state_dict())
    return dense, other


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, n_out, p", [
    ((12, 4, 30), 9, 0.1), ((3, 2, 1), 4, 0.5), ((5, 3, 16), 6, 0.0), ((5, 3, 16), 6, 1.0),
    ((2, 500, 64), 512, 0.01),     # big and sparse enough that 'auto' takes the event path
])
def test_backends_equal_dense_in_values_and_all_gradients(dtype, backend, shape, n_out, p):
    dense, other = layer_pair(shape[-1], n_out, backend, dtype)
    gen = torch.Generator().manual_seed(1)
    xs = (torch.rand(shape, generator=gen, dtype=dtype) < p).to(dtype)
    g = torch.randn(*shape[:-1], n_out, generator=gen, dtype=dtype)
    results = []
    for layer in (dense, other):
        x = xs.clone().requires_grad_()
        layer(x).backward(g)
        results.append((layer(x).detach(), layer.weight.grad, layer.bias.grad, x.grad))
    # each entry within twice Higham's bound of its own sum of |terms| (tests/numerics.py)
    for name, a, e, (n, scale) in zip(("y", "dW", "db", "dX"), *reversed(results),
                                       linear_terms(xs, dense.weight.detach(),
                                                    dense.bias.detach(), g)):
        assert_same_up_to_order(a, e, n, scale, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_event_backend_behind_a_spiking_neuron_gives_the_dense_gradients(dtype):
    """Hidden layer: spikes from LIF require grad; dX = g W must reach the surrogate."""
    grads = {}
    for backend in ("dense", "event"):
        torch.manual_seed(0)
        lin1 = sg.nn.Linear(20, 64, dtype=dtype, backend="dense")
        lif = sg.nn.LIF(64)
        lin2 = sg.nn.Linear(64, 10, backend=backend, dtype=dtype)
        xs = 3.0 * torch.rand(30, 8, 20, dtype=dtype)
        zs, _ = lif(lin1(xs))
        assert 0 < zs.mean() < 0.5 and torch.equal(zs, (zs > 0).to(dtype))
        lin2(zs).square().sum().backward()
        grads[backend] = [lin1.weight.grad, lin1.bias.grad, lin2.weight.grad, lin2.bias.grad]
    # the gradients reach lin1 through the LIF's 30-step adjoint: norm-wise bound of that
    # chain, the 64 + 10 wide sums per step, over the 8 rows
    for k, (a, e) in enumerate(zip(grads["event"], grads["dense"])):
        assert_same_up_to_order(a, e, chain(30, 8, 74), msg=f"gradient {k}")


def test_linear_stays_an_nn_linear_with_the_same_state_dict():
    layer = sg.nn.Linear(5, 3, backend="event")
    assert isinstance(layer, torch.nn.Linear)
    assert list(layer.state_dict()) == list(torch.nn.Linear(5, 3).state_dict())
    assert "backend='event'" in repr(layer)
    assert sg.nn.Linear(5, 3).backend == "auto"
    assert sg.nn.Linear(5, 3, bias=False).bias is None


def test_event_backend_rejects_non_binary_input_and_auto_falls_back():
    xs = torch.rand(4, 2, 6)
    with pytest.raises(ValueError, match=r"binary input.*use backend='dense'"):
        sg.nn.Linear(6, 3, backend="event")(xs)
    layer = sg.nn.Linear(6, 3)                              # auto
    torch.testing.assert_close(layer(xs), torch.nn.functional.linear(xs, layer.weight, layer.bias))


def test_unknown_backend_is_rejected_at_construction():
    with pytest.raises(ValueError, match=r"Linear: backend must be one of 'auto', 'event', "
                                         r"'dense'; got 'sparse'"):
        sg.nn.Linear(6, 3, backend="sparse")


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_validation_is_unchanged_for_every_backend(backend):
    layer = sg.nn.Linear(6, 3, backend=backend)
    with pytest.raises(ValueError,
                       match=r"Linear\(6, 3\): xs must be a time-major input \[T, B, 6\]"):
        layer(torch.rand(5, 6))
    with pytest.raises(ValueError, match=r"got shape \[2, 5, 7\]"):
        layer(torch.rand(2, 5, 7))
    with pytest.raises(TypeError, match="xs must be a floating-point tensor"):
        layer(torch.ones(2, 5, 6, dtype=torch.int64))
