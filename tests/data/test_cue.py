import pytest
import torch

from spikegrad.data.cue import cue_accumulation, delayed_xor


def test_cue_layout_labels_and_rates():
    d = cue_accumulation(400, dt_ms=5.0, t_delay_ms=300.0, seed=3)
    # T = 7 * 30 + 60 + 30 = 300 steps; recall window = the last 30 steps
    assert d.x.shape == (400, 300, 40) and d.recall_start == 270
    assert torch.equal(d.y, (d.cues.sum(1) >= 4).long())
    assert set(d.x.unique().tolist()) <= {0.0, 1.0}
    left, right, recall, noise = d.x.split(10, dim=2)
    # cue k of side s occupies steps [k*30 + 10, k*30 + 30) of group s, nothing else fires there
    active = torch.zeros(400, 300, 2)
    for k in range(7):
        for s in (0, 1):
            rows = d.cues[:, k] == s
            active[rows, k * 30 + 10:k * 30 + 30, s] = 1
    assert (left.sum(2)[active[..., 0] == 0] == 0).all()
    assert (right.sum(2)[active[..., 1] == 0] == 0).all()
    assert recall[:, :270].sum() == 0 and recall[:, 270:].sum() > 0
    p = 40 * 5e-3                                       # 40 Hz at 5 ms = 0.2 per step
    cue_rate = (left.sum(2)[active[..., 0] == 1].sum() + right.sum(2)[active[..., 1] == 1].sum()
                ) / (10 * active.sum())
    assert cue_rate == pytest.approx(p, rel=0.03)
    assert noise.mean() == pytest.approx(p / 4, rel=0.05)
    # minority side drawn with p_group = 0.3
    minority = (d.cues != d.y[:, None]).float().mean()
    assert 0.2 < minority < 0.3                          # 0.3 conditioned on the majority winning


def test_cue_is_deterministic_in_seed_and_validates():
    a, b = cue_accumulation(5, dt_ms=10.0, seed=1), cue_accumulation(5, dt_ms=10.0, seed=1)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, cue_accumulation(5, dt_ms=10.0, seed=2).x)
    with pytest.raises(ValueError, match="n_cues must be odd"):
        cue_accumulation(5, n_cues=6)
    with pytest.raises(ValueError, match="shorter than one step"):
        cue_accumulation(5, dt_ms=200.0)
    with pytest.raises(ValueError, match="multiple of 4"):
        cue_accumulation(5, n_channels=30)
    with pytest.raises(ValueError, match="p_group"):
        cue_accumulation(5, p_group=0.7)


def test_delayed_xor_layout_and_rates():
    d = delayed_xor(1000, delay_steps=30, response_steps=4, noise_rate=0.05, seed=0)
    assert d.x.shape == (1000, 54, 20) and d.response_start == 40
    assert torch.equal(d.y, d.first ^ d.second)
    assert 0.4 < d.y.float().mean() < 0.6
    first = d.x[:, :10].mean((1, 2))
    second = d.x[:, 40:50].mean((1, 2))
    assert first[d.first == 1].mean() == pytest.approx(0.6, abs=0.01)
    assert first[d.first == 0].mean() == pytest.approx(0.2, abs=0.01)
    assert second[d.second == 1].mean() == pytest.approx(0.6, abs=0.01)
    assert d.x[:, 10:40].mean() == pytest.approx(0.05, abs=0.005)
    assert d.x[:, 50:].mean() == pytest.approx(0.05, abs=0.01)
    with pytest.raises(ValueError, match="rates"):
        delayed_xor(4, rates=(0.6, 0.2))
    with pytest.raises(ValueError, match="delay_steps"):
        delayed_xor(4, delay_steps=-1)
