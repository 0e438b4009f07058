"""Stateless layers on ``[T, B, ...]``: time is folded into batch, one big op for all steps."""

from __future__ import annotations

from torch import Tensor, nn

from .._validate import check_choice, check_int, check_tensor
from ..functional.linear import LINEAR_BACKENDS as BACKENDS, event_linear
from ..functional.conv import direct_conv2d
from ..functional.pooling import window_pool2d


def _fold(module_forward, xs: Tensor, rank: int, owner: nn.Module) -> Tensor:
    check_tensor(xs, "xs")
    if xs.dim() != rank:
        dims = {3: "[T, B, F]", 4: "[T, B, C, L]", 5: "[T, B, C, H, W]"}.get(rank, f"rank {rank}")
        raise ValueError(f"{type(owner).__name__}: xs must be a time-major input {dims}, got "
                         f"shape {list(xs.shape)}. Put time first (xs.transpose(0, 1) for "
                         "batch-major data, xs.unsqueeze(0) for a single step).")
    T, B = xs.shape[:2]
    ys = module_forward(xs.flatten(0, 1))  # [T*B, ...]
    return ys.unflatten(0, (T, B))


class TimeDistributed(nn.Module):
    """Apply any per-sample module to every step of ``xs [T, B, ...]`` in one call."""

    def __init__(self, module: nn.Module, rank: int):
        super().__init__()
        self.module, self.rank = module, rank

    def forward(self, xs: Tensor) -> Tensor:
        """Apply the wrapped module to all steps at once.

        Args:
            xs: a time-major sequence ``[T, B, *features]`` with ``rank`` dimensions in all.

        Returns:
            ``module(xs.flatten(0, 1))`` unflattened to ``[T, B, *out_features]``: time is
            folded into the batch for one call, so the module must treat batch rows
            independently (no batch statistics across time unless that is intended).
        """
        return _fold(self.module, xs, self.rank, self.module)


class Linear(nn.Linear):
    """``nn.Linear`` on ``[T, B, in] -> [T, B, out]``: one GEMM for all time steps, or
    event-driven when the input is sparse binary spikes.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear` (same parameters and
            ``state_dict`` keys).
        backend: ``"auto"`` (default): event-driven when ``xs`` is binary and sparse enough
            for it to pay (the crossover measured in :mod:`spikegrad.kernels.event_linear`),
            else the dense GEMM; ``"dense"``: always the time-folded GEMM; ``"event"``:
            always event-driven (ValueError if ``xs`` is not binary). Results are equal up
            to float summation order. The check costs a count over a 64k-element subsample
            of ``xs`` per call, plus, when that looks sparse, one pass over ``xs`` that the
            event path needs anyway (binarity is then checked on the nonzero entries only).
            An explicit backend never falls back.

    Shapes: ``xs [T, B, in] -> [T, B, out]``.

    Example:
        >>> import torch, spikegrad as sg
        >>> layer = sg.nn.Linear(100, 8, backend="event")
        >>> xs = (torch.rand(20, 4, 100) < 0.05).float()      # spikes
        >>> dense = torch.nn.functional.linear(xs, layer.weight, layer.bias)
        >>> torch.testing.assert_close(layer(xs), dense)
    """

    backend: str = "auto"  # class default: modules pickled before the option existed load as auto

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 backend: str = "auto", device=None, dtype=None):
        check_choice(backend, "Linear: backend", BACKENDS)
        check_int(in_features, "Linear: in_features")
        check_int(out_features, "Linear: out_features")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.backend = backend

    def forward(self, xs: Tensor) -> Tensor:
        """``xs W^T + b`` at every step.

        Args:
            xs: inputs ``[T, B, in_features]`` (spikes or currents).

        Returns:
            ``[T, B, out_features]``, the input currents of the next layer: one GEMM over the
            ``T*B`` rows (``backend="dense"``), or a sum of the weight columns of the active
            inputs (``"event"``; ``"auto"`` picks per call, see the class docstring).
        """
        check_tensor(xs, "xs")
        if xs.dim() != 3 or xs.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): xs must be a "
                             f"time-major input [T, B, {self.in_features}], got shape "
                             f"{list(xs.shape)}")
        if self.backend == "dense":
            return super().forward(xs)
        return event_linear(xs, self.weight, self.bias, backend=self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", backend={self.backend!r}"


_SHAPES = {4: "[T, B, C, L]", 5: "[T, B, C, H, W]"}


def _time_folded(base: type, rank: int, doc: str, inner=None) -> type:
    def forward(self, xs: Tensor) -> Tensor:
        call = super(cls, self).forward if inner is None else lambda x: inner(self, x)
        return _fold(call, xs, rank, self)

    forward.__doc__ = (
        f"``{base.__name__}.forward`` applied to every step at once.\n\n"
        f"Args:\n    xs: a time-major sequence ``{_SHAPES[rank]}``.\n\n"
        f"Returns:\n    The layer's output for all ``T*B`` rows in one call (time folded into the "
        f"batch), unflattened to ``[T, B, ...]`` with the channels and spatial size that "
        f"``{base.__name__}`` gives one sample.")

    cls = type(base.__name__, (base,), {"forward": forward, "__doc__": doc,
                                         "__module__": __name__})
    return cls


def _conv2d(layer: nn.Conv2d, x: Tensor) -> Tensor:
    """``layer`` on ``x [N, C, H, W]``: the compiled loops for few input channels where they
    apply (:mod:`spikegrad.kernels.direct_conv`), else torch's op."""
    y = None
    if layer.padding_mode == "zeros":
        y = direct_conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding,
                          layer.dilation, layer.groups)
    return nn.Conv2d.forward(layer, x) if y is None else y


