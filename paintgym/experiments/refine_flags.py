"""The ``--refine*`` flags shared by ``paintgym eval``, ``paintgym paint`` and the benchmarks.

A trained agent's paintings refined by Adam steps through the renderer
(:func:`agents.painters.refined`): ``--refine K`` steps, ``--refine-prefix-weight W`` for every
prefix painting, ``--refine-coarse-to-fine F`` of the steps at half size, ``--refine-keep-first N``
strokes left as the agent painted them.
"""

from __future__ import annotations

import argparse
import math

from paintgym.agents.painters import REFINE_PREFIX_WEIGHT, OptimisePainter, Painter, refined

REFINE_DEFAULT_STEPS = 50  # what the help suggests: 50 steps come within 0.5 dB of optimise at 64 px


def add_refine_arguments(parser: argparse.ArgumentParser, steps_help: str, steps_default: int | None = None) -> None:
    """Add ``--refine`` (help ``steps_help``, default ``steps_default``; None: no refinement) and the options of
    the refinement to ``parser``."""
    parser.add_argument("--refine", type=int, metavar="K", default=steps_default, help=steps_help)
    parser.add_argument("--refine-prefix-weight", type=float, default=REFINE_PREFIX_WEIGHT, metavar="W",
                        help="with --refine: weight of each prefix painting (the first 1, 2, 4, ... strokes) in the "
                        "refinement's loss beside the whole painting's; 0 refines each stroke count's painting "
                        "alone (higher PSNR at that count, one refinement per count) "
                        f"(default: {REFINE_PREFIX_WEIGHT})")
    parser.add_argument("--refine-coarse-to-fine", type=float, default=0.0, metavar="F",
                        help="with --refine: fraction of the refinement steps at half size, in [0, 1) (cheaper steps: "
                        "at 64 px, --refine 20 with 0.75 paints about as fast as --refine 10, and better) (default: 0)")
    parser.add_argument("--refine-keep-first", type=int, default=0, metavar="N",
                        help="with --refine: leave the agent's first N strokes as they are (its largest, the dearest "
                        "to refine and the least improved: at 64 px, 1 gives the same PSNR at 32 strokes with 15-20%% "
                        "cheaper steps, less at 1 and 2 strokes) (default: 0)")


def check_refine_arguments(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the flag for a refinement option that cannot work."""
    if args.refine is not None and args.refine < 0:
        raise ValueError(f"--refine must be a number of steps >= 0, got {args.refine}")
    if not (args.refine_prefix_weight >= 0 and math.isfinite(args.refine_prefix_weight)):
        raise ValueError(f"--refine-prefix-weight must be a number >= 0, got {args.refine_prefix_weight}")
    if not 0.0 <= args.refine_coarse_to_fine < 1.0:
        raise ValueError(f"--refine-coarse-to-fine is the fraction of steps at half size, in [0, 1); "
                         f"got {args.refine_coarse_to_fine}")
    if args.refine_keep_first < 0:
        raise ValueError(f"--refine-keep-first must be a number of strokes >= 0, got {args.refine_keep_first}")


def refiner(painter: Painter, args: argparse.Namespace) -> OptimisePainter:
    """``painter``'s paintings refined as the flags in ``args`` say (``args.refine`` steps)."""
    return refined(painter, args.refine, args.refine_prefix_weight, args.refine_coarse_to_fine,
                   args.refine_keep_first)
