"""Folding BatchNorm into the preceding weight layer is exact in eval mode."""

import pytest
import torch
from torch import nn

from spikegrad.convert import fold_batchnorm

F64 = torch.float64


def _randomise(bn):
    """Non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 3.0)
        if bn.affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1, 1)
    return bn


CASES = [
    (lambda: nn.Sequential(nn.Linear(6, 5), _randomise(nn.BatchNorm1d(5)), nn.ReLU(),
                           nn.Linear(5, 3)), (6,)),
    (lambda: nn.Sequential(nn.Linear(6, 5, bias=False), _randomise(nn.BatchNorm1d(5, affine=False)),
                           nn.ReLU(), nn.Linear(5, 3)), (6,)),
    (lambda: nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), _randomise(nn.BatchNorm1d(4)), nn.ReLU(),
                           nn.Flatten(), nn.Linear(4 * 7, 3)), (2, 7)),
    (lambda: nn.Sequential(nn.Conv2d(2, 4, 3, bias=False, groups=2), _randomise(nn.BatchNorm2d(4)),
                           nn.ReLU(), nn.Conv2d(4, 3, 2), _randomise(nn.BatchNorm2d(3))), (2, 6, 6)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), (torch.float32, 1e-5)])
def test_folded_ann_equals_the_original_in_eval_mode(case, dtype, tol):
    torch.manual_seed(case)
    make, shape = CASES[case]
    ann = make().to(dtype).eval()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    folded = fold_batchnorm(ann)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded)
    assert len(folded) == len(ann) - sum(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                         for m in ann)
    x = torch.randn(16, *shape, dtype=dtype)
    with torch.no_grad():
        # outputs are O(1): the tolerance is a few hundred roundings of the unit roundoff
        torch.testing.assert_close(folded(x), ann(x), rtol=0, atol=tol)
    # the original is untouched, and the copy's weights are its own
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert all(p.data_ptr() != q.data_ptr() for p in folded.parameters() for q in ann.parameters())


def test_fold_adds_a_bias_and_keeps_the_dtype():
    ann = nn.Sequential(nn.Linear(3, 2, bias=False), _randomise(nn.BatchNorm1d(2))).double()
    lin = fold_batchnorm(ann)[0]
    assert lin.bias is not None and lin.bias.dtype == F64 and lin.weight.dtype == F64


@pytest.mark.parametrize("layers, exc, match", [
    ([nn.BatchNorm1d(3), nn.Linear(3, 2)], ValueError,
     r"layer 0 \(BatchNorm1d\).*follows the input"),
    ([nn.Linear(3, 3), nn.ReLU(), nn.BatchNorm1d(3)], ValueError,
     r"layer 2 \(BatchNorm1d\).*follows layer 1 \(ReLU\)"),
    ([nn.Linear(3, 3), nn.BatchNorm1d(3), nn.BatchNorm1d(3)], ValueError,
     r"layer 2 \(BatchNorm1d\)"),
    ([nn.Conv2d(1, 3, 2), nn.BatchNorm1d(3)], ValueError,
     r"layer 1 \(BatchNorm1d\).*needs BatchNorm2d\(3\)"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(3)], ValueError, r"needs BatchNorm1d\(4\)"),
    ([nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)], ValueError,
     "track_running_stats"),
])
def test_batchnorm_not_foldable_is_rejected_with_its_index(layers, exc, match):
    with pytest.raises(exc, match=match):
        fold_batchnorm(nn.Sequential(*layers))


def test_fold_needs_a_sequential():
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        fold_batchnorm(nn.Linear(3, 2))
