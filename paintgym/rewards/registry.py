"""Rewards by name, and the spec syntax that composes them.

A spec is a comma-separated list of terms ``name[(key=value, ...)][:weight]``, for example::

    target:1.0, harmony:0.2, novelty(k=5):0.5
    gan(checkpoint=runs/gan/ckpt.pt):1.0
    target(metric=l1)

Values are read as int, float, bool (``true``/``false``) or else kept as strings; the weight
defaults to 1.
"""

from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from paintgym.rewards.base import Reward

REGISTRY: dict[str, type[Reward]] = {}


def register(cls: type[Reward]) -> type[Reward]:
    """Class decorator: make a reward available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute `name`")
    REGISTRY[cls.name] = cls
    return cls


class RewardSpecError(ValueError):
    """A reward spec names an unknown reward or option, or cannot be parsed."""


@dataclass
class TermSpec:
    """One parsed term of a spec."""

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


_TERM = re.compile(r"^\s*([A-Za-z_][\w-]*)\s*(?:\((.*)\))?\s*(?::\s*([-+0-9.eE]+))?\s*$", re.S)


def _value(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip("'\"")


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char == "(") - (char == ")")
        if depth < 0:
            raise RewardSpecError(f"unbalanced ')' in reward spec {text!r}")
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise RewardSpecError(f"unbalanced '(' in reward spec {text!r}")
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_spec(spec: str) -> list[TermSpec]:
    """Parse a reward spec string into terms (names are not checked here)."""
    terms = []
    for part in _split_top_level(spec):
        match = _TERM.match(part)
        if match is None:
            raise RewardSpecError(
                f"cannot parse reward term {part.strip()!r}; write name, name:weight or name(key=value):weight"
            )
        name, options_text, weight = match.groups()
        options = {}
        for item in _split_top_level(options_text or ""):
            if "=" not in item:
                raise RewardSpecError(f"reward option {item.strip()!r} in {part.strip()!r} must be key=value")
            key, value = item.split("=", 1)
            options[key.strip()] = _value(value)
        terms.append(TermSpec(name, float(weight) if weight is not None else 1.0, options))
    if not terms:
        raise RewardSpecError("empty reward spec; name at least one reward, e.g. 'target'")
    return terms


def option_name(parameter: str) -> str:
    """The spec option of a constructor parameter: a Python keyword is spelled with a trailing ``_`` in
    the signature (``class_``) and without it in a spec (``class=7``)."""
    stripped = parameter[:-1] if parameter.endswith("_") else parameter
    return stripped if keyword.iskeyword(stripped) else parameter


def parameter_name(option: str) -> str:
    """The constructor parameter of a spec option (the inverse of :func:`option_name`)."""
    return option + "_" if keyword.iskeyword(option) else option


def reward_options(cls: type[Reward]) -> dict[str, Any]:
    """Keyword options of a reward class (as written in a spec) and their defaults."""
    parameters = inspect.signature(cls.__init__).parameters
    return {
        option_name(name): (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_term(term: TermSpec, **context: Any) -> Reward:
    """Instantiate one term; ``context`` (e.g. ``device``) is passed to rewards that accept it."""
    cls = REGISTRY.get(term.name)
    if cls is None:
        raise RewardSpecError(f"unknown reward {term.name!r}; available: {', '.join(sorted(REGISTRY))}")
    known = reward_options(cls)
    unknown = sorted(set(term.options) - set(known))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise RewardSpecError(f"reward {term.name!r} has no option {', '.join(unknown)}; its options: {listed}")
    kwargs = {key: value for key, value in context.items() if key in known and key not in term.options}
    options = {parameter_name(key): value for key, value in term.options.items()}
    try:
        return cls(**kwargs, **options)
    except (TypeError, ValueError) as err:
        raise RewardSpecError(f"reward {term.name!r}: {err}") from err
