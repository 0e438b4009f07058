"""Run a compiled (GIL-free) kernel over disjoint slices of one dimension on several threads.

The numba loops are independent across one dimension (batch rows when recurrent, runs of
neurons otherwise): each slice runs the same arithmetic, so the results are bit-identical to
one thread. The number of slices follows ``torch.get_num_threads()``, so a user who limits
torch to one thread limits these kernels too.

Where the slices run: on torch's own OpenMP team, through ``GOMP_parallel`` of the OpenMP
runtime torch loaded (a ctypes callback per thread, which calls the ``nogil`` kernel). A
separate pool of ours ran next to torch's OpenMP workers, which after every parallel torch op
spin for milliseconds before they sleep: on 2 cores our second thread then shared a core with
a spinning worker, and waking it cost ~90 us. On torch's team the workers are the ones
spinning, so they start at once: workload B's training step 15 -> 11.5 ms, A512 23.5 -> 20.5
ms (in-process medians, alternating runs). Without an OpenMP runtime that exports
``GOMP_parallel`` (GNU's, or LLVM's and Intel's, which export it too), and in a forked child
(OpenMP teams do not survive ``fork``), a small thread pool of ours runs them instead.
The kernels' own calls go through :func:`run_kernel`, which hands the team a compiled
trampoline instead of a Python callback (:mod:`spikegrad.kernels.native`: no GIL, ~12 us per
region instead of ~65 us); :func:`run_split` remains for Python callables.

Under a competing load a split can cost more than it saves: the team waits for its slowest
thread, and a thread that another process holds off its core stalls the region. So every split
region measures itself: the CPU time its threads spent in the slices over ``threads x wall``
(its efficiency). Below 1/threads the same work on one uninterrupted thread would have finished
sooner; after two such regions in a row, kernels run unsplit for a back-off, then try a split
again. The back-off starts at :data:`RETRY_MIN_S` and doubles, up to :data:`RETRY_S`, while
retries keep failing; every region that pays halves it again. A lasting load thus costs a
failed retry about once a second, and a short disturbance costs little: a blip that slows two
regions of one step (a host's hiccup, a numba compilation inside a slice, where the other
thread waits on the compiler's lock) kept the kernels on one thread for a whole second (50-100
of workload B's training steps) when the back-off was fixed, and now costs 50 ms. Unsplit runs
give the same results (see above), and this judges what the process actually gets, whatever
takes the cores (other processes, a nice level, a container).
The bar assumes the one thread would have a core to itself: under an even load long regions
still gain from splitting (each thread gets its share), and there the rule can cost time.

Why not numba's ``parallel=True``: its threading layers either refuse calls from several
Python threads at once (workqueue) or bring a second OpenMP runtime next to torch's.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple

import torch

from . import native

# Below this much work per thread (in element-steps, ~0.3 ns each in the vectorised loops) the
# hand-off costs more than it saves: a no-op kernel split in two took ~70 us on torch's OpenMP
# team (the callbacks take turns at the GIL) and ~90 us on our pool (median on the 2-vCPU VM),
# against 2 us unsplit. The GIL-free trampolines (native.py) take ~12 us, but 2^16 or 2^15 here
# changed no benchmark step beyond noise (benchmarks/README.md), so the bar stays.
MIN_WORK_PER_THREAD = 1 << 18

# How long kernels stay unsplit after splits stopped paying, before they try again (s): the
# first back-off (a few steps of a small workload), and the longest, reached after five failed
# retries in a row (long next to a region, ~0.1-100 ms; short next to a change in the load).
RETRY_MIN_S = 0.05
RETRY_S = 1.0

_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0


_OMP_NAMES = re.compile(r"\S*/lib(?:gomp|omp|iomp5)[^/\s]*\.so[.\d]*")
_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _OpenMP:
    """The OpenMP runtime torch loaded (found in ``/proc/self/maps``), or None."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib  # the trampolines' runtime (native.py) takes its entry points too
        self.parallel = lib.GOMP_parallel
        self.parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self.parallel.restype = None
        self.thread_num, self.num_threads = lib.omp_get_thread_num, lib.omp_get_num_threads
        self.thread_num.restype = self.num_threads.restype = ctypes.c_int

    @staticmethod
    def find() -> Optional["_OpenMP"]:
        if not torch._C.has_openmp:
            return None
        try:
            with open("/proc/self/maps") as f:
                paths = sorted(set(_OMP_NAMES.findall(f.read())))
        except OSError:
            return None
        for path in paths:
            try:
                lib = ctypes.CDLL(path)  # already loaded by torch: the same handle
                if hasattr(lib, "GOMP_parallel") and hasattr(lib, "omp_get_thread_num"):
                    return _OpenMP(lib)
            except OSError:
                continue
        return None

    def run(self, call: Callable[[int, int], None], slices: List[Tuple[int, int]]) -> None:
        """``call`` on every slice, on a team of up to ``len(slices)`` threads: thread ``j``
        of ``k`` takes slices ``j, j + k, ...`` (a team may be smaller than asked, e.g.
        nested inside another parallel region)."""
        errors: List[BaseException] = []

        def body(_):
            j, k = self.thread_num(), self.num_threads()
            try:
                for lo, hi in slices[j::k]:
                    call(lo, hi)
            except BaseException as e:  # ctypes would print and drop it
                errors.append(e)
        callback = _CALLBACK(body)
        self.parallel(callback, None, len(slices), 0)
        if errors:
            raise errors[0]


_omp: Optional[_OpenMP] = None
_omp_found = False


