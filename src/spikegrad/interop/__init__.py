"""Exchange with the field's other tools through NIR, the Neuromorphic Intermediate
Representation (https://github.com/neuromorphs/NIR), which snnTorch, Norse and other simulators
and neuromorphic platforms read and write.

::

    from spikegrad.interop import from_nir, to_nir
    graph = to_nir(net)                     # a nir.NIRGraph; nir.write("net.nir", graph)
    net2 = from_nir("net.nir")              # the same layers: the same spikes and states
    net3 = from_nir(nir.read("snntorch.nir"), dt=1e-4, discretisation="euler")

Needs the ``nir`` extra (``pip install 'spikegrad[nir]'``); this package imports without it.

Supported, both ways
--------------------

==================================== ==========================================================
spikegrad                            NIR
==================================== ==========================================================
Linear (with / without bias)         Affine / Linear (``weight [out, in]``)
Conv1d, Conv2d (zero padding)        Conv1d, Conv2d (always a bias: zeros, and a hint, if none)
AvgPool2d, SumPool2d (floor mode)    AvgPool2d, SumPool2d
Flatten                              Flatten(start_dim=0, end_dim=-1), dims without the batch
LIF(reset="to_value")                LIF; CubaLIF with ``tau_syn``; IF for IF / tau_mem=inf
LIF / IF with reset="none"           LI / CubaLI / I followed by a Threshold (exact: no reset)
LI                                   LI; CubaLI with ``tau_syn``; I for tau_mem=inf
Recurrent(LIF | IF | LI)             a subgraph: input -> neuron -> output,
                                     neuron -> w_rec (Linear [N, N]) -> neuron
Sequential (nested ones inlined)     a chain of nodes from ``input`` to ``output``
Dropout                              left out (an identity at inference)
==================================== ==========================================================

Not supported, with a ValueError that names the layer and the fix: ``reset="subtract"`` (NIR's
neurons reset *to* ``v_reset``; export the layer trained with ``reset="to_value"``, or pass
``approximate_reset=True``, which writes the reset to ``v_reset`` that snnTorch's exporter writes
silently), MaxPool (NIR 1.0 has none), 1-d pooling, ALIF and DendriticLIF (no NIR node),
normalisation layers (fold them into the weights first), ``v_init != 0`` (a NIR graph starts at
v = 0), conv ``padding_mode`` other than zeros; on import: ``v_leak != 0``, thresholds <= 0,
branching graphs and cycles other than a recurrent layer (a subgraph, or
neuron <-> Affine/Linear in the top graph, the form snnTorch's exporter writes). Grouped convolutions export with
their true input type, which nir 1.0's type check misreads (it takes ``weight.shape[1]``, the
channels per group): read such files with ``from_nir(path)`` or
``nir.read(path, type_check=False)``.

Time constants and discretisation
---------------------------------

NIR's neurons are ODEs in continuous time (``tau dv/dt = (v_leak - v) + r I``, CubaLIF:
``tau_syn dI/dt = -I + w_in x``, IF: ``dv/dt = r I``; spike when ``v > v_threshold``, then
``v = v_reset``). A step of ``dt`` with the input held over the step reads them as

    I_t = a_syn I_{t-1} + (1 - a_syn) w_in x_t          (CubaLIF / CubaLI; else I_t = x_t)
    v_t = a v_{t-1} + (1 - a) (v_leak + r I_t)          (IF, I: v_t = v_{t-1} + dt r I_t)
    z_t = H(v_t - v_threshold) with H(0) = 0;  v_t = v_reset where z_t = 1

with ``a = exp(-dt/tau)`` under ``discretisation="exp"`` (each ODE solved exactly with its input
held over the step, the current first and then held for the membrane; spikegrad's own
parameterisation ``a = exp(-dt/tau)``) or ``a = 1 - dt/tau`` under ``"euler"`` (forward Euler, as
snnTorch and Norse read NIR). Edges pass values within the
step; the cycle of a recurrent subgraph delivers the previous step's output. spikegrad's step
``i_t = a_syn i_{t-1} + x_t``, ``v_t = a v_{t-1} + g i_t`` (``g = 1``, or ``1 - a`` with
``scale_input``) is then exactly this graph with

    tau = -dt / ln(a)   ("exp")   or   dt / (1 - a)   ("euler")       (same for tau_syn)
    r = g / (1 - a)  (IF: r = 1 / dt),   w_in = 1 / (1 - a_syn),   v_leak = 0,
    v_threshold = threshold,   v_reset = v_reset,

so the synaptic current and the membrane are spikegrad's own, and both discretisations give
the same graph up to its time constants. ``dt`` is the step in the graph's time unit (s):
:func:`to_nir` takes the neurons' own ``dt`` unless told otherwise, :func:`from_nir` the one
recorded in the graph's metadata (``spikegrad_dt``) unless told otherwise.

Round trips and what is exact. :func:`from_nir` of :func:`to_nir` with the same ``dt`` and
discretisation rebuilds the same layers, every constant bit for bit (time constants are chosen
so that the decay maps back exactly, which float64 allows for every decay spikegrad's own
``exp(-dt/tau)`` produces and, under ``"euler"``, for decays above ~0.7; a smaller one comes back
within one float64 ulp, still the same float32; trained per-neuron constants come back as the
same float32 values of their trainable parameters), so the model runs the same arithmetic:
identical spikes and states. Per-neuron constants in a foreign graph become trainable per-neuron
parameters (spikegrad keeps fixed constants as scalars). Which constants were trained, the
surrogate, ``detach_reset``, backends, a conv without bias and ``autapses`` travel as
``spikegrad_*`` metadata hints, which other tools ignore and which never change the dynamics.
An input gain that is neither 1 nor ``1 - a`` (``(1 - a) r`` times ``(1 - a_syn) w_in``, or
``dt r``) and a recurrent bias are folded into the preceding Affine/Conv: exact in real
arithmetic, not bit for bit.

Exchange with snnTorch and Norse
--------------------------------

- Both read NIR by forward Euler: export with ``discretisation="euler"`` and import their
  graphs with it. snnTorch's Leaky (``beta = 1 - dt/tau``, ``r = tau/dt``) and Synaptic (also
  ``alpha = 1 - dt/tau_syn``, ``w_in = tau_syn/dt``) then map onto spikegrad's LIF exactly
  (``scale_input=False``, ``i_t = alpha i + x``, ``v_t = beta v + i_t``). snnTorch's exporter
  writes its graphs with ``dt = 1e-4`` (only ``dt/tau`` matters: import with that dt).
- With ``"exp"`` an Euler reader sees a slightly faster leak (``1 + ln a`` for ``a``) and a
  gain ``r dt/tau = -ln(a) / (1 - a)`` (1.026 for a = 0.95), which snnTorch's importer moves
  into the threshold; use ``"euler"`` for them.
- Their importers reset to zero: train spikegrad layers for them with ``reset="to_value"``,
  ``v_reset=0``. snnTorch's exporter writes its default subtract-reset Leaky as a reset to
  ``v_reset = 0``, and its neurons reset a step late unless built with ``reset_delay=False``;
  spikegrad reads the graph as written. (Checked with snnTorch 1.0.0 both ways: identical
  spikes, tests/interop/test_nir_snntorch.py.)
- Norse's LIFBoxCell integrates ``dt/tau (v_leak - v + I)`` and its importer ignores ``r``: its
  graphs (``r = 1``) import here as ``scale_input=True`` under ``"euler"``. Its CubaLIF
  (LIFCell, ``w_in = r = 1``) updates the membrane with the previous step's current, one step
  behind the reading above; spikegrad imports the equations (their gain
  ``(1 - a_syn)(1 - a)`` folded into the preceding weights).
- Norse's exporter writes ``tau = dt / tau_mem_inv`` (``dt`` times its time constant): call
  ``norse.to_nir(model, sample, dt=1.0)`` and import with the cells' ``dt`` (or import a graph
  written with ``dt=d`` using ``dt=d**2``). Its importer maps no LI node and no recurrent
  subgraph; it reads LIF without ``r`` (export spikegrad LIFs for it with ``scale_input=True``)
  and CubaLIF with ``w_in`` and ``r`` (exact). Its graphs type the Input with the sample's
  batch of one, which :func:`from_nir` drops.
- snnTorch 1.0's importer has no LI node and reads IF as a ``Leaky(beta=0.9)``.
- Both apply NIR's batch-less ``Flatten(start_dim=0)`` to their batched tensors: run their
  imported conv nets one sample at a time.
- Checked both ways by ``make interop-check`` (``benchmarks/nir_crosscheck.py``, the pinned peer
  venvs): the settings that give identical spikes and the differences that remain are in
  docs/conventions.md, "Exchanging models through NIR".
"""

from .nir_export import to_nir
from .nir_import import from_nir
from .discretisation import DISCRETISATIONS

__all__ = ["to_nir", "from_nir", "DISCRETISATIONS"]
