"""Spiking convolution blocks, and what a layer costs: fan-out, synaptic operations, MACs.

A spiking conv block is a time-folded convolution (one conv call for all T steps), an optional
batch norm of its currents, a spiking neuron over ``[T, B, C, *spatial]`` and an optional
pooling; :func:`spiking_conv` returns its layers as a list to splice into
:class:`spikegrad.nn.Sequential`, so that ``forward_all`` exposes every layer's output (rasters,
spike counts, synaptic operations).

Operation counts, measured from spikes: an input event at element ``x`` of a layer costs one
accumulate per synapse leaving ``x`` (its fan-out). :func:`synaptic_ops` sums that over the
events of a sequence; :func:`dense_macs` is what the same layer costs as an ANN layer for one
input (every element times its fan-out, i.e. ``out elements * fan-in``).
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_int, check_tensor
from ..functional import LIFState
from ..functional.conv_block import NormParams, norm_lif_pool_seq
from ..functional.pooling import square_window
from . import layers as _layers
from .neurons import IF, LIF
from .norm import PerStepBatchNorm, ThresholdBatchNorm

__all__ = ["Conv1d", "Conv2d", "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "SumPool1d",
           "SumPool2d", "ConvBlock", "conv_output_size", "spiking_conv", "fan_out", "dense_macs",
           "synaptic_ops", "fused_tail", "NORMS", "POOLS"]

NORMS = ("none", "threshold", "per_step")
POOLS = ("none", "max", "avg", "sum")
IntOrTuple = Union[int, Sequence[int]]


# --- argument checks of the time-folded conv and pooling layers ------------------------------
#
# torch accepts stride=0, zero channels or a negative padding at construction and fails at
# the first forward with a RuntimeError (or returns an empty output); these subclasses of the
# layers in .layers check their arguments up front and name the one that is wrong.

def _each(value, n: int, name: str, minimum: int, owner: str) -> Tuple[int, ...]:
    items = value if isinstance(value, (tuple, list)) else (value,) * n
    if len(items) != n:
        raise ValueError(f"{owner}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    return tuple(check_int(v, f"{owner}: {name}", minimum=minimum) for v in items)


def _bind(base: type, args, kwargs, owner: str) -> dict:
    import inspect
    try:
        bound = inspect.signature(base.__init__).bind(None, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{owner}: {e}") from None
    bound.apply_defaults()
    return bound.arguments


def _check_conv(base: type, n: int, args, kwargs) -> None:
    owner = base.__name__
    a = _bind(base, args, kwargs, owner)
    check_int(a["in_channels"], f"{owner}: in_channels")
    check_int(a["out_channels"], f"{owner}: out_channels")
    _each(a["kernel_size"], n, "kernel_size", 1, owner)
    _each(a["stride"], n, "stride", 1, owner)
    _each(a["dilation"], n, "dilation", 1, owner)
    groups = check_int(a["groups"], f"{owner}: groups")
    if not (isinstance(a["padding"], str) and a["padding"] in ("same", "valid")):
        if isinstance(a["padding"], str):
            raise ValueError(f"{owner}: padding must be an int, a tuple of {n} ints, 'same' or "
                             f"'valid', got {a['padding']!r}")
        _each(a["padding"], n, "padding", 0, owner)
    for name in ("in_channels", "out_channels"):
        if a[name] % groups:
            raise ValueError(f"{owner}: {name}={a[name]} must be divisible by groups={groups}")


def _check_pool(base: type, n: int, args, kwargs) -> None:
    owner = base.__name__
    a = _bind(base, args, kwargs, owner)
    k = _each(a["kernel_size"], n, "kernel_size", 1, owner)
    if a.get("stride") is not None:
        _each(a["stride"], n, "stride", 1, owner)
    d = _each(a["dilation"], n, "dilation", 1, owner) if "dilation" in a else (1,) * n
    pad = _each(a["padding"], n, "padding", 0, owner)
    if any(p > (di * (ki - 1) + 1) // 2 for p, ki, di in zip(pad, k, d)):
        raise ValueError(f"{owner}: padding={a['padding']!r} must be at most half the kernel "
                         f"size {a['kernel_size']!r}")


def _checked(layer: type, base: type, n: int, check) -> type:
    def __init__(self, *args, **kwargs):
        check(base, n, args, kwargs)
        layer.__init__(self, *args, **kwargs)

    members = {"__init__": __init__, "__doc__": layer.__doc__, "__module__": __name__}
    if check is _check_conv:
        def forward(self, xs: Tensor) -> Tensor:
            # torch's own message names the folded [T*B, ...] input, not xs
            if isinstance(xs, Tensor) and xs.dim() == n + 3 and xs.shape[2] != self.in_channels:
                raise ValueError(f"{layer.__name__}({self.in_channels}, {self.out_channels}): xs "
                                 f"has {xs.shape[2]} channels (dimension 2 of [T, B, C, ...]), "
                                 f"expected {self.in_channels}; got shape {list(xs.shape)}")
            return layer.forward(self, xs)
        forward.__doc__ = layer.forward.__doc__
        members["forward"] = forward
    return type(layer.__name__, (layer,), members)


Conv1d = _checked(_layers.Conv1d, nn.Conv1d, 1, _check_conv)
Conv2d = _checked(_layers.Conv2d, nn.Conv2d, 2, _check_conv)
MaxPool1d = _checked(_layers.MaxPool1d, nn.MaxPool1d, 1, _check_pool)
MaxPool2d = _checked(_layers.MaxPool2d, nn.MaxPool2d, 2, _check_pool)
AvgPool1d = _checked(_layers.AvgPool1d, nn.AvgPool1d, 1, _check_pool)
AvgPool2d = _checked(_layers.AvgPool2d, nn.AvgPool2d, 2, _check_pool)
SumPool1d = _checked(_layers.SumPool1d, _layers.SumPool1d, 1, _check_pool)
SumPool2d = _checked(_layers.SumPool2d, _layers.SumPool2d, 2, _check_pool)


class ConvBlock(NamedTuple):
    """``layers``: the modules in order; ``out_shape``: ``(C, *spatial)`` of the block's output."""

    layers: List[nn.Module]
    out_shape: Tuple[int, ...]


