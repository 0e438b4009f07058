"""The narrow-layer kernels (readouts, rows split over threads): forward, weight gradient and
input gradient equal to the dense products at every ragged edge (1-32 outputs, inputs not a
multiple of the 64-byte block, a short last chunk of rows), bit-identical on any number of
threads, and arguments the compiled loops would misread rejected."""

import pytest
import torch

from spikegrad.kernels.registry import numba_available

from numerics import assert_matmul_up_to_order, random_spikes

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba not installed")

if numba_available():
    from spikegrad.kernels import numba_event as ne
    from spikegrad.kernels import numba_narrow as nw


def case(n_rows, n_in, n_out, p, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    x = random_spikes((n_rows, n_in), p, dtype, seed)
    w = torch.randn(n_out, n_in, generator=gen, dtype=dtype)
    g = torch.randn(n_rows, n_out, generator=gen, dtype=dtype)
    rowptr, cols, _ = ne.active_csr(x)
    return x, w, g, rowptr, cols


SHAPES = [  # (rows, in, out, density): one and two 64-byte output blocks, partial ones,
    (50, 30, 1, 0.3), (50, 30, 7, 0.3), (40, 100, 16, 0.1), (40, 100, 17, 0.1),
    (300, 70, 20, 0.2), (200, 256, 32, 0.05), (30, 5, 3, 1.0), (30, 9, 4, 0.0), (0, 8, 5, 0.5),
    (2500, 67, 10, 0.1)]  # 67 inputs: four-block, one-block and partial input-gradient blocks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_rows, n_in, n_out, p", SHAPES)
def test_forward_and_both_gradients_equal_the_dense_products(dtype, n_rows, n_in, n_out, p):
    n_out = min(n_out, 2 * ne.lanes(dtype))
    x, w, g, rowptr, cols = case(n_rows, n_in, n_out, p, dtype)
    assert_matmul_up_to_order(nw.forward(rowptr, cols, w), x, w.t())
    assert_matmul_up_to_order(nw.weight_grad(g, rowptr, cols, n_in), g.t(), x)
    assert_matmul_up_to_order(nw.input_grad(g, w), g, w)


def test_the_weight_gradient_spans_many_chunks_with_a_short_last_one(monkeypatch):
    monkeypatch.setattr(nw, "CHUNK_ROWS", 64)
    x, w, g, rowptr, cols = case(64 * 7 + 13, 40, 20, 0.2, torch.float32)
    assert_matmul_up_to_order(nw.weight_grad(g, rowptr, cols, 40), g.t(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_results_are_bit_identical_on_one_two_and_three_threads(monkeypatch, threads, dtype):
    monkeypatch.setattr(nw, "CHUNK_ROWS", 100)     # several chunks for the threads to share
    x, w, g, rowptr, cols = case(1000, 83, 12, 0.15, dtype)
    results = []
    for k in (1, 2, 3):
        threads(k)
        results.append((nw.forward(rowptr, cols, w), nw.weight_grad(g, rowptr, cols, 83),
                        nw.input_grad(g, w)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_arguments_the_loops_would_misread_are_rejected():
    x, w, g, rowptr, cols = case(20, 10, 5, 0.3, torch.float32)
    with pytest.raises(ValueError, match="1 to 32"):
        nw.forward(rowptr, cols, torch.randn(33, 10))
    with pytest.raises(ValueError, match="1 to 16"):
        nw.input_grad(g.double().repeat(1, 4)[:, :17], torch.randn(17, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="outside"):
        nw.forward(rowptr, cols, w[:, :4])         # inputs 4..9 fired: past a 4-input W
    with pytest.raises(ValueError, match="outside"):
        nw.weight_grad(g, rowptr, cols, 4)
    with pytest.raises(ValueError, match="rows"):
        nw.weight_grad(g[:7], rowptr, cols, 10)
    with pytest.raises(ValueError, match="start at 0"):
        nw.forward(rowptr[3:], cols, w)
    with pytest.raises(ValueError, match="do not match"):
        nw.input_grad(g, w.double())
    with pytest.raises(ValueError, match="do not match"):
        nw.input_grad(g, w[:4])
    with pytest.raises(ValueError, match="rowptr"):
        nw.forward(rowptr.to(torch.int32), cols, w)
    with pytest.raises(ValueError, match="2-D"):
        nw.input_grad(g.reshape(-1), w)


def test_a_non_contiguous_gradient_is_read_by_its_values():
    x, w, g, rowptr, cols = case(60, 33, 9, 0.2, torch.float32)
    gt = g.t().contiguous().t()                    # same values, column-major
    assert not gt.is_contiguous()
    assert torch.equal(nw.weight_grad(gt, rowptr, cols, 33), nw.weight_grad(g, rowptr, cols, 33))
    assert torch.equal(nw.input_grad(gt, w), nw.input_grad(g, w))
