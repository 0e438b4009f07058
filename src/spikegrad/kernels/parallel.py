"""Run a compiled (GIL-free) kernel over disjoint slices of one dimension on several threads.

The recurrent numba loops of :mod:`spikegrad.kernels.numba_leaky` are independent across the
batch: each slice of rows runs the same arithmetic, so the results are bit-identical to one
thread. Threads come from one small pool (the caller runs the
first slice itself); their number follows ``torch.get_num_threads()``, so a user who limits
torch to one thread limits these kernels too.

Why a thread pool and not numba's ``parallel=True``: numba's own threading layers either
refuse calls from several Python threads at once (workqueue) or bring a second OpenMP runtime
next to torch's; the kernels are already ``nogil``, so plain threads are enough.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

import torch

# Below this much work per thread (in element-steps, ~0.3 ns each in the vectorised loops) the
# hand-off costs more than it saves: waking a pool thread and joining it took ~90 us (median on
# the 2-vCPU VM, a no-op kernel split in two) against 2 us unsplit.
MIN_WORK_PER_THREAD = 1 << 18

_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0


def _reset_after_fork() -> None:
    # a forked child (DataLoader workers) inherits the pool object but not its threads:
    # submitting to it would wait forever
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="spikegrad")
            _pool_size = n
        return _pool


def split(n: int, work: int, align: int = 1, threads: Optional[int] = None,
          min_work: Optional[int] = None) -> List[Tuple[int, int]]:
    """Disjoint ``[lo, hi)`` slices covering ``range(n)``, one per thread that gets at least
    ``min_work`` (default :data:`MIN_WORK_PER_THREAD`) of ``work`` (the total cost, in
    element-steps). Slice bounds are multiples of ``align`` (e.g. 16 floats = one cache line,
    so threads never write to the same line)."""
    threads = torch.get_num_threads() if threads is None else threads
    min_work = MIN_WORK_PER_THREAD if min_work is None else min_work
    k = max(1, min(threads, work // max(1, min_work), -(-n // max(1, align))))
    if k == 1:
        return [(0, n)]
    units = -(-n // align)
    bounds = [min(n, (units * j // k) * align) for j in range(k + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def run_split(call: Callable[[int, int], None], n: int, work: int, align: int = 1,
              min_work: Optional[int] = None) -> None:
    """``call(lo, hi)`` for each slice of :func:`split`; the calling thread runs the first.
    ``call`` must release the GIL (a ``nogil`` numba function) for the slices to overlap."""
    slices = split(n, work, align, min_work=min_work)
    if len(slices) == 1:
        call(0, n)
        return
    pool = _get_pool(len(slices) - 1)
    futures = [pool.submit(call, lo, hi) for lo, hi in slices[1:]]
    try:
        call(*slices[0])
    finally:
        for f in futures:
            f.result()
