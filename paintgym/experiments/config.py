"""Configuration dataclasses <-> TOML files, and the layering every training command resolves its options by.

Options are dataclass fields, documented once, CleanRL style: the field, then a one-line docstring
(``--help`` shows it; :mod:`experiments.flags` turns the fields into flags). A run's options come
from layers, in rising precedence::

    the dataclass defaults  <  the checkpoint's options (--resume)  <  a TOML file (--config)  <  the flags given

:func:`resolve_options` merges the first three (checking every key and type, naming the layer at
fault), and the flags are parsed on top of the result. :func:`load_toml` and :func:`dump_toml` read
and write flat TOML files with the same keys (``learning_rate`` or ``learning-rate``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
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


def resolve_options(classes: list[type], layers: list[tuple[str, dict[str, Any]]], context: str = ""
                    ) -> list[dict[str, Any]]:
    """Merge layers of options, lowest precedence first, into keyword arguments for each of ``classes``.

    :param classes: dataclasses whose fields share one namespace (e.g. ``TrainConfig`` and ``PPOArgs``).
    :param layers: ``(origin, {key: value})``; keys as the fields or the flags (``-`` or ``_``).
    :param context: appended to the origin in messages (e.g. ``" for --agent ppo"``).
    :return: per class, the options the layers set (as the class's types: ints become floats where due).
    :raises ConfigError: an unknown key or a wrong type, naming the key, the layer and what is valid.
    """
    owners = {field.name: cls for cls in classes for field in dataclasses.fields(cls)}
    merged: list[dict[str, Any]] = [{} for _ in classes]
    for origin, values in layers:
        values = {key.replace("-", "_"): value for key, value in values.items()}
        unknown = [key for key in values if key not in owners]
        if unknown:
            listed = ", ".join(repr(key) for key in unknown)
            raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} {listed} in {origin}{context}; "
                              f"valid: {', '.join(sorted(owners))}")
        for index, cls in enumerate(classes):
            mine = {key: value for key, value in values.items() if owners[key] is cls}
            merged[index].update(coerce(cls, mine, origin))
    return merged


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


def show_value(value: Any) -> str:
    """An option's value as a configuration's name shows it: ``true``, ``0.001``, ``default`` for None."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def slug(text: str, limit: int = 80) -> str:
    """``text`` as a folder or file name: runs of other characters than letters, digits and ``.+=-`` become
    ``_``, at most ``limit`` characters (``config`` when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9.+=-]+", "_", text).strip("._")[:limit] or "config"
