"""Evaluate a policy on whole episodes: returns, each reward term, L2 and PSNR to held-out targets.

The evaluation env is a :class:`CanvasVectorEnv` with ``return_tensors=True`` and
``autoreset_mode="disabled"`` (usually ``target_split="test"``): after the last step the final
paintings are still in its core. It is reset with the same seed every time, so successive
evaluations paint the same targets and their numbers compare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from paintgym.agents.episodes import image_l2
from paintgym.agents.networks import Observation
from paintgym.canvas.images import to_uint8
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.rewards.target import psnr

Policy = Callable[[Observation], torch.Tensor]


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    :param metrics: means over episodes: ``return``, ``term/<key>`` (each reward term's episode sum),
        and for tasks with targets ``l2`` (mean squared error, images in [0, 1]) and ``psnr`` (dB).
    :param paintings: ``(N, H, W, 3)`` uint8 final canvases.
    :param targets: ``(N, H, W, 3)`` uint8 targets, or None.
    :param strokes: ``(N, max_steps * S, 13)`` float32 stroke histories (CPU); videos re-render them
        (:mod:`canvas.painting_video`).
    :param step_rewards: ``(N, T)`` float32 reward of each step (T = steps taken).
    :param step_terms: ``{key: (N, T)}`` float32 each reward term per step, unweighted.
    """

    metrics: dict[str, float]
    paintings: np.ndarray
    targets: np.ndarray | None
    strokes: np.ndarray
    step_rewards: np.ndarray
    step_terms: dict[str, np.ndarray]


def random_policy(env: CanvasVectorEnv, generator: torch.Generator | None = None) -> Policy:
    """A uniformly random policy for ``env``'s action space, sampled on the env's device."""
    space = env.single_action_space
    device, n = env.device, env.num_envs
    if hasattr(space, "nvec"):
        nvec = torch.as_tensor(np.asarray(space.nvec), device=device)
        return lambda obs: (torch.rand((n, *nvec.shape), device=device, generator=generator) * nvec).long()
    size = space.shape[0]
    return lambda obs: torch.rand((n, size), device=device, generator=generator) * 2.0 - 1.0


@torch.no_grad()
def evaluate(policy: Policy, env: CanvasVectorEnv, seed: int | list[int]) -> EvalResult:
    """Run one episode in every env of ``env`` with ``policy`` and measure it.

    :param policy: observations -> actions ``(B, A)`` on the env's device.
    :param env: see the module docstring.
    :param seed: reset seed: env i is seeded ``seed + i``, or ``seed[i]`` for a list (the same seeds
        paint the same targets).
    """
    if not env.return_tensors or env.autoreset_mode.name != "DISABLED":
        raise ValueError("evaluate() needs CanvasVectorEnv(..., return_tensors=True, autoreset_mode='disabled')")
    core = env.core
    obs, _ = env.reset(seed=seed)
    step_rewards: list[torch.Tensor] = []
    step_terms: dict[str, list[torch.Tensor]] = {key: [] for key in core.reward.keys}
    for _ in range(core.max_steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        step_rewards.append(reward)
        for key, value in info["reward_terms"].items():
            step_terms[key].append(value)
        if bool((terminated | truncated).all()):
            break
    rewards = torch.stack(step_rewards, dim=1).float()  # (B, T)
    terms = {key: torch.stack(values, dim=1).float() for key, values in step_terms.items()}

    stats = {"return": rewards.sum(dim=1), **{f"term/{key}": value.sum(dim=1) for key, value in terms.items()}}
    if core.target is not None:
        l2 = image_l2(core.canvas, core.target)
        stats.update(l2=l2, psnr=psnr(l2))
    keys = list(stats)
    means = torch.stack([stats[key].float().mean() for key in keys]).tolist()
    return EvalResult(
        metrics=dict(zip(keys, means, strict=True)),
        paintings=to_uint8(core.canvas).cpu().numpy(),
        targets=None if core.target is None else core.target_u8.cpu().numpy(),
        strokes=core.episode_strokes().cpu().numpy(),
        step_rewards=rewards.cpu().numpy(),
        step_terms={key: value.cpu().numpy() for key, value in terms.items()},
    )
