"""Generated invalid inputs across the public API: each gets a clear ValueError/TypeError.

Every case calls one public entry point with exactly one bad argument (the others valid)
and checks that the error is a ValueError or TypeError whose message names the argument,
so the user sees what to fix; never an IndexError/RuntimeError from deep inside torch, and
never a silently wrong result. The case table is generated from per-kind lists of bad
values; hypothesis adds random bad numbers on top. ``test_case_count`` pins the size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spikegrad as sg
from spikegrad import data, losses
from spikegrad.apps import classification
from spikegrad.apps.config import ConfigError, apply_overrides
from spikegrad.functional import LIFParams, lif_seq
from spikegrad.train import Trainer, make_optimizer

NAN, INF = float("nan"), float("inf")

# Bad values by kind of parameter. Each list avoids values the kind legitimately accepts.
POSITIVE_FLOAT = [0.0, -1.0, -1e-9, NAN, INF, -INF, "0.02", True, [1.0], object()]
# tau = inf is the no-leak limit (IF-like) and accepted
TIME_CONSTANT = [v for v in POSITIVE_FLOAT if v != INF]
POSITIVE_INT = [0, -3, 2.5, "8", True, None, NAN, [4]]
PROBABILITY = [-0.1, 1.5, NAN, INF, "0.5", None]
CHOICE = ["no_such_option", 3, None, ""]
NONNEGATIVE_FLOAT = [-1.0, -1e-6, NAN, INF, "0"]


@dataclass(frozen=True)
class Case:
    entry: str                     # what is called, for the test id
    arg: str                       # the bad argument; must appear in the message
    call: Callable[[], Any]

    def __repr__(self) -> str:
        return f"{self.entry}:{self.arg}"


def _cases_for(entry: str, fn: Callable[..., Any], base: dict, arg: str, bad: list,
               name_in_message: str | None = None) -> list[Case]:
    return [Case(f"{entry}={v!r}"[:60], name_in_message or arg,
                 (lambda v=v: fn(**{**base, arg: v}))) for v in bad]


def _lif_seq(xs=None, state=None, backend="auto", **params):
    xs = torch.zeros(4, 2, 3) if xs is None else xs
    return lif_seq(xs, state, LIFParams(**params), backend=backend)


def _rate(x=None, n_steps=5):
    return data.rate(torch.full((3,), 0.5) if x is None else x, n_steps)


def _poisson(rates_hz=None, n_steps=5, dt=1e-3):
    return data.poisson(torch.full((3,), 50.0) if rates_hz is None else rates_hz, n_steps, dt)


def _count_ce(zs=None, y=None):
    zs = torch.zeros(6, 4, 3) if zs is None else zs
    y = torch.tensor([0, 1, 2, 0]) if y is None else y
    return losses.count_cross_entropy(zs, y)


def _mse(out=None, target=None):
    return losses.mse(torch.zeros(5, 2, 3) if out is None else out,
                      torch.zeros(5, 2, 3) if target is None else target)


def _trainer(**kwargs):
    model = torch.nn.Linear(2, 1)
    base = dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                objective=lambda *a: None, progress=False)
    return Trainer(**{**base, **kwargs})


def _optimizer(name="adam", lr=1e-3, weight_decay=0.0):
    return make_optimizer(name, torch.nn.Linear(2, 1), lr=lr, weight_decay=weight_decay)


def _override(text):
    return apply_overrides(classification.Config(), [text])


def _neuron_forward(xs):
    return sg.nn.LIF(3)(xs)


def _linear_forward(xs):
    return sg.nn.Linear(3, 2)(xs)


def _cases() -> list[Case]:
    cases: list[Case] = []
    # neurons
    for name, cls, args in [("LIF", sg.nn.LIF, ("tau_mem", "dt", "threshold", "tau_syn")),
                            ("LI", sg.nn.LI, ("tau_mem", "dt", "tau_syn")),
                            ("IF", sg.nn.IF, ("dt", "threshold"))]:
        base = {"n": 4}
        for arg in args:
            bad = TIME_CONSTANT if arg.startswith("tau") else POSITIVE_FLOAT
            cases += _cases_for(name, cls, base, arg, bad)
        cases += _cases_for(name, cls, {}, "n", [0, -3, 2.5, "8", True, None])
    cases += _cases_for("LIF", sg.nn.LIF, {"n": 4}, "reset", CHOICE)
    cases += _cases_for("LIF", sg.nn.LIF, {"n": 4}, "backend", CHOICE)
    cases += _cases_for("LIF", sg.nn.LIF, {"n": 4}, "surrogate", ["no_such_surrogate", 3])
    cases += _cases_for("LIF", sg.nn.LIF, {"n": 4}, "beta", POSITIVE_FLOAT[:6])
    # layers
    cases += _cases_for("Linear", sg.nn.Linear, {"out_features": 2}, "in_features",
                        [0, -3, 2.5, "8", None])
    cases += _cases_for("Linear", sg.nn.Linear, {"in_features": 2}, "out_features",
                        [0, -3, 2.5, "8", None])
    cases += _cases_for("Linear", sg.nn.Linear, {"in_features": 2, "out_features": 2},
                        "backend", CHOICE)
    cases += _cases_for("Dropout", sg.nn.Dropout, {}, "p", PROBABILITY)
    for bad in [torch.zeros(3), torch.zeros(4, 2), torch.zeros(4, 2, 5), "x",
                torch.zeros(4, 2, 3, dtype=torch.int64)]:
        cases.append(Case(f"LIF.forward({bad!r})"[:40], "xs", lambda b=bad: _neuron_forward(b)))
        cases.append(Case(f"Linear.forward({bad!r})"[:40], "xs", lambda b=bad: _linear_forward(b)))
    cases.append(Case("Recurrent(neuron=Linear)", "neuron",
                      lambda: sg.nn.Recurrent(torch.nn.Linear(2, 2))))
    # functional core
    for bad in [torch.zeros(4), "xs", torch.zeros(4, 2, 3, dtype=torch.int32), [[0.0]]]:
        cases.append(Case(f"lif_seq(xs={bad!r})"[:40], "xs", lambda b=bad: _lif_seq(xs=b)))
    for bad in [torch.zeros(0, 2, 3)]:
        cases.append(Case("lif_seq(T=0)", "xs", lambda b=bad: _lif_seq(xs=b)))
    cases += _cases_for("lif_seq", _lif_seq, {}, "backend", CHOICE)
    cases += _cases_for("lif_seq", _lif_seq, {}, "reset", CHOICE)
    cases.append(Case("lif_seq(state=wrong shape)", "state", lambda: _lif_seq(
        state=sg.functional.LIFState(torch.zeros(5, 3), None))))
    # surrogates
    cases += _cases_for("surrogate.get", sg.surrogate.get, {"surrogate": "atan"}, "beta",
                        POSITIVE_FLOAT[:8])
    cases += _cases_for("surrogate.get", sg.surrogate.get, {}, "surrogate",
                        ["no_such_surrogate", 3, None])
    cases += [Case("spike(x='v')", "x", lambda: sg.spike("v")),
              Case("spike(x=[0.1])", "x", lambda: sg.spike([0.1])),
              Case("spike(surrogate=?)", "surrogate", lambda: sg.spike(torch.zeros(2), "nope"))]
    # encoders
    cases += _cases_for("rate", _rate, {}, "n_steps", POSITIVE_INT)
    for bad in [torch.tensor([-0.1]), torch.tensor([1.5]), torch.tensor([NAN]), "x"]:
        cases.append(Case(f"rate(x={bad!r})"[:40], "x", lambda b=bad: _rate(x=b)))
    cases += _cases_for("poisson", _poisson, {}, "dt", POSITIVE_FLOAT[:6])
    cases += _cases_for("poisson", _poisson, {}, "n_steps", POSITIVE_INT[:5])
    for bad in [torch.tensor([-5.0]), torch.tensor([2000.0]), torch.tensor([NAN])]:
        cases.append(Case(f"poisson(rates={bad!r})"[:40], "rates_hz",
                          lambda b=bad: _poisson(rates_hz=b)))
    # losses
    for bad, arg in [(torch.tensor([0.0, 1.0, 2.0, 0.0]), "y"), (torch.tensor([0, 1, 3, 0]), "y"),
                     (torch.tensor([0, 1, -1, 0]), "y"), (torch.tensor([0, 1]), "y"),
                     (torch.tensor([[0, 1, 2, 0]]), "y")]:
        cases.append(Case(f"count_ce(y={bad.tolist()})", arg, lambda b=bad: _count_ce(y=b)))
    for bad in [torch.zeros(4, 3), torch.zeros(6, 4), "zs"]:
        cases.append(Case(f"count_ce(zs={getattr(bad, 'shape', bad)})", "zs",
                          lambda b=bad: _count_ce(zs=b)))
    for bad in [torch.zeros(5, 2, 4), torch.zeros(4, 2, 3), torch.zeros(5, 3)]:
        cases.append(Case(f"mse(target={list(bad.shape)})", "target",
                          lambda b=bad: _mse(target=b)))
    # training
    cases += _cases_for("Trainer", _trainer, {}, "grad_clip", POSITIVE_FLOAT[:8])
    cases += _cases_for("Trainer", _trainer, {}, "tbptt", [0, -3, 2.5, "8", True])
    cases += _cases_for("Trainer", _trainer, {}, "checkpoint_every", [0, -1, 1.5, "2"])
    cases += _cases_for("Trainer", _trainer, {}, "keep_checkpoints", [0, -1, 1.5])
    cases += _cases_for("Trainer", _trainer, {}, "nonfinite", CHOICE)
    cases += [Case("Trainer(model=str)", "model", lambda: _trainer(model="net")),
              Case("Trainer(optimizer=str)", "optimizer", lambda: _trainer(optimizer="adam")),
              Case("Trainer(objective=3)", "objective", lambda: _trainer(objective=3))]
    cases += _cases_for("make_optimizer", _optimizer, {}, "lr", POSITIVE_FLOAT[:7])
    cases += _cases_for("make_optimizer", _optimizer, {}, "weight_decay", NONNEGATIVE_FLOAT)
    cases += _cases_for("make_optimizer", _optimizer, {}, "name", ["adamm", 3, None])
    # CLI configuration (``--set key=value``)
    for text, arg in [("epochs=abc", "epochs"), ("epochs=2.5", "epochs"), ("lr=fast", "lr"),
                      ("no_such_key=1", "no_such_key"), ("epochs", "epochs"), ("=3", "key"),
                      ("dataset=imagenet", "dataset"), ("encoder=morse", "encoder"),
                      ("readout=vote", "readout"), ("deterministic=maybe", "deterministic"),
                      ("hidden=-4", "hidden"), ("epochs=0", "epochs"), ("lr=-1", "lr"),
                      ("lr=nan", "lr"), ("batch_size=0", "batch_size")]:
        cases.append(Case(f"--set {text}", arg, lambda t=text: classification.validate(
            _override(t))))
    # data generators
    cases += _cases_for("make_randman", data.make_randman, {}, "n_classes", [0, -1, 2.5, "3"])
    cases += _cases_for("make_randman", data.make_randman, {}, "n_units", [0, -1, 2.5])
    cases += _cases_for("make_randman", data.make_randman, {}, "n_steps", [0, -1, 2.5])
    return cases


CASES = _cases()


def test_case_count():
    assert len(CASES) >= 200, len(CASES)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_invalid_input_gets_a_clear_error(case):
    with pytest.raises((ValueError, TypeError, ConfigError)) as info:
        case.call()
    message = str(info.value)
    assert case.arg.lower() in message.lower(), f"message does not name {case.arg!r}: {message}"


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.floats(max_value=0.0), st.just(NAN)))
def test_random_bad_time_constants(tau):
    with pytest.raises(ValueError, match="tau_mem"):
        sg.nn.LIF(3, tau_mem=tau)


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda p: not (0.0 <= p <= 1.0) or math.isnan(p)))
def test_random_bad_probabilities(p):
    with pytest.raises(ValueError, match="x"):
        data.rate(torch.full((2,), p, dtype=torch.float64), 3)


# --- issue 24: one validation path, every backend alike --------------------------------------

_BACKENDS = ["reference", "torch", "auto"] + (
    ["numba"] if __import__("spikegrad.kernels.registry", fromlist=["x"]).numba_available() else [])


@pytest.mark.parametrize("backend", _BACKENDS)
@pytest.mark.parametrize("params, arg", [
    (dict(threshold=NAN), "threshold"), (dict(threshold=0.0), "threshold"),
    (dict(threshold=-1.0), "threshold"), (dict(decay_mem=1.5), "decay_mem"),
    (dict(decay_mem=-0.5), "decay_mem"), (dict(decay_mem=NAN), "decay_mem"),
    (dict(decay_mem=INF), "decay_mem"), (dict(decay_syn=NAN), "decay_syn"),
    (dict(threshold=torch.tensor([1.0, NAN, 1.0])), "threshold"),
])
def test_every_backend_rejects_the_same_constants(backend, params, arg):
    # numba used to return finite spikes for threshold=nan where the others returned NaN
    with pytest.raises(ValueError, match=arg):
        _lif_seq(backend=backend, **params)


@pytest.mark.parametrize("backend", _BACKENDS)
def test_edge_constants_stay_valid(backend):
    """The limits of each range are legitimate: no leak (IF), no memory, per-neuron tensors."""
    xs = torch.rand(5, 2, 3)
    for params in [dict(decay_mem=1.0), dict(decay_mem=0.0), dict(decay_mem=1.0, decay_syn=0.0),
                   dict(threshold=torch.tensor([0.5, 1.0, 2.0])), dict(v_reset=-0.5),
                   dict(decay_mem=torch.tensor([0.0, 0.5, 1.0]))]:
        zs, s = _lif_seq(xs=xs, backend=backend, **params)
        zs2, _ = _lif_seq(xs=xs, state=s, backend=backend, **params)  # continuing is valid
        assert torch.isfinite(zs).all() and torch.isfinite(zs2).all()
    F = sg.functional
    p = F.ALIFParams(decay_adapt=1.0, beta_adapt=0.0,
                     refractory=F.RefractoryParams(n_ref=2, decay=1.0, strength=0.0))
    zs, _ = F.alif_seq(xs, None, p, backend="reference" if backend == "torch" else backend)
    assert torch.isfinite(zs).all()


def test_trained_constants_pass_the_checks_with_gradients():
    lif = sg.nn.LIF(3, learn_tau=True, learn_threshold=True, tau_syn=5e-3)
    zs, _ = lif(torch.rand(5, 2, 3))
    zs.sum().backward()
    assert lif.threshold.rho.grad is not None


@pytest.mark.parametrize("backend", _BACKENDS)
def test_recurrent_state_of_another_batch_is_refused(backend):
    # issue 24's reproduction: with numba this returned, then aborted the process in free()
    m = sg.nn.Recurrent(sg.nn.LIF(16, backend=backend))
    _, s = m(torch.rand(5, 3, 16))
    with pytest.raises(ValueError, match="state"):
        m(torch.rand(5, 4, 16), s)
    with pytest.raises(ValueError, match="state"):
        m(torch.rand(5, 1, 16), m(torch.rand(5, 64, 16))[1])
    m(torch.rand(5, 3, 16), s)  # the same batch continues


def test_plain_tensor_state_says_how_to_build_one():
    with pytest.raises(TypeError, match=r"LIFState.*LIFState\(v, i\)"):
        sg.nn.LIF(3)(torch.rand(4, 2, 3), torch.zeros(2, 3))


def test_step_leaves_tensor_values_to_seq():
    """``*_step`` checks numbers and tensor shapes, not tensor values (no sync per step)."""
    F = sg.functional
    x = torch.rand(2, 3)
    with pytest.raises(ValueError, match="threshold"):
        F.lif_step(x, None, F.LIFParams(threshold=-1.0))
    with pytest.raises(ValueError, match="threshold"):
        F.lif_step(x, None, F.LIFParams(threshold=torch.ones(5)))
    F.lif_step(x, None, F.LIFParams(threshold=torch.tensor(NAN)))  # documented: not checked
    with pytest.raises(ValueError, match="threshold"):
        F.lif_seq(x[None], None, F.LIFParams(threshold=torch.tensor(NAN)))
