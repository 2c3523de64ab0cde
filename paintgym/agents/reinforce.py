"""REINFORCE with a baseline on the batched canvas (Williams, 1992), readable top to bottom.

One iteration plays ``rollout_episodes`` whole episodes in every env (a batch of
``num_envs * rollout_episodes`` episodes, all on the env's device), computes each step's discounted
reward-to-go ``G_t``, subtracts a baseline and takes one gradient step on

    loss = -mean(log pi(a_t | s_t) * (G_t - b_t)) - ent_coef * entropy [+ vf_coef * mean((V(s_t) - G_t)^2)]

Baselines (``--baseline``):

* ``value``: a learned state value ``V(s_t)`` (the network's critic head, trained on ``G_t``);
* ``mean``: a running mean of ``G_t`` for each time step of the episode (returns-to-go shrink as the
  episode goes on, so one mean for all steps would be a poor baseline);
* ``none``: plain REINFORCE.

The env runs with ``autoreset_mode="disabled"`` and the loop resets finished envs itself, as in PPO.

Data-parallel (``torchrun``): each rank plays its share of the envs; the advantages are normalised and
the running mean baseline moves with global statistics, and the gradients are averaged over the ranks
with one ``all_reduce`` of a flat buffer before clipping (:mod:`canvas.collective`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from paintgym.agents.common import adam, autocast, build_agent, load_policy, prefixed
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.networks import Observation
from paintgym.agents.rollout import collect_rollout
from paintgym.agents.storage import RewardNormalizer, RolloutStorage, reward_to_go
from paintgym.canvas import collective
from paintgym.envs.vector_env import CanvasVectorEnv

BASELINES = ("value", "mean", "none")


@dataclass
class ReinforceArgs:
    learning_rate: float = 1e-3
    """the learning rate of the Adam optimiser"""
    anneal_lr: bool = False
    """anneal the learning rate linearly to 0 over the run"""
    rollout_episodes: int = 1
    """episodes each env plays per update (the batch is num_envs * rollout_episodes episodes)"""
    gamma: float = 0.99
    """the discount factor of the reward-to-go"""
    norm_reward: bool = True
    """divide rewards by a running std of the discounted return for learning (logged returns stay unscaled)"""
    baseline: str = "value"
    """the baseline subtracted from the reward-to-go: value (learned), mean (running mean per step) or none"""
    baseline_momentum: float = 0.9
    """how much of the old running mean each update keeps (baseline=mean)"""
    norm_adv: bool = True
    """normalise the advantages G_t - b_t over the batch"""
    ent_coef: float = 0.001
    """the coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """the coefficient of the value loss (baseline=value)"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradient"""
    hidden: int = 256
    """width of the network's shared features"""
    width: int = 16
    """channels of the CNN's first layer (the next two have twice as many)"""


LOSS_KEYS = ["policy_loss", "value_loss", "entropy"]