def backend() -> str:
    """``"openmp"`` (torch's team) or ``"threads"`` (our pool): where split slices run."""
    return "openmp" if _openmp() is not None else "threads"


def _openmp() -> Optional[_OpenMP]:
    global _omp, _omp_found
    if not _omp_found:
        _omp, _omp_found = _OpenMP.find(), True
        if _omp is not None and os.environ.get("SPIKEGRAD_NATIVE_THREADS", "1") != "0":
            native.set_runtime(_omp.lib)
    return _omp


def _reset_after_fork() -> None:
    # a forked child (DataLoader workers) inherits the pool object but not its threads:
    # submitting to it would wait forever; OpenMP's team does not survive a fork either
    global _pool, _pool_size, _lock, _omp, _omp_found
    _pool, _pool_size, _lock = None, 0, threading.Lock()
    _omp, _omp_found = None, True
    native.set_runtime(None)


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


class _Payoff:
    """Whether splitting pays, from the efficiency of recent split regions (see the module
    docstring). ``record`` is called once per split region with the CPU seconds its threads
    spent in the slices, how many threads ran them, and its wall seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.unsplit_until = 0.0
        self.low = 0
        self.backoff = RETRY_MIN_S

    def pays(self) -> bool:
        return self.clock() >= self.unsplit_until

    def record(self, cpu_s: float, threads: int, wall_s: float) -> None:
        if threads < 2 or wall_s <= 0:
            return
        if cpu_s / (threads * wall_s) < 1.0 / threads:
            self.low += 1
        else:
            self.low = 0
            self.backoff = max(RETRY_MIN_S, self.backoff / 2)
        if self.low >= 2:
            self.unsplit_until = self.clock() + self.backoff
            self.backoff = min(RETRY_S, 2 * self.backoff)
            self.low = 1  # a retry that does not pay either goes straight back to one slice


_payoff = _Payoff()


def splitting_pays() -> bool:
    """False while recent split regions ran slower than one thread would have (a competing
    load); then kernels run on one slice. See the module docstring."""
    return _payoff.pays()


def split(n: int, work: int, align: int = 1, threads: Optional[int] = None,
          min_work: Optional[int] = None) -> List[Tuple[int, int]]:
    """Disjoint ``[lo, hi)`` slices covering ``range(n)``, one per thread that gets at least
    ``min_work`` (default :data:`MIN_WORK_PER_THREAD`) of ``work`` (the total cost, in
    element-steps). Slice bounds are multiples of ``align`` (e.g. 16 floats = one cache line,
    so threads never write to the same line)."""
    if threads is None:
        threads = torch.get_num_threads()
        if threads > 1 and not splitting_pays():
            threads = 1
    min_work = MIN_WORK_PER_THREAD if min_work is None else min_work
    k = max(1, min(threads, work // max(1, min_work), -(-n // max(1, align))))
    if k == 1:
        return [(0, n)]
    units = -(-n // align)
    bounds = [min(n, (units * j // k) * align) for j in range(k + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def run_split(call: Callable[[int, int], None], n: int, work: int, align: int = 1,
              min_work: Optional[int] = None) -> None:
    """``call(lo, hi)`` for each slice of :func:`split` (the calling thread takes part).
    ``call`` must release the GIL (a ``nogil`` numba function) for the slices to overlap."""
    run_slices(call, split(n, work, align, min_work=min_work))


def run_kernel(kernel, before: tuple, n: int, work: int, align: int = 1, after: tuple = (),
               min_work: Optional[int] = None) -> None:
    """``kernel(*before, lo, hi, *after)`` for each slice of :func:`split` (``kernel``: a
    ``nogil`` numba function). On torch's OpenMP team the slices run GIL-free
    (:mod:`spikegrad.kernels.native`) when the arguments allow it (C-contiguous arrays, int,
    bool and float scalars), else as :func:`run_split` runs them."""
    run_kernel_slices(kernel, before, split(n, work, align, min_work=min_work), after)


def run_kernel_slices(kernel, before: tuple, slices: List[Tuple[int, int]],
                      after: tuple = ()) -> None:
    """:func:`run_kernel` over the given slices."""
    if len(slices) == 1:
        kernel(*before, *slices[0], *after)
        return
    if _openmp() is not None:
        done = native.launch(kernel, before, slices, after)
        if done is not None:
            _payoff.record(*done)
            return
    run_slices(lambda lo, hi: kernel(*before, lo, hi, *after), slices)


def run_slices(call: Callable[[int, int], None], slices: List[Tuple[int, int]]) -> None:
    """``call(lo, hi)`` for each of the given slices (e.g. from :func:`split`), as
    :func:`run_split` runs them: for a caller that needs the slices themselves."""
    if len(slices) == 1:
        call(*slices[0])
        return
    cpu: dict = {}  # thread ident -> CPU seconds in slices (each thread writes its own key)

    def timed(lo: int, hi: int) -> None:
        c0 = time.thread_time()
        call(lo, hi)
        key = threading.get_ident()
        cpu[key] = cpu.get(key, 0.0) + time.thread_time() - c0
    t0 = time.perf_counter()
    omp = _openmp()
    if omp is not None:
        omp.run(timed, slices)
    else:
        pool = _get_pool(len(slices) - 1)
        futures = [pool.submit(timed, lo, hi) for lo, hi in slices[1:]]
        try:
            timed(*slices[0])
        finally:
            for f in futures:
                f.result()
    _payoff.record(sum(cpu.values()), len(cpu), time.perf_counter() - t0)
