import math

import pytest
import torch

import spikegrad as sg

from numerics import assert_close_to_reference, chain


def test_trainable_decay_and_threshold_stay_in_range_and_get_gradients():
    torch.manual_seed(0)
    lif = sg.nn.LIF(4, tau_mem=20e-3, tau_syn=5e-3, dt=1e-3, threshold=0.7, learn_tau=True,
                    learn_threshold=True)
    p = lif.params()
    assert torch.allclose(p.decay_mem, torch.full((4,), math.exp(-1 / 20)))
    assert torch.allclose(p.decay_syn, torch.full((4,), math.exp(-1 / 5)))
    assert torch.allclose(p.threshold, torch.full((4,), 0.7))
    assert torch.allclose(lif.decay_mem.tau, torch.full((4,), 20e-3))
    with torch.no_grad():  # far outside the range: the smooth maps keep decay and theta valid
        lif.decay_mem.rho.fill_(50.0)
        lif.threshold.rho.fill_(-50.0)
    p = lif.params()
    assert bool(((p.decay_mem > 0) & (p.decay_mem <= 1)).all()) and bool((p.threshold > 0).all())
    with torch.no_grad():
        lif.decay_mem.rho.zero_(); lif.threshold.rho.zero_()
    zs, _ = lif(torch.rand(30, 2, 4) * 0.5)
    zs.sum().backward()
    for name, param in lif.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_fixed_constants_are_buffers_not_parameters():
    lif = sg.nn.LIF(4)
    assert list(lif.parameters()) == []
    assert {"decay_mem.value", "threshold.value"} <= set(lif.state_dict())


def test_if_has_no_leak():
    if_ = sg.nn.IF(1, threshold=1.0)
    zs, s = if_(torch.full((5, 1, 1), 0.3))
    assert zs.flatten().tolist() == [0, 0, 0, 1, 0]
    assert s.v.item() == pytest.approx(0.5)


def test_module_equals_functional():
    torch.manual_seed(1)
    lif = sg.nn.LIF(3, tau_mem=10e-3, tau_syn=4e-3, threshold=0.5, reset="to_value",
                    v_reset=-0.1, surrogate="atan", beta=3.0)
    xs = torch.rand(12, 2, 3)
    zs, s = lif(xs)
    zf, sf = sg.functional.lif_seq(xs, None, lif.params())
    assert torch.equal(zs, zf) and torch.equal(s.v, sf.v)
    assert lif.params().surrogate.beta == 3.0


def test_trace_matches_final_state_and_spikes():
    torch.manual_seed(2)
    lif = sg.nn.LIF(3)
    xs = torch.rand(9, 2, 3) * 2
    zs, tr = lif.trace(xs)
    z2, s = lif(xs)
    assert torch.equal(zs, z2) and torch.equal(tr.v[-1], s.v) and tr.v.shape == xs.shape


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(tau_mem=0.0), ValueError, "tau_mem must be a finite number > 0"),
    (dict(tau_mem=-5e-3), ValueError, "tau_mem"),
    (dict(tau_syn=0.0), ValueError, "tau_syn"),
    (dict(dt=0.0), ValueError, "dt must be"),
    (dict(threshold=0.0), ValueError, "threshold must be a finite number > 0"),
    (dict(threshold=-1.0), ValueError, "threshold"),
    (dict(threshold="1"), TypeError, "threshold must be a positive number"),
    (dict(reset="hard"), ValueError, "reset must be one of 'subtract', 'to_value', 'none'"),
    (dict(surrogate="nope"), ValueError, "unknown surrogate"),
    (dict(beta=-1.0), ValueError, "beta must be"),
    (dict(v_reset=float("nan")), ValueError, "v_reset"),
    (dict(backend="gpu"), ValueError, "backend must be one of"),
    (dict(tau_mem=math.inf, learn_tau=True), ValueError, "tau_mem"),
])
def test_lif_constructor_rejects_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sg.nn.LIF(4, **kwargs)


@pytest.mark.parametrize("n", [0, -3, (4, 0), "4", 2.5])
def test_bad_sizes(n):
    with pytest.raises(ValueError, match="positive int"):
        sg.nn.LI(n)


def test_forward_rejects_wrong_rank_and_features():
    lif = sg.nn.LIF(4)
    with pytest.raises(ValueError, match=r"LIF\(4\): xs must be time-major with shape \[T, B, 4\]"):
        lif(torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"feature dimensions \[5\] do not match \[4\]"):
        lif(torch.rand(3, 2, 5))
    with pytest.raises(ValueError, match="state=None"):
        lif(torch.rand(3, 2, 4), sg.functional.LIFState(torch.zeros(3, 4)))


def test_lif_on_feature_maps():
    lif = sg.nn.LIF((2, 3, 3), learn_threshold=True)
    zs, s = lif(torch.rand(4, 5, 2, 3, 3) * 3)
    assert zs.shape == (4, 5, 2, 3, 3) and s.v.shape == (5, 2, 3, 3)


# --- trainable reset, ALIF, refractoriness (issue 7) -----------------------------------------

