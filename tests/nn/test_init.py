"""sg.nn.init: the kernel integrals, the membrane statistics the analytic init promises, the
data-driven rescaling, and the regime a Randman network starts in."""

import math

import pytest
import torch

import spikegrad as sg
from spikegrad.data.randman import make_randman, randman_raster

init = sg.nn.init


@pytest.mark.parametrize("tau_mem, tau_syn, scale_input", [
    (20.0, None, False), (20.0, 5.0, False), (10.0, 10.0, False), (20.0, 5.0, True),
    (3.0, 40.0, False)])
def test_psp_integrals_equal_the_sums_of_the_simulated_kernel(tau_mem, tau_syn, scale_input):
    li = sg.nn.LI(1, tau_mem=tau_mem, tau_syn=tau_syn, dt=1.0, scale_input=scale_input,
                  backend="reference").double()
    xs = torch.zeros(3000, 1, 1, dtype=torch.float64)
    xs[0] = 1.0
    eps = li(xs)[0].flatten()  # the membrane after one input spike of weight 1
    eb, eh = init.psp_integrals(li.decay_mem(), None if tau_syn is None else li.decay_syn(),
                                scale_input)
    torch.testing.assert_close(eb, eps.sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close(eh, (eps ** 2).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("tau_syn, rate_hz, mu_u, sigma_u, xi", [
    (None, 20.0, 0.0, None, None),     # defaults: xi = 1, sigma_u = threshold
    (5e-3, 10.0, 0.0, None, 2.0),
    (5e-3, 40.0, 0.3, 0.5, None)])
def test_free_membrane_has_the_target_mean_and_std_on_bernoulli_input(tau_syn, rate_hz, mu_u,
                                                                       sigma_u, xi):
    n, N, B, T, skip, dt = 200, 500, 12, 400, 150, 1e-3
    g = torch.Generator().manual_seed(1)
    lin = sg.nn.Linear(n, N).double()
    lif = sg.nn.LIF(N, tau_mem=20e-3, tau_syn=tau_syn, dt=dt, threshold=1.0)
    w = init.fluctuation_driven_(lin, lif, rate_hz=rate_hz, mu_u=mu_u, sigma_u=sigma_u, xi=xi,
                                 generator=g)
    target_sd = 1.0 if sigma_u is None and xi is None else (sigma_u or (1.0 - mu_u) / xi)
    assert w.sigma_u == pytest.approx(target_sd) and w.mu_u == mu_u
    p = rate_hz * dt
    xs = (torch.rand(T, B, n, generator=g, dtype=torch.float64) < p).double()
    free = sg.nn.LI(N, tau_mem=20e-3, tau_syn=tau_syn, dt=dt).double()  # LIF without firing
    with torch.no_grad():
        u = free(lin(xs))[0][skip:]  # [T - skip, B, N], past the start from rest
    mean, var = u.mean(), u.var(unbiased=False)

    # Standard errors. Weights: the draw's own spread of each neuron's mean and variance
    # (N rows of n normals). Spikes: B independent sequences, their spread measured.
    eb, eh = init.psp_integrals(lif.decay_mem(), None if tau_syn is None else lif.decay_syn())
    s2, m = w.sigma_w ** 2, w.mu_w
    quenched = n * p * p * eb ** 2 * s2       # variance of the neurons' means over neurons
    se_w_mean = math.sqrt(quenched / N)
    var_w2 = 2 * s2 * s2 + 4 * m * m * s2     # Var(w^2) for w ~ N(m, s2)
    se_w_var = math.sqrt((p * (1 - p) * eh) ** 2 * n * var_w2 / N + 2 * quenched ** 2 / N)
    se_s_mean = u.mean((0, 2)).std() / math.sqrt(B)
    se_s_var = ((u - mean) ** 2).mean((0, 2)).std() / math.sqrt(B)
    tol_mean = 5 * math.sqrt(se_w_mean ** 2 + se_s_mean ** 2)
    tol_var = 5 * math.sqrt(se_w_var ** 2 + se_s_var ** 2)
    assert abs(float(mean) - mu_u) < tol_mean
    assert abs(float(var) - target_sd ** 2) < tol_var
    # the bound is sharp enough to see the neurons' spread of means, which the
    # shot-noise-only formula of the paper leaves out
    shot_only = n * p * (1 - p) * (s2 + m * m) * eh
    assert abs(float(var) - shot_only) > tol_var


def test_fluctuation_driven_fires_in_a_fluctuation_driven_range():
    torch.manual_seed(0)
    lin, lif = sg.nn.Linear(200, 400), sg.nn.LIF(400, tau_mem=20e-3, tau_syn=5e-3)
    init.fluctuation_driven_(lin, lif, rate_hz=10.0)
    with torch.no_grad():
        zs = lif(lin((torch.rand(300, 8, 200) < 0.01).float()))[0][100:]
    rates = zs.mean((0, 1)) / 1e-3
    assert 3.0 < float(rates.mean()) < 30.0
    assert float((rates == 0).float().mean()) < 0.1 and float(rates.max()) < 100.0


def test_recurrent_weights_take_their_share_of_the_variance():
    g = torch.Generator().manual_seed(2)
    n, N, p = 300, 200, 10.0 * 1e-3
    lin = sg.nn.Linear(n, N)
    rec = sg.nn.Recurrent(sg.nn.LIF(N, tau_mem=20e-3, tau_syn=5e-3), autapses=False)
    w = init.fluctuation_driven_(lin, rec, rate_hz=10.0, mu_u=0.2, sigma_u=0.8,
                                 recurrent_share=0.25, generator=g)
    eb, eh = init.psp_integrals(rec.neuron.decay_mem(), rec.neuron.decay_syn())

    def var(k, mu, s):  # membrane variance one afferent group contributes
        return k * p * (1 - p) * (s * s + mu * mu) * eh + k * p * p * s * s * eb ** 2
    assert w.mu_w == w.mu_w_rec == pytest.approx(0.2 / (eb * (n + N - 1) * p))
    assert float(var(n, w.mu_w, w.sigma_w)) == pytest.approx(0.75 * 0.64, rel=1e-12)
    assert float(var(N - 1, w.mu_w_rec, w.sigma_w_rec)) == pytest.approx(0.25 * 0.64, rel=1e-12)
    # the drawn weights: N(mu, sigma^2) within 5 standard errors of their sample size
    off_diagonal = rec.recurrent_weight().detach()[~torch.eye(N, dtype=bool)]
    for weight, mu, s, k in ((lin.weight.detach(), w.mu_w, w.sigma_w, n * N),
                             (off_diagonal, w.mu_w_rec, w.sigma_w_rec, N * (N - 1))):
        assert abs(float(weight.mean()) - mu) < 5 * s / math.sqrt(k)
        assert abs(float(weight.std()) / s - 1) < 5 / math.sqrt(2 * k)
    assert float(rec.weight.detach().diagonal().abs().max()) == 0.0


def test_conv_fan_in_and_per_neuron_time_constants():
    conv = sg.nn.Conv2d(3, 8, 5)
    lif = sg.nn.LIF((8, 12, 12), tau_mem=10e-3)
    w = init.fluctuation_driven_(conv, lif, rate_hz=20.0,
                                 generator=torch.Generator().manual_seed(0))
    eb, eh = init.psp_integrals(lif.decay_mem())
    p, n = 0.02, 3 * 5 * 5
    assert w.sigma_w == pytest.approx(math.sqrt(1 / (n * p * ((1 - p) * eh + p * eb ** 2))))
    # trained (per-neuron) taus: one sigma_W per weight row of a Linear
    lif = sg.nn.LIF(4, tau_mem=20e-3, learn_tau=True)
    with torch.no_grad():
        lif.decay_mem.rho.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    lin = sg.nn.Linear(50, 4)
    w = init.fluctuation_driven_(lin, lif, rate_hz=20.0)
    assert w.sigma_w.shape == (4,) and bool((w.sigma_w.diff() < 0).all())  # longer tau, smaller W


def test_sequential_form_initialises_every_pair_and_the_readout():
    torch.manual_seed(0)
    net = sg.nn.Sequential(sg.nn.Linear(20, 32), sg.nn.LIF(32, tau_syn=5e-3), sg.nn.Dropout(0.1),
                           sg.nn.Linear(32, 16), sg.nn.Recurrent(sg.nn.LIF(16)),
                           sg.nn.Linear(16, 3), sg.nn.LI(3, tau_mem=50e-3))
    out = init.fluctuation_driven_(net, rate_hz=5.0, hidden_rate_hz=15.0, xi=1.5)
    assert len(out) == 3 and out[1].sigma_w_rec is not None
    assert out[0].sigma_u == pytest.approx(1 / 1.5) and out[2].sigma_u == 1.0
    c = init.fluctuation_driven_(sg.nn.Linear(32, 16), rate_hz=15.0, xi=1.5, tau_mem=20e-3,
                                 dt=1e-3, recurrent_share=0.0)
    assert out[1].sigma_w == pytest.approx(c.sigma_w * math.sqrt(0.9), rel=1e-12)
    assert all(float(net[i].bias.detach().abs().max()) == 0 for i in (0, 3, 5))


def _rates(net, xs):
    with torch.no_grad():
        outs, _ = net.forward_all(xs)
    return outs


def test_data_driven_rate_reaches_the_target_layer_by_layer():
    torch.manual_seed(3)
    net = sg.nn.Sequential(sg.nn.Linear(30, 64), sg.nn.LIF(64, tau_syn=5e-3),
                           sg.nn.Linear(64, 48), sg.nn.ALIF(48, t_ref=2e-3),
                           sg.nn.Linear(48, 5), sg.nn.LI(5))
    xs = (torch.rand(150, 16, 30) < 0.03).float()
    res = init.data_driven_(net, xs, rate_hz=12.0, readout_sigma_u=2.0, tol=0.03)
    assert [(r.layer, r.neuron, r.target) for r in res] == [
        (0, 1, "rate"), (2, 3, "rate"), (4, 5, "sigma_u")]
    outs = _rates(net, xs)
    for k in (1, 3):  # measured again through the whole net, as training will see it
        assert float(outs[k].mean()) / 1e-3 == pytest.approx(12.0, rel=0.03)
    assert float(outs[5].std(unbiased=False)) == pytest.approx(2.0, rel=1e-5)
    assert res[2].value == pytest.approx(2.0, rel=1e-5)


def test_data_driven_membrane_is_exact_in_float64():
    torch.manual_seed(4)
    net = sg.nn.Sequential(sg.nn.Linear(25, 40), sg.nn.LIF(40, tau_syn=5e-3),
                           sg.nn.Linear(40, 30), sg.nn.LIF(30)).double()
    xs = (torch.rand(120, 8, 25, dtype=torch.float64) < 0.05).double()
    init.data_driven_(net, xs, target="membrane", mu_u=0.25, sigma_u=0.6)
    with torch.no_grad():
        h = xs
        for i, (lin, lif, tau_syn) in enumerate(((net[0], net[1], 5e-3),
                                                 (net[2], net[3], None))):
            free = sg.nn.LI(lif.features, tau_mem=20e-3, tau_syn=tau_syn).double()
            u = free(lin(h))[0]
            assert float(u.mean()) == pytest.approx(0.25, abs=1e-10), i
            assert float(u.std(unbiased=False)) == pytest.approx(0.6, rel=1e-10), i
            h = lif(lin(h))[0]


def test_randman_net_saturates_or_stays_silent_by_default_and_not_after_init():
    d = make_randman(n_classes=10, n_units=20, n_steps=100, samples_per_class=10, seed=1)
    xs = randman_raster(d).transpose(0, 1)  # [T, B, 20]; each unit fires once per trial
    rate_in = float(xs.mean()) / 2e-3        # 5 Hz

    def make():
        return sg.nn.Sequential(
            sg.nn.Linear(20, 128),
            sg.nn.LIF(128, tau_mem=20e-3, tau_syn=10e-3, dt=2e-3, reset="to_value"),
            sg.nn.Linear(128, 10), sg.nn.LI(10, tau_mem=200e-3, dt=2e-3))

    torch.manual_seed(0)
    net = make()
    r = _rates(net, xs)[1].mean((0, 1)) / 2e-3
    # torch's default Linear init: the bias, integrated, silences some and saturates others
    assert float((r == 0).float().mean()) > 0.25 and float((r > 100).float().mean()) > 0.25
    init.fluctuation_driven_(net, rate_hz=rate_in)
    r = _rates(net, xs)[1].mean((0, 1)) / 2e-3
    assert 1.0 < float(r.mean()) < 50.0 and float((r > 100).float().mean()) == 0
    assert float((r == 0).float().mean()) < 0.1
    torch.manual_seed(0)
    net = make()
    init.data_driven_(net, xs, rate_hz=10.0)
    r = _rates(net, xs)[1].mean((0, 1)) / 2e-3
    assert float(r.mean()) == pytest.approx(10.0, rel=0.05) and float(r.max()) < 100.0


@pytest.mark.parametrize("kwargs, name", [
    (dict(rate_hz=-1.0), "rate_hz"),
    (dict(rate_hz=2000.0), "rate_hz"),
    (dict(rate_hz=10.0, sigma_u=1.0, xi=1.0), "sigma_u or xi"),
    (dict(rate_hz=10.0, xi=0.0), "xi"),
    (dict(rate_hz=10.0, sigma_u=float("nan")), "sigma_u"),
    (dict(rate_hz=10.0, mu_u=3.0, sigma_u=0.05), "mu_u"),
    (dict(rate_hz=10.0, mu_u=1.5), "mu_u"),
    (dict(rate_hz=10.0, tau_mem=20e-3), "tau_mem"),
    (dict(rate_hz=10.0, recurrent_share=1.0), "recurrent_share"),
])
def test_bad_arguments_raise_value_errors_that_name_them(kwargs, name):
    lin, lif = sg.nn.Linear(10, 5), sg.nn.LIF(5)
    if "tau_mem" in kwargs:  # constants and a neuron both given
        with pytest.raises(ValueError, match=name):
            init.fluctuation_driven_(lin, lif, **kwargs)
        return
    rec = sg.nn.Recurrent(lif)
    with pytest.raises(ValueError, match=name):
        init.fluctuation_driven_(lin, rec, **kwargs)


def test_bad_arguments_of_the_other_entry_points():
    lin = sg.nn.Linear(10, 5)
    with pytest.raises(ValueError, match="decay_mem"):
        init.fluctuation_driven_(lin, sg.nn.IF(5), rate_hz=10.0)  # no leak
    with pytest.raises(ValueError, match="sigma_u"):
        init.fluctuation_driven_(lin, sg.nn.LI(5), rate_hz=10.0)  # xi needs a threshold
    with pytest.raises(ValueError, match="tau_mem and dt"):
        init.fluctuation_driven_(lin, rate_hz=10.0)
    with pytest.raises(TypeError, match="Linear or Conv"):
        init.fluctuation_driven_(sg.nn.LIF(5), rate_hz=10.0)
    net = sg.nn.Sequential(sg.nn.Linear(10, 5), sg.nn.LIF(5))
    xs = torch.rand(20, 2, 10)
    for kwargs, name in ((dict(target="rates", rate_hz=1.0), "target"),
                         (dict(), "rate_hz"), (dict(rate_hz=10.0, tol=0.0), "tol"),
                         (dict(rate_hz=10.0, max_iter=0), "max_iter")):
        with pytest.raises(ValueError, match=name):
            init.data_driven_(net, xs, **kwargs)
    with pytest.raises(ValueError, match="layer 0"):  # no input: no gain reaches the rate
        init.data_driven_(net, torch.zeros(20, 2, 10), rate_hz=10.0, max_iter=8)
    norm = sg.nn.Sequential(sg.nn.Linear(10, 5), sg.nn.PerStepBatchNorm(5, n_steps=20),
                            sg.nn.LIF(5))
    with pytest.raises(ValueError, match="rescales its current"):
        init.data_driven_(norm, xs, rate_hz=10.0)
