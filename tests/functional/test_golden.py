"""Golden trajectories that pin the conventions of docs/conventions.md.

Every expected number is worked out by hand in the comments (float64; inputs, decays and
thresholds are chosen as dyadic fractions where possible so the arithmetic is exact and the
comparisons can be bitwise). Notation per step t: ``i`` synaptic current, ``u`` membrane
before reset, ``z = H(u - theta)`` with ``H(0) = 0``, ``v`` membrane after reset (the state).
"""

import math

import pytest
import torch

import spikegrad as sg
from spikegrad.functional import (LIFParams, LIFState, LIParams, RecurrentParams,
                                  RecurrentState, li_seq, lif_seq, lif_step, lif_trace,
                                  recurrent_seq, scan_trace)

F64 = torch.float64


def seq(*values):
    """One neuron, one batch element: ``[T, 1, 1]``."""
    return torch.tensor(values, dtype=F64).reshape(-1, 1, 1)


def flat(t):
    return t.flatten().tolist()


def fast_sigmoid(beta):
    return sg.surrogate.get("fast_sigmoid", beta=beta)


# --- spike and reset ----------------------------------------------------------------------

def test_spike_and_reset_happen_in_the_step_that_crosses():
    p = LIFParams(decay_mem=0.5, threshold=1.0)
    zs, st = lif_trace(seq(1.5, 0.0, 0.75, 0.75), None, p)
    # t0: u = 0.5*0     + 1.5  = 1.5    > 1 -> z=1, v = 1.5 - 1  = 0.5   (spike AND reset at t0)
    # t1: u = 0.5*0.5   + 0    = 0.25        -> z=0, v = 0.25
    # t2: u = 0.5*0.25  + 0.75 = 0.875       -> z=0, v = 0.875
    # t3: u = 0.5*0.875 + 0.75 = 1.1875 > 1  -> z=1, v = 0.1875
    assert flat(zs) == [1.0, 0.0, 0.0, 1.0]
    assert flat(st.v) == [0.5, 0.25, 0.875, 0.1875]
    assert st.i is None


def test_threshold_tie_does_not_spike():
    v = torch.tensor([1.0, 1.0 + 2.0 ** -52], dtype=F64, requires_grad=True)
    z = sg.spike(v - 1.0, fast_sigmoid(10.0))
    # H(0) = 0; one ulp above the threshold fires
    assert flat(z) == [0.0, 1.0]
    z.sum().backward()
    # the backward still sees the tie: phi(0) = 1 / (1 + 10*0)^2 = 1
    assert v.grad[0].item() == 1.0

    p = LIFParams(decay_mem=1.0, threshold=1.0)   # IF
    zs, st = lif_trace(seq(0.5, 0.5, 0.5), None, p)
    # t0: u = 0.5; t1: u = 1.0 == theta -> no spike, v stays 1.0; t2: u = 1.5 -> z=1, v = 0.5
    assert flat(zs) == [0.0, 0.0, 1.0]
    assert flat(st.v) == [0.5, 1.0, 0.5]


# --- reset modes, driven above threshold (t0 input drives u to 2.5 = 2.5 * theta) ---------

def test_reset_subtract_leaves_v_minus_theta():
    p = LIFParams(decay_mem=0.5, threshold=1.0, reset="subtract")
    zs, st = lif_trace(seq(2.5, 0.5, 0.0), None, p)
    # t0: u = 2.5          -> z=1, v = 2.5 - 1 = 1.5  (still above theta: one spike per step)
    # t1: u = 0.75 + 0.5 = 1.25 -> z=1, v = 0.25
    # t2: u = 0.125        -> z=0, v = 0.125
    assert flat(zs) == [1.0, 1.0, 0.0]
    assert flat(st.v) == [1.5, 0.25, 0.125]


def test_reset_to_value_goes_to_v_reset():
    p = LIFParams(decay_mem=0.5, threshold=1.0, reset="to_value", v_reset=-0.5)
    zs, st = lif_trace(seq(2.5, 0.5, 0.0), None, p)
    # t0: u = 2.5 -> z=1, v = 2.5 - 1*(2.5 - (-0.5)) = -0.5
    # t1: u = 0.5*(-0.5) + 0.5 = 0.25 -> z=0, v = 0.25
    # t2: u = 0.125 -> z=0
    assert flat(zs) == [1.0, 0.0, 0.0]
    assert flat(st.v) == [-0.5, 0.25, 0.125]


