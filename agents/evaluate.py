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

from agents.episodes import image_l2, psnr
from agents.networks import Observation
from envs.images import to_uint8
from envs.vector_env import CanvasVectorEnv
from envs.video import grid

Policy = Callable[[Observation], torch.Tensor]


@dataclass
class EvalResult:
    """What :func:`evaluate` measured.

    :param metrics: means over episodes: ``return``, ``term/<key>`` (each reward term's episode sum),
        and for tasks with targets ``l2`` (mean squared error, images in [0, 1]) and ``psnr`` (dB).
    :param paintings: ``(N, H, W, 3)`` uint8 final canvases.
    :param targets: ``(N, H, W, 3)`` uint8 targets, or None.
    :param strokes: ``(N, max_steps * S, 13)`` float32 stroke histories (CPU).
    :param frames: ``(T + 1, h, w, 3)`` uint8 video frames (canvas beside target, a grid of the first
        ``video_envs`` episodes, one frame per step), when asked for.
    """

    metrics: dict[str, float]
    paintings: np.ndarray
    targets: np.ndarray | None
    strokes: np.ndarray
    frames: np.ndarray | None = None


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
def evaluate(policy: Policy, env: CanvasVectorEnv, seed: int, video_size: int | None = None,
             video_envs: int = 8) -> EvalResult:
    """Run one episode in every env of ``env`` with ``policy`` and measure it.

    :param policy: observations -> actions ``(B, A)`` on the env's device.
    :param env: see the module docstring.
    :param seed: reset seed (the same seed paints the same targets).
    :param video_size: side of each canvas in the video frames; None: no frames.
    :param video_envs: episodes shown in the video.
    """
    if not env.return_tensors or env.autoreset_mode.name != "DISABLED":
        raise ValueError("evaluate() needs CanvasVectorEnv(..., return_tensors=True, autoreset_mode='disabled')")
    core = env.core
    obs, _ = env.reset(seed=seed)
    returns = torch.zeros(env.num_envs, device=env.device)
    terms_sum = {key: torch.zeros(env.num_envs, device=env.device) for key in core.reward.keys}
    frames = []
    shown = min(video_envs, env.num_envs)
    for _ in range(core.max_steps):
        if video_size:
            frames.append(grid(core.frames(video_size)[:shown].cpu().numpy()))
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        returns += reward
        for key, value in info["reward_terms"].items():
            terms_sum[key] += value
        if bool((terminated | truncated).all()):
            break
    if video_size:
        frames.append(grid(core.frames(video_size)[:shown].cpu().numpy()))

    stats = {"return": returns, **{f"term/{key}": value for key, value in terms_sum.items()}}
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
        frames=np.stack(frames) if frames else None,
    )
