"""The specialised kernels (closures over compiled functions) load from numba's disk cache in
a new process, and their key changes with what they call."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from spikegrad.kernels.registry import numba_available

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

# a LIF net and a spiking conv block (direct conv weight gradient, fused norm-LIF-pool),
# forward and backward
_CHILD = textwrap.dedent("""
    import torch
    import spikegrad as sg
    net = sg.nn.Sequential(sg.nn.Linear(12, 16), sg.nn.LIF(16, backend="numba"),
                           sg.nn.Linear(16, 3), sg.nn.LI(3))
    out, _ = net((torch.rand(6, 2, 12) < 0.3).float())
    out.sum().backward()
    block = sg.nn.spiking_conv((2, 8, 8), 4, 3, padding=1, pool="avg")
    out, _ = sg.nn.Sequential(*block.layers)((torch.rand(4, 2, 2, 8, 8) < 0.3).float())
    out.sum().backward()
""")

_KERNELS = ("numba_leaky._fwd_kernel.locals.fwd", "numba_leaky._bwd_kernel.locals.bwd",
            "conv_block._kernels.locals.forward", "conv_block._kernels.locals.backward",
            "direct_conv._kernels.locals.weight_grad")


def _cache_log(cache_dir) -> str:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), NUMBA_DEBUG_CACHE="1")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_a_second_process_compiles_nothing(tmp_path):
    first = _cache_log(tmp_path)
    second = _cache_log(tmp_path)
    saved = [line for line in first.splitlines() if "data saved" in line]
    for name in _KERNELS:
        assert any(name in line for line in saved), name
    assert not [line for line in second.splitlines() if "data saved" in line]
    loaded = [line for line in second.splitlines() if "data loaded" in line]
    for name in _KERNELS:
        assert any(name in line for line in loaded), name


_CALLEE = "import numba\n\n\n@numba.njit\ndef leaf(x):\n    return x + {}\n"


def _make(c, leaf):
    import numba

    @numba.njit
    def f(x):
        return leaf(x) * c
    return f


def test_closure_key_follows_the_cells_and_the_callees_source(tmp_path, monkeypatch):
    from spikegrad.kernels.jit_cache import closure_key

    path = tmp_path / "jit_cache_callee.py"
    path.write_text(_CALLEE.format(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("jit_cache_callee")
    key = closure_key(_make(2, mod.leaf).py_func)
    # a new compiled object of the same source (a new process's): the same key
    assert closure_key(_make(2, importlib.reload(mod).leaf).py_func) == key
    assert closure_key(_make(3, mod.leaf).py_func) != key
    path.write_text(_CALLEE.format(10))
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert closure_key(_make(2, importlib.reload(mod).leaf).py_func) != key
    assert closure_key((lambda: 0)) == b""  # no closure
