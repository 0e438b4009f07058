"""spikegrad model -> NIR graph (:func:`to_nir`; conventions in :mod:`spikegrad.interop`)."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import nn as snn
from .._validate import check_choice, check_positive
from .discretisation import DISCRETISATIONS
from .nir_meta import require_nir, write_hints
from .nir_neurons import NEURON_MODULES, check_exportable, export_neuron

# identities at inference (a NIR graph describes inference): left out of the graph
SKIPPED = (snn.Dropout, nn.Dropout, nn.Identity)


def _numpy(t: torch.Tensor) -> np.ndarray:
    # a copy: training the model on must not change the graph
    return t.detach().cpu().numpy().copy()


def _layers(model: nn.Module, prefix: str = "") -> List[Tuple[str, nn.Module]]:
    """``(path, layer)`` of a Sequential, nested Sequentials inlined, identities left out."""
    if isinstance(model, nn.Sequential):
        raise TypeError("to_nir: pass a spikegrad.nn.Sequential (a torch.nn.Sequential does "
                        "not thread the neurons' states): spikegrad.nn.Sequential(*layers)")
    if not isinstance(model, snn.Sequential):
        return [(prefix.rstrip(".") or "0", model)]
    out = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, snn.Sequential):
            out += _layers(layer, f"{prefix}{i}.")
        elif not isinstance(layer, SKIPPED):
            out.append((f"{prefix}{i}", layer))
    return out


def _unsupported(layer: nn.Module) -> Optional[str]:
    """Why ``layer`` cannot be exported, with the fix; None if it can."""
    name = type(layer).__name__
    if isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d)):
        return ("NIR 1.0 has no max pooling (only SumPool2d and AvgPool2d); use "
                "spikegrad.nn.AvgPool2d or SumPool2d, or a strided convolution")
    if isinstance(layer, nn.AvgPool1d):  # SumPool1d too
        return ("NIR 1.0 has no 1-d pooling; express it as a Conv1d(C, C, k, stride, groups=C, "
                "bias=False) with weights 1/k (1 for a sum pool)")
    if isinstance(layer, (snn.PerStepBatchNorm, snn.ThresholdBatchNorm, nn.BatchNorm1d,
                          nn.BatchNorm2d)):
        return ("NIR has no normalisation node; fold the (eval-mode) normalisation into the "
                "preceding Conv/Linear weights and bias before exporting")
    if isinstance(layer, snn.Recurrent):
        if not isinstance(layer.neuron, NEURON_MODULES) or isinstance(layer.neuron, snn.ALIF):
            return (f"a Recurrent {type(layer.neuron).__name__} has no NIR form; NIR recurrent "
                    "layers wrap LIF, IF or LI neurons")
        return None
    exportable = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d, snn.Flatten) + NEURON_MODULES
    if not isinstance(layer, exportable):  # (an ALIF is an LIF: check_exportable names it)
        return (f"{name} has no NIR node; exportable: Linear, Conv1d, Conv2d, AvgPool2d, "
                "SumPool2d, Flatten, LIF, IF, LI and Recurrent (of LIF, IF or LI)")
    return None


def _check_layers(layers, where_of) -> None:
    for path, layer in layers:
        where = where_of(path, layer)
        why = _unsupported(layer)
        if why is not None:
            raise ValueError(f"{where}: {why}")
        if isinstance(layer, snn.Recurrent):
            check_exportable(layer.neuron, f"{where} (its neuron)")
        elif isinstance(layer, NEURON_MODULES):
            check_exportable(layer, where)


def _input_shape(layers, input_shape) -> tuple:
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape must be the per-step feature shape without time and "
                             f"batch, e.g. (784,) or (2, 34, 34); got {input_shape!r}")
        return shape
    first = layers[0][1]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    if isinstance(first, NEURON_MODULES):
        return tuple(first.features)
    if isinstance(first, snn.Recurrent):
        return tuple(first.neuron.features)
    raise ValueError(f"to_nir: pass input_shape, the per-step input shape without time and "
                     f"batch (e.g. (2, 34, 34)); it cannot be read off a first layer "
                     f"{type(first).__name__}")


def _shapes(layers, in_shape: tuple) -> List[Tuple[tuple, tuple]]:
    """Every layer's ``(input shape, output shape)`` per step, from one zero step."""
    ref = next((p for _, layer in layers for p in layer.parameters()), None)
    x = torch.zeros(1, 1, *in_shape, dtype=ref.dtype if ref is not None else None,
                    device=ref.device if ref is not None else None)
    out = []
    with torch.no_grad():
        for path, layer in layers:
            try:
                y = layer(x)
            except (RuntimeError, ValueError) as e:
                raise ValueError(f"to_nir: layer {path} ({type(layer).__name__}) does not take "
                                 f"an input of per-step shape {tuple(x.shape[2:])}: {e}") from None
            y = y[0] if isinstance(y, tuple) else y
            out.append((tuple(x.shape[2:]), tuple(y.shape[2:])))
            x = y
    return out