def _grads_nonzero(module):
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("backend", ["reference", "torch", "numba"])
def test_learned_reset_target_gets_gradients_on_every_backend(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    torch.manual_seed(0)
    xs = torch.rand(30, 4, 5, dtype=torch.float64) * 1.5
    grads, outs = {}, {}
    for b in ("reference", backend):
        torch.manual_seed(1)
        with torch.random.fork_rng():
            torch.set_default_dtype(torch.float64)
            try:
                lif = sg.nn.LIF(5, tau_mem=10e-3, reset="to_value", v_reset=-0.2,
                                learn_reset=True, detach_reset=False, backend=b)
            finally:
                torch.set_default_dtype(torch.float32)
        with torch.no_grad():
            lif.reset_potential.offset.copy_(torch.linspace(-0.2, 0.3, 5))
        zs, s = lif(xs)
        (zs.sum() + s.v.sum()).backward()
        _grads_nonzero(lif)
        outs[b] = zs
        grads[b] = [p.grad.clone() for p in lif.parameters()]
    assert torch.equal(outs["reference"], outs[backend])
    for k, (a, b) in enumerate(zip(grads["reference"], grads[backend])):
        assert_close_to_reference(b, a, chain(30, 4), msg=f"gradient {k}")


def test_learn_reset_needs_to_value():
    with pytest.raises(ValueError, match="reset='to_value'"):
        sg.nn.LIF(3, learn_reset=True)
    lif = sg.nn.LIF(3, reset="to_value", v_reset=-0.5)
    assert lif.v_reset == -0.5 and not list(lif.parameters())


def test_alif_module_equals_functional_and_every_parameter_learns():
    torch.manual_seed(2)
    alif = sg.nn.ALIF(6, tau_mem=20e-3, tau_syn=5e-3, tau_adapt=0.2, beta_adapt=[0, 0, 0, 1, 1, 2],
                      t_ref=2e-3, ref_strength=0.2, tau_ref=3e-3, reset="to_value",
                      learn_tau=True, learn_threshold=True, learn_adapt=True,
                      learn_refractory=True, learn_reset=True)
    assert alif.n_ref == 2
    xs = torch.rand(40, 3, 6) * 0.6
    zs, s = alif(xs)
    zf, sf = sg.functional.alif_seq(xs, None, alif.params())
    assert torch.equal(zs, zf) and torch.equal(s.a, sf.a) and torch.equal(s.ref, sf.ref)
    assert zs.sum() > 0
    (zs.sum() + s.v.sum()).backward()
    _grads_nonzero(alif)
    # neurons that start without adaptation stay plain LIF
    assert (alif.beta_adapt()[:3] == 0).all() and (alif.beta_adapt()[3:] > 0).all()
    assert alif.beta_adapt.rho.grad[:3].abs().sum() == 0


def test_alif_backends_and_the_refractory_fallback():
    with pytest.raises(ValueError, match="ALIF has no fused path of that kind"):
        sg.nn.ALIF(3, backend="torch")
    assert sg.nn.ALIF(3).backend == "auto"
    # Recurrent reads the neuron's backend: with refractoriness auto runs the reference loop
    torch.manual_seed(3)
    net = sg.nn.Recurrent(sg.nn.ALIF(4, beta_adapt=1.0, t_ref=1e-3))
    xs = torch.rand(15, 2, 4) * 2
    ys, st = net(xs)
    assert isinstance(st.inner, sg.functional.ALIFState)
    ref = sg.functional.recurrent_seq(xs, sg.functional.RecurrentState(
        net.neuron.initial_state(xs[0]), torch.zeros(2, 4)), sg.functional.RecurrentParams(
        net.weight, sg.nn.ALIF.step, net.neuron.params()))
    assert torch.equal(ys, ref[0])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(t_ref=-1e-3), ValueError, "t_ref"),
    (dict(ref_strength=-0.1), ValueError, "ref_strength"),
    (dict(learn_refractory=True), ValueError, "ref_strength"),
    (dict(beta_adapt=[1.0, -1.0, 0.0]), ValueError, "beta_adapt"),
    (dict(tau_adapt=0.0), ValueError, "tau_adapt"),
])
def test_alif_constructor_rejects_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sg.nn.ALIF(3, **kwargs)


def test_alif_in_sequential_and_trainer(tmp_path):
    from spikegrad.train import ObjectiveOutput, Trainer
    torch.manual_seed(4)
    net = sg.nn.Sequential(sg.nn.Linear(3, 8), sg.nn.Recurrent(sg.nn.ALIF(8, beta_adapt=0.5,
                                                                          t_ref=1e-3,
                                                                          learn_adapt=True)),
                           sg.nn.Linear(8, 2), sg.nn.LI(2))
    x = torch.rand(16, 20, 3)
    y = (x[:, :, 0].mean(1) > 0.5).long()

    def objective(model, xb, yb, state):
        out, state = model(xb.transpose(0, 1) * 3, state)
        return ObjectiveOutput(sg.losses.membrane_cross_entropy(out, yb, "mean"), state,
                               {"n": len(yb)})

    before = net[1].neuron.decay_adapt.rho.detach().clone()
    trainer = Trainer(net, torch.optim.Adam(net.parameters(), 1e-2), objective, progress=False)
    trainer.fit([(x, y)], 2)
    assert not torch.equal(before, net[1].neuron.decay_adapt.rho)


