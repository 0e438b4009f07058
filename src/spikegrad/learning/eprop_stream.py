"""Streaming e-prop: one sequence of unbounded length (or ``B`` of them side by side), learned
while it runs.

:class:`StreamingEProp` wraps an :class:`~spikegrad.learning.EProp` learner and keeps one
:class:`~spikegrad.learning.EPropState` for a stream that never ends (a closed-loop decoder,
bin after bin). Each :meth:`StreamingEProp.step` takes one input and its target and returns
the readout; :meth:`StreamingEProp.flush` writes the gradient accumulated since the last
flush into ``.grad`` (then step the optimizer), exactly as :meth:`EProp.flush` does. Nothing
grows with the stream: the state is ``O(N P)`` per stream for ``N`` hidden neurons and ``P``
presynaptic units. ``batch=B`` runs ``B`` streams at once (one sequence each, as the batch of
:meth:`EProp.step`), their gradients summed into one update.

Backends: ``"numba"`` runs the whole step in one compiled call
(:mod:`spikegrad.kernels.numba_eprop`), in place on the state's tensors (tested equal to the
reference in float64 to 1e-10, and in float32 to float precision); ``"reference"`` calls
:meth:`EProp.step`; ``"auto"`` takes numba where it is installed and the network is of the
kind its kernel supports (:func:`numba_unsupported` says why not), else the reference. An
explicit ``"numba"`` never falls back: it raises with the reason.

Example:
    >>> import torch, spikegrad as sg
    >>> from spikegrad.learning import EProp, StreamingEProp
    >>> net = sg.nn.Sequential(sg.nn.Linear(3, 8), sg.nn.Recurrent(sg.nn.LIF(8), autapses=False),
    ...                        sg.nn.Linear(8, 1), sg.nn.LI(1))
    >>> stream = StreamingEProp(EProp.from_sequential(net), backend="reference")
    >>> y = stream.step(torch.rand(3), torch.zeros(1))
    >>> y.shape, stream.steps
    (torch.Size([1]), 1)
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor

from .._validate import check_choice, check_int
from ..kernels.registry import numba_available
from ..kernels.spec import SURROGATE_IDS
from .eprop import EProp, EPropState

__all__ = ["StreamingEProp", "numba_unsupported", "STREAM_BACKENDS", "RATE_WINDOWS"]

STREAM_BACKENDS = ("auto", "numba", "reference")
RATE_WINDOWS = ("update", "stream")


def _scalar(x) -> Optional[float]:
    if isinstance(x, Tensor):
        return float(x) if x.numel() == 1 else None
    return float(x)


def numba_unsupported(eprop: EProp) -> Optional[str]:
    """None if the compiled step supports ``eprop``'s network, else the reason."""
    if not numba_available():
        return "it needs numba: pip install 'spikegrad[fast]'"
    if eprop.adaptive or type(eprop.lif).__name__ not in ("LIF", "IF"):
        return "it supports LIF/IF hidden neurons (not ALIF)"
    p, po = eprop.lif.params(), eprop.readout.params()
    if p.reset != "subtract" or not p.detach_reset:
        return "it supports reset='subtract' with detach_reset=True (the factorised traces)"
    for name, value in (("decay_mem", p.decay_mem), ("threshold", p.threshold),
                        ("readout decay", po.decay_mem)):
        if _scalar(value) is None:
            return f"it needs a scalar {name} (no learn_tau / learn_threshold)"
    if p.decay_syn is not None and _scalar(p.decay_syn) is None:
        return "it needs a scalar decay_syn"
    if po.decay_syn is not None:
        return "it supports a readout LI without tau_syn"
    if p.surrogate.derivative not in SURROGATE_IDS:
        return f"it evaluates built-in surrogates only, not {p.surrogate.name!r}"
    w = eprop.w_out.weight
    if w.dtype not in (torch.float32, torch.float64) or w.device.type != "cpu":
        return f"it runs float32/float64 on the CPU, not {w.dtype} on {w.device}"
    params = list(eprop.parameters().values())
    if eprop.B is not None:
        params.append(eprop.B)
    for t in params:
        if t.dtype != w.dtype or t.device != w.device:
            return "every weight (and the feedback matrix) must share one dtype and device"
    return None


