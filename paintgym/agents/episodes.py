"""Episode bookkeeping during training rollouts, on the env's device.

:class:`EpisodeTracker` keeps each env's running return and reward-term sums as ``(B,)`` tensors;
when episodes end it folds them into the totals of the current iteration (final L2 to the target
included) and hands the finished paintings to rewards that learn from them
(``reward.update(canvas, target)``). Statistics cross to the host once per iteration.
"""

from __future__ import annotations

import torch

from paintgym.canvas.render import image_l2
from paintgym.envs.vector_env import CanvasVectorEnv

__all__ = ["EpisodeTracker", "image_l2"]  # image_l2: the renderer's, where agents have always found it


class EpisodeTracker:
    """Returns, per-term sums and final L2 of the episodes that end during an iteration.

    :param env: the training env (its core's reward and targets are read at episode ends).
    """

    def __init__(self, env: CanvasVectorEnv) -> None:
        self.core = env.core
        self.keys = list(self.core.reward.keys)
        device, n = env.device, env.num_envs
        self.running = {"return": torch.zeros(n, device=device)}
        self.running.update({f"term/{key}": torch.zeros(n, device=device) for key in self.keys})
        self.totals = {name: torch.zeros((), device=device) for name in self.metric_keys}
        self.reward_stats: dict[str, float] = {}

    @property
    def metric_keys(self) -> list[str]:
        """Names of the statistics :meth:`summary` returns (``l2`` only for tasks with targets)."""
        keys = ["episodes", "return", *[f"term/{key}" for key in self.keys]]
        return keys + (["l2"] if self.core.targets is not None else [])

    def record(self, reward: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Add one step's reward ``(B,)`` and unweighted terms ``{key: (B,)}`` to the running sums."""
        self.running["return"] += reward
        for key in self.keys:
            self.running[f"term/{key}"] += terms[key]

    def finish(self, done: torch.Tensor) -> None:
        """Episodes end where ``done`` ``(B,)`` bool is True; call before the env resets them."""
        weight = done.to(torch.float32)
        for name, running in self.running.items():
            self.totals[name] += (running * weight).sum()
            running.mul_(1.0 - weight)
        self.totals["episodes"] += weight.sum()
        core = self.core
        if core.target is not None:
            self.totals["l2"] += (image_l2(core.canvas, core.target) * weight).sum()
        if core.reward.learns:  # rewards that learn see every finished painting
            target = None if core.target is None else core.target[done]
            with torch.enable_grad():  # rollouts run under no_grad; a learning reward trains here
                self.reward_stats.update(core.reward.update(core.canvas[done], target))

    def summary(self) -> dict[str, float]:
        """Mean statistics of the episodes finished since the last call (NaN if none), then reset."""
        values = torch.stack(list(self.totals.values())).tolist()  # one transfer to the host
        totals = dict(zip(self.totals, values, strict=True))
        count = totals["episodes"]
        out = {name: (value / count if count else float("nan")) for name, value in totals.items()}
        out["episodes"] = count
        out.update({f"reward/{name}": float(value) for name, value in self.reward_stats.items()})
        for total in self.totals.values():
            total.zero_()
        self.reward_stats = {}
        return out
