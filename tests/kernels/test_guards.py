"""No input may corrupt memory or pass silently: the compiled kernels check what they touch.

A state from another batch once made the numba loops write past their buffers (the process
aborted later with ``free(): invalid next size``) and the reference loop broadcast it. These
tests feed every backend mismatched states, shapes, dtypes and devices, in process (a clean
ValueError/TypeError naming the argument) and in subprocesses (a fuzz: a segfault or abort
there is a signal of the child, not a crashed test run), plus the dtype contract of
docs/conventions.md ("Dtypes").
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import spikegrad as sg
from spikegrad import functional as F
from spikegrad.functional import map_state
from spikegrad.kernels import guards
from spikegrad.kernels.leaky import leaky_sequence
from spikegrad.kernels.registry import numba_available

NUMBA = numba_available()
BACKENDS = ["reference", "torch"] + (["numba"] if NUMBA else [])
FUSED = [b for b in BACKENDS if b != "reference"]
needs_numba = pytest.mark.skipif(not NUMBA, reason="needs numba (the fast extra)")
CLEAN = (ValueError, TypeError)


def _neuron(kind: str, n: int, backend: str):
    if kind == "ALIF":
        return sg.nn.ALIF(n, backend="numba" if backend == "numba" else "reference")
    return getattr(sg.nn, kind)(n, backend=backend)


def _kinds(backend):
    return ["LIF", "IF", "LI"] + (["ALIF"] if backend in ("reference", "numba") else [])


# --- (a) the reproduction and its variations, through the public modules ------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_reproduction_raises(backend):
    m = sg.nn.Recurrent(sg.nn.LIF(16, backend=backend))
    _, s = m(torch.rand(5, 3, 16))
    with pytest.raises(ValueError, match=r"state.*\[3, 16\].*\[4, 16\]"):
        m(torch.rand(5, 4, 16), s)
    # the process is intact: a valid call still runs
    ys, _ = m(torch.rand(5, 3, 16), s)
    assert ys.shape == (5, 3, 16)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recurrent", [False, True])
def test_batch_one_state_into_batch_64(backend, recurrent):
    for kind in _kinds(backend):
        neuron = _neuron(kind, 256, backend)
        m = sg.nn.Recurrent(neuron) if recurrent else neuron
        _, s = m(torch.rand(3, 1, 256))
        with pytest.raises(ValueError, match=r"state.*\[1, 256\]"):
            m(torch.rand(3, 64, 256), s)
        # and the other way round: no silent broadcast of a larger state
        _, s = m(torch.rand(3, 64, 256))
        with pytest.raises(ValueError, match=r"state.*\[64, 256\]"):
            m(torch.rand(3, 1, 256), s)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recurrent", [False, True])
def test_wrong_features_dtype_device_state(backend, recurrent):
    for kind in _kinds(backend):
        small, big = _neuron(kind, 8, backend), _neuron(kind, 12, backend)
        if recurrent:
            small, big = sg.nn.Recurrent(small), sg.nn.Recurrent(big)
        _, s8 = small(torch.rand(3, 2, 8))
        with pytest.raises(ValueError, match="state"):
            big(torch.rand(3, 2, 12), s8)
        s64 = map_state(torch.Tensor.double, s8)
        with pytest.raises(CLEAN, match="dtype"):
            small(torch.rand(3, 2, 8), s64)
        meta = map_state(lambda t: t.to("meta"), s8)
        with pytest.raises(CLEAN, match="meta"):
            small(torch.rand(3, 2, 8), meta)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_input_and_state_equal_contiguous(backend):
    for kind in _kinds(backend):
        for recurrent in (False, True):
            torch.manual_seed(0)
            neuron = _neuron(kind, 6, backend)
            m = sg.nn.Recurrent(neuron) if recurrent else neuron
            xs = torch.rand(4, 7, 6).transpose(0, 1) * 2      # [T=7, B=4, 6], strided
            assert not xs.is_contiguous()
            _, s = m(xs[:3])
            s_t = map_state(lambda t: t.t().contiguous().t(), s)
            ys_a, sa = m(xs[3:], s_t)
            ys_b, sb = m(xs[3:].contiguous(),
                         map_state(torch.Tensor.contiguous, s))
            if backend == "numba":  # copies to contiguous arrays: the same numbers
                assert torch.equal(ys_a, ys_b), (kind, recurrent)
            else:  # torch's GEMM may sum a strided operand in another order
                torch.testing.assert_close(ys_a, ys_b, msg=f"{kind} recurrent={recurrent}")


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("recurrent", [False, True])
def test_fused_sequential_pair_rejects_other_batch(recompute, recurrent):
    hidden = sg.nn.LIF(16)
    net = sg.nn.Sequential(sg.nn.Linear(8, 16),
                           sg.nn.Recurrent(hidden) if recurrent else hidden,
                           recompute=recompute)
    _, s = net(torch.rand(5, 3, 8))
    for b in (4, 1, 64):
        with pytest.raises(ValueError, match="state"):
            net(torch.rand(5, b, 8), s)
    net(torch.rand(5, 3, 8), s)[0].sum().backward()


def test_event_linear_inputs():
    layer = sg.nn.Linear(8, 4, backend="event")
    with pytest.raises(ValueError, match=r"\[T, B, 8\]"):
        layer((torch.rand(5, 2, 9) < 0.2).float())
    with pytest.raises(TypeError, match=r"one dtype.*x.to\(weight.dtype\)"):
        layer((torch.rand(5, 2, 8) < 0.2).double())
    from spikegrad.kernels.event_linear import event_linear
    x = (torch.rand(5, 2, 8) < 0.2).float()
    with pytest.raises(ValueError, match="bias must be None or a tensor"):
        event_linear(x, layer.weight, torch.zeros(5), backend="event")
    with pytest.raises(ValueError, match="weight is on meta"):
        event_linear(x, layer.weight.to("meta"), backend="event")


# --- (a) the kernel entries themselves (beneath the functional checks) -------------------------

def _lif_p(**kw):
    return F.LIFParams(**kw)


@pytest.mark.parametrize("backend", FUSED)
def test_leaky_sequence_checks_states(backend):
    xs = torch.rand(5, 4, 16)
    v = torch.zeros(4, 16)
    p = _lif_p(decay_syn=0.9)
    bad = [
        (dict(v0=torch.zeros(3, 16)), ValueError, r"state.v has shape \[3, 16\]"),
        (dict(v0=torch.zeros(1, 16)), ValueError, r"state.v has shape \[1, 16\]"),
        (dict(v0=torch.zeros(4, 15)), ValueError, "state.v"),
        (dict(v0=torch.zeros(16)), ValueError, "state.v"),
        (dict(v0=torch.zeros(4, 16, dtype=torch.float64)), TypeError, "state.v has dtype"),
        (dict(v0=torch.zeros(4, 16, device="meta")), ValueError, "state.v is on meta"),
        (dict(v0=[[0.0] * 16] * 4), TypeError, "state.v must be a torch.Tensor"),
        (dict(i0=None), ValueError, "state.i is None"),
        (dict(i0=torch.zeros(2, 16)), ValueError, "state.i has shape"),
    ]
    for kw, err, match in bad:
        args = dict(v0=v, i0=torch.zeros(4, 16))
        args.update(kw)
        with pytest.raises(err, match=match):
            leaky_sequence(xs, args["v0"], args["i0"], p, spiking=True, backend=backend)
    with pytest.raises(ValueError, match="no time steps"):
        leaky_sequence(xs[:0], v, v, p, spiking=True, backend=backend)
    with pytest.raises(ValueError, match="time-major"):
        leaky_sequence(xs[0, 0], v, v, p, spiking=True, backend=backend)
    for name, value in (("threshold", torch.ones(2, 4, 16)), ("decay_mem", torch.ones(3))):
        with pytest.raises(ValueError, match=f"{name} has shape"):
            leaky_sequence(xs, v, v, p._replace(**{name: value}), spiking=True,
                           backend=backend)
    with pytest.raises(ValueError, match="threshold is on meta"):
        leaky_sequence(xs, v, v, p._replace(threshold=torch.ones(16, device="meta")),
                       spiking=True, backend=backend)


@pytest.mark.parametrize("backend", FUSED)
def test_leaky_sequence_checks_recurrence(backend):
    xs = torch.rand(5, 4, 16)
    v, w = torch.zeros(4, 16), torch.zeros(16, 16)
    p = _lif_p()

    def call(**kw):
        a = dict(xs=xs, v0=v, w_rec=w, y0=v)
        a.update(kw)
        return leaky_sequence(a["xs"], a["v0"], None, p, spiking=True, backend=backend,
                              w_rec=a["w_rec"], y0=a["y0"])
    for kw, err, match in [
        (dict(v0=torch.zeros(3, 16)), ValueError, r"state.inner.v has shape \[3, 16\]"),
        (dict(y0=torch.zeros(1, 16)), ValueError, r"state.y has shape \[1, 16\]"),
        (dict(y0=torch.zeros(4, 16, dtype=torch.float64)), TypeError, "state.y has dtype"),
        (dict(w_rec=torch.zeros(16, 15)), ValueError, "recurrent weight has shape"),
        (dict(w_rec=torch.zeros(16, 16, dtype=torch.float64)), TypeError, "recurrent weight"),
        (dict(xs=torch.rand(5, 4, 2, 8)), ValueError, r"\[T, B, N\]"),
    ]:
        with pytest.raises(err, match=match):
            call(**kw)
    call()


@needs_numba
def test_recurrent_numba_takes_per_neuron_constants_only():
    xs, v, w = torch.rand(5, 4, 8), torch.zeros(4, 8), torch.zeros(8, 8)
    p = _lif_p(threshold=torch.ones(4, 8))
    with pytest.raises(ValueError, match="one value per neuron.*backend='torch'"):
        leaky_sequence(xs, v, None, p, spiking=True, backend="numba", w_rec=w, y0=v)
    leaky_sequence(xs, v, None, p, spiking=True, backend="torch", w_rec=w, y0=v)


@needs_numba
def test_adaptive_sequence_checks_states():
    from spikegrad.kernels.adaptive import Constants, adaptive_sequence
    from spikegrad.kernels.spec import Spec
    spec = Spec(True, "subtract", True, False, False, sg.surrogate.get("fast_sigmoid"), "numba")
    xs, z = torch.rand(5, 4, 8), torch.zeros(4, 8)
    k = Constants(0.9, None, 1.0, 0.0, 0.95, 1.0, n_ref=2)
    with pytest.raises(ValueError, match=r"state.a has shape \[1, 8\]"):
        adaptive_sequence(spec, k, xs, z, None, torch.zeros(1, 8), z)
    with pytest.raises(ValueError, match="state.ref is None"):
        adaptive_sequence(spec, k, xs, z, None, z, None)
    with pytest.raises(ValueError, match=r"state.inner.v has shape \[3, 8\]"):
        adaptive_sequence(spec, k, xs, torch.zeros(3, 8), None, z, z, w_rec=torch.zeros(8, 8),
                          y0=z)
    with pytest.raises(TypeError, match="backend='reference'"):
        adaptive_sequence(spec, k, xs.half(), z.half(), None, z.half(), z.half())
    adaptive_sequence(spec, k, xs, z, None, z, z)


@needs_numba
@pytest.mark.parametrize("recurrent", [False, True])
def test_projected_rejects_broadcast_states(recurrent):
    from spikegrad.kernels import projected
    xs = (torch.rand(6, 4, 8) < 0.3).float()
    w, b = torch.randn(16, 8), torch.zeros(16)
    p = _lif_p()

    def call(v0, y0=None, weight=w, bias=b):
        if recurrent:
            return projected.projected_recurrent_lif(xs, weight, bias, torch.zeros(16, 16),
                                                     y0 if y0 is not None else v0, v0, None, p)
        return projected.projected_lif(xs, weight, bias, v0, None, p)
    name = "state.inner.v" if recurrent else "state.v"
    with pytest.raises(ValueError, match=rf"{name} has shape \[1, 16\]"):
        call(torch.zeros(1, 16))      # once expanded silently
    with pytest.raises(ValueError, match=rf"{name} has shape \[16\]"):
        call(torch.zeros(16))
    with pytest.raises(ValueError, match=r"Linear weight must be \[N, 8\]"):
        call(torch.zeros(4, 16), weight=torch.randn(16, 9))
    with pytest.raises(ValueError, match=r"Linear bias has shape \[15\]"):
        call(torch.zeros(4, 16), bias=torch.zeros(15))
    if recurrent:
        with pytest.raises(ValueError, match=r"state.y has shape \[1, 16\]"):
            call(torch.zeros(4, 16), y0=torch.zeros(1, 16))
    zs, _, _ = call(torch.zeros(4, 16))
    assert zs.shape == (6, 4, 16)


@needs_numba
def test_internal_numba_entries_check_their_arrays():
    import numpy as np
    from spikegrad.kernels import numba_event, numba_leaky
    from spikegrad.kernels.spec import Spec
    spec = Spec(True, "subtract", True, False, True, sg.surrogate.get("fast_sigmoid"), "numba")
    xs, z = torch.rand(5, 4, 8), torch.zeros(4, 8)
    with pytest.raises(ValueError, match="forward_scan: v0 has shape"):
        numba_leaky.forward_scan(spec, xs, torch.zeros(3, 8), z, 0.9, 0.8, 1.0, 0.0)
    with pytest.raises(ValueError, match="forward_scan: i0 has shape"):
        numba_leaky.forward_scan(spec, xs, z, torch.zeros(1, 8), 0.9, 0.8, 1.0, 0.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        numba_leaky.forward_scan(spec, xs.half(), z.half(), z.half(), 0.9, 0.8, 1.0, 0.0)
    with pytest.raises(ValueError, match="forward_scan_rec: y0 has shape"):
        numba_leaky.forward_scan_rec(spec, xs, z, z, 0.9, 0.8, 1.0, 0.0, torch.zeros(8, 8),
                                     torch.zeros(2, 8))
    with pytest.raises(ValueError, match="forward_scan_rec: w_rec has shape"):
        numba_leaky.forward_scan_rec(spec, xs, z, z, 0.9, 0.8, 1.0, 0.0, torch.zeros(8, 4), z)
    u = torch.rand(5, 4, 8)
    with pytest.raises(ValueError, match="backward_scan: gv_T has shape"):
        numba_leaky.backward_scan(spec, torch.ones(()), u, 1.0, 0.0, 0.9, 0.8,
                                  torch.zeros(8), None)
    with pytest.raises(ValueError, match="backward_scan_rec: gi_T has shape"):
        numba_leaky.backward_scan_rec(spec, torch.ones(()), u, 1.0, 0.0, 0.9, 0.8, z,
                                      torch.zeros(4, 7), torch.zeros(8, 8))
    loop = numba_leaky.ChunkedLoop(spec, (4, 8), torch.float32, 0.9, 0.8, 1.0, 0.0)
    M = 32
    a = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="ChunkedLoop.forward: v has shape"):
        loop.forward(a(3, M), a(M - 1), a(M), a(3, M), True, a(3, M))
    with pytest.raises(ValueError, match="ChunkedLoop.forward: i_scratch has shape"):
        loop.forward(a(3, M), a(M), a(M), a(3, M), True, a(2, M))
    with pytest.raises(TypeError, match="ChunkedLoop.forward: xc has dtype"):
        loop.forward(a(3, M).astype(np.float64), a(M), a(M), a(3, M), True, a(3, M))
    with pytest.raises(ValueError, match="ChunkedLoop.backward: gu_out has shape"):
        loop.backward(a(3, M), a(3, M), a(M), a(M), a(3, M - 1), a(3, M))
    torch.manual_seed(0)
    x2 = (torch.rand(10, 8) < 0.3).float()
    rowptr, cols, _ = numba_event.active_csr(x2)
    assert cols.numel() > 0
    w = torch.randn(20, 8)
    with pytest.raises(ValueError, match="forward: out has shape"):
        numba_event.forward(rowptr, cols, w, out=np.empty(10 * 20 - 1, np.float32))
    with pytest.raises(ValueError, match="rowptr points outside cols"):
        numba_event.forward(rowptr, cols[:-1], w)
    dwt = numba_event.blocked_zeros(20, 8, torch.float32)
    with pytest.raises(ValueError, match="accumulate_weight_grad: grad has 9 rows"):
        numba_event.accumulate_weight_grad(torch.zeros(9, 20), rowptr, cols, dwt)
    with pytest.raises(ValueError, match="accumulate_weight_grad: dwt has shape"):
        numba_event.accumulate_weight_grad(torch.zeros(10, 40), rowptr, cols, dwt)
    with pytest.raises(TypeError, match="active_csr: x is torch.float16"):
        numba_event.active_csr(x2.half())


@pytest.mark.parametrize("backend", FUSED)
def test_user_surrogate_must_be_elementwise(backend):
    reduced = sg.surrogate.Surrogate("reduced", lambda x, b: (x * 0 + 1).mean(),
                                     lambda x, b: torch.sigmoid(b * x), 10.0)
    lif = sg.nn.LIF(8, surrogate=reduced, backend=backend)
    xs = torch.rand(1, 4, 8, requires_grad=True)
    zs, _ = lif(xs)
    with pytest.raises(ValueError, match="derivative must be element-wise"):
        zs.sum().backward()


@pytest.mark.parametrize("reset", ["subtract", "to_value"])
def test_overflowing_finite_input_agrees_across_backends(reset):
    # finite inputs whose membrane overflows: the reset's u - z * (...) propagates inf/NaN in
    # the reference, and the compiled loops compute the same expression
    xs = torch.tensor([3e38, 3e38, -3e38, -3e38, -3e38, 1.0]).view(6, 1, 1)
    p = F.LIFParams(decay_mem=1.0, reset=reset)
    z_ref, s_ref = F.lif_seq(xs, None, p, backend="reference")
    for backend in FUSED:
        z, s = F.lif_seq(xs, None, p, backend=backend)
        assert torch.equal(z, z_ref)
        torch.testing.assert_close(s.v, s_ref.v, equal_nan=True)


# --- (b) fuzz in subprocesses: a clean error, never a signal ---------------------------------

_FUZZ_CHILD = r'''
import itertools, random, sys, traceback
import torch
import spikegrad as sg
from spikegrad import functional as F
from spikegrad.functional import map_state
from spikegrad.kernels.leaky import leaky_sequence
from spikegrad.kernels.registry import numba_available

part = sys.argv[1]
rng = random.Random(1234 + len(part))
torch.manual_seed(0)
backends = ["reference", "torch"] + (["numba"] if numba_available() else [])
n_ok = n_err = 0
bad = []

def expect_clean(what, fn):
    global n_ok, n_err
    try:
        out = fn()
    except (ValueError, TypeError) as e:
        n_err += 1
        if not str(e):
            bad.append(f"{what}: empty message")
        return
    except Exception as e:
        bad.append(f"{what}: {type(e).__name__}: {e}")
        return
    bad.append(f"{what}: returned a result")

def mismatches(B, N):
    """(label, shape, dtype) of states that do not fit an input [T, B, N]."""
    out = [("batch-1", (max(B - 1, 1) if B > 1 else 2, N), torch.float32),
           ("batch+1", (B + 1, N), torch.float32),
           ("batch*16", (B * 16, N), torch.float32),
           ("features-1", (B, N - 1), torch.float32),
           ("features+3", (B, N + 3), torch.float32),
           ("rank1", (N,), torch.float32),
           ("rank3", (1, B, N), torch.float32),
           ("float64", (B, N), torch.float64)]
    if B != 1:
        out.append(("batch1", (1, N), torch.float32))
    return out

def bad_state(state, shape, dtype):
    return map_state(lambda t: torch.rand(shape, dtype=dtype), state)

if part == "modules":
    for backend in backends:
        kinds = ["LIF", "IF", "LI"] + (["ALIF"] if backend != "torch" else [])
        for kind, recurrent in itertools.product(kinds, (False, True)):
            B, N = rng.choice([(1, 256), (3, 16), (64, 8), (5, 33)])
            ab = "numba" if (kind == "ALIF" and backend == "numba") else (
                "reference" if kind == "ALIF" else backend)
            neuron = getattr(sg.nn, kind)(N, backend=ab)
            m = sg.nn.Recurrent(neuron) if recurrent else neuron
            _, good = m(torch.rand(4, B, N))
            for label, shape, dtype in mismatches(B, N):
                s = bad_state(good, shape, dtype)
                expect_clean(f"{backend} {kind} rec={recurrent} {label}",
                             lambda: m(torch.rand(4, B, N), s))
            # the other way round: a good state of batch B into other batches
            for B2 in {1, B + 1, 4 * B} - {B}:
                expect_clean(f"{backend} {kind} rec={recurrent} state B={B} into B={B2}",
                             lambda: m(torch.rand(4, B2, N), good))
            m(torch.rand(4, B, N), good)   # still works
    # the fused Linear -> (Recurrent) LIF pair, training (fused) and inference
    for recurrent, recompute in itertools.product((False, True), (False, True)):
        lif = sg.nn.LIF(32)
        net = sg.nn.Sequential(sg.nn.Linear(16, 32), sg.nn.Recurrent(lif) if recurrent else lif,
                               recompute=recompute)
        _, good = net(torch.rand(6, 3, 16))
        for B2 in (1, 2, 4, 48):
            expect_clean(f"sequential rec={recurrent} B=3 into {B2}",
                         lambda: net(torch.rand(6, B2, 16), good))
elif part == "kernels":
    fused = [b for b in backends if b != "reference"]
    for backend, recurrent, syn in itertools.product(fused, (False, True), (False, True)):
        B, N = rng.choice([(1, 256), (3, 16), (64, 8)])
        p = F.LIFParams(decay_syn=0.8 if syn else None)
        xs = torch.rand(4, B, N)
        z = torch.zeros(B, N)
        w = torch.zeros(N, N) if recurrent else None
        for label, shape, dtype in mismatches(B, N):
            s = torch.rand(shape, dtype=dtype)
            for which in ("v0", "i0", "y0"):
                if (which == "i0" and not syn) or (which == "y0" and not recurrent):
                    continue
                a = dict(v0=z, i0=z if syn else None, y0=z if recurrent else None)
                a[which] = s
                expect_clean(f"leaky_sequence {backend} rec={recurrent} {which} {label}",
                             lambda: leaky_sequence(xs, a["v0"], a["i0"], p, spiking=True,
                                                    backend=backend, w_rec=w, y0=a["y0"]))
        leaky_sequence(xs, z, z if syn else None, p, spiking=True, backend=backend, w_rec=w,
                       y0=z if recurrent else None)
    if numba_available():
        from spikegrad.kernels import numba_leaky, projected
        from spikegrad.kernels.spec import Spec
        spec = Spec(True, "subtract", True, False, False, sg.surrogate.get("fast_sigmoid"),
                    "numba")
        for B, N in ((1, 256), (3, 16), (64, 8)):
            xs, z = torch.rand(4, B, N), torch.zeros(B, N)
            for label, shape, dtype in mismatches(B, N):
                if dtype == torch.float64 and shape == (B, N):
                    continue  # cast deliberately at this level (the public entries reject it)
                s = torch.rand(shape, dtype=dtype)
                expect_clean(f"forward_scan v0 {label}", lambda: numba_leaky.forward_scan(
                    spec, xs, s, None, 0.9, None, 1.0, 0.0))
                expect_clean(f"forward_scan_rec v0 {label}",
                             lambda: numba_leaky.forward_scan_rec(
                                 spec, xs, s, None, 0.9, None, 1.0, 0.0, torch.zeros(N, N), z))
                expect_clean(f"forward_scan_rec y0 {label}",
                             lambda: numba_leaky.forward_scan_rec(
                                 spec, xs, z, None, 0.9, None, 1.0, 0.0, torch.zeros(N, N), s))
                expect_clean(f"backward_scan_rec gv {label}",
                             lambda: numba_leaky.backward_scan_rec(
                                 spec, torch.ones(()), xs, 1.0, 0.0, 0.9, None, s, None,
                                 torch.zeros(N, N)))
                xin = (torch.rand(4, B, 12) < 0.3).float()
                expect_clean(f"projected_lif v0 {label}", lambda: projected.projected_lif(
                    xin, torch.randn(N, 12), None, s, None, F.LIFParams()))
                expect_clean(f"projected_recurrent_lif y0 {label}",
                             lambda: projected.projected_recurrent_lif(
                                 xin, torch.randn(N, 12), None, torch.zeros(N, N), s, z, None,
                                 F.LIFParams()))
elif part == "triton":
    from spikegrad.kernels import triton_leaky as tk
    from spikegrad.kernels.spec import Spec
    spec = Spec(True, "subtract", True, False, True, sg.surrogate.get("fast_sigmoid"), "triton")
    xs, z = torch.rand(3, 4, 8), torch.zeros(4, 8)
    for label, shape, dtype in mismatches(4, 8):
        s = torch.rand(shape, dtype=dtype)
        if dtype == torch.float64 and shape == (4, 8):
            continue  # cast deliberately at this level (the public entry rejects it)
        expect_clean(f"triton forward_scan v0 {label}",
                     lambda: tk.forward_scan(spec, xs, s, z, 0.9, 0.8, 1.0, 0.0))
        expect_clean(f"triton forward_scan i0 {label}",
                     lambda: tk.forward_scan(spec, xs, z, s, 0.9, 0.8, 1.0, 0.0))
        expect_clean(f"leaky_sequence triton v0 {label}",
                     lambda: leaky_sequence(xs, s, z, F.LIFParams(decay_syn=0.8), spiking=True,
                                            backend="triton"))
    expect_clean("triton half", lambda: leaky_sequence(
        xs.half(), z.half(), z.half(), F.LIFParams(decay_syn=0.8), spiking=True,
        backend="triton"))
import gc
gc.collect()
torch.randn(1 << 20).sum()   # allocate after the calls: heap damage would surface here
print(f"CLEAN {n_err}")
for b in bad:
    print("UNCLEAN", b)
'''


def _run_child(part: str, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, part], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode >= 0, (f"the {part} fuzz child died of signal {-proc.returncode}:\n"
                                  f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    unclean = [line for line in proc.stdout.splitlines() if line.startswith("UNCLEAN")]
    assert not unclean, "\n".join(unclean)
    n = int(proc.stdout.split("CLEAN ")[1].split()[0])
    return n


@pytest.mark.parametrize("part", ["modules", "kernels"])
def test_fuzz_mismatched_states_in_subprocess(part):
    assert _run_child(part) >= 20


def test_fuzz_triton_interpreter_in_subprocess():
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("the interpreter run is for machines without CUDA")
    assert _run_child("triton", {"TRITON_INTERPRET": "1"}) >= 10


# --- (c) the dtype contract -------------------------------------------------------------------

HALF = [torch.float16, torch.bfloat16]


@needs_numba
@pytest.mark.parametrize("dtype", HALF)
def test_numba_rejects_half_types_naming_a_backend_that_takes_them(dtype):
    xs = torch.rand(4, 2, 8, dtype=dtype)
    for kind in ("LIF", "IF", "LI"):
        with pytest.raises(TypeError, match=r"backend='numba'.*float32 or float64.*'torch'"):
            getattr(sg.nn, kind)(8, backend="numba")(xs)
        with pytest.raises(TypeError, match="backend='torch'"):
            sg.nn.Recurrent(getattr(sg.nn, kind)(8, backend="numba"))(xs)
    with pytest.raises(CLEAN, match="float32 or float64"):
        sg.nn.ALIF(8, backend="numba")(xs)
    with pytest.raises(TypeError, match="float32 or float64") as err:
        F.lif_seq(xs, None, F.LIFParams(), backend="numba")
    assert isinstance(err.value, ValueError)  # also a ValueError, as before the contract


@pytest.mark.parametrize("dtype", HALF)
def test_auto_runs_half_types_like_the_reference(dtype):
    torch.manual_seed(0)
    xs = torch.rand(30, 3, 16, dtype=dtype)
    for kind in ("LIF", "IF", "LI"):
        for recurrent in (False, True):
            fast = getattr(sg.nn, kind)(16)
            ref = getattr(sg.nn, kind)(16, backend="reference")
            if recurrent:
                torch.manual_seed(1)
                fast = sg.nn.Recurrent(fast).to(dtype)
                torch.manual_seed(1)
                ref = sg.nn.Recurrent(ref).to(dtype)
            ys, s = fast(xs)
            ys_ref, s_ref = ref(xs)
            assert ys.dtype == dtype
            torch.testing.assert_close(ys, ys_ref, rtol=0, atol=0)


def test_alif_auto_runs_half_types():
    xs = torch.rand(10, 2, 8, dtype=torch.bfloat16)
    zs, _ = sg.nn.ALIF(8)(xs)
    zs_ref, _ = sg.nn.ALIF(8, backend="reference")(xs)
    assert torch.equal(zs, zs_ref)


@pytest.mark.parametrize("dtype", HALF)
def test_half_li_equals_float32_within_half_precision(dtype):
    xs = torch.rand(50, 3, 16)
    vs32, _ = sg.nn.LI(16, tau_mem=5e-3)(xs)
    vs16, _ = sg.nn.LI(16, tau_mem=5e-3)(xs.to(dtype))
    # a low-pass filter of inputs in [0, 1]: the error stays a few units of half's rounding
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(vs16.float(), vs32, rtol=20 * eps, atol=20 * eps)


def _net(lif_backend, linear_backend, seed=0):
    torch.manual_seed(seed)
    return sg.nn.Sequential(sg.nn.Linear(8, 32, backend=linear_backend),
                            sg.nn.LIF(32, backend=lif_backend),
                            sg.nn.Linear(32, 4, backend=linear_backend),
                            sg.nn.LI(4, backend=lif_backend))


@pytest.mark.parametrize("recurrent", [False, True])
def test_autocast_bfloat16_end_to_end(recurrent):
    xs = torch.rand(20, 3, 8)
    nets = {}
    for name, (lb, linb) in {"auto": ("auto", "auto"), "ref": ("reference", "dense")}.items():
        net = _net(lb, linb)
        if recurrent:
            torch.manual_seed(5)
            net.layers[1] = sg.nn.Recurrent(net.layers[1])
        nets[name] = net
    outs = {}
    for name, net in nets.items():
        with torch.autocast("cpu", torch.bfloat16):
            ys, _ = net(xs)
            loss = ys.float().pow(2).mean()
        loss.backward()
        assert ys.dtype == torch.bfloat16
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in net.parameters())
        outs[name] = ys
    # the fast path under autocast computes what the reference loop computes under autocast
    torch.testing.assert_close(outs["auto"], outs["ref"], rtol=0, atol=0)


def test_event_linear_under_autocast():
    from spikegrad.kernels.event_linear import event_linear, plan_event_linear
    x = (torch.rand(400, 64, 256) < 0.02).float()
    w = torch.randn(512, 256, requires_grad=True)
    with torch.autocast("cpu", torch.bfloat16):
        dense = torch.nn.functional.linear(x, w)
        assert plan_event_linear(x, w).backend == "dense"
        auto = event_linear(x, w)
        event = event_linear(x, w, backend="event")
        # a bf16 input (from an autocast layer before) with float32 weights: no dtype error
        auto_bf = event_linear(x.bfloat16(), w)
    assert auto.dtype == event.dtype == auto_bf.dtype == torch.bfloat16
    assert torch.equal(auto, dense)
    torch.testing.assert_close(event, dense, rtol=2e-2, atol=2e-2)
    with pytest.raises(TypeError, match="one dtype"):
        event_linear(x.bfloat16(), w)       # without autocast: mixed types are an error


def test_guard_error_types():
    assert issubclass(guards.DtypeError, TypeError) and issubclass(guards.DtypeError, ValueError)
    with pytest.raises(TypeError, match="floating-point"):
        guards.sequence(torch.zeros(3, 2, dtype=torch.int64))


def test_script_in_module_docstring_runs():
    # the reproduction of the issue, as a user would run it: exits cleanly
    code = textwrap.dedent("""
        import torch, spikegrad as sg
        m = sg.nn.Recurrent(sg.nn.LIF(16, backend="auto"))
        _, s = m(torch.rand(5, 3, 16))
        try:
            m(torch.rand(5, 4, 16), s)
        except ValueError as e:
            print("clean:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "clean:" in proc.stdout, proc.stderr[-2000:]