def test_reset_none_keeps_the_membrane():
    p = LIFParams(decay_mem=0.5, threshold=1.0, reset="none")
    zs, st = lif_trace(seq(2.5, 0.5, 0.0), None, p)
    # t0: u = 2.5 -> z=1, v = 2.5
    # t1: u = 1.25 + 0.5 = 1.75 -> z=1
    # t2: u = 0.875 -> z=0
    assert flat(zs) == [1.0, 1.0, 0.0]
    assert flat(st.v) == [2.5, 1.75, 0.875]


# --- integration ----------------------------------------------------------------------------

def test_current_based_lif_updates_current_first_then_membrane():
    p = LIFParams(decay_mem=0.5, decay_syn=0.5, threshold=1.0)
    zs, st = lif_trace(seq(1.0, 1.0, 0.0), None, p)
    # t0: i = 0.5*0    + 1 = 1.0;  u = 0.5*0   + 1.0  = 1.0  (tie) -> z=0, v = 1.0
    # t1: i = 0.5*1    + 1 = 1.5;  u = 0.5*1.0 + 1.5  = 2.0        -> z=1, v = 1.0
    # t2: i = 0.5*1.5  + 0 = 0.75; u = 0.5*1.0 + 0.75 = 1.25       -> z=1, v = 0.25
    assert flat(zs) == [0.0, 1.0, 1.0]
    assert flat(st.i) == [1.0, 1.5, 0.75]
    assert flat(st.v) == [1.0, 1.0, 0.25]


def test_scale_input_multiplies_the_input_by_one_minus_decay():
    p = LIFParams(decay_mem=0.75, threshold=1.5, scale_input=True)
    zs, st = lif_trace(seq(4.0, 4.0, 4.0), None, p)
    # g = 1 - 0.75 = 0.25, so each step adds 0.25*4 = 1
    # t0: u = 0             + 1 = 1.0            -> z=0
    # t1: u = 0.75*1.0      + 1 = 1.75   > 1.5   -> z=1, v = 0.25
    # t2: u = 0.75*0.25     + 1 = 1.1875         -> z=0
    assert flat(zs) == [0.0, 1.0, 0.0]
    assert flat(st.v) == [1.0, 0.25, 1.1875]

    # with a synaptic current the scale applies to i (after the synaptic filter)
    p = LIFParams(decay_mem=0.5, decay_syn=0.5, threshold=10.0, scale_input=True)
    _, st = lif_trace(seq(2.0, 0.0), None, p)
    # t0: i = 2;          u = 0.5*2 = 1.0
    # t1: i = 0.5*2 = 1;  u = 0.5*1.0 + 0.5*1 = 1.0
    assert flat(st.i) == [2.0, 1.0]
    assert flat(st.v) == [1.0, 1.0]

    # LI with scale_input has unit DC gain: constant 1 -> 0.5, 0.75, 0.875 -> 1
    vs, _ = li_seq(seq(1.0, 1.0, 1.0), None, LIParams(decay_mem=0.5, scale_input=True))
    assert flat(vs) == [0.5, 0.75, 0.875]


def test_if_is_lif_without_leak():
    if_ = sg.nn.IF(1, threshold=1.0).double()
    # tau_mem = inf -> a = exp(-dt/inf) = 1
    assert if_.decay_mem().item() == 1.0
    zs, st = if_(seq(0.75, 0.75, 0.75, 0.75))
    # u: 0.75 -> 1.5 (z, v=0.5) -> 1.25 (z, v=0.25) -> 1.0 (tie, no spike)
    assert flat(zs) == [0.0, 1.0, 1.0, 0.0]
    assert flat(st.v) == [1.0]
    # the functional form with a_mem = 1 gives the same
    zs2, st2 = lif_seq(seq(0.75, 0.75, 0.75, 0.75), None, LIFParams(decay_mem=1.0))
    assert torch.equal(zs2, zs) and torch.equal(st2.v, st.v)


def test_li_is_a_low_pass_filter():
    vs, st = li_seq(seq(1.0, 0.0, 2.0), None, LIParams(decay_mem=0.5))
    # v: 1 -> 0.5*1 + 0 = 0.5 -> 0.5*0.5 + 2 = 2.25
    assert flat(vs) == [1.0, 0.5, 2.25]
    assert flat(st.v) == [2.25]
    vs, st = li_seq(seq(1.0, 0.0, 2.0), None, LIParams(decay_mem=0.5, decay_syn=0.5))
    # i: 1, 0.5, 0.25 + 2 = 2.25;  v: 1, 0.5 + 0.5 = 1.0, 0.5 + 2.25 = 2.75
    assert flat(vs) == [1.0, 1.0, 2.75]
    assert flat(st.i) == [2.25]


