"""A fuzz of invalid calls over the public API (issue 24): modules, functional, encoders,
losses, surrogates, readouts and the Trainer's construction.

Every case calls one public entry point with one bad argument (the others valid) and must
raise a ValueError or TypeError whose message names that argument: never a result (a NaN
loss, spikes from a NaN threshold, a state broadcast over another batch), never another
exception from deep inside torch or numba, never a crash. The table is built from lists of
bad values per kind of argument, crossed with every entry point (and every backend) that
takes that kind. Cases in ``UNCLEAR`` would raise, but with a message that does not name the
argument; they are listed with why and marked xfail (strict, so a fix shows up).

Kernel-level shape and state fuzzing in subprocesses lives in tests/kernels/test_guards.py,
command lines in tests/test_cli_errors.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest
import torch

import spikegrad as sg
from spikegrad import data, losses
from spikegrad import functional as F
from spikegrad.kernels.registry import numba_available
from spikegrad.train import Trainer

NAN, INF = float("nan"), float("inf")
T, B, N = 4, 2, 3          # the shape of every valid input: xs [T, B, N]

# --- bad values by kind of argument ---------------------------------------------------------
# Each list avoids what its kind legitimately takes (e.g. inf is a valid time constant: IF).


def _t(*v, dtype=torch.float32):
    return torch.tensor(v if len(v) > 1 else v[0], dtype=dtype)


NOT_A_NUMBER = ["0.5", None, 1j, [0.5], object()]
# a decay a = exp(-dt/tau) lies in [0, 1]
DECAY = [1.5, -0.5, 1.0 + 1e-6, NAN, INF, -INF, True, *NOT_A_NUMBER, _t(NAN), _t(1.5),
         _t(0.5, 1.5, 0.5), _t(0.9, NAN, 0.9), torch.full((5,), 0.5), _t(1, dtype=torch.int64)]
DECAY_OPTIONAL = [v for v in DECAY if v is not None]       # decay_syn=None: no synapse
# thresholds, slopes, scales: finite and > 0
POSITIVE = [0.0, -1.0, -1e-9, NAN, INF, -INF, True, *NOT_A_NUMBER, _t(0.0), _t(NAN),
            _t(1.0, -1.0, 1.0), _t(1.0, INF, 1.0), torch.ones(5)]
POSITIVE_SCALAR = [0.0, -1.0, -1e-9, NAN, INF, -INF, True, "1", None, 1j]
# v_reset, coupling, passive, levels: any finite number
FINITE = [NAN, INF, -INF, True, *NOT_A_NUMBER, _t(NAN), _t(0.0, INF, 0.0), torch.ones(5)]
FINITE_SCALAR = [NAN, INF, -INF, "0", None, 1j]
# adaptation strength, refractory strength: finite and >= 0
NONNEGATIVE = [-1.0, -1e-6, NAN, INF, True, "1", None, 1j, _t(-1.0), _t(1.0, NAN, 1.0)]
# time constants of modules: > 0, inf allowed where it means "no leak"
TIME_CONSTANT = [0.0, -1.0, -1e-9, NAN, -INF, True, "0.02", None, 1j, [0.02]]
POSITIVE_INT = [0, -3, 2.5, "8", True, None, NAN, [4]]
CHOICE = ["no_such_option", 3, None, ""]
BOOL_LIKE_BAD = [NAN, INF, -1.0, 1.5, "0.5", None]          # probabilities, fractions


@dataclass(frozen=True)
class Case:
    entry: str                       # what is called (test id)
    arg: str                         # the bad argument: the message must name it
    call: Callable[[], Any]

    def __repr__(self) -> str:
        return f"{self.entry}"[:90]


def _short(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{list(v.shape)}:{v.dtype}".replace("torch.", "") + (
            f"={v.flatten()[:3].tolist()}" if v.numel() <= 3 else "")
    return repr(v)[:24]


def _sweep(entry: str, fn: Callable[..., Any], arg: str, bad: list, *,
           named: Optional[str] = None, **base) -> list:
    """One case per bad value of ``arg``; the message must name ``named`` (default ``arg``)."""
    return [Case(f"{entry}({arg}={_short(v)})", named or arg,
                 lambda v=v: fn(**{**base, arg: v})) for v in bad]


def _xs(*shape, dtype=torch.float32):
    return torch.rand(*(shape or (T, B, N)), dtype=dtype)


BACKENDS = ["reference", "torch", "auto"] + (["numba"] if numba_available() else [])
ALIF_BACKENDS = ["reference", "auto"] + (["numba"] if numba_available() else [])


# --- functional -----------------------------------------------------------------------------

def _lif_seq(backend="auto", xs=None, state=None, p=None, **params):
    return F.lif_seq(_xs() if xs is None else xs, state,
                     F.LIFParams(**params) if p is None else p, backend=backend)


def _lif_step(x=None, state=None, p=None, **params):
    return F.lif_step(_xs(B, N) if x is None else x, state,
                      F.LIFParams(**params) if p is None else p)


def _li_seq(backend="auto", xs=None, state=None, p=None, **params):
    return F.li_seq(_xs() if xs is None else xs, state,
                    F.LIParams(**params) if p is None else p, backend=backend)


def _li_step(x=None, state=None, p=None, **params):
    return F.li_step(_xs(B, N) if x is None else x, state,
                     F.LIParams(**params) if p is None else p)


def _alif_params(lif=None, refractory=None, **params):
    lif = F.LIFParams(**(lif or {}))
    return F.ALIFParams(lif, refractory=F.RefractoryParams(**(refractory or {})), **params)


def _alif_seq(backend="auto", xs=None, state=None, p=None, **params):
    return F.alif_seq(_xs() if xs is None else xs, state,
                      _alif_params(**params) if p is None else p, backend=backend)


def _alif_step(x=None, state=None, p=None, **params):
    return F.alif_step(_xs(B, N) if x is None else x, state,
                       _alif_params(**params) if p is None else p)


def _dendrite_params(soma=None, **params):
    return F.DendriteParams(soma=F.LIFParams(**(soma or {})), **params)


def _dendrite_seq(xs=None, state=None, p=None, **params):
    return F.dendrite_seq(_xs(T, B, N, 2) if xs is None else xs, state,
                          _dendrite_params(**params) if p is None else p)


def _dendrite_step(x=None, state=None, p=None, **params):
    return F.dendrite_step(_xs(B, N, 2) if x is None else x, state,
                           _dendrite_params(**params) if p is None else p)


def _functional_param_cases() -> list:
    cases = []
    lif_args = [("decay_mem", DECAY), ("decay_syn", DECAY_OPTIONAL), ("threshold", POSITIVE),
                ("v_reset", FINITE)]
    for backend in BACKENDS:
        for arg, bad in lif_args:
            cases += _sweep(f"lif_seq[{backend}]", _lif_seq, arg, bad, backend=backend)
        cases += _sweep(f"lif_seq[{backend}]", _lif_seq, "reset", CHOICE, backend=backend)
        cases += _sweep(f"li_seq[{backend}]", _li_seq, "decay_mem", DECAY, backend=backend)
    cases += _sweep("lif_seq", _lif_seq, "backend", CHOICE)
    cases += _sweep("lif_seq", _lif_seq, "surrogate", ["fast_sigmoid", None, 3])
    cases += [Case(f"lif_seq(p={_short(v)})", "p", lambda v=v: F.lif_seq(_xs(), None, v))
              for v in [0.95, {"decay_mem": 0.9}, F.LIParams(), F.ALIFParams()]]
    cases += [Case(f"li_seq(p={_short(v)})", "p", lambda v=v: F.li_seq(_xs(), None, v))
              for v in [0.95, F.LIFParams(), (0.9, None, False)]]
    # the step checks numbers (not tensor values: no sync per step)
    for arg, bad in lif_args:
        cases += _sweep("lif_step", _lif_step, arg,
                        [v for v in bad if not isinstance(v, torch.Tensor)
                         or v.dim() and v.shape[0] == 5 or not v.is_floating_point()])
    cases += _sweep("li_step", _li_step, "decay_mem", [v for v in DECAY
                                                       if not isinstance(v, torch.Tensor)])
    cases += _sweep("li_seq", _li_seq, "decay_syn", DECAY_OPTIONAL)
    # ALIF: the LIF part, adaptation and refractoriness
    for backend in ALIF_BACKENDS:
        cases += _sweep(f"alif_seq[{backend}]", _alif_seq, "decay_adapt", DECAY, backend=backend)
        cases += _sweep(f"alif_seq[{backend}]", _alif_seq, "beta_adapt", NONNEGATIVE,
                        backend=backend)
        for arg, bad in (("threshold", POSITIVE_SCALAR), ("decay_mem", DECAY[:8])):
            cases += [Case(f"alif_seq[{backend}]({arg}={_short(v)})", arg,
                           lambda v=v, a=arg, b=backend: _alif_seq(b, lif={a: v}))
                      for v in bad]
        for arg, bad, name in (("decay", DECAY[:8], "refractory decay"),
                               ("strength", NONNEGATIVE, "refractory strength"),
                               ("n_ref", [-1, 2.5, "2", None, True], "n_ref")):
            cases += [Case(f"alif_seq[{backend}](refractory.{arg}={_short(v)})", name,
                           lambda v=v, a=arg, b=backend: _alif_seq(b, refractory={a: v}))
                      for v in bad]
    cases += _sweep("alif_seq", _alif_seq, "backend", CHOICE + ["torch", "triton"])
    cases += [Case(f"alif_seq(p={_short(v)})", "p", lambda v=v: F.alif_seq(_xs(), None, v))
              for v in [F.LIFParams(), 0.9, None.__class__]]
    cases.append(Case("alif_seq(p.lif=LIParams)", "ALIFParams.lif",
                      lambda: F.alif_seq(_xs(), None, F.ALIFParams(F.LIParams()))))
    cases += _sweep("alif_step", _alif_step, "beta_adapt", [-1.0, NAN, INF, "1", None])
    cases += _sweep("alif_step", _alif_step, "decay_adapt", [1.5, -0.5, NAN, INF, "0.9"])
    # dendritic neurons
    for arg, bad in (("decay_dend", DECAY), ("threshold_dend", POSITIVE),
                     ("coupling", FINITE), ("passive", FINITE)):
        bad = [v for v in bad if not (isinstance(v, torch.Tensor) and v.shape == (N,))]
        cases += _sweep("dendrite_seq", _dendrite_seq, arg, bad)
        cases += _sweep("dendrite_step", _dendrite_step, arg,
                        [v for v in bad if not isinstance(v, torch.Tensor)])
    cases += [Case(f"dendrite_seq(soma.threshold={_short(v)})", "threshold",
                   lambda v=v: _dendrite_seq(soma={"threshold": v})) for v in POSITIVE_SCALAR]
    cases += _sweep("dendrite_seq", _dendrite_seq, "surrogate_dend", ["atan", None])
    cases += [Case("dendrite_seq(soma=LIParams)", "soma",
                   lambda: F.dendrite_seq(_xs(T, B, N, 2), None,
                                          F.DendriteParams(soma=F.LIParams()))),
              Case("dendrite_seq(backend=fast)", "backend",
                   lambda: F.dendrite_seq(_xs(T, B, N, 2), backend="fast")),
              Case("dendrite_seq(backend=triton, cpu)", "backend",
                   lambda: F.dendrite_seq(_xs(T, B, N, 2), backend="triton")),
              Case("dendrite_seq(xs=[T, B, N])", "xs", lambda: F.dendrite_seq(_xs())),
              Case("dendrite_step(x=[B, N])", "x", lambda: F.dendrite_step(_xs(B, N), None))]
    return cases


def _state_cases() -> list:
    """Wrong state types and shapes, on every backend: no silent broadcasting."""
    cases = []
    v = lambda *s, dtype=torch.float32: torch.zeros(*s, dtype=dtype)  # noqa: E731
    bad_lif = [("plain tensor", v(B, N), "state"), ("tuple", (v(B, N), None), "state"),
               ("LIState", F.LIState(v(B, N)), "state"), ("dict", {"v": v(B, N)}, "state"),
               ("batch 1", F.LIFState(v(1, N)), "state.v"),
               ("batch 3", F.LIFState(v(3, N)), "state.v"),
               ("features", F.LIFState(v(B, N + 1)), "state.v"),
               ("rank", F.LIFState(v(N)), "state.v"),
               ("float64", F.LIFState(v(B, N, dtype=torch.float64)), "state.v"),
               ("v=None", F.LIFState(None), "state.v")]
    for backend in BACKENDS:
        for what, s, name in bad_lif:
            cases.append(Case(f"lif_seq[{backend}](state={what})", name,
                              lambda s=s, b=backend: _lif_seq(b, state=s)))
        cases.append(Case(f"lif_seq[{backend}](state.i=None, decay_syn)", "state.i",
                          lambda b=backend: _lif_seq(b, state=F.LIFState(v(B, N)),
                                                     decay_syn=0.5)))
        cases.append(Case(f"lif_seq[{backend}](state.i batch 1)", "state.i",
                          lambda b=backend: _lif_seq(b, state=F.LIFState(v(B, N), v(1, N)),
                                                     decay_syn=0.5)))
        cases.append(Case(f"li_seq[{backend}](state=LIFState)", "state",
                          lambda b=backend: _li_seq(b, state=F.LIFState(v(B, N)))))
        cases.append(Case(f"li_seq[{backend}](state batch 1)", "state.v",
                          lambda b=backend: _li_seq(b, state=F.LIState(v(1, N)))))
    for what, s, name in bad_lif[:6]:
        cases.append(Case(f"lif_step(state={what})", name, lambda s=s: _lif_step(state=s)))
    for backend in ALIF_BACKENDS:
        good = F.ALIFState(v(B, N), v(B, N))
        for what, s, name in [("plain tensor", v(B, N), "state"),
                              ("LIFState", F.LIFState(v(B, N)), "state"),
                              ("v batch 1", good._replace(v=v(1, N)), "state.v"),
                              ("a batch 3", good._replace(a=v(3, N)), "state.a"),
                              ("a float64", good._replace(a=v(B, N, dtype=torch.float64)),
                               "state.a")]:
            cases.append(Case(f"alif_seq[{backend}](state={what})", name,
                              lambda s=s, b=backend: _alif_seq(b, state=s)))
        cases.append(Case(f"alif_seq[{backend}](state.ref=None, n_ref=2)", "state.ref",
                          lambda b=backend: _alif_seq(b, state=good, refractory={"n_ref": 2})))
    cases.append(Case("alif_step(state=tensor)", "state", lambda: _alif_step(state=v(B, N))))
    soma = F.LIFState(v(B, N))
    for what, s, name in [("plain tensor", v(B, N, 2), "state"),
                          ("d batch 1", F.DendriteState(v(1, N, 2), soma), "state.d"),
                          ("soma batch 1", F.DendriteState(v(B, N, 2), F.LIFState(v(1, N))),
                           "state.v"),
                          ("soma tensor", F.DendriteState(v(B, N, 2), v(B, N)), "state")]:
        cases.append(Case(f"dendrite_seq(state={what})", name,
                          lambda s=s: _dendrite_seq(state=s)))
    # the reproduction of issue 24: a Recurrent state of another batch, on every backend
    for backend in BACKENDS:
        for what, make, name in [
                ("batch 3 into 4", lambda: F.RecurrentState(F.LIFState(v(3, N)), v(3, N)),
                 "state"),
                ("batch 64 into 2", lambda: F.RecurrentState(F.LIFState(v(64, N)), v(64, N)),
                 "state"),
                ("y batch 1", lambda: F.RecurrentState(F.LIFState(v(B, N)), v(1, N)),
                 "state.y"),
                ("plain tensor", lambda: v(B, N), "state"),
                ("LIFState", lambda: F.LIFState(v(B, N)), "state"),
                ("inner tensor", lambda: F.RecurrentState(v(B, N), v(B, N)), "state")]:
            cases.append(Case(f"Recurrent(LIF)[{backend}](state={what})", name,
                              lambda m=make, b=backend: sg.nn.Recurrent(
                                  sg.nn.LIF(N, backend=b))(_xs(), m())))
    for backend in ALIF_BACKENDS:
        cases.append(Case(f"Recurrent(ALIF)[{backend}](state batch 3)", "state",
                          lambda b=backend: sg.nn.Recurrent(sg.nn.ALIF(N, backend=b))(
                              _xs(), F.RecurrentState(F.ALIFState(v(3, N), v(3, N)),
                                                      v(3, N)))))
    cases.append(Case("Recurrent(LI)(state batch 3)", "state",
                      lambda: sg.nn.Recurrent(sg.nn.LI(N))(
                          _xs(), F.RecurrentState(F.LIState(v(3, N)), v(3, N)))))
    cases.append(Case("Sequential(Linear, Recurrent)(state batch 1)", "state",
                      lambda: sg.nn.Sequential(sg.nn.Linear(N, N), sg.nn.Recurrent(
                          sg.nn.LIF(N)))(_xs(), (None, F.RecurrentState(F.LIFState(v(1, N)),
                                                                         v(1, N))))))
    cases.append(Case("Sequential(Linear, LIF)(state batch 1, training)", "state",
                      lambda: sg.nn.Sequential(sg.nn.Linear(N, N), sg.nn.LIF(N))(
                          _xs().requires_grad_(), (None, F.LIFState(v(1, N))))))
    cases.append(Case("Sequential(state=list)", "state",
                      lambda: sg.nn.Sequential(sg.nn.LIF(N))(_xs(), [None])))
    cases.append(Case("recurrent_seq(weight=[N+1, N])", "weight",
                      lambda: F.recurrent_seq(_xs(), F.RecurrentState(None, v(B, N)),
                                              F.RecurrentParams(v(N + 1, N), F.lif.lif_update,
                                                                F.LIFParams()))))
    cases.append(Case("recurrent_seq(state=LIFState)", "state",
                      lambda: F.recurrent_seq(_xs(), F.LIFState(v(B, N)),
                                              F.RecurrentParams(v(N, N), F.lif.lif_update,
                                                                F.LIFParams()))))
    cases.append(Case("recurrent_seq(p.inner threshold=nan)", "threshold",
                      lambda: F.recurrent_seq(_xs(), F.RecurrentState(None, v(B, N)),
                                              F.RecurrentParams(v(N, N), F.lif.lif_update,
                                                                F.LIFParams(threshold=NAN)))))
    return cases


def _readout_cases() -> list:
    cases = []
    for name, fn, arg in [("spike_count", F.spike_count, "zs"), ("membrane", F.membrane, "vs"),
                          ("first_spike_time", F.first_spike_time, "zs")]:
        for bad in [torch.zeros(3), "zs", [[0.0]], torch.zeros(0, 2, 3), None]:
            cases.append(Case(f"{name}({_short(bad)})", arg, lambda f=fn, b=bad: f(b)))
    cases += _sweep("membrane", F.membrane, "reduce", CHOICE + ["min"], vs=_xs())
    cases += _sweep("lowpass", F.lowpass, "decay", DECAY[:10], xs=_xs())
    return cases


# --- modules --------------------------------------------------------------------------------

def _module_cases() -> list:
    cases = []
    neurons = [("LIF", sg.nn.LIF, ["tau_mem", "tau_syn", "dt", "threshold", "v_reset", "beta"]),
               ("IF", sg.nn.IF, ["tau_syn", "dt", "threshold", "v_reset"]),
               ("LI", sg.nn.LI, ["tau_mem", "tau_syn", "dt"]),
               ("ALIF", sg.nn.ALIF, ["tau_mem", "dt", "threshold", "tau_adapt", "beta_adapt",
                                     "t_ref", "ref_strength", "tau_ref"])]
    kinds = {"tau_mem": TIME_CONSTANT, "tau_syn": [v for v in TIME_CONSTANT if v is not None],
             "tau_adapt": TIME_CONSTANT, "tau_ref": TIME_CONSTANT,
             "dt": POSITIVE_SCALAR, "threshold": POSITIVE_SCALAR, "beta": POSITIVE_SCALAR[:8],
             "v_reset": FINITE_SCALAR, "beta_adapt": [-1.0, NAN, INF, "1", None, [1.0, -1.0, 1.0],
                                                      [1.0, 1.0]],
             "t_ref": [-1e-3, NAN, INF, "0.005", None], "ref_strength": [-1.0, NAN, INF, "1"]}
    for name, cls, args in neurons:
        for arg in args:
            cases += _sweep(name, cls, arg, kinds[arg], n=N)
        cases += _sweep(name, cls, "n", [0, -3, 2.5, "8", True, None, (3, 0), ()])
        cases += _sweep(name, cls, "backend", CHOICE, n=N)
    cases += _sweep("LIF", sg.nn.LIF, "reset", CHOICE, n=N)
    cases += _sweep("LIF", sg.nn.LIF, "surrogate", ["no_such_surrogate", 3, None], n=N)
    cases.append(Case("LIF(learn_tau, tau_mem=inf)", "tau_mem",
                      lambda: sg.nn.LIF(N, tau_mem=INF, learn_tau=True)))
    cases.append(Case("LIF(learn_reset, reset=subtract)", "learn_reset",
                      lambda: sg.nn.LIF(N, learn_reset=True)))
    cases.append(Case("ALIF(learn_refractory, ref_strength=0)", "learn_refractory",
                      lambda: sg.nn.ALIF(N, learn_refractory=True)))
    cases += _sweep("ALIF", sg.nn.ALIF, "backend", ["torch", "triton"], n=N)
    # dendritic
    for arg, bad in (("tau_dend", TIME_CONSTANT + [(0.02,), (0.02, -1.0)]),
                     ("threshold_dend", POSITIVE_SCALAR), ("coupling", FINITE_SCALAR),
                     ("passive", FINITE_SCALAR), ("init_gain", [-1.0, NAN, INF, "1"]),
                     ("branches", POSITIVE_INT), ("backend", ["fast", "cuda", 3])):
        cases += _sweep("DendriticLIF", sg.nn.DendriticLIF, arg, bad, n=N, branches=2) \
            if arg != "branches" else _sweep("DendriticLIF", sg.nn.DendriticLIF, arg, bad, n=N)
    cases += _sweep("DendriticLIF", sg.nn.DendriticLIF, "n", [0, -1, 2.5, (2, 2)], branches=2)
    cases += [Case(f"DendriticLIF(recurrent, backend={b})", "backend",
                   lambda b=b: sg.nn.DendriticLIF(N, 2, recurrent=True, backend=b))
              for b in ("numba", "torch")]
    # recurrent
    cases += _sweep("Recurrent", lambda **k: sg.nn.Recurrent(sg.nn.LIF(8), **k), "init_gain",
                    [NAN, INF, -INF, -1.0, "1", None, 1j])
    cases += [Case(f"Recurrent(neuron={_short(v)})", "neuron",
                   lambda v=v: sg.nn.Recurrent(v))
              for v in [torch.nn.Linear(2, 2), "LIF", None, sg.nn.Linear(2, 2)]]
    cases.append(Case("Recurrent(LIF((2, 3)))", "feature shape",
                      lambda: sg.nn.Recurrent(sg.nn.LIF((2, 3)))))
    # forward inputs of every neuron module
    modules = [("LIF", lambda: sg.nn.LIF(N)), ("IF", lambda: sg.nn.IF(N)),
               ("LI", lambda: sg.nn.LI(N)), ("ALIF", lambda: sg.nn.ALIF(N)),
               ("Recurrent", lambda: sg.nn.Recurrent(sg.nn.LIF(N))),
               ("DendriticLIF", lambda: sg.nn.DendriticLIF(N, 1)),
               ("Linear", lambda: sg.nn.Linear(N, 2))]
    for name, make in modules:
        for bad in [torch.zeros(N), torch.zeros(B, N), torch.zeros(T, B, N + 1), "xs",
                    torch.zeros(T, B, N, dtype=torch.int64), torch.zeros(0, B, N)]:
            if name == "Linear" and bad.__class__ is torch.Tensor and bad.shape[0] == 0:
                continue  # a stateless layer maps an empty sequence to an empty one
            cases.append(Case(f"{name}.forward({_short(bad)})", "xs",
                              lambda m=make, b=bad: m()(b)))
    for name, make in modules[:4]:
        cases.append(Case(f"{name}.forward(state=tensor)", "state",
                          lambda m=make: m()(_xs(), torch.zeros(B, N))))
        cases.append(Case(f"{name}.forward(state batch 1)", "state",
                          lambda m=make: (lambda mod: mod(_xs(), mod.initial_state(
                              torch.zeros(1, N))))(m())))
    # layers
    cases += _sweep("Linear", sg.nn.Linear, "in_features", [0, -3, 2.5, "8", None],
                    out_features=2)
    cases += _sweep("Linear", sg.nn.Linear, "out_features", [0, -3, 2.5, "8", None],
                    in_features=2)
    cases += _sweep("Dropout", sg.nn.Dropout, "p", BOOL_LIKE_BAD)
    for cls, n in ((sg.nn.Conv1d, 1), (sg.nn.Conv2d, 2)):
        base = dict(in_channels=2, out_channels=4, kernel_size=3)
        name = cls.__name__
        cases += _sweep(name, cls, "in_channels", [0, -1, 2.5, "2", None],
                        **{k: v for k, v in base.items() if k != "in_channels"})
        cases += _sweep(name, cls, "out_channels", [0, -1, 2.5, "2"],
                        **{k: v for k, v in base.items() if k != "out_channels"})
        cases += _sweep(name, cls, "kernel_size", [0, -1, 2.5, "3", (3,) * (n + 1)],
                        **{k: v for k, v in base.items() if k != "kernel_size"})
        cases += _sweep(name, cls, "stride", [0, -1, 1.5, (1, 0)[:n] if n == 2 else 0.0],
                        **base)
        cases += _sweep(name, cls, "padding", [-1, "full", 1.5], **base)
        cases += _sweep(name, cls, "dilation", [0, -2], **base)
        cases += _sweep(name, cls, "groups", [0, 3], **base)
    for cls in (sg.nn.MaxPool1d, sg.nn.MaxPool2d, sg.nn.AvgPool1d, sg.nn.AvgPool2d,
                sg.nn.SumPool1d, sg.nn.SumPool2d):
        name = cls.__name__
        cases += _sweep(name, cls, "kernel_size", [0, -1, 1.5, "2", None])
        cases += _sweep(name, cls, "stride", [0, -1, 1.5], kernel_size=2)
        cases += _sweep(name, cls, "padding", [-1, 2, 1.5], kernel_size=2)
    for bad in [torch.zeros(B, 2, 5), torch.zeros(T, B, 3, 5), "xs"]:
        cases.append(Case(f"Conv1d.forward({_short(bad)})", "xs",
                          lambda b=bad: sg.nn.Conv1d(2, 4, 3)(b)))
    # norms
    for cls in (sg.nn.ThresholdBatchNorm, sg.nn.PerStepBatchNorm):
        name = cls.__name__
        base = {"n_steps": T} if cls is sg.nn.PerStepBatchNorm else {}
        cases += _sweep(name, cls, "num_features", [0, -1, 2.5, "3"], **base)
        cases += _sweep(name, cls, "eps", [0.0, -1.0, NAN, INF, "1e-5"], num_features=3, **base)
        cases += _sweep(name, cls, "momentum", [0.0, 1.5, NAN, "0.1"], num_features=3, **base)
        cases.append(Case(f"{name}.forward([T, B, 4])", "xs",
                          lambda c=cls, b=base: c(3, **b)(torch.zeros(T, B, 4))))
    cases += _sweep("ThresholdBatchNorm", sg.nn.ThresholdBatchNorm, "threshold",
                    POSITIVE_SCALAR[:7], num_features=3)
    cases += _sweep("ThresholdBatchNorm", sg.nn.ThresholdBatchNorm, "alpha",
                    POSITIVE_SCALAR[:7], num_features=3)
    cases += _sweep("PerStepBatchNorm", sg.nn.PerStepBatchNorm, "n_steps", [0, -1, 2.5, None],
                    num_features=3)
    cases.append(Case("PerStepBatchNorm.forward(T=5)", "n_steps",
                      lambda: sg.nn.PerStepBatchNorm(3, T)(torch.zeros(T + 1, B, 3))))
    # Sequential and spiking_conv
    cases += _sweep("Sequential", lambda **k: sg.nn.Sequential(sg.nn.LIF(N), **k), "recompute",
                    [-0.1, 1.5, NAN, "half", None])
    cases += [Case(f"Sequential(layer={_short(v)})", "layer",
                   lambda v=v: sg.nn.Sequential(sg.nn.LIF(N), v)) for v in [3, "LIF", None]]
    cases += _sweep("spiking_conv", sg.nn.spiking_conv, "in_shape",
                    [(0, 8, 8), (1,), (1, 8, 8, 8), (1, -8)], out_channels=4, kernel_size=3)
    cases += _sweep("spiking_conv", sg.nn.spiking_conv, "norm", CHOICE,
                    in_shape=(1, 8, 8), out_channels=4, kernel_size=3)
    cases += _sweep("spiking_conv", sg.nn.spiking_conv, "pool", CHOICE,
                    in_shape=(1, 8, 8), out_channels=4, kernel_size=3)
    cases += _sweep("spiking_conv", sg.nn.spiking_conv, "stride", [0, -1],
                    in_shape=(1, 8, 8), out_channels=4, kernel_size=3)
    cases += _sweep("spiking_conv", sg.nn.spiking_conv, "out_channels", [0, -1, 2.5],
                    in_shape=(1, 8, 8), kernel_size=3)
    cases.append(Case("spiking_conv(norm=per_step, n_steps=None)", "n_steps",
                      lambda: sg.nn.spiking_conv((1, 8, 8), 4, 3, norm="per_step")))
    cases += _sweep("conv_output_size", sg.nn.conv_output_size, "size", [(2,), 2],
                    kernel_size=5)
    return cases


# --- encoders, losses, surrogates, training -------------------------------------------------

def _encoder_cases() -> list:
    x = torch.full((3,), 0.5)
    cases = []
    cases += _sweep("rate", data.rate, "n_steps", POSITIVE_INT, x=x)
    cases += _sweep("rate", data.rate, "gain", [NAN, INF, "1", None, 3.0, -1.0],
                    x=x, n_steps=5)
    cases += [Case(f"rate(x={_short(b)})", "x", lambda b=b: data.rate(b, 5))
              for b in [_t(-0.1), _t(1.5), _t(NAN), "x", [0.5], _t(1, dtype=torch.int64)]]
    cases += _sweep("poisson", data.poisson, "dt", POSITIVE_SCALAR,
                    rates_hz=torch.full((3,), 50.0), n_steps=5)
    cases += _sweep("poisson", data.poisson, "n_steps", POSITIVE_INT,
                    rates_hz=torch.full((3,), 50.0), dt=1e-3)
    cases += [Case(f"poisson(rates_hz={_short(b)})", "rates_hz",
                   lambda b=b: data.poisson(b, 5, 1e-3))
              for b in [_t(-5.0), _t(2000.0), _t(NAN), _t(INF), "50"]]
    for fn in (data.latency, data.latency_times):
        name = fn.__name__
        cases += _sweep(name, fn, "n_steps", POSITIVE_INT, x=x)
        cases += _sweep(name, fn, "tau", [0.0, -1.0, NAN, INF, "2"], x=x, n_steps=5)
        cases += _sweep(name, fn, "threshold", [-0.1, 1.0, NAN, "0.1", None], x=x, n_steps=5,
                        tau=2.0)
        cases += [Case(f"{name}(x={_short(b)})", "x", lambda f=fn, b=b: f(b, 5))
                  for b in [_t(-0.1), _t(1.5), _t(NAN), "x"]]
    xs = torch.rand(T, B, N)
    cases += _sweep("delta", data.delta, "threshold", POSITIVE_SCALAR, xs=xs)
    cases += [Case(f"delta(xs={_short(b)})", "xs", lambda b=b: data.delta(b, 0.1))
              for b in [torch.zeros(5), "xs", torch.full((T, B), NAN),
                        torch.tensor([[0.0], [INF]])]]
    cases += _sweep("population", data.population, "n_neurons", [1, 0, -1, 2.5, "4"],
                    x=x, low=0.0, high=1.0)
    cases += _sweep("population", data.population, "low", [NAN, -INF, "0", None, 2.0],
                    x=x, n_neurons=4, high=1.0)
    cases += _sweep("population", data.population, "high", [NAN, INF, "1", None, -1.0],
                    x=x, n_neurons=4, low=0.0)
    cases += _sweep("population", data.population, "width", [0.0, -1.0, NAN, INF, "1"],
                    x=x, n_neurons=4, low=0.0, high=1.0)
    cases += [Case(f"population(x={_short(b)})", "x",
                   lambda b=b: data.population(b, 4, 0.0, 1.0)) for b in [_t(NAN), "x", None]]
    return cases


def _loss_cases() -> list:
    zs, vs = torch.zeros(T, B, N), torch.zeros(T, B, N)
    y = torch.tensor([0, 2])
    cases = []
    cases += _sweep("count_cross_entropy", losses.count_cross_entropy, "scale",
                    [-1.0, 0.0, NAN, INF, "1", None, True, _t(NAN), _t(-1.0)], zs=zs, y=y)
    for fn, first in ((losses.count_cross_entropy, "zs"), (losses.membrane_cross_entropy, "vs"),
                      (losses.ttfs_cross_entropy, "zs")):
        name = fn.__name__
        cases += [Case(f"{name}(y={_short(b)})", "y", lambda f=fn, b=b: f(zs, b))
                  for b in [torch.tensor([0.0, 1.0]), torch.tensor([0, 3]),
                            torch.tensor([-1, 0]), torch.tensor([0]), "y", [0, 1]]]
        cases += [Case(f"{name}({first}={_short(b)})", first, lambda f=fn, b=b: f(b, y))
                  for b in [torch.zeros(B, N), torch.zeros(T, B), torch.zeros(T, B, N, 1), "zs"]]
    cases += _sweep("membrane_cross_entropy", losses.membrane_cross_entropy, "reduce", CHOICE,
                    vs=vs, y=y)
    cases += _sweep("ttfs_cross_entropy", losses.ttfs_cross_entropy, "tau",
                    [0.0, -1.0, NAN, INF, "2", None], zs=zs, y=y)
    for fn in (losses.mse, losses.nmse):
        cases += [Case(f"{fn.__name__}(target={_short(b)})", "target",
                       lambda f=fn, b=b: f(vs, b))
                  for b in [torch.zeros(T, B, N + 1), torch.zeros(B, N), "t", None]]
    cases += _sweep("filtered_mse", losses.filtered_mse, "decay", DECAY[:10], zs=zs, target=vs)
    cases += _sweep("filtered_mse", losses.filtered_mse, "gain", FINITE_SCALAR, zs=zs,
                    target=vs, decay=0.9)
    for fn in (losses.spike_count_l1, losses.spike_count_l2):
        cases += _sweep(fn.__name__, fn, "per", CHOICE, zs=zs)
        cases += [Case(f"{fn.__name__}(zs={_short(b)})", "zs", lambda f=fn, b=b: f(b))
                  for b in [torch.zeros(N), "zs", None]]
    cases += _sweep("rate_band", losses.rate_band, "low", [-1.0, NAN, INF, "1", 5.0],
                    zs=zs, high=2.0)
    cases += _sweep("rate_band", losses.rate_band, "high", [-1.0, NAN, INF, "1"], zs=zs)
    cases += _sweep("rate_band", losses.rate_band, "power", [0, 3, 1.5, "2"], zs=zs, low=1.0)
    cases.append(Case("rate_band(low=None, high=None)", "low", lambda: losses.rate_band(zs)))
    t_f = torch.tensor([[1, 2, 3], [0, 4, 2]])
    cases += _sweep("first_spike_nll", losses.first_spike_nll, "beta_esc",
                    [0.0, -1.0, NAN, INF, "5", None], vs=vs, t_target=t_f)
    cases += _sweep("first_spike_nll", losses.first_spike_nll, "threshold",
                    [NAN, INF, "1", None, _t(NAN)], vs=vs, t_target=t_f)
    cases += _sweep("first_spike_nll", losses.first_spike_nll, "t_target",
                    [t_f.float(), t_f + T, t_f - 5, t_f[:1], "t"], vs=vs)
    cases += _sweep("membrane_penalty", losses.membrane_penalty, "region", CHOICE, vs=vs)
    cases += _sweep("membrane_penalty", losses.membrane_penalty, "level", FINITE_SCALAR, vs=vs)
    cases += _sweep("membrane_penalty", losses.membrane_penalty, "power", [0, 3, "2"], vs=vs)
    cases += _sweep("spike_rate_loss", losses.spike_rate_loss, "target",
                    [torch.zeros(B, N + 1), "t", torch.zeros(T + 1, B, N)], zs=zs)
    cases += _sweep("membrane_rate_loss", losses.membrane_rate_loss, "target",
                    [torch.zeros(B, N + 1), "t"], vs=vs)
    cases += [Case(f"soft_first_spike_time({_short(b)})", "zs",
                   lambda b=b: losses.soft_first_spike_time(b)) for b in [torch.zeros(3), "zs"]]
    term = losses.Term
    cases += [Case("regularization(weight=-1)", "weight",
                   lambda: losses.regularization([zs], [term(0, losses.spike_count_l1, -1.0)])),
              Case("regularization(weight=nan)", "weight",
                   lambda: losses.regularization([zs], [term(0, losses.spike_count_l1, NAN)])),
              Case("regularization(layer=5)", "layer",
                   lambda: losses.regularization([zs], [term(5, losses.spike_count_l1)])),
              Case("regularization(penalty=3)", "penalty",
                   lambda: losses.regularization([zs], [term(0, 3)])),
              Case("regularization(terms=Term)", "terms",
                   lambda: losses.regularization([zs], term(0, losses.spike_count_l1)))]
    return cases


def _surrogate_cases() -> list:
    S = sg.surrogate
    fs = S.get("fast_sigmoid")
    cases = []
    # beta=None keeps the surrogate's own slope
    cases += _sweep("surrogate.get", S.get, "beta", [v for v in POSITIVE_SCALAR if v is not None],
                    surrogate="atan")
    cases += _sweep("surrogate.get", S.get, "surrogate", ["no_such", 3, None, ""])
    cases += _sweep("Surrogate.with_beta", fs.with_beta, "beta", POSITIVE_SCALAR[:7])
    cases += _sweep("surrogate.register", S.register, "beta", POSITIVE_SCALAR[:7],
                    name="fuzz_tmp", derivative=fs.derivative, primitive=fs.primitive)
    cases += _sweep("surrogate.register", S.register, "name", ["", 3, None],
                    derivative=fs.derivative, primitive=fs.primitive, beta=1.0)
    cases += _sweep("surrogate.register", S.register, "derivative", [3, None, "phi"],
                    name="fuzz_tmp", primitive=fs.primitive, beta=1.0)
    cases += _sweep("surrogate.register", S.register, "primitive", [3, None],
                    name="fuzz_tmp", derivative=fs.derivative, beta=1.0)
    cases.append(Case("surrogate.register(existing name)", "fast_sigmoid",
                      lambda: S.register("fast_sigmoid", fs.derivative, fs.primitive, 1.0)))
    cases += _sweep("Surrogate", S.Surrogate, "beta", POSITIVE_SCALAR[:7], name="x",
                    derivative=fs.derivative, primitive=fs.primitive)
    cases += [Case(f"spike(x={_short(b)})", "x", lambda b=b: sg.spike(b))
              for b in ["v", [0.1], None, torch.zeros(3, dtype=torch.int64)]]
    cases += [Case(f"spike(surrogate={_short(b)})", "surrogate",
                   lambda b=b: sg.spike(torch.zeros(2), b)) for b in ["nope", 3, None]]
    return cases


def _trainer(**kwargs):
    model = torch.nn.Linear(2, 1)
    base = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                objective=lambda *a: None, progress=False)
    return Trainer(**{**base, **kwargs})


def _trainer_cases() -> list:
    cases = []
    # grad_clip=None: no clipping
    cases += _sweep("Trainer", _trainer, "grad_clip", [v for v in POSITIVE_SCALAR if v is not None])
    cases += _sweep("Trainer", _trainer, "tbptt", [0, -3, 2.5, "8", True])
    cases += _sweep("Trainer", _trainer, "checkpoint_every", [0, -1, 1.5, "2"])
    cases += _sweep("Trainer", _trainer, "keep_checkpoints", [0, -1, 1.5])
    cases += _sweep("Trainer", _trainer, "nonfinite", CHOICE)
    cases += _sweep("Trainer", _trainer, "model", ["net", None, 3])
    cases += _sweep("Trainer", _trainer, "optimizer", ["adam", None])
    cases += _sweep("Trainer", _trainer, "objective", [3, None])
    cases += _sweep("Trainer", _trainer, "scheduler", [3, "cosine"])
    return cases


def _all_cases() -> list:
    return (_functional_param_cases() + _state_cases() + _readout_cases() + _module_cases()
            + _encoder_cases() + _loss_cases() + _surrogate_cases() + _trainer_cases())


CASES = _all_cases()

# Cases that raise a ValueError/TypeError whose message does not name the argument, with why.
UNCLEAR: dict = {}


def test_case_count():
    assert len(CASES) >= 600, len(CASES)
    assert len(UNCLEAR) <= 0.05 * len(CASES)


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(reason=UNCLEAR[repr(c)], strict=True))
    if repr(c) in UNCLEAR else c for c in CASES], ids=repr)
def test_invalid_call_raises_a_clear_error(case):
    try:
        out = case.call()
    except (ValueError, TypeError) as e:
        message = str(e)
        # the name as a word: "p" must not match inside "pass", nor "decay" in "decay_mem"
        named = re.search(rf"(?<![\w]){re.escape(case.arg)}(?![\w])", message, re.IGNORECASE)
        assert named, f"the message does not name {case.arg!r}: {message}"
        return
    pytest.fail(f"returned a result instead of raising: {type(out).__name__}")
