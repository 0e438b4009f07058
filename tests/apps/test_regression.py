import dataclasses
import json
import math

import pytest
import torch

from spikegrad import losses
from spikegrad import nn as snn
from spikegrad.apps import regression as app
from spikegrad.apps.config import ConfigError, apply_overrides
from spikegrad.functional import detach_state

# small and fast: 20 recurrent neurons, 120 steps
TINY = dict(hidden=20, n_inputs=30, n_steps=120, steps=3, progress=False, compare_tbptt="",
            compare_clipping=False)


def tiny(**kw) -> app.Config:
    return app.Config(**{**TINY, **kw})


def _one_step(cfg: app.Config, lr: float = 0.1):
    """Parameters after one SGD step of the app's trainer at a constant ``lr``, and the
    epoch record."""
    cfg = dataclasses.replace(cfg, optimizer="sgd", lr=lr, lr_warmup_steps=0, lr_final_frac=1.0)
    torch.manual_seed(0)
    xs, ys = app.make_task(cfg)
    model = app.build_model(cfg)
    objective = app.make_objective(cfg, xs.shape[0], float(ys.var(unbiased=False)))
    trainer = app.make_trainer(cfg, model, objective)
    record = trainer.fit([(xs, ys)], 1)[-1]
    return [p.detach().clone() for p in model.parameters()], record


# --- model -----------------------------------------------------------------------------------

def test_build_model_layers_by_role():
    cfg = tiny(n_outputs=2)
    model = app.build_model(cfg)
    assert isinstance(model, snn.Sequential) and len(model) == 4
    assert model.input_layer is model[0] and model.input_layer.weight.shape == (20, 30)
    assert model.input_layer.bias is None
    assert isinstance(model.rsnn, snn.Recurrent) and model.rsnn.weight.shape == (20, 20)
    assert isinstance(model.rsnn.neuron, snn.LIF)
    assert torch.equal(model.rsnn.recurrent_weight().diagonal(), torch.zeros(20))  # no autapses
    assert model.readout_layer.weight.shape == (2, 20)
    assert isinstance(model.readout, snn.LI)
    assert math.isclose(float(model.readout.decay_mem()), math.exp(-1 / 20), rel_tol=1e-6)
    xs, ys = app.make_task(cfg)
    out, _ = model(xs)
    assert out.shape == ys.shape == (120, 1, 2)


def test_readout_is_the_exponential_filter_of_the_weighted_spikes():
    cfg = tiny()
    model = app.build_model(cfg)
    xs, _ = app.make_task(cfg)
    with torch.no_grad():
        outs, _ = model.forward_all(xs)
        drive = torch.nn.functional.linear(outs[1], model.readout_layer.weight,
                                           model.readout_layer.bias)
        a, y, want = math.exp(-1 / 20), torch.zeros(1, 1), []
        for t in range(xs.shape[0]):  # y_t = a y_{t-1} + W z_t + b
            y = a * y + drive[t]
            want.append(y)
    torch.testing.assert_close(outs[-1], torch.stack(want))


def test_readout_time_constant_is_trainable_on_request():
    assert not list(app.build_model(tiny()).readout.parameters())  # fixed: a buffer
    model = app.build_model(tiny(learn_tau_out=True, tau_out_ms=30.0))
    assert model.readout.decay_mem.tau.detach().item() == pytest.approx(30e-3, rel=1e-5)
    xs, ys = app.make_task(tiny())
    ((model(xs)[0] - ys) ** 2).mean().backward()
    assert model.readout.decay_mem.rho.grad.abs().item() > 0


def test_linear_baseline_is_exact_for_a_linear_target_and_chance_for_noise():
    g = torch.Generator().manual_seed(0)
    xs = torch.rand(200, 4, 3, generator=g)
    ys = xs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3          # affine in the input
    cfg = tiny(tau_out_ms=1e-3)                                   # filter decay e^-1000 = 0
    assert app.linear_baseline_nmse(cfg, xs, ys, xs, ys) < 1e-5
    noise = torch.randn(200, 4, 1, generator=g)
    assert app.linear_baseline_nmse(cfg, xs, noise, xs, torch.randn(200, 4, 1, generator=g)) \
        == pytest.approx(1.0, abs=0.05)


