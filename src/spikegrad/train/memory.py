"""Peak memory of a piece of work, measured from torch's allocator (CPU and GPU alike), or
from the kernel's resident-set counters in a fresh process.

CPU torch has no ``max_memory_allocated``; the profiler's memory events (every allocation
and free, with its size and time) give the same number: summed in time order, their
running maximum is the peak that the work held above what was allocated before it.

The resident set (:func:`rss_growth_mb`, :func:`run_rss_probe`) counts everything the
process touches (numpy and numba arrays, Python objects, pages the allocator keeps): the
kernel's high-water mark ``VmHWM`` is reset (``/proc/self/clear_refs``), the work runs, and
``VmHWM`` after it minus ``VmRSS`` before it is the growth (Linux). ``ru_maxrss`` is not used:
Linux keeps it across ``fork``/``exec``, so a child would report its parent's peak. The probe
runs in a fresh subprocess with glibc's mmap threshold fixed at 128 KiB: the default one rises
to the size of the largest block freed, after which a repeated step's big tensors come from
(and stay in) the heap, and the RSS of a second run would no longer show what it allocates.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Iterator

__all__ = ["allocator_peak_mb", "proc_status_mb", "rss_growth_mb", "run_rss_probe"]


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


def proc_status_mb(key: str) -> float:
    """``/proc/self/status`` entry ``key`` (e.g. ``VmRSS``, ``VmHWM``) in MiB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key} (needs Linux)")


def rss_growth_mb(fn: Callable[[], Any], repeats: int = 3) -> Dict[str, Any]:
    """Run ``fn()`` ``repeats`` times, each after resetting the peak RSS; return the median
    run's ``rss_growth_mb`` (peak during it minus RSS before it), ``rss_before_mb``,
    ``rss_peak_mb``, ``seconds``, every run's growth (``rss_growth_runs_mb``) and whether
    the reset worked (``hwm_reset``). Single readings jitter by up to ~0.7 MiB (the kernel's
    counters are batched; small allocations map and unmap pages now and then), even below
    zero, hence the median."""
    runs = []
    reset = True
    for _ in range(repeats):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        except OSError:
            reset = False
        before = proc_status_mb("VmRSS")
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        peak = proc_status_mb("VmHWM")
        runs.append((peak - before, before, peak, seconds))
    growth, before, peak, seconds = sorted(runs)[len(runs) // 2]
    return {"rss_before_mb": before, "rss_peak_mb": peak, "rss_growth_mb": growth,
            "seconds": seconds, "rss_growth_runs_mb": [r[0] for r in runs],
            "hwm_reset": reset}


def run_rss_probe(module: str, function: str, payload: Dict[str, Any],
                  timeout: float = 600.0) -> Dict[str, Any]:
    """Call ``module.function(json_payload)`` in a fresh Python subprocess (mmap threshold
    fixed, see the module docstring) and return the JSON object it prints as its last line
    (typically :func:`rss_growth_mb`'s result). RuntimeError with the child's stderr if it
    fails."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    code = f"import sys; from {module} import {function}; {function}(sys.argv[1])"
    out = subprocess.run([sys.executable, "-c", code, json.dumps(payload)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"RSS probe {module}.{function} failed ({payload}): "
                           f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
