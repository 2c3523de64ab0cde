"""``paintgym train`` / ``python train.py``.

Until the agents land, training is a random policy: this runs :mod:`envs.demo`.
"""

from __future__ import annotations

from envs import demo


def main(argv: list[str] | None = None) -> int:
    return demo.main(argv)
