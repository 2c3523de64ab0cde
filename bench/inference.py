"""Inference throughput: images painted per second by trained agents, batched, beside greedy search.

Paints copies of the development images (``../shared/data``; the bundled photos without it) at the
run's canvas size with its whole episode, in batches of ``--batch`` images, deterministically
(:class:`experiments.pretrained.PolicyPainter`: the model-based agent paints whole episodes without the env),
and prints one table: images/s and strokes/s per row, median of ``--repeats`` timed passes after a
warm-up, and the speed-up over the baseline row measured in the same run, greedy search (best of 64
shapes per stroke with least-squares colours) painting the same images with the same stroke count.
With more than one thread, the agent also paints with torch's threads inside each operation (one
batch) instead of one piece of the batch per thread (the default,
:func:`experiments.pretrained.paint_on_threads`). The agent rows refined by ``--refine`` Adam steps
through the renderer (each also with the fractions of them at half size in ``--refine-coarse-to-fine`` and
the agent's first strokes left as they are in ``--refine-keep-first``) show what refinement costs.

    python bench/inference.py --agent runs/MODEL_BASED_RUN [--ppo runs/PPO_RUN] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import DATA, load_dev_images  # noqa: E402
from bench.timing import timed  # noqa: E402
from paintgym.agents.painters import GreedyPainter, refined  # noqa: E402
from paintgym.canvas.images import to_float  # noqa: E402
from paintgym.experiments.device import set_threads  # noqa: E402
from paintgym.experiments.pretrained import PolicyPainter  # noqa: E402


def images_per_second(painter: object, targets: torch.Tensor, strokes: int, repeats: int) -> float:
    """Median images/s of ``painter.paint(targets, strokes)`` over ``repeats`` passes, after one warm-up."""
    return targets.shape[0] / timed(lambda: painter.paint(targets, strokes), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="a trained run (directory or checkpoint)")
    parser.add_argument("--ppo", help="a second trained run to add as a row (e.g. PPO)")
    parser.add_argument("--batch", type=int, default=256, help="images painted at once (default: 256)")
    parser.add_argument("--refine", type=int, nargs="*", default=[20, 50], help="refinement steps to time")
    parser.add_argument("--refine-coarse-to-fine", type=float, nargs="*", default=[0.0],
                        help="fractions of the refinement steps at half size to time (default: 0)")
    parser.add_argument("--refine-keep-first", type=int, nargs="*", default=[0],
                        help="numbers of the agent's first strokes left unrefined to time (default: 0)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per row (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"folder of the dev data (default: {DATA})")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    agent = PolicyPainter(args.agent, "cpu", batch_size=args.batch)
    size, strokes = agent.canvas_size, agent.max_strokes
    images, source = load_dev_images(args.data, size, None)
    copies = -(-args.batch // len(images))
    targets = to_float(np.concatenate([images] * copies)[:args.batch])
    rows: dict[str, float] = {"greedy (baseline)": images_per_second(GreedyPainter(64), targets[:32], strokes, 1)}
    rows[agent.name] = images_per_second(agent, targets, strokes, args.repeats)
    if args.threads > 1:  # the same painting with torch's threads inside each operation instead of one batch each
        agent.threaded_batches = False
        rows[f"{agent.name} (intra-op threads)"] = images_per_second(agent, targets, strokes, args.repeats)
        agent.threaded_batches = True
    if args.ppo:
        other = PolicyPainter(args.ppo, "cpu", batch_size=args.batch)
        rows[other.name if other.name not in rows else f"{other.name} (--ppo)"] = images_per_second(
            other, targets, strokes, args.repeats)
    for steps in args.refine:
        for coarse in args.refine_coarse_to_fine:
            for keep in args.refine_keep_first:
                painter = refined(agent, steps, coarse_to_fine=coarse, keep_first=keep)
                rows[painter.name] = images_per_second(painter, targets[:64], strokes, 1)

    print(f"\n{strokes} strokes per image at {size}x{size}, batch {args.batch}, {args.threads} thread(s), "
          f"targets: {source}")
    width = max(len(name) for name in rows)
    header = f"| {'painter':<{width}} | {'images/s':>9} | {'strokes/s':>10} | {'vs greedy':>9} |"
    print(header)
    print("|" + "-" * (width + 2) + "|" + "-" * 10 + ":|" + "-" * 11 + ":|" + "-" * 10 + ":|")
    baseline = rows["greedy (baseline)"]
    for name, rate in rows.items():
        print(f"| {name:<{width}} | {rate:9.4g} | {rate * strokes:10.4g} | {rate / baseline:8.3g}x |")
    print("greedy and the refined rows paint fewer images per pass (32 and 64); images/s does not depend on it much")
    return 0


if __name__ == "__main__":
    sys.exit(main())
