"""The compiled event kernels: active inputs exactly as ``nonzero``, forward and weight gradient
equal to the dense GEMMs, at every ragged edge (input tails of the 16-wide compare, output
tails of the 64-byte blocks, short last row block), and independent of the number of threads."""

import threading

import numpy as np
import pytest
import torch

from spikegrad.kernels.registry import numba_available

from numerics import assert_matmul_up_to_order, random_spikes

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

if numba_available():
    from spikegrad.kernels import numba_event as ne
    from spikegrad.kernels import parallel



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows, n_in, p", [
    (1, 1, 1.0), (3, 15, 0.5), (5, 16, 0.5), (7, 17, 0.3), (40, 100, 0.05), (9, 33, 0.0),
    (9, 33, 1.0), (0, 8, 0.5)])
def test_active_inputs_are_exactly_the_nonzero_entries(dtype, n_rows, n_in, p):
    x = random_spikes((n_rows, n_in), p, dtype)
    rowptr, cols, binary = ne.active_csr(x)
    rows, want = np.nonzero(x.numpy())
    assert binary and rowptr.dtype == torch.int64 and cols.dtype == torch.int32
    assert cols.tolist() == want.tolist()
    assert rowptr.tolist() == np.searchsorted(rows, np.arange(n_rows + 1)).tolist()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_pattern_of_eight_inputs_is_packed_in_order(dtype):
    # group m of 8 inputs fires where the byte m has its bits: every entry of the left-pack
    # table (targets without AVX-512) and every compress mask; rows start at shifted offsets
    # so the groups also straddle the 16-wide compares, and 3 inputs are left for the tail
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    row = np.concatenate([bits.reshape(-1), [1, 0, 1]]).astype(np.float64)
    x = torch.from_numpy(np.stack([np.roll(row, s) for s in range(5)])).to(dtype)
    rowptr, cols, binary = ne.active_csr(x)
    rows, want = np.nonzero(x.numpy())
    assert binary and cols.tolist() == want.tolist()
    assert rowptr.tolist() == np.searchsorted(rows, np.arange(6)).tolist()


@pytest.mark.parametrize("cpu, features, compress", [
    ("sapphirerapids", "+avx2,+avx512f,+avx512bw", True),
    ("znver4", "+avx2,+avx512f,+avx512bw", False),   # memory-form compress is microcoded
    ("znver5", "+avx512f", False),
    ("znver3", "+avx2,-avx512f", False),
    ("skylake-avx512", "-avx512f", False),            # features override the CPU name
    ("generic", "", False)])
def test_the_compress_store_is_used_only_where_it_is_fast(cpu, features, compress):
    assert ne.use_compress_store(cpu, features) is compress


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_scratch_buffers_grow_and_are_reused_without_stale_entries(monkeypatch, threads):
    # scratch starts at one row's worth (33 entries): it doubles many times within a call;
    # a later call with fewer active inputs reuses the grown buffers
    monkeypatch.setattr(ne, "_SCRATCH_START", 1)
    monkeypatch.setattr(ne, "_scratch", threading.local())
    monkeypatch.setattr(parallel, "MIN_WORK_PER_THREAD", 1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for p in (0.9, 0.1, 0.5):
            x = random_spikes((60, 33), p, torch.float32)
            rowptr, cols, binary = ne.active_csr(x)
            rows, want = np.nonzero(x.numpy())
            assert binary and cols.tolist() == want.tolist()
            assert rowptr.tolist() == np.searchsorted(rows, np.arange(61)).tolist()
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value, column", [(2.0, 3), (0.5, 10), (-1.0, 0), (float("nan"), 17),
                                           (float("inf"), 18)])
def test_a_non_binary_entry_is_reported_in_the_vector_part_and_in_the_tail(dtype, value, column):
    x = random_spikes((4, 19), 0.3, dtype)  # 19 inputs: 16 in vector compares + 3 tail
    x[2, column] = value
    assert ne.active_csr(x)[2] is False


def test_negative_zero_is_silent():
    x = torch.zeros(2, 20)
    x[0, 3], x[1, 18] = -0.0, -0.0
    rowptr, cols, binary = ne.active_csr(x)
    assert binary and cols.numel() == 0 and rowptr.tolist() == [0, 0, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows, n_in, n_out, p", [
    (50, 30, 1, 0.3), (50, 30, 7, 0.3), (50, 30, 16, 0.3), (50, 30, 37, 0.3), (600, 70, 40, 0.1),
    (300, 5, 24, 0.0), (300, 5, 24, 1.0), (0, 5, 9, 0.5)])
