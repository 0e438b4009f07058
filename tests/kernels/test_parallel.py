"""Splitting the recurrent numba loops over threads changes nothing but the wall time."""

import math
import multiprocessing as mp
import sys
import threading
import time

import pytest
import torch

import spikegrad as sg
from spikegrad.kernels import parallel
from spikegrad.kernels.registry import numba_available

from numerics import (assert_close_to_reference, assert_decisions_clear,
                      assert_same_up_to_order, chain, membrane_chain, spike_margins)

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_splits_stop_after_two_regions_slower_than_one_thread_and_retry_later():
    clock = _Clock()
    payoff = parallel._Payoff(clock)
    # 2 threads, 10 ms wall: efficiency cpu / 20 ms; one thread would have taken `cpu`
    payoff.record(0.012, 2, 0.010)          # 0.6: the split saved time
    payoff.record(0.009, 2, 0.010)          # 0.45: one thread would have been faster
    assert payoff.pays()                    # a single slow region is not enough
    payoff.record(0.019, 2, 0.010)
    payoff.record(0.008, 2, 0.010)
    assert payoff.pays()                    # two in a row are needed
    payoff.record(0.007, 2, 0.010)
    assert not payoff.pays()
    clock.now += parallel.RETRY_MIN_S - 1e-3
    assert not payoff.pays()
    clock.now += 2e-3
    assert payoff.pays()                    # time to try again...
    payoff.record(0.005, 2, 0.010)
    assert not payoff.pays()                # ...and a retry that does not pay stops at once
    clock.now += parallel.RETRY_MIN_S + 1e-3
    assert not payoff.pays()                # for twice as long
    clock.now += parallel.RETRY_MIN_S
    payoff.record(0.018, 2, 0.010)
    payoff.record(0.009, 2, 0.010)
    assert payoff.pays()                    # the machine is free again


def test_back_off_doubles_up_to_retry_s_while_retries_fail_and_shrinks_when_splits_pay():
    clock = _Clock()
    payoff = parallel._Payoff(clock)

    def unsplit_for():
        start = clock.now
        while not payoff.pays():
            clock.now += 1e-3
        return clock.now - start

    payoff.record(0.005, 2, 0.010)
    payoff.record(0.005, 2, 0.010)
    waits = [unsplit_for()]
    for _ in range(7):                      # a lasting load: every retry fails
        payoff.record(0.005, 2, 0.010)
        waits.append(unsplit_for())
    expected = [min(parallel.RETRY_S, parallel.RETRY_MIN_S * 2 ** k) for k in range(8)]
    assert waits == pytest.approx(expected, abs=2e-3)
    assert waits[-1] == pytest.approx(parallel.RETRY_S, abs=2e-3)
    for _ in range(10):                     # the load is gone: splits pay again
        payoff.record(0.018, 2, 0.010)
    payoff.record(0.005, 2, 0.010)          # a blip slows two regions
    payoff.record(0.005, 2, 0.010)
    assert unsplit_for() == pytest.approx(parallel.RETRY_MIN_S, abs=2e-3)


def test_three_threads_pay_above_a_third():
    payoff = parallel._Payoff(_Clock())
    for _ in range(3):
        payoff.record(0.011, 3, 0.010)      # 0.37 > 1/3: faster than one thread
    assert payoff.pays()
    for _ in range(2):
        payoff.record(0.009, 3, 0.010)
    assert not payoff.pays()


def test_a_region_that_ran_on_one_thread_says_nothing():
    payoff = parallel._Payoff(_Clock())
    for _ in range(3):
        payoff.record(0.001, 1, 0.010)      # a team of one (nested region): no split measured
        payoff.record(0.0, 2, 0.0)
    assert payoff.pays()


def test_split_regions_report_their_threads_cpu_and_wall(monkeypatch, where):
    seen = []
    monkeypatch.setattr(parallel, "_payoff", type("P", (), {
        "record": lambda self, cpu, threads, wall: seen.append((cpu, threads, wall))})())
    barrier = threading.Barrier(2, timeout=10)

    def busy(lo, hi):
        barrier.wait()
        end = time.thread_time() + 0.02
        while time.thread_time() < end:  # 20 ms of CPU on each thread
            pass
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel.run_split(busy, 10, 10 * parallel.MIN_WORK_PER_THREAD)
        parallel.run_split(lambda lo, hi: None, 1, 1)  # one slice: not measured
    finally:
        torch.set_num_threads(old)
    (cpu, threads, wall), = seen
    assert threads == 2
    assert 0.04 <= cpu <= 0.04 + 0.01 * 2   # each slice spun >= 20 ms, little more (GIL turns)
    assert wall >= cpu / threads


