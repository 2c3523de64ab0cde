"""The reward interface: batched torch in, ``(B,)`` rewards out, on the env's device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

CONDITION = "condition"
"""The class option of a reward that scores the class each episode was asked to paint: ``class=condition``."""


def check_condition(condition: torch.Tensor | None, classes: int, name: str) -> torch.Tensor:
    """The episodes' classes ``(B,)`` int64 for a reward written with ``class=condition``.

    :raises ValueError: no condition (the env was made without ``condition``) or a class outside ``[0, classes)``.
    """
    if condition is None:
        raise ValueError(f"reward {name!r} with class=condition scores the class each episode was asked to paint, "
                         "but got none: make the env with condition=True (paintgym train --condition)")
    condition = torch.as_tensor(condition).long()
    if condition.numel() and not bool(((condition >= 0) & (condition < classes)).all()):
        raise ValueError(f"reward {name!r}: condition classes must lie in [0, {classes}), got "
                         f"{sorted(set(condition.tolist()))}")
    return condition


@dataclass
class StepContext:
    """What a reward sees after one env step. All tensors are on the env's device.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1], the canvases after the step.
    :param prev_canvas: ``(B, 3, H, W)`` the canvases before the step, or None unless some term
        sets ``needs_prev_canvas`` (the env then keeps a copy).
    :param target: ``(B, 3, H, W)`` float in [0, 1], or None for tasks without a target.
    :param strokes: ``(B, S, 13)`` the strokes of this step (layout in :mod:`canvas.strokes`).
    :param step: ``(B,)`` int64, steps taken in the episode including this one (1 .. max_steps).
    :param done: ``(B,)`` bool, episodes that end with this step.
    :param active: ``(B,)`` bool, envs that really stepped (False for envs being autoreset), or
        None when every env stepped.
    :param changed_rows: ``(B, 2)`` int64 CPU, the canvas rows ``[lo, hi]`` (inclusive) this step may
        have changed (``lo > hi``: none), when the renderer reports them (the CPU fast path); None:
        anywhere. Rewards that sum over rows can then update only those rows.
    :param condition: ``(B,)`` int64, the class each episode was asked to paint (the env's
        ``condition`` option), or None. Rewards written with ``class=condition`` score that class.
    """

    canvas: torch.Tensor
    prev_canvas: torch.Tensor | None
    target: torch.Tensor | None
    strokes: torch.Tensor
    step: torch.Tensor
    done: torch.Tensor
    active: torch.Tensor | None
    changed_rows: torch.Tensor | None = None
    condition: torch.Tensor | None = None


class Reward:
    """Base class of every reward.

    A reward is either **dense** — paid every step as the change of a potential
    ``score(canvas, target)``, so an episode's rewards sum to the final minus the initial
    potential — or **terminal** — ``score`` paid once, on the step that ends the episode (as SPIRAL).
    Subclasses implement :meth:`score`; rewards that are not a function of the canvas (a stroke
    cost, say) override :meth:`step` instead. Rewards that learn from finished paintings override
    :meth:`update`, :meth:`state_dict` and :meth:`load_state_dict`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dense: ClassVar[bool] = True
    needs_target: ClassVar[bool] = False
    needs_prev_canvas: ClassVar[bool] = False
    learns: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False
    """Whether :meth:`score` is differentiable in the canvas when the canvas requires grad. The
    model-based agent backpropagates such terms through the renderer into its strokes; the others
    reach it only through its learned critic."""
    uses_condition: bool = False
    """Whether the reward scores the class each episode was asked to paint (``class=condition``): its
    :meth:`score` then takes ``condition`` ``(B,)`` int64, and :attr:`num_classes` says how many
    classes it knows (the env's ``condition`` option draws from them)."""
    num_classes: int = 0

    def __init__(self) -> None:
        self._potential: torch.Tensor | None = None  # (B,) last potential, for dense rewards

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Rate paintings: ``canvas`` ``(B, 3, H, W)`` float in [0, 1] -> ``(B,)`` float32.

        The potential of a dense reward, the terminal value of a terminal one. Rewards that are
        :attr:`differentiable` keep the graph when ``canvas`` requires grad (their fast paths are
        for canvases that do not).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement score() or step()")

    def rate(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
             condition: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`score`, given the episodes' classes ``condition`` ``(B,)`` int64 when the reward
        :attr:`uses_condition` (the others do not take it): ``(B,)`` float32."""
        if self.uses_condition:
            return self.score(canvas, target, condition=condition)  # type: ignore[call-arg]
        return self.score(canvas, target)

    def reset(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
              condition: torch.Tensor | None = None) -> None:
        """Episodes start where ``mask`` ``(B,)`` is True, on ``canvas`` (usually blank), asked to paint
        class ``condition`` ``(B,)`` int64 (None: the task has no condition)."""
        if not self.dense:
            return
        potential = self.reset_potential(canvas, target, mask, condition).detach()
        if self._potential is None or self._potential.shape != potential.shape:
            self._potential = potential
        else:
            self._potential = torch.where(mask, potential, self._potential)

    def step(self, ctx: StepContext) -> torch.Tensor:
        """Reward of one step, ``(B,)`` float32 (zero where ``ctx.active`` is False)."""
        if self.dense:
            if self._potential is None:
                raise RuntimeError(f"reward {self.name!r}: reset() must be called before step()")
            potential = self.step_potential(ctx).detach()
            reward = potential - self._potential
            if ctx.active is None:
                self._potential = potential
                return reward
            self._potential = torch.where(ctx.active, potential, self._potential)
            return torch.where(ctx.active, reward, torch.zeros_like(reward))
        ends = ctx.done if ctx.active is None else ctx.done & ctx.active
        reward = torch.zeros(ends.shape[0], device=ends.device)
        finished = int(ends.sum())  # one host sync; the env syncs on done anyway
        if finished == 0:  # a terminal reward costs nothing until some episode ends
            return reward
        if finished == ends.shape[0]:
            return reward.add_(self.rate(ctx.canvas, ctx.target, ctx.condition).detach())
        index = ends.nonzero().squeeze(1)  # score only the paintings that are finished
        target = None if ctx.target is None else ctx.target[index]
        condition = None if ctx.condition is None else ctx.condition[index]
        return reward.index_copy_(0, index, self.rate(ctx.canvas[index], target, condition).detach().float())

    def reset_potential(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
                        condition: torch.Tensor | None = None) -> torch.Tensor:
        """A dense reward's potential ``(B,)`` at episode start (valid at least where ``mask`` is True).
        Override with :meth:`step_potential` to keep incremental state; the default is :meth:`rate`."""
        return self.rate(canvas, target, condition)

    def step_potential(self, ctx: StepContext) -> torch.Tensor:
        """A dense reward's potential ``(B,)`` after a step; the default is :meth:`rate`."""
        return self.rate(ctx.canvas, ctx.target, ctx.condition)

    def update(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        """Learn from finished paintings ``(N, 3, H, W)``; returns statistics to log."""
        return {}

    def to(self, device: torch.device | str) -> Reward:
        """Move any tensors or modules to ``device``."""
        if self._potential is not None:
            self._potential = self._potential.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        """What must be saved with a training checkpoint (learned parameters, archives)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def options(self) -> dict[str, Any]:
        """The options this reward was built with (for the run record)."""
        return {}
