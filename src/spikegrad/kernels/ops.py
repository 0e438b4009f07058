"""What the fused kernels need to be registered PyTorch operators (``torch.ops.spikegrad.*``).

Dynamo, AOTAutograd and ``torch.export`` cannot look inside a numba or Triton kernel, and
tracing the Python loops of the torch backend unrolls them over time. So where a call is
traced (:func:`compiling`) the kernels of :mod:`.leaky` (``leaky_seq``), :mod:`.adaptive`
(``alif_seq``) and :mod:`.projected` (``lif_pair``, ``recurrent_pair``) run as
``torch.library.custom_op`` operators, each registered next to its kernel: opaque to the
tracer, with a fake (meta) implementation that gives the output shapes and a backward that is
itself an opaque operator running the same adjoint code as the autograd Function.

Eager calls keep the autograd Functions: an operator call costs about 150 us more than an
autograd Function's (Python dispatch, schema parsing, the generated autograd node), which
would double the time of a small training step. Both paths run the same forward and backward
functions, so they agree bit for bit; tests/kernels/test_ops.py compares them.

``torch.func`` (:func:`transformed`) takes the autograd Functions too: the autograd Function
that PyTorch generates for an operator has no ``setup_context``, which functorch requires
(torch 2.13). Theirs have one, and a ``vmap`` rule that loops over the mapped dimension (an
ensemble's models each have their own weights: there is no shared batch to fold into); their
backward then runs as the backward operator, which vmap loops over the same way.

Operators take only what a schema can hold (tensors, floats, ints, bools, strings), so:

* the static :class:`~spikegrad.kernels.spec.Spec` travels as a string (:func:`spec_key`),
  which a compiled graph or an exported program shows as it is
  (``"lif|subtract|detach|-|-|fast_sigmoid|10.0|numba"``);
* each neuron constant (a number or a per-neuron tensor) as a pair: the tensor or None, and
  the number (ignored where the tensor is given);
* an output that a configuration does not have (the synaptic current without a synapse, a
  sequence that inference does not keep) as an empty tensor ``[0]``, since an operator
  returns tensors only.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch._functorch.utils import unwrap_dead_wrappers

from .. import surrogate as _surrogate
from .spec import Spec

_PLAIN = (Tensor, torch.nn.Parameter)


def compiling(xs: Tensor) -> bool:
    """Whether this call is being traced (``torch.compile``, ``torch.export``: fake or
    subclassed tensors), where the fused kernels must run as one opaque operator. Two
    comparisons; Dynamo reads the first as True and stops there."""
    return torch.compiler.is_compiling() or type(xs) not in _PLAIN


def transformed() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, ...) is active: the fused sequences then
    run as their autograd Functions (an operator's generated autograd Function has no
    ``setup_context``, which functorch requires), whose vmap rule and backward go through the
    operators."""
    return torch._C._are_functorch_transforms_active()


class FusedFunction(torch.autograd.Function):
    """Base of the fused sequences' autograd Functions (forward without ``ctx``, a
    ``setup_context``, which torch.func requires): ``apply`` as torch's, less the binding of
    default arguments that torch does on every call of such a Function (``inspect.signature``:
    about 100 us, as much as a whole small LIF step). The fused Functions have none."""

    @classmethod
    def apply(cls, *args):
        if transformed():
            return super().apply(*args)
        # what torch.autograd.Function.apply does outside torch.func, minus the binding
        return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))


# --- the Spec as a string -----------------------------------------------------------------

_SPECS: Dict[str, Spec] = {}


def _surrogate_key(s: Optional[_surrogate.Surrogate]) -> str:
    """The registered name when ``s`` is the registered surrogate of that name (a key any
    process understands), else the key it got at construction (this process only). Reads
    only: a traced call must not depend on a side effect."""
    if s is None:
        return "-"
    if s.name in _surrogate.names() and _surrogate.get(s.name).derivative is s.derivative:
        return s.name
    return s.key


def spec_key(spec: Spec) -> str:
    """``spec`` as the string the operators take (a constant in a traced graph). No side
    effect: Dynamo would defer it past the graph (and export warns of it)."""
    s = spec.surrogate
    key = "|".join((
        "lif" if spec.spiking else "li", spec.reset, "detach" if spec.detach_reset else "-",
        "scale" if spec.scale_input else "-", "syn" if spec.has_syn else "-",
        _surrogate_key(s), repr(float(s.beta)) if s is not None else "-", spec.backend))
    return key


