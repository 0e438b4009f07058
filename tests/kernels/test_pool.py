"""The compiled window pooling equals torch's avg_pool2d bit for bit, forward and backward."""

import pytest
import torch

import spikegrad as sg
from spikegrad.kernels import parallel, pool
from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k,hw", [(2, (8, 8)), (2, (7, 9)), (3, (10, 11)), (1, (3, 4))])
@pytest.mark.parametrize("divisor", [None, 1.0])
@pytest.mark.parametrize("threads", [1, 3])
def test_equals_torch_bit_for_bit(monkeypatch, dtype, k, hw, divisor, threads):
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    g = torch.Generator().manual_seed(0)
    # spikes times random values: sums of unequal floats, so the summation order matters
    x = ((torch.rand(6, 5, *hw, generator=g) < 0.3) * torch.rand(6, 5, *hw, generator=g))
    x = x.to(dtype).requires_grad_()
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = pool.window_pool2d(x, k, None, 0, False, divisor)
        gy = torch.randn(y.shape, generator=g).to(dtype)
        (gx,) = torch.autograd.grad(y, x, gy)
    finally:
        torch.set_num_threads(old)
    yr = torch.nn.functional.avg_pool2d(x, k, divisor_override=None if divisor is None
                                        else int(divisor))
    (gr,) = torch.autograd.grad(yr, x, gy)
    assert torch.equal(y, yr)
    assert torch.equal(gx, gr)  # rows / columns past the last window get 0, as in torch


@pytest.mark.parametrize("kwargs", [dict(stride=1), dict(padding=1), dict(ceil_mode=True)])
def test_other_windows_run_torch(kwargs):
    x = torch.rand(2, 3, 6, 6)
    a = dict(kernel_size=2, stride=None, padding=0, ceil_mode=False, divisor=None)
    a.update(kwargs)
    assert pool.window_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                              a["divisor"]) is None
    assert pool.window_pool2d(x.half(), 2, None, 0, False, None) is None
    assert pool.window_pool2d(x.transpose(2, 3), 2, None, 0, False, None) is None
    layer = sg.nn.AvgPool2d(2, **{k: v for k, v in kwargs.items()})
    xs = torch.rand(4, 2, 3, 6, 6)
    ref = torch.nn.functional.avg_pool2d(xs.flatten(0, 1), 2, **kwargs).unflatten(0, (4, 2))
    assert torch.equal(layer(xs), ref)


def test_modules_take_the_compiled_path(monkeypatch):
    calls = []
    real = pool._WindowPool.apply
    monkeypatch.setattr(pool._WindowPool, "apply", lambda *a: calls.append(1) or real(*a))
    xs = (torch.rand(5, 2, 3, 8, 8) < 0.2).float()
    avg, total = sg.nn.AvgPool2d(2)(xs), sg.nn.SumPool2d(2)(xs)
    assert len(calls) == 2
    assert torch.equal(total, avg * 4)  # spike counts of each window
