"""The surrogate gradient of a feed-forward spiking layer as a sum of three-factor products.

A conv (or dense) layer feeds input spikes ``X_t`` through weights ``W`` into LIF neurons
(see :mod:`spikegrad.functional.lif`)::

    I_t = W * X_t + b                        convolution (stride s, padding p, dilation d)
    i_t = a_syn i_{t-1} + I_t                current-based neuron only; else i_t = I_t
    u_t = a_mem v_{t-1} + g i_t              g = 1 - a_mem with scale_input, else 1
    z_t = H(u_t - theta)                     backward: phi(u_t - theta)
    v_t = u_t - sg(z_t) theta                reset="subtract", detach_reset=True
        = u_t                                reset="none"

The reset carries no gradient, so ``du_t/du_{t-1} = a_mem`` and, with ``I_s`` linear in ``W``,
``du_t/dW = g sum_{s<=t} kappa(t - s) dI_s/dW`` with the postsynaptic potential kernel

    kappa(k) = a_mem^k                                        voltage-based neuron
    kappa(k) = (a_mem^(k+1) - a_syn^(k+1)) / (a_mem - a_syn)  current-based (double exponential;
                                                              (k+1) a^k when a_mem = a_syn)

Hence, for ``W[k, c, r, q]`` of a Conv2d (Conv1d drops ``q``; a dense layer drops the positions):

    dL/dW[k, c, r, q] = sum_{t, b, i, j}  e_t[b, k, i, j]                             (1)
                                          * eps_t[b, c, s i + d r - p, s j + d q - p]  (2), (3)

1. ``e_t = dL/dz_t * phi(u_t - theta) * g``: the postsynaptic error ``dL/dz_t`` (everything
   after the layer, back-propagated through later layers and time) times the surrogate
   derivative;
2. ``eps_t = sum_{s<=t} kappa(t - s) X_s``: the eligibility trace of the input, the input spikes
   filtered by the neuron's leak (zero outside the input, which is what padding means);
3. the position ``s i + d r - p`` that output position ``i`` reads through kernel offset ``r``:
   weight sharing sums over every output position.

``tests/functional/test_three_factor.py`` checks that this equals autograd's BPTT gradient to
1e-10 in float64 (strides, paddings, kernel sizes, several T, Conv1d/Conv2d/dense, voltage- and
current-based neurons). With a reset that carries gradient, or ``reset="to_value"``
(``dv_t/du_t = 1 - z_t``), the trace would depend on the postsynaptic spikes and the form above
no longer holds; these functions refuse such parameters.
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_int, check_tensor
from .leaky import lowpass
from .lif import LIFParams

__all__ = ["psp_kernel", "eligibility_trace", "pre_reset_membrane", "postsynaptic_factor",
           "conv_weight_grad", "linear_weight_grad", "bias_grad", "weight_grad"]

IntOrTuple = Union[int, Sequence[int]]


def _scalar_decay(a, name: str) -> Optional[float]:
    """A decay shared by every neuron of the layer, as a float (None stays None)."""
    if a is None:
        return None
    if isinstance(a, Tensor):
        flat = a.detach().flatten()
        if flat.numel() == 0 or not bool((flat == flat[0]).all()):
            raise ValueError(f"{name}: the three-factor form here needs one decay for the whole "
                             f"layer (the trace is then a property of the input alone); got "
                             f"per-neuron values {flat[:4].tolist()}...; use learn_tau=False")
        a = float(flat[0])
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
        raise ValueError(f"{name} must be a decay in [0, 1], got {a!r}")
    return float(a)


def _check_params(p: LIFParams) -> Tuple[float, Optional[float], float]:
    if not isinstance(p, LIFParams):
        raise TypeError(f"p must be LIFParams, got {type(p).__name__}")
    if not (p.reset == "none" or (p.reset == "subtract" and p.detach_reset)):
        raise ValueError(
            f"the three-factor form needs a reset without gradient; got reset={p.reset!r}, "
            f"detach_reset={p.detach_reset}. Use reset='subtract' with detach_reset=True, or "
            "reset='none' (with to_value or an attached reset the trace depends on the "
            "postsynaptic spikes)")
    a_mem = _scalar_decay(p.decay_mem, "p.decay_mem")
    a_syn = _scalar_decay(p.decay_syn, "p.decay_syn")
    return a_mem, a_syn, (1.0 - a_mem) if p.scale_input else 1.0


def psp_kernel(n_steps: int, decay_mem: float, decay_syn: Optional[float] = None,
               dtype: torch.dtype = torch.float64) -> Tensor:
    """``kappa(k)`` for ``k = 0 .. n_steps-1``, in closed form (the module docstring).

    Example:
        >>> psp_kernel(3, 0.5).tolist()
        [1.0, 0.5, 0.25]
        >>> psp_kernel(3, 0.5, 0.5).tolist()       # (k + 1) a^k
        [1.0, 1.0, 0.75]
    """
    check_int(n_steps, "n_steps")
    a_mem, a_syn = _scalar_decay(decay_mem, "decay_mem"), _scalar_decay(decay_syn, "decay_syn")
    k = torch.arange(n_steps, dtype=dtype)
    if a_syn is None:
        return a_mem ** k
    if a_mem == a_syn:
        return (k + 1) * a_mem ** k
    return (a_mem ** (k + 1) - a_syn ** (k + 1)) / (a_mem - a_syn)


def eligibility_trace(xs: Tensor, decay_mem, decay_syn=None) -> Tensor:
    """Factor (2): the input filtered by the neuron's leak, ``eps_t = sum_{s<=t} kappa(t-s) x_s``.

    Computed recursively (a low-pass per time constant, the synaptic one first), which equals
    the closed form of :func:`psp_kernel`.

    Shapes: ``xs [T, B, *features] -> [T, B, *features]``.
    """
    check_tensor(xs, "xs")
    a_mem, a_syn = _scalar_decay(decay_mem, "decay_mem"), _scalar_decay(decay_syn, "decay_syn")
    if a_syn is not None:
        xs = lowpass(xs, a_syn)  # the synaptic current a unit input spike causes
    return lowpass(xs, a_mem)


def pre_reset_membrane(zs: Tensor, vs: Tensor, p: LIFParams) -> Tensor:
    """``u_t``, the membrane compared to the threshold, from the spikes and the after-reset
    membranes of :func:`spikegrad.functional.lif_trace` (subtract: ``v_t + z_t theta``)."""
    _check_params(p)
    return vs + zs * p.threshold if p.reset == "subtract" else vs


def postsynaptic_factor(grad_zs: Tensor, us: Tensor, p: LIFParams) -> Tensor:
    """Factor (1): ``e_t = dL/dz_t * phi(u_t - theta) * g``, ``[T, B, *features]``.

    Args:
        grad_zs: ``dL/dz_t``, the gradient of the loss with respect to the layer's output spikes
            (e.g. ``torch.autograd.grad(loss, zs)``).
        us: pre-reset membranes ``u_t`` (:func:`pre_reset_membrane`).
        p: the neuron parameters of the forward pass.
    """
    _, _, g = _check_params(p)
    check_tensor(grad_zs, "grad_zs")
    check_tensor(us, "us")
    if grad_zs.shape != us.shape:
        raise ValueError(f"grad_zs has shape {list(grad_zs.shape)} but us has "
                         f"{list(us.shape)}; both are [T, B, *features] of the same layer")
    return grad_zs * p.surrogate.grad(us - p.threshold) * g


def _tuple(v: IntOrTuple, n: int, name: str) -> Tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(t) != n or not all(isinstance(x, int) and not isinstance(x, bool) for x in t):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {v!r} (string "
                         "paddings such as 'same' are not supported: give the number)")
    return t


def conv_weight_grad(xs: Tensor, grad_zs: Tensor, us: Tensor, p: LIFParams,
                     kernel_size: IntOrTuple, stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     dilation: IntOrTuple = 1) -> Tensor:
    """``dL/dW`` of a Conv1d/Conv2d feeding LIF neurons, from the three factors.

    Args:
        xs: the layer's input ``[T, B, C_in, *S_in]`` (spikes, or any current).
        grad_zs: ``dL/dz_t`` of its output spikes ``[T, B, C_out, *S_out]``.
        us: pre-reset membranes, same shape as ``grad_zs``.
        p: neuron parameters (decays shared by the layer; reset without gradient).
        kernel_size, stride, padding, dilation: the convolution's geometry (groups = 1).

    Returns:
        ``[C_out, C_in, *kernel_size]``, the gradient autograd's BPTT computes for the weight.
    """
    a_mem, a_syn, _ = _check_params(p)
    check_tensor(xs, "xs")
    n = xs.dim() - 3
    if n not in (1, 2):
        raise ValueError(f"xs must be [T, B, C, L] or [T, B, C, H, W], got shape {list(xs.shape)}")
    k, s, pad, d = (_tuple(v, n, name) for v, name in ((kernel_size, "kernel_size"),
                                                        (stride, "stride"), (padding, "padding"),
                                                        (dilation, "dilation")))
    e = postsynaptic_factor(grad_zs, us, p).flatten(0, 1)        # [T*B, C_out, *S_out]
    eps = eligibility_trace(xs, a_mem, a_syn).flatten(0, 1)      # [T*B, C_in, *S_in]
    # (3): positions outside the input read zeros; index the padded trace from 0
    eps = F.pad(eps, [q for pp in reversed(pad) for q in (pp, pp)])
    out_size = e.shape[2:]
    grad = e.new_zeros((e.shape[1], eps.shape[1], *k))
    for offset in itertools.product(*(range(kk) for kk in k)):
        # output position o reads padded input position s*o + d*r through offset r
        window = tuple(slice(dd * r, dd * r + ss * (no - 1) + 1, ss)
                       for r, ss, dd, no in zip(offset, s, d, out_size))
        patch = eps[(slice(None), slice(None)) + window]          # [T*B, C_in, *S_out]
        grad[(slice(None), slice(None)) + offset] = torch.einsum(
            "nkl,ncl->kc", e.flatten(2), patch.flatten(2))
    return grad


def linear_weight_grad(xs: Tensor, grad_zs: Tensor, us: Tensor, p: LIFParams) -> Tensor:
    """``dL/dW`` of a dense layer feeding LIF neurons: ``sum_{t,b} e_t[b, j] eps_t[b, i]``.

    Shapes: ``xs [T, B, in]``, ``grad_zs``, ``us`` ``[T, B, out]`` -> ``[out, in]``.
    """
    a_mem, a_syn, _ = _check_params(p)
    check_tensor(xs, "xs")
    e = postsynaptic_factor(grad_zs, us, p)                       # [T, B, out]
    eps = eligibility_trace(xs, a_mem, a_syn)                     # [T, B, in]
    return torch.einsum("tbj,tbi->ji", e, eps)


def bias_grad(grad_zs: Tensor, us: Tensor, p: LIFParams) -> Tensor:
    """``dL/db`` per output channel: a bias is an input that is 1 at every step, so its trace
    is ``sum_{s<=t} kappa(s)``. Shapes: ``[T, B, C, *S] -> [C]``."""
    a_mem, a_syn, _ = _check_params(p)
    e = postsynaptic_factor(grad_zs, us, p)
    eps = eligibility_trace(e.new_ones(e.shape[0], 1), a_mem, a_syn)  # [T, 1]
    per_step = e.transpose(1, 2).flatten(2).sum(2)               # [T, C]
    return (per_step * eps).sum(0)


def weight_grad(layer: nn.Module, xs: Tensor, grad_zs: Tensor, us: Tensor, p: LIFParams
                ) -> Tensor:
    """:func:`conv_weight_grad` or :func:`linear_weight_grad` with the geometry read from an
    ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear`` (the time-folded ``spikegrad.nn`` ones included)."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        if layer.groups != 1 or layer.padding_mode != "zeros":
            raise ValueError("weight_grad supports groups=1 and padding_mode='zeros' only, got "
                             f"groups={layer.groups}, padding_mode={layer.padding_mode!r}")
        return conv_weight_grad(xs, grad_zs, us, p, layer.kernel_size, layer.stride,
                                layer.padding, layer.dilation)
    if isinstance(layer, nn.Linear):
        return linear_weight_grad(xs, grad_zs, us, p)
    raise TypeError(f"layer must be an nn.Conv1d, nn.Conv2d or nn.Linear, got "
                    f"{type(layer).__name__}")