def _dt(layers, dt: Optional[float]) -> float:
    if dt is not None:
        return check_positive(dt, "dt")
    neurons = [getattr(layer, "neuron", layer) for _, layer in layers]
    dts = {n.decay_mem.dt for n in neurons if isinstance(n, NEURON_MODULES)}
    if len(dts) > 1:
        raise ValueError(f"to_nir: the neurons step with different dt ({sorted(dts)}); pass "
                         "dt to choose the one time unit of the graph")
    return dts.pop() if dts else 1.0


def _pair(v) -> Tuple[int, int]:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _pool_node(nir, layer, where: str):
    k = _pair(layer.kernel_size)
    stride = k if layer.stride is None else _pair(layer.stride)
    pad = _pair(layer.padding)
    if layer.ceil_mode:
        raise ValueError(f"{where}: ceil_mode=True has no NIR form (NIR pools floor the output "
                         "size); use ceil_mode=False with padding")
    fields = dict(kernel_size=np.array(k), stride=np.array(stride), padding=np.array(pad))
    if isinstance(layer, snn.layers.SumPool2d):
        return "sumpool2d", nir.SumPool2d(**fields)
    if layer.divisor_override is not None or (not layer.count_include_pad and any(pad)):
        raise ValueError(f"{where}: NIR's AvgPool2d divides by the kernel size (padding "
                         "counted); set divisor_override=None and count_include_pad=True, "
                         "or use SumPool2d")
    return "avgpool2d", nir.AvgPool2d(**fields)


def _conv_node(nir, layer, s_in: tuple, where: str):
    if layer.padding_mode != "zeros":
        raise ValueError(f"{where}: padding_mode={layer.padding_mode!r}; NIR convolutions pad "
                         "with zeros only")
    one_d = isinstance(layer, nn.Conv1d)
    pick = (lambda v: int(v[0])) if one_d else (lambda v: tuple(int(x) for x in v))
    pad = layer.padding if isinstance(layer.padding, str) else pick(layer.padding)
    bias = (_numpy(layer.bias) if layer.bias is not None
            else np.zeros(layer.out_channels, dtype=_numpy(layer.weight).dtype))
    cls = nir.Conv1d if one_d else nir.Conv2d
    node = cls(input_shape=int(s_in[1]) if one_d else tuple(int(s) for s in s_in[1:]),
               weight=_numpy(layer.weight), stride=pick(layer.stride), padding=pad,
               dilation=pick(layer.dilation), groups=int(layer.groups), bias=bias)
    if layer.groups > 1:
        # nir 1.0 types a conv's input as weight.shape[1] channels, which is in/groups: set
        # the true type (a file with it needs nir.read(path, type_check=False) to load)
        node.input_type = {"input": np.array(s_in)}
    # NIR convolutions always have a bias: the hint tells from_nir that this one had none
    return cls.__name__.lower(), write_hints(node, bias=layer.bias is not None)


def _linear_node(nir, layer):
    hints = dict(backend=getattr(layer, "backend", None))
    if layer.bias is None:
        return "linear", write_hints(nir.Linear(weight=_numpy(layer.weight)), **hints)
    node = nir.Affine(weight=_numpy(layer.weight), bias=_numpy(layer.bias))
    return "affine", write_hints(node, **hints)


