"""REINVENT's augmented-likelihood loss: closed form, gradient, direction of the update."""

import pytest
import torch

from spikegrad.proxy import reinvent_loss


def test_closed_form_on_hand_numbers():
    agent = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]])   # [T=2, B=2]: sums -1.5, -3
    prior = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]])   # sums -2, -2
    rewards = torch.tensor([0.5, 0.25])
    # augmented = -2 + 4 * [0.5, 0.25] = [0, -1]; minus agent = [1.5, 2]; mean of squares
    assert reinvent_loss(agent, prior, rewards, sigma=4.0).item() == (2.25 + 4.0) / 2
    assert reinvent_loss(agent.sum(0), prior.sum(0), rewards, 4.0).item() == 3.125


def test_gradient_reaches_the_agent_only():
    agent = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]], requires_grad=True)
    prior = torch.full((2, 2), -1.0, requires_grad=True)
    rewards = torch.tensor([0.5, 0.25], requires_grad=True)
    reinvent_loss(agent, prior, rewards, sigma=4.0).backward()
    # d/d agent_tb = -2 (augmented_b - agent_b) / B = -[1.5, 2], the same for every step
    assert torch.equal(agent.grad, torch.tensor([[-1.5, -2.0], [-1.5, -2.0]]))
    assert prior.grad is None and rewards.grad is None


def test_a_step_raises_the_likelihood_of_the_rewarded_sequence():
    """Agent = prior over 3 tokens; token 0 rewarded, token 1 not. Gradient descent moves
    probability to token 0 and, at agent = prior, leaves the unrewarded token's logit alone."""
    prior_logits = torch.tensor([0.2, 0.5, -0.3])
    logits = prior_logits.clone().requires_grad_()
    tokens = torch.tensor([0, 1])
    agent_lp = logits.log_softmax(0)[tokens]
    prior_lp = prior_logits.log_softmax(0)[tokens]
    loss = reinvent_loss(agent_lp, prior_lp, torch.tensor([1.0, 0.0]), sigma=2.0)
    (grad,) = torch.autograd.grad(loss, logits)
    # only token 0's term is non-zero: -2 * sigma / B * (e_0 - p) -> descent raises logit 0
    p = prior_logits.softmax(0)
    torch.testing.assert_close(grad, -2.0 * (torch.eye(3)[0] - p), rtol=0, atol=1e-6)
    stepped = (logits - 0.1 * grad).softmax(0)
    assert stepped[0] > p[0] and stepped[1] < p[1]


@pytest.mark.parametrize("args, error, name", [
    ((torch.zeros(3, 4), torch.zeros(4), torch.zeros(4), 1.0), ValueError, "prior_log_probs"),
    ((torch.zeros(4), torch.zeros(4), torch.zeros(3), 1.0), ValueError, "rewards"),
    ((torch.zeros(4), torch.zeros(4), torch.zeros(4), 0.0), ValueError, "sigma"),
    ((torch.zeros(4), torch.zeros(4), torch.zeros(4), None), TypeError, "sigma"),
    ((torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(4), 1.0), ValueError,
     "agent_log_probs"),
    ((torch.zeros(4), torch.zeros(4, dtype=torch.long), torch.zeros(4), 1.0), TypeError,
     "prior_log_probs"),
])
def test_bad_arguments_name_the_argument(args, error, name):
    with pytest.raises(error, match=name):
        reinvent_loss(*args)
