"""A Sequential that threads explicit per-layer states."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from torch import Tensor, nn

from .base import StatefulModule


class Sequential(StatefulModule):
    """Chain of stateful and stateless layers: ``ys, state = net(xs, state)``.

    ``state`` is a tuple with one entry per layer (``None`` for stateless layers); pass
    ``None`` to start every layer from zeros.

    ``recompute=True`` trades time for memory, like activation checkpointing: in
    :meth:`forward`, a :class:`Linear` followed by a :class:`LIF` (or a :class:`Recurrent`
    LIF) runs fused chunk by chunk in time and keeps no ``[T, B, N]`` input current, membrane
    or gradient sequence; backward recomputes each chunk's membrane from its saved start state
    (:mod:`spikegrad.kernels.projected`; same spikes, states and gradients). Measured on A512
    (Linear 512->512 + LIF, B=16, T=500): training-step memory 68 -> 25 MiB, time 23 -> 34 ms.

    Example:
        >>> import torch, spikegrad as sg
        >>> net = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.LIF(8), sg.nn.Linear(8, 2),
        ...                        sg.nn.LI(2))
        >>> vs, state = net(torch.rand(10, 3, 4))
        >>> vs.shape, len(state)
        (torch.Size([10, 3, 2]), 4)
    """

    recompute: bool = False  # class default: modules pickled before the option existed

    def __init__(self, *layers: nn.Module, recompute: bool = False):
        super().__init__()
        self.recompute = bool(recompute)
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
        """``(output of the last layer, state)``; with ``recompute``, ``Linear -> LIF`` pairs
        run fused where they can (see the class docstring). :meth:`forward_all`, which returns
        every layer's output, always runs the layers one by one."""
        from .layers import Linear
        from .neurons import LIF
        from .recurrent import Recurrent
        state = self._check_state(state)
        new_state: List[Any] = []
        i = 0
        while i < len(self.layers):
            layer, s = self.layers[i], state[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if self.recompute and isinstance(layer, Linear) and isinstance(nxt, (LIF, Recurrent)):
                out = None
                if isinstance(xs, Tensor) and xs.dim() == 3 and xs.shape[-1] == layer.in_features:
                    out = nxt.forward_projected(xs, layer.weight, layer.bias, state[i + 1],
                                                linear_backend=layer.backend)
                if out is not None:
                    xs, s_next = out
                    new_state += [None, s_next]
                    i += 2
                    continue
            if isinstance(layer, StatefulModule):
                xs, s = layer(xs, s)
            else:
                xs = layer(xs)
            new_state.append(s)
            i += 1
        return xs, tuple(new_state)

    def _check_state(self, state):
        if state is None:
            return (None,) * len(self.layers)
        if not isinstance(state, tuple) or len(state) != len(self.layers):
            raise ValueError("Sequential: state must be None or the tuple returned by a previous "
                             f"call, with one entry per layer ({len(self.layers)}); got "
                             f"{type(state).__name__} of length "
                             f"{len(state) if isinstance(state, tuple) else '?'}")
        return state

    def forward_all(self, xs: Tensor, state: Optional[Tuple[Any, ...]] = None
                    ) -> Tuple[List[Tensor], Tuple[Any, ...]]:
        """Like forward, but returns every layer's output ``[T, B, ...]`` (for spike
        regularisers, rasters and membrane plots)."""
        state = self._check_state(state)
        outs, new_state = [], []
        for layer, s in zip(self.layers, state):
            if isinstance(layer, StatefulModule):
                xs, s = layer(xs, s)
            else:
                xs = layer(xs)
            outs.append(xs)
            new_state.append(s)
        return outs, tuple(new_state)
