import math

import pytest
import torch

from spikegrad.decoders import Score, correlation, r2_score


def test_r2_per_dimension_by_hand():
    target = torch.tensor([[1.0, 0.0], [2.0, 2.0], [4.0, 4.0], [5.0, 2.0]])
    pred = torch.tensor([[1.5, 0.0], [2.0, 1.0], [3.0, 4.0], [5.0, 3.0]])
    score = r2_score(pred, target)
    assert isinstance(score, Score)
    # x: residual 0.25 + 0 + 1 + 0 = 1.25, total (mean 3) 4 + 1 + 1 + 4 = 10 -> 0.875
    # y: residual 0 + 1 + 0 + 1 = 2, total (mean 2) 4 + 0 + 4 + 0 = 8 -> 0.75
    assert torch.allclose(score.per_dim, torch.tensor([0.875, 0.75], dtype=torch.float64))
    assert score.mean == pytest.approx(0.8125)
    assert r2_score(target.mean(0).expand(4, 2), target).mean == pytest.approx(0.0)
    assert r2_score(pred[:, 0], target[:, 0]).per_dim.shape == (1,)


def test_correlation_by_hand():
    target = torch.tensor([[1.0, 0.0], [2.0, 2.0], [4.0, 4.0], [5.0, 2.0]])
    pred = torch.stack([3 * target[:, 0] - 7, -target[:, 1]], 1)
    score = correlation(pred, target)
    assert torch.allclose(score.per_dim, torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert score.mean == pytest.approx(0.0)
    # centred (-1, 1, 0) . (-1, 0, 1) = 1 over sqrt(2) sqrt(2): 0.5
    assert correlation(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])).mean \
        == pytest.approx(0.5)


def test_constant_dimension_scores_nan():
    target = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
    assert math.isnan(float(r2_score(target, target).per_dim[0]))
    assert float(r2_score(target, target).per_dim[1]) == 1.0
    assert math.isnan(float(correlation(target, target).per_dim[0]))


@pytest.mark.parametrize("pred, target, error, match", [
    (torch.zeros(5, 2), torch.zeros(5, 3), ValueError, r"r2_score: pred and target must have"),
    (torch.zeros(1, 2), torch.zeros(1, 2), ValueError, r"at least 2 time steps"),
    (torch.zeros(5, 2, 1), torch.zeros(5, 2, 1), ValueError, r"\[T, D\] or \[T\]"),
    ([1.0, 2.0], torch.zeros(2), TypeError, r"pred must be a torch.Tensor"),
    (torch.tensor([0.0, float("nan")]), torch.zeros(2), ValueError, r"must be finite"),
])
def test_errors(pred, target, error, match):
    with pytest.raises(error, match=match):
        r2_score(pred, target)
