"""REINFORCE: unbiased on categoricals with a closed-form gradient; baselines cut variance."""

import pytest
import torch

from spikegrad.proxy import LearnedBaseline, MovingAverageBaseline, reinforce_loss

F64 = torch.float64
N = 20000          # samples per Monte Carlo check: 6 standard errors of their mean
THETA = torch.tensor([0.3, -0.5, 1.2, 0.0, -1.0], dtype=F64)
REWARD = torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0], dtype=F64) + 10.0   # far from 0 on purpose


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def exact_gradient(theta, reward):
    """d/dtheta sum_k softmax(theta)_k r_k = p * (r - E[r])."""
    p = theta.softmax(0)
    return p * (reward - (p * reward).sum())


def per_sample_estimates(theta, reward, baseline, seed):
    """[N, K]: each sample's REINFORCE gradient of E[r], through reinforce_loss (vectorised:
    one copy of theta per sample, so that row n of the gradient is sample n's share)."""
    k = torch.multinomial(theta.softmax(0), N, replacement=True, generator=_gen(seed))
    thetas = theta.expand(N, -1).clone().requires_grad_()           # [N, K]
    log_probs = thetas.log_softmax(1).gather(1, k[:, None]).squeeze(1)   # [N]
    loss = reinforce_loss(log_probs, reward[k], baseline)            # mean over the batch
    (grad,) = torch.autograd.grad(loss, thetas)
    return -N * grad                                                  # ascent direction


def assert_unbiased(estimates, exact):
    mean, se = estimates.mean(0), estimates.std(0) / N ** 0.5
    assert ((mean - exact).abs() <= 6 * se).all(), (mean, exact, se)


def test_closed_form_gradient_is_the_autograd_gradient_of_the_expectation():
    theta = THETA.clone().requires_grad_()
    (grad,) = torch.autograd.grad((theta.softmax(0) * REWARD).sum(), theta)
    torch.testing.assert_close(exact_gradient(THETA, REWARD), grad, rtol=0, atol=1e-14)


@pytest.mark.parametrize("baseline", [None, 0.0, 14.0, "moving", "per-sample"])
def test_unbiased_on_a_categorical(baseline):
    if baseline == "moving":   # its value comes from earlier batches, never from this one
        mab = MovingAverageBaseline(0.5)
        for seed in (20, 21):
            mab(REWARD[torch.multinomial(THETA.softmax(0), 64, True, generator=_gen(seed))])
        baseline = mab(torch.zeros(1, dtype=F64))
        assert 12.0 < baseline < 16.0
    elif baseline == "per-sample":   # [N], drawn independently of the samples
        baseline = 14.0 + torch.randn(N, generator=_gen(22), dtype=F64)
    assert_unbiased(per_sample_estimates(THETA, REWARD, baseline, seed=1),
                    exact_gradient(THETA, REWARD))


def test_a_baseline_near_the_mean_reward_lowers_the_variance():
    mean_reward = (THETA.softmax(0) * REWARD).sum().item()
    plain = per_sample_estimates(THETA, REWARD, None, seed=2)
    centred = per_sample_estimates(THETA, REWARD, mean_reward, seed=2)   # same samples
    # exact per-component variances differ ~ E[r^2] / Var(r), about 30-fold here
    assert (centred.var(0) < 0.2 * plain.var(0)).all()


def test_sequence_log_probs_are_summed_over_steps():
    """Two steps with a reward that couples them: the gradient of E[r(k1, k2)] for both
    steps' logits, exact by enumeration, against REINFORCE on [T=2, B] log-probs."""
    thetas = torch.stack([THETA, THETA.flip(0) * 0.5]).requires_grad_()   # [2, K]
    reward = torch.outer(REWARD, REWARD.flip(0)).sqrt()                    # r(k1, k2) [K, K]
    p1, p2 = thetas.softmax(1)
    (exact,) = torch.autograd.grad((p1[:, None] * p2[None, :] * reward).sum(), thetas)

    with torch.no_grad():
        k = torch.stack([torch.multinomial(p, N, True, generator=_gen(3 + t))
                         for t, p in enumerate((p1, p2))])                  # [2, N]
    rows = thetas.detach()[:, None, :].expand(2, N, -1).clone().requires_grad_()  # [2, N, K]
    log_probs = rows.log_softmax(2).gather(2, k[..., None]).squeeze(2)    # [T=2, N]
    loss = reinforce_loss(log_probs, reward[k[0], k[1]], baseline=14.0)
    (grad,) = torch.autograd.grad(loss, rows)
    estimates = -N * grad.transpose(0, 1).reshape(N, -1)                   # [N, 2K]
    assert_unbiased(estimates, exact.reshape(-1))


