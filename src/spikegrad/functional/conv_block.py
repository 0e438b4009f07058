"""Threshold batch norm -> LIF -> window pooling on ``[T, B, C, H, W]`` in one fused call
(:mod:`spikegrad.kernels.conv_block`): the tail of a spiking conv block.

:func:`norm_lif_pool_seq` returns None where the kernel registry has no fused path for the
call (another backend or device, trained neuron constants, a synapse, a user's surrogate, a
state that needs a gradient, truncated BPTT...): the caller then runs the three layers one by
one, with the same result up to the order of float sums in the batch statistics."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ..kernels import registry
from ..kernels.registry import Call
from ..kernels.spec import RESET_IDS, SURROGATE_IDS
from .lif import LIFParams, LIFState, prepare_state
from .truncation import cut_every

__all__ = ["NormParams", "norm_lif_pool_seq"]


class NormParams(NamedTuple):
    """A threshold batch norm: ``x = weight * scale * (y - mean_c) / sqrt(var_c + eps) +
    bias`` per channel, with the batch's statistics (``batch_stats``; the running ones, when
    given, updated with ``momentum``) or the running ones."""

    weight: Optional[Tensor]
    bias: Optional[Tensor]
    running_mean: Optional[Tensor]
    running_var: Optional[Tensor]
    batch_stats: bool
    eps: float
    momentum: float
    scale: float


def norm_lif_pool_seq(ys: Tensor, norm: NormParams, state: Optional[LIFState], p: LIFParams,
                      k: int, divisor: float, backend: str = "auto", max_pool: bool = False
                      ) -> Optional[Tuple[Tensor, LIFState]]:
    """``ys [T, B, C, H, W]`` (conv outputs) -> ``(pooled spikes [T, B, C, H // k, W // k],
    final LIF state)``, or None (see the module docstring). ``k``: the pooling window and
    stride (1: no pooling); ``divisor``: ``k * k`` (average) or 1 (sum; ignored by max
    pooling); ``backend``: the neurons'."""
    if not isinstance(ys, Tensor) or ys.dim() != 5 or not ys.is_contiguous():
        return None
    if p.decay_syn is not None or cut_every():
        return None
    kind = SURROGATE_IDS.get(p.surrogate.derivative, 0)
    T, B, C, H, W = ys.shape
    if kind == 0 or H < k or W < k:
        return None
    st = prepare_state(ys[0], state, p)
    consts = (("decay_mem", p.decay_mem), ("threshold", p.threshold), ("v_reset", p.v_reset),
              ("state.v", st.v))
    trained = tuple(n for n, c in consts if isinstance(c, Tensor) and c.requires_grad)
    if registry.fusable(backend, Call("norm_lif_pool", ys, trained=trained)) != "numba":
        return None
    from ..kernels import conv_block  # numba loads on first use
    spec = conv_block.BlockSpec(
        reset=RESET_IDS[p.reset], detach=bool(p.detach_reset), kind=kind,
        beta=float(p.surrogate.beta), scale=bool(p.scale_input), k=int(k),
        divisor=float(divisor), max_pool=bool(max_pool), batch_stats=bool(norm.batch_stats),
        eps=float(norm.eps),
        momentum=float(norm.momentum), norm_scale=float(norm.scale))
    running = (None if norm.running_mean is None
               else (norm.running_mean, norm.running_var))
    v0 = st.v if st.v.shape == (B, C, H, W) else st.v.expand(B, C, H, W)
    with torch.no_grad():
        v0 = v0.to(ys.dtype)
    out, v = conv_block.norm_lif_pool(ys, norm.weight, norm.bias, running, v0, p, spec)
    return out, LIFState(v, None)
