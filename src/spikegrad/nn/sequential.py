"""A Sequential that threads explicit per-layer states."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from torch import Tensor, nn

from .base import StatefulModule


class Sequential(StatefulModule):
    """Chain of stateful and stateless layers: ``ys, state = net(xs, state)``.

    ``state`` is a tuple with one entry per layer (``None`` for stateless layers); pass
    ``None`` to start every layer from zeros.

    Example:
        >>> import torch, spikegrad as sg
        >>> net = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.LIF(8), sg.nn.Linear(8, 2),
        ...                        sg.nn.LI(2))
        >>> vs, state = net(torch.rand(10, 3, 4))
        >>> vs.shape, len(state)
        (torch.Size([10, 3, 2]), 4)
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Module):
                raise TypeError(f"Sequential: layer {i} must be an nn.Module, "
                                f"got {type(layer).__name__}")
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> nn.Module:
        return self.layers[i]

    def forward(self, xs: Tensor, state: Optional[Tuple[Any, ...]] = None
                ) -> Tuple[Tensor, Tuple[Any, ...]]:
        outs, state = self.forward_all(xs, state)
        return outs[-1], state

    def forward_all(self, xs: Tensor, state: Optional[Tuple[Any, ...]] = None
                    ) -> Tuple[List[Tensor], Tuple[Any, ...]]:
        """Like forward, but returns every layer's output ``[T, B, ...]`` (for spike
        regularisers, rasters and membrane plots)."""
        if state is None:
            state = (None,) * len(self.layers)
        elif not isinstance(state, tuple) or len(state) != len(self.layers):
            raise ValueError("Sequential: state must be None or the tuple returned by a previous "
                             f"call, with one entry per layer ({len(self.layers)}); got "
                             f"{type(state).__name__} of length {len(state) if isinstance(state, tuple) else '?'}")
        outs, new_state = [], []
        for layer, s in zip(self.layers, state):
            if isinstance(layer, StatefulModule):
                xs, s = layer(xs, s)
            else:
                xs = layer(xs)
            outs.append(xs)
            new_state.append(s)
        return outs, tuple(new_state)
