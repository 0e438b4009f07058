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
        ...
