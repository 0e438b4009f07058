"""Surrogate gradients: a Heaviside spike forward, a smooth pseudo-derivative backward.

A :class:`Surrogate` is a small frozen object: a derivative ``phi(x, beta)`` used in the
backward pass, the primitive ``Phi(x, beta)`` whose derivative it is (a smooth step, kept as
the test oracle and for smooth relaxations), and the slope/temperature ``beta``. The formula of
each surrogate is written once, here. ``x`` is the distance to threshold, ``v - theta``.

================== ============================================ =============================
name               derivative phi(x)                            primitive Phi(x)
================== ============================================ =============================
fast_sigmoid       1 / (1 + beta |x|)^2     (SuperSpike)        x / (1 + beta |x|)
sigmoid            beta s (1 - s),  s = sigmoid(beta x)          sigmoid(beta x)
atan               (beta/2) / (1 + (pi/2 beta x)^2)             1/2 + atan(pi/2 beta x) / pi
triangle           beta max(0, 1 - beta |x|)                    1/2 + u - u|u|/2, u=clip(beta x)
gaussian           beta / sqrt(2 pi) exp(-(beta x)^2 / 2)       (1 + erf(beta x / sqrt 2)) / 2
exponential        (beta/2) exp(-beta |x|)  (SLAYER)            1/2 + sign(x)(1 - e^{-beta|x|})/2
straight_through   beta 1[|beta x| < 1/2]   (boxcar)            clip(beta x + 1/2, 0, 1)
================== ============================================ =============================

All but ``fast_sigmoid`` integrate to one (``Phi`` is a smooth step from 0 to 1); SuperSpike's
form peaks at one instead, as in Zenke & Ganguli (2018). Larger ``beta`` means a sharper
surrogate for every entry.

Example:
    >>> import torch, spikegrad as sg
    >>> v = torch.tensor([0.5, 1.0, 1.5], requires_grad=True)
    >>> z = sg.spike(v - 1.0, sg.surrogate.get("fast_sigmoid", beta=2.0))
    >>> z.tolist()
    [0.0, 0.0, 1.0]
    >>> z.sum().backward(); [round(g, 4) for g in v.grad.tolist()]
    [0.25, 1.0, 0.25]
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Dict, Union

import torch
from torch import Tensor

SurrogateFn = Callable[[Tensor, float], Tensor]

__all__ = ["Surrogate", "spike", "get", "register", "names", "SurrogateLike"]


@dataclass(frozen=True)
class Surrogate:
    """A surrogate derivative with its primitive and slope.

    Attributes:
        name: registry name.
        derivative: ``phi(x, beta)``, used in place of the Dirac delta in backward.
        primitive: ``Phi(x, beta)`` with ``dPhi/dx = phi``; a smooth step.
        beta: slope/temperature (> 0). Larger is sharper.
    """

    name: str
    derivative: SurrogateFn
    primitive: SurrogateFn
    beta: float

    def __post_init__(self):
        # built directly (not through register/get) it is checked the same way
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Surrogate: name must be a non-empty string, got {self.name!r}")
        if not callable(self.derivative) or not callable(self.primitive):
            raise TypeError("Surrogate: derivative and primitive must be callables f(x, beta)")
        object.__setattr__(self, "beta", _check_beta(self.beta, self.name))
        # a name for this derivative that a compiled graph or exported program can carry
        # (spikegrad.kernels.ops): known from construction on, so that tracing reads it only
        object.__setattr__(self, "key", f"{self.name}#{id(self.derivative):x}")
        _BY_KEY[self.key] = self

    def grad(self, x: Tensor) -> Tensor:
        """``phi(x)`` at this surrogate's ``beta``."""
        return self.derivative(x, self.beta)

    def smooth(self, x: Tensor) -> Tensor:
        """``Phi(x)``: the smooth step whose derivative is :meth:`grad`."""
        return self.primitive(x, self.beta)

    def with_beta(self, beta: float) -> "Surrogate":
        return replace(self, beta=_check_beta(beta, self.name))


SurrogateLike = Union[str, Surrogate]

# every Surrogate alive, by its key (not a field: equality and hashing ignore it)
_BY_KEY: "weakref.WeakValueDictionary[str, Surrogate]" = weakref.WeakValueDictionary()


def from_key(key: str) -> Surrogate | None:
    """The surrogate (alive in this process) whose ``key`` is ``key``, or None."""
    return _BY_KEY.get(key)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, surrogate: Surrogate) -> Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_z: Tensor):
        (x,) = ctx.saved_tensors
        return grad_z * ctx.surrogate.grad(x), None


