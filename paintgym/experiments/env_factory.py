"""The envs of a training run: the training env and the held-out evaluation env, from its ``TrainConfig``."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import torch

from paintgym import envs
from paintgym.envs.targets import InOrderTargets
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.experiments.train_config import TrainConfig

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation env ``i`` is seeded ``config.seed + EVAL_SEED_OFFSET + i``: every evaluation paints the same targets."""


def env_options(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for ``gymnasium.make_vec`` from the configuration (None: the env's default)."""
    options: dict[str, Any] = {
        "canvas_size": config.canvas_size, "max_steps": config.max_steps, "strokes_per_step": config.strokes_per_step,
        "action_mode": config.action_mode, "obs_mode": config.obs_mode, "device": device,
    }
    if config.reward is not None:
        options["reward"] = config.reward
    if config.targets is not None:
        options["targets"] = config.targets
    if config.target_augment:
        options["target_augment"] = config.target_augment
    if config.condition:
        options["condition"] = True
    if config.noise:
        options["noise"] = config.noise
    return options


def make_env(config: TrainConfig, num_envs: int, device: torch.device, native: bool = True,
             split: str = "train") -> CanvasVectorEnv:
    """A vector env of ``config.env``: native (torch tensors, autoreset disabled) or for SB3 (numpy, SAME_STEP)."""
    if config.env not in gym.registry:
        raise ValueError(f"unknown env id {config.env!r}; paintgym registers {', '.join(envs.ENV_IDS)}")
    options = env_options(config, device)
    if split != "train":
        options["target_split"] = split
    mode = "disabled" if native else "same_step"
    env = gym.make_vec(config.env, num_envs=num_envs, return_tensors=native, autoreset_mode=mode, **options)
    if not isinstance(env.unwrapped, CanvasVectorEnv):
        raise ValueError(f"env {config.env!r} is not a paintgym canvas env")
    return env.unwrapped


def make_eval_env(config: TrainConfig, num_envs: int, device: torch.device) -> CanvasVectorEnv:
    """The held-out evaluation env: every image of ``--eval-targets``, else the test split of the
    run's targets (the split means nothing to a task without targets), env ``i`` painting image ``i mod N``
    (random draws would paint some images twice and leave others out); with a ``condition``, env ``i`` is
    asked for class ``i mod K`` (every class as often), and the noise, if any, differs between episodes."""
    if config.eval_targets is not None:
        env = make_env(dataclasses.replace(config, targets=config.eval_targets), num_envs, device, split="all")
    else:
        env = make_env(config, num_envs, device, split="test")
    pool = env.core.targets
    if pool is not None:
        env.core.targets = InOrderTargets(pool.images, device, pool.name)
    env.core.condition_in_order = True
    return env
