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
  that stay in L1, split over torch's threads. Narrow layers (at most two such blocks: 32
  float32 / 16 float64 outputs, e.g. a readout) take :mod:`spikegrad.kernels.numba_narrow`
  instead, rows split over threads, which also computes ``dX = g W``. Used whenever it can
  run.
- **torch** (otherwise): ``torch.nn.functional.embedding_bag(mode="sum")`` calls (a
  JIT-compiled gather-sum on CPU): the forward gathers rows of ``W^T`` (bags = rows of ``x``,
  found by one ``argwhere`` over ``x``), the weight gradient gathers rows of ``g`` (bags =
  inputs, grouped by one integer sort of the active indices, in blocks of rows so that the
  rows of ``g`` being gathered stay in cache).

Backward needs ``x`` only through its active inputs: the layer saves their int32 indices (4
bytes per *active* input: a fraction ``p`` of the 4 bytes per input that the dense path keeps
for a float32 ``x``; the compiled path adds one int64 row pointer per row) and never a float
copy of ``x``.

``auto`` takes the event path below a crossover density that depends on the output width
and on the implementation (:func:`crossover_density`): the event path's fixed costs (finding
the active inputs, packing ``W``) and a gathered add streaming its row from cache at several
times the cost of a GEMM multiply-add leave it ahead only for sparse inputs. The crossovers
were measured on CPU with ``benchmarks/crossover_event_linear.py``; the tables, the note on
``OMP_WAIT_POLICY`` and what was tried and dropped are in ``benchmarks/README.md``
("Event-driven Linear").

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

import functools
import math
import platform
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from . import guards, ops

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
# Fewest rows for which weight_grad takes the event path: the crossovers were measured down
# to 4000 rows; a chunked backward's calls of 1024 rows (recomputed segments) each pay the
# path's fixed costs (finding the active inputs, grouping them by input), and the recurrent
# weight gradient of workload C's recompute variant took 32 ms by events against ~18 by GEMMs.
_MIN_ROWS_WEIGHT_GRAD = 4000
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
    # the compiled kernels (numba): re-measured 2026-12-07 on 1 and 2 threads (the faster
    # kernels of the weeks since had moved the 64-256 crossovers from 0.04-0.07 to 0.10-0.25;
    # C's 32000 x 256 -> 256 at p = 0.1 took the dense GEMM, 1.75x the event path's time):
    # the lowest fwd+bwd (training) / forward (inference) crossover over 8000 x 512 ->
    # 32 ... 1024, 32000 x 256 -> 64 / 256, 4000 and 8000 x 256 -> 256, 6400 x 700 -> 256 and
    # 8000 x 2048 -> 2048, rounded down; 32 outputs (and fewer: the table's end): 0 = always
    # dense (fwd+bwd only 1.04-1.07x at 0.02-0.05, the forward alone 0.80x at 0.02);
    # benchmarks/README.md ("Event-driven Linear") has the tables
    "numba": {True: (0.0, 0.1, 0.15, 0.17, 0.2, 0.2, 0.15),
              False: (0.0, 0.1, 0.15, 0.17, 0.2, 0.18, 0.13)},
    # the same kernels on AMD CPUs, where torch's MKL GEMMs run ~3x slower than on the Xeon
    # (AMD EPYC Zen 3 VM, 2 threads, 2026-12-08, 3 repeats: fwd+bwd crossovers 0.28 at 64
    # outputs, 0.33 at 128, 0.35-0.36 (above 0.4 for 32000 x 256) at 256, 0.38 at 512 and
    # 1024, 0.35 at 2048; forward alone 0.33-0.40 and above); rounded down, one step lower
    # for the noisy machine
    "numba-amd": {True: (0.0, 0.25, 0.3, 0.3, 0.3, 0.3, 0.3),
                  False: (0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3)},
    # torch's embedding_bag (numba not installed): the table at the top of this module (not
    # measured below 128 outputs: the 128 value)
    "embedding_bag": {True: (0.01, 0.01, 0.01, 0.05, 0.075, 0.055, 0.045),
                      False: (0.003, 0.003, 0.003, 0.03, 0.06, 0.06, 0.05)},
}


# Narrow layers (out <= 32 float32 / 16 float64: the rows-split kernels of
# spikegrad.kernels.numba_narrow), training only: forward + weight gradient measured with
# benchmarks/crossover_event_linear.py on an AMD EPYC (AVX2) VM, 2 threads, 2026-12-08: the
# crossovers of 6400 x 256 -> 20 / 32 were 0.13 / 0.16, of 8000 x 512 -> 10 and 32000 x 256
# -> 32 above 0.3; rounded down. The input gradient ``g W`` (not in that benchmark) also runs
# narrow on this path and is the larger gain inside a training step where MKL is slow
# (benchmarks/README.md, "A second machine"). Inference stays dense: the forward alone, with
# the active inputs to find, did not win on a readout of B's size (0.84-0.90x).
_NARROW_CROSSOVER = {True: 0.1, False: 0.0}


def _implementation() -> str:
    from .registry import numba_available
    return "numba" if numba_available() else "embedding_bag"


@functools.lru_cache(maxsize=None)
def _amd_cpu() -> bool:
    """Whether this host's CPU is AMD's (``vendor_id`` in ``/proc/cpuinfo``, else the
    platform's processor string, which names the vendor on Windows; "AMD64" alone is the
    architecture, also on Intel)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return "AuthenticAMD" in platform.processor()


def _default_table() -> str:
    """The crossover table for this process: the compiled kernels' (on AMD CPUs their own
    measurement), else ``embedding_bag``'s."""
    implementation = _implementation()
    return "numba-amd" if implementation == "numba" and _amd_cpu() else implementation


