"""The spiking max-pool gate: a reference loop over time, chunking, and the winner's spikes."""

import pytest
import torch

from spikegrad.convert import GateState, SpikingMaxPool1d, SpikingMaxPool2d


def _windows(x, dims, k, s, p):
    """``x [N, C, *spatial]`` -> windows ``[N, C, n_windows, window]`` (padding: -inf)."""
    if dims == 1:
        x = torch.nn.functional.pad(x, (p, p), value=-float("inf"))
        return x.unfold(2, k, s)                                   # [N, C, L_out, k]
    x = torch.nn.functional.pad(x, (p, p, p, p), value=-float("inf"))
    w = x.unfold(2, k, s).unfold(3, k, s)                          # [N, C, H_out, W_out, k, k]
    return w.flatten(4).flatten(2, 3)


def _reference(xs, dims, k, s, p):
    """The gate written out: a loop over time, explicit cumulative counts, and in each window
    the first index of the largest count."""
    counts = torch.zeros_like(xs[0])
    out_shape = [(n + 2 * p - k) // s + 1 for n in xs.shape[3:]]
    out = []
    for x in xs:
        counts = counts + x
        c, v = _windows(counts, dims, k, s, p), _windows(x, dims, k, s, p)
        first = (c == c.max(-1, keepdim=True).values).double().argmax(-1, keepdim=True)
        out.append(v.gather(-1, first).view(*x.shape[:2], *out_shape))
    return torch.stack(out)


CASES = [(1, 2, 2, 0), (1, 3, 2, 1), (2, 2, 2, 0), (2, 3, 2, 1), (2, 3, 1, 0)]


@pytest.mark.parametrize("dims, k, s, p", CASES)
def test_gate_equals_the_reference_loop(dims, k, s, p):
    torch.manual_seed(k * 10 + s + p)
    spatial = (9,) if dims == 1 else (7, 6)
    # low rates over few steps: many ties, which go to the first unit of the window
    xs = (torch.rand(12, 3, 2, *spatial, dtype=torch.float64) < 0.3).double()
    pool = (SpikingMaxPool1d if dims == 1 else SpikingMaxPool2d)(k, s, p)
    ys, state = pool(xs)
    assert torch.equal(ys, _reference(xs, dims, k, s, p))
    assert torch.equal(state.counts, xs.sum(0))
    assert set(ys.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("dims", [1, 2])
def test_chunks_with_the_state_equal_the_whole_sequence(dims):
    torch.manual_seed(dims)
    spatial = (8,) if dims == 1 else (6, 6)
    xs = (torch.rand(20, 2, 3, *spatial) < 0.4).float()
    pool = (SpikingMaxPool1d if dims == 1 else SpikingMaxPool2d)(2)
    whole, s_whole = pool(xs)
    parts, state = [], None
    for chunk in xs.split([7, 1, 12]):
        ys, state = pool(chunk, state)
        parts.append(ys)
    assert torch.equal(torch.cat(parts), whole) and torch.equal(state.counts, s_whole.counts)


def test_the_unit_that_always_leads_passes_exactly_its_spikes():
    torch.manual_seed(3)
    T, B, C = 32, 4, 2
    t = torch.arange(T).view(T, 1, 1, 1, 1, 1)
    # each 2x2 window's 4 units: the leader fires at every step but those with t = 3 mod 4,
    # the others only at some of those, so their counts stay below the leader's
    slots = torch.where(t % 4 == 3, (torch.rand(T, B, C, 3, 3, 4) < 0.5).float(), 0.0)
    lead = (t[..., 0] % 4 != 3).float().expand(T, B, C, 3, 3)
    where = torch.randint(0, 4, (B, C, 3, 3, 1)).expand(T, B, C, 3, 3, 1)
    slots.scatter_(-1, where, lead.unsqueeze(-1))
    counts = slots.cumsum(0)
    others = counts.scatter(-1, where, -1.0)
    assert bool((others.amax(-1) < counts.gather(-1, where)[..., 0]).all())  # precondition
    # window (a, b), slot (i, j) -> pixel (2a + i, 2b + j)
    xs = slots.view(T, B, C, 3, 3, 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(T, B, C, 6, 6)
    ys, _ = SpikingMaxPool2d(2)(xs)
    assert torch.equal(ys, lead)
    # a max pool step by step would also pass the others' spikes
    assert not torch.equal(torch.nn.functional.max_pool2d(xs.flatten(0, 1), 2),
                           lead.flatten(0, 1))


def test_constant_analog_input_gives_max_pooling_at_every_step():
    torch.manual_seed(4)
    x = torch.randn(3, 2, 6, 6)
    ys, _ = SpikingMaxPool2d(2)(x.expand(5, *x.shape))
    want = torch.nn.functional.max_pool2d(x, 2)
    assert all(torch.equal(y, want) for y in ys)


def test_gradient_flows_to_the_gated_inputs_only():
    xs = torch.tensor([[1., 0.], [0., 1.], [0., 1.]]).view(3, 1, 1, 2).requires_grad_()
    ys, _ = SpikingMaxPool1d(2)(xs)
    # counts (1,0) (1,1) (1,2): winners 0, 0 (tie, first index), 1
    assert ys.flatten().tolist() == [1.0, 0.0, 1.0]
    ys.sum().backward()
    assert xs.grad.view(3, 2).tolist() == [[1, 0], [1, 0], [0, 1]]


@pytest.mark.parametrize("make, exc, match", [
    (lambda: SpikingMaxPool2d(0), ValueError, "kernel_size must be an int >= 1"),
    (lambda: SpikingMaxPool2d(2, stride=0), ValueError, "stride"),
    (lambda: SpikingMaxPool2d(2, padding=2), ValueError, "padding"),
    (lambda: SpikingMaxPool1d((2, 2)), ValueError, "tuple of 1 ints"),
    (lambda: SpikingMaxPool2d(2.5), TypeError, "kernel_size"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_inputs_and_states():
    pool = SpikingMaxPool2d(2)
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        pool(torch.rand(2, 3, 4, 4))
    with pytest.raises(ValueError, match="state.counts has shape"):
        pool(torch.rand(2, 3, 1, 4, 4), GateState(torch.zeros(2, 1, 4, 4)))
    with pytest.raises(TypeError, match="GateState"):
        pool(torch.rand(2, 3, 1, 4, 4), torch.zeros(3, 1, 4, 4))
