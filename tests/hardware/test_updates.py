"""Update schemes: naive rounding (and its failure), mixed precision bookkeeping, and the
stochastic pulsed update's expectation and variance."""

import pytest
import torch

from spikegrad.hardware import (mixed_precision_pulses, naive_pulses, pulse_probabilities,
                                stochastic_moments, stochastic_pulses)

F64 = torch.float64


def test_naive_rounds_to_whole_pulses():
    dw = torch.tensor([[0.004, 0.006, -0.016, 0.025, -0.004]], dtype=F64)
    n_up, n_down = naive_pulses(dw, 0.01)
    assert n_up.tolist() == [[0, 1, 0, 2, 0]]       # 0.025 / 0.01 = 2.5 rounds to even
    assert n_down.tolist() == [[0, 0, 2, 0, 0]]
    assert n_up.dtype == torch.long


def test_mixed_precision_write_plus_residual_is_exact_per_step():
    gen = torch.Generator().manual_seed(0)
    for dw_min in (0.01, 1 / 3, 2.0 ** -6):
        chi = torch.randn(50, 40, generator=gen, dtype=F64) * 5 * dw_min
        n_up, n_down, residual = mixed_precision_pulses(chi, dw_min)
        n = (n_up - n_down).to(F64)
        assert torch.equal(n * dw_min + residual, chi)
        assert bool((residual.abs() < dw_min).all())
        assert bool((torch.sign(residual) * torch.sign(chi) >= 0).all())  # never over-writes
        assert bool(((n == 0) == (chi.abs() < dw_min)).all())


def test_mixed_precision_accumulates_what_naive_rounding_loses():
    dw_min = 2.0 ** -6                                    # dyadic: every sum below is exact
    gen = torch.Generator().manual_seed(1)
    chi = torch.zeros(8, 8, dtype=F64)
    written = torch.zeros_like(chi)
    desired = torch.zeros_like(chi)
    for _ in range(200):
        dw = torch.round(torch.randn(8, 8, generator=gen, dtype=F64) * 2 ** 5) * 2.0 ** -12
        desired += dw
        chi += dw
        n_up, n_down, chi = mixed_precision_pulses(chi, dw_min)
        written += (n_up - n_down).to(F64) * dw_min
    assert torch.equal(written + chi, desired)
    # updates of 0.4 pulses: naive writes nothing, ever; mixed precision 2 pulses per 5 steps
    small = torch.full((1, 1), 0.4 * dw_min, dtype=F64)
    assert sum(int(naive_pulses(small, dw_min)[0]) for _ in range(10)) == 0
    chi, total = torch.zeros(1, 1, dtype=F64), 0
    for _ in range(10):
        n_up, _, chi = mixed_precision_pulses(chi + small, dw_min)
        total += int(n_up)
    assert total == 4


def _factors():
    x = torch.tensor([[0.9, -0.5, 0.0], [0.3, 0.8, -1.0]], dtype=F64)     # [B, in]
    d = torch.tensor([[0.4, -1.0], [-0.7, 0.2]], dtype=F64)               # [B, out]
    return x, d


@pytest.mark.parametrize("um, blm", [(True, True), (False, False), (True, False)])
def test_stochastic_update_expectation_and_variance(um, blm):
    x, d = _factors()
    lr, dw_min, bl, draws = 0.05, 0.01, 31, 2000
    mean, var = stochastic_moments(x, d, lr, dw_min, bl=bl, update_management=um,
                                   bl_management=blm)
    # no probability is clipped (lr max|x| max|d| / dw_min <= 5 <= bl): E = -lr sum_b d x^T
    torch.testing.assert_close(mean, -lr * d.t() @ x, rtol=1e-12, atol=1e-15)
    gen = torch.Generator().manual_seed(2)
    samples = torch.stack([
        dw_min * (lambda c: (c[0] - c[1]).to(F64))(
            stochastic_pulses(x, d, lr, dw_min, bl=bl, update_management=um,
                              bl_management=blm, generator=gen))
        for _ in range(draws)])                                           # [draws, out, in]
    live = var > 0
    assert torch.equal(samples[:, ~live], torch.zeros_like(samples[:, ~live]))
    err = (samples.mean(0) - mean)[live]
    assert bool((err.abs() < 6 * (var[live] / draws).sqrt()).all())
    centred = samples - samples.mean(0)
    s2 = centred.pow(2).mean(0)[live]
    m4 = centred.pow(4).mean(0)[live]
    assert bool(((s2 - var[live]).abs() < 6 * ((m4 - s2 ** 2) / draws).sqrt()).all())


def test_bl_management_and_clipped_probabilities():
    x, d = _factors()
    p, q, length = pulse_probabilities(x, d, 0.05, 0.01, bl=31)
    assert length.tolist() == [5, 4]             # ceil(lr max|x| max|d| / dw_min): 4.5, 3.5
    assert float(p.max()) <= 1 and float(q.max()) <= 1
    # lr max|x| max|d| / dw_min = 45 > bl = 31: probabilities clip and the update shrinks
    mean, _ = stochastic_moments(x, d, 0.5, 0.01, bl=31)
    ideal = -0.5 * d.t() @ x
    assert bool((mean.abs() <= ideal.abs() + 1e-12).all())
    assert float((ideal.abs() - mean.abs()).max()) > 0.01


def test_stochastic_scheme_rejects_bad_arguments():
    x, d = _factors()
    with pytest.raises(ValueError, match="lr"):
        stochastic_pulses(x, d, -1.0, 0.01)
    with pytest.raises(ValueError, match="bl"):
        stochastic_pulses(x, d, 0.1, 0.01, bl=0)
    with pytest.raises(ValueError, match="x must be"):
        stochastic_pulses(x, d[:1], 0.1, 0.01)
    with pytest.raises(ValueError, match="dw_min"):
        naive_pulses(x, 0.0)