def test_forward_and_weight_gradient_equal_the_dense_products(dtype, n_rows, n_in, n_out, p):
    gen = torch.Generator().manual_seed(1)
    x = random_spikes((n_rows, n_in), p, dtype)
    w = torch.randn(n_out, n_in, generator=gen, dtype=dtype)
    g = torch.randn(n_rows, n_out, generator=gen, dtype=dtype)
    rowptr, cols, _ = ne.active_csr(x)
    y = ne.forward(rowptr, cols, w)
    dw = ne.weight_grad(g, rowptr, cols, n_in)
    assert y.shape == (n_rows, n_out) and dw.shape == (n_out, n_in)
    assert y.dtype == dw.dtype == dtype
    assert_matmul_up_to_order(y, x, w.t())
    assert_matmul_up_to_order(dw, g.t(), x)


def test_weight_gradient_spans_many_row_blocks_with_a_short_last_one(monkeypatch):
    monkeypatch.setattr(ne, "ROW_BLOCK", 16)
    x = random_spikes((16 * 9 + 5, 21), 0.4, torch.float64)
    g = torch.randn(x.shape[0], 19, dtype=torch.float64)
    rowptr, cols, _ = ne.active_csr(x)
    assert_matmul_up_to_order(ne.weight_grad(g, rowptr, cols, 21), g.t(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_are_bit_identical_on_one_two_and_three_threads(threads, dtype):
    x = random_spikes((700, 45), 0.2, dtype)
    w = torch.randn(50, 45, dtype=dtype)                   # 50 = 3 full blocks + a tail (f32)
    g = torch.randn(700, 50, dtype=dtype)
    results = []
    for k in (1, 2, 3):
        threads(k)
        assert len(parallel.split(4, 10**9)) == min(k, 4)
        rowptr, cols, binary = ne.active_csr(x)
        results.append((rowptr, cols, ne.forward(rowptr, cols, w),
                        ne.weight_grad(g, rowptr, cols, 45)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_block_gathered_in_a_pair_sums_as_one_gathered_alone(dtype):
    # 3 full blocks and a tail: a pair, then a lone full block and a lone tail; each block
    # alone (its own slice of the weight / of the gradient) is gathered by itself
    L = ne.lanes(dtype)
    n_out = 3 * L + 5
    x = random_spikes((900, 70), 0.15, dtype, seed=3)
    w = torch.randn(n_out, 70, dtype=dtype, generator=torch.Generator().manual_seed(4))
    g = torch.randn(900, n_out, dtype=dtype, generator=torch.Generator().manual_seed(5))
    rowptr, cols, _ = ne.active_csr(x)
    y, dw = ne.forward(rowptr, cols, w), ne.weight_grad(g, rowptr, cols, 70)
    for c0 in range(0, n_out, L):
        c1 = min(n_out, c0 + L)
        assert torch.equal(y[:, c0:c1], ne.forward(rowptr, cols, w[c0:c1].contiguous()))
        assert torch.equal(dw[c0:c1],
                           ne.weight_grad(g[:, c0:c1].contiguous(), rowptr, cols, 70))


def test_a_strided_weight_is_packed_like_its_contiguous_copy():
    w = torch.randn(70, 40, generator=torch.Generator().manual_seed(6)).t()   # [40, 70] view
    assert not w.is_contiguous()
    x = random_spikes((50, 70), 0.2, torch.float32, seed=7)
    rowptr, cols, _ = ne.active_csr(x)
    assert np.array_equal(ne.pack_weight(w), ne.pack_weight(w.contiguous()))
    assert torch.equal(ne.forward(rowptr, cols, w), ne.forward(rowptr, cols, w.contiguous()))


def test_the_gradient_of_a_sum_arrives_expanded_and_is_read_correctly():
    x = random_spikes((64, 20), 0.3, torch.float32)
    g = torch.ones(1, 1).expand(64, 18)                    # all strides 0
    rowptr, cols, _ = ne.active_csr(x)
    assert_matmul_up_to_order(ne.weight_grad(g, rowptr, cols, 20), torch.ones(64, 18).t(), x)


def test_lanes_per_64_byte_block():
    assert ne.lanes(torch.float32) == 16 and ne.lanes(torch.float64) == 8
