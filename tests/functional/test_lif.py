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
