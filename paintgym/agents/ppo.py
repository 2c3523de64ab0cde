"""Proximal Policy Optimisation on the batched canvas, in the order of CleanRL's ``ppo.py``.

Schulman et al., 2017, "Proximal Policy Optimization Algorithms", with the implementation details of
Huang et al., 2022 ("The 37 Implementation Details of PPO"): GAE, clipped surrogate, optional value
clipping, advantage normalisation per minibatch, epochs of shuffled minibatches, linear
learning-rate annealing, global gradient-norm clipping, optional early stop on the approximate KL.

One iteration: roll out ``rollout_episodes`` whole episodes in every env (env, policy and storage on
one device; the env returns torch tensors, nothing crosses to numpy), estimate advantages with GAE,
then optimise the clipped objective. Episodes have a fixed length and end together, so an iteration
always ends on an episode boundary — which is also what makes checkpoints exact.

The env runs with ``autoreset_mode="disabled"``: at an episode end the finished canvases are still in
the core (for statistics and rewards that learn), then the loop resets the finished envs itself.

Two speed-ups keep CleanRL's lines but not its objects: ``b_obs`` is a
:class:`~agents.networks.PatchedObservations` (the rollout cut into the encoder's patches once per
update, not once per minibatch) and the gradients live in one :class:`~agents.common.FlatGradients`
buffer (``zero_grad`` and ``clip_grad_norm_`` in one operation each). The losses of every
minibatch are summed on the device and read once per update.

Data-parallel (``torchrun``, :mod:`experiments.distributed`): each rank rolls out its share of the envs
and draws its minibatches from its own rollout; a global minibatch is every rank's minibatch. The
advantages are normalised with the global minibatch's mean and std, the reward normaliser tracks the
global returns, the early stop on the KL is decided on the global mean, and the flat gradient buffer
is averaged over the ranks with one ``all_reduce`` before clipping (what DDP's buckets do; DDP's module
wrapper does not fit, since the minibatches run through :class:`PatchedObservations`, not ``forward``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from paintgym.agents.common import (
    FlatGradients,
    adam,
    autocast,
    build_agent,
    load_policy,
    minibatch_size,
    prefixed,
)
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.networks import Observation, PatchedObservations
from paintgym.agents.rollout import collect_rollout
from paintgym.agents.storage import RewardNormalizer, RolloutStorage, compute_gae
from paintgym.canvas import collective
from paintgym.envs.vector_env import CanvasVectorEnv


@dataclass
class PPOArgs:
    learning_rate: float = 1e-3
    """the learning rate of the Adam optimiser"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over the run"""
    rollout_episodes: int = 1
    """episodes each env plays per rollout (a rollout is rollout_episodes * max_steps steps per env)"""
    gamma: float = 0.99
    """the discount factor"""
    norm_reward: bool = True
    """divide rewards by a running std of the discounted return for learning (logged returns stay unscaled)"""
    gae_lambda: float = 0.95
    """the lambda of generalised advantage estimation"""
    num_minibatches: int = 8
    """the number of minibatches each rollout is split into"""
    update_epochs: int = 8
    """the number of passes over each rollout"""
    norm_adv: bool = True
    """normalise advantages per minibatch"""
    clip_coef: float = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's value estimates, as the PPO paper's code does"""
    ent_coef: float = 0.001
    """the coefficient of the entropy bonus"""
    vf_coef: float = 0.5
    """the coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum global norm of the gradient"""
    target_kl: float | None = None
    """stop an update's epochs early when the approximate KL exceeds this (None: never)"""
    hidden: int = 256
    """width of the network's shared features"""
    width: int = 16
    """channels of the CNN's first layer (the next two have twice as many)"""


LOSS_KEYS = ["policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac"]


