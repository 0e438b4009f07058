"""The compiled three-factor step (backend="numba") against the torch reference over a
multi-step sequence, in float64 and float32, for every configuration it supports; the choice
of backend; and the checks at the door of the compiled code."""

import numpy as np
import pytest
import torch

import spikegrad as sg
from spikegrad._validate import DtypeError
from spikegrad.kernels import numba_three_factor as k
from spikegrad.learning import (Factors, ThreeFactor, ThreeFactorState, fused_unsupported,
                                target_error)

pytest.importorskip("numba")

T, B, N_IN, N = 40, 3, 6, 5


def _layer(dtype, *, bias=True, recurrent=False, autapses=False, gain=3.0, neuron="LIF",
           **lif):
    torch.manual_seed(0)
    layer = sg.nn.Linear(N_IN, N, bias=bias)
    if neuron == "IF":
        cell = sg.nn.IF(N, **lif)
    else:
        cell = sg.nn.LIF(N, tau_mem=10e-3, **lif)
    if recurrent:
        cell = sg.nn.Recurrent(cell, autapses=autapses)
    with torch.no_grad():
        layer.weight.mul_(gain)
    return layer.to(dtype), cell.to(dtype)


def _data(dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = (torch.rand(T, B, N_IN, generator=g) < 0.3).to(dtype)       # input spikes
    target = (torch.rand(T, B, N, generator=g) < 0.2).to(dtype)      # target spike trains
    return xs, target


def _run(rule, xs, target):
    """Every step's spikes, state and factors, and the flushed gradient."""
    state, steps = None, []
    for t in range(T):
        z, state, pre, post = rule.forward(xs[t], state)
        rule.accumulate(Factors(pre, post, target_error(z, target[t])))
        steps.append((z, state, pre, post))
    return steps, rule.flush()


def _tol(dtype, scale=1.0, terms=1):
    """Rounding of ``terms`` summed values of magnitude ``scale`` in ``dtype``."""
    return 8 * terms * torch.finfo(dtype).eps * scale


CASES = {
    "plain": dict(),
    "no_bias_raw_trace": dict(bias=False, trace="spikes"),
    "recurrent": dict(recurrent=True, gain=2.0),
    "recurrent_autapses_decay_trace": dict(recurrent=True, autapses=True, trace=0.8, gain=2.0),
    "synapse_scaled": dict(tau_syn=5e-3, scale_input=True, gain=30.0),
    "synapse_raw_trace": dict(tau_syn=5e-3, trace="spikes"),
    "synapse_decay_trace": dict(tau_syn=5e-3, trace=0.5),
    "reset_to_value": dict(reset="to_value", v_reset=-0.25),
    "reset_none": dict(reset="none", gain=1.0),
    "straight_through": dict(surrogate="straight_through", beta=2.0),
    "sigmoid_threshold": dict(surrogate="sigmoid", beta=4.0, threshold=0.5),
    "integrate_and_fire": dict(neuron="IF", gain=1.0),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_the_compiled_step_equals_the_reference_over_a_sequence(case, dtype):
    kw = dict(CASES[case])
    trace = kw.pop("trace", "kernel")
    layer, neuron = _layer(dtype, **kw)
    xs, target = _data(dtype)
    fast = ThreeFactor(layer, neuron, trace=trace, backend="numba")
    ref = ThreeFactor(layer, neuron, trace=trace, backend="reference")
    assert fast.backend == "numba" and ref.backend == "reference"
    got, g_fast = _run(fast, xs, target)
    want, g_ref = _run(ref, xs, target)
    rate = float(torch.stack([w[0] for w in want]).mean())
    assert 0.03 < rate < 0.8, rate                  # the neurons fire: a real test of the reset
    for t, ((z, s, pre, post), (z_r, s_r, pre_r, post_r)) in enumerate(zip(got, want)):
        assert torch.equal(z, z_r), f"spikes differ at step {t}"
        assert z.dtype == dtype and post.dtype == dtype
        for name, a, b in (("v", s.neuron.v, s_r.neuron.v), ("i", s.neuron.i, s_r.neuron.i),
                           ("pre", pre, pre_r), ("pre_i", s.pre_i, s_r.pre_i),
                           ("post", post, post_r)):
            assert (a is None) == (b is None), name
            if a is not None:
                scale = max(1.0, float(b.abs().max()))
                torch.testing.assert_close(a, b, rtol=0, atol=_tol(dtype, scale),
                                           msg=f"{name} at step {t}")
    for name in g_ref:
        scale = max(1.0, float(g_ref[name].abs().max()))
        assert float(g_ref[name].abs().max()) > 1e-3, name       # something was learned
        # the accumulators sum T * B products in another order than the reference's BLAS
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=0,
                                   atol=_tol(dtype, scale, T * B), msg=name)


def test_batch_one_and_a_non_contiguous_input_give_the_reference_numbers():
    # no bias, no recurrence: the presynaptic values are the (strided) input itself
    layer, neuron = _layer(torch.float64, bias=False)
    xs, target = _data(torch.float64)
    wide = torch.stack([xs, -xs], -1)[..., 0]                # a strided view of the inputs
    assert not wide.is_contiguous() and torch.equal(wide, xs)
    for batch in (slice(0, 1), slice(None)):
        fast = ThreeFactor(layer, neuron, backend="numba")
        ref = ThreeFactor(layer, neuron, backend="reference")
        got, g_fast = _run(fast, wide[:, batch], target[:, batch])
        want, g_ref = _run(ref, xs[:, batch], target[:, batch])
        for (z, *_), (z_r, *_) in zip(got, want):
            assert torch.equal(z, z_r)
        for name in g_ref:
            torch.testing.assert_close(g_fast[name], g_ref[name], rtol=0, atol=1e-12)


def test_auto_picks_numba_and_explicit_numba_names_what_it_cannot_run():
    layer, neuron = _layer(torch.float32)
    assert ThreeFactor(layer, neuron).backend == "numba"
    learned = sg.nn.LIF(N, learn_threshold=True)
    assert "threshold" in fused_unsupported(learned.params(), torch.float32, "cpu")
    assert ThreeFactor(layer, learned).backend == "reference"
    with pytest.raises(ValueError, match="backend='numba' cannot run.*threshold"):
        ThreeFactor(layer, learned, backend="numba")
    custom = sg.nn.LIF(N, surrogate=sg.surrogate.Surrogate(
        "mine", lambda x, b: torch.ones_like(x), lambda x, b: x, 1.0))
    with pytest.raises(ValueError, match="built-in surrogates only, not 'mine'"):
        ThreeFactor(layer, custom, backend="numba")
    with pytest.raises(ValueError, match="backend must be one of"):
        ThreeFactor(layer, neuron, backend="cuda")
    half = sg.nn.LIF(N).params()
    assert "float32/float64" in fused_unsupported(half, torch.float16, "cpu")


def test_a_state_that_does_not_fit_is_refused_before_compiled_code():
    layer, neuron = _layer(torch.float32, tau_syn=5e-3)
    rule = ThreeFactor(layer, neuron, backend="numba")
    x = torch.ones(2, N_IN)
    good = rule.init_state(2)
    short = good._replace(neuron=good.neuron._replace(v=torch.zeros(1, N)))
    with pytest.raises(ValueError, match=r"v0 has shape \[1, 5\], expected \[2, 5\]"):
        rule.forward(x, short)
    missing = good._replace(neuron=good.neuron._replace(i=None))
    with pytest.raises(ValueError, match=r"i0 has shape \[1\], expected \[2, 5\]"):
        rule.forward(x, missing)
    wrong = good._replace(pre=torch.zeros(2, N_IN + 1, dtype=torch.float64))
    with pytest.raises(DtypeError, match="pre0 has dtype float64, expected float32"):
        rule.forward(x, wrong)
    z, state, _, _ = rule.forward(x, good)                            # the good one runs
    assert isinstance(state, ThreeFactorState) and z.shape == (2, N)


def _arrays(dtype=np.float32, b=2, n=4, p=3):
    z = lambda *s: np.zeros(s, dtype)  # noqa: E731
    return k.StepArrays(z(b, n), z(b, p), z(b, n), z(b, n), z(b, p), z(b, p),
                        np.zeros(len(k.CONSTANTS)), z(b, n), z(b, n), z(b, n), z(b, p),
                        z(b, p), z(b, n))


def test_the_step_guard_checks_shapes_dtypes_layout_and_batch():
    spec = k.StepSpec(has_syn=True, scale_in=False, reset=1, trace=0, surrogate=1,
                      float64=False)
    a = _arrays()
    assert k.check_step_arrays(spec, a, "t") == (2, 4, 3)              # the good ones pass
    bad = {"short trace": a._replace(pre0=a.pre0[:, :-1]),
           "other batch": a._replace(v=np.zeros((3, 4), np.float32)),
           "dtype": a._replace(i0=a.i0.astype(np.float64)),
           "layout": a._replace(post=np.zeros((4, 2), np.float32).T),
           "consts": a._replace(consts=np.zeros(3)),
           "not an array": a._replace(z=torch.zeros(2, 4)),
           "1-d current": a._replace(current=np.zeros(4, np.float32))}
    for what, arrays in bad.items():
        with pytest.raises((ValueError, TypeError)):
            k.check_step_arrays(spec, arrays, "t")
    with pytest.raises(DtypeError):
        k.check_step_arrays(spec._replace(float64=True), a, "t")
