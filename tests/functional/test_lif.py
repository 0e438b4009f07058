import math

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (LIFParams, LIFState, LIParams, lif_seq, lif_step, li_seq,
                                  lowpass)


def test_continuing_from_returned_state_equals_one_long_run():
    torch.manual_seed(0)
    xs = torch.rand(20, 3, 5, dtype=torch.float64) * 0.8
    p = LIFParams(decay_mem=0.9, decay_syn=0.7, threshold=1.0)
    zs, s = lif_seq(xs, None, p)
    z1, s1 = lif_seq(xs[:8], None, p)
    z2, s2 = lif_seq(xs[8:], s1, p)
    assert torch.equal(torch.cat([z1, z2]), zs)
    assert torch.equal(s2.v, s.v) and torch.equal(s2.i, s.i)


def test_per_neuron_params_broadcast():
    xs = torch.full((6, 2, 3), 0.5, dtype=torch.float64)
    p = LIFParams(decay_mem=1.0, threshold=torch.tensor([0.4, 0.9, 10.0], dtype=torch.float64))
    zs, _ = lif_seq(xs, None, p)
    # IF with constant input 0.5: theta 0.4 fires every step; 0.9 every second; 10 never
    assert zs[:, 0, 0].tolist() == [1.0] * 6
    assert zs[:, 0, 1].tolist() == [0.0, 1.0] * 3
    assert zs[:, 0, 2].sum() == 0


def test_lowpass_is_exponential_filter():
    xs = torch.zeros(5, 1, 1, dtype=torch.float64)
    xs[0] = 1.0
    assert lowpass(xs, 0.5).flatten().tolist() == [1.0, 0.5, 0.25, 0.125, 0.0625]


def test_li_current_based_is_double_exponential():
    xs = torch.zeros(4, 1, 1, dtype=torch.float64)
    xs[0] = 1.0
    vs, _ = li_seq(xs, None, LIParams(decay_mem=0.5, decay_syn=0.25))
    # i = 1, .25, .0625, ...; v_t = .5 v + i_t
    assert vs.flatten().tolist() == pytest.approx([1.0, 0.75, 0.4375, 0.234375])


def test_rank2_input_is_time_and_batch_of_scalar_neurons():
    xs = torch.rand(5, 3)
    zs, s = lif_seq(xs)
    assert zs.shape == xs.shape and s.v.shape == (3,)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="time-major"):
        lif_seq(torch.rand(5))
    with pytest.raises(TypeError, match="floating-point"):
        lif_seq(torch.ones(5, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="state=None"):
        lif_seq(torch.rand(5, 2, 3), LIFState(torch.zeros(4, 3)))
    with pytest.raises(ValueError, match="reset must be one of"):
        lif_seq(torch.rand(5, 2, 3), None, LIFParams(reset="hard"))
    with pytest.raises(ValueError, match="backend must be one of"):
        lif_seq(torch.rand(5, 2, 3), backend="cuda-magic")
    with pytest.raises(ValueError, match="synaptic current"):
        lif_step(torch.rand(2, 3), LIFState(torch.zeros(2, 3), None), LIFParams(decay_syn=0.5))
    with pytest.raises(TypeError, match="LIFParams"):
        lif_seq(torch.rand(5, 2, 3), None, LIParams())
    with pytest.raises(TypeError, match="torch.Tensor"):
        lif_seq([[0.1]])


# --- trainable reset target v_reset + r (issue 7) -------------------------------------------


@pytest.mark.parametrize("detach", [True, False])
def test_reset_offset_gradient_matches_hand_derivation_two_steps(detach):
    # IF-like leak a = 0.5, theta = 1, reset to v_reset + r with v_reset = 0.25, r = 0.125
    surr = sg.surrogate.get("fast_sigmoid", beta=2.0)
    vr = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    r = torch.tensor([0.125], dtype=torch.float64, requires_grad=True)
    p = LIFParams(decay_mem=0.5, threshold=1.0, reset="to_value", v_reset=vr + r,
                  detach_reset=detach, surrogate=surr)
    zs, s = lif_seq(torch.tensor([1.5, 1.0], dtype=torch.float64).reshape(2, 1, 1), None, p)
    # t0: u0 = 1.5 -> z0 = 1, v0 = vr + r = 0.375
    # t1: u1 = 0.5 * 0.375 + 1 = 1.1875 -> z1 = 1, v1 = 0.375
    assert zs.flatten().tolist() == [1.0, 1.0] and s.v.item() == 0.375
    s.v.sum().backward()
    # L = v1 = u1 - z1 (u1 - vr - r) with u1 = a v0 + x1, v0 = u0 - z0 (u0 - vr - r):
    #   dv0/dr = z0 = 1;  du1/dr = a dv0/dr = 0.5
    #   detached:      dv1/dr = (1 - z1) du1/dr + z1                           = 1
    #   not detached:  ... - phi(u1 - theta) (u1 - vr - r) du1/dr,  phi = 1/(1 + 2 * 0.1875)^2
    phi1 = 1.0 / (1.0 + 2.0 * 0.1875) ** 2
    expected = 1.0 if detach else 1.0 - phi1 * (1.1875 - 0.375) * 0.5
    assert r.grad.item() == pytest.approx(expected, abs=1e-15)
    assert vr.grad.item() == pytest.approx(expected, abs=1e-15)   # v_reset enters as vr + r


def test_reset_offset_gradient_matches_finite_differences_of_smooth_relaxation(relaxed):
    torch.manual_seed(1)
    xs = (torch.rand(12, 2, 3, dtype=torch.float64) * 1.2)
    surr = sg.surrogate.get("sigmoid", beta=4.0)

    def run(vr, r, x):
        p = LIFParams(decay_mem=0.8, decay_syn=0.5, threshold=1.0, reset="to_value",
                      v_reset=vr + r, detach_reset=False, surrogate=surr)
        zs, s = lif_seq(x, None, p, backend="reference")
        return (zs * torch.linspace(0.5, 1.5, 12, dtype=torch.float64)[:, None, None]).sum() \
            + s.v.pow(2).sum()

    vr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    r = torch.tensor([0.0, -0.2, 0.3], dtype=torch.float64, requires_grad=True)
    x = xs.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(run, (vr, r, x), eps=1e-6, atol=1e-7)
    run(vr, r, x).backward()
    assert (r.grad.abs() > 1e-4).all() and vr.grad.abs() > 1e-4
