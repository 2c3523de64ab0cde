"""``paintgym optimise IMAGE``: paint one image with N strokes by gradient descent through the renderer.

The strokes start as the greedy painting (the best of K random shapes per stroke, least-squares
colours) and are optimised jointly with Adam through the differentiable renderer at ``--size``
(half of the steps at half that size first): :class:`agents.painters.OptimisePainter`, on the CPU
or a GPU. The outputs follow their extensions: ``.png`` (re-rendered from the strokes at
``--out-size``), ``.svg`` (one curve per stroke), ``.json`` (the stroke list), ``.mp4``/``.gif`` (the
strokes painted one by one, each drawn along its curve, beside the target).

``--reward SPEC`` adds differentiable reward terms to maximise beside the pixel error, e.g. a stroke
style transfer (as Stylized Neural Painting)::

    paintgym optimise photo.png --strokes 128 --reward "style(image=starry_night.png):0.05" --out styled.png
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from paintgym import rewards
from paintgym.agents.episodes import image_l2
from paintgym.agents.painters import OptimisePainter, measure_quality
from paintgym.canvas.export import render_strokes, save_json, save_png, save_svg
from paintgym.canvas.images import load_images, to_float
from paintgym.canvas.painting_video import write_painting_video
from paintgym.experiments.cli_eval import OPTIMISE_EXAMPLES, one_line
from paintgym.experiments.device import resolve_device, set_threads

SUFFIXES = (".png", ".svg", ".json", ".mp4", ".gif")
DESCRIPTION = ("Paint one image with N strokes: the greedy painting (the best of K random shapes per stroke, "
               "least-squares colours), then Adam on every stroke jointly through the differentiable renderer "
               "(half of the steps at half the size first), on the CPU or a GPU. Outputs follow their extensions: "
               ".png (re-rendered from the strokes at --out-size), .svg (one curve per stroke), .json (the stroke "
               "list), .mp4/.gif (the final strokes painted one by one, each drawn along its curve, beside the "
               "target; not the optimisation).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paintgym optimise", description=DESCRIPTION,
                                     epilog=OPTIMISE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", metavar="IMAGE", help="an image file, or a folder / .npy / .npz / dataset name "
                        "(digits, faces, photos) with --index")
    parser.add_argument("--index", type=int, default=0, help="which image of a folder or dataset (default: 0)")
    parser.add_argument("--strokes", type=int, default=32, help="strokes in the painting (default: 32)")
    parser.add_argument("--size", type=int, default=64, help="side in pixels the image is painted at (default: 64)")
    parser.add_argument("--out", action="append", metavar="PATH",
                        help="output, by extension: .png, .svg, .json, .mp4 (the strokes being painted, beside the "
                        "target) or .gif; may be given several times (default: painting.png)")
    parser.add_argument("--out-size", type=int, default=512, help="side of the PNG, SVG and video (default: 512)")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps (default: 200)")
    parser.add_argument("--lr", type=float, default=0.03, help="Adam learning rate (default: 0.03)")
    parser.add_argument("--candidates", type=int, default=64, help="random shapes tried per stroke of the greedy "
                        "start (default: 64)")
    parser.add_argument("--coarse-to-fine", type=float, default=0.5, help="fraction of the steps at half resolution "
                        "(default: 0.5; 0: none)")
    parser.add_argument("--init", choices=("greedy", "random"), default="greedy", help="start (default: greedy)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second of a video (default: 30)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start (default: 0)")
    parser.add_argument("--reward", default=None, metavar="SPEC",
                        help="differentiable reward terms to maximise beside the pixel error, e.g. "
                             "'style(image=starry.png):0.05' (default: none, the pixel error alone)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: 0, all cores)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bars")
    return parser


def check_args(args: argparse.Namespace) -> list[Path]:
    """Raise ``ValueError`` for options that cannot work; return the output paths."""
    if args.strokes < 1:
        raise ValueError(f"--strokes must be at least 1, got {args.strokes}")
    for flag, value in (("--size", args.size), ("--out-size", args.out_size)):
        if not 8 <= value <= 4096:
            raise ValueError(f"{flag} must be between 8 and 4096 pixels, got {value}")
    if args.index < 0:
        raise ValueError(f"--index must be at least 0, got {args.index}")
    if args.threads < 0:
        raise ValueError(f"--threads must be at least 0 (0: all cores), got {args.threads}")
    if args.fps < 1:
        raise ValueError(f"--fps must be at least 1, got {args.fps}")
    outputs = [Path(path) for path in (args.out or ["painting.png"])]
    for path in outputs:
        if path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"--out {path}: unknown extension {path.suffix or '(none)'}; use one of "
                             f"{', '.join(SUFFIXES)}")
        if path.is_dir():
            raise ValueError(f"--out {path} is a folder; give a file name")
    return outputs


def run(args: argparse.Namespace) -> list[Path]:
    """Paint the image and write the outputs; returns their paths."""


    outputs = check_args(args)
    set_threads(args.threads or os.cpu_count() or 1)
    device = resolve_device(args.device)
    images = load_images(args.image, args.size)
    if args.index >= len(images):
        raise ValueError(f"--index {args.index}: {args.image} holds {len(images)} image(s); choose 0 to "
                         f"{len(images) - 1}")
    image = images[args.index:args.index + 1]
    loss = None
    if args.reward:
        reward = rewards.build(args.reward, device=device)
        opaque = [key for key, _, term in reward.terms if not term.differentiable]
        if opaque:
            raise ValueError(f"--reward: {', '.join(opaque)} cannot be optimised through the renderer (not "
                             "differentiable); see paintgym rewards")
        loss = lambda canvas, target: image_l2(canvas, target) - reward.score(canvas, target)  # noqa: E731
    painter = OptimisePainter(steps=args.steps, lr=args.lr, init=args.init, candidates=args.candidates,
                              coarse_to_fine=args.coarse_to_fine, seed=args.seed, progress=args.progress,
                              loss=loss)
    target = to_float(image, device)
    started = time.perf_counter()
    strokes = painter.paint(target, args.strokes)
    took = time.perf_counter() - started
    quality = measure_quality(strokes, target, [args.strokes]).means()[args.strokes]
    print(f"paintgym optimise: painted {args.image}" + (f" [{args.index}]" if len(images) > 1 else "")
          + f" with {args.strokes} strokes at {args.size}x{args.size} in {took:.1f}s on {device}: "
          f"PSNR {quality['psnr']:.2f} dB, L2 {quality['l2']:.5f}, SSIM {quality['ssim']:.3f}")
    strokes = strokes.cpu()
    written = []
    for path in outputs:
        suffix = path.suffix.lower()
        if suffix == ".png":
            written.append(save_png(path, render_strokes(strokes[0], args.out_size)))
        elif suffix == ".svg":
            written.append(save_svg(path, strokes[0].numpy(), args.out_size))
        elif suffix == ".json":
            written.append(save_json(path, strokes[0].numpy(), args.size))
        else:
            video, _ = write_painting_video(path, strokes, args.out_size, fps=args.fps, targets=image,
                                            progress=args.progress)
            written.append(video)
    print(f"wrote {', '.join(map(str, written))}")
    return written


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except KeyboardInterrupt:
        print("paintgym optimise: interrupted; nothing more was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as err:  # FileNotFoundError and DatasetError included
        print(f"paintgym optimise: error: {one_line(err)}", file=sys.stderr)
        return 2
    return 0