def test_initial_state_none_means_zeros():
    torch.manual_seed(0)
    xs = torch.rand(6, 2, 3, dtype=F64) * 1.5
    p = LIFParams(decay_mem=0.75, decay_syn=0.5)
    z0 = torch.zeros(2, 3, dtype=F64)
    za, sa = lif_seq(xs, None, p)
    zb, sb = lif_seq(xs, LIFState(z0, z0.clone()), p)
    assert torch.equal(za, zb) and torch.equal(sa.v, sb.v) and torch.equal(sa.i, sb.i)


# --- gradients of the reset -----------------------------------------------------------------

# Two steps, a = 0.5, theta = 1, x = (1.5, 0.25), fast_sigmoid beta = 1: phi(d) = 1/(1+|d|)^2.
#   t0: u0 = 1.5 -> z0 = 1;   t1: u1 = 0.5*v0 + 0.25
# subtract: v0 = 0.5, u1 = 0.5, z1 = 0, v1 = 0.5;  phi(u0-1) = phi(0.5) = 4/9, phi(u1-1) = 4/9
#   dv/du = 1 (detached) | 1 - theta*phi = 5/9 (not detached)
#   L = v1: dL/dx1 = dv1/du1;  dL/dx0 = dv1/du1 * a * dv0/du0
#       detached: (0.5, 1)          not: (5/9 * 0.5 * 5/9, 5/9) = (25/162, 5/9)
#   L = z1: dL/dx1 = phi(u1-1) = 4/9;  dL/dx0 = 4/9 * a * dv0/du0
#       detached: (2/9, 4/9)        not: (4/9 * 0.5 * 5/9, 4/9) = (10/81, 4/9)
# to_value (v_reset = 0): v = u - z*(u - 0)
#   v0 = 0, u1 = 0.25, z1 = 0, v1 = 0.25; phi(u0-1) = 4/9, phi(u1-1) = phi(-0.75) = 16/49
#   dv/du = 1 - z (detached) | 1 - z - phi*(u - 0) (not detached)
#       dv0/du0: 0 | -4/9*1.5 = -2/3;   dv1/du1: 1 | 1 - 16/49*0.25 = 45/49
#   L = v1: detached: (0.5*0*1, 1) = (0, 1);  not: (45/49 * 0.5 * -2/3, 45/49) = (-15/49, 45/49)
@pytest.mark.parametrize("reset, loss, detach, expected", [
    ("subtract", "v", True, (0.5, 1.0)),
    ("subtract", "v", False, (25 / 162, 5 / 9)),
    ("subtract", "z", True, (2 / 9, 4 / 9)),
    ("subtract", "z", False, (10 / 81, 4 / 9)),
    ("to_value", "v", True, (0.0, 1.0)),
    ("to_value", "v", False, (-15 / 49, 45 / 49)),
])
def test_detach_reset_gradient_matches_hand_derivation(reset, loss, detach, expected):
    xs = seq(1.5, 0.25).requires_grad_(True)
    p = LIFParams(decay_mem=0.5, threshold=1.0, reset=reset, v_reset=0.0,
                  detach_reset=detach, surrogate=fast_sigmoid(1.0))
    zs, st = lif_seq(xs, None, p)
    (st.v if loss == "v" else zs[-1]).sum().backward()
    got = flat(xs.grad)
    assert got == pytest.approx(list(expected), rel=1e-14, abs=1e-15)


def test_detach_reset_is_true_by_default():
    assert LIFParams().detach_reset is True
    assert sg.nn.LIF(1).detach_reset is True


# --- recurrence -----------------------------------------------------------------------------