def test_filter_task_model_sees_one_population_per_channel():
    cfg = tiny(task="filter", n_outputs=2, n_inputs=8, batch_size=3)
    xs, ys = app.make_task(cfg)
    assert xs.shape == (120, 3, 16) and ys.shape == (120, 3, 2)
    assert app.build_model(cfg).input_layer.in_features == 16
    test_xs, _ = app.make_test_task(cfg)
    assert not torch.equal(xs, test_xs)  # held-out sequences


# --- objective: losses, penalties, TBPTT -----------------------------------------------------

def test_rate_penalty_closed_form_and_sparsity_special_case():
    zs = torch.zeros(10, 1, 2)
    zs[:3, 0, 0] = 1  # neuron 0: 3 spikes in 10 ms = 300 Hz; neuron 1: silent
    # mean((300 - 100)^2, (0 - 100)^2) = (40000 + 10000) / 2
    assert float(app.rate_penalty(zs, 100.0, 1e-3)) == pytest.approx(25000.0)
    torch.testing.assert_close(app.rate_penalty(zs, 0.0, 1e-3),
                               losses.spike_count_l2(zs) / (10 * 1e-3) ** 2)


def test_objective_is_mse_plus_weighted_rate_penalty():
    cfg = tiny(sparsity_weight=1e-3, target_rate_hz=5.0)
    xs, ys = app.make_task(cfg)
    torch.manual_seed(0)
    model = app.build_model(cfg)
    var = float(ys.var(unbiased=False))
    out = app.make_objective(cfg, xs.shape[0], var)(model, xs, ys, None)
    outs, _ = model.forward_all(xs)
    mse = ((outs[-1] - ys) ** 2).mean()
    want = mse + 1e-3 * app.rate_penalty(outs[1], 5.0, 1e-3)
    torch.testing.assert_close(out.loss, want)
    assert out.metrics["nmse"] == pytest.approx(float(losses.nmse(outs[-1].detach(), ys)), rel=1e-5)
    assert out.metrics["rate_hz"] == pytest.approx(float(outs[1].detach().mean()) * 1000, rel=1e-5)


@pytest.mark.parametrize("k", [120, 200])
def test_tbptt_with_k_at_least_T_equals_full_bptt_exactly(k):
    full, rec_full = _one_step(tiny(sparsity_weight=1e-4))
    trunc, rec_trunc = _one_step(tiny(sparsity_weight=1e-4, tbptt_k=k))
    for a, b in zip(full, trunc):
        assert torch.equal(a, b)
    assert rec_full["train_loss"] == rec_trunc["train_loss"]
    assert rec_full["grad_norm_max"] == rec_trunc["grad_norm_max"]


@pytest.mark.parametrize("mode", ["whole", "chunks"])
def test_tbptt_chunks_add_up_to_the_full_loss_and_match_hand_written_tbptt(mode):
    cfg = tiny(tbptt_k=50, tbptt_mode=mode)  # chunks of 50, 50, 20 steps
    _, rec = _one_step(cfg, lr=1e-3)
    _, rec_full = _one_step(tiny(), lr=1e-3)
    # the forward pass is the same (state carried), so the summed chunk losses and the
    # chunk-share metrics equal the full-sequence values
    assert rec["train_loss"] == pytest.approx(rec_full["train_loss"], rel=1e-5)
    assert rec["train_nmse"] == pytest.approx(rec_full["train_nmse"], rel=1e-5)
    assert rec["train_rate_hz"] == pytest.approx(rec_full["train_rate_hz"], rel=1e-5)
    # gradients: hand-written TBPTT (detach between chunks) equals the trainer's, and differs
    # from full BPTT
    torch.manual_seed(0)
    xs, ys = app.make_task(cfg)
    model = app.build_model(cfg)
    state, total = None, 0.0
    for x, y in zip(xs.split(50), ys.split(50)):
        out, state = model(x, state)
        (x.shape[0] / 120 * ((out - y) ** 2).mean()).backward()
        state = detach_state(state)
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(grads.norm()) == pytest.approx(rec["grad_norm_max"], rel=1e-5)
    assert float(grads.norm()) != pytest.approx(rec_full["grad_norm_max"], rel=1e-3)


