"""Peak memory of a piece of work, measured from torch's allocator (CPU and GPU alike).

CPU torch has no ``max_memory_allocated``; the profiler's memory events (every allocation
and free, with its size and time) give the same number: summed in time order, their
running maximum is the peak that the work held above what was allocated before it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator

__all__ = ["allocator_peak_mb"]


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence what C++ writes to fd 2 (the profiler's start/stop log lines), nothing else."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. some notebooks): leave it alone
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def allocator_peak_mb(fn: Callable[[], Any]) -> float:
    """Run ``fn()`` under ``torch.profiler`` and return the peak MiB that torch's allocator
    held during it above the level at its start.

    Counts every tensor torch allocates (activations saved for backward, gradients, optimizer
    state, temporaries); not memory allocated outside torch (numba scratch arrays, Python
    objects). Returns NaN if this torch's profiler exposes no memory events. Only the
    profiler's start and stop are silenced: warnings and errors of ``fn`` still show.
    """
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_silenced():
        prof.__enter__()
    try:
        fn()
    finally:
        with _native_stderr_silenced():
            prof.__exit__(None, None, None)
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        deltas = sorted((e.start_ns(), e.nbytes()) for e in events)
    except AttributeError:  # pragma: no cover - depends on the torch version
        return float("nan")
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20
