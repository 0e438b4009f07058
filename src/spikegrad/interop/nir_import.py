"""NIR graph -> spikegrad model (:func:`from_nir`; conventions in :mod:`spikegrad.interop`)."""

from __future__ import annotations

import math
import os
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .. import nn as snn
from .._validate import check_choice, check_positive
from ..functional import LINEAR_BACKENDS
from .discretisation import DISCRETISATIONS
from .nir_graph import Items, chain, recurrent_parts
from .nir_meta import read_hints, require_nir
from .nir_neurons import LEAKY_NODES, import_neuron, is_neuron


class Pending(NamedTuple):
    """What a layer needs folded into the preceding weights: its input becomes
    ``gain * (x + bias)`` (a per-neuron input gain; a recurrent layer's constant bias)."""

    gain: Optional[np.ndarray]
    bias: Optional[np.ndarray]


def _ints(value, n: int) -> Tuple[int, ...]:
    v = [int(x) for x in np.atleast_1d(np.asarray(value))]
    return tuple(v * n if len(v) == 1 else v)


def _padding(value, n: int):
    if isinstance(value, bytes):
        value = value.decode("utf8")
    return str(value) if isinstance(value, (str, np.str_)) else _ints(value, n)


def _tensor(array, like: torch.Tensor) -> torch.Tensor:
    # a copy: arrays read from HDF5 are read-only, and the graph must not share the model's
    # memory
    return torch.tensor(np.array(array), dtype=like.dtype)


def _affine(node, shape, where: str):
    w = np.asarray(node.weight)
    if w.ndim != 2:
        raise ValueError(f"{where}: weight of shape {w.shape}; spikegrad's Linear takes a 2-d "
                         "[out, in] weight")
    bias = getattr(node, "bias", None)
    backend = read_hints(node).get("backend")
    m = snn.Linear(w.shape[1], w.shape[0], bias=bias is not None,
                   backend=backend if backend in LINEAR_BACKENDS else "auto")
    with torch.no_grad():
        m.weight.copy_(_tensor(w, m.weight))
        if bias is not None:
            m.bias.copy_(_tensor(np.broadcast_to(bias, (w.shape[0],)), m.bias))
    return m, (w.shape[0],)


def _conv(node, shape, where: str):
    w = np.asarray(node.weight)
    n = w.ndim - 2
    groups = int(np.asarray(node.groups))
    stride, dilation = _ints(node.stride, n), _ints(node.dilation, n)
    padding = _padding(node.padding, n)
    bias = np.broadcast_to(np.asarray(node.bias), (w.shape[0],))
    has_bias = read_hints(node).get("bias", True) or bool(np.any(bias != 0))
    cls = snn.Conv1d if n == 1 else snn.Conv2d
    m = cls(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=stride, padding=padding,
            dilation=dilation, groups=groups, bias=has_bias)
    with torch.no_grad():
        m.weight.copy_(_tensor(w, m.weight))
        if has_bias:
            m.bias.copy_(_tensor(bias, m.bias))
    out = None
    if shape is not None:
        pad = 0 if padding == "valid" else padding
        spatial = (shape[1:] if padding == "same"
                   else snn.conv_output_size(shape[1:], w.shape[2:], stride, pad, dilation))
        out = (w.shape[0], *spatial)
    return m, out


def _pool(node, shape, where: str):
    k, stride, pad = (_ints(v, 2) for v in (node.kernel_size, node.stride, node.padding))
    cls = snn.SumPool2d if type(node).__name__ == "SumPool2d" else snn.AvgPool2d
    m = cls(k, stride, pad)
    out = None if shape is None else (shape[0], *snn.conv_output_size(shape[1:], k, stride, pad))
    return m, out


def _flatten(node, shape, where: str):
    t = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    in_shape = shape if t is None else tuple(int(s) for s in np.atleast_1d(t))
    start, end = int(node.start_dim), int(node.end_dim)
    if in_shape is not None:
        ndim = len(in_shape)
        whole = ndim == 1 or (start % ndim == 0 and end % ndim == ndim - 1)
    else:
        whole = start == 0 and end == -1
    if not whole:
        raise ValueError(f"{where}: Flatten(start_dim={start}, end_dim={end}) of input "
                         f"{in_shape} keeps some dimensions; spikegrad's Flatten flattens all "
                         "features (NIR start_dim=0, end_dim=-1, counted without the batch)")
    return snn.Flatten(), None if in_shape is None else (math.prod(in_shape),)


_STATELESS = {"Affine": _affine, "Linear": _affine, "Conv1d": _conv, "Conv2d": _conv,
              "AvgPool2d": _pool, "SumPool2d": _pool, "Flatten": _flatten}