def test_lr_schedule_warms_up_linearly_then_decays_by_a_cosine_to_the_final_fraction():
    cfg = tiny(lr=0.01, steps=100, lr_warmup_steps=10, lr_final_frac=0.05)
    model = app.build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    sched = app.lr_schedule(cfg, opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs.append(opt.param_groups[0]["lr"])
    cos = lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / 100))  # noqa: E731
    assert lrs[0] == pytest.approx(0.01 / 10 * cos(0))
    assert lrs[4] == pytest.approx(0.01 * 5 / 10 * cos(4))
    assert lrs[50] == pytest.approx(0.01 * cos(50))
    assert lrs[100] == pytest.approx(0.01 * 0.05)
    assert max(lrs) <= 0.01
    # both switched off: no scheduler, the lr stays constant
    assert app.lr_schedule(tiny(lr_warmup_steps=0, lr_final_frac=1.0), opt) is None


@pytest.mark.parametrize("key,value", [("lr_warmup_steps", -1), ("lr_final_frac", 0.0),
                                       ("lr_final_frac", 1.5), ("lr_final_frac", math.nan)])
def test_lr_schedule_settings_are_checked(key, value):
    with pytest.raises(ConfigError, match=key):
        app.validate(tiny(**{key: value}))


def test_weight_decay_adds_lr_times_decay_times_weight():
    base, _ = _one_step(tiny(), lr=0.1)
    decayed, _ = _one_step(tiny(weight_decay=0.5), lr=0.1)
    torch.manual_seed(0)
    before = list(app.build_model(tiny()).parameters())
    # SGD with L2 decay: p' = p - lr (g + wd p)
    for a, b, p in zip(base, decayed, before):
        torch.testing.assert_close(b - a, -0.1 * 0.5 * p.detach(), atol=1e-6, rtol=1e-4)


def test_clipping_logs_the_pre_grad_clip_and_bounds_the_update():
    free, rec = _one_step(tiny(), lr=1.0)
    clipped, rec_c = _one_step(tiny(grad_clip=1e-3), lr=1.0)
    assert rec_c["grad_norm_max"] == pytest.approx(rec["grad_norm_max"])  # pre-clip
    assert rec["grad_norm_max"] > 1e-3
    torch.manual_seed(0)
    before = list(app.build_model(tiny()).parameters())
    step = torch.cat([(c - p.detach()).flatten() for c, p in zip(clipped, before)])
    assert float(step.norm()) == pytest.approx(1e-3, rel=1e-3)  # lr * grad_clip


def test_tbptt_chunks_peak_memory_is_below_full_bptt_and_whole_mode_is_not():
    cfg = tiny(n_steps=1000, hidden=50)
    torch.manual_seed(0)
    xs, ys = app.make_task(cfg)
    model = app.build_model(cfg)
    full = app.measure_step_memory(cfg, model, xs, ys)
    chunks = app.measure_step_memory(dataclasses.replace(cfg, tbptt_k=100, tbptt_mode="chunks"),
                                     model, xs, ys)
    whole = app.measure_step_memory(dataclasses.replace(cfg, tbptt_k=100, tbptt_mode="whole"),
                                    model, xs, ys)
    # the saved activations scale with the chunk: [T, 1, 50] float32 tensors are 0.19 MiB
    # for T = 1000, so the full step needs well over a MiB more than 100-step chunks; one pass
    # with the gradient cut keeps the whole sequence, as full BPTT does
    assert full > 0.5 and chunks < 0.5 * full, (full, chunks)
    assert whole > 0.8 * full, (full, whole)


# --- run -------------------------------------------------------------------------------------

def test_run_writes_metrics_report_and_figures(tmp_path):
    res = app.run(tiny(steps=4, compare_tbptt="0,60"), tmp_path / "r")
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for key in ("nmse", "firing_rate_hz", "wall_seconds", "peak_memory_mb"):
        assert isinstance(m[key], float) and math.isfinite(m[key]) and m[key] >= 0
    assert m == pytest.approx(res.metrics) and m["steps"] == 4
    assert len(res.history) == 4 and res.out_dir == tmp_path / "r"
    for f in ("report.md", "output.png", "rasters.png", "curves.png", "log.jsonl",
              "config.json", "tbptt_table.json"):
        assert (tmp_path / "r" / f).stat().st_size > 0
    table = json.loads((tmp_path / "r" / "tbptt_table.json").read_text())
    assert [r["tbptt_k"] for r in table] == [0, 60]
    assert table[0]["nmse"] == m["nmse"]  # the main run is reused for its own K
    # K = 60 of 120 steps: one pass keeps the sequence, the chunked loop half of it
    assert table[1]["peak_memory_other_mb"] < table[1]["peak_memory_mb"]
    assert "Full BPTT vs truncated BPTT" in (tmp_path / "r" / "report.md").read_text()