def test_an_unpaying_split_gets_one_slice_unless_threads_are_given(monkeypatch):
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        work = 4 * parallel.MIN_WORK_PER_THREAD
        assert len(parallel.split(32, work)) == 4
        monkeypatch.setattr(parallel, "splitting_pays", lambda: False)
        assert parallel.split(32, work) == [(0, 32)]
        assert len(parallel.split(32, work, threads=4)) == 4  # the caller's explicit choice
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("n, work, align, threads, min_work", [
    (32, 10**9, 1, 2, 1), (32, 10**9, 1, 3, 1), (1000, 10**9, 16, 4, 1), (7, 10**9, 16, 4, 1),
    (32, 100, 1, 4, 60), (5, 10**9, 1, 8, 1), (1, 10**9, 1, 8, 1)])
def test_split_covers_the_range_once(n, work, align, threads, min_work):
    slices = parallel.split(n, work, align, threads=threads, min_work=min_work)
    covered = [i for lo, hi in slices for i in range(lo, hi)]
    assert covered == list(range(n))
    assert len(slices) <= threads
    assert all(lo % align == 0 for lo, _ in slices)
    assert len(slices) <= max(1, work // min_work)


def test_split_keeps_small_work_on_one_thread():
    assert parallel.split(32, parallel.MIN_WORK_PER_THREAD - 1, threads=8) == [(0, 32)]
    assert len(parallel.split(32, 4 * parallel.MIN_WORK_PER_THREAD, threads=8)) == 4


@pytest.fixture(params=["openmp", "threads"])
def where(request, monkeypatch):
    """Run a test with the slices on torch's OpenMP team, then on our own thread pool."""
    if request.param == "threads":
        monkeypatch.setattr(parallel, "_omp", None)
        monkeypatch.setattr(parallel, "_omp_found", True)
    elif parallel.backend() != "openmp":
        pytest.skip("torch's OpenMP runtime was not found (not Linux, or no OpenMP build)")
    return request.param


@pytest.mark.skipif(not torch._C.has_openmp or not sys.platform.startswith("linux"),
                    reason="torch without OpenMP, or no /proc/self/maps")
def test_slices_run_on_torchs_openmp_team_where_there_is_one():
    assert parallel.backend() == "openmp"


def test_run_split_runs_every_slice_on_several_threads(where):
    seen, names = [], set()
    barrier = threading.Barrier(2, timeout=10)

    def call(lo, hi):
        barrier.wait()  # both slices are in flight at once, or this times out
        seen.append((lo, hi))
        names.add(threading.current_thread().name)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel.run_split(call, 10, 10 * parallel.MIN_WORK_PER_THREAD)
    finally:
        torch.set_num_threads(old)
    assert sorted(seen) == [(0, 5), (5, 10)]
    assert len(names) == 2


def test_run_split_reraises_a_slice_error(where):
    def call(lo, hi):
        if lo > 0:
            raise RuntimeError("slice failed")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="slice failed"):
            parallel.run_split(call, 4, 4 * parallel.MIN_WORK_PER_THREAD)
    finally:
        torch.set_num_threads(old)


def test_a_nested_split_runs_every_slice_once(where):
    # inside a parallel region an OpenMP team may be a single thread: it takes every slice
    inner = []

    def outer(lo, hi):
        if lo == 0:
            parallel.run_split(lambda a, b: inner.append((a, b)), 6,
                               6 * parallel.MIN_WORK_PER_THREAD)
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        parallel.run_split(outer, 3, 3 * parallel.MIN_WORK_PER_THREAD)
    finally:
        torch.set_num_threads(old)
    assert sorted(inner) == [(0, 2), (2, 4), (4, 6)]


def _split_in_child(queue):
    out = []
    parallel.run_split(lambda lo, hi: out.append((lo, hi)), 4, 4 * parallel.MIN_WORK_PER_THREAD)
    queue.put(sorted(out))


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_pool_works_in_a_forked_child(where):
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parallel.run_split(lambda lo, hi: None, 4, 4 * parallel.MIN_WORK_PER_THREAD)  # pool up
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_split_in_child, args=(queue,))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0, "the forked child hung or failed (inherited a dead pool)"
        assert queue.get(timeout=5) == [(0, 2), (2, 4)]
    finally:
        torch.set_num_threads(old)


