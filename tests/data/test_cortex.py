import math

import numpy as np
import pytest
import torch

from spikegrad.data import CortexTruth, Disruption, ReachingData, simulate_cortex
from spikegrad.data.cortex import ar1_scan, poisson_from_uniform


def expected_rates(d: ReachingData) -> torch.Tensor:
    """Rates [T, N] in Hz recomputed from the ground truth, bin by bin of each epoch."""
    tr = d.truth
    vel = d.velocity.double() / tr.velocity_std
    n_bins, lead = d.n_bins, tr.lead_bins
    rates = torch.zeros(n_bins, d.n_channels, dtype=torch.float64)
    for k in range(0, n_bins - lead):
        tune = tr.tuning_at(k, d.dt)
        proj = vel[k + lead, 0] * torch.cos(tune["preferred_rad"]) \
            + vel[k + lead, 1] * torch.sin(tune["preferred_rad"])
        base = tune["baseline_hz"]
        depth = tune["depth_hz"]
        rates[k] = (base + depth * proj).clamp(min=0)
    return rates[: n_bins - lead]


def test_shapes_split_and_truth():
    d = simulate_cortex(20.0, 12, seed=3)
    assert isinstance(d, ReachingData) and isinstance(d.truth, CortexTruth)
    assert d.counts.shape == (5000, 12) and d.counts.dtype == torch.float32
    assert d.velocity.shape == (5000, 2) and d.position.shape == (5000, 2)
    assert d.split == 3750 and d.dt == 0.004 and d.truth.lead_bins == 25
    assert d.train[0].shape == (3750, 12) and d.test[1].shape == (1250, 2)
    assert bool((d.counts >= 0).all()) and torch.equal(d.counts, d.counts.round())
    tr = d.truth
    assert bool((tr.baseline_hz >= 5).all() & (tr.baseline_hz <= 20).all())
    assert bool((tr.depth_hz >= 2).all() & (tr.depth_hz <= 6).all())
    assert bool((tr.preferred_rad >= 0).all() & (tr.preferred_rad < 2 * math.pi).all())
    # position integrates velocity: v[k] = (p[k + 1] - p[k]) / dt
    dv = (d.position[1:] - d.position[:-1]).double() / d.dt
    assert torch.allclose(dv, d.velocity[:-1].double(), atol=0.02)   # float32 positions


def test_deterministic_per_seed():
    a, b = simulate_cortex(5.0, 8, seed=7), simulate_cortex(5.0, 8, seed=7)
    assert torch.equal(a.counts, b.counts) and torch.equal(a.velocity, b.velocity)
    c = simulate_cortex(5.0, 8, seed=8)
    assert not torch.equal(a.counts, c.counts)
    state = torch.random.get_rng_state()
    simulate_cortex(1.0, 4)
    assert torch.equal(torch.random.get_rng_state(), state)   # global RNG untouched


def test_ou_velocity_statistics():
    d = simulate_cortex(300.0, 2, seed=0)
    v = d.velocity.double()
    c = v - v.mean(0)
    # 300 s / 0.3 s: ~500 effective samples per axis -> the std is within a few percent
    assert torch.allclose(v.std(0), torch.full((2,), 10.0, dtype=torch.float64), rtol=0.1)
    lag1 = (c[1:] * c[:-1]).mean(0) / (c * c).mean(0)
    assert torch.allclose(lag1, torch.full((2,), math.exp(-0.004 / 0.3), dtype=torch.float64),
                          atol=3e-3)
    lag75 = (c[75:] * c[:-75]).mean(0) / (c * c).mean(0)                      # 0.3 s: exp(-1)
    assert torch.allclose(lag75, torch.full((2,), math.exp(-1.0), dtype=torch.float64),
                          atol=0.1)


def test_ar1_scan_matches_the_loop():
    g = torch.Generator().manual_seed(0)
    drive = torch.randn(700, 3, generator=g, dtype=torch.float64)     # several blocks
    x0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x, ref = x0.clone(), []
    for k in range(700):
        x = 0.97 * x + drive[k]
        ref.append(x)
    assert torch.allclose(ar1_scan(0.97, drive, x0), torch.stack(ref), rtol=1e-12, atol=1e-12)