def _conv1d(layer: nn.Conv1d, x: Tensor) -> Tensor:
    """``layer`` on ``x [N, C, L]``: as :func:`_conv2d`, on rows of height one."""
    y = None
    if layer.padding_mode == "zeros" and x.dim() == 3 and layer.weight.dim() == 3:
        pad = layer.padding if isinstance(layer.padding, str) else (0, layer.padding[0])
        y = direct_conv2d(x.unsqueeze(2), layer.weight.unsqueeze(2), layer.bias,
                          (1, layer.stride[0]), pad, (1, layer.dilation[0]), layer.groups)
    return nn.Conv1d.forward(layer, x) if y is None else y.squeeze(2)


Conv1d = _time_folded(nn.Conv1d, 4, "``nn.Conv1d`` on ``[T, B, C, L]``, time folded into batch.",
                      _conv1d)
Conv2d = _time_folded(nn.Conv2d, 5,
                      "``nn.Conv2d`` on ``[T, B, C, H, W]``, time folded into batch.",
                      _conv2d)
MaxPool1d = _time_folded(nn.MaxPool1d, 4, "``nn.MaxPool1d`` on ``[T, B, C, L]``.")
MaxPool2d = _time_folded(nn.MaxPool2d, 5, "``nn.MaxPool2d`` on ``[T, B, C, H, W]``.")
AvgPool1d = _time_folded(nn.AvgPool1d, 4, "``nn.AvgPool1d`` on ``[T, B, C, L]``.")


def _pool2d(layer: nn.AvgPool2d, x: Tensor) -> Tensor:
    """``layer`` on ``x [N, C, H, W]``: the compiled window loops where they apply
    (:mod:`spikegrad.kernels.pool`; bit-identical to torch's), else torch's op."""
    y = window_pool2d(x, layer.kernel_size, layer.stride, layer.padding, layer.ceil_mode,
                      layer.divisor_override)
    return nn.AvgPool2d.forward(layer, x) if y is None else y


AvgPool2d = _time_folded(nn.AvgPool2d, 5, "``nn.AvgPool2d`` on ``[T, B, C, H, W]``.", _pool2d)


class SumPool1d(nn.AvgPool1d):
    """Sum over each window on ``[T, B, C, L]``: pooled spikes stay integer counts (no
    ``1/k`` rescaling of the next layer's input); padding counts as zeros. (No ``ceil_mode``:
    a clipped last window would be averaged over fewer taps and the ``* k`` rescale break.)"""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding, ceil_mode=False, count_include_pad=True)

    def forward(self, xs: Tensor) -> Tensor:
        """Window sums over the last dimension.

        Args:
            xs: ``[T, B, C, L]`` (e.g. spikes).

        Returns:
            ``[T, B, C, L_out]``, each output the sum of its ``kernel_size`` inputs (spike
            counts stay integers), ``L_out = floor((L + 2 padding - kernel_size) / stride) + 1``.
        """
        return _fold(lambda x: nn.AvgPool1d.forward(self, x) * self.kernel_size[0], xs, 4, self)


class SumPool2d(nn.AvgPool2d):
    """Sum over each window on ``[T, B, C, H, W]`` (see :class:`SumPool1d`)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad=True,
                         divisor_override=1)

    def forward(self, xs: Tensor) -> Tensor:
        """Window sums over the last two dimensions.

        Args:
            xs: ``[T, B, C, H, W]`` (e.g. spikes).

        Returns:
            ``[T, B, C, H_out, W_out]``, each output the sum of its ``kernel_size`` window
            (``divisor_override=1``), output sizes as :class:`torch.nn.AvgPool2d`'s.
        """
        return _fold(lambda x: _pool2d(self, x), xs, 5, self)


class Flatten(nn.Module):
    """``[T, B, *features] -> [T, B, prod(features)]``."""

    def forward(self, xs: Tensor) -> Tensor:
        """Flatten every dimension after time and batch.

        Args:
            xs: ``[T, B, *features]`` (at least three dimensions).

        Returns:
            ``[T, B, prod(features)]`` (a view where ``xs`` is contiguous), e.g. between a
            convolution block and a :class:`Linear`.
        """
        check_tensor(xs, "xs")
        if xs.dim() < 3:
            raise ValueError(f"Flatten: expected [T, B, ...features], got shape {list(xs.shape)}")
        return xs.flatten(2)


class Dropout(nn.Module):
    """Dropout with one mask per sequence: a dropped unit stays silent for all T steps.

    (Fresh masks at every step would let the noise average out over time and act much more
    weakly than the same rate in an ANN.) ``[T, B, ...] -> [T, B, ...]``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, xs: Tensor) -> Tensor:
        """Zero whole units for the whole sequence (training mode only).

        Args:
            xs: ``[T, B, ...]``.

        Returns:
            The same shape: in training mode ``xs`` times one mask per sample and unit, drawn
            once for all ``T`` steps (0 with probability ``p``, else ``1 / (1 - p)``); in eval
            mode, or with ``p = 0``, ``xs`` itself.
        """
        check_tensor(xs, "xs")
        if xs.dim() < 2:
            raise ValueError(f"Dropout: expected [T, B, ...], got shape {list(xs.shape)}")
        if not self.training or self.p == 0.0:
            return xs
        keep = 1.0 - self.p
        mask = xs.new_empty((1, *xs.shape[1:])).bernoulli_(keep) / keep  # [1, B, ...]
        return xs * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