def crossover_density(out_features: int, training: bool = True,
                      implementation: Optional[str] = None) -> float:
    """Spike density below which the event-driven path is faster (measured on CPU).

    Args:
        out_features: output size of the layer.
        training: forward + weight gradient (True) or forward only (False).
        implementation: the table: ``"numba"`` (the compiled kernels, measured on an Intel
            Xeon), ``"numba-amd"`` (the same on an AMD EPYC) or ``"embedding_bag"``; default:
            the one this process uses for float32/float64 on CPU.

    Returns:
        The density ``p = nnz / numel`` where event-driven and dense take the same time.
    """
    implementation = implementation or _default_table()
    if implementation.startswith("numba") and out_features <= 32:  # narrow; see _auto_plan
        return _NARROW_CROSSOVER[bool(training)]
    table = _CROSSOVER[implementation][bool(training)]
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


def _narrow(n_out: int, dtype: torch.dtype) -> bool:
    """Whether a compiled layer of ``n_out`` outputs takes the narrow kernels
    (:mod:`spikegrad.kernels.numba_narrow`: rows split over threads) rather than the wide ones
    (blocks of output features split over threads)."""
    from .numba_event import lanes
    return n_out <= 2 * lanes(dtype)


def _forward_from(events: tuple, n_rows: int, weight: Tensor) -> Tensor:
    if len(events) == 2:
        if _narrow(weight.shape[0], weight.dtype):
            from .numba_narrow import forward as narrow_forward
            return narrow_forward(*events, weight.detach())
        from .numba_event import forward
        return forward(*events, weight.detach())
    return _event_forward(events[0], n_rows, weight)


def _weight_grad_from(grad: Tensor, events: tuple, n_rows: int, n_in: int) -> Tensor:
    if len(events) == 2:
        if _narrow(grad.shape[1], grad.dtype):
            from .numba_narrow import weight_grad as narrow_weight_grad
            return narrow_weight_grad(grad, *events, n_in)
        from .numba_event import weight_grad
        return weight_grad(grad, *events, n_in)
    return _event_weight_grad(grad, events[0], n_rows, n_in)


def _input_grad(grad: Tensor, weight: Tensor, events: tuple) -> Tensor:
    """``g W`` (dense): the narrow kernel for a compiled narrow layer (on an AMD EPYC MKL took
    3.9 ms for B's readout, this 1.1 ms: benchmarks/README.md), else torch's (which
    records a graph for a double backward when ``create_graph=True``)."""
    if (len(events) == 2 and _narrow(weight.shape[0], weight.dtype)
            and not torch.is_grad_enabled()):
        from .numba_narrow import input_grad
        return input_grad(grad, weight.detach())
    return grad @ weight


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
            gx = _input_grad(grad, weight, tuple(events))              # [N, in], dense
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
    if ops.compiling(x2) or ops.transformed():
        return Plan("dense", math.nan, "auto: no data-dependent dispatch under torch.compile, "
                    "torch.export or torch.func"), None
    return _auto_plan(x2, weight.shape[0], torch.is_grad_enabled() and weight.requires_grad)


def _auto_plan(x2: Tensor, n_out: int, training: bool) -> tuple[Plan, Optional[_Events]]:
    """``auto``'s choice for ``x2 [N, in]`` feeding ``n_out`` outputs, by the training (forward
    + weight gradient) or inference crossover."""
    # the size next: one comparison settles most small layers (TBPTT chunks, readouts), and
    # the reasons below pick the same dense F.linear
    n_rows, n_in = x2.shape
    if n_rows * n_in * n_out < (_MIN_WORK_TRAINING if training else _MIN_WORK_INFERENCE):
        return Plan("dense", math.nan, "auto: too little work for the event path to pay"), None
    if x2.device.type != "cpu" or x2.dtype not in (torch.float32, torch.float64):
        return Plan("dense", math.nan, "auto: crossover measured on CPU, float32/64 only"), None
    if guards.autocast_on(x2):
        return Plan("dense", math.nan, "auto: autocast is on (the dense GEMM autocasts)"), None
    numba = _use_numba(x2)
    threshold = crossover_density(n_out, training, _default_table() if numba else "embedding_bag")
    if numba and n_out <= 32 and not _narrow(n_out, x2.dtype):
        threshold = 0.0  # float64, 17-32 outputs: past the narrow kernels, dense as before
    if threshold <= 0:  # e.g. a readout of a few classes: not worth counting the input
        return Plan("dense", math.nan, "auto: the dense GEMM is faster at every density for "
                    f"{n_out} outputs"), None
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


def weight_grad(grad: Tensor, x2: Tensor, acc: Optional[Tensor] = None) -> Tensor:
    """``acc + grad^T x2 -> [out, in]`` for ``grad [N, out]`` and ``x2 [N, in]`` (``acc``
    ``[out, in]`` or None), from the active inputs of ``x2`` where the training crossover of an
    ``out``-wide layer puts the event path ahead (``x2`` binary and sparse enough, CPU
    float32/float64), else one GEMM: a weight gradient formed outside a Linear layer's
    backward, e.g. a recurrent layer's ``dW_rec = sum_t g_t^T z_{t-1}`` over its own spikes."""
    n_rows, n_in = x2.shape
    if (n_rows >= _MIN_ROWS_WEIGHT_GRAD and grad.dtype == x2.dtype and grad.device == x2.device
            and not ops.compiling(x2) and not ops.transformed()):
        plan, events = _auto_plan(x2, grad.shape[1], training=True)
        if plan.backend == "event":
            g = _weight_grad_from(grad.contiguous(), events.tensors, n_rows, n_in)
            return g if acc is None else acc + g
    return grad.t() @ x2 if acc is None else torch.addmm(acc, grad.t(), x2)


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
