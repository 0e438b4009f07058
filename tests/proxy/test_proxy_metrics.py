"""R² and calibration on hand-built numbers."""

import math

import pytest
import torch

from spikegrad.proxy import calibration, r2_score


def test_r2_on_hand_numbers():
    target = torch.tensor([1.0, 2.0, 3.0])
    assert r2_score(torch.tensor([1.0, 2.0, 2.0]), target) == 0.5   # SS_res 1, SS_tot 2
    assert r2_score(target, target) == 1.0
    assert r2_score(torch.full((3,), 2.0), target) == 0.0            # the mean predictor
    assert r2_score(torch.tensor([3.0, 2.0, 1.0]), target) == -3.0   # SS_res 8
    assert r2_score(target.double(), target) == 1.0                  # dtypes may differ


def test_calibration_on_hand_numbers():
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0])
    c = calibration(pred, 2 * pred + 1, bins=2)
    assert (c.slope, c.intercept) == (2.0, 1.0)
    assert c.bin_pred.tolist() == [0.5, 2.5] and c.bin_target.tolist() == [2.0, 6.0]
    assert c.bin_count.tolist() == [2, 2]


def test_bins_are_sorted_by_prediction_with_equal_counts():
    pred = torch.tensor([9.0, 0.0, 5.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0])
    c = calibration(pred, pred.clone(), bins=3)                     # perfectly calibrated
    assert c.bin_count.tolist() == [4, 3, 3]
    assert c.bin_pred.tolist() == [1.5, 5.0, 8.0] and torch.equal(c.bin_pred, c.bin_target)
    assert (c.slope, c.intercept) == (1.0, 0.0)
    assert calibration(pred, pred, bins=10).bin_count.tolist() == [1] * 10


def test_over_spread_predictions_have_slope_below_one():
    target = torch.linspace(-1, 1, 11)
    c = calibration(2 * target, target)     # predictions twice as wide as the truth
    assert math.isclose(c.slope, 0.5, abs_tol=1e-12) and abs(c.intercept) < 1e-12


def test_constant_predictions_have_no_calibration_line():
    c = calibration(torch.ones(4), torch.tensor([0.0, 1.0, 2.0, 3.0]), bins=2)
    assert math.isnan(c.slope) and math.isnan(c.intercept)
    assert c.bin_target.tolist() == [0.5, 2.5]


@pytest.mark.parametrize("call, name", [
    (lambda: r2_score(torch.zeros(3), torch.zeros(4)), "same shape"),
    (lambda: r2_score(torch.zeros(3, 1), torch.zeros(3, 1)), "pred"),
    (lambda: r2_score(torch.zeros(3), torch.ones(3)), "target is constant"),
    (lambda: r2_score(torch.zeros(1), torch.ones(1)), "at least 2"),
    (lambda: r2_score(torch.zeros(3), torch.tensor([0.0, 1.0, float("nan")])), "finite"),
    (lambda: r2_score(torch.zeros(3), [0.0, 1.0, 2.0]), "target"),
    (lambda: calibration(torch.zeros(3), torch.arange(3.0), bins=4), "at least 4"),
    (lambda: calibration(torch.zeros(3), torch.arange(3.0), bins=0), "bins"),
])
def test_bad_arguments_raise_value_error(call, name):
    with pytest.raises(ValueError, match=name):
        call()
