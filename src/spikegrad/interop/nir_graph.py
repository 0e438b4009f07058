"""The structure of a NIR graph as :func:`spikegrad.interop.from_nir` reads it: a chain of
nodes from the Input to the Output, and recurrent layers as subgraphs with one cycle."""

from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .nir_meta import require_nir

Items = List[Tuple[str, object]]  # (node name, node) in the order the data flows

RECURRENT_FORM = ("input -> neuron -> output with neuron -> w_rec -> neuron, w_rec one Affine "
                  "or Linear node (as snnTorch and spikegrad write recurrent layers)")


def _neighbours(nodes: dict, edges) -> Tuple[Dict[str, list], Dict[str, list]]:
    succ, pred = defaultdict(list), defaultdict(list)
    for a, b in edges:
        a, b = str(a), str(b)
        for name in (a, b):
            if name not in nodes:
                raise ValueError(f"edge ({a!r}, {b!r}) names a node {name!r} that the graph "
                                 f"does not have (nodes: {sorted(nodes)})")
        succ[a].append(b)
        pred[b].append(a)
    return succ, pred


def _start(nodes: dict, pred: dict, inputs: list, where: str) -> str:
    if inputs:
        return inputs[0]
    roots = [k for k in nodes if not pred[k]]
    if len(roots) != 1:
        raise ValueError(f"{where}: no Input node and {len(roots)} nodes without inputs "
                         f"({roots}); add an Input node where the data enters")
    return roots[0]


def chain(nodes: dict, edges, where: str) -> Tuple[Optional[tuple], Items]:
    """``(input shape or None, items)``: the nodes between Input and Output in data order.

    Raises ValueError for anything but a chain: several inputs or outputs, a node with two
    successors (a branch) or two predecessors (a merge), a cycle, or unconnected nodes."""
    nir = require_nir()
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) > 1 or len(outputs) > 1:
        raise ValueError(f"{where}: from_nir builds a spikegrad Sequential, which has one input "
                         f"and one output; the graph has inputs {inputs} and outputs {outputs}")
    succ, pred = _neighbours(nodes, edges)
    for name in nodes:
        for links, what in ((succ, "successors (a branch)"), (pred, "predecessors (a merge)")):
            if len(set(links[name])) > 1:
                raise ValueError(f"{where}: node {name!r} has {len(set(links[name]))} {what}: "
                                 f"{links[name]}; from_nir reads chains of layers only")
    items, seen, name = [], set(), _start(nodes, pred, inputs, where)
    while True:
        if name in seen:
            raise ValueError(f"{where}: a cycle through {name!r} outside a subgraph; write a "
                             f"recurrent layer as a NIRGraph node of the form {RECURRENT_FORM}")
        seen.add(name)
        if not isinstance(nodes[name], (nir.Input, nir.Output)):
            items.append((name, nodes[name]))
        if not succ[name]:
            break
        name = succ[name][0]
    if set(nodes) - seen:
        raise ValueError(f"{where}: nodes {sorted(set(nodes) - seen)} are not on the path from "
                         "the input to the output")
    shape = None
    if inputs:
        t = nodes[inputs[0]].input_type.get("input")
        shape = None if t is None else tuple(int(s) for s in np.atleast_1d(t))
    return shape, items


class RecurrentParts(NamedTuple):
    neuron: Items     # the neuron's node(s), in data order
    w_rec_name: str
    w_rec: object     # the Affine or Linear node of the recurrent weights


def recurrent_parts(sub, where: str) -> RecurrentParts:
    """The neuron and the recurrent weights of a subgraph of the form ``RECURRENT_FORM``."""
    weights = [k for k, n in sub.nodes.items() if type(n).__name__ in ("Affine", "Linear")]
    if len(weights) != 1:
        raise ValueError(f"{where}: from_nir reads a subgraph as a recurrent layer, "
                         f"{RECURRENT_FORM}; this one has {len(weights)} weight nodes "
                         f"({weights})")
    w = weights[0]
    into = [str(a) for a, b in sub.edges if str(b) == w]
    out = [str(b) for a, b in sub.edges if str(a) == w]
    rest = {k: n for k, n in sub.nodes.items() if k != w}
    _, items = chain(rest, [e for e in sub.edges if w not in map(str, e)], where)
    if len(into) != 1 or len(out) != 1 or not items or items[0][0] != out[0] \
            or items[-1][0] != into[0]:
        raise ValueError(f"{where}: {w!r} must take the last neuron node's output and feed "
                         f"the first one ({RECURRENT_FORM}); it has inputs {into} and outputs "
                         f"{out}")
    return RecurrentParts(items, w, sub.nodes[w])