def test_run_comparisons_write_their_report_sections(tmp_path):
    res = app.run(tiny(steps=2, sparsity_weight=1e-3, compare_sparsity=True,
                       compare_clipping=True), tmp_path / "c")
    text = (res.out_dir / "report.md").read_text()
    assert "## Gradient clipping" in text and "## Sparsity / target-rate penalty" in text
    assert (res.out_dir / "clipping.png").stat().st_size > 0


def test_run_filter_task_reports_held_out_nmse(tmp_path):
    res = app.run(tiny(task="filter", batch_size=2, n_inputs=6, steps=2, eval_every=1),
                  tmp_path / "f")
    assert "test_nmse" in res.history[-1] and "train_nmse" in res.metrics


def test_resume_continues_to_the_same_weights(tmp_path):
    # a shorter run stands in for a killed one: with a constant lr (the schedule's cosine
    # depends on `steps`, which differs between the two runs here)
    cfg = tiny(steps=4, checkpoint_every=2, lr_warmup_steps=0, lr_final_frac=1.0)
    full = app.train(cfg, tmp_path / "a", measure_memory=False)
    app.train(dataclasses.replace(cfg, steps=2), tmp_path / "b", measure_memory=False)
    resumed = app.train(cfg, tmp_path / "b", resume=True, measure_memory=False)
    assert resumed.metrics["steps"] == 4
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_divergence_is_reported_not_raised():
    t = app.train(tiny(optimizer="sgd", lr=1e6, steps=5), measure_memory=True)
    assert t.diverged and t.metrics["diverged"]
    assert math.isnan(t.metrics["peak_memory_mb"]) or t.metrics["peak_memory_mb"] >= 0


@pytest.mark.parametrize("override, match", [
    ("task=speech", "task must be one of pattern, filter"),
    ("neuron=izhikevich", "neuron must be one of lif, alif"),
    ("learning=hebb", "learning must be one of bptt, eprop_symmetric"),
    ("optimizer=lbfgs", "optimizer must be one of"),
    ("surrogate=nope", "surrogate must be one of"),
    ("hidden=0", "hidden must be >= 1"),
    ("lr=0", "lr must be a finite number > 0"),
    ("tbptt_k=-5", "tbptt_k must be >= 0"),
    ("grad_clip=-1", "grad_clip must be >= 0"),
    ("input_rate_hz=5000", "input_rate_hz \\* dt_ms / 1000 must be <= 1"),
    ("horizon=3", "horizon .* applies to task=filter only"),
    ("compare_tbptt=10,x", "compare_tbptt must be a comma-separated list"),
    ("compare_sparsity=true", "compare_sparsity .* set sparsity_weight > 0"),
])
def test_bad_config_values_raise_config_error(tmp_path, override, match):
    cfg = apply_overrides(app.Config(progress=False), [override])
    with pytest.raises(ConfigError, match=match):
        app.run(cfg, tmp_path / "x")
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown config key 'hiden'"):
        apply_overrides(app.Config(), ["hiden=3"])


