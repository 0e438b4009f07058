"""Event-driven synapses: ``y = x W^T + b`` and ``dW = g^T x`` from the active inputs only.

Inputs of a synaptic layer are usually binary spikes ``x [..., in]`` in {0, 1}. With
``nnz = count(x != 0)`` active inputs among the ``N = prod(x.shape[:-1])`` rows, the output
row ``n`` is the sum of the weight columns of its active inputs, and the weight gradient row
``i`` is the sum of the output gradients of the rows where input ``i`` fired::

    y[n]     = b + sum_{i : x[n, i] = 1} W[:, i]          (forward:  nnz * out adds)
    dW[:, i] =     sum_{n : x[n, i] = 1} g[n]             (backward: nnz * out adds)
    dX       = g W      (dense: the surrogate gradient reaches silent inputs too)
    db       = sum_n g[n]

against ``N * in * out`` multiply-adds for the dense time-folded GEMM. Two implementations of
the sums, with equal results (up to the order of float summation, like the dense path):

- **compiled** (:mod:`spikegrad.kernels.numba_event`; CPU, float32/float64, numba installed,
  as with the ``fast`` extra): the active inputs as CSR from a vector compress-store, the
  forward and weight-gradient gathers as 64-byte vector adds over blocks of output features
  that stay in L1, split over torch's threads. Used whenever it can run.
- **torch** (otherwise): ``torch.nn.functional.embedding_bag(mode="sum")`` calls (a
  JIT-compiled gather-sum on CPU): the forward gathers rows of ``W^T`` (bags = rows of ``x``,
  found by one ``argwhere`` over ``x``), the weight gradient gathers rows of ``g`` (bags =
  inputs, grouped by one integer sort of the active indices, in blocks of rows so that the
  rows of ``g`` being gathered stay in cache).

Backward needs ``x`` only through its active inputs: the layer saves their int32 indices (4
bytes per *active* input: a fraction ``p`` of the 4 bytes per input that the dense path keeps
for a float32 ``x``; the compiled path adds one int64 row pointer per row) and never a float
copy of ``x``.

Measured speedups of the compiled kernels (dense time / event time; > 1: event-driven wins),
float32, torch 2.13, numba 0.68, 2 threads, Intel Xeon (AVX-512) VM with 2 vCPUs, medians of 5
(3 for A2048 and 256 -> 256) interleaved runs, 2026-11-29, by
``python benchmarks/crossover_event_linear.py --shapes ... --densities ...``::

    shape x [N, in] -> out      p      forward    dW    fwd+bwd   dense fwd ms
    A512 8000x512->512         0.02     1.46     1.87     1.74       11.4
                               0.05     1.87     1.57     2.06       14.4
                               0.1      1.46     1.32     1.65       12.1
                               0.2      1.08     1.01     1.22       12.3
                               0.3      0.91     0.75     0.87       12.5
    A2048 8000x2048->2048      0.05     3.46     2.69     3.13      195.3
                               0.1      2.30     2.01     2.25      182.0
                               0.2      1.56     1.41     1.44      193.0
                               0.3      1.15     1.04     1.09      190.2
    8000x1024->1024            0.05     2.45     2.86     2.76       50.3
                               0.1      2.07     2.19     2.17       44.9
                               0.2      0.92     1.27     1.11       44.6
    B 6400x700->256            0.02     1.51     1.65     1.82        5.9
                               0.05     1.19     1.38     1.45        6.3
                               0.1      0.94     0.95     1.26        6.4
                               0.2      0.73     0.76     0.94        6.1
    8000x256->256              0.05     0.82     1.22     1.19        3.4
                               0.1      0.74     0.97     0.86        3.1
    8000x512->128              0.02     1.14     1.48     1.34        2.9
                               0.05     1.03     1.22     1.16        3.1
                               0.1      0.84     (1.9)    0.97        3.7

Crossover densities (fwd+bwd): 0.25 (A512), above 0.3 (A2048), 0.23 (1024), 0.17 (B), 0.07
(256 -> 256), 0.09 (512 -> 128): layers whose dense GEMM takes a few milliseconds leave the
event path's fixed costs (finding the active inputs, packing ``W``) less room. ``auto`` uses
the lowest per output size, rounded down (:func:`crossover_density`).

The torch (``embedding_bag``) implementation, measured on the same machine shared with other
jobs (load 5-10), medians of 5 interleaved runs, 2026-11-29. 1t: one thread; 2t: two threads
with ``OMP_WAIT_POLICY=PASSIVE`` (see the note below)::

    shape x [N, in] -> out      p       forward       dW        fwd+bwd    dense fwd
                                       1t    2t    1t    2t    1t    2t   ms (2t)
    B 6400x700->256            0.005   2.15  1.22  5.44  8.11  2.50  2.04    17.0
                               0.01    1.90  1.37  4.42  3.10  2.27  2.29    24.6
                               0.02    1.43  1.15  2.96  2.90  1.84  1.85    24.8
                               0.05    0.95  0.92  1.51  1.15  1.18  1.12    28.0
                               0.1     0.68  0.73  0.83  0.84  0.71  0.82    24.1
                               0.2     0.48  0.46  0.39  0.42  0.43  0.44    24.0
                               0.3     0.32  0.28  0.26  0.27  0.29  0.26    23.4

    A512 8000x512->512         0.005   2.17  1.91  5.00  4.36  2.53  2.19    42.8
                               0.01    2.30  2.23  4.63  4.24  2.61  2.77    46.3
                               0.02    1.93  1.73  4.36  2.79  2.04  2.33    44.4
                               0.05    1.33  1.10  1.57  1.81  1.45  1.63    42.9
                               0.1     0.98  0.84  0.98  0.86  0.90  0.84    43.7
                               0.2     0.58  0.49  0.55  0.45  0.49  0.48    44.1
                               0.3     0.53  0.40  0.29  0.32  0.31  0.38    45.5

    8000x512->128              0.005   1.37  0.78  1.92  5.13  1.56  1.54    13.4
                               0.01    0.95  0.77  4.58  2.67  1.54  0.92    15.8
                               0.02    0.77  0.54  3.43  1.47  1.42  1.04    12.9
                               0.05    0.96  0.50  0.98  0.64  0.97  0.59    12.3
                               0.1     0.46  0.30  0.50  0.43  0.54  0.35    12.8
                               0.2     0.30  0.32  0.23  0.20  0.32  0.22    16.2
                               0.3     0.30  0.20  0.15  0.23  0.20  0.19    12.6

    8000x1024->1024            0.005   3.45  3.97  8.88  6.15  3.80  4.09   172.2
                               0.01    3.03  2.88  4.94  3.60  3.99  2.87   180.1
                               0.02    2.40  2.00  2.80  1.66  2.14  1.78   170.1
                               0.05    1.18  1.35  1.15  1.20  1.10  1.19   185.4
                               0.1     0.76  0.80  0.87  0.65  0.77  0.69   182.8
                               0.2     0.37  0.41  0.38  0.36  0.34  0.36   172.0
                               0.3     0.25  0.27  0.24  0.24  0.26  0.23   188.9

    A2048 8000x2048->2048      0.005   5.45  4.34  9.81  5.22  5.91  4.98   798.3
                               0.01    3.55  3.71  5.06  4.70  3.96  3.63   541.5
                               0.02    2.55  2.39  2.93  2.56  2.71  2.44   525.5
                               0.05    1.18  1.21  1.07  0.99  1.17  1.04   708.5
                               0.1     0.62  0.69  0.58  0.39  0.59  0.50   826.5
                               0.2     0.29  0.34  0.26  0.19  0.26  0.27  1124.0
                               0.3     0.19  0.21  0.17  0.15  0.17  0.17   847.9

Crossover densities (speedup = 1; 1t / 2t): forward 0.044 / 0.035 (B), 0.096 / 0.064 (A512),
0.06 / 0.063 (A2048); forward + backward 0.063 / 0.064 (B), 0.086 / 0.084 (A512),
0.059 / 0.052 (A2048), 0.060 / 0.062 (1024 -> 1024), about 0.015 (512 -> 128). ``auto``
uses these, rounded down (:func:`crossover_density`). The crossover does not keep growing with
the layer width: a gathered row costs ``out`` adds but streams from L2 only while ``W^T``
(forward) or a block of rows of ``g`` (weight gradient) fits there.

Note on threads: with GNU OpenMP's default active spin-waiting, two threads on two cores that
other processes also use make every parallel op wait for a descheduled thread; the dense path
is one op, the event path about 25 small ones, and was measured 3-4x *slower* with 2 threads
than with 1 (A512, p=0.02: 173 ms against 49 ms; dense 112 ms) until ``OMP_WAIT_POLICY=PASSIVE``
was set (47 ms). Set it in the environment (before torch starts) on shared machines.

What was tried and dropped for the torch implementation (same machine, A512 unless said): sparse CSR
``x.to_sparse_csr() @ W^T`` (the conversion alone costs 15-70 ms, as much as the dense GEMM;
an MKL CSR built from our indices is still 1.5-4x slower than ``embedding_bag``);
``index_select`` + ``index_add_`` (materialises an ``nnz x out`` matrix: 3-20x slower than
dense); ``x_csr^T @ g`` or ``g^T @ x_csr`` for ``dW`` (slower than the gather-sum at every
density); the column-major structure for ``dW`` by a second ``argwhere`` over a transposed
copy of ``x`` (slower than sorting the int32 indices); an unblocked ``dW`` gather (1.5x slower
at p >= 0.05); blocking the forward over input columns for wide layers (no gain); row-wise
numba kernels (scan + add: the adds run at the same ~17 G/s as ``embedding_bag``, the scan is
slower than ``argwhere``; ``dW`` 1.3x faster at p = 0.1 but not worth a compiled dependency);
column compaction (random spike trains leave no input silent over thousands of rows, so it
never helped these workloads). Event-driven pays below a few percent density because a
gathered add streams its row from cache at ~4x the cost of a GEMM multiply-add.

Example:
    >>> import torch
    >>> from spikegrad.kernels.event_linear import event_linear
    >>> x = (torch.rand(50, 8, 64) < 0.02).float()   # [T, B, in] spikes
    >>> w = torch.randn(32, 64, requires_grad=True)
    >>> y = event_linear(x, w, backend="event")
    >>> torch.testing.assert_close(y, x @ w.t())
    >>> y.sum().backward()
    >>> torch.testing.assert_close(w.grad, torch.ones(32, 400) @ x.reshape(400, 64))
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import guards

BACKENDS = ("auto", "event", "dense")

# Elements of x inspected by the density estimate of backend="auto" (a strided subsample of rows:
# about 0.1 ms for 8000 x 512 against 3-9 ms for a full count_nonzero on 2 cores). Kept below
# torch's parallel grain (32768) so that the count runs on the calling thread: a parallel op
# leaves torch's OpenMP worker spinning for milliseconds on the core that the event kernels'
# second thread needs next (A512 step 31.5 -> 28-29 ms, B 18 -> 15.5-16 ms when this was 65536).
_SAMPLE_ELEMENTS = (1 << 15) - 1024
# Below this many multiply-adds (N * in * out) the dense GEMM takes under a millisecond and the
# fixed cost of the event path (about 25 small op calls) does not pay: measured at p = 0.01,
# 500 x 64 -> 256 (8M): forward+backward 0.6x; 1000 x 64 -> 512 and 2000 x 128 -> 128 (33M):
# forward+backward 1.4x, forward alone 0.5-0.8x; 4000 x 256 -> 256 (268M): forward 1.5x.
_MIN_WORK_TRAINING = 1 << 24
_MIN_WORK_INFERENCE = 1 << 27
# Rows of g gathered per block in the event weight gradient (about 1 MiB of g per block).
_BLOCK_BYTES = 1 << 20
# Largest flat index stored as int32 (beyond it the index stays int64).
_INT32_MAX = 2**31 - 1
# Upper bound on the per-block partial sums of the event weight gradient.
_PARTIAL_BYTES = 32 << 20


# --------------------------------------------------------------------------------------------
# the measured decision rule
# --------------------------------------------------------------------------------------------

# Crossover densities (speedup = 1, rounded down) measured by
# benchmarks/crossover_event_linear.py, by the number of output features, for each
# implementation of the event path: the lower over the shapes and thread counts measured
# (see the tables above and in benchmarks/README.md). Training = forward + weight gradient;
# inference = forward only. Linear interpolation in log2(out), clamped at the ends.
_CROSSOVER_OUT = (32, 64, 128, 256, 512, 1024, 2048)
_CROSSOVER = {
    # the compiled kernels (numba): 2026-11-29, 2 threads; 256 -> 256 and 512 -> 128 set the
    # 128-256 end (their dense GEMMs take ~3 ms, so the event path's fixed costs count); below,
    # 8000 x 512 -> 64 / 32 (forward + backward speedup at p = 0.005 / 0.02 / 0.05: 1.22 /
    # 1.12 / 0.91 for 64 outputs, 0.88 / 0.72 / 0.67 for 32; forward alone never wins): 0 =
    # always dense
    "numba": {True: (0.0, 0.04, 0.05, 0.07, 0.2, 0.2, 0.3),
              False: (0.0, 0.0, 0.03, 0.03, 0.2, 0.18, 0.3)},
    # torch's embedding_bag (numba not installed): the table at the top of this module (not
    # measured below 128 outputs: the 128 value)
    "embedding_bag": {True: (0.01, 0.01, 0.01, 0.05, 0.075, 0.055, 0.045),
                      False: (0.003, 0.003, 0.003, 0.03, 0.06, 0.06, 0.05)},
}


def _implementation() -> str:
    from .registry import numba_available
    return "numba" if numba_available() else "embedding_bag"


def crossover_density(out_features: int, training: bool = True,
                      implementation: Optional[str] = None) -> float:
    """Spike density below which the event-driven path is faster (measured on CPU).

    Args:
        out_features: output size of the layer.
        training: forward + weight gradient (True) or forward only (False).
        implementation: ``"numba"`` or ``"embedding_bag"``; default: the one this process
            uses for float32/float64 on CPU (numba when installed).

    Returns:
        The density ``p = nnz / numel`` where event-driven and dense take the same time.
    """
    table = _CROSSOVER[implementation or _implementation()][bool(training)]
    logs = [math.log2(o) for o in _CROSSOVER_OUT]
    lo = math.log2(max(out_features, 1))
    if lo <= logs[0]:
        return table[0]
    for (l0, l1), (p0, p1) in zip(zip(logs, logs[1:]), zip(table, table[1:])):
        if lo <= l1:
            return p0 + (p1 - p0) * (lo - l0) / (l1 - l0)
    return table[-1]


class Plan(NamedTuple):
    """What :func:`event_linear` does for one call.

    Attributes:
        backend: ``"event"`` or ``"dense"``.
        density: ``nnz / numel`` of the input when it was counted, else an estimate from a
            subsample, else ``nan`` (not looked at).
        reason: one line saying why.
    """

    backend: str
    density: float
    reason: str


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------

def _active_inputs(x2: Tensor) -> tuple[Tensor, bool]:
    """Row-major flat indices ``n * in + i`` of the nonzero entries of ``x2 [N, in]``.

    Returns ``(index, binary)``; ``binary`` is whether every nonzero entry equals one, which
    costs O(nnz) on top of the one pass over ``x2`` that finds them. The index is int32 when
    ``(N + 1) * in < 2**31`` (half the memory and faster integer ops), else int64.
    """
    flat = x2.detach().reshape(-1)
    index = torch.argwhere(flat.to(torch.bool)).squeeze(1)             # [nnz] int64, sorted
    values = flat.index_select(0, index)
    binary = torch.equal(values, values.new_ones(()).expand_as(values))
    if flat.numel() + x2.shape[1] <= _INT32_MAX:  # the row-pointer arange ends at numel + in
        index = index.to(torch.int32)
    return index, binary


def _event_forward(index: Tensor, n_rows: int, weight: Tensor) -> Tensor:
    """``x W^T`` for ``x [n_rows, in]`` given by its active ``index``: ``[n_rows, out]``."""
    n_in = weight.shape[1]
    starts = torch.arange(0, (n_rows + 1) * n_in, n_in, dtype=index.dtype, device=index.device)
    offsets = torch.searchsorted(index, starts, out_int32=index.dtype == torch.int32)  # [N+1]
    table = weight.t().contiguous()                                      # [in, out]
    return F.embedding_bag(index % n_in, table, offsets, mode="sum", include_last_offset=True)


def _n_row_blocks(n_rows: int, n_in: int, grad: Tensor, nnz: int) -> int:
    """Blocks of rows for the weight gradient: each block's rows of ``g`` take ~1 MiB, so
    they stay in cache while every input gathers from them; capped so that the partial sums
    (``in * out`` per block) take at most 32 MiB and 1/16 of the gather work (``nnz * out``)."""
    n_out, itemsize = grad.shape[1], grad.element_size()
    wanted = -(-n_rows * n_out * itemsize // _BLOCK_BYTES)
    by_memory = _PARTIAL_BYTES // max(1, n_in * n_out * itemsize)
    return max(1, min(wanted, by_memory, nnz // (16 * n_in)))


def _event_weight_grad(grad: Tensor, index: Tensor, n_rows: int, n_in: int) -> Tensor:
    """``g^T x -> [out, in]`` for ``g [N, out]`` and ``x [N, in]`` given by its active ``index``."""
    n_out = grad.shape[1]
    n_blocks = _n_row_blocks(n_rows, n_in, grad, index.numel())
    cols = index % n_in                                                  # [nnz]
    if n_blocks > 1:  # bag = (block of rows, input)
        block_span = -(-n_rows // n_blocks) * n_in
        key = torch.div(index, block_span, rounding_mode="floor").mul_(n_in).add_(cols)
    else:             # bag = input
        key = cols
    key, order = torch.sort(key, stable=True)       # grouped by bag, rows ascending in a bag
    bag_rows = torch.div(index.index_select(0, order), n_in, rounding_mode="floor")
    bags = torch.arange(n_blocks * n_in + 1, dtype=key.dtype, device=key.device)
    offsets = torch.searchsorted(key, bags, out_int32=key.dtype == torch.int32)
    partial = F.embedding_bag(bag_rows, grad, offsets, mode="sum",
                              include_last_offset=True)                 # [blocks * in, out]
    if n_blocks > 1:
        partial = partial.view(n_blocks, n_in, n_out).sum(0)
    return partial.t()                                                   # [out, in]


def _use_numba(x2: Tensor) -> bool:
    """The compiled kernels (:mod:`spikegrad.kernels.numba_event`) where they run: CPU,
    float32/float64, numba installed (the ``fast`` extra); else ``embedding_bag``."""
    return (x2.device.type == "cpu" and x2.dtype in (torch.float32, torch.float64)
            and _implementation() == "numba")


class _Events(NamedTuple):
    """The active inputs of ``x [N, in]``: CSR ``(rowptr, cols)`` for the compiled kernels, or
    the flat sorted ``(index,)`` for the ``embedding_bag`` ones."""

    tensors: tuple
    nnz: int
    binary: bool


def _find_events(x2: Tensor) -> _Events:
    if _use_numba(x2):
        from .numba_event import active_csr
        rowptr, cols, binary = active_csr(x2)
        return _Events((rowptr, cols), cols.numel(), binary)
    index, binary = _active_inputs(x2)
    return _Events((index,), index.numel(), binary)


def _forward_from(events: tuple, n_rows: int, weight: Tensor) -> Tensor:
    if len(events) == 2:
        from .numba_event import forward
        return forward(*events, weight.detach())
    return _event_forward(events[0], n_rows, weight)


def _weight_grad_from(grad: Tensor, events: tuple, n_rows: int, n_in: int) -> Tensor:
    if len(events) == 2:
        from .numba_event import weight_grad
        return weight_grad(grad, *events, n_in)
    return _event_weight_grad(grad, events[0], n_rows, n_in)


class _EventLinear(torch.autograd.Function):
    """``x2 [N, in] -> [N, out]`` with a binary ``x2`` known by its active inputs."""

    @staticmethod
    def forward(ctx, x2: Tensor, weight: Tensor, bias: Optional[Tensor], *events: Tensor) -> Tensor:
        y = _forward_from(events, x2.shape[0], weight)                  # [N, out]
        if bias is not None:
            y.add_(bias)
        ctx.save_for_backward(weight, *events)  # never x2: the events are all backward needs
        ctx.n_rows, ctx.n_in = x2.shape
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, *events = ctx.saved_tensors
        grad = grad.contiguous()                                       # [N, out]
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = grad @ weight                                         # [N, in], dense
        if ctx.needs_input_grad[1]:
            gw = _weight_grad_from(grad, tuple(events), ctx.n_rows, ctx.n_in)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(0)
        return (gx, gw, gb) + (None,) * len(events)


# --------------------------------------------------------------------------------------------
# dispatcher
# --------------------------------------------------------------------------------------------

def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor], backend: str,
           one_dtype: bool = True) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"event_linear: backend must be one of "
                         f"{', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
    if not isinstance(x, Tensor) or not isinstance(weight, Tensor):
        raise TypeError("event_linear: x and weight must be torch.Tensors, got "
                        f"{type(x).__name__} and {type(weight).__name__}")
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"event_linear: x [..., in] and weight [out, in] do not match: "
                         f"x {list(x.shape)}, weight {list(weight.shape)}")
    if bias is not None and (not isinstance(bias, Tensor) or bias.shape != weight.shape[:1]):
        raise ValueError(f"event_linear: bias must be None or a tensor [out] = "
                         f"[{weight.shape[0]}], got "
                         f"{list(bias.shape) if isinstance(bias, Tensor) else type(bias).__name__}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"event_linear: {name} is on {t.device} but x is on {x.device}; "
                             f"move one of them (e.g. the layer with .to({str(x.device)!r}))")
    if not one_dtype:  # under autocast F.linear casts them
        return
    if x.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise guards.DtypeError(f"event_linear: x, weight and bias must have one dtype, got "
                        f"{x.dtype}, {weight.dtype}"
                        + (f", {bias.dtype}" if bias is not None else "")
                        + "; convert x with x.to(weight.dtype)")


def _estimate_density(x2: Tensor) -> float:
    """``nnz / numel`` of a strided subsample of the rows of ``x2 [N, in]`` (exact if small)."""
    n_rows, n_in = x2.shape
    stride = max(1, n_rows // max(1, _SAMPLE_ELEMENTS // max(1, n_in)))
    sample = x2.detach()[::stride]
    return float(sample.count_nonzero()) / max(1, sample.numel())


def plan_with_events(x2: Tensor, weight: Tensor, backend: str
                     ) -> tuple[Plan, Optional[_Events]]:
    """Choose the path for ``x2 [N, in]``; returns the plan and the active inputs (or None),
    which a fused kernel that projects the events itself reuses."""
    if backend == "dense":
        return Plan("dense", math.nan, "backend='dense'"), None
    if backend == "event":
        events = _find_events(x2)
        if not events.binary:
            raise ValueError(
                "event_linear: backend='event' needs a binary input (every entry 0 or 1, "
                "e.g. spikes), but x has entries that are neither; use backend='dense' (or "
                "'auto', which falls back to the dense GEMM for such inputs)")
        return Plan("event", events.nnz / max(1, x2.numel()), "backend='event'"), events
    # auto
    n_rows, n_in = x2.shape
    if x2.device.type != "cpu" or x2.dtype not in (torch.float32, torch.float64):
        return Plan("dense", math.nan, "auto: crossover measured on CPU, float32/64 only"), None
    if guards.autocast_on(x2):
        return Plan("dense", math.nan, "auto: autocast is on (the dense GEMM autocasts)"), None
    if torch.compiler.is_compiling():
        return Plan("dense", math.nan, "auto: no data-dependent dispatch under torch.compile"), None
    training = torch.is_grad_enabled() and weight.requires_grad
    if n_rows * n_in * weight.shape[0] < (_MIN_WORK_TRAINING if training else _MIN_WORK_INFERENCE):
        return Plan("dense", math.nan, "auto: too little work for the event path to pay"), None
    threshold = crossover_density(weight.shape[0], training,
                                  "numba" if _use_numba(x2) else "embedding_bag")
    estimate = _estimate_density(x2)
    if estimate >= threshold:
        return Plan("dense", estimate, "auto: input too dense (subsample)"), None
    events = _find_events(x2)
    density = events.nnz / max(1, x2.numel())
    if not events.binary:
        return Plan("dense", density, "auto: input is not binary"), None
    if density >= threshold:
        return Plan("dense", density, "auto: input too dense"), None
    return Plan("event", density, "auto: sparse binary input"), events


def plan_event_linear(x: Tensor, weight: Tensor, backend: str = "auto") -> Plan:
    """The :class:`Plan` that :func:`event_linear` follows for these arguments (for tests and
    for deciding by hand; it does the same work as the dispatch, so it is not free)."""
    _check(x, weight, None, backend)
    return plan_with_events(x.reshape(-1, x.shape[-1]), weight, backend)[0]


def event_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                 backend: str = "auto") -> Tensor:
    """``x W^T + b`` for binary spikes ``x``, from the active inputs when that is faster.

    Args:
        x: ``[..., in]`` input; for ``backend="event"`` every entry must be 0 or 1. May
            require grad (``dX = g W`` is computed densely, exactly as the dense path).
        weight: ``[out, in]``. bias: ``[out]`` or None.
        backend: ``"dense"`` (``torch.nn.functional.linear``), ``"event"`` (always
            event-driven forward and weight gradient; ValueError for non-binary input) or
            ``"auto"``: dense unless the input is binary and sparse enough per the measured
            crossover (:func:`crossover_density`; the forward-only one when no weight
            gradient is needed). Cost of the decision: a count over a 64k-element
            subsample (~0.3 ms); only when that says "sparse" one ``argwhere`` pass over
            ``x`` (the event path needs it anyway) that also checks binarity in O(nnz).
            ``auto`` uses the dense path on non-CPU devices, for dtypes other than
            float32/float64, under autocast (``F.linear`` autocasts), for small layers and
            under ``torch.compile``. ``"event"`` under autocast sums in the autocast type;
            for half types it runs ``embedding_bag`` (the compiled kernels take
            float32/float64).

    Returns:
        ``[..., out]``, equal to ``F.linear(x, weight, bias)`` up to float summation order.
    """
    if isinstance(x, Tensor) and backend in BACKENDS and guards.autocast_on(x):
        if backend != "event":
            # the dense GEMM, which autocasts (the event sums would ignore autocast and return
            # x's type); checked for shapes and devices, not for one dtype
            _check(x, weight, bias, backend, one_dtype=False)
            return F.linear(x, weight, bias)
        # explicit event under autocast: the sums in the autocast type, as F.linear would
        dt = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dt), weight.to(dt)
        bias = bias.to(dt) if isinstance(bias, Tensor) else bias
    _check(x, weight, bias, backend)
    x2 = x.reshape(-1, x.shape[-1])                                     # [N, in]
    plan, events = plan_with_events(x2, weight, backend)
    if events is None:
        return F.linear(x, weight, bias)
    y = _EventLinear.apply(x2, weight, bias, *events.tensors)           # [N, out]
    return y.reshape(*x.shape[:-1], weight.shape[0])