def spike(x: Tensor, surrogate: SurrogateLike = "fast_sigmoid") -> Tensor:
    """Heaviside step ``H(x)`` with ``H(0) = 0``; backward multiplies by ``phi(x)``.

    Args:
        x: distance to threshold ``v - theta``, any shape, floating dtype.
        surrogate: a :class:`Surrogate` or a registered name (with its default ``beta``).

    Returns:
        Spikes in ``{0, 1}`` with the dtype and shape of ``x``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"spike: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"spike: x must be a floating-point tensor, got dtype {x.dtype}; "
                        "convert it with x.float()")
    return _Spike.apply(x, get(surrogate))


# --- registry -------------------------------------------------------------------------------

_REGISTRY: Dict[str, Surrogate] = {}


def _check_beta(beta, name: str) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"surrogate {name!r}: beta must be a positive number, "
                        f"got {type(beta).__name__}")
    if not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"surrogate {name!r}: beta must be a finite number > 0, got {beta}")
    return float(beta)


def register(name: str, derivative: SurrogateFn, primitive: SurrogateFn, beta: float,
             *, overwrite: bool = False) -> Surrogate:
    """Add a surrogate to the registry and return it.

    Args:
        name: the key for :func:`get`.
        derivative: ``phi(x, beta) -> Tensor``, elementwise.
        primitive: ``Phi(x, beta) -> Tensor`` with ``dPhi/dx = phi`` (tests check this).
        beta: default slope.
        overwrite: replace an existing entry of the same name.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty string, got {name!r}")
    if not callable(derivative) or not callable(primitive):
        raise TypeError("register: derivative and primitive must be callables f(x, beta)")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"register: a surrogate named {name!r} exists; "
                         "pass overwrite=True to replace it")
    s = Surrogate(name, derivative, primitive, _check_beta(beta, name))
    _REGISTRY[name] = s
    return s


def names() -> list:
    """Registered surrogate names."""
    return sorted(_REGISTRY)


def get(surrogate: SurrogateLike, beta: float | None = None) -> Surrogate:
    """Look up a surrogate by name (or pass one through), optionally with a new ``beta``."""
    if isinstance(surrogate, Surrogate):
        s = surrogate
    elif isinstance(surrogate, str):
        if surrogate not in _REGISTRY:
            raise ValueError(f"unknown surrogate {surrogate!r}; registered: {', '.join(names())}"
                             " (add your own with spikegrad.surrogate.register)")
        s = _REGISTRY[surrogate]
    else:
        raise TypeError("surrogate must be a registered name or a spikegrad.surrogate.Surrogate, "
                        f"got {type(surrogate).__name__}")
    return s if beta is None else s.with_beta(beta)


# --- the built-in surrogates: each formula once --------------------------------------------

def _fast_sigmoid(x, b):
    return 1.0 / (1.0 + b * x.abs()) ** 2


def _fast_sigmoid_p(x, b):
    return x / (1.0 + b * x.abs())


def _sigmoid(x, b):
    s = torch.sigmoid(b * x)
    return b * s * (1.0 - s)


def _sigmoid_p(x, b):
    return torch.sigmoid(b * x)


def _atan(x, b):
    return (b / 2.0) / (1.0 + (math.pi / 2.0 * b * x) ** 2)


def _atan_p(x, b):
    return 0.5 + torch.atan(math.pi / 2.0 * b * x) / math.pi


def _triangle(x, b):
    return b * torch.clamp(1.0 - b * x.abs(), min=0.0)


def _triangle_p(x, b):
    u = torch.clamp(b * x, -1.0, 1.0)
    return 0.5 + u - u * u.abs() / 2.0


def _gaussian(x, b):
    return b / math.sqrt(2.0 * math.pi) * torch.exp(-0.5 * (b * x) ** 2)


def _gaussian_p(x, b):
    return 0.5 * (1.0 + torch.erf(b * x / math.sqrt(2.0)))


def _exponential(x, b):
    return 0.5 * b * torch.exp(-b * x.abs())


def _exponential_p(x, b):
    return 0.5 + 0.5 * torch.sign(x) * (1.0 - torch.exp(-b * x.abs()))


def _straight_through(x, b):
    return b * ((b * x).abs() < 0.5).to(x.dtype)


def _straight_through_p(x, b):
    return torch.clamp(b * x + 0.5, 0.0, 1.0)


register("fast_sigmoid", _fast_sigmoid, _fast_sigmoid_p, beta=10.0)
register("sigmoid", _sigmoid, _sigmoid_p, beta=5.0)
register("atan", _atan, _atan_p, beta=2.0)
register("triangle", _triangle, _triangle_p, beta=1.0)
register("gaussian", _gaussian, _gaussian_p, beta=2.0)
register("exponential", _exponential, _exponential_p, beta=2.0)
register("straight_through", _straight_through, _straight_through_p, beta=1.0)

# The built-in derivatives, in the order of the ids (1, 2, ...) under which the compiled
# kernels (numba, Triton) evaluate them inside their loops; 0 there means "call the torch
# function" (a user's surrogate).
BUILTIN_DERIVATIVES = (_fast_sigmoid, _sigmoid, _atan, _triangle, _gaussian, _exponential,
                       _straight_through)