def test_closed_form_on_hand_numbers():
    log_probs = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]])   # [T=2, B=2]: sums -1.5, -3
    rewards = torch.tensor([3.0, 1.0])
    # -mean((3 - 2) * -1.5, (1 - 2) * -3) = -mean(-1.5, 3) = -0.75
    assert reinforce_loss(log_probs, rewards, baseline=2.0).item() == -0.75
    assert reinforce_loss(log_probs, rewards).item() == -mean_of(-4.5, -3.0)
    assert reinforce_loss(log_probs.sum(0), rewards, torch.tensor(2.0)).item() == -0.75


def mean_of(*xs):
    return sum(xs) / len(xs)


def test_rewards_and_baseline_carry_no_gradient():
    log_probs = torch.tensor([-1.0, -2.0], requires_grad=True)
    rewards = torch.tensor([1.0, 2.0], requires_grad=True)
    baseline = torch.tensor([0.5, 0.5], requires_grad=True)
    reinforce_loss(log_probs, rewards, baseline).backward()
    assert rewards.grad is None and baseline.grad is None
    assert torch.equal(log_probs.grad, torch.tensor([-0.25, -0.75]))


def test_moving_average_uses_past_batches_only():
    mab = MovingAverageBaseline(decay=0.5)
    assert mab(torch.tensor([1.0, 3.0])) == 0.0 and mab.value == 2.0
    assert mab(torch.tensor([4.0])) == 2.0 and mab.value == 3.0
    assert mab(torch.tensor([5.0, 5.0])) == 3.0 and mab.value == 4.0
    restored = MovingAverageBaseline()
    restored.load_state_dict(mab.state_dict())
    assert (restored.decay, restored.value) == (0.5, 4.0)


def test_learned_baseline_fits_a_reward_of_the_context():
    torch.manual_seed(0)
    context = torch.randn(64, 3, generator=_gen(30))     # small: no threaded GEMM to wait on
    rewards = context @ torch.tensor([1.0, -2.0, 0.5]) + 1.0
    baseline = LearnedBaseline(3, hidden=0)
    opt = torch.optim.Adam(baseline.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        baseline.loss(context, rewards).backward()
        opt.step()
    assert baseline.loss(context, rewards).item() < 1e-4 * rewards.var().item()
    assert LearnedBaseline(3, hidden=8)(context).shape == (64,)


@pytest.mark.parametrize("call, error, name", [
    (lambda: reinforce_loss(torch.zeros(2, 3, 4), torch.zeros(4)), ValueError, "log_probs"),
    (lambda: reinforce_loss(torch.zeros(3, 4), torch.zeros(3)), ValueError, "rewards"),
    (lambda: reinforce_loss(torch.zeros(4), torch.tensor([0.0, 1, 2, float("nan")])),
     ValueError, "rewards"),
    (lambda: reinforce_loss(torch.zeros(4), torch.zeros(4), torch.zeros(3)), ValueError,
     "baseline"),
    (lambda: reinforce_loss(torch.zeros(4), torch.zeros(4), float("inf")), ValueError,
     "baseline"),
    (lambda: reinforce_loss(torch.zeros(4), torch.zeros(4), MovingAverageBaseline()),
     TypeError, "baseline"),
    (lambda: reinforce_loss(torch.zeros(4, dtype=torch.long), torch.zeros(4)), TypeError,
     "log_probs"),
    (lambda: MovingAverageBaseline(decay=1.0), ValueError, "decay"),
    (lambda: MovingAverageBaseline()(torch.zeros(2, 2)), ValueError, "rewards"),
    (lambda: LearnedBaseline(0), ValueError, "in_features"),
    (lambda: LearnedBaseline(3, hidden=-1), ValueError, "hidden"),
    (lambda: LearnedBaseline(3)(torch.zeros(4, 2)), ValueError, "context"),
])
def test_bad_arguments_name_the_argument(call, error, name):
    with pytest.raises(error, match=name):
        call()
