"""``paintgym eval`` and ``paintgym optimise``: measure how well paintings match their targets.

``paintgym eval RUN_DIR|CHECKPOINT`` paints targets with a trained agent; ``paintgym eval --painter
random|greedy|optimise`` with a painter that needs no training (:mod:`agents.painters`). Every target
is painted with N strokes; the first ``n = 1, 2, 4, ..., N`` strokes are rendered at ``--size`` and
compared with the target: mean L2, PSNR (the mean of each image's dB) and SSIM, and images painted
per second of painting time. The output folder gets::

    quality.csv              one row per painter, N, n and image, and a mean row per painter, N and n
    paintings/NAME_N_I.png   each final painting re-rendered from its strokes at --png-size
    paintings/NAME_N_I.svg   the same as an SVG of its strokes
    contact_sheet_NAME_N.png paintings beside their targets (the first 64)

Defaults: a trained run paints its own held-out targets at its canvas size with its episode's
strokes; painters paint the 17 ``photos`` bundled with scikit-image and scikit-learn at 64x64 with
32 strokes. ``paintgym optimise IMAGE`` paints one image with :class:`agents.painters.OptimisePainter`.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from paintgym.agents.painters import make_painter, paint_and_measure, resize_images
from paintgym.canvas.export import atomic_write_bytes, render_strokes, save_png, save_svg
from paintgym.canvas.images import load_images, to_float, to_uint8
from paintgym.canvas.video import grid
from paintgym.envs.targets import TargetSource, is_prior_spec
from paintgym.experiments.device import resolve_device, set_threads
from paintgym.experiments.pretrained import PolicyPainter
from paintgym.experiments.refine_flags import (
    REFINE_DEFAULT_STEPS,
    add_refine_arguments,
    check_refine_arguments,
    refiner,
)

EXAMPLES = """examples:
  paintgym eval --painter greedy --strokes 8 16 32 --out eval/greedy
  paintgym eval --painter optimise --targets photos --size 64 --strokes 32 --limit 8
  paintgym eval runs/ppo-Reconstruct-v0-s1-20250101-120000            # its held-out targets
  paintgym eval RUN_DIR/checkpoint.pt --targets my_paintings/ --size 128 --png-size 512
  paintgym eval RUN_DIR --targets ../shared/data/photos-coco20 --refine 50    # + 50 Adam steps per painting
  paintgym eval --painter greedy --targets sketch:omniglot --size 32 --strokes 12 --prior runs/omniglot
"""
OPTIMISE_EXAMPLES = """examples:
  paintgym optimise photo.jpg --strokes 64 --size 64 --out painting.png --out painting.svg
  paintgym optimise photo.jpg --strokes 128 --size 128 --steps 300 --out painting.mp4 --out-size 512
  paintgym optimise photos --index 2 --strokes 32 --out coffee.png     # the third bundled photo