def _recurrent(sub, dt: float, disc: str, where: str):
    """A recurrent subgraph as ``Recurrent(neuron)``, and what to fold into the layer before."""
    parts = recurrent_parts(sub, where)
    names = [type(n).__name__ for _, n in parts.neuron]
    if not (is_neuron(parts.neuron[0][1]) and (len(names) == 1 or (
            len(names) == 2 and names[0] in LEAKY_NODES and names[1] == "Threshold"))):
        raise ValueError(f"{where}: the recurrent subgraph's neuron is {names}; spikegrad reads "
                         "one LIF, CubaLIF, IF, LI, CubaLI or I node (or LI/CubaLI/I followed "
                         "by a Threshold)")
    w = np.asarray(parts.w_rec.weight, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"{where}: w_rec of shape {w.shape}; a recurrent layer of N neurons "
                         "needs an [N, N] weight")
    n = w.shape[0]
    neuron, gain = import_neuron([node for _, node in parts.neuron], (n,), dt, disc, where)
    bias = getattr(parts.w_rec, "bias", None)
    bias = None if bias is None or not np.any(bias) else np.broadcast_to(bias, (n,))
    autapses = read_hints(sub).get("autapses", True) or bool(np.any(np.diag(w)))
    m = snn.Recurrent(neuron, autapses=autapses)
    with torch.no_grad():
        m.weight.copy_(_tensor(w if gain is None else gain[:, None] * w, m.weight))
    pending = None if gain is None and bias is None else Pending(gain, bias)
    return m, (n,), pending


def _fold(modules: List[nn.Module], pending: Pending, where: str) -> None:
    """Scale the preceding weight layer's output by ``pending.gain`` (after adding
    ``pending.bias``), in float64."""
    prev = modules[-1] if modules else None
    if not isinstance(prev, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        what = f"the preceding layer is {type(prev).__name__}" if prev is not None else \
            "it is the first layer"
        raise ValueError(
            f"{where}: its input gain per step (r and w_in against the time constants; "
            f"{'' if pending.gain is None else np.ravel(pending.gain)[:3]}...) is not 1, nor "
            "1 - a (spikegrad's scale_input), or it has a recurrent bias; spikegrad folds "
            f"those into the preceding Affine/Linear/Conv, but {what}. Check dt and "
            "discretisation (graphs from snnTorch and Norse read with discretisation='euler')")
    out = prev.weight.shape[0]
    gain = np.ones(out) if pending.gain is None else np.asarray(pending.gain, np.float64)
    if gain.shape != (out,):
        per_channel = gain.reshape(out, -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise ValueError(f"{where}: its input gain varies over space; spikegrad can fold "
                             "only one gain per output channel into the preceding convolution")
        gain = per_channel[:, 0]
    if pending.bias is not None and prev.bias is None:
        raise ValueError(f"{where}: its recurrent weights have a bias, which spikegrad adds to "
                         "the preceding layer's bias, but that layer has none")
    with torch.no_grad():
        g = torch.from_numpy(gain)
        prev.weight.copy_(prev.weight.double() * g.view(-1, *[1] * (prev.weight.dim() - 1)))
        if prev.bias is not None:
            b = prev.bias.double()
            if pending.bias is not None:
                b = b + torch.from_numpy(np.array(pending.bias, np.float64))
            prev.bias.copy_(b * g)


def _groups(items: Items) -> List[Items]:
    """Items grouped into layers: a leaky neuron node with the Threshold after it is one."""
    groups, i = [], 0
    while i < len(items):
        pair = items[i:i + 2]
        if len(pair) == 2 and type(pair[0][1]).__name__ in LEAKY_NODES \
                and type(pair[1][1]).__name__ == "Threshold":
            groups.append(pair)
            i += 2
        else:
            groups.append(pair[:1])
            i += 1
    return groups


def _layer(group: Items, shape, dt: float, disc: str):
    """``(module, output shape or None, Pending or None)`` of one group of nodes."""
    name, node = group[0]
    kind = type(node).__name__
    where = f"NIR node {name!r} ({kind})"
    if kind in _STATELESS:
        try:
            return (*_STATELESS[kind](node, shape, where), None)
        except (TypeError, ValueError) as e:  # spikegrad's own checks of the layer's arguments
            raise ValueError(e.args[0] if str(e).startswith(where) else f"{where}: {e}") from None
    if kind == "NIRGraph":
        return _recurrent(node, dt, disc, where)
    if is_neuron(node):
        m, gain = import_neuron([n for _, n in group], shape, dt, disc, where)
        return m, tuple(m.features), None if gain is None else Pending(gain, None)
    hint = (" (a Threshold is read only right after an LI, CubaLI or I node: together they "
            "are an LIF without reset)") if kind == "Threshold" else ""
    raise ValueError(f"{where}: spikegrad has no layer for NIR's {kind}{hint}; from_nir "
                     "reads Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, "
                     "LIF, CubaLIF, IF, LI, CubaLI, I (+ Threshold) and recurrent subgraphs")


def _without_batch(shape, items: Items):
    """The Input type without the leading batch dimension of 1 that some exporters write (Norse
    1.1, through nirtorch's ``extract_nir_graph``, types the input with its sample's shape,
    ``[1, C, H, W]``): dropped where the first layer's weight shows that the type has one
    dimension too many (NIR's types count no batch)."""
    if shape is None or len(shape) < 2 or shape[0] != 1 or not items:
        return shape
    first = items[0][1]
    kind = type(first).__name__
    if kind in ("Conv1d", "Conv2d"):
        need = np.asarray(first.weight).ndim - 1
    elif kind in ("AvgPool2d", "SumPool2d"):
        need = 3
    elif is_neuron(first) and np.ndim(first.r) > 0:
        need = np.ndim(first.r)
    else:
        return shape
    return shape[1:] if len(shape) == need + 1 else shape


def _wrap_cycles(graph):
    """``graph`` with each two-node cycle neuron <-> Affine/Linear (the Affine's only input and
    output being the neuron) written as a recurrent subgraph node: the form snnTorch's
    exporter gives RLeaky / RSynaptic, their nodes flattened into the top graph by nirtorch
    (``'1.lif' -> '1.w_rec' -> '1.lif'``)."""
    nir = require_nir()
    nodes, edges = dict(graph.nodes), list(dict.fromkeys(map(tuple, graph.edges)))
    for a, b in list(edges):
        if (b, a) not in edges or a not in nodes or b not in nodes or not is_neuron(nodes[a]) \
                or type(nodes[b]).__name__ not in ("Affine", "Linear"):
            continue
        if [e for e in edges if b in e and e not in ((a, b), (b, a))]:
            continue
        n = int(np.asarray(nodes[b].weight).shape[0])
        sub = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "lif": nodes[a],
                                  "w_rec": nodes[b],
                                  "output": nir.Output(output_type=np.array([n]))},
                           edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                                  ("lif", "output")], type_check=False)
        del nodes[b]
        nodes[a] = sub
        edges = [e for e in edges if e not in ((a, b), (b, a))]
    if len(nodes) == len(graph.nodes):
        return graph
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata, type_check=False)