def _recurrent_run(backend, dtype, syn=False, compute=None):
    """Built and drawn in ``dtype``, run in ``compute`` (float64 for the reference: the same
    float32-exact inputs and weights)."""
    compute = compute or dtype
    torch.manual_seed(4)  # seed 0 puts a membrane 4.5e-5 from threshold: a float32 tie
    cell = sg.nn.LIF(24, tau_mem=10e-3, tau_syn=5e-3 if syn else None, learn_tau=True,
                     learn_threshold=True, detach_reset=False, backend=backend)
    rec = sg.nn.Recurrent(cell, autapses=False, init_gain=2.0).to(dtype).to(compute)
    xs = (torch.rand(40, 5, 24, dtype=dtype) * 0.6).to(compute).requires_grad_()
    ys, st = rec(xs)
    loss = (ys * torch.linspace(-1, 1, 24, dtype=compute)).sum() + st.inner.v.sum()
    params = [xs] + list(rec.parameters())
    return ys.detach(), st.inner.v.detach(), torch.autograd.grad(loss, params)


@needs_numba
@pytest.mark.parametrize("dtype, syn", [(torch.float64, False), (torch.float64, True),
                                        (torch.float32, False)])
def test_split_recurrent_kernels_equal_one_thread_and_reference(monkeypatch, dtype, syn):
    with spike_margins() as margins:
        ref = _recurrent_run("reference", dtype, syn, compute=torch.float64)
    one = _recurrent_run("numba", dtype, syn)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    old = torch.get_num_threads()
    torch.set_num_threads(3)  # 5 batch rows -> slices of 1-2 rows, uneven on purpose
    try:
        assert len(parallel.split(5, 40 * 5 * 24)) == 3
        split = _recurrent_run("numba", dtype, syn)
    finally:
        torch.set_num_threads(old)
    assert 0 < ref[0].mean() < 1
    # membrane: 40 steps of a 24-wide recurrent sum; gradients: that chain and a sum over
    # 40 x 5 steps and rows (a batch row's arithmetic is the same on any thread: spikes and
    # states exact; the parameter gradients add the slices' shares in another order)
    assert_decisions_clear(margins, dtype, membrane_chain(40, 24, decay=math.exp(-0.1)))
    assert torch.equal(split[0], one[0]) and torch.equal(split[0], ref[0].to(dtype))  # spikes
    assert torch.equal(split[1], one[1])                                   # final state
    assert_close_to_reference(one[1], ref[1], chain(40, 0, 24), msg="final membrane")
    n = chain(40, 5, 24)
    for k, (gr, g1, gs) in enumerate(zip(ref[2], one[2], split[2])):
        assert_close_to_reference(g1, gr, n, msg=f"gradient {k}, one thread")
        assert_close_to_reference(gs, gr, n, msg=f"gradient {k}, three threads")
        assert_same_up_to_order(gs, g1, n, scale=gr.abs().max().item(),
                                msg=f"gradient {k}, three threads against one")


def _feedforward_run(backend, dtype, syn, adaptive):
    torch.manual_seed(0)
    if adaptive:
        cell = sg.nn.ALIF(37, tau_mem=10e-3, tau_adapt=50e-3, beta_adapt=0.5, backend=backend)
    else:
        cell = sg.nn.LIF(37, tau_mem=10e-3, tau_syn=5e-3 if syn else None, learn_tau=True,
                         learn_threshold=True, detach_reset=False, backend=backend)
    cell = cell.to(dtype)
    xs = (torch.rand(30, 3, 37, dtype=dtype) * 0.8).requires_grad_()
    ys, st = cell(xs)
    loss = (ys * torch.linspace(-1, 1, 37, dtype=dtype)).sum() + st.v.sum()
    params = [xs] + [p for p in cell.parameters() if p.requires_grad]
    return ys.detach(), st.v.detach(), torch.autograd.grad(loss, params)


@needs_numba
@pytest.mark.parametrize("dtype, syn, adaptive", [(torch.float64, False, False),
                                                  (torch.float64, True, False),
                                                  (torch.float32, False, False),
                                                  (torch.float64, False, True)])
def test_split_feedforward_kernels_are_bit_identical_to_one_thread(monkeypatch, dtype, syn,
                                                                    adaptive):
    one = _feedforward_run("numba", dtype, syn, adaptive)
    ref = _feedforward_run("reference", dtype, syn, adaptive)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    old = torch.get_num_threads()
    torch.set_num_threads(3)  # 3 * 37 = 111 neurons -> runs of 48, 48 and 15: uneven
    try:
        assert len(parallel.split(111, 30 * 111, align=16)) == 3
        split = _feedforward_run("numba", dtype, syn, adaptive)
    finally:
        torch.set_num_threads(old)
    assert 0 < one[0].mean() < 1
    assert torch.equal(split[0], one[0]) and torch.equal(split[0], ref[0])  # spikes
    assert torch.equal(split[1], one[1])                                   # final state
    for g1, gs in zip(one[2], split[2]):
        assert torch.equal(gs, g1)                       # same per-neuron arithmetic
