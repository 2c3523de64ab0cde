"""Configuration dataclasses -> command-line flags, with tyro (as CleanRL does).

Every field is a flag named after it (``learning_rate`` -> ``--learning-rate``; booleans as
``--flag`` / ``--no-flag``; ``None`` for an optional value), its docstring the ``--help`` text. The
defaults tyro starts from are the lower layers of :func:`experiments.config.resolve_options` (the
dataclass defaults, the checkpoint's options, the ``--config`` file), so ``--help`` shows the values a
run would get, and only the flags given override them. A few flags decide those layers (``--config``,
``--resume``, ``--agent``, ``--out``); :func:`peek` reads them first.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Annotated, Any

import tyro

CONFIG_HELP = "TOML file of options, key = value lines named like the flags (flags given override it)"


def peek(argv: list[str], flags: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """The values of a few flags in ``argv``, before the full parse (everything else is ignored).

    :param flags: ``{"--flag": argparse keyword arguments}``, e.g. ``{"--resume": {"action": "store_true"}}``.
    """
    parser = argparse.ArgumentParser(add_help=False)
    for flag, options in flags.items():
        parser.add_argument(flag, **options)
    known, _ = parser.parse_known_args(argv)
    return known


def parse_flags(groups: list[tuple[str, Any]], argv: list[str], prog: str, description: str) -> list[Any]:
    """Parse ``argv`` into one instance per group, starting from the group's default instance.

    Groups share one namespace of flags (no prefixes); ``--config FILE`` is accepted and listed too (its
    file is one of the layers the defaults came from). ``--help`` prints and exits 0; a bad flag prints
    what is wrong and exits 2.

    :param groups: ``(title, default instance of a dataclass)``; the title names the group in ``--help``.
    :param description: ``--help``'s text above the options (examples included).
    """
    fields: list[Any] = [("config", Annotated[str | None, tyro.conf.arg(metavar="FILE", help=CONFIG_HELP)],
                          dataclasses.field(default=None))]
    fields += [(title.replace("-", "_").replace(" ", "_"), Annotated[type(instance), tyro.conf.OmitArgPrefixes],
                dataclasses.field(default=None)) for title, instance in groups]
    options = dataclasses.make_dataclass("Options", fields)
    parsed = tyro.cli(options, default=options(None, *[instance for _, instance in groups]), args=argv, prog=prog,
                      description=description, config=(tyro.conf.OmitArgPrefixes,))
    return [getattr(parsed, name) for name, *_ in fields[1:]]
