"""glibc's allocator set up for training step after step (done once, at ``import spikegrad``).

A training step allocates the same large buffers every step (saved membranes, gradients,
``[T, B, N]`` temporaries). glibc serves a request above its mmap threshold (128 KiB, rising
with use to at most 32 MiB) from a fresh ``mmap`` and returns it to the system when freed, so
the next step faults the same memory in again, page by page, and the kernel zeroes every page.
With the threshold at 256 MiB and the heap trimmed only above 1 GiB of free space, the buffers
come from the heap and are reused: the effect of ``MALLOC_MMAP_THRESHOLD_=268435456
MALLOC_TRIM_THRESHOLD_=1073741824`` (what the benchmarks set for every library) or of the
jemalloc/tcmalloc that PyTorch's CPU guide recommends, without asking the user for either.

The cost: memory a step freed stays with the process (up to the trim threshold) instead of
going back to the system between steps; the peak is the same. It is a process-wide setting:
a threshold the user set in the environment stays as set (the other is still set here, see
:func:`tune_allocator`), ``SPIKEGRAD_MALLOPT=0`` skips both, and so does a platform where glibc
is not the allocator (other platforms, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

__all__ = ["tune_allocator", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 256 << 20  # bytes: larger requests still get their own mapping
TRIM_THRESHOLD = 1 << 30    # bytes of free heap top kept before it is given back

# mallopt parameter numbers from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_done: Optional[bool] = None


def tune_allocator(environ=None) -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring), once per process; a
    threshold the user set in the environment is left as it is. Returns whether this call or
    an earlier one set at least one of them; False where skipped."""
    global _done
    if _done is not None:
        return _done
    env = os.environ if environ is None else environ
    _done = False
    wanted = [(name, param, value) for name, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD)) if name not in env]
    if (env.get("SPIKEGRAD_MALLOPT", "1") == "0" or not sys.platform.startswith("linux")
            or not wanted):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl's mallopt ignores these numbers
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success. Either variable alone turns off glibc's sliding thresholds
    # and leaves the other at its default: a mmap threshold alone (a common recommendation)
    # keeps the 128 KiB trim threshold, so freed buffers at the heap's top go back to the
    # system and the next step faults them in again, as if nothing were set.
    _done = all([mallopt(param, value) == 1 for _, param, value in wanted])
    return _done
