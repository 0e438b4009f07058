"""The GEMM of the BLAS torch was built with, for the small per-step products of compiled
kernels.

numba's ``np.dot`` calls scipy's OpenBLAS. The recurrent backward multiplies ``[B, N] x
[N, N]`` once per time step, and there the MKL that x86 torch wheels carry in
``libtorch_cpu`` is about twice as fast (``benchmarks/breakdown.py`` shows the step it
speeds up). Its Fortran ``SGEMM`` / ``DGEMM`` (32-bit integers) are found by name in that
library; a torch without MKL, or a library without those names, gives None and the kernels
keep ``np.dot``. ``SPIKEGRAD_BLAS=numpy`` forces the fallback (e.g. to compare the two).

A kernel calls the function through :func:`matmul_into`, with MKL on one thread: its slices
run on torch's OpenMP team (inside a parallel region MKL takes one thread), and an unsplit
call holds it there with :func:`one_thread`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os

import numba
import numpy as np
import torch

__all__ = ["gemm", "one_thread", "matmul_into", "dot_into"]

_P = ctypes.c_void_p
# ?GEMM(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): every argument by
# reference
_GEMM = ctypes.CFUNCTYPE(None, *([_P] * 13))
_NAMES = {torch.float32: "SGEMM", torch.float64: "DGEMM"}


@functools.lru_cache(maxsize=None)
def _library():
    """torch's library holding MKL's GEMMs, or None."""
    if os.environ.get("SPIKEGRAD_BLAS", "").lower() == "numpy":
        return None
    if not torch.backends.mkl.is_available():
        return None
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for path in sorted(glob.glob(os.path.join(lib_dir, "*torch_cpu*"))):
        try:
            lib = ctypes.CDLL(path)
            lib.SGEMM, lib.DGEMM  # noqa: B018  (both there, or try the next)
            return lib
        except (OSError, AttributeError):
            continue
    return None


@contextlib.contextmanager
def one_thread():
    """MKL on one thread for the calling thread while the block runs (then as it was): the
    kernels' own threads split the batch, and MKL's OpenMP team inside a short per-step
    product spin-waits on a loaded machine (workload C under 4 competing torch jobs: 5.3 s a
    step against 0.39 s split, measured). Calls inside a parallel region are on one thread
    already."""
    lib = _library()
    setter = getattr(lib, "MKL_Set_Num_Threads_Local", None) if lib is not None else None
    if setter is None:
        yield
        return
    setter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
    before = setter(1)
    try:
        yield
    finally:
        setter(before)


@functools.lru_cache(maxsize=None)
def gemm(dtype: torch.dtype):
    """The Fortran GEMM of torch's MKL for ``dtype`` (float32/float64) as a ctypes function,
    or None where there is none (no MKL, another BLAS, another dtype, or
    ``SPIKEGRAD_BLAS=numpy``)."""
    lib = _library()
    if lib is None or dtype not in _NAMES:
        return None
    return _GEMM((_NAMES[dtype], lib))


@numba.njit(nogil=True, cache=True)
def matmul_into(fn, a, w, out):
    """``out[:] = a @ w`` for C-contiguous ``a [m, k]``, ``w [k, n]``, ``out [m, n]`` through
    ``fn`` (:func:`gemm`). Row-major ``a @ w`` is column-major ``w^T a^T``: the GEMM of
    ``w`` (n x k, leading dimension n) by ``a`` (k x m, leading dimension k)."""
    m, k = a.shape
    n = w.shape[1]
    # the GEMM reads and writes raw memory: a wrong shape or stride would overrun it
    if w.shape[0] != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError("matmul_into: shapes do not match: a [m, k], w [k, n], out [m, n]")
    if not (a.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("matmul_into: a, w and out must be C-contiguous")
    ints = np.empty(4, np.int32)
    ints[0], ints[1], ints[2], ints[3] = 78, n, m, k  # 78: "N", no transpose
    coef = np.zeros(2, a.dtype)
    coef[0] = 1.0
    i, c = ints.ctypes.data, coef.ctypes.data
    size = ints.itemsize
    fn(i, i, i + size, i + 2 * size, i + 3 * size, c, w.ctypes.data, i + size, a.ctypes.data,
       i + 3 * size, c + coef.itemsize, out.ctypes.data, i + size)


@numba.njit(nogil=True, cache=True)
def dot_into(fn, a, w, out):
    """:func:`matmul_into` by ``np.dot`` (``fn`` unused): the fallback."""
    out[:] = np.dot(a, w)

