"""GIL-free slices (kernels/native.py): the same calls as from Python, on torch's team."""

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikegrad.kernels import native, parallel
from spikegrad.kernels.registry import numba_available

pytestmark = [
    pytest.mark.skipif(not numba_available(), reason="numba not installed"),
    pytest.mark.skipif(not torch._C.has_openmp or not sys.platform.startswith("linux"),
                       reason="torch without OpenMP, or no /proc/self/maps"),
]

if numba_available():
    import numba

    @numba.njit(nogil=True)
    def _fill(out, tag, scale, flag, lo, hi, offset):
        """Every slice writes its rows: ``lo * scale + tag + offset`` in ``out``'s type,
        ``flag`` adds 0.5 (the scalar types reach the kernel unchanged)."""
        for r in range(lo, hi):
            for c in range(out.shape[1]):
                out[r, c] = out.dtype.type(r) * scale + tag + offset + (0.5 if flag else 0.0)

    @numba.njit(nogil=True)
    def _count(seen, lo, hi, step):
        for r in range(lo, hi):
            seen[r] += step

    @numba.njit(nogil=True)
    def _fail_above(x, lo, hi, limit):
        for r in range(lo, hi):
            if r >= limit:
                raise ValueError("slice out of range")
            x[r] = 1.0


@pytest.fixture
def threads():
    parallel._openmp()
    if native._runtime is None:
        pytest.skip("no native launches here (no OpenMP runtime, or switched off)")
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(old)


def _slices(n):
    return parallel.split(n, 10**9, threads=3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_native_launch_equals_the_same_kernel_called_from_python(threads, dtype):
    n = 11
    scale = dtype(1.1)  # not exact in float32: a float64 scalar would round differently
    args = (np.int32(3), scale, True)
    native_out = np.zeros((n, 4), dtype)
    done = native.launch(_fill, (native_out, *args), _slices(n), (np.int64(7),))
    assert done is not None, "the arguments should travel natively"
    cpu, used, wall = done
    assert used >= 1 and cpu >= 0 and wall > 0
    python_out = np.zeros((n, 4), dtype)
    for lo, hi in _slices(n):
        _fill(python_out, *args, lo, hi, np.int64(7))
    assert np.array_equal(native_out, python_out)
    assert native_out[10, 0] == dtype(10) * scale + 3 + 7 + 0.5


def test_every_slice_runs_once(threads):
    seen = np.zeros(10, np.int64)
    done = native.launch(_count, (seen,), [(0, 3), (3, 6), (6, 9), (9, 10)], (1,))
    assert done is not None
    assert (seen == 1).all()
    assert 1 <= done[1] <= 4  # threads that ran slices (the team may be smaller than asked)


def test_arguments_that_cannot_travel_fall_back_to_the_python_path(threads):
    base = np.zeros((6, 8))
    strided = base[:, ::2]  # not C-contiguous
    assert native.launch(_fill, (strided, np.int32(1), 1.0, False), _slices(6),
                         (np.int64(0),)) is None
    assert not strided.any()  # nothing ran
    parallel.run_kernel_slices(_fill, (strided, np.int32(1), 1.0, False), _slices(6),
                               (np.int64(0),))
    assert strided[5, 0] == 5 * 1.0 + 1 and not base[:, 1::2].any()


def test_an_exception_in_a_slice_is_raised_after_the_region(threads):
    x = np.zeros(9)
    with pytest.raises(RuntimeError, match="raised an exception in a thread slice"):
        native.launch(_fail_above, (x,), _slices(9), (np.int64(6),))
    assert (x[:6] == 1).all()  # the other slices ran


def test_split_regions_record_their_efficiency(threads, monkeypatch):
    seen = []
    monkeypatch.setattr(parallel, "_payoff", type("P", (), {
        "pays": lambda self: True,
        "record": lambda self, cpu, threads, wall: seen.append((cpu, threads, wall))})())
    out = np.zeros((30, 4))
    parallel.run_kernel(_fill, (out, np.int32(0), 1.0, False), 30, 10**9,
                        after=(np.int64(0),))
    (cpu, used, wall), = seen
    assert used >= 1 and wall > 0 and cpu >= 0
    assert out[29, 0] == 29.0


def _launch_in_child(queue):
    out = np.zeros((4, 2))
    queue.put((native._runtime is None,
               native.launch(_fill, (out, np.int32(0), 1.0, False), [(0, 2), (2, 4)],
                             (np.int64(0),)) is None))
    parallel.run_kernel_slices(_fill, (out, np.int32(0), 1.0, False), [(0, 2), (2, 4)],
                               (np.int64(0),))
    queue.put(out[:, 0].tolist())


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_runs_the_slices_from_python(threads):
    native.launch(_fill, (np.zeros((4, 2)), np.int32(0), 1.0, False), [(0, 2), (2, 4)],
                  (np.int64(0),))  # the parent's team is up
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_launch_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == (True, True)   # OpenMP's team does not survive a fork
    assert queue.get(timeout=5) == [0.0, 1.0, 2.0, 3.0]


def test_trampolines_are_written_to_the_cache_and_loaded_from_it(tmp_path):
    # a fresh process compiles the trampoline and leaves its source and numba's cache; a
    # second one finds both (its load is then milliseconds, not a compilation)
    code = ("import numpy as np, torch\n"
            "from spikegrad.kernels import native, numba_event as ne, parallel\n"
            "parallel._openmp(); torch.set_num_threads(2)\n"
            "x = (torch.rand(4000, 256) < 0.2).float()\n"
            "rp, cl, _ = ne.active_csr(x)\n"
            "y = ne.forward(rp, cl, torch.randn(256, 256))\n"
            "print(native._runtime is not None, len(native._trampolines))\n")
    env = dict(os.environ, SPIKEGRAD_TRAMPOLINE_DIR=str(tmp_path / "src"),
               NUMBA_CACHE_DIR=str(tmp_path / "numba"), OMP_NUM_THREADS="2")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    if runs[0].stdout.split()[0] != "True":
        pytest.skip("no native launches in the child")
    sources = sorted(p.name for p in (tmp_path / "src").glob("spikegrad_trampoline_*.py"))
    assert sources, "no trampoline source was written"
    cached = list(tmp_path.rglob("*.nbi"))
    assert cached, "numba did not cache the trampoline"
    assert any("spikegrad_trampoline" in p.name for p in cached)


def test_an_unwritable_cache_directory_falls_back_to_a_private_one(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("SPIKEGRAD_TRAMPOLINE_DIR", str(blocked / "sub"))
    tramp = native._load((("a", "float64", 1),), 1)
    assert tramp.address
    assert native._private is not None
    assert list(os.scandir(native._private_dir()))


def test_a_trampoline_that_cannot_be_built_leaves_the_python_path(threads, monkeypatch):
    def broken(kinds, n_before):
        raise ImportError("no such numba internals")
    monkeypatch.setattr(native, "_load", broken)
    monkeypatch.setattr(native, "_trampolines", {})
    rt = native._runtime
    out = np.zeros((6, 2))
    try:
        with pytest.warns(RuntimeWarning, match="Python callbacks from now on"):
            parallel.run_kernel_slices(_fill, (out, np.int32(0), 2.0, False),
                                       [(0, 3), (3, 6)], (np.int64(1),))
        assert native._runtime is None
        assert out[:, 0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]  # the Python path ran
    finally:
        native.set_runtime(None)
        native._runtime = rt
