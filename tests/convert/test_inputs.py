import pytest
import torch

from spikegrad.convert import repeat_input


def test_repeat_input_is_a_time_major_view():
    x = torch.rand(3, 2, 4)
    xs = repeat_input(x, 5)
    assert xs.shape == (5, 3, 2, 4)
    assert xs.data_ptr() == x.data_ptr() and xs.stride(0) == 0   # a view, no copy
    assert all(torch.equal(xs[t], x) for t in range(5))


@pytest.mark.parametrize("x, T, exc, match", [
    (torch.rand(3, 2), 0, ValueError, "T must be an int >= 1"),
    (torch.rand(3, 2), 2.0, TypeError, "T must be an int"),
    (torch.tensor(1.0), 3, ValueError, "x must be a batch"),
    (torch.ones(3, 2, dtype=torch.long), 3, TypeError, "floating-point"),
])
def test_repeat_input_rejects_bad_arguments(x, T, exc, match):
    with pytest.raises(exc, match=match):
        repeat_input(x, T)
