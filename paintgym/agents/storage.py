"""Rollout storage on the env's device, and the return estimators (GAE, reward-to-go).

Everything is a ``(T, B, ...)`` tensor: ``T`` steps of ``B`` envs. Observations stay uint8 (four
times less memory than floats; PPO's update converts one minibatch at a time, see
:class:`agents.networks.PatchedObservations`).
"""

from __future__ import annotations

import torch

from paintgym.agents.networks import Observation
from paintgym.canvas import collective


def _alloc(like: Observation, steps: int) -> Observation:
    if isinstance(like, dict):
        return {key: _alloc(value, steps) for key, value in like.items()}
    return torch.zeros((steps, *like.shape), dtype=like.dtype, device=like.device)


def _write(store: Observation, step: int, value: Observation) -> None:
    if isinstance(store, dict):
        for key in store:
            store[key][step].copy_(value[key])
    else:
        store[step].copy_(value)


def _flatten(store: Observation) -> Observation:
    if isinstance(store, dict):
        return {key: _flatten(value) for key, value in store.items()}
    return store.flatten(0, 1)


class RolloutStorage:
    """``num_steps`` x ``num_envs`` transitions, preallocated on the device of ``obs``.

    :param num_steps: T.
    :param num_envs: B.
    :param obs: one batch of observations (``(B, ...)`` tensor or dict), for shapes, dtypes and device.
    :param action: one batch of actions ``(B, A)`` (float for continuous, int64 for discrete).
    """

    def __init__(self, num_steps: int, num_envs: int, obs: Observation, action: torch.Tensor) -> None:
        self.num_steps, self.num_envs = num_steps, num_envs
        device = action.device
        self.obs = _alloc(obs, num_steps)
        self.actions = torch.zeros((num_steps, *action.shape), dtype=action.dtype, device=device)
        self.logprobs = torch.zeros((num_steps, num_envs), device=device)
        self.rewards = torch.zeros((num_steps, num_envs), device=device)
        self.dones = torch.zeros((num_steps, num_envs), device=device)  # 1: the episode ended with this step
        self.values = torch.zeros((num_steps, num_envs), device=device)

    def insert(self, step: int, obs: Observation, action: torch.Tensor, logprob: torch.Tensor,
               value: torch.Tensor, reward: torch.Tensor, done: torch.Tensor) -> None:
        """Store step ``step``: the observation acted on, the action, its log-prob and value estimate,
        then the reward ``(B,)`` and whether the episode ended ``(B,)`` bool."""
        _write(self.obs, step, obs)
        self.actions[step].copy_(action)
        self.logprobs[step].copy_(logprob)
        self.values[step].copy_(value)
        self.rewards[step].copy_(reward)
        self.dones[step].copy_(done)

    def flat_obs(self) -> Observation:
        """Observations as one ``(T * B, ...)`` batch (views, no copy)."""
        return _flatten(self.obs)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, next_value: torch.Tensor,
                gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016).

    :param rewards: ``(T, B)``.
    :param values: ``(T, B)`` value estimates of the observations acted on.
    :param dones: ``(T, B)`` 1.0 where the episode ended with that step (no bootstrapping across it).
    :param next_value: ``(B,)`` value of the observation after the last step.
    :return: advantages and returns (``advantages + values``), both ``(T, B)``.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):  # a loop over time; every env at once
        following = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        nonterminal = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * nonterminal - values[t]
        last = delta + gamma * gae_lambda * nonterminal * last
        advantages[t] = last
    return advantages, advantages + values


def reward_to_go(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted reward-to-go ``G_t = r_t + gamma * G_{t+1}`` within each episode.

    :param rewards: ``(T, B)``; the rollout must end with every episode (``dones[-1]`` all 1).
    :param dones: ``(T, B)`` 1.0 where the episode ended with that step.
    :return: ``(T, B)``.
    """
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        returns[t] = running
    return returns


class RewardNormalizer:
    """Scales rewards by a running standard deviation of the discounted return (as Gymnasium's
    ``NormalizeReward``): returns of order 1 whatever the reward's units, which the value function
    learns far faster than the ~0.1 returns of an L2 reward. Everything stays on the device.

    :param num_envs: B.
    :param gamma: the discount of the return whose spread is tracked.
    :param device: where the statistics live.
    """

    def __init__(self, num_envs: int, gamma: float, device: torch.device, epsilon: float = 1e-8) -> None:
        self.gamma, self.epsilon = gamma, epsilon
        self.returns = torch.zeros(num_envs, device=device)  # (B,) running discounted return per env
        self.mean = torch.zeros((), dtype=torch.float64, device=device)
        self.var = torch.ones((), dtype=torch.float64, device=device)
        self.count = torch.full((), 1e-4, dtype=torch.float64, device=device)

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Normalise one step's ``reward`` ``(B,)``; ``done`` ``(B,)`` bool ends the running returns."""
        self.returns = self.returns * self.gamma + reward
        self._update(self.returns.double())
        scaled = reward / torch.sqrt(self.var + self.epsilon).float()
        self.returns = self.returns.masked_fill(done, 0.0)
        return scaled

    def _update(self, x: torch.Tensor) -> None:
        """Merge a batch into the running mean and variance (Chan et al.'s parallel algorithm); in a
        data-parallel run the batch is every rank's envs (:func:`canvas.collective.moments`)."""
        if collective.active():
            batch_mean, batch_var, batch_count = collective.moments(x)
        else:
            batch_mean, batch_var, batch_count = x.mean(), x.var(unbiased=False), x.numel()
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"returns": self.returns, "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`. A checkpoint of another number of envs (a data-parallel run resumed
        with another world size) is taken at an episode boundary, where every running return is 0."""
        saved = dict(state)
        if saved["returns"].shape != self.returns.shape:
            if bool(saved["returns"].abs().max() > 0):
                raise ValueError(f"the reward normaliser was saved for {saved['returns'].shape[0]} envs "
                                 f"mid-episode; this run has {self.returns.shape[0]}")
            saved["returns"] = torch.zeros_like(self.returns)
        for key in ("returns", "mean", "var", "count"):
            setattr(self, key, saved[key].to(getattr(self, key).device).clone())
