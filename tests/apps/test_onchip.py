"""The onchip app: a tiny run end to end (and its resume), the local rule's update against a
hand computation and against spikegrad.learning.ThreeFactor, the crossbar network with ideal
devices against the float network, and config errors that name the key."""

import json

import pytest
import torch

from spikegrad.apps import onchip as app
from spikegrad.apps.config import ConfigError
from spikegrad.apps.onchip.network import build_network, initial_weights
from spikegrad.apps.onchip.rules import FloatWrites, LocalLearner, ThreeFactorNet
from spikegrad.hardware import ConstantStep
from spikegrad.learning import ThreeFactor

TINY = dict(methods="bptt,local_symmetric", arrays="fp32,mixed,pcm", epochs=1, max_train=64,
            hidden=16, drift_times="1,86400", drift_repeats=1, progress=False)


def test_tiny_run_writes_the_run_folder_and_resumes_to_the_same_numbers(tmp_path):
    res = app.run(app.Config(**TINY), tmp_path / "run")
    m = res.metrics
    for key in ("bptt_accuracy", "local_symmetric_fp32_accuracy",
                "local_symmetric_mixed4_accuracy", "local_symmetric_pcm_accuracy",
                "local_symmetric_mixed4_pulses_per_sample", "local_symmetric_pcm_writes_per_sample",
                "pcm_drift_t0_comp_accuracy", "pcm_drift_1s_nocomp_accuracy",
                "pcm_drift_1d_comp_accuracy", "pcm_drift_1d_nocomp_accuracy", "wall_seconds"):
        assert key in m, key
    assert not any(k.startswith(("bptt_ste", "local_random")) for k in m)
    assert "local_symmetric_fp32_pulses_per_sample" not in m      # no crossbar, no pulses
    assert all(0 <= v <= 1 for k, v in m.items() if k.endswith("accuracy"))
    assert m["local_symmetric_mixed4_pulses_per_sample"] > 0
    saved = json.loads((res.out_dir / "metrics.json").read_text())
    assert saved == pytest.approx(m)
    report = (res.out_dir / "report.md").read_text()
    assert "Accuracy and write cost" in report and "PCM-like array after drift" in report
    for f in ("accuracy.png", "conductances.png", "drift.png", "factors.png", "config.json"):
        assert (res.out_dir / f).stat().st_size > 0
    again = app.run(app.Config(**TINY), tmp_path / "run", resume=True).metrics
    for key, value in m.items():
        if not key.endswith("seconds"):
            assert again[key] == pytest.approx(value), key


def _tiny_net(n_steps=1):
    c = app.validate(app.Config(hidden=6, n_steps=n_steps))
    torch.manual_seed(0)
    weights = [torch.rand(6, 64) * 0.6, torch.randn(10, 6)]
    return c, build_network(c, weights, "fast_sigmoid")