def test_poisson_from_uniform_inverts_the_cdf():
    lam = torch.tensor([0.0, 0.05, 0.3, 0.3, 2.0, 2.0], dtype=torch.float64)
    u = torch.tensor([0.9, 0.5, 0.74, 0.75, 0.1, 0.99], dtype=torch.float64)
    # P(X <= 0 | 0.3) = 0.7408, P(X <= 1 | 0.3) = 0.9631; P(X <= 0 | 2) = 0.1353;
    # P(X <= 5 | 2) = 0.9834, P(X <= 6 | 2) = 0.9955
    assert poisson_from_uniform(lam, u).tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 6.0]
    g = torch.Generator().manual_seed(1)
    lam = torch.full((200_000,), 0.4, dtype=torch.float64)
    k = poisson_from_uniform(lam, torch.rand(200_000, generator=g, dtype=torch.float64))
    assert abs(k.mean().item() - 0.4) < 0.01 and abs(k.var().item() - 0.4) < 0.01


def test_counts_follow_the_documented_rates():
    d = simulate_cortex(60.0, 16, seed=2,
                        disruptions=[Disruption(30.0, dropout=0.25, gain=1.5, rotation_deg=30)])
    rates = expected_rates(d)                                          # [T - lead, N]
    counts = d.counts[: rates.shape[0]].double()
    # per channel: total count vs total expected (Poisson: sd = sqrt(mean))
    z = (counts.sum(0) - rates.sum(0) * d.dt) / (rates.sum(0) * d.dt).clamp(min=1).sqrt()
    assert z.abs().max() < 5
    # and the tuning: pool (bin, channel) pairs into deciles of the documented rate; in each
    # decile the observed count matches the expected one within Poisson error
    flat_rates, flat_counts = rates.reshape(-1), counts.reshape(-1)
    order = torch.argsort(flat_rates)
    for group in order.chunk(10):
        expected = float(flat_rates[group].sum()) * d.dt
        observed = float(flat_counts[group].sum())
        assert abs(observed - expected) < 5 * math.sqrt(max(expected, 1.0)), (observed, expected)
    assert float(flat_rates[order[-1000:]].mean()) > 2 * float(flat_rates.mean())


def test_spikes_lead_movement_by_100_ms():
    d = simulate_cortex(120.0, 96, seed=0)
    tr = d.truth
    dirs = torch.stack([torch.cos(tr.preferred_rad), torch.sin(tr.preferred_rad)], 1)
    pv = (d.counts.double() - d.counts.double().mean(0)) @ (dirs * tr.depth_hz[:, None])
    v = d.velocity.double()
    corr = []
    for lag in range(0, 51):                        # counts at t vs velocity at t + lag
        a, b = pv[: len(pv) - lag], v[lag:]
        corr.append(float((a * b).sum() / (a.norm() * b.norm())))
    assert int(np.argmax(corr)) == 25


def test_disruption_leaves_the_past_unchanged():
    base = simulate_cortex(20.0, 32, seed=4)
    ev = Disruption(10.0, dropout=0.3, swap=0.25)
    d = simulate_cortex(20.0, 32, seed=4, disruptions=[ev])
    k = int(d.truth.event_bins[0])
    assert k == 2500 and d.truth.disruption_times_s == (10.0,)
    assert torch.equal(d.counts[:k], base.counts[:k])
    assert torch.equal(d.velocity, base.velocity)
    dead = ~d.truth.alive[1]
    assert int(dead.sum()) == round(0.3 * 32)
    assert bool((d.counts[k:, dead] == 0).all()) and bool((d.counts[:k, dead] > 0).any())
    moved = d.truth.channel_map[1] != torch.arange(32)
    assert int(moved.sum()) == 8                        # every swapped channel changes
    assert sorted(d.truth.channel_map[1].tolist()) == list(range(32))   # a permutation