def _ints(v: IntOrTuple, n: int, name: str) -> Tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(t) != n or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


def conv_output_size(size: IntOrTuple, kernel_size: IntOrTuple, stride: IntOrTuple = 1,
                     padding: IntOrTuple = 0, dilation: IntOrTuple = 1) -> Tuple[int, ...]:
    """Spatial output size of a convolution or pooling, ``floor((n + 2p - d(k-1) - 1)/s) + 1``.

    Example:
        >>> conv_output_size((28, 28), 3, stride=2, padding=1)
        (14, 14)
    """
    n = 1 if isinstance(size, int) else len(size)
    size, k, s, p, d = (_ints(v, n, name) for v, name in (
        (size, "size"), (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"),
        (dilation, "dilation")))
    out = tuple((ni + 2 * pi - di * (ki - 1) - 1) // si + 1
                for ni, ki, si, pi, di in zip(size, k, s, p, d))
    if any(o < 1 for o in out):
        raise ValueError(f"input of size {size} is too small for kernel_size={k}, "
                         f"padding={p}, dilation={d}: the output would be {out}")
    return out


def _threshold_of(neuron: nn.Module) -> float:
    thr = getattr(neuron, "threshold", None)
    if isinstance(thr, nn.Module):  # spikegrad's Positive: fixed or trainable per neuron
        return float(thr().detach().mean())
    return 1.0


def spiking_conv(in_shape: Sequence[int], out_channels: int, kernel_size: IntOrTuple, *,
                 stride: IntOrTuple = 1, padding: IntOrTuple = 0, bias: Optional[bool] = None,
                 norm: str = "threshold", n_steps: Optional[int] = None, pool: str = "none",
                 pool_size: int = 2,
                 neuron: Optional[Callable[[Tuple[int, ...]], nn.Module]] = None) -> ConvBlock:
    """Conv -> (batch norm) -> spiking neuron -> (pooling), for 1-D or 2-D feature maps.

    Args:
        in_shape: ``(C_in, L)`` or ``(C_in, H, W)``: one step of one sample.
        out_channels, kernel_size, stride, padding: of the convolution.
        bias: conv bias; default: only without a norm (a norm's shift replaces it).
        norm: ``"threshold"`` (:class:`ThresholdBatchNorm`, scaled to the neuron's threshold),
            ``"per_step"`` (:class:`PerStepBatchNorm`, needs ``n_steps``) or ``"none"``.
        pool: ``"max"``, ``"avg"``, ``"sum"`` (window ``pool_size``, stride ``pool_size``) or
            ``"none"``. Max pooling of spikes gives spikes; sum pooling gives counts.
        neuron: ``neuron(shape) -> module`` for the feature shape ``(C_out, *spatial)``, e.g.
            ``lambda s: sg.nn.LIF(s, tau_mem=5e-3, tau_syn=2e-3)``; default ``LIF(shape)``.

    Returns:
        :class:`ConvBlock` (``layers``, ``out_shape``).

    Example:
        >>> import torch, spikegrad as sg
        >>> block = sg.nn.spiking_conv((1, 8, 8), 4, 3, padding=1, pool="max")
        >>> net = sg.nn.Sequential(*block.layers)
        >>> zs, _ = net(torch.rand(5, 2, 1, 8, 8))
        >>> tuple(zs.shape), block.out_shape
        ((5, 2, 4, 4, 4), (4, 4, 4))
    """
    in_shape = tuple(in_shape)
    if len(in_shape) not in (2, 3) or not all(isinstance(v, int) and v > 0 for v in in_shape):
        raise ValueError(f"in_shape must be (C, L) or (C, H, W) with positive ints, got "
                         f"{in_shape!r}")
    check_choice(norm, "norm", NORMS)
    check_choice(pool, "pool", POOLS)
    dim = len(in_shape) - 1
    conv_cls = Conv1d if dim == 1 else Conv2d
    conv = conv_cls(in_shape[0], out_channels, kernel_size, stride=stride, padding=padding,
                    bias=(norm == "none") if bias is None else bias)
    size = conv_output_size(in_shape[1:], conv.kernel_size, conv.stride, conv.padding)
    shape = (out_channels, *size)
    cell = neuron(shape) if neuron is not None else LIF(shape)
    layers: List[nn.Module] = [conv]
    if norm == "threshold":
        layers.append(ThresholdBatchNorm(out_channels, threshold=_threshold_of(cell)))
    elif norm == "per_step":
        if n_steps is None:
            raise ValueError("norm='per_step' keeps statistics per time step: pass n_steps=T")
        layers.append(PerStepBatchNorm(out_channels, n_steps))
    layers.append(cell)
    if pool != "none":
        cls = {("max", 1): MaxPool1d, ("max", 2): MaxPool2d, ("avg", 1): AvgPool1d,
               ("avg", 2): AvgPool2d, ("sum", 1): SumPool1d, ("sum", 2): SumPool2d}[(pool, dim)]
        layers.append(cls(pool_size))
        shape = (out_channels, *conv_output_size(size, pool_size, pool_size))
    return ConvBlock(layers, shape)


def fused_tail(norm: nn.Module, neuron: nn.Module, pool: Optional[nn.Module], xs: Tensor,
               state: Optional[LIFState]) -> Optional[Tuple[Tensor, LIFState]]:
    """``pool(neuron(norm(xs), state))`` (``neuron(norm(xs), state)`` for ``pool=None``) in one
    fused call (:mod:`spikegrad.kernels.conv_block`): ``(pooled spikes, neuron state)``, or
    None where it does not apply; then run the layers. Applies to a
    :class:`ThresholdBatchNorm`, an :class:`LIF` or :class:`IF` on 2-D maps and an
    :class:`AvgPool2d`, :class:`SumPool2d` or :class:`MaxPool2d` over ``k x k`` windows of
    stride ``k`` (plus what :func:`spikegrad.functional.conv_block.norm_lif_pool_seq`
    asks)."""
    if type(norm) is not ThresholdBatchNorm or type(neuron) not in (LIF, IF):
        return None
    if not (isinstance(xs, Tensor) and xs.dim() == 5 and tuple(xs.shape[2:]) == neuron.features
            and xs.shape[2] == norm.num_features):
        return None
    k, divisor, max_pool = 1, 1.0, False
    if pool is not None:
        window = _window(pool)
        if window is None:
            return None
        k, divisor, max_pool = window
    # as F.batch_norm: the running statistics are updated where the batch's are used
    p = NormParams(norm.weight, norm.bias, norm.running_mean, norm.running_var,
                   norm._use_batch_stats(), norm.eps, norm.momentum, norm.alpha * norm.threshold)
    state = neuron._start(state, xs.new_zeros(xs.shape[1], *neuron.features))
    return norm_lif_pool_seq(xs, p, state, neuron.params(), k, divisor, neuron.backend,
                             max_pool)


def _window(pool: nn.Module) -> Optional[Tuple[int, float, bool]]:
    """``(k, divisor, max)`` of a 2-D pooling layer the fused tail covers, else None."""
    if isinstance(pool, _layers.MaxPool2d):
        dilation = pool.dilation if isinstance(pool.dilation, int) else set(pool.dilation)
        if pool.return_indices or dilation not in (1, {1}):
            return None
        k = square_window(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
        return None if k is None else (k, 1.0, True)
    if isinstance(pool, (_layers.AvgPool2d, _layers.SumPool2d)):
        k = square_window(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
        if k is None:
            return None
        return k, float(k * k if pool.divisor_override is None else pool.divisor_override), False
    return None


# --- operation counts ------------------------------------------------------------------------

def fan_out(layer: nn.Module, in_shape: Sequence[int]) -> Tensor:
    """Number of synapses leaving each input element of ``layer`` (``in_shape`` = one step of
    one sample: ``(in,)``, ``(C, L)`` or ``(C, H, W)``). Exact at borders, for any stride,
    padding, dilation and groups: it is the input gradient of ``sum(conv(x))`` with all weights
    set to one.

    Example:
        >>> import torch
        >>> fan_out(torch.nn.Conv1d(1, 2, 3), (1, 5)).tolist()
        [[2.0, 4.0, 6.0, 4.0, 2.0]]
    """
    in_shape = tuple(in_shape)
    if isinstance(layer, nn.Linear):
        if in_shape != (layer.in_features,):
            raise ValueError(f"in_shape {in_shape} does not fit Linear({layer.in_features}, "
                             f"{layer.out_features}); expected ({layer.in_features},)")
        return torch.full(in_shape, float(layer.out_features))
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if len(in_shape) != layer.weight.dim() - 1 or in_shape[0] != layer.in_channels:
            raise ValueError(f"in_shape {in_shape} does not fit {type(layer).__name__} with "
                             f"{layer.in_channels} input channels")
        x = torch.zeros((1, *in_shape), dtype=torch.float64, requires_grad=True)
        w = torch.ones_like(layer.weight, dtype=torch.float64)
        conv = nn.functional.conv1d if isinstance(layer, nn.Conv1d) else nn.functional.conv2d
        if layer.padding_mode != "zeros":
            raise ValueError("fan_out counts zero-padded convolutions only, got padding_mode="
                             f"{layer.padding_mode!r}")
        with torch.enable_grad():  # callers often count under no_grad
            y = conv(x, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            (grad,) = torch.autograd.grad(y.sum(), x)
        return grad[0].float()
    raise TypeError(f"fan_out: layer must be nn.Linear, nn.Conv1d or nn.Conv2d, got "
                    f"{type(layer).__name__}")


def dense_macs(layer: nn.Module, in_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one dense application of ``layer`` (an ANN layer) to one input:
    ``sum(fan_out) = out elements * fan-in``."""
    return int(fan_out(layer, in_shape).sum())


def synaptic_ops(layer: nn.Module, xs: Tensor, fan: Optional[Tensor] = None,
                 per_step: bool = False) -> Tensor:
    """Synaptic operations per sample caused by the events of ``xs [T, B, *in_shape]``.

    Each input event costs its element's fan-out: a binary spike is one event, an integer count
    ``n`` (sum pooling) is ``n`` events, and a non-integer value (an analog current or an average
    of spikes) is one graded event. Zeros cost nothing. For an analog input repeated at every
    step that is ``T`` times the dense MACs of its nonzero elements.

    Returns:
        ``[B]``: operations per sample, summed over the ``T`` steps; with ``per_step``,
        ``[T, B]``: those of each step (their cumulative sum over ``T`` gives the cost of
        every shorter run of a causal network at once).

    Example:
        >>> import torch
        >>> xs = torch.tensor([1., 0., 1., 0., 0.]).view(1, 1, 1, 5)   # spikes at 0 and 2
        >>> synaptic_ops(torch.nn.Conv1d(1, 2, 3), xs).tolist()        # (1 + 3) * 2 channels
        [8.0]
    """
    check_tensor(xs, "xs")
    if fan is None:
        fan = fan_out(layer, xs.shape[2:])
    events = torch.where(xs == xs.round(), xs.abs(), (xs != 0).to(xs.dtype))
    ops = (events * fan.to(xs)).flatten(2).sum(2)
    return ops if per_step else ops.sum(0)