def test_one_step_of_the_fp32_rule_is_minus_error_times_phi_times_trace():
    c, model = _tiny_net()
    w1, w2 = (model.layers[k].weight.detach().clone() for k in (0, 2))
    x = (torch.rand(3, 64, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    y = torch.tensor([2, 7, 2])
    net = ThreeFactorNet(c, model, "local_symmetric", torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)

    def update():
        opt.step()
        opt.zero_grad()
    LocalLearner(net, FloatWrites(net), lambda x: x[None], update_every=1)(model, x, y, update)

    def phi(v):                                   # fast_sigmoid, beta 10, threshold 1
        return 1 / (1 + 10 * (v - 1).abs()) ** 2
    u1 = x @ w1.t()                               # first step: membrane = input current
    z1 = (u1 > 1).float()
    u2 = z1 @ w2.t()
    z2 = (u2 > 1).float()
    s, onehot = c.count_scale, torch.nn.functional.one_hot(y, 10).float()
    e2 = s * (torch.softmax(s * z2 * c.n_steps, 1) - onehot) / 3
    e1 = e2 @ w2                                  # symmetric feedback
    assert z1.sum() > 0                           # the hidden layer spiked: a real test
    torch.testing.assert_close(model.layers[0].weight, w1 - 0.3 * (e1 * phi(u1)).t() @ x)
    torch.testing.assert_close(model.layers[2].weight, w2 - 0.3 * (e2 * phi(u2)).t() @ z1)


def test_the_app_rule_has_the_libraries_factors_over_steps():
    c, model = _tiny_net(n_steps=3)
    net = ThreeFactorNet(c, model, "local_random", torch.Generator().manual_seed(0))
    ref = ThreeFactor(model.layers[0], model.layers[1], trace="kernel")
    xs = (torch.rand(3, 4, 64, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 10).float()
    state, ref_state = net.init_state(4), None
    for t in range(3):
        z, state, (hidden, _) = net.step(xs[t], onehot, state, t)
        z_ref, ref_state, pre, post = ref.forward(xs[t], ref_state)
        torch.testing.assert_close(hidden.pre, pre)
        torch.testing.assert_close(hidden.post, post)
        assert torch.equal(state.v1, ref_state.neuron.v)
    # random feedback: the output error through the fixed matrix, not the readout weights
    e2 = net.output_error(state.count, onehot, 2)
    torch.testing.assert_close(hidden.error, e2 @ net.feedback.t())


@pytest.mark.parametrize("array", ["fp32", "pcm"])
@pytest.mark.parametrize("trace", ["kernel", "spikes"])
def test_the_compiled_local_step_equals_the_reference_step(array, trace):
    pytest.importorskip("numba")
    c = app.validate(app.Config(hidden=32, trace=trace))
    weights = initial_weights(c, 64, 10)
    xs = (torch.rand(c.n_steps, 8, 64, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    onehot = torch.nn.functional.one_hot(torch.arange(8) % 10, 10).float()
    runs = []
    for backend in ("numba", "reference"):
        # each run its own (identically seeded) network: a crossbar read draws noise
        model = build_network(c, weights, "fast_sigmoid", array)
        cb = app.validate(app.Config(hidden=32, trace=trace, local_backend=backend))
        net = ThreeFactorNet(cb, model, "local_symmetric", torch.Generator().manual_seed(0))
        assert net.backends == [backend, backend]
        state, steps = net.init_state(8), []
        for t in range(c.n_steps):
            z, state, factors = net.step(xs[t], onehot, state, t)
            steps.append((z, state, factors))
        runs.append(steps)
    hidden_spikes = 0.0
    for (z, s, fs), (z_r, s_r, fs_r) in zip(*runs):
        assert torch.equal(z, z_r) and torch.equal(s.count, s_r.count)
        for a, b in zip(s, s_r):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        for f, f_r in zip(fs, fs_r):
            for a, b in zip(f, f_r):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        hidden_spikes += float((fs[1].pre != 0).sum())
    assert hidden_spikes > 0                    # the hidden layer fired: both layers tested


def test_crossbars_with_ideal_devices_compute_what_the_float_network_computes():
    c = app.validate(app.Config(hidden=32))
    weights = initial_weights(c, 64, 10)
    ideal = ConstantStep(dw_min=1e-4, w_max=1.0)        # continuous states, no noise
    xbar_net = build_network(c, weights, "fast_sigmoid", "mixed", layer_devices=[ideal] * 2)
    float_net = build_network(c, weights, "fast_sigmoid", "fp32")
    xs = (torch.rand(25, 8, 64, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    with torch.no_grad():
        outs, _ = xbar_net.forward_all(xs)
        ref, _ = float_net.forward_all(xs)
    for k, (a, b) in enumerate(zip(outs, ref)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"layer {k}")
    assert ref[1].sum() > 0


@pytest.mark.parametrize("key, value", [
    ("dataset", "mnist"), ("methods", "bptt,backprop"), ("methods", ""),
    ("arrays", "fp32,fp32"), ("epochs", 0), ("hidden", 0), ("bits", 1), ("lr_local", -1.0),
    ("lr_bptt", 0.0), ("w_max", 0.0), ("drift_times", "0,3600"), ("drift_times", "1h"),
    ("local_surrogate", "atan"), ("trace", "filtered"), ("update_every", 0),
    ("encoder", "latency"), ("pcm_dw_min_std", -0.1), ("max_train", -5),
    ("local_backend", "cuda")])
def test_bad_config_values_raise_config_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=key):
        app.validate(app.Config(**{key: value}))


def test_the_runs_of_a_config_are_named_after_the_metric_keys():
    c = app.validate(app.Config(methods="bptt_ste,local_random", arrays="naive,pcm", bits=6))
    assert [name for name, _, _ in app.runs(c)] == [
        "bptt_ste", "local_random_naive6", "local_random_pcm"]
