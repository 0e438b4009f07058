"""The stateful-module protocol: ``forward(xs, state=None) -> (ys, state)``."""

from __future__ import annotations

import abc
from typing import Any, Optional, Tuple

from torch import Tensor, nn


class StatefulModule(nn.Module, abc.ABC):
    """A module over time-major sequences with explicit state.

    ``forward(xs [T, B, ...], state=None) -> (ys [T, B, ...], state)``; ``None`` means the
    zero state. Nothing is kept between calls: to continue a sequence (e.g. truncated BPTT)
    pass the returned state back in (detached with
    :func:`spikegrad.functional.detach_state` to cut the graph).
    """

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
