"""``paintgym rewards``: list the rewards, show one in full, or check a reward spec.

    paintgym rewards                                  # every reward: kind, description, options
    paintgym rewards novelty                          # the full documentation of one reward
    paintgym rewards --spec "target:1.0, harmony:0.2" # build a spec and show its terms
"""

from __future__ import annotations

import argparse
import sys

from paintgym import rewards


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paintgym rewards", description=__doc__.splitlines()[0],
                                     epilog="spec syntax: name[(key=value, ...)][:weight], comma-separated, "
                                            "e.g. 'target(metric=ssim):1.0, novelty(k=10):0.5'")
    parser.add_argument("name", nargs="?", help="show the full documentation of this reward")
    parser.add_argument("--spec", help="build this reward spec and print its terms (checks names and options)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``paintgym rewards``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.spec is not None:
            composite = rewards.build(args.spec)
            for key, weight, term in composite.terms:
                kind = "dense" if term.dense else "terminal"
                print(f"{key:<12} weight {weight:<8g} {kind:<9} {term.options() or ''}")
            print(f"spec: {composite.spec()}")
            return 0
        print(rewards.describe(args.name))
    except rewards.RewardSpecError as err:
        print(f"paintgym rewards: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
