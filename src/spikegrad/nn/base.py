"""The stateful-module protocol: ``forward(xs, state=None) -> (ys, state)``."""

from __future__ import annotations

import abc
from typing import Any, Optional, Tuple

from torch import Tensor, nn

from ..functional.truncation import cut_every, run_in_chunks


class StatefulModule(nn.Module, abc.ABC):
    """A module over time-major sequences with explicit state.

    ``forward(xs [T, B, ...], state=None) -> (ys [T, B, ...], state)``; ``None`` means the
    zero state. Nothing is kept between calls: to continue a sequence (e.g. truncated BPTT)
    pass the returned state back in (detached with
    :func:`spikegrad.functional.detach_state` to cut the graph).

    Under :func:`spikegrad.functional.truncate_gradients` a call over more steps than the cut
    interval runs chunk by chunk, its state detached between chunks, unless the module cuts
    the gradient itself in one pass (:meth:`cuts_gradients`).
    """

    def cuts_gradients(self) -> bool:
        """Whether :meth:`forward` itself cuts the gradient through its state under
        :func:`~spikegrad.functional.truncate_gradients` (else calls are run in chunks)."""
        return False

    def __call__(self, xs, state=None, *args, **kwargs):
        cut = cut_every()
        if (cut and isinstance(xs, Tensor) and xs.dim() > 0 and xs.shape[0] > cut
                and not self.cuts_gradients()):
            call = super().__call__
            return run_in_chunks(lambda x, s: call(x, s, *args, **kwargs), xs, state, cut,
                                 owner=type(self).__name__)
        return super().__call__(xs, state, *args, **kwargs)

    @abc.abstractmethod
    def forward(self, xs: Tensor, state: Optional[Any] = None) -> Tuple[Tensor, Any]:
        """Run the module over a whole sequence (the protocol every subclass implements).

        Args:
            xs: a time-major input ``[T, B, *features]``.
            state: the state to start from (the type the module returns, e.g. a
                :class:`~spikegrad.functional.LIFState`), or None for the zero state.

        Returns:
            ``(ys [T, B, *out_features], state)``: the output at every step and the state
            after the last step, to pass back in to continue the sequence.
        """