class StreamingEProp:
    """One endless stream (or ``batch`` of them) through an :class:`EProp` learner.

    Args:
        eprop: the learner (its network, feedback, regulariser and loss scale).
        backend: ``"auto"``, ``"numba"`` or ``"reference"`` (see the module docstring).
        rate_window: what the firing-rate regulariser (``eprop.reg``) averages over:
            ``"update"`` (default): the steps since the last :meth:`flush`, as if each update
            window were one of :meth:`EProp.run`'s sequences (the spike counts restart at
            every flush); ``"stream"``: every step since the start, :meth:`EProp.step`'s own
            bookkeeping, whose regulariser gradient fades as ``1 / steps`` on a long stream.
        batch: None (default): one stream, steps without a batch dimension; an int ``B``:
            ``B`` streams, steps with a leading batch dimension.

    Attributes:
        backend: the backend in use (``"numba"`` or ``"reference"``).
        steps: steps since the start (or :meth:`reset`).
        loss_sum: ``loss_scale / 2 * sum (y - y*)^2`` since the last :meth:`flush`.

    Shapes: ``x [N_in]``, ``target [K]``, returns ``y [K]``; with ``batch=B``: ``x [B, N_in]``,
    ``target [B, K]``, returns ``y [B, K]``.
    """

    def __init__(self, eprop: EProp, backend: str = "auto", rate_window: str = "update",
                 batch: Optional[int] = None):
        if not isinstance(eprop, EProp):
            raise TypeError(f"eprop must be a spikegrad.learning.EProp, got "
                            f"{type(eprop).__name__}")
        check_choice(backend, "backend", STREAM_BACKENDS)
        self.rate_window = check_choice(rate_window, "rate_window", RATE_WINDOWS)
        self.eprop = eprop
        self.batch = None if batch is None else check_int(batch, "batch")
        self._rows = () if batch is None else (self.batch,)   # the batch dimension of a step
        reason = numba_unsupported(eprop)
        if backend == "numba" and reason is not None:
            raise ValueError(f"backend='numba' cannot run this e-prop stream: {reason}; use "
                             "backend='reference' (or 'auto')")
        self.backend = "numba" if backend != "reference" and reason is None else "reference"
        self.reset()

    # --- state ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Zero state and accumulators: a new stream."""
        self._state = self.eprop.init_state(self.batch or 1)
        self.eprop.zero_grad()
        self.steps = 0
        self._window = 0          # steps the regulariser's rate counts (state.steps)
        self.loss_sum = 0.0
        if self.backend == "numba":
            self._bind()

    @property
    def state(self) -> EPropState:
        """The :class:`EPropState` after the last step (its tensors are live: the numba
        backend overwrites them in place at the next step; clone to keep one)."""
        return self._state._replace(steps=self._window)

    def _bind(self) -> None:
        """Numpy views of the weights, state and accumulators for the kernel (rebuilt after
        every flush: ``EProp.zero_grad`` allocates new accumulators)."""
        from ..kernels import numba_eprop as k

        ep, s = self.eprop, self._state
        w = ep.w_out.weight
        np_ = lambda t: t.detach().numpy()  # noqa: E731 - views, no copies
        dummy = w.new_zeros(1)
        p, po = ep.lif.params(), ep.readout.params()
        self._spec = k.StepSpec(
            has_b_in=ep.w_in.bias is not None, recurrent=ep.recurrent is not None,
            autapses=bool(ep.recurrent is not None and ep.recurrent.autapses),
            has_b_out=ep.w_out.bias is not None, has_syn=p.decay_syn is not None,
            scale_in=bool(p.scale_input), scale_out=bool(po.scale_input),
            symmetric=ep.B is None, reg=bool(ep.reg),
            surrogate=SURROGATE_IDS[p.surrogate.derivative], float64=w.dtype == torch.float64)
        consts = [_scalar(p.decay_mem), _scalar(p.decay_syn) if p.decay_syn is not None else 0.0,
                  _scalar(p.threshold), float(p.surrogate.beta), _scalar(po.decay_mem),
                  ep.loss_scale]
        ro = s.readout
        self._arrays = k.StepArrays(
            w_in=np_(ep.w_in.weight),
            b_in=np_(ep.w_in.bias if ep.w_in.bias is not None else dummy),
            w_rec=np_(ep.recurrent.weight if ep.recurrent is not None else dummy.view(1, 1)),
            w_out=np_(w), b_out=np_(ep.w_out.bias if ep.w_out.bias is not None else dummy),
            feedback=np_(ep.B if ep.B is not None else dummy.view(1, 1)),
            v=np_(s.neuron.v), i=np_(s.neuron.i if s.neuron.i is not None else dummy.view(1, 1)),
            z=np_(s.z), y=np_(ro.v),
            pre_i=np_(s.pre_i if s.pre_i is not None else dummy.view(1, 1)), eps=np_(s.eps),
            ebar=np_(s.ebar), zbar=np_(s.zbar), count=np_(s.count),
            **dict(zip(("acc_w", "acc_out", "acc_e"), map(np_, ep.accumulators()))),
            consts=torch.tensor(consts, dtype=torch.float64).numpy())
        n, kk, pp, _, _ = k.check_step_arrays(self._spec, self._arrays, ep.n_in,
                                           "StreamingEProp")
        self._scratch = w.new_zeros(k.scratch_size(n, kk, pp)).numpy()
        self._step = k.step_kernel(self._spec)
        self._run = k.run_kernel(self._spec)
        self._np_dtype = self._arrays.v.dtype

    # --- steps ---------------------------------------------------------------------------

    def _io(self, x: Tensor, target: Tensor, steps: tuple) -> tuple:
        ep = self.eprop
        want_x, want_t = (*steps, *self._rows, ep.n_in), (*steps, *self._rows, ep.k)
        for name, t, want in (("x", x, want_x), ("target", target, want_t)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor {list(want)}, got "
                                f"{type(t).__name__}")
            if tuple(t.shape) != want:
                raise ValueError(f"{name} must have shape {list(want)}, got {list(t.shape)}")
        dtype = ep.w_out.weight.dtype
        x, target = x.detach().to(dtype).contiguous(), target.detach().to(dtype).contiguous()
        if self.batch is None:        # the single stream: a batch of one from here on
            x, target = x.unsqueeze(-2), target.unsqueeze(-2)
        return x, target

    def _out(self, y: Tensor) -> Tensor:
        return y.squeeze(-2) if self.batch is None else y

    def _reference_step(self, x: Tensor, target: Tensor) -> Tensor:
        """:meth:`EProp.step` on checked rows ``x [B, N_in]``, ``target [B, K]``."""
        y, self._state = self.eprop.step(x, target, self.state)
        self.loss_sum = self.eprop.loss_sum
        self.steps += 1
        self._window += 1
        return y.clone()

    def _check_io(self, x, target, steps: tuple, ys=None) -> None:
        """The door of the compiled step: the arrays it reads per stream row (the state's
        rows were checked at binding)."""
        from ..kernels import guards, numba_eprop as k

        rows = (*steps, self._arrays.v.shape[0])
        k.check_io(x, target, self.eprop.n_in, self.eprop.k, self._np_dtype, "StreamingEProp",
                   rows)
        if ys is not None:
            guards.array(ys, "ys", (*rows, self.eprop.k), self._np_dtype, "StreamingEProp")

    @torch.no_grad()
    def step(self, x: Tensor, target: Tensor) -> Tensor:
        """One bin: simulate, update the traces, accumulate the gradient; returns ``y [K]``
        (``[B, K]`` with ``batch``; a new tensor)."""
        x, target = self._io(x, target, ())
        if self.backend == "reference":
            return self._out(self._reference_step(x, target))
        a = self._arrays
        xn, tn = x.numpy(), target.numpy()
        self._check_io(xn, tn, ())
        self.loss_sum += float(self._step(xn, tn, *a, self._scratch))
        self.steps += 1
        self._window += 1
        return self._out(torch.from_numpy(a.y.copy()))

    @torch.no_grad()
    def run(self, xs: Tensor, targets: Tensor) -> Tensor:
        """``T`` bins in one call (no flush inside): ``xs [T, N_in]``, ``targets [T, K]``
        (``[T, B, N_in]`` and ``[T, B, K]`` with ``batch``); returns ``ys`` shaped like
        ``targets``. Same numbers as ``T`` calls of :meth:`step`."""
        rank = 2 + len(self._rows)
        if not (isinstance(xs, Tensor) and isinstance(targets, Tensor)
                and xs.dim() == rank and targets.dim() == rank):
            want = "[T, N_in] and [T, K]" if self.batch is None else "[T, B, N_in] and [T, B, K]"
            raise ValueError(f"xs and targets must be {want}, got "
                             f"{list(getattr(xs, 'shape', ()))} and "
                             f"{list(getattr(targets, 'shape', ()))}")
        xs, targets = self._io(xs, targets, (xs.shape[0],))
        if self.backend == "reference":
            ys = [self._reference_step(xs[t], targets[t]) for t in range(xs.shape[0])]
            return self._out(torch.stack(ys) if ys else torch.zeros_like(targets))
        ys = torch.empty_like(targets)
        a, xn, tn, yn = self._arrays, xs.numpy(), targets.numpy(), ys.numpy()
        self._check_io(xn, tn, (xs.shape[0],), yn)
        self.loss_sum += float(self._run(xn, tn, yn, *a, self._scratch))
        self.steps += xs.shape[0]
        self._window += xs.shape[0]
        return self._out(ys)

    def flush(self) -> Dict[str, Tensor]:
        """:meth:`EProp.flush` on the stream's state: the accumulated gradient goes into the
        parameters' ``.grad`` (overwriting), the accumulators are cleared; returns it. Call
        ``optimizer.step()`` after it."""
        grads = self.eprop.flush(self.state)
        self.loss_sum = 0.0
        if self.rate_window == "update":
            self._state.count.zero_()       # in place: the kernel holds a view of it
            self._window = 0
        if self.backend == "numba":
            self._rebind_accumulators()
        return grads

    def _rebind_accumulators(self) -> None:
        ep = self.eprop
        acc_w, acc_out, acc_e = ep.accumulators()
        self._arrays = self._arrays._replace(
            acc_w=acc_w.numpy(), acc_out=acc_out.numpy(), acc_e=acc_e.numpy(),
            feedback=self._arrays.feedback if ep.B is None else ep.B.numpy())

    def state_dict(self) -> dict:
        """The stream's state (traces, accumulators, counters) and the learner's own, for an
        exact resume mid-stream."""
        s = self.state
        return {"eprop": self.eprop.state_dict(), "steps": self.steps, "window": self._window,
                "loss_sum": self.loss_sum,
                "state": [None if t is None else t.clone() for t in _flat(s)],
                "acc": [t.clone() for t in self.eprop.accumulators()]}

    def load_state_dict(self, d: dict) -> None:
        """Restore :meth:`state_dict` (same network shapes)."""
        self.eprop.load_state_dict(d["eprop"])
        self.reset()
        for dst, src in zip(_flat(self._state), d["state"]):
            if (dst is None) != (src is None) or (dst is not None and dst.shape != src.shape):
                raise ValueError("stream state does not match this learner's network")
            if dst is not None:
                dst.copy_(src)
        for dst, src in zip(self.eprop.accumulators(), d["acc"]):
            dst.copy_(src)
        self.steps, self.loss_sum = int(d["steps"]), float(d["loss_sum"])
        self._window = int(d["window"])


def _flat(s: EPropState) -> list:
    """The state's tensors in a fixed order (None where absent)."""
    return [s.neuron.v, s.neuron.i, s.z, s.readout.v, s.readout.i, s.pre_i, s.eps, s.eps_a,
            s.ebar, s.ebar_i, s.zbar, s.zbar_i, s.count]
