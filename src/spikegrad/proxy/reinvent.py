"""REINVENT's augmented-likelihood loss (Olivecrona et al. 2017, J. Cheminform. 9:48).

An agent policy starts as a copy of a prior (a generative model trained on valid examples)
and is pulled towards the augmented log-likelihood

    log P_aug(x) = log P_prior(x) + sigma * r(x)

of each sampled sequence ``x``, by the squared difference

    L = mean_b (log P_prior(x_b) + sigma * r(x_b) - log P_agent(x_b))^2.

The target is a constant: the gradient moves only the agent, up for sequences whose reward
lifts the target above the agent's likelihood and down otherwise, while the prior term keeps
the agent near the distribution it was trained on. Like REINFORCE it needs no derivative of
``r``; ``sigma`` (reward units -> nats) sets how far the reward may pull from the prior.
"""

from __future__ import annotations

from torch import Tensor

from ._checks import check_number, check_rewards, sequence_log_prob

__all__ = ["reinvent_loss"]


def reinvent_loss(agent_log_probs: Tensor, prior_log_probs: Tensor, rewards: Tensor,
                  sigma: float) -> Tensor:
    """``mean_b (prior_logp_b + sigma * r_b - agent_logp_b)^2`` over sampled sequences.

    Args:
        agent_log_probs: the agent's log-probabilities of the sampled tokens (nats), ``[B]``
            or time-major ``[T, B]`` (summed over ``T``; zero the steps after a sequence
            ended). Carries the gradient.
        prior_log_probs: the prior's log-probabilities of the same tokens, same shape;
            treated as constants (detached).
        rewards: ``[B]`` finite scores (REINVENT used scores in [0, 1]); detached.
        sigma: > 0, nats per unit of reward (REINVENT used 60 for scores in [0, 1]).

    Returns:
        A scalar loss in nats squared.

    Example:
        >>> import torch
        >>> agent, prior = torch.tensor([-3.0, -2.0]), torch.tensor([-2.0, -2.0])
        >>> reinvent_loss(agent, prior, torch.tensor([0.5, 0.0]), sigma=2.0).item()
        2.0
    """
    owner = "reinvent_loss"
    agent = sequence_log_prob(agent_log_probs, "agent_log_probs", owner)     # [B]
    prior = sequence_log_prob(prior_log_probs, "prior_log_probs", owner)     # [B]
    if prior_log_probs.shape != agent_log_probs.shape:
        raise ValueError(f"{owner}: prior_log_probs must have the shape of agent_log_probs "
                         f"{list(agent_log_probs.shape)}, got {list(prior_log_probs.shape)}; "
                         "score the agent's sampled tokens with the prior")
    rewards = check_rewards(rewards, agent.shape[0], owner)
    sigma = check_number(sigma, "sigma", owner, positive=True)
    augmented = (prior.detach() + sigma * rewards.to(prior.dtype)).to(agent.dtype)   # [B]
    return (augmented - agent).pow(2).mean()
