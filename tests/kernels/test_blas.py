"""torch's MKL GEMM called from compiled kernels (spikegrad.kernels.blas), and the
recurrent backward that uses it, against np.dot and the float64 reference."""

import numpy as np
import pytest
import torch

from spikegrad.kernels import blas
from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


def _gemm_or_skip(dtype):
    fn = blas.gemm(dtype)
    if fn is None:
        pytest.skip("this torch has no MKL GEMM to call")
    return fn


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (3, 5, 7), (16, 256, 256), (7, 64, 3)])
def test_matmul_into_equals_the_product(dtype, m, k, n):
    fn = _gemm_or_skip(dtype)
    rng = np.random.default_rng(0)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    a = rng.standard_normal((m, k)).astype(np_dtype)
    w = rng.standard_normal((k, n)).astype(np_dtype)
    out = np.full((m, n), np.nan, np_dtype)
    blas.matmul_into(fn, a, w, out)
    exact = a.astype(np.float64) @ w.astype(np.float64)
    # a sum of k products, each rounded in the working precision
    eps = np.finfo(np_dtype).eps
    bound = k * eps * (np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64))
    assert np.all(np.abs(out - exact) <= bound + 1e-300)
    fallback = np.empty_like(out)
    blas.dot_into(0, a, w, fallback)
    assert np.all(np.abs(fallback - exact) <= bound + 1e-300)


def test_matmul_into_refuses_mismatched_or_strided_arrays():
    fn = _gemm_or_skip(torch.float32)
    a = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match="shapes"):
        blas.matmul_into(fn, a, np.zeros((9, 3), np.float32), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="shapes"):
        blas.matmul_into(fn, a, np.zeros((8, 3), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        blas.matmul_into(fn, np.zeros((8, 4), np.float32).T, np.zeros((8, 3), np.float32),
                         np.zeros((4, 3), np.float32))


def test_the_numpy_setting_turns_the_gemm_off(monkeypatch):
    blas.gemm.cache_clear()
    blas._library.cache_clear()
    try:
        monkeypatch.setenv("SPIKEGRAD_BLAS", "numpy")
        assert blas.gemm(torch.float32) is None
    finally:
        monkeypatch.delenv("SPIKEGRAD_BLAS")
        blas.gemm.cache_clear()
        blas._library.cache_clear()
    assert blas.gemm(torch.float16) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recurrent_gradients_are_the_same_with_either_gemm(monkeypatch, dtype):
    """The recurrent LIF's fused backward with MKL's GEMM and with np.dot: both within the
    float32/float64 rounding of the float64 reference loop's gradients."""
    _gemm_or_skip(dtype)
    import spikegrad as sg

    def grads(backend):
        torch.manual_seed(0)
        # float32 weights and inputs for both runs: the reference then sees the same numbers
        layer = sg.nn.Recurrent(sg.nn.LIF(48, backend=backend), init_gain=2.0)
        xs = torch.rand(60, 5, 48)
        layer = layer.to(torch.float64 if backend == "reference" else dtype)
        xs = xs.to(layer.weight.dtype).requires_grad_()
        ys, _ = layer(xs * 1.5)
        (ys * torch.linspace(-1, 1, 48, dtype=ys.dtype)).sum().backward()
        return ys.detach().double(), layer.weight.grad.double(), xs.grad.double()

    ref = grads("reference")
    with_mkl = grads("numba")
    blas.gemm.cache_clear()
    blas._library.cache_clear()
    monkeypatch.setenv("SPIKEGRAD_BLAS", "numpy")
    try:
        with_dot = grads("numba")
    finally:
        monkeypatch.delenv("SPIKEGRAD_BLAS")
        blas.gemm.cache_clear()
        blas._library.cache_clear()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for got in (with_mkl, with_dot):
        assert torch.equal(got[0], ref[0])  # the same spikes
        for g, r in zip(got[1:], ref[1:]):
            assert (g - r).abs().max() <= tol * r.abs().max()


def test_one_thread_sets_mkl_to_one_thread_and_restores_it():
    lib = blas._library()
    if lib is None or not hasattr(lib, "MKL_Set_Num_Threads_Local"):
        pytest.skip("this torch has no MKL to set")
    import ctypes
    setter = lib.MKL_Set_Num_Threads_Local
    setter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
    before = setter(3)
    try:
        with blas.one_thread():
            assert setter(1) == 1  # what the block set (and sets again)
        assert setter(3) == 3      # restored on leaving
    finally:
        setter(before)
