import pytest
import torch

import spikegrad as sg


def test_module_equals_functional_and_branch_layout():
    torch.manual_seed(0)
    den = sg.nn.DendriticLIF(3, branches=2, tau_dend=(2e-3, 50e-3), threshold_dend=0.5,
                             coupling=1.5, passive=0.2, tau_mem=5e-3)
    assert torch.allclose(den.decay_dend.tau[0], torch.tensor([2e-3, 50e-3]))
    xs = torch.rand(10, 4, 6)
    zs, s = den(xs)
    zf, sf = sg.functional.dendrite_seq(xs.unflatten(-1, (3, 2)), None, den.params())
    assert torch.equal(zs, zf) and torch.equal(s.d, sf.d)
    # neuron j's branches are xs[..., 2j:2j+2]
    assert torch.equal(s.d[..., 1, :], sg.functional.dendrite_seq(
        xs[..., 2:4].unsqueeze(-2), None, den.params()._replace(
            decay_dend=den.decay_dend()[1:2], coupling=den.coupling[1:2],
            passive=den.passive[1:2]))[1].d[..., 0, :])
    zt, st = den.trace(xs)
    assert torch.equal(zt, zs) and torch.equal(st.d[-1], s.d)


def test_every_parameter_learns_in_a_recurrent_network():
    torch.manual_seed(1)
    net = sg.nn.Sequential(
        sg.nn.Linear(4, 5 * 3),
        sg.nn.DendriticLIF(5, branches=3, tau_dend=(2e-3, 10e-3, 100e-3), threshold_dend=0.5,
                           passive=0.3, learn_dend=True, recurrent=True, learn_tau=True,
                           learn_threshold=True, tau_mem=5e-3),
        sg.nn.Linear(5, 2), sg.nn.LI(2))
    out, state = net(torch.rand(25, 3, 4) * 2)
    out.pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    out2, _ = net(torch.rand(5, 3, 4), state)    # continues from the returned state
    assert out2.shape == (5, 3, 2)


def test_detach_dend_removes_the_input_gradient_without_passive_coupling():
    torch.manual_seed(2)
    xs = torch.rand(12, 2, 4, requires_grad=True)
    den = sg.nn.DendriticLIF(2, branches=2, threshold_dend=0.3, detach_dend=True,
                             learn_dend=True)
    zs, _ = den(xs * 2)
    zs.sum().backward()
    assert (xs.grad == 0).all() and den.coupling.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(branches=0), "branches"), (dict(tau_dend=(1e-3,)), "tau_dend"),
    (dict(threshold_dend=-1.0), "threshold_dend"), (dict(backend="cuda"), "backend must be"),
    (dict(backend="numba", recurrent=True), "runs the reference loop"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sg.nn.DendriticLIF(3, **{"branches": 2, **kwargs})


def test_wrong_input_width_names_the_fix():
    with pytest.raises(ValueError, match=r"\[T, B, 6\]"):
        sg.nn.DendriticLIF(3, branches=2)(torch.rand(5, 2, 3))
