"""A synaptic projection fused with the LIF neurons it feeds (:mod:`spikegrad.kernels.projected`):
``lif_seq(F.linear(xs, weight, bias), state, p)`` keeping at most one ``[T, B, N]`` sequence.

Each function returns None where the kernel registry has no fused pair for the call (another
backend, trained neuron constants, a state that needs a gradient...): the caller then runs
the projection and the neurons one after the other, with the same result up to the order of
float summation."""

from __future__ import annotations

from typing import Optional, Tuple

from torch import Tensor

from ..kernels import registry
from ..kernels.registry import Call
from .lif import LIFParams, LIFState, lif_update, prepare_state
from .recurrent import RecurrentParams, RecurrentState, check_recurrent


def projected_lif_seq(xs: Tensor, weight: Tensor, bias: Optional[Tensor],
                      state: Optional[LIFState], p: LIFParams, backend: str = "auto",
                      linear_backend: str = "auto", keep: float = 0.0
                      ) -> Optional[Tuple[Tensor, LIFState]]:
    """``xs [T, B, in]``, ``weight [N, in]`` -> ``(zs [T, B, N], state)`` or None.

    ``backend``: the neurons' (as for :func:`~spikegrad.functional.lif_seq`);
    ``linear_backend``: the projection's (as :class:`spikegrad.nn.Linear`'s); ``keep``: the
    leading fraction of the sequence whose membrane is kept for backward (the rest is
    recomputed chunk by chunk)."""
    if xs.dim() != 3 or weight.dim() != 2:
        return None
    x0 = xs.new_zeros(()).expand(xs.shape[1], weight.shape[0])
    st = prepare_state(x0, state, p)
    if not _fused(xs, weight, st, p, backend):
        return None
    from ..kernels import projected  # numba loads on first use
    zs, v, i = projected.projected_lif(xs, weight, bias, st.v, st.i, p, linear_backend, keep)
    return zs, LIFState(v, i)


def projected_recurrent_lif_seq(xs: Tensor, weight: Tensor, bias: Optional[Tensor],
                                w_rec: Tensor, state: Optional[RecurrentState], p: LIFParams,
                                backend: str = "auto", linear_backend: str = "auto",
                                keep: float = 0.0) -> Optional[Tuple[Tensor, RecurrentState]]:
    """As :func:`projected_lif_seq` for recurrent LIF neurons (``w_rec [N, N]``; the state a
    :class:`~spikegrad.functional.RecurrentState` around a ``LIFState``, None for zeros)."""
    if xs.dim() != 3 or weight.dim() != 2:
        return None
    n = weight.shape[0]
    x0 = xs.new_zeros(()).expand(xs.shape[1], n)
    if state is None:
        inner, y0 = prepare_state(x0, None, p), x0.new_zeros(x0.shape)
    else:
        # the fused kernels index the state by the input's batch: check it first
        state = check_recurrent(x0.unsqueeze(0), state, RecurrentParams(w_rec, lif_update, p))
        inner, y0 = state.inner, state.y
    if not _fused(xs, weight, inner, p, backend):
        return None
    from ..kernels import projected  # numba loads on first use
    zs, v, i = projected.projected_recurrent_lif(xs, weight, bias, w_rec, y0, inner.v, inner.i,
                                                 p, linear_backend, keep)
    return zs, RecurrentState(LIFState(v, i), zs[-1])


def _fused(xs: Tensor, weight: Tensor, state: LIFState, p: LIFParams, backend: str) -> bool:
    """Whether the registry has a fused pair for this call (numba's)."""
    consts = (("decay_mem", p.decay_mem), ("decay_syn", p.decay_syn),
              ("threshold", p.threshold), ("v_reset", p.v_reset), ("state.v", state.v),
              ("state.i", state.i))
    trained = tuple(k for k, c in consts if isinstance(c, Tensor) and c.requires_grad)
    call = Call("projected_lif", xs, trained=trained, weight=weight)
    return registry.fusable(backend, call) == "numba"
