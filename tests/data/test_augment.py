import torch

from spikegrad.data import random_roll


def test_each_signal_is_rolled_circularly_by_one_shift_within_the_bound():
    torch.manual_seed(0)
    x = torch.arange(40.0).reshape(4, 10) * 1.0  # distinct values: the shift is recoverable
    y = random_roll(x, max_shift=3)
    shifts = []
    for row_in, row_out in zip(x, y):
        matches = [k for k in range(-3, 4) if torch.equal(torch.roll(row_in, k), row_out)]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert all(-3 <= k <= 3 for k in shifts)
    torch.manual_seed(0)
    assert torch.equal(random_roll(x, 3), y)  # the global RNG decides


def test_zero_shift_is_the_identity():
    x = torch.randn(5, 7)
    assert torch.equal(random_roll(x, 0), x)
