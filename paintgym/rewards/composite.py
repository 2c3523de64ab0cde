"""A weighted sum of reward terms that reports each term separately."""

from __future__ import annotations

from typing import Any

import torch

from paintgym.rewards.base import Reward, StepContext


class Composite(Reward):
    """``reward = sum_i weight_i * term_i``; :meth:`step_terms` also returns each unweighted term.

    :param terms: ``(key, weight, reward)`` triples; keys are unique (``target``, ``target_2``, ...).
    """

    name = "composite"
    description = "weighted sum of reward terms"

    def __init__(self, terms: list[tuple[str, float, Reward]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a composite reward needs at least one term")
        self.terms = terms

    @property
    def keys(self) -> list[str]:
        return [key for key, _, _ in self.terms]

    @property
    def needs_target(self) -> bool:  # type: ignore[override]
        return any(term.needs_target for _, _, term in self.terms)

    @property
    def needs_prev_canvas(self) -> bool:  # type: ignore[override]
        return any(term.needs_prev_canvas for _, _, term in self.terms)

    @property
    def learns(self) -> bool:  # type: ignore[override]
        return any(term.learns for _, _, term in self.terms)

    @property
    def uses_condition(self) -> bool:  # type: ignore[override]
        return any(term.uses_condition for _, _, term in self.terms)

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """The classes of the terms that score the episode's class (``class=condition``); 0 without such
        terms. :raises ValueError: if those terms disagree."""
        counts = {key: term.num_classes for key, _, term in self.terms if term.uses_condition}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{key}: {count}" for key, count in counts.items())
            raise ValueError(f"the terms with class=condition know different numbers of classes ({listed}); "
                             "the episode's class must mean the same to all of them")
        return next(iter(counts.values()), 0)

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
              condition: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted sum of every term's score, ``(B,)`` (``condition`` ``(B,)`` int64: the episodes' classes,
        for the terms with ``class=condition``)."""
        return sum(weight * term.rate(canvas, target, condition) for _, weight, term in self.terms)

    def rate(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
             condition: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(canvas, target, condition)

    def reset(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
              condition: torch.Tensor | None = None) -> None:
        for _, _, term in self.terms:
            term.reset(canvas, target, mask, condition)

    def step_terms(self, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total reward ``(B,)`` and each unweighted term ``{key: (B,)}``."""
        values = {key: term.step(ctx) for key, _, term in self.terms}
        if len(self.terms) == 1 and self.terms[0][1] == 1.0:
            return values[self.terms[0][0]], values
        total = sum(weight * values[key] for key, weight, _ in self.terms)
        return total.to(torch.float32), values

    def step(self, ctx: StepContext) -> torch.Tensor:
        return self.step_terms(ctx)[0]

    def update(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        stats = {}
        for key, _, term in self.terms:
            stats.update({f"{key}/{name}": value for name, value in term.update(canvas, target).items()})
        return stats

    def to(self, device: torch.device | str) -> Composite:
        for _, _, term in self.terms:
            term.to(device)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {key: term.state_dict() for key, _, term in self.terms}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.keys) - set(state))
        if missing:
            raise ValueError(f"reward state has no entry for term(s) {', '.join(missing)}; was it saved "
                             f"with the same --reward spec ({', '.join(self.keys)})?")
        for key, _, term in self.terms:
            term.load_state_dict(state[key])

    def spec(self) -> str:
        """A spec string that rebuilds this composite."""
        parts = []
        for _key, weight, term in self.terms:
            options = term.options()
            text = term.name + (f"({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
            parts.append(f"{text}:{weight:g}")
        return ", ".join(parts)
