"""What every fused neuron kernel (torch loop, numba, Triton) is told about a sequence: the
static :class:`Spec`, the integer ids the compiled kernels specialise on, and the layout in
which they read an output gradient."""

from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor

from ..surrogate import BUILTIN_DERIVATIVES, Surrogate

# ids the compiled kernels (numba, triton) specialise on
RESET_IDS = {"none": 0, "subtract": 1, "to_value": 2}
# id of each built-in surrogate derivative; a surrogate is built-in only if its derivative is
# the table's own function (a user may register another under a new name): 0 otherwise
SURROGATE_IDS = {fn: k + 1 for k, fn in enumerate(BUILTIN_DERIVATIVES)}


class Spec(NamedTuple):
    """Static description of the sequence (not tensors)."""

    spiking: bool            # LIF family (outputs spikes) or LI (outputs the membrane)
    reset: str               # "subtract" | "to_value" | "none" (ignored for LI)
    detach_reset: bool
    scale_input: bool
    has_syn: bool
    surrogate: Optional[Surrogate]
    backend: str             # "torch" | "numba" | "triton"
    # backward cuts the adjoint of the state every this many steps (truncated BPTT in one
    # pass, functional.truncation; 0: never); numba and torch backends only
    cut: int = 0


def time_rows(g: Tensor) -> Tensor:
    """The gradient ``[T, ...]`` of an output sequence as the compiled backward loops read it:
    as is, or, when it is the same for every step (stride 0 in time: the gradient of a sum
    arrives expanded), one contiguous step ``[1, ...]`` used for all steps instead of T
    materialised copies."""
    if g.shape[0] > 1 and g.stride(0) == 0:
        g = g[:1]
    if g.shape[0] == 1 or not g.is_contiguous():
        g = g.contiguous()
    return g
