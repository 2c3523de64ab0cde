"""Configuration dataclasses <-> command-line flags and TOML files.

Hyperparameters are documented once, CleanRL style: a dataclass field followed by a one-line
docstring. :func:`field_docs` reads those docstrings (from the class source) for ``--help``;
:func:`add_dataclass_arguments` turns the fields into flags (``learning_rate`` -> ``--learning-rate``,
booleans as ``--flag/--no-flag``); :func:`load_toml` and :func:`dump_toml` read and write flat TOML
files with the same keys.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import os
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message says which key and what is expected."""


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstring under each field of dataclass ``cls`` (empty if the source is missing)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """``{name: (base type, optional)}`` for each field: ``float | None`` -> ``(float, True)``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        optional = False
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0]
        out[field.name] = (hint, optional)
    return out


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                            skip: tuple[str, ...] = ()) -> None:
    """Add a flag per field of ``cls``; defaults are suppressed so that only given flags are parsed."""
    docs, kinds = field_docs(cls), field_types(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, optional = kinds[field.name]
        default = field.default
        help_text = f"{docs.get(field.name, '')} (default: {default})".replace("%", "%%")  # argparse formats help
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=_optional(kind) if optional else kind, default=argparse.SUPPRESS,
                                metavar=kind.__name__.upper(), help=help_text)


def coerce(cls: type, values: dict[str, Any], origin: str) -> dict[str, Any]:
    """Check ``values`` against the fields of ``cls`` (types, unknown keys) and convert ints to floats."""
    kinds = field_types(cls)
    out = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in kinds:
            raise ConfigError(f"unknown key {key!r} in {origin}; valid keys: {', '.join(sorted(kinds))}")
        kind, optional = kinds[name]
        if value is None and optional:
            out[name] = None
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{key} in {origin} must be of type {kind.__name__}, got {value!r}")
        else:
            out[name] = value
    return out


def read_toml(path: Path, what: str = "config file", error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Parse a TOML file; a missing, folder or malformed file raises ``error`` naming it as ``what``."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder; give a {what.split()[0]} TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{what} {path} is not valid TOML: {err}") from None


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a flat TOML file of options (keys as the flags, ``-`` or ``_``)."""
    path = Path(path)
    data = read_toml(path)
    nested = [key for key, value in data.items() if isinstance(value, dict)]
    if nested:
        raise ConfigError(f"config file {path} must be flat (key = value lines); found table(s) {nested}")
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def dump_toml(values: dict[str, Any], header: str = "") -> str:
    """A flat TOML document of ``values``; keys whose value is None are written as comments."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in values.items():
        lines.append(f"# {key} = none" if value is None else f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