def _settings(graph, dt, discretisation) -> Tuple[float, str]:
    hints = read_hints(graph)
    if dt is None:
        dt = hints.get("dt")
        if dt is None:
            raise ValueError("from_nir: pass dt, the duration of one step in the graph's time "
                             "unit (usually s): NIR graphs are continuous-time, and this one "
                             "does not record the dt it was exported with")
    if discretisation is None:
        discretisation = hints.get("discretisation", "exp")
    check_choice(discretisation, "discretisation", DISCRETISATIONS)
    return check_positive(dt, "dt"), discretisation


def from_nir(graph, dt: Optional[float] = None, *, discretisation: Optional[str] = None
             ) -> snn.Sequential:
    """A spikegrad model from a NIR graph (a ``nir.NIRGraph``, a single node, or the path of a
    NIR HDF5 file).

    Args:
        graph: a chain of nodes from one Input to one Output; recurrent layers are subgraph
            nodes of the form input -> neuron -> output, neuron -> w_rec -> neuron.
        dt: the step, in the graph's time unit (s): each time constant becomes a decay per
            step. None: the ``dt`` recorded by :func:`to_nir` (ValueError without one).
        discretisation: ``"exp"`` (``a = exp(-dt/tau)``) or ``"euler"`` (``a = 1 - dt/tau``;
            use it for graphs from snnTorch and Norse); None: the one recorded by
            :func:`to_nir`, else ``"exp"``. See :mod:`spikegrad.interop`.

    Returns:
        :class:`spikegrad.nn.Sequential`, one layer per node (a leaky node with its Threshold
        is one LIF; a subgraph one :class:`spikegrad.nn.Recurrent`). Input gains that are
        neither 1 nor ``1 - a`` are folded into the preceding weights (exact up to rounding).

    Raises:
        ValueError: naming the node, for a node or structure spikegrad cannot run.
    """
    nir = require_nir()
    if isinstance(graph, (str, os.PathLike)):
        # without nir's type check, which mistypes grouped convolutions (the chain is
        # checked here instead)
        graph = nir.read(graph, type_check=False)
    dt, disc = _settings(graph, dt, discretisation)
    if isinstance(graph, nir.NIRGraph):
        graph = _wrap_cycles(graph)
        shape, items = chain(graph.nodes, graph.edges, "from_nir")
        shape = _without_batch(shape, items)
    else:
        shape, items = None, [("node", graph)]
    modules: List[nn.Module] = []
    for group in _groups(items):
        module, shape, pending = _layer(group, shape, dt, disc)
        if pending is not None:
            _fold(modules, pending, f"NIR node {group[0][0]!r} ({type(group[0][1]).__name__})")
        modules.append(module)
    return snn.Sequential(*modules)