def spec_of(key: str) -> Spec:
    """The :class:`Spec` a key was made from (or, e.g. in a program exported by another
    process, the one it names)."""
    spec = _SPECS.get(key)
    if spec is not None:
        return spec
    kind, reset, detach, scale, syn, sname, beta, backend = key.split("|")
    if sname == "-":
        surr = None
    elif "#" in sname:
        own = _surrogate.from_key(sname)
        if own is None:
            raise ValueError(f"the surrogate {sname.split('#')[0]!r} of this program does not "
                             "exist in this process; register it under its name with "
                             "spikegrad.surrogate.register before tracing or exporting")
        surr = own.with_beta(float(beta))
    else:
        surr = _surrogate.get(sname, float(beta))
    spec = Spec(spiking=kind == "lif", reset=reset, detach_reset=detach == "detach",
                scale_input=scale == "scale", has_syn=syn == "syn", surrogate=surr,
                backend=backend)
    _SPECS[key] = spec
    return spec


# --- constants: a number or a tensor --------------------------------------------------------

def split_constants(values: Sequence) -> Tuple[List[Optional[Tensor]], List[float]]:
    """Constants (numbers, tensors or None) as ``(tensors or None, numbers)``."""
    tensors = [c if isinstance(c, Tensor) else None for c in values]
    numbers = [0.0 if c is None or isinstance(c, Tensor) else float(c) for c in values]
    return tensors, numbers


def join_constants(tensors: Sequence[Optional[Tensor]], numbers: Sequence[float]) -> list:
    return [t if t is not None else n for t, n in zip(tensors, numbers)]


def empty_for_none(t: Optional[Tensor], like: Tensor) -> Tensor:
    """``t``, or the empty stand-in ``[0]`` for an output the configuration lacks."""
    return like.new_empty(0) if t is None else t


def none_for_empty(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None or (t.dim() == 1 and t.shape[0] == 0) else t


# --- vmap: one call per mapped slice ----------------------------------------------------------

def _slice(a, d, b: int):
    # a structure's dims come as a structure (a NamedTuple's too: all None when unmapped)
    if d is None or (isinstance(d, (list, tuple)) and all(x is None for x in d)):
        return a
    if isinstance(a, (list, tuple)):
        dims = d if isinstance(d, (list, tuple)) else [d] * len(a)
        items = [_slice(x, dd, b) for x, dd in zip(a, dims)]
        if isinstance(a, list):
            return items
        return type(a)(*items) if hasattr(a, "_fields") else tuple(items)
    return a if a is None else a.select(d, b)


def loop_vmap(op):
    """A vmap rule that runs ``op`` once per mapped slice and stacks the outputs: the
    ensemble case (each model its own weights) has no shared batch to fold into."""
    def rule(info, in_dims, *args):
        outs = [op(*(_slice(a, d, b) for a, d in zip(args, in_dims)))
                for b in range(info.batch_size)]
        stacked = [torch.stack(list(k)) for k in zip(*outs)]
        if isinstance(outs[0], tuple):
            return tuple(stacked), (0,) * len(stacked)
        return stacked, [0] * len(stacked)
    return rule


def vmap_by_loop(fn, info, in_dims, args):
    """The ``vmap`` staticmethod of an autograd Function whose outputs are tensors or None:
    ``fn`` once per mapped slice, outputs stacked along dimension 0."""
    outs = [fn(*(_slice(a, d, b) for a, d in zip(args, in_dims)))
            for b in range(info.batch_size)]
    stacked = tuple(None if k[0] is None else torch.stack(list(k)) for k in zip(*outs))
    return stacked, tuple(None if t is None else 0 for t in stacked)


def needs(*tensors) -> List[bool]:
    """Which of ``tensors`` (None allowed) require a gradient."""
    return [isinstance(t, Tensor) and t.requires_grad for t in tensors]


def no_grads(consts: Sequence[Optional[Tensor]]):
    """The gradient of a constants list that takes none: a list with a None holds no tensor to
    the autograd wrapper (one None), a list of tensors does (a None each)."""
    return [None] * len(consts) if all(isinstance(c, Tensor) for c in consts) else None
