"""The compiled loops stay vectorised: LLVM's optimised IR of the hot kernels holds vector
arithmetic. Losing it changes no result, only the time (3x on the LIF backward), so no parity
test notices: numba's default error model, which guards every division with a zero check, did
it once (benchmarks/README.md). (The other cause found then -- overlap checks that always
failed at run time, sending vectorised code to its scalar fallback -- is not visible in the IR;
it showed in the timings.)"""

import re

import numba
import numpy as np
import pytest
import torch

import spikegrad as sg
from spikegrad.kernels.registry import numba_available
from spikegrad.kernels.spec import SURROGATE_IDS

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")


def _vector_ops(dispatcher) -> set:
    """Vector float operations in the optimised IR of every compiled signature (recompiled
    here without the disk cache, whose entries numba cannot inspect)."""
    assert dispatcher.signatures, "the kernel was not compiled by this test's calls"
    options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(dispatcher.py_func)
    for sig in dispatcher.signatures:
        fresh.compile(sig)
    ir = "\n".join(fresh.inspect_llvm().values())
    return set(re.findall(r"\b(fadd|fmul|fdiv|fsub) (?:fast )?<\d+ x float>", ir))


@pytest.mark.parametrize("recurrent", [False, True])
def test_lif_forward_and_backward_kernels_are_vectorised(recurrent):
    from spikegrad.kernels import numba_leaky as nl
    lif = sg.nn.LIF(40, surrogate="fast_sigmoid", backend="numba")
    layer = sg.nn.Recurrent(lif) if recurrent else lif
    x = (torch.rand(20, 3, 40) * 2).requires_grad_()
    ys, _ = layer(x)
    ys.sum().backward()           # a gradient constant in time: the one-row path
    kind = SURROGATE_IDS[lif.surrogate.derivative]
    if recurrent:
        from spikegrad.kernels import blas
        bwd = nl._bwd_rec_kernel(True, 1, True, False, kind, np.float32, False, False, False,
                                 False, blas.gemm(torch.float32) is not None)
    else:
        bwd = nl._bwd_kernel(True, 1, True, False, kind, np.float32, False, False, False)
        fwd = nl._fwd_kernel(True, 1, False, False, True, False, False, False, np.float32)
        assert {"fadd", "fmul"} <= _vector_ops(fwd)
    assert {"fdiv", "fmul"} <= _vector_ops(bwd)    # the surrogate's division, vectorised


def test_fused_pair_in_place_kernels_are_vectorised():
    # Sequential's Linear -> LIF writes the membrane over the input current and the gradient
    # over the membrane: kernel variants of their own (the out-of-place ones, given the same
    # array twice, would run their scalar fallback)
    from spikegrad.kernels import numba_leaky as nl
    net = sg.nn.Sequential(sg.nn.Linear(30, 40), sg.nn.LIF(40, surrogate="fast_sigmoid"))
    ys, _ = net((torch.rand(20, 3, 30) < 0.3).float())
    ys.sum().backward()
    assert ys.grad_fn.saved.n_kept == 1
    kind = SURROGATE_IDS[net[1].surrogate.derivative]
    fwd = nl._fwd_kernel(True, 1, False, False, True, False, False, False, np.float32,
                         inplace=True)
    bwd = nl._bwd_kernel(True, 1, True, False, kind, np.float32, False, False, False, True)
    assert {"fadd", "fmul"} <= _vector_ops(fwd)
    assert {"fdiv", "fmul"} <= _vector_ops(bwd)


def test_event_kernels_use_vector_loads_and_adds():
    from spikegrad.kernels import numba_event as ne
    x = (torch.rand(300, 40) < 0.3).float()
    rowptr, cols, _ = ne.active_csr(x)
    ne.weight_grad(torch.randn(300, 24), rowptr, cols, 40)
    ne.forward(rowptr, cols, torch.randn(24, 40))
    for kernel in (ne._forward_kernel, ne._weight_grad_kernel):
        assert "fadd" in _vector_ops(kernel)


def test_narrow_kernels_use_vector_loads_adds_and_fused_multiply_adds():
    from spikegrad.kernels import numba_event as ne
    from spikegrad.kernels import numba_narrow as nw
    x = (torch.rand(300, 40) < 0.3).float()
    rowptr, cols, _ = ne.active_csr(x)
    g, w = torch.randn(300, 20), torch.randn(20, 40)
    nw.forward(rowptr, cols, w)
    nw.weight_grad(g, rowptr, cols, 40)
    nw.input_grad(g, w)
    for kernel in (nw._forward_kernel, nw._weight_grad_kernel):
        assert "fadd" in _vector_ops(kernel)
    fresh = numba.njit(nogil=True)(nw._input_grad_kernel.py_func)
    fresh.compile(nw._input_grad_kernel.signatures[0])
    ir = "\n".join(fresh.inspect_llvm().values())
    # one vector multiply-add per block and output (fused where the target has FMA)
    assert re.search(r"@llvm\.fmuladd\.v\d+f32\(", ir) or \
        re.search(r"\bfmul (?:fast )?<\d+ x float>", ir)
