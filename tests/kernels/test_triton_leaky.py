"""The Triton kernels equal the reference loop.

On a machine with CUDA they run on the GPU; without one, in Triton's interpreter on CPU
tensors (``TRITON_INTERPRET=1``, set here before the kernels' module is imported), which
checks the kernels' arithmetic and indexing. What only the GPU compiler sees (types,
fused multiply-adds) is checked by compiling every variant for an sm_90 target, which
needs no GPU. Skipped without triton (``pip install 'spikegrad[gpu]'``).
"""

import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")
CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import spikegrad as sg  # noqa: E402
from spikegrad.functional import LIFParams, LIParams, LIState, li_seq, lif_seq  # noqa: E402
from spikegrad.kernels import registry  # noqa: E402
from spikegrad.kernels import triton_leaky as tk  # noqa: E402
from numerics import (assert_close_to_reference, assert_decisions_clear, chain,  # noqa: E402
                      membrane_chain, spike_margins)
from test_leaky_parity import _assert_same, _lif_case  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not CUDA and not tk.INTERPRETED,
    reason="no CUDA, and the Triton kernels were compiled before TRITON_INTERPRET was set")


@pytest.mark.parametrize("reset, detach, syn, scale", list(itertools.product(
    ["subtract", "to_value", "none"], [True, False], [False, True], [False, True])))
def test_lif_options_float64(reset, detach, syn, scale):
    kw = dict(reset=reset, detach=detach, syn=syn, scale=scale)
    _assert_same(_lif_case("reference", **kw), _lif_case("triton", device=DEVICE, **kw),
                 chain(7, 3 * 5))


@pytest.mark.parametrize("surrogate", sg.surrogate.names())
@pytest.mark.parametrize("T", [1, 7, 128])
def test_lif_every_surrogate_and_length(surrogate, T):
    if surrogate.startswith("test_"):
        pytest.skip("registered by another test")
    kw = dict(surrogate=surrogate, T=T, syn=True, detach=False)
    _assert_same(_lif_case("reference", **kw), _lif_case("triton", device=DEVICE, **kw),
                 chain(T, 3 * 5))


@pytest.mark.parametrize("reset, syn", [("subtract", True), ("to_value", False)])
def test_lif_float32(reset, syn):
    kw = dict(reset=reset, syn=syn, T=128, dtype=torch.float32, B=4, detach=False)
    with spike_margins() as margins:
        ref = _lif_case("reference", compute=torch.float64, **kw)
    assert_decisions_clear(margins, torch.float32, membrane_chain(128, decay=0.95))
    _assert_same(ref, _lif_case("triton", device=DEVICE, **kw), chain(128, 4 * 5))


@pytest.mark.parametrize("syn", [False, True])
def test_li_parity(syn):
    def run(b, device):
        torch.manual_seed(0)
        leaves = [torch.randn(9, 2, 3, dtype=torch.float64),
                  torch.tensor([0.5, 0.8, 0.9], dtype=torch.float64),
                  torch.randn(2, 3, dtype=torch.float64)]
        if syn:
            leaves += [torch.tensor(0.6, dtype=torch.float64), torch.randn(2, 3,
                                                                      dtype=torch.float64)]
        leaves = [t.to(device).requires_grad_() for t in leaves]
        xs, a, v0 = leaves[:3]
        a_s, i0 = leaves[3:] if syn else (None, None)
        vs, s = li_seq(xs, LIState(v0, i0), LIParams(a, a_s, scale_input=True), backend=b)
        grads = torch.autograd.grad((vs ** 3).sum() + s.v.sum(), leaves)
        return [vs.detach().cpu()] + [g.cpu() for g in grads]
    for k, (r, o) in enumerate(zip(run("reference", "cpu"), run("triton", DEVICE))):
        assert_close_to_reference(o, r, chain(9, 2 * 3), msg=f"output {k}")


