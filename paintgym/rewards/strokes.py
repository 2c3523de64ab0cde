"""A cost per stroke, so that economy of strokes can be traded against fidelity."""

from __future__ import annotations

import torch

from paintgym.rewards.base import Reward, StepContext
from paintgym.rewards.registry import register

# a0, a1: the opacity at the stroke's start and end in the layout of canvas.strokes.FIELDS (not imported
# from there: envs imports rewards; a test checks the indices)
_OPACITY = [8, 9]


@register
class StrokeCost(Reward):
    """Dense cost of painting: ``-1`` for every visible stroke painted this step.

    A stroke is visible when its opacity (the larger of ``a0`` and ``a1``) exceeds ``min_opacity``;
    with the default 0 only fully transparent strokes are free, so an agent that learns to spend few
    strokes can end its painting early by painting invisible ones. Weighted against ``target``, e.g.
    ``"target:1.0, strokes:0.001"``, it prices each stroke in units of reconstruction error.

    The cost is a function of the actions, not of the canvas: :meth:`score` of a finished painting
    cannot see the strokes that made it and returns 0, so an episode's ``strokes`` rewards sum to
    minus the number of visible strokes, not to a change of :meth:`score`.

    :param min_opacity: strokes with opacity at most this are invisible and cost nothing, in [0, 1).
    """

    name = "strokes"
    description = "-1 per visible stroke painted this step (opacity > min_opacity)"

    def __init__(self, min_opacity: float = 0.0) -> None:
        super().__init__()
        if not isinstance(min_opacity, (int, float)) or not 0.0 <= min_opacity < 1.0:
            raise ValueError(f"min_opacity must be a number in [0, 1), got {min_opacity!r}")
        self.min_opacity = float(min_opacity)

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """0 for every painting ``(B,)``: the strokes behind a canvas are not visible in it."""
        return torch.zeros(canvas.shape[0], device=canvas.device)

    def reset(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
              condition: torch.Tensor | None = None) -> None:
        """Nothing to remember between steps."""

    def step(self, ctx: StepContext) -> torch.Tensor:
        """Minus the number of visible strokes in ``ctx.strokes`` ``(B, S, 13)``: ``(B,)`` float32."""
        opacity = ctx.strokes[..., _OPACITY].amax(dim=-1)  # (B, S)
        visible = (opacity > self.min_opacity).sum(dim=1)
        cost = torch.zeros(visible.shape, device=visible.device).sub_(visible)  # 0 - n: no -0.0
        if ctx.active is not None:
            cost = torch.where(ctx.active, cost, torch.zeros_like(cost))
        return cost

    def options(self) -> dict[str, float]:
        return {"min_opacity": self.min_opacity}
