"""64-byte aligned scratch buffers, and the event kernels' buffers that use them."""

import numpy as np
import pytest
import torch

from spikegrad.kernels import aligned, numba_event


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 3, 17), (0,)])
def test_empty_and_zeros_are_aligned_contiguous(shape, dtype):
    # many allocations: glibc's heap hands out 16-byte steps, so some would land off 64
    for _ in range(8):
        a = aligned.empty(shape, dtype)
        z = aligned.zeros(shape, dtype)
        for arr in (a, z):
            assert arr.shape == shape and arr.dtype == dtype
            assert arr.flags.c_contiguous and arr.flags.writeable
            assert aligned.is_aligned(arr) or arr.size == 0  # no element to place
        assert not z.any()


def test_buffers_do_not_overlap():
    a, b = aligned.empty(100, np.float32), aligned.empty(100, np.float32)
    a.fill(1.0)
    b.fill(2.0)
    assert (a == 1.0).all() and (b == 2.0).all()


def test_event_kernel_buffers_are_aligned():
    torch.manual_seed(0)
    w = torch.randn(40, 33)          # 40 outputs: a partial last block of 16
    x = (torch.rand(20, 33) < 0.3).float()
    rp, cl, _ = numba_event.active_csr(x)
    assert aligned.is_aligned(numba_event.pack_weight(w))
    assert aligned.is_aligned(numba_event.blocked_zeros(40, 33, torch.float32))
    y = numba_event.forward(rp, cl, w)
    assert aligned.is_aligned(y.numpy())
    torch.testing.assert_close(y, x @ w.t(), rtol=0, atol=1e-5)