"""
DESCRIPTION = ("Paint targets with a trained agent (RUN_DIR or its checkpoint) or with a painter that needs no "
               "training (--painter random|greedy|optimise), and measure mean PSNR, L2 and SSIM after 1, 2, 4, ... "
               "N strokes, and images painted per second. Writes quality.csv, each final painting as PNG and SVG, "
               "and contact sheets of the paintings beside their targets to --out.")
PAINTER_DEFAULT_TARGETS = "photos"
PAINTER_DEFAULT_SIZE = 64
PAINTER_DEFAULT_STROKES = 32
SHEET_IMAGES = 64  # paintings on a contact sheet
SHEET_TILE = 96  # side of each painting and target on a contact sheet


# ------------------------------------------------------------------------------------------- eval
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paintgym eval", description=DESCRIPTION,
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT",
                        help="a run directory of paintgym train, or its checkpoint.pt (or give --painter)")
    parser.add_argument("--painter", help="a painter that needs no training: random, greedy or optimise")
    parser.add_argument("--targets", action="append", metavar="SPEC",
                        help="images to paint: digits, faces, photos, a folder, an image file or .npy/.npz; may be "
                        "given several times (default: a run's held-out targets; for painters: "
                        f"{PAINTER_DEFAULT_TARGETS})")
    parser.add_argument("--size", type=int, help="side in pixels the targets are loaded and the paintings measured "
                        f"at (default: a run's canvas size; for painters: {PAINTER_DEFAULT_SIZE})")
    parser.add_argument("--strokes", type=int, nargs="+", metavar="N",
                        help="strokes per painting, one or more values (default: a run's episode; for painters: "
                        f"{PAINTER_DEFAULT_STROKES}); quality is measured after 1, 2, 4, ... N strokes")
    parser.add_argument("--limit", type=int, help="paint at most this many images (the first ones)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/eval for a run, eval/PAINTER for a painter)")
    parser.add_argument("--png-size", type=int, default=256, help="side of the PNG and SVG paintings (default: 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="images painted at once (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the painters (default: 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and the renderer (default: 1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    painter = parser.add_argument_group("painter options (see agents/painters.py)")
    painter.add_argument("--candidates", type=int, help="greedy, optimise: random shapes tried per stroke "
                         "(default: 64)")
    painter.add_argument("--steps", type=int, help="optimise: Adam steps (default: 200)")
    painter.add_argument("--lr", type=float, help="optimise: Adam learning rate (default: 0.03)")
    painter.add_argument("--coarse-to-fine", type=float, help="optimise: fraction of the steps at half "
                         "resolution (default: 0.5)")
    painter.add_argument("--init", choices=("greedy", "random"), help="optimise: start (default: greedy)")
    add_refine_arguments(parser, "with a trained run: also refine the agent's paintings by K Adam steps through the "
                         "renderer (optimise from the agent's strokes, every prefix kept a good painting too) and "
                         f"report them as a second row (try {REFINE_DEFAULT_STEPS})")
    parser.add_argument("--prior", metavar="CHECKPOINT",
                        help="also score each painting's strokes under a stroke prior (a paintgym train-strokes run): "
                        "the strokeprior reward's nats per pen point above the prior's Gaussian baseline, higher = "
                        "more like the human drawings it learnt (a column of the table and of quality.csv)")
    return parser



PAINTER_FLAGS = ("candidates", "steps", "lr", "coarse_to_fine", "init")


def painter_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The painter options given on the command line (and the seed)."""
    options = {name: getattr(args, name) for name in PAINTER_FLAGS if getattr(args, name) is not None}
    return {"seed": args.seed, **options}


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` for option values that cannot work, before anything is loaded."""
    if (args.run is None) == (args.painter is None):
        raise ValueError("give either a trained run (RUN_DIR or checkpoint) or --painter NAME, not "
                         f"{'both' if args.run else 'neither'}")
    if args.strokes is not None and min(args.strokes) < 1:
        raise ValueError(f"--strokes must be at least 1, got {min(args.strokes)}")
    for flag, value, low, high in (("--size", args.size, 8, 4096), ("--png-size", args.png_size, 8, 4096),
                                   ("--limit", args.limit, 1, None), ("--batch-size", args.batch_size, 1, None),
                                   ("--threads", args.threads, 1, None)):
        if value is not None and (value < low or (high is not None and value > high)):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{flag} must be {bounds}, got {value}")
    if args.run is not None:
        given = [f"--{name.replace('_', '-')}" for name in PAINTER_FLAGS if getattr(args, name) is not None]
        if given:
            raise ValueError(f"{', '.join(given)} set a painter's options; a trained run takes none")
    elif args.refine is not None:
        raise ValueError("--refine refines a trained agent's paintings: give its RUN_DIR or checkpoint")
    if args.refine is not None and args.refine < 1:
        raise ValueError(f"--refine must be at least 1 step, got {args.refine}")
    check_refine_arguments(args)


def load_targets(specs: list[str], size: int, limit: int | None) -> tuple[Any, list[str]]:
    """The images of every spec, in order, at ``size``: ``(N, size, size, 3)`` uint8 and a name per image.

    Targets made by a model or a stroke dataset (``sketch:NAME``, ``gan:PATH``...) are their held-out
    share, the images a run trained on them is evaluated on."""
    arrays, names = [], []
    for spec in specs:
        if is_prior_spec(spec):
            images = TargetSource.from_spec(spec, size, "cpu", "test").images.numpy()
        else:
            images = load_images(spec, size)
        arrays.append(images)
        names += [f"{spec}[{i}]" for i in range(len(images))]
    images = np.concatenate(arrays)
    if limit is not None:
        images, names = images[:limit], names[:limit]
    return images, names


def run_targets(agent: Any, size: int) -> Any:
    """A trained run's held-out targets at ``size``: ``(N, size, size, 3)`` uint8, and their spec: every image of
    its ``--eval-targets``, else the test split of its ``--targets`` (as its training evaluated)."""
    spec = agent.config.targets or gym.registry[agent.config.env].kwargs.get("targets")
    if spec is None:
        raise ValueError(f"the agent of {agent.checkpoint} was trained on {agent.config.env} without target images, "
                         "so there is nothing to compare its paintings with; evaluate an agent trained on "
                         "paintgym/Reconstruct-v0")
    agent.check_own_targets()
    split = "test"
    if agent.config.eval_targets is not None:  # then every image of --targets trained
        spec, split = agent.config.eval_targets, "all"
    return TargetSource.from_spec(spec, size, "cpu", split).images.numpy(), spec


def format_table(runs: list[Any]) -> str:
    """The printed table: one row per painter, N and prefix n: mean PSNR, L2, SSIM; images/s on the row n = N."""
    width = max([12, *(len(run.painter) for run in runs)])
    prior = any(run.quality.prior is not None for run in runs)
    header = f"{'painter':<{width}} {'N':>5} {'strokes':>8} {'PSNR dB':>8} {'L2':>9} {'SSIM':>7}" \
             f"{' prior' if prior else ''} {'images/s':>9}"
    lines = [header, "-" * len(header)]
    for run in runs:
        for n, values in run.quality.means().items():
            rate = f"{run.images_per_second:9.3g}" if n == run.num_strokes else ""
            score = f" {values['prior']:5.2f}" if "prior" in values else ("      " if prior else "")
            lines.append(f"{run.painter:<{width}} {run.num_strokes:>5} {n:>8} {values['psnr']:8.2f} "
                         f"{values['l2']:9.5f} {values['ssim']:7.3f}{score} {rate:>9}")
    return "\n".join(lines)


def quality_csv(runs: list[Any], names: list[str]) -> bytes:
    """``quality.csv``: per image and mean rows for every painter, N and prefix n (full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    prior = any(run.quality.prior is not None for run in runs)
    writer.writerow(["painter", "num_strokes", "strokes", "image", "target", "l2", "psnr", "ssim", "seconds",
                     "images_per_s", *(["prior"] if prior else [])])
    for run in runs:
        quality = run.quality
        means = quality.means()
        for j, n in enumerate(quality.counts):
            mean_prior = [repr(means[n]["prior"]) if "prior" in means[n] else ""] if prior else []
            writer.writerow([run.painter, run.num_strokes, n, "mean", "", repr(means[n]["l2"]), repr(means[n]["psnr"]),
                             repr(means[n]["ssim"]), repr(run.seconds), repr(run.images_per_second), *mean_prior])
            for i, name in enumerate(names):
                image_prior = ([repr(float(quality.prior[i, j])) if quality.prior is not None else ""]
                               if prior else [])
                writer.writerow([run.painter, run.num_strokes, n, i, name, repr(float(quality.l2[i, j])),
                                 repr(float(quality.psnr[i, j])), repr(float(quality.ssim[i, j])), "", "",
                                 *image_prior])
    return buffer.getvalue().encode()


def _tiles(images: Any, size: int) -> Any:
    """``(B, H, H, 3)`` uint8 -> the same images at ``size`` x ``size`` (area averaging or bicubic)."""

    return to_uint8(resize_images(to_float(images), size)).numpy()


def write_outputs(out: Path, runs: list[Any], strokes: list[int], targets_u8: Any, names: list[str],
                  png_size: int) -> list[Path]:
    """Write quality.csv, each final painting as PNG (at ``png_size``) and SVG, and a contact sheet per
    painter and N; return the files written."""


    written = [atomic_write_bytes(out / "quality.csv", quality_csv(runs, names))]
    shown = min(len(names), SHEET_IMAGES)
    target_tiles = _tiles(targets_u8[:shown], SHEET_TILE)
    for run, n in paintings_of(runs, strokes):
        painted = run.strokes[:, :n]
        for first in range(0, len(names), 64):  # re-rendered 64 at a time: bounded memory at any --png-size
            pngs = render_strokes(painted[first:first + 64], png_size)
            for i, image in enumerate(pngs, start=first):
                stem = out / "paintings" / f"{run.painter}_{n}_{i:03d}"
                written.append(save_png(stem.with_suffix(".png"), image))
                written.append(save_svg(stem.with_suffix(".svg"), painted[i].numpy(), png_size))
        tiles = render_strokes(painted[:shown], SHEET_TILE)
        pairs = np.concatenate([tiles, target_tiles], axis=2)  # painting | target
        written.append(save_png(out / f"contact_sheet_{run.painter}_{n}.png", grid(pairs, pad=4)))
    return written


def score_prior(runs: list[Any], checkpoint: str) -> None:
    """Set each run's ``quality.prior``: the ``strokeprior`` score ``(B, len(counts))`` of each painting's first
    ``n`` strokes (the scores of a class-conditioned prior need a class: not offered here)."""
    from paintgym.rewards.strokeprior import StrokePriorReward

    scorer = StrokePriorReward(checkpoint=checkpoint)
    for run in runs:
        run.quality.prior = torch.stack([scorer.score_strokes(run.strokes[:, :n]).cpu()
                                         for n in run.quality.counts], dim=1)


def paintings_of(runs: list[Any], strokes: list[int]) -> list[tuple[Any, int]]:
    """Which paintings to write: (run, n) for each asked-for N; an incremental painter's run of the
    largest N serves the smaller ones as its prefixes."""
    chosen = []
    for run in runs:
        for n in sorted(set(strokes)):
            if n == run.num_strokes or (run.incremental and n < run.num_strokes):
                chosen.append((run, n))
    return chosen


def evaluate_cli(args: argparse.Namespace) -> list[Any]:
    """Paint, measure, print the table and write the outputs; returns the painting runs."""


    check_args(args)
    set_threads(args.threads)
    device = resolve_device(args.device)
    out = default_out(args)
    if args.run is not None:
        painter = PolicyPainter(args.run, device, batch_size=args.batch_size)
        size = args.size or painter.canvas_size
        strokes = args.strokes or [painter.max_strokes]
        if max(strokes) > painter.max_strokes:
            raise ValueError(f"--strokes {max(strokes)}: the agent paints {painter.max_strokes} strokes per episode; "
                             f"ask for at most {painter.max_strokes}")
        if args.targets:
            images, names = load_targets(args.targets, size, args.limit)
            source = ", ".join(args.targets)
        else:
            images, spec = run_targets(painter.agent, size)
            images = images[:args.limit]
            names = [f"{spec}[test][{i}]" for i in range(len(images))]
            source = f"{spec}, held out"
    else:
        if args.painter == "policy":
            raise ValueError("a trained agent is given as RUN_DIR or checkpoint: paintgym eval RUN_DIR")
        painter = make_painter(args.painter, **painter_kwargs(args))
        size = args.size or PAINTER_DEFAULT_SIZE
        strokes = args.strokes or [PAINTER_DEFAULT_STROKES]
        specs = args.targets or [PAINTER_DEFAULT_TARGETS]
        images, names = load_targets(specs, size, args.limit)
        source = ", ".join(specs)
    targets = to_float(images, device)
    painters = [painter]
    if args.refine is not None:
        painters.append(refiner(painter, args))
    print(f"paintgym eval: {' and '.join(p.name for p in painters)} paint {len(images)} images of {source} at "
          f"{size}x{size} with {', '.join(map(str, sorted(set(strokes))))} strokes on {device}")
    runs = []
    for each in painters:
        if hasattr(each, "progress"):
            each.progress = args.progress  # the painter's own bar (optimisation steps, strokes)
        plan = [max(strokes)] if each.incremental else sorted(set(strokes))
        with tqdm(total=len(images) * len(plan), unit="image", desc=f"eval {each.name}", disable=not args.progress,
                  dynamic_ncols=True) as bar:
            for n in plan:
                runs.append(paint_and_measure(each, targets, n, counts=strokes, batch_size=args.batch_size,
                                              on_batch=bar.update))
    if args.prior is not None:
        score_prior(runs, args.prior)
    print(format_table(runs))
    written = write_outputs(out, runs, strokes, images, names, args.png_size)
    pictures = sum(path.suffix == ".png" and path.parent.name == "paintings" for path in written)
    print(f"wrote {out / 'quality.csv'}, {pictures} paintings as PNG and SVG in {out / 'paintings'} "
          f"({args.png_size}x{args.png_size}) and {len(paintings_of(runs, strokes))} contact sheet(s)")
    return runs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        evaluate_cli(args)
    except KeyboardInterrupt:
        print("paintgym eval: interrupted; nothing more was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:  # FileNotFoundError and DatasetError included
        print(f"paintgym eval: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0


def one_line(err: BaseException) -> str:
    """An error message on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def default_out(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    if args.run is not None:
        run = Path(args.run)
        return (run if run.is_dir() else run.parent) / "eval"
    return Path("eval") / args.painter

