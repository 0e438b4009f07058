"""Straight-through Gumbel-softmax: one-hot forward, relaxed backward, torch parity."""

import pytest
import torch
import torch.nn.functional as F

from spikegrad.proxy import gumbel_noise, gumbel_softmax_st

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _logits(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=_gen(seed), dtype=dtype) * 2.0


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_hard_forward_is_exactly_one_hot(dim):
    logits = _logits((6, 7, 5))
    y = gumbel_softmax_st(logits, tau=0.5, generator=_gen(1), dim=dim)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.sum(dim), torch.ones_like(y.sum(dim)))      # exactly one 1


def test_hard_sample_is_the_argmax_of_logits_plus_noise():
    logits = _logits((50, 6))
    y = gumbel_softmax_st(logits, generator=_gen(2))
    g = gumbel_noise(logits, _gen(2))                                 # the same draw
    assert torch.equal(y.argmax(-1), (logits + g).argmax(-1))


def test_masked_category_is_never_drawn():
    logits = _logits((400, 4))
    logits[:, 2] = -float("inf")
    y = gumbel_softmax_st(logits, generator=_gen(3))
    assert y[:, 2].sum().item() == 0.0 and not y.isnan().any()


def test_soft_sample_is_the_relaxation_with_that_noise():
    logits = _logits((8, 5), dtype=F64)
    y = gumbel_softmax_st(logits, tau=0.3, hard=False, generator=_gen(4))
    g = gumbel_noise(logits, _gen(4))
    assert torch.equal(y, ((logits + g) / 0.3).softmax(-1))


@pytest.mark.parametrize("hard", [False, True])
def test_equals_torch_gumbel_softmax_for_the_same_noise(hard):
    # torch draws from the global generator; seeded alike, both draw the same noise
    logits = _logits((16, 9)).requires_grad_()
    w = torch.randn(16, 9, generator=_gen(5))
    torch.manual_seed(123)
    y_torch = F.gumbel_softmax(logits, tau=0.7, hard=hard)
    (g_torch,) = torch.autograd.grad((w * y_torch).sum(), logits)
    y = gumbel_softmax_st(logits, tau=0.7, hard=hard, generator=_gen(123))
    (g,) = torch.autograd.grad((w * y).sum(), logits)
    if hard:
        # torch's forward is y_hard - y_soft + y_soft: 1 may round to 1 +- one ulp; ours is exact
        torch.testing.assert_close(y, y_torch, rtol=0.0, atol=torch.finfo(y.dtype).eps)
    else:
        assert torch.equal(y, y_torch)
    assert torch.equal(g, g_torch)


def test_soft_gradient_matches_central_differences_in_float64():
    tau = 0.7
    logits = _logits((3, 5), seed=6, dtype=F64)
    w = torch.randn(3, 5, generator=_gen(7), dtype=F64)

    def f(lg):   # a smooth function of the relaxed sample; reseeding fixes the noise
        y = gumbel_softmax_st(lg, tau=tau, hard=False, generator=_gen(8))
        return (torch.sin(3.0 * y) * w).sum()

    x = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(f(x), x)
    h = 1e-5
    fd = torch.empty_like(logits)
    for i in range(logits.numel()):
        e = torch.zeros(logits.numel(), dtype=F64)
        e[i] = h
        e = e.view_as(logits)
        fd.view(-1)[i] = (f(logits + e) - f(logits - e)) / (2 * h)
    # error of a central difference: truncation h^2/6 |f'''| <~ 3e-9 (f''' of order
    # (3/tau)^3 |w|), rounding eps |f| / h ~ 1e-10; 1e-7 is 30 times that bound, while a wrong
    # tau, noise or Jacobian errs by O(|grad|) ~ 0.1-1
    torch.testing.assert_close(grad, fd, rtol=0.0, atol=1e-7)


def test_hard_backward_is_the_soft_relaxations_gradient():
    """Straight through: d f(y_hard)/d logits = J_soft^T f'(y_hard)."""
    logits = _logits((10, 4), seed=9, dtype=F64).requires_grad_()
    y_hard = gumbel_softmax_st(logits, tau=0.5, hard=True, generator=_gen(10))
    y_soft = gumbel_softmax_st(logits, tau=0.5, hard=False, generator=_gen(10))
    w = torch.randn(10, 4, generator=_gen(11), dtype=F64)
    (g_linear_hard,) = torch.autograd.grad((w * y_hard).sum(), logits)
    (g_linear_soft,) = torch.autograd.grad((w * y_soft).sum(), logits, retain_graph=True)
    assert torch.equal(g_linear_hard, g_linear_soft)

    y_hard = gumbel_softmax_st(logits, tau=0.5, hard=True, generator=_gen(10))
    (g_hard,) = torch.autograd.grad((w * y_hard ** 2).sum(), logits)
    (g_st,) = torch.autograd.grad(y_soft, logits, grad_outputs=2 * w * y_hard.detach())
    assert torch.equal(g_hard, g_st)


def test_sample_frequencies_follow_the_softmax():
    n, p = 20000, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    y = gumbel_softmax_st(p.log().expand(n, 4), generator=_gen(12))
    freq = y.mean(0)
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 6 * se).all(), (freq, p)


def test_reproducible_and_leaves_the_global_generator_alone():
    logits = _logits((20, 6))
    state = torch.get_rng_state()
    a = gumbel_softmax_st(logits, generator=_gen(13))
    b = gumbel_softmax_st(logits, generator=_gen(13))
    c = gumbel_softmax_st(logits, generator=_gen(14))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_noise_is_finite_even_where_the_exponential_draw_is_tiny():
    g = gumbel_noise(torch.zeros(100000), _gen(15))
    assert torch.isfinite(g).all()
    # Gumbel mean is the Euler-Mascheroni constant, sd pi / sqrt(6): 6 SE = 0.024
    assert abs(g.double().mean().item() - 0.5772156649) < 6 * 1.2825498 / 100000 ** 0.5


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(tau=0.0), ValueError, "tau"),
    (dict(tau=float("nan")), ValueError, "tau"),
    (dict(tau="1"), TypeError, "tau"),
    (dict(hard=1), TypeError, "hard"),
    (dict(dim=2), ValueError, "dim"),
    (dict(generator=0), TypeError, "generator"),
])
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        gumbel_softmax_st(torch.zeros(2, 3), **kwargs)


def test_bad_logits_are_refused():
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax_st(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        gumbel_softmax_st(torch.tensor(0.0))
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax_st([0.0, 1.0])
