"""QCFS: the forward formula, its straight-through gradients, and the exact conversion at
T = levels (Bu et al. 2022, Theorem 2)."""

import math

import pytest
import torch

import spikegrad as sg
from spikegrad.convert import QCFS, convert, repeat_input

from numerics import bound

F64 = torch.float64


def _formula(x, lam, L):
    return lam * torch.clamp(torch.floor(x * L / lam + 0.5) / L, 0, 1)


@pytest.mark.parametrize("levels, lam", [(1, 1.0), (4, 2.5), (8, 8.0), (16, 0.3)])
def test_forward_equals_the_formula(levels, lam):
    torch.manual_seed(levels)
    x = (torch.rand(500, dtype=F64) * 1.6 - 0.3) * lam
    act = QCFS(levels, lam).double()
    y = act(x)
    lam = act.threshold.detach()  # lambda as stored (rounded to float32 at construction)
    assert torch.equal(y, _formula(x, lam, levels))
    # L + 1 output values, 0 .. lambda
    assert set((y / lam * levels).round().tolist()) <= set(range(levels + 1))


def test_gradients_are_the_straight_through_closed_form():
    torch.manual_seed(0)
    L, lam = 4, 2.0
    act = QCFS(L, lam).double()
    x = ((torch.rand(400, dtype=F64) * 1.8 - 0.4) * lam).requires_grad_()
    act(x).sum().backward()
    q = torch.floor(x.detach() * L / lam + 0.5) / L
    inside = (q >= 0) & (q <= 1)
    assert torch.equal(x.grad, inside.to(F64))
    dlam = torch.where(inside, q - x.detach() / lam, (q > 1).to(F64))
    # a sum of 400 terms of size <= 1, each a handful of roundings
    assert abs(act.threshold.grad.item() - dlam.sum().item()) <= bound(F64, 400 + 8, 400.0)
    assert act.threshold.requires_grad and act.threshold.dim() == 0


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(levels=0), ValueError, "levels"), (dict(levels=2.5), TypeError, "levels"),
    (dict(levels=True), TypeError, "levels"), (dict(threshold=0.0), ValueError, "threshold"),
    (dict(threshold=-1.0), ValueError, "threshold"),
    (dict(threshold=math.inf), ValueError, "threshold"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        QCFS(**kwargs)


@pytest.mark.parametrize("levels", [1, 4, 8])
def test_one_layer_with_constant_input_is_exact_at_T_equal_levels(levels):
    """An IF neuron starting at half threshold, driven by a constant z = x / lambda for
    T = L steps, fires floor(L z + 1/2) times (clipped to [0, L]): the QCFS output."""
    torch.manual_seed(levels)
    n_in, n = 6, 20
    lam = 1.7
    ann = torch.nn.Sequential(torch.nn.Linear(n_in, n), QCFS(levels, lam),
                              torch.nn.Linear(n, n, bias=False)).double()
    with torch.no_grad():
        ann[0].weight.mul_(3.0)
        ann[2].weight.copy_(torch.eye(n))
    x = torch.rand(40, n_in, dtype=F64)
    lam = ann[1].threshold.item()
    with torch.no_grad():
        u = ann[0](x) * levels / lam + 0.5
        y = ann(x)
    # no input lies within rounding of a quantisation step (a tie, where H(0) = 0 and floor
    # would round differently): the equality below is then exact up to float precision
    assert (u - u.round()).abs().min() > 1e-9
    assert 0 < (y > 0).double().mean() < 1 and (y == lam).any()   # both clips are exercised
    snn = convert(ann, x)
    assert snn[1].v_init == 0.5
    vs, _ = snn(repeat_input(x, levels))
    out = vs[-1] / levels
    # roundings: L accumulated steps of sums over n_in and n inputs
    torch.testing.assert_close(out, y, rtol=0, atol=bound(F64, levels * (n_in + n + 8), lam * 4))


def test_a_trained_qcfs_net_converts_closely_at_small_T():
    torch.manual_seed(1)
    L = 8
    x = torch.randn(256, 8, dtype=F64)
    y = (x[:, :4].sum(1) > 0).long() + 2 * (x[:, 4:].sum(1) > 0).long()
    ann = torch.nn.Sequential(torch.nn.Linear(8, 32), QCFS(L, 2.0), torch.nn.Linear(32, 32),
                              QCFS(L, 2.0), torch.nn.Linear(32, 4)).double()
    opt = torch.optim.Adam(ann.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(ann(x), y).backward()
        opt.step()
    with torch.no_grad():
        logits = ann(x)
    acc_ann = (logits.argmax(1) == y).double().mean().item()
    assert acc_ann > 0.9
    snn = convert(ann, x)
    assert [m.v_init for m in snn.layers if isinstance(m, sg.nn.IF)] == [0.5, 0.5]
    with torch.no_grad():
        vs, _ = snn(repeat_input(x, 4 * L))
    for T in (L, 2 * L, 4 * L):
        acc = (vs[T - 1].argmax(1) == y).double().mean().item()
        assert acc >= acc_ann - 0.05, (T, acc, acc_ann)
    # the output approaches the logits already at a few times L
    err = (vs[4 * L - 1] / (4 * L) - logits).abs().mean().item()
    assert err < 0.1 * logits.abs().mean().item()