class Reinforce:
    """REINFORCE on a :class:`CanvasVectorEnv` created with ``return_tensors=True, autoreset_mode="disabled"``
    (the :class:`~agents.common.Algorithm` interface).

    :param env: the training env.
    :param args: hyperparameters.
    :param amp: bfloat16 autocast for the network on CUDA.
    """

    name = "reinforce"

    def __init__(self, env: CanvasVectorEnv, args: ReinforceArgs, amp: bool = False) -> None:
        if args.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {args.baseline!r}; choose one of {', '.join(BASELINES)}")
        if args.rollout_episodes < 1:
            raise ValueError("rollout_episodes must be at least 1")
        self.agent, self.optimizer = build_agent(env, "REINFORCE", args.width, args.hidden, args.learning_rate, amp)
        self.env, self.args, self.device, self.amp = env, args, env.device, amp
        self.episode_length = env.core.max_steps
        self.num_steps = args.rollout_episodes * self.episode_length
        self.steps_per_iteration = self.num_steps * env.num_envs
        self.running_mean = torch.zeros(self.episode_length, device=self.device)  # baseline=mean, per step
        self.running_seen = False
        self.reward_normalizer = RewardNormalizer(env.num_envs, args.gamma, self.device) if args.norm_reward else None
        self.tracker = EpisodeTracker(env)
        self.metric_keys = [*self.tracker.metric_keys, *LOSS_KEYS, "learning_rate"]
        self.obs: Observation | None = None
        self.storage: RolloutStorage | None = None

    def start(self, obs: Observation) -> None:
        """Continue from the env's current observations (the trainer has reset the env)."""
        self.obs = obs

    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        """Play ``rollout_episodes`` whole episodes in every env, then one gradient step on them."""
        if self.obs is None:
            raise RuntimeError("call start(obs) before training")
        args = self.args
        if args.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate
        self.storage, self.obs = collect_rollout(self.env, self.agent, self.obs, self.num_steps, self.tracker,
                                                 self.storage, self.reward_normalizer, self.amp)
        returns = reward_to_go(self.storage.rewards, self.storage.dones, args.gamma)  # (T, B)
        metrics = self.update(returns)
        metrics["learning_rate"] = self.optimizer.param_groups[0]["lr"]
        return {**self.tracker.summary(), **metrics}

    def update(self, returns: torch.Tensor) -> dict[str, float]:
        """One gradient step on the whole batch of episodes; returns the losses."""
        args, storage = self.args, self.storage
        b_obs, b_actions = storage.flat_obs(), storage.actions.flatten(0, 1)
        b_returns = returns.flatten()
        with autocast(self.device, self.amp):
            _, logprob, entropy, value = self.agent.get_action_and_value(b_obs, b_actions)

        # the baseline: learned value, running mean of the reward-to-go per step of the episode, or none
        if args.baseline == "value":
            baseline = value.detach()
        elif args.baseline == "mean":
            per_step = returns.view(args.rollout_episodes, self.episode_length, -1)  # (E, T_episode, B)
            baseline = self.running_mean.view(1, -1, 1).expand_as(per_step).reshape(-1)
            batch_mean = collective.all_reduce_mean_(per_step.mean(dim=(0, 2)))  # every rank has as many envs
            momentum = args.baseline_momentum if self.running_seen else 0.0  # the first batch sets it
            self.running_mean.mul_(momentum).add_((1.0 - momentum) * batch_mean)
            self.running_seen = True
        else:
            baseline = torch.zeros_like(b_returns)
        advantages = b_returns - baseline
        if args.norm_adv:  # over every rank's episodes in a data-parallel run
            advantages = collective.normalise(advantages)

        pg_loss = -(logprob * advantages).mean()
        entropy_loss = entropy.mean()
        loss = pg_loss - args.ent_coef * entropy_loss
        v_loss = 0.5 * (value - b_returns).square().mean()
        if args.baseline == "value":
            loss = loss + args.vf_coef * v_loss

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        collective.average_gradients_(self.agent.parameters())  # data-parallel: one all_reduce per update
        nn.utils.clip_grad_norm_(self.agent.parameters(), args.max_grad_norm)
        self.optimizer.step()
        values = torch.stack([pg_loss.detach(), v_loss.detach(), entropy_loss.detach()]).tolist()
        return dict(zip(LOSS_KEYS, values, strict=True))

    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.agent.act(obs, deterministic)

    def state_dict(self) -> dict[str, Any]:
        state = {"agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "running_mean": self.running_mean.clone(), "running_seen": self.running_seen,
                 "args": asdict(self.args)}
        if self.reward_normalizer is not None:
            state["reward_normalizer"] = self.reward_normalizer.state_dict()
        return state

    def networks(self) -> dict[str, nn.Module]:
        return {"agent": self.agent}

    def freeze_parts(self) -> dict[str, list[str]]:
        return prefixed("agent.", self.agent.freeze_parts())

    def restart_training(self) -> None:
        self.optimizer = adam(self.agent, self.args.learning_rate, self.device)

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        load_policy(self.agent, state["agent"])
        if policy_only:
            self.agent.eval()
            return
        self.optimizer.load_state_dict(state["optimizer"])
        self.running_mean.copy_(state["running_mean"])
        self.running_seen = bool(state["running_seen"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
