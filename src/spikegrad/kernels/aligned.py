"""64-byte aligned numpy buffers for the compiled vector kernels.

The event kernels (:mod:`spikegrad.kernels.numba_event`) load and store whole 64-byte vectors
at multiples of 64 bytes from a buffer's start: the packed weight, the packed gradient rows,
the blocked weight gradient, the projection's output rows. Where the buffer itself starts off a
64-byte boundary, every one of those accesses spans two cache lines. glibc's heap, which
serves the library's large buffers (:mod:`spikegrad.kernels.allocator`), only guarantees 16
bytes, so the offset changed from one allocation to the next, and with it the kernels' speed
(the gather forward 5-19 % and the weight gradient 18-24 % slower when misaligned;
benchmarks/README.md).
torch's CPU tensors are already 64-byte aligned; these are for the numpy scratch arrays.
"""

from __future__ import annotations

import numpy as np

ALIGN = 64  # bytes: a cache line, and one AVX-512 vector


def empty(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose first element sits on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    raw = np.empty(n * dtype.itemsize + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip:skip + n * dtype.itemsize].view(dtype).reshape(shape)


def zeros(shape, dtype) -> np.ndarray:
    """:func:`empty`, filled with zeros (by numpy: a torch fill would wake torch's OpenMP
    team, whose spinning threads then compete with the kernels' own)."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def is_aligned(a: np.ndarray) -> bool:
    return a.ctypes.data % ALIGN == 0
