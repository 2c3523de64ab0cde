"""Pluggable rewards for paintgym, composed by name and weight.

>>> import rewards
>>> reward = rewards.build("target:1.0")
>>> sorted(rewards.available())[:2]
['target', 'zero']
"""

from __future__ import annotations

import inspect
from typing import Any

from paintgym.rewards import classifier as _classifier  # noqa: F401
from paintgym.rewards import gan as _gan  # noqa: F401
from paintgym.rewards import harmony as _harmony  # noqa: F401  (each module registers its rewards)
from paintgym.rewards import novelty as _novelty  # noqa: F401
from paintgym.rewards import strokeprior as _strokeprior  # noqa: F401
from paintgym.rewards import strokes as _strokes  # noqa: F401
from paintgym.rewards import style as _style  # noqa: F401
from paintgym.rewards import target as _target  # noqa: F401  (registers its rewards)
from paintgym.rewards.base import Reward, StepContext
from paintgym.rewards.composite import Composite
from paintgym.rewards.registry import REGISTRY, RewardSpecError, parse_spec, register, reward_options
from paintgym.rewards.registry import make_term as _make_term

__all__ = ["Composite", "Reward", "RewardSpecError", "StepContext", "available", "build", "describe",
           "parse_spec", "register", "reward_options"]


def build(spec: str | Reward, **context: Any) -> Composite:
    """The composite reward for a spec string such as ``"target:1.0, harmony:0.2"``.

    :param spec: a spec string (syntax in :mod:`rewards.registry`) or a ready reward.
    :param context: passed to rewards that take it, e.g. ``device="cuda"``.
    :raises RewardSpecError: for unknown rewards or options, or a spec that does not parse.
    """
    if isinstance(spec, Composite):
        return spec
    if isinstance(spec, Reward):
        return Composite([(spec.name, 1.0, spec)])
    terms, seen = [], {}
    for term in parse_spec(spec):
        seen[term.name] = seen.get(term.name, 0) + 1
        key = term.name if seen[term.name] == 1 else f"{term.name}_{seen[term.name]}"
        terms.append((key, term.weight, _make_term(term, **context)))
    return Composite(terms)


def available() -> dict[str, type[Reward]]:
    """Every registered reward by name."""
    return dict(REGISTRY)


def describe(name: str | None = None) -> str:
    """What ``paintgym rewards`` prints: every reward with its kind, a one-line description and its
    options (with defaults); or, for one ``name``, its full documentation.

    :raises RewardSpecError: for an unknown ``name`` (the message lists the rewards).
    """
    if name is not None:
        cls = REGISTRY.get(name)
        if cls is None:
            raise RewardSpecError(f"unknown reward {name!r}; available: {', '.join(sorted(REGISTRY))}")
        kind = "dense" if cls.dense else "terminal"
        flags = "".join([", learns" if cls.learns else "", ", differentiable" if cls.differentiable else ""])
        doc = inspect.cleandoc(cls.__doc__ or cls.description)
        return f"{name} [{kind}{flags}]: {cls.description}\n\n{doc}"
    lines = []
    for reward_name, cls in sorted(REGISTRY.items()):
        options = ", ".join(f"{k}={v!r}" for k, v in reward_options(cls).items() if k != "device")
        kind = "dense" if cls.dense else "terminal"
        grad = "grad" if cls.differentiable else "-"
        lines.append(f"{reward_name:<10} {kind:<9} {grad:<5} {cls.description}")
        lines.append(f"{'':<26} options: {options or 'none'}")
    lines += ["", "grad: differentiable in the canvas; the model-based agent (--agent model-based) backpropagates "
              "these through the renderer into its strokes, and learns the others only through its critic"]
    return "\n".join(lines)
