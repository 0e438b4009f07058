"""Spiking max pooling: a gate that passes the spikes of each window's most active unit.

Max pooling of spike trains step by step would pass a spike whenever any unit of the window
fires, a rate far above the maximum of the rates. Rueckauer et al. (2017, sec. 2.2.6) gate
the window instead: at step ``t`` it passes the spike ``x_t`` of the unit with the largest
cumulative count ``c_t = c_{t-1} + x_t`` (counts including this step; ties go to the first
unit of the window in row-major order, as in ``torch.nn.MaxPool``), so its output rate tends
to the largest rate of the window. The counts are the state, so a sequence split into chunks
(with the state passed on) gives the same output as the whole. The input need not be binary:
for a constant analog input the gate passes the window's maximum exactly.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor
from torch.nn import functional as TF

from .._validate import check_int, check_state_like, check_state_type, check_tensor
from ..nn.base import StatefulModule


class GateState(NamedTuple):
    """``counts``: the cumulative input of every unit so far, ``[B, C, *spatial]``."""

    counts: Tensor


def _ints(value, n: int, name: str, minimum: int, owner: str) -> Tuple[int, ...]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n:
        raise ValueError(f"{owner}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(check_int(v, f"{owner}: {name}", minimum=minimum) for v in items)


class _SpikingMaxPool(StatefulModule):
    """The gate over ``dims`` spatial dimensions (see the module doc)."""

    dims: int = 0

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False):
        super().__init__()
        owner, n = type(self).__name__, self.dims
        self.kernel_size = _ints(kernel_size, n, "kernel_size", 1, owner)
        self.stride = (self.kernel_size if stride is None
                       else _ints(stride, n, "stride", 1, owner))
        self.padding = _ints(padding, n, "padding", 0, owner)
        self.dilation = _ints(dilation, n, "dilation", 1, owner)
        if any(2 * p > d * (k - 1) + 1 for p, k, d in
               zip(self.padding, self.kernel_size, self.dilation)):
            raise ValueError(f"{owner}: padding={padding!r} must be at most half the (dilated) "
                             f"kernel size {kernel_size!r}")
        self.ceil_mode = bool(ceil_mode)

    def forward(self, xs: Tensor, state: Optional[GateState] = None
                ) -> Tuple[Tensor, GateState]:
        """``xs [T, B, C, *spatial]`` (spikes, or any input) -> ``(ys [T, B, C, *pooled],
        GateState)``; ``state=None`` starts from zero counts. The gradient flows to the
        passed (gated) inputs, as through a max pool."""
        check_tensor(xs, "xs")
        rank = self.dims + 3
        if xs.dim() != rank:
            want = "[T, B, C, L]" if self.dims == 1 else "[T, B, C, H, W]"
            raise ValueError(f"{type(self).__name__}: xs must be a time-major input {want}, "
                             f"got shape {list(xs.shape)}")
        if state is None:
            counts0 = torch.zeros_like(xs[0])
        else:
            check_state_type(state, GateState)
            check_state_like(state.counts, xs[0], "state.counts")
            counts0 = state.counts
        T, B = xs.shape[:2]
        # the counts only choose the gate (no gradient through an argmax); summed in time
        # order from the carried counts, so chunks round exactly as the whole sequence does
        counts = torch.cumsum(torch.cat([counts0.detach().unsqueeze(0), xs.detach()]), 0)[1:]
        pool = TF.max_pool1d if self.dims == 1 else TF.max_pool2d
        _, idx = pool(counts.flatten(0, 1), self.kernel_size, self.stride, self.padding,
                            self.dilation, self.ceil_mode, return_indices=True)
        # idx [T*B, C, *pooled]: flat spatial index of each window's winner
        src = xs.flatten(0, 1).flatten(2)                          # [T*B, C, prod(spatial)]
        ys = src.gather(2, idx.flatten(2)).view(idx.shape)         # [T*B, C, *pooled]
        return ys.unflatten(0, (T, B)), GateState(counts[-1])

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                f", dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class SpikingMaxPool1d(_SpikingMaxPool):
    """Spiking max pooling (a gate, see :mod:`spikegrad.convert.maxpool`) on
    ``[T, B, C, L]``. Arguments as :class:`torch.nn.MaxPool1d`'s (``stride`` defaults to
    ``kernel_size``).

    Shapes: ``xs [T, B, C, L] -> (ys [T, B, C, L_out], GateState)``.

    Example:
        >>> import torch
        >>> xs = torch.tensor([[1., 0.], [1., 1.], [0., 1.]]).view(3, 1, 1, 2)
        >>> ys, state = SpikingMaxPool1d(2)(xs)
        >>> ys.flatten().tolist(), state.counts.flatten().tolist()
        ([1.0, 1.0, 0.0], [2.0, 2.0])
    """

    dims = 1


class SpikingMaxPool2d(_SpikingMaxPool):
    """Spiking max pooling (a gate, see :mod:`spikegrad.convert.maxpool`) on
    ``[T, B, C, H, W]``. Arguments as :class:`torch.nn.MaxPool2d`'s (``stride`` defaults to
    ``kernel_size``).

    Shapes: ``xs [T, B, C, H, W] -> (ys [T, B, C, H_out, W_out], GateState)``.
    """

    dims = 2