def _recurrent_graph(nir, layer, dt: float, disc: str, approximate: bool, where: str):
    """A recurrent layer as a subgraph with its cycle: input -> neuron -> output and
    neuron -> w_rec -> neuron (the cycle delivers the previous step's output), as snnTorch
    writes RSynaptic. A reset='none' neuron is two nodes, leaky -> threshold, in its place."""
    parts = export_neuron(layer.neuron, dt, disc, approximate, where)
    n = int(layer.neuron.features[0])
    first, last = parts[0][0], parts[-1][0]
    nodes = {"input": nir.Input(input_type=np.array([n])), **dict(parts),
             "w_rec": nir.Linear(weight=_numpy(layer.recurrent_weight())),
             "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", first)] + [(a, b) for (a, _), (b, _) in zip(parts, parts[1:])]
    edges += [(last, "w_rec"), ("w_rec", first), (last, "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)
    return "recurrent", write_hints(graph, autapses=layer.autapses)


def _nodes(nir, layer, shapes: Tuple[tuple, tuple], dt: float, disc: str, approximate: bool,
           where: str) -> List[Tuple[str, object]]:
    """``[(kind, node)]`` of one layer (checked by :func:`_unsupported` before)."""
    if isinstance(layer, nn.Linear):
        return [_linear_node(nir, layer)]
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return [_conv_node(nir, layer, shapes[0], where)]
    if isinstance(layer, nn.AvgPool2d):
        return [_pool_node(nir, layer, where)]
    if isinstance(layer, snn.Flatten):
        node = nir.Flatten(input_type={"input": np.array(shapes[0])}, start_dim=0, end_dim=-1)
        return [("flatten", node)]
    if isinstance(layer, snn.Recurrent):
        return [_recurrent_graph(nir, layer, dt, disc, approximate, where)]
    return export_neuron(layer, dt, disc, approximate, where)


def to_nir(model: nn.Module, dt: Optional[float] = None,
           input_shape: Optional[Sequence[int]] = None, *, discretisation: str = "exp",
           approximate_reset: bool = False):
    """A spikegrad model as a NIR graph (``nir.NIRGraph``).

    Args:
        model: a :class:`spikegrad.nn.Sequential` (nested ones are inlined; Dropout is left
            out, as at inference) or a single layer. Supported layers are listed in
            :mod:`spikegrad.interop`; any other raises ValueError naming the layer.
        dt: the duration of one step in the graph's time unit (s), which turns each decay
            into a time constant. None: the neurons' own ``dt`` (1.0 without neurons). A
            different value rescales time: the graph's time constants are those of a step
            of ``dt``, and the discrete model is unchanged.
        input_shape: the per-step input shape without time and batch, e.g. ``(2, 34, 34)``;
            None reads it off a first Linear or neuron layer.
        discretisation: how a step of ``dt`` reads NIR's ODEs: ``"exp"`` (``a = exp(-dt/tau)``,
            exact for inputs held over the step, spikegrad's own parameterisation) or
            ``"euler"`` (``a = 1 - dt/tau``, as snnTorch and Norse import NIR). Importing with
            the same ``dt`` and discretisation rebuilds the same model.
        approximate_reset: export ``reset="subtract"`` as NIR's reset to ``v_reset`` (what
            snnTorch's exporter does) instead of raising; spikes then differ wherever the
            membrane overshoots the threshold.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one per layer (``<kind>_<path>``, e.g.
        ``affine_0``, ``lif_1``, ``recurrent_2``) and ``output``, chained by edges; its
        metadata records ``spikegrad_dt`` and ``spikegrad_discretisation``.

    Example:
        >>> import spikegrad as sg
        >>> from spikegrad.interop import to_nir
        >>> net = sg.nn.Sequential(sg.nn.Linear(4, 3), sg.nn.LIF(3, reset="to_value"))
        >>> graph = to_nir(net)
        >>> [type(n).__name__ for n in graph.nodes.values()]
        ['Input', 'Affine', 'LIF', 'Output']
    """
    nir = require_nir()
    check_choice(discretisation, "discretisation", DISCRETISATIONS)
    layers = _layers(model)
    if not layers:
        raise ValueError("to_nir: the model has no layers to export")
    where_of = lambda path, layer: f"layer {path} ({type(layer).__name__})"  # noqa: E731
    _check_layers(layers, where_of)
    dt = _dt(layers, dt)
    shapes = _shapes(layers, _input_shape(layers, input_shape))
    nodes = {"input": nir.Input(input_type=np.array(shapes[0][0]))}
    edges, prev = [], "input"
    for (path, layer), io in zip(layers, shapes):
        parts = _nodes(nir, layer, io, dt, discretisation, approximate_reset,
                       where_of(path, layer))
        for i, (kind, node) in enumerate(parts):
            name = f"{kind}_{path.replace('.', '_')}" if i == 0 else f"{prev}_{kind}"
            nodes[name] = node
            edges.append((prev, name))
            prev = name
    nodes["output"] = nir.Output(output_type=np.array(shapes[-1][1]))
    edges.append((prev, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)
    return write_hints(graph, dt=float(dt), discretisation=discretisation)