# Two IF neurons (theta = 1, subtract); W[j, k] is the weight from k onto j:
#   W = [[0.75, 0], [2, 0]]   (0.75 is the autapse of neuron 0; neuron 0 drives neuron 1)
# x = [[1.5, 0], [0, 0], [0, 0]]; input at t is x_t + W z_{t-1}, z_{-1} = 0.
# autapses=True:
#   t0: in = (1.5, 0);              u = (1.5, 0)          z = (1, 0)  v = (0.5, 0)
#   t1: in = W(1,0) = (0.75, 2);    u = (1.25, 2)         z = (1, 1)  v = (0.25, 1)
#   t2: in = W(1,1) = (0.75, 2);    u = (1.0, 3)          z = (0, 1)  v = (1.0, 2)   [tie]
# autapses=False (diagonal masked: W = [[0, 0], [2, 0]]):
#   t0: same                                              z = (1, 0)  v = (0.5, 0)
#   t1: in = (0, 2);                u = (0.5, 2)          z = (0, 1)  v = (0.5, 1)
#   t2: in = W(0,1) = (0, 0);       u = (0.5, 1.0)        z = (0, 0)  v = (0.5, 1)   [tie]
@pytest.mark.parametrize("autapses, z_expected, v_expected", [
    (True, [[1, 0], [1, 1], [0, 1]], [1.0, 2.0]),
    (False, [[1, 0], [0, 1], [0, 0]], [0.5, 1.0]),
])
def test_recurrent_feeds_output_back_one_step_later(autapses, z_expected, v_expected):
    rec = sg.nn.Recurrent(sg.nn.IF(2, threshold=1.0), autapses=autapses).double()
    with torch.no_grad():
        rec.weight.copy_(torch.tensor([[0.75, 0.0], [2.0, 0.0]]))
    xs = torch.tensor([[1.5, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=F64).unsqueeze(1)
    zs, st = rec(xs)
    assert zs[:, 0].tolist() == z_expected
    assert st.inner.v[0].tolist() == v_expected
    assert torch.equal(st.y, zs[-1])   # the state carries the last output for the next step
    # the diagonal is masked, not zeroed: the parameter keeps its value
    assert rec.weight[0, 0].item() == 0.75
    assert rec.recurrent_weight()[0, 0].item() == (0.75 if autapses else 0.0)


def test_recurrent_module_equals_functional():
    torch.manual_seed(1)
    rec = sg.nn.Recurrent(sg.nn.LIF(4, tau_mem=5e-3, dt=1e-3, tau_syn=3e-3),
                          autapses=False).double()
    xs = torch.rand(8, 2, 4, dtype=F64) * 2.0
    zs, st = rec(xs)
    lif = rec.neuron
    p = RecurrentParams(rec.recurrent_weight(), sg.nn.LIF.step, lif.params())
    s0 = RecurrentState(lif.initial_state(xs[0]), torch.zeros(2, 4, dtype=F64))
    zs2, st2 = recurrent_seq(xs, s0, p)
    assert zs.sum() > 0
    assert torch.equal(zs, zs2)
    assert torch.equal(st.inner.v, st2.inner.v) and torch.equal(st.inner.i, st2.inner.i)


# --- module == functional; step == seq; trace == stepping --------------------------------

def _rand_xs(seed, shape=(12, 3, 4), scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=F64) * scale


def test_module_equals_functional_with_the_documented_parameter_maps():
    tau_mem, tau_syn, dt, theta = 10e-3, 4e-3, 1e-3, 0.7
    lif = sg.nn.LIF(4, tau_mem=tau_mem, tau_syn=tau_syn, dt=dt, threshold=theta,
                    reset="to_value", v_reset=-0.2, detach_reset=False, surrogate="atan",
                    beta=3.0, learn_tau=True, learn_threshold=True).double()
    # trainable decay a = sigmoid(rho), rho initialised at logit(exp(-dt/tau));
    # trainable threshold theta = softplus(rho), rho initialised at softplus^-1(theta)
    a_mem = torch.sigmoid(lif.decay_mem.rho)
    a_syn = torch.sigmoid(lif.decay_syn.rho)
    th = torch.nn.functional.softplus(lif.threshold.rho)
    assert torch.allclose(a_mem, torch.full((4,), math.exp(-dt / tau_mem), dtype=F64),
                          rtol=0, atol=1e-6)    # atol: rho is stored in float32
    assert torch.allclose(a_syn, torch.full((4,), math.exp(-dt / tau_syn), dtype=F64),
                          rtol=0, atol=1e-6)
    assert torch.allclose(th, torch.full((4,), theta, dtype=F64), rtol=0, atol=1e-6)
    p = LIFParams(decay_mem=a_mem, decay_syn=a_syn, threshold=th, v_reset=-0.2,
                  reset="to_value", detach_reset=False,
                  surrogate=sg.surrogate.get("atan", beta=3.0))
    xs = _rand_xs(2)
    zs, st = lif(xs)
    zs2, st2 = lif_seq(xs, None, p)
    assert 0 < zs.sum() < zs.numel()
    assert torch.equal(zs, zs2) and torch.equal(st.v, st2.v) and torch.equal(st.i, st2.i)

    li = sg.nn.LI(4, tau_mem=tau_mem, dt=dt, scale_input=True).double()
    vs, _ = li(xs)
    vs2, _ = li_seq(xs, None, LIParams(decay_mem=li.decay_mem(), scale_input=True))
    assert torch.equal(vs, vs2)


@pytest.mark.parametrize("reset", ["subtract", "to_value", "none"])
def test_lif_step_loop_equals_lif_seq_including_gradients(reset):
    p = LIFParams(decay_mem=0.8, decay_syn=0.6, threshold=1.0, reset=reset, v_reset=0.1,
                  detach_reset=False)
    xs = _rand_xs(3).requires_grad_(True)
    zs, st = lif_seq(xs, None, p, backend="reference")  # the definition; fused: tests/kernels
    ga, = torch.autograd.grad((zs * 1.3).sum() + st.v.sum(), xs)

    s, outs = None, []
    for x in xs.unbind(0):
        z, s = lif_step(x, s, p)
        outs.append(z)
    zs2 = torch.stack(outs)
    gb, = torch.autograd.grad((zs2 * 1.3).sum() + s.v.sum(), xs)
    assert zs.sum() > 0
    assert torch.equal(zs, zs2) and torch.equal(st.v, s.v) and torch.equal(st.i, s.i)
    assert torch.equal(ga, gb)


def test_lif_trace_states_equal_stepping():
    p = LIFParams(decay_mem=0.9, decay_syn=0.5, threshold=1.0)
    xs = _rand_xs(4)
    zs, tr = lif_trace(xs, None, p)
    s = None
    for t, x in enumerate(xs.unbind(0)):
        z, s = lif_step(x, s, p)
        assert torch.equal(zs[t], z)
        assert torch.equal(tr.v[t], s.v) and torch.equal(tr.i[t], s.i)
    zs2, final = lif_seq(xs, None, p)
    assert torch.equal(zs, zs2) and torch.equal(tr.v[-1], final.v)
    # subtract: adding z*theta back gives the pre-reset membrane that was compared to theta
    u = tr.v + zs * 1.0
    assert torch.equal((u > 1.0).to(F64), zs)


def test_scan_trace_of_recurrent_step_exposes_inner_states():
    # the generic trace works for any step, e.g. to read membranes inside a Recurrent
    w = torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=F64)
    p = RecurrentParams(w, sg.nn.LIF.step, LIFParams(decay_mem=1.0))
    xs = torch.tensor([[1.25, 0.0], [0.0, 0.25]], dtype=F64).unsqueeze(1)
    s0 = RecurrentState(LIFState(torch.zeros(1, 2, dtype=F64)), torch.zeros(1, 2, dtype=F64))
    zs, tr = scan_trace(sg.functional.recurrent_step, xs, s0, p)
    # t0: u = (1.25, 0) -> z = (1, 0), v = (0.25, 0)
    # t1: in = (0, 0.25) + W(1, 0) = (0, 0.75); u = (0.25, 0.75) -> no spike
    assert zs[:, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert tr.inner.v[:, 0].tolist() == [[0.25, 0.0], [0.25, 0.75]]


# --- refractoriness, adaptation and the trainable reset target (issue 7) -------------------

from spikegrad.functional import ALIFParams, RefractoryParams, alif_trace  # noqa: E402


def _if_refractory(**refr):
    # IF (a_mem = 1), theta = 1, no adaptation: the refractory options alone
    return ALIFParams(LIFParams(decay_mem=1.0, threshold=1.0), decay_adapt=0.5, beta_adapt=0.0,
                      refractory=RefractoryParams(**refr))


def test_absolute_refractory_clamps_membrane_and_blocks_spikes():
    zs, st = alif_trace(seq(*[0.75] * 8), None, _if_refractory(n_ref=2))
    # t0: u = 0.75                         v = 0.75
    # t1: u = 1.5  > 1 -> z=1, v = 0.5,    ref = 2      (spike and reset in the same step)
    # t2: refractory: u = v = 0.5 (input 0.75 ignored, no leak), ref = 1
    # t3: refractory: u = v = 0.5, ref = 0
    # t4: free: u = 0.5 + 0.75 = 1.25 -> z=1, v = 0.25, ref = 2
    # t5, t6: clamped at 0.25; t7: u = 1.0 == theta -> no spike (tie), v = 1.0
    assert flat(zs) == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert flat(st.v) == [0.75, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 1.0]
    assert flat(st.ref) == [0.0, 2.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0]
    assert st.q is None


def test_synaptic_current_keeps_integrating_while_membrane_is_clamped():
    p = ALIFParams(LIFParams(decay_mem=1.0, decay_syn=0.5, threshold=1.0), beta_adapt=0.0,
                   refractory=RefractoryParams(n_ref=1))
    zs, st = alif_trace(seq(2.0, 0.0, 0.0), None, p)
    # t0: i = 2, u = 2 -> z=1, v = 1, ref = 1
    # t1: i = 1 (the synapse is not refractory), membrane clamped: v = 1, no spike
    # t2: i = 0.5, u = 1 + 0.5 = 1.5 -> z=1, v = 0.5
    assert flat(zs) == [1.0, 0.0, 1.0]
    assert flat(st.i) == [2.0, 1.0, 0.5]
    assert flat(st.v) == [1.0, 1.0, 0.5]


def test_relative_refractory_current_pushes_membrane_down():
    zs, st = alif_trace(seq(*[0.75] * 5), None, _if_refractory(decay=0.5, strength=0.25))
    # q_t = 0.5 q_{t-1} + z_t;  u_t = v_{t-1} + 0.75 - 0.25 q_{t-1}
    # t0: u = 0.75                             q = 0
    # t1: u = 1.5 -> z=1, v = 0.5,             q = 1
    # t2: u = 0.5 + 0.75 - 0.25 = 1.0 (tie)    q = 0.5      v = 1.0
    # t3: u = 1.0 + 0.75 - 0.125 = 1.625 -> z, v = 0.625, q = 0.25 + 1 = 1.25
    # t4: u = 0.625 + 0.75 - 0.3125 = 1.0625 -> z, v = 0.0625, q = 1.625
    assert flat(zs) == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert flat(st.v) == [0.75, 0.5, 1.0, 0.625, 0.0625]
    assert flat(st.q) == [0.0, 1.0, 0.5, 1.25, 1.625]


def test_alif_threshold_uses_previous_adaptation_and_reset_subtracts_baseline():
    p = ALIFParams(LIFParams(decay_mem=1.0, threshold=1.0), decay_adapt=0.5, beta_adapt=1.0)
    zs, st = alif_trace(seq(*[0.75] * 5), None, p)
    # A_t = 1 + a_{t-1};  a_t = 0.5 a_{t-1} + z_t;  subtract reset removes theta = 1 (baseline)
    # t0: u = 0.75, A = 1                        a = 0
    # t1: u = 1.5 > A = 1 -> z=1, v = 0.5        a = 1
    # t2: u = 1.25 < A = 2                       a = 0.5
    # t3: u = 2.0 > A = 1.5 -> z=1, v = 1.0      a = 1.25
    # t4: u = 1.75 < A = 2.25                    a = 0.625
    assert flat(zs) == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert flat(st.v) == [0.75, 0.5, 1.25, 1.0, 1.75]
    assert flat(st.a) == [0.0, 1.0, 0.5, 1.25, 0.625]


def test_reset_to_value_plus_per_neuron_offset():
    vr = torch.tensor(0.25, dtype=F64)
    r = torch.tensor([0.0, -0.25, 0.5], dtype=F64)
    p = LIFParams(decay_mem=1.0, threshold=1.0, reset="to_value", v_reset=vr + r)
    xs = torch.full((2, 1, 3), 1.25, dtype=F64)
    zs, st = lif_trace(xs, None, p)
    # t0: u = 1.25 -> z=1 everywhere, v = 0.25 + r = [0.25, 0.0, 0.75]
    # t1: u = v + 1.25 = [1.5, 1.25, 2.0] -> z=1, v = [0.25, 0.0, 0.75] again
    assert zs.flatten().tolist() == [1.0] * 6
    assert st.v[0, 0].tolist() == [0.25, 0.0, 0.75]
    assert st.v[1, 0].tolist() == [0.25, 0.0, 0.75]
