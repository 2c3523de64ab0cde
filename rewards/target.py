"""Reconstruction towards a target image, and the zero reward of free painting."""

from __future__ import annotations

import torch

from rewards.base import Reward
from rewards.registry import register


@register
class TargetReward(Reward):
    """Dense reconstruction reward: the decrease of the distance to the target (Learning to Paint).

    The potential is ``-distance(canvas, target)``, so an episode's return is the initial minus the
    final distance.

    :param metric: ``l2`` (mean squared error, default) or ``l1`` (mean absolute error), over pixels
        and channels.
    """

    name = "target"
    description = "dense: decrease of the distance to the target image (metric=l2|l1)"
    needs_target = True
    METRICS = ("l2", "l1")

    def __init__(self, metric: str = "l2") -> None:
        super().__init__()
        if metric not in self.METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(self.METRICS)}")
        self.metric = metric

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if target is None:
            raise ValueError("the 'target' reward needs a target image; use a task with targets "
                             "(paintgym/Reconstruct-v0) or another reward")
        diff = torch.sub(canvas, target)
        distance = diff.square_() if self.metric == "l2" else diff.abs_()
        return distance.view(distance.shape[0], -1).mean(dim=1).neg_()  # faster than a 3-dim mean

    def options(self) -> dict[str, str]:
        return {"metric": self.metric}


@register
class ZeroReward(Reward):
    """No reward at all: free painting, or a placeholder term while designing a reward."""

    name = "zero"
    description = "always 0 (free painting)"

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(canvas.shape[0], device=canvas.device)
