"""A Sequential that threads explicit per-layer states."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ..functional.truncation import cut_every
from .base import StatefulModule


def _hooked(module: nn.Module) -> bool:
    """Whether a forward or backward hook would see ``module``'s own call (a fused pair never
    calls its modules)."""
    from torch.nn.modules import module as m
    return any((module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
                module._backward_pre_hooks, m._global_forward_hooks,
                m._global_forward_pre_hooks, m._global_backward_hooks,
                m._global_backward_pre_hooks))


class Sequential(StatefulModule):
    """Chain of stateful and stateless layers: ``ys, state = net(xs, state)``.

    ``state`` is a tuple with one entry per layer (``None`` for stateless layers); pass
    ``None`` to start every layer from zeros.

    A :class:`Linear` followed by a :class:`LIF` runs fused in a training step
    (:mod:`spikegrad.kernels.projected`): the neurons' membrane is written over the
    projection's output and, in backward, the input-current gradient over the membrane, so the
    step keeps one ``[T, B, N]`` sequence besides the output spikes instead of three (same
    spikes, states and gradients as the two layers one by one). Measured on A512 (Linear
    512->512 at p = 0.1 + LIF, B=16, T=500, 2 cores): 23 -> 18 ms, 67 -> 37 MiB of peak RSS.
    Pairs with a forward or backward hook on either module, trained neuron constants, an
    initial state that needs a gradient or a backend other than auto/numba run one by one.

    The tail of a spiking conv block, :class:`ThresholdBatchNorm` -> :class:`LIF` (->
    :class:`AvgPool2d` / :class:`SumPool2d` / :class:`MaxPool2d`), runs fused the same way
    (:mod:`spikegrad.kernels.conv_block`; see :func:`spikegrad.nn.conv.fused_tail` for where
    it applies): the normalised currents, spikes and membrane are never written.

    ``recompute`` trades time for memory further, like activation checkpointing: the fraction
    of the sequence (at the end, in whole chunks of time steps) whose membrane is not kept but
    recomputed in backward from saved chunk start states; ``True`` is 1 (no ``[T, B, N]``
    sequence kept at all), ``False`` is 0. Measured on A512: ``recompute=0.5`` 27 ms, 33 MiB;
    ``recompute=True`` 33 ms, 25 MiB. A :class:`Recurrent` LIF after a :class:`Linear` fuses
    the same way (workload C, Linear 256 -> recurrent LIF 256, B=32, T=1000: 146 -> 128 ms
    in-process without ``recompute``).

    Example:
        >>> import torch, spikegrad as sg
        >>> net = sg.nn.Sequential(sg.nn.Linear(4, 8), sg.nn.LIF(8), sg.nn.Linear(8, 2),
        ...                        sg.nn.LI(2))
        >>> vs, state = net(torch.rand(10, 3, 4))
        >>> vs.shape, len(state)
        (torch.Size([10, 3, 2]), 4)
    """

    recompute: float = 0.0  # class default: modules pickled before the option existed

    def __init__(self, *layers: nn.Module, recompute: Union[bool, float] = False):
        super().__init__()
        if isinstance(recompute, bool):
            recompute = float(recompute)
        if not isinstance(recompute, (int, float)) or not 0.0 <= recompute <= 1.0:
            raise ValueError("Sequential: recompute must be True, False or a fraction in "
                             f"[0, 1] of the sequence whose membrane is recomputed in "
                             f"backward; got {recompute!r}")
        self.recompute = float(recompute)
        for i, layer in enumerate(layers):
            if not isinstance(layer, nn.Module):
                raise TypeError(f"Sequential: layer {i} must be an nn.Module, "
                                f"got {type(layer).__name__}")
        self.layers = nn.ModuleList(layers)

    def cuts_gradients(self) -> bool:
        # each layer is called on the whole sequence and cuts (or is chunked) on its own
        return True

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> nn.Module:
        return self.layers[i]

    def forward(self, xs: Tensor, state: Optional[Tuple[Any, ...]] = None
                ) -> Tuple[Tensor, Tuple[Any, ...]]:
        """``(output of the last layer, state)``; ``Linear -> LIF`` pairs run fused where they
        can (see the class docstring). :meth:`forward_all`, which returns every layer's
        output, always runs the layers one by one."""
        state = self._check_state(state)
        new_state: List[Any] = []
        i = 0
        while i < len(self.layers):
            layer, s = self.layers[i], state[i]
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if nxt is not None:
                out = self._fused_tail(i, xs, state[i + 1])
                if out is not None:
                    (xs, s_next), n = out
                    new_state += [None, s_next] + [None] * (n - 2)
                    i += n
                    continue
            keep = self._fusion(layer, nxt, xs)
            if keep is not None:
                out = nxt.forward_projected(xs, layer.weight, layer.bias, state[i + 1],
                                            linear_backend=layer.backend, keep=keep)
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

    def _fused_tail(self, i: int, xs, state):
        """``(output, state), n``: layers ``i .. i + n - 1`` as a fused conv-block tail,
        ``norm -> LIF -> pool`` (n = 3) or ``norm -> LIF`` (n = 2;
        :func:`spikegrad.nn.conv.fused_tail`); or None to run them one by one."""
        from .conv import fused_tail
        for n in (3, 2):
            layers = tuple(self.layers[i:i + n])
            if len(layers) < n or any(_hooked(m) for layer in layers for m in layer.modules()):
                continue
            out = fused_tail(*layers, *((None,) if n == 2 else ()), xs, state)
            if out is not None:
                return out, n
        return None

    def _fusion(self, layer, nxt, xs) -> Optional[float]:
        """The fraction of the sequence whose membrane the fused pair ``layer -> nxt`` keeps,
        or None to run the two one by one."""
        from .layers import Linear
        from .neurons import LIF
        from .recurrent import Recurrent
        if not (isinstance(layer, Linear) and isinstance(nxt, (LIF, Recurrent))):
            return None
        if not (isinstance(xs, Tensor) and xs.dim() == 3 and xs.shape[-1] == layer.in_features):
            return None
        if any(_hooked(m) for pair in (layer, nxt) for m in pair.modules()):
            return None
        if cut_every():  # the fused pair's backward does not cut the state's gradient
            return None
        training = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (xs, layer.weight, layer.bias))
        if self.recompute == 0 and not training:
            return None
        return 1.0 - self.recompute if training else 0.0

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
