"""One rollout of a policy in the native vector env, into rollout storage: the loop PPO and REINFORCE share.

The env returns torch tensors on its device and leaves resets to the caller
(``autoreset_mode="disabled"``): at an episode's end the finished canvases are still in the core, for
the episode statistics and for rewards that learn from finished paintings, and then the finished envs
are reset here.
"""

from __future__ import annotations

import torch

from paintgym.agents.common import autocast
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.networks import ActorCritic, Observation
from paintgym.agents.storage import RewardNormalizer, RolloutStorage
from paintgym.envs.vector_env import CanvasVectorEnv


@torch.no_grad()
def collect_rollout(env: CanvasVectorEnv, agent: ActorCritic, obs: Observation, num_steps: int,
                    tracker: EpisodeTracker, storage: RolloutStorage | None = None,
                    reward_normalizer: RewardNormalizer | None = None, amp: bool = False
                    ) -> tuple[RolloutStorage, Observation]:
    """Play ``num_steps`` steps in every env of ``env`` with ``agent``'s sampled actions.

    :param env: the training env (torch tensors out, autoreset disabled).
    :param agent: the policy and value network (on the env's device).
    :param obs: the current observations, a ``(B, ...)`` batch.
    :param num_steps: T, steps per env.
    :param tracker: receives every step's reward and reward terms, and the finished episodes.
    :param storage: the storage to fill (T x B); None: a new one, shaped by the first step.
    :param reward_normalizer: scales the rewards stored for learning (the tracker sees them unscaled).
    :param amp: bfloat16 autocast for the network (CUDA).
    :return: the filled storage and the observations after the last step.
    """
    device = env.device
    for step in range(num_steps):
        with autocast(device, amp):
            action, logprob, _, value = agent.get_action_and_value(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        done = terminated | truncated
        tracker.record(reward, info["reward_terms"])
        if storage is None:
            storage = RolloutStorage(num_steps, env.num_envs, obs, action)
        learn_reward = reward_normalizer(reward, done) if reward_normalizer is not None else reward
        storage.insert(step, obs, action, logprob, value, learn_reward, done)
        if done.any():  # all envs finish together; the finished canvases are still in the core here
            tracker.finish(done)
            next_obs, _ = env.reset(options={"reset_mask": done})
        obs = next_obs
    if storage is None:
        raise ValueError("num_steps must be at least 1")
    return storage, obs