@pytest.mark.parametrize("t_ref, dt, n_ref", [(0.0, 1e-3, 0), (5e-3, 1e-3, 5), (5e-3, 10e-3, 1),
                                             (15e-3, 10e-3, 2), (1e-4, 1e-3, 1)])
def test_refractory_period_in_steps(t_ref, dt, n_ref):
    assert sg.nn.ALIF(2, t_ref=t_ref, dt=dt).n_ref == n_ref


# --- initial membrane (v_init) ---------------------------------------------------------------

def _shifted_state(v_init, threshold, batch, n, dtype=torch.float64):
    return sg.functional.LIFState(torch.full((batch, n), v_init * threshold, dtype=dtype))


@pytest.mark.parametrize("cls", [sg.nn.LIF, sg.nn.IF])
def test_v_init_equals_passing_the_shifted_state(cls):
    torch.manual_seed(5)
    neuron = cls(4, threshold=0.8, v_init=0.5).double()
    plain = cls(4, threshold=0.8).double()
    xs = torch.rand(20, 3, 4, dtype=torch.float64) * 0.7
    zs, s = neuron(xs)
    zr, sr = plain(xs, _shifted_state(0.5, 0.8, 3, 4))
    assert torch.equal(zs, zr) and torch.equal(s.v, sr.v)
    zt, tr = neuron.trace(xs)
    assert torch.equal(zt, zr) and torch.equal(tr.v[-1], sr.v)
    assert torch.equal(neuron.initial_state(xs[0]).v, torch.full((3, 4), 0.4, dtype=torch.float64))
    # a state passed in is used as it is
    z2, _ = neuron(xs, plain.initial_state(xs[0]))
    assert torch.equal(z2, plain(xs)[0])


def test_v_init_shifts_the_first_spike():
    # IF, threshold 1, input 0.35: from 0 the first spike is at step 3; from 0.5 at step 2
    xs = torch.full((5, 1, 1), 0.35)
    assert sg.nn.IF(1)(xs)[0].flatten().tolist() == [0, 0, 1, 0, 0]
    zs, s = sg.nn.IF(1, v_init=0.5)(xs)
    assert zs.flatten().tolist() == [0, 1, 0, 0, 1]
    assert s.v.item() == pytest.approx(0.25, abs=1e-6)


def test_v_init_on_the_fused_and_the_unfused_path():
    torch.manual_seed(6)
    lin, lif = sg.nn.Linear(5, 4).double(), sg.nn.LIF(4, tau_mem=10e-3, v_init=0.5).double()
    xs = (torch.rand(25, 3, 5, dtype=torch.float64) < 0.4).double()
    fused = lif.forward_projected(xs, lin.weight, lin.bias, keep=1.0)
    unfused = lif(lin(xs))
    explicit = sg.nn.LIF(4, tau_mem=10e-3).double()(lin(xs), _shifted_state(0.5, 1.0, 3, 4))
    assert torch.equal(unfused[0], explicit[0]) and torch.equal(unfused[1].v, explicit[1].v)
    if fused is None:  # no fused kernel on this machine (numba missing)
        pytest.importorskip("numba")
        raise AssertionError("the fused path should apply to a plain LIF with numba")
    assert torch.equal(fused[0], unfused[0])
    torch.testing.assert_close(fused[1].v, unfused[1].v, rtol=0, atol=1e-12)
    # and through Sequential: the fused training step equals the layer-by-layer forward_all
    net = sg.nn.Sequential(lin, lif)
    zs, _ = net(xs)                  # weights require grad: the pair runs fused
    outs, _ = net.forward_all(xs)    # always one by one
    assert torch.equal(zs, outs[-1]) and zs.sum() > 0


def test_v_init_with_a_trained_threshold_follows_it():
    lif = sg.nn.LIF(3, threshold=2.0, learn_threshold=True, v_init=0.25)
    v0 = lif.initial_state(torch.zeros(2, 3)).v
    torch.testing.assert_close(v0, torch.full((2, 3), 0.5))
    v0.sum().backward()  # the start moves with the threshold it is a fraction of
    assert lif.threshold.rho.grad.abs().sum() > 0


@pytest.mark.parametrize("v_init, exc", [(float("nan"), ValueError), (math.inf, ValueError),
                                         ("0.5", TypeError), (True, TypeError)])
def test_v_init_rejects_bad_values(v_init, exc):
    with pytest.raises(exc, match="v_init"):
        sg.nn.IF(3, v_init=v_init)


def test_recurrent_refuses_a_neuron_with_v_init():
    with pytest.raises(ValueError, match="Recurrent does not apply the neuron's v_init=0.5"):
        sg.nn.Recurrent(sg.nn.LIF(4, v_init=0.5))