def test_online_learning_dispatches_to_regression_online(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(app.online, "run_online",
                        lambda cfg, out_dir, resume=False: calls.append((cfg, out_dir, resume)))
    cfg = tiny(learning="eprop_random")
    app.run(cfg, tmp_path, resume=True)
    assert calls == [(app.validate(cfg), tmp_path, True)]


def test_comparisons_across_rules_dispatch_to_regression_online_even_for_bptt(tmp_path,
                                                                             monkeypatch):
    calls = []
    monkeypatch.setattr(app.online, "run_online",
                        lambda cfg, out_dir, resume=False: calls.append(cfg.learning))
    app.run(tiny(compare="eprop_random"), tmp_path / "a")
    app.run(tiny(memory_lengths="50,100"), tmp_path / "b")
    assert calls == ["bptt", "bptt"]


# --- reproduction (slow) ---------------------------------------------------------------------

@pytest.mark.slow
def test_default_pattern_run_meets_the_nmse_floor(tmp_path):
    torch.set_num_threads(1)
    m = app.run(app.Config(progress=False), tmp_path / "d").metrics
    assert m["nmse"] <= 0.05 and m["wall_seconds"] < 300
    trunc = app.train(app.Config(progress=False, tbptt_k=100)).metrics
    assert trunc["nmse"] <= 0.10 and trunc["peak_memory_mb"] < 0.5 * m["peak_memory_mb"]


@pytest.mark.slow
def test_sparsity_penalty_pulls_the_rate_to_the_target_and_clipping_prevents_divergence():
    torch.set_num_threads(1)
    free = app.train(app.Config(progress=False), measure_memory=False).metrics
    sparse = app.train(app.Config(progress=False, sparsity_weight=1e-3, target_rate_hz=10.0),
                       measure_memory=False).metrics
    assert abs(sparse["firing_rate_hz"] - 10) < 0.5 * abs(free["firing_rate_hz"] - 10)
    assert sparse["nmse"] <= 0.10
    runs = app.compare_clipping(app.Config(progress=False))
    assert runs["unclipped"].diverged and not runs["clipped"].diverged
    assert runs["clipped"].metrics["nmse"] < 1.0


def test_alif_neurons_train_and_adapt(tmp_path):
    cfg = tiny(neuron="alif", tau_adapt_ms=50.0, beta_adapt=0.5, steps=2)
    model = app.build_model(cfg)
    assert isinstance(model.rsnn.neuron, snn.ALIF)
    res = app.run(cfg, tmp_path)
    assert math.isfinite(res.metrics["nmse"]) and res.metrics["firing_rate_hz"] > 0
    with pytest.raises(ConfigError, match="beta_adapt"):
        app.validate(tiny(neuron="alif", beta_adapt=-1.0))


def test_task_presets_fill_unset_fields_only():
    pattern = app.validate(app.Config())
    assert (pattern.n_steps, pattern.lr, pattern.steps, pattern.tau_mem_ms) == (1000, 1e-2, 500,
                                                                                20.0)
    filt = app.validate(app.Config(task="filter"))
    assert {k: getattr(filt, k) for k in app.PRESETS["filter"]} == app.PRESETS["filter"]
    mine = app.validate(app.Config(task="filter", lr=0.05, n_steps=300))
    assert (mine.lr, mine.n_steps, mine.steps) == (0.05, 300, app.PRESETS["filter"]["steps"])
    assert app.validate(mine) == mine  # idempotent
    # the CLI's --set reaches the preset fields too
    cli = app.validate(apply_overrides(app.Config(), ["task=filter", "steps=7"]))
    assert (cli.steps, cli.lr) == (7, app.PRESETS["filter"]["lr"])


@pytest.mark.parametrize("neuron", ["lif", "alif"])
def test_learn_neuron_trains_the_constants_on_the_fused_kernel(monkeypatch, neuron):
    from spikegrad.kernels import adaptive, leaky
    calls = []
    for mod, name in ((adaptive, "trained_grads"), (leaky, "constant_grads")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _r=real, **k: calls.append(1) or _r(*a, **k))
    cfg = tiny(neuron=neuron, learn_neuron=True)
    torch.manual_seed(0)
    before = {n: p.detach().clone() for n, p in app.build_model(cfg).named_parameters()}
    after, _ = _one_step(cfg, lr=0.05)
    names = list(before)
    trained = [n for n in names if "neuron." in n]
    assert len(trained) == (4 if neuron == "alif" else 2)
    for n, p in zip(names, after):
        if n in trained:
            assert not torch.equal(before[n], p), n
    assert calls  # the gradients came from the fused backward, not the reference loop


def test_learn_neuron_needs_bptt():
    with pytest.raises(ConfigError, match="learn_neuron trains"):
        app.validate(tiny(learn_neuron=True, learning="eprop_symmetric"))