def test_user_surrogate_and_expanded_gradient():
    # a user's surrogate is evaluated by its torch function; the gradient of zs.sum()
    # arrives expanded (stride 0 in time) and is read as one row for every step
    s = sg.surrogate.Surrogate("user_quartic", lambda x, b: b / (1 + (b * x) ** 4),
                               lambda x, b: x, 2.0)
    def run(b, device):
        torch.manual_seed(0)
        xs = (torch.rand(12, 2, 3, dtype=torch.float64) * 0.9).to(device).requires_grad_()
        zs, _ = lif_seq(xs, None, LIFParams(decay_mem=0.9, surrogate=s), backend=b)
        return zs.detach().cpu(), torch.autograd.grad(zs.sum(), xs)[0].cpu()
    (z_ref, g_ref), (z, g) = run("reference", "cpu"), run("triton", DEVICE)
    assert torch.equal(z, z_ref) and 0 < z_ref.mean() < 1
    assert_close_to_reference(g, g_ref, chain(12, 2))


@pytest.mark.parametrize("block", [32, 64])
def test_many_programs_and_a_partial_block(monkeypatch, block):
    # rows longer than one block (M = 3 * 50 = 150): several programs, the last one masked
    monkeypatch.setattr(tk, "_launch", lambda M, device: ((-(-M // block),), block, 1))
    def run(b, device):
        torch.manual_seed(0)
        xs = (torch.rand(20, 3, 50) * 0.9).to(device).requires_grad_()
        v0 = (torch.rand(3, 50) * 0.5).to(device).requires_grad_()
        th = torch.linspace(0.7, 1.2, 50).to(device).requires_grad_()
        p = LIFParams(decay_mem=0.85, threshold=th, detach_reset=False, decay_syn=0.6)
        zs, st = lif_seq(xs, sg.functional.LIFState(v0, torch.zeros_like(v0)), p, backend=b)
        grads = torch.autograd.grad((zs * zs.new_tensor(range(50)).sin()).sum()
                                    + st.v.sum(), [xs, v0, th])
        return [zs.detach().cpu(), st.v.detach().cpu()] + [g.cpu() for g in grads]
    with spike_margins() as margins:   # two float32 paths: decisions clear of both
        ref = run("reference", "cpu")
    assert_decisions_clear(margins, torch.float32, membrane_chain(20, decay=0.85), paths=2)
    out = run("triton", DEVICE)
    assert torch.equal(out[0], ref[0]) and 0 < ref[0].mean() < 1
    for k, (r, o) in enumerate(zip(ref[1:], out[1:])):
        assert_close_to_reference(o, r, chain(20, 3), msg=f"output {k}")


def test_inference_writes_no_membrane_and_matches():
    torch.manual_seed(0)
    xs = torch.rand(30, 4, 6).to(DEVICE)
    p = LIFParams(decay_mem=0.9, decay_syn=0.5)
    with torch.no_grad():
        z, s = lif_seq(xs, None, p, backend="triton")
    z_ref, s_ref = lif_seq(xs.cpu(), None, p, backend="reference")
    assert torch.equal(z.cpu(), z_ref) and torch.equal(s.v.cpu(), s_ref.v)
    assert torch.equal(s.i.cpu(), s_ref.i)


def test_auto_and_explicit_choices(monkeypatch):
    cpu = torch.rand(3, 2, 4)
    # auto never takes the interpreter: on the CPU it is numba or torch
    assert registry.choose("auto", registry.Call("leaky", cpu)) in ("numba", "torch")
    with pytest.raises(ValueError, match="feed-forward sequences only"):
        registry.choose("triton", registry.Call("leaky", cpu.to(DEVICE), recurrent=True))
    with pytest.raises(ValueError, match="float32 or float64"):
        registry.choose("triton", registry.Call("leaky", cpu.to(DEVICE).half(), recurrent=False))
    with pytest.raises(ValueError, match="ALIF has no fused path"):
        sg.nn.ALIF(4, backend="triton")
    monkeypatch.setattr(tk, "INTERPRETED", False)
    if not CUDA:
        with pytest.raises(ValueError, match="runs on CUDA tensors"):
            registry.choose("triton", registry.Call("leaky", cpu, recurrent=False))
    monkeypatch.setattr(registry, "triton_available", lambda: False)
    with pytest.raises(ImportError, match="needs triton"):
        registry.choose("triton", registry.Call("leaky", cpu.to(DEVICE), recurrent=False))


def test_launch_gives_every_sm_two_programs(monkeypatch):
    monkeypatch.setattr(tk, "_sm_count", lambda device: 132)
    cuda = torch.device("cuda")
    for M in (16, 8192, 32 * 1024, 10 ** 6):
        (programs,), block, warps = tk._launch(M, cuda)
        assert programs * block >= M > (programs - 1) * block
        assert programs >= 264 or block == 32
        assert warps * 32 <= block


_COMPILE = textwrap.dedent("""
    import itertools, json, triton
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    from spikegrad.kernels import triton_leaky as tk
    assert not tk.INTERPRETED
    def build(fn, types, consts, warps=4):
        sig, cx = {}, {}
        for k, p in enumerate(fn.params):
            if p.is_constexpr:
                sig[p.name] = "constexpr"; cx[(k,)] = consts[p.name]
            else:
                sig[p.name] = types.get(p.name, types["*"])
        return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=cx),
                              target=GPUTarget("cuda", 90, 32),
                              options=dict(num_warps=warps, enable_fp_fusion=False))
    fmas = []
    n = 0
    for dt in ("fp32", "fp64"):
        types = {"*": "*" + dt, "T": "i32", "M": "i32", "gy_step": "i32"}
        for spiking, reset, syn, scale, store in itertools.product(
                (True, False), (0, 1, 2), (False, True), (False, True), (False, True)):
            if not spiking and (reset or not store):
                continue
            k = build(tk._forward_kernel, types, dict(SPIKING=spiking, RESET=reset,
                      HAS_SYN=syn, SCALE=scale, STORE_U=store, BLOCK=128))
            fmas += [l for l in k.asm["ptx"].splitlines() if "fma" in l]
            n += 1
        for spiking, reset, detach, syn, kind in itertools.product(
                (True, False), (0, 1, 2), (False, True), (False, True), range(8)):
            if not spiking and (reset or kind or not detach):
                continue
            build(tk._backward_kernel, types, dict(SPIKING=spiking, RESET=reset,
                  DETACH=detach, HAS_SYN=syn, KIND=kind, BLOCK=128))
            n += 1
    print(json.dumps(dict(compiled=n, fma=fmas[:3])))
""")


def test_every_variant_compiles_for_the_gpu_without_fused_multiply_adds():
    # Triton's own compiler for an H100/H200-class target (sm_90), no GPU needed: catches
    # what the interpreter lets through (types of loop-carried values, constexpr branches),
    # and checks the forward keeps the reference's separate roundings (no FMA)
    import json
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # per float type: forward 24 LIF + 4 LI variants, backward 96 LIF (8 surrogate ids) + 2 LI
    assert result["compiled"] == 2 * (24 + 4 + 96 + 2)
    assert result["fma"] == []


def test_gpu_benchmark_script_runs_in_the_interpreter(tmp_path):
    # benchmarks/gpu.py, the script a GPU session runs, on the CPU (short sequences): every
    # backend's spikes equal the reference loop's and its weight gradient is close
    import json
    script = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "gpu.py")
    out = subprocess.run([sys.executable, script, "--interpret", "--workloads", "B",
                          "--out", str(tmp_path / "gpu.md")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert [r["backend"] for r in rows] == ["reference", "torch", "triton"]
    assert all(r["spikes_equal"] and r["weight_grad_close"] and r["rate"] > 0 for r in rows)


# the kernels' surrogate function on its own, over a grid (interpreter or GPU)
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

_phi = tk._phi


@triton.jit
def _phi_over(x_ptr, out_ptr, n, beta, KIND: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, _phi(x, beta, KIND), mask=mask)


# exp(-beta x) overflows to inf in the tails (the sigmoid is then exactly 0, as in torch)
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta", [0.5, 1.7, 10.0, 100.0])
def test_triton_surrogates_equal_the_torch_table_on_a_dense_grid_and_the_tails(beta, dtype):
    from test_leaky_parity import _surrogate_grid
    x = _surrogate_grid(beta, dtype).to(DEVICE)
    eps = torch.finfo(dtype).eps
    for fn, kind in tk.SURROGATE_IDS.items():
        want = sg.surrogate.Surrogate("probe", fn, fn, beta).grad(x)
        got = torch.empty_like(x)
        _phi_over[(triton.cdiv(x.numel(), 256),)](x, got, x.numel(), beta, KIND=kind,
                                                 BLOCK=256)
        assert bool(torch.isfinite(got).all())
        torch.testing.assert_close(got, want, rtol=8 * eps, atol=8 * eps * beta,
                                   msg=f"surrogate id {kind} ({fn.__name__}), beta {beta}")