class PPO:
    """PPO on a :class:`CanvasVectorEnv` created with ``return_tensors=True, autoreset_mode="disabled"``
    (the :class:`~agents.common.Algorithm` interface).

    :param env: the training env.
    :param args: hyperparameters.
    :param amp: bfloat16 autocast for the network on CUDA.
    """

    name = "ppo"

    def __init__(self, env: CanvasVectorEnv, args: PPOArgs, amp: bool = False) -> None:
        if args.rollout_episodes < 1 or args.update_epochs < 1:
            raise ValueError("rollout_episodes and update_epochs must be at least 1")
        self.agent, self.optimizer = build_agent(env, "PPO", args.width, args.hidden, args.learning_rate, amp)
        self.env, self.args, self.device, self.amp = env, args, env.device, amp
        self.num_steps = args.rollout_episodes * env.core.max_steps
        self.batch_size = self.num_steps * env.num_envs
        self.minibatch_size = minibatch_size(self.batch_size, args.num_minibatches)
        self.steps_per_iteration = self.batch_size
        self.reward_normalizer = RewardNormalizer(env.num_envs, args.gamma, self.device) if args.norm_reward else None
        self.gradients = FlatGradients(self.agent.parameters())
        self.tracker = EpisodeTracker(env)
        self.metric_keys = [*self.tracker.metric_keys, *LOSS_KEYS, "explained_variance", "learning_rate"]
        self.obs: Observation | None = None
        self.storage: RolloutStorage | None = None

    def start(self, obs: Observation) -> None:
        """Continue from the env's current observations (the trainer has reset the env)."""
        self.obs = obs

    # ------------------------------------------------------------------------------ one iteration
    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        """Rollout, GAE, then epochs of minibatch updates (CleanRL's loop body)."""
        if self.obs is None:
            raise RuntimeError("call start(obs) before training")
        args, agent = self.args, self.agent
        # annealing the learning rate, linearly to 0
        if args.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / num_iterations) * args.learning_rate

        # the rollout: num_steps steps in every env (finished envs are reset after their statistics are read)
        storage, self.obs = collect_rollout(self.env, agent, self.obs, self.num_steps, self.tracker, self.storage,
                                            self.reward_normalizer, self.amp)
        self.storage = storage

        # bootstrap value if not done, and generalised advantage estimation
        with torch.no_grad(), autocast(self.device, self.amp):
            next_value = agent.get_value(self.obs)
        advantages, returns = compute_gae(storage.rewards, storage.values, storage.dones, next_value,
                                          args.gamma, args.gae_lambda)

        # flatten the batch
        b_obs = PatchedObservations(agent, storage.flat_obs())
        b_actions = storage.actions.flatten(0, 1)
        b_logprobs, b_values = storage.logprobs.flatten(), storage.values.flatten()
        b_advantages, b_returns = advantages.flatten(), returns.flatten()

        # optimise the policy and value network
        loss_sums = torch.zeros(len(LOSS_KEYS), device=self.device)
        updates = 0
        for _epoch in range(args.update_epochs):
            b_inds = torch.randperm(self.batch_size, device=self.device)
            for start in range(0, self.batch_size - self.minibatch_size + 1, self.minibatch_size):
                mb_inds = b_inds[start:start + self.minibatch_size]
                with autocast(self.device, self.amp):
                    _, newlogprob, entropy, newvalue = b_obs.get_action_and_value(mb_inds, b_actions[mb_inds])
                logratio = newlogprob - b_logprobs[mb_inds]
                ratio = logratio.exp()
                with torch.no_grad():  # http://joschu.net/blog/kl-approx.html
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1.0) - logratio).mean()
                    clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

                mb_advantages = b_advantages[mb_inds]
                if args.norm_adv:  # over the global minibatch: every rank's (no-op reduction on one process)
                    mb_advantages = collective.normalise(mb_advantages)

                # policy loss: the clipped surrogate
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1.0 - args.clip_coef, 1.0 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                # value loss, optionally clipped around the rollout's estimates
                if args.clip_vloss:
                    v_loss_unclipped = (newvalue - b_returns[mb_inds]).square()
                    v_clipped = b_values[mb_inds] + torch.clamp(newvalue - b_values[mb_inds], -args.clip_coef,
                                                                args.clip_coef)
                    v_loss_clipped = (v_clipped - b_returns[mb_inds]).square()
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * (newvalue - b_returns[mb_inds]).square().mean()

                entropy_loss = entropy.mean()
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                self.gradients.zero_grad()
                loss.backward()
                collective.average_gradients_(self.gradients.flat)  # data-parallel: one all_reduce per update
                self.gradients.clip_grad_norm_(args.max_grad_norm)
                self.optimizer.step()

                loss_sums += torch.stack([pg_loss.detach(), v_loss.detach(), entropy_loss.detach(), old_approx_kl,
                                          approx_kl, clipfrac])
                updates += 1
            if args.target_kl is not None and float(collective.all_reduce_mean_(approx_kl)) > args.target_kl:
                break

        y_pred, y_true = b_values, b_returns
        var_y = y_true.var()
        explained_var = 1.0 - (y_true - y_pred).var() / var_y  # NaN when the returns do not vary
        values = torch.cat([loss_sums / max(updates, 1), explained_var.view(1)]).tolist()  # one transfer
        losses = dict(zip([*LOSS_KEYS, "explained_variance"], values, strict=True))
        return {**self.tracker.summary(), **losses, "learning_rate": self.optimizer.param_groups[0]["lr"]}

    # ---------------------------------------------------------------------------- acting, saving
    @torch.no_grad()
    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.agent.act(obs, deterministic)

    def state_dict(self) -> dict[str, Any]:
        state = {"agent": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(), "args": asdict(self.args)}
        if self.reward_normalizer is not None:
            state["reward_normalizer"] = self.reward_normalizer.state_dict()
        return state

    def networks(self) -> dict[str, nn.Module]:
        return {"agent": self.agent}

    def freeze_parts(self) -> dict[str, list[str]]:
        return prefixed("agent.", self.agent.freeze_parts())

    def restart_training(self) -> None:
        self.optimizer = adam(self.agent, self.args.learning_rate, self.device)
        self.gradients = FlatGradients(self.agent.parameters())

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        load_policy(self.agent, state["agent"])
        if policy_only:
            self.agent.eval()
            return
        self.optimizer.load_state_dict(state["optimizer"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])