def test_rotation_and_gain_in_the_truth():
    d = simulate_cortex(10.0, 8, seed=0, disruptions=[
        Disruption(6.0, rotation_deg=45.0), Disruption(3.0, gain=2.0)])   # unsorted input
    tr = d.truth
    assert tr.disruption_times_s == (3.0, 6.0) and tr.event_bins.tolist() == [750, 1500]
    assert tr.gain.tolist() == [1.0, 2.0, 2.0]
    assert np.allclose(tr.rotation_rad.tolist(), [0.0, 0.0, math.pi / 4])
    before, after = tr.tuning_at(100, d.dt), tr.tuning_at(1600, d.dt)
    assert torch.allclose(after["preferred_rad"] - before["preferred_rad"],
                          torch.full((8,), math.pi / 4, dtype=torch.float64))
    assert torch.allclose(after["baseline_hz"], 2 * before["baseline_hz"])


def test_drift_rotates_the_preferred_directions():
    d = simulate_cortex(240.0, 96, seed=5, drift_deg_per_min=30.0)
    tr = d.truth
    assert torch.allclose(tr.tuning_at(15000, d.dt)["preferred_rad"] - tr.preferred_rad,
                          torch.full((96,), math.radians(30.0), dtype=torch.float64))
    lead = tr.lead_bins

    def fitted_angles(lo, hi):                     # per-channel least squares on velocity
        v = d.velocity[lo + lead:hi + lead].double()
        x = torch.cat([torch.ones(len(v), 1, dtype=torch.float64), v], 1)
        w = torch.linalg.lstsq(x, d.counts[lo:hi].double()).solution       # [3, N]
        return torch.atan2(w[2], w[1])

    early, late = fitted_angles(0, 15000), fitted_angles(45000, 60000 - lead)
    diff = torch.angle(torch.exp(1j * (late - early).to(torch.complex128)).mean())
    assert abs(math.degrees(float(diff)) - 90.0) < 10.0   # 3 min apart at 30 deg/min


def test_default_simulation_has_the_issues_shape():
    # its speed (< 1 s idle) is not asserted here: timed tests fail under load
    d = simulate_cortex()
    assert d.counts.shape == (75000, 96) and d.split == 56250


@pytest.mark.parametrize("kwargs, error, match", [
    ({"duration_s": 0.0}, ValueError, r"duration_s must be a finite number > 0"),
    ({"duration_s": 0.004}, ValueError, r"simulate at least 2 bins"),
    ({"n_channels": 0}, ValueError, r"n_channels must be an int >= 1"),
    ({"dt": -1.0}, ValueError, r"dt must be a finite number > 0 \(seconds\)"),
    ({"baseline_hz": (20.0, 5.0)}, ValueError, r"baseline_hz must satisfy 0 <= low <= high"),
    ({"depth_hz": 3.0}, TypeError, r"depth_hz must be a pair \(low, high\)"),
    ({"train_fraction": 1.5}, ValueError, r"train_fraction must be a finite number >= 0 and <= 1"),
    ({"disruptions": [Disruption(400.0)]}, ValueError, r"not inside the recording"),
    ({"disruptions": [Disruption(10.0, dropout=2.0)]}, ValueError,
     r"disruptions\[0\]\.dropout must be a finite number >= 0 and <= 1"),
    ({"disruptions": [(10.0, 0.3)]}, TypeError, r"disruptions\[0\] must be a Disruption"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_cortex(**kwargs)


def test_recording_seed_keeps_the_population_and_draws_new_movements():
    base = simulate_cortex(30.0, 16, seed=2)
    other = simulate_cortex(30.0, 16, seed=2, recording_seed=7)
    for name in ("preferred_rad", "baseline_hz", "depth_hz"):
        assert torch.equal(getattr(base.truth, name), getattr(other.truth, name)), name
    v, w = base.velocity.double(), other.velocity.double()
    # independent OU draws: 30 s / 0.3 s gives ~100 independent samples per component,
    # so a correlation of 0.5 would be ~5 standard deviations away from 0
    for k in range(2):
        assert abs(torch.corrcoef(torch.stack([v[:, k], w[:, k]]))[0, 1]) < 0.5
    again = simulate_cortex(30.0, 16, seed=2, recording_seed=7)
    assert torch.equal(other.counts, again.counts) and torch.equal(other.velocity,
                                                                   again.velocity)
    with pytest.raises(ValueError, match="recording_seed must be an int >= 0"):
        simulate_cortex(1.0, 4, recording_seed=-1)
