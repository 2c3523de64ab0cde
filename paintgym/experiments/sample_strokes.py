"""``paintgym sample-strokes CHECKPOINT``: a video (or picture) of a stroke-sequence prior drawing.

The model (a ``paintgym train-strokes`` checkpoint) samples ``--n`` drawings point by point at
``--temperature``; each is fitted with paintgym strokes (:func:`envs.pen.pen_to_strokes`: quadratic
Bezier pieces of one brush radius, the drawing centred on its canvas) and the grid of canvases is
rendered stroke by stroke with paintgym's renderer, as ``paintgym paint`` shows an agent painting.

    paintgym sample-strokes runs/sheep --out sketches.mp4                   # 16 drawings, temperature 0.5
    paintgym sample-strokes runs/sheep --out sketches.gif --n 9 --temperature 0.2
    paintgym sample-strokes runs/sheep --out sketches.png                   # only the finished drawings
    paintgym sample-strokes runs/two --class sheep_flat --out sheep.mp4     # a class-conditioned model

``.mp4``, ``.gif``, ``.png`` (the last frame); any other path is a folder of PNG frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from paintgym.canvas.export import save_png
from paintgym.canvas.images import to_uint8
from paintgym.canvas.painting_video import write_painting_video
from paintgym.canvas.pen import pen_to_stroke_batch
from paintgym.canvas.render import render
from paintgym.canvas.video import grid
from paintgym.generative.checkpoint import CheckpointError
from paintgym.generative.sketch_rnn import SketchRNN, load_sketch_rnn, to_stroke3


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paintgym sample-strokes", description=__doc__.splitlines()[0].replace("``", ""),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a paintgym train-strokes checkpoint (ckpt.pt) or its run folder")
    p.add_argument("--out", default="sketches.mp4", help=".mp4, .gif, .png (finished drawings) or a folder of frames")
    p.add_argument("--n", type=int, default=16, help="drawings, shown in a grid")
    p.add_argument("--temperature", type=float, default=0.5, help="sampling temperature (> 0; lower: tidier)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the drawings")
    p.add_argument("--max-len", type=int, default=250, help="at most this many pen points per drawing")
    p.add_argument("--class", dest="class_", default=None,
                   help="class (index or name) of a class-conditioned model (default: classes in turn)")
    p.add_argument("--size", type=int, default=128, help="side of each drawing's canvas in pixels")
    p.add_argument("--radius", type=float, default=0.01, help="brush radius, as a fraction of the canvas side")
    p.add_argument("--fps", type=int, default=30, help="frames per second of the video")
    p.add_argument("--device", default="cpu", help="where the model samples (cpu, cuda)")
    return p


def class_labels(model: SketchRNN, n: int, label: str | None) -> torch.Tensor | None:
    """The labels of ``n`` drawings: None for an unconditional model, else ``label`` (a name or index) for
    all, or the classes in turn."""
    if not model.num_classes:
        if label is not None:
            raise ValueError("--class is for class-conditioned models; this one is unconditional")
        return None
    if label is None:
        return torch.arange(n) % model.num_classes
    index = model.names.index(label) if label in model.names else None
    if index is None:
        try:
            index = int(label)
        except ValueError:
            index = -1
    if not 0 <= index < model.num_classes:
        raise ValueError(f"--class {label!r} is not one of this model's classes: {', '.join(model.names)} "
                         f"(or 0..{model.num_classes - 1})")
    return torch.full((n,), index, dtype=torch.int64)


def sample_drawings(model: SketchRNN, n: int, temperature: float, seed: int = 0, max_len: int = 250,
                    labels: torch.Tensor | None = None) -> list[np.ndarray]:
    """``n`` stroke-3 drawings (data units) sampled from ``model``, reproducibly from ``seed``."""
    seq5, lengths = model.sample(n, temperature, torch.Generator().manual_seed(seed), max_len, labels)
    return to_stroke3(seq5, lengths)


def main(argv: list[str] | None = None) -> int:
    """``paintgym sample-strokes CHECKPOINT [options]``."""
    args = parser().parse_args(argv)
    prog = "paintgym sample-strokes: error:"
    if args.n < 1 or args.size < 8 or args.max_len < 1 or not args.temperature > 0 or not args.radius > 0:
        print(f"{prog} --n and --max-len must be at least 1, --size at least 8, --temperature and --radius "
              "positive", file=sys.stderr)
        return 2
    try:
        model = load_sketch_rnn(args.checkpoint, args.device)
        labels = class_labels(model, args.n, args.class_)
        drawings = sample_drawings(model, args.n, args.temperature, args.seed, args.max_len, labels)
        strokes, _ = pen_to_stroke_batch(drawings, radius=args.radius)
        columns = int(np.ceil(np.sqrt(args.n)))
        out = Path(args.out)
        if out.suffix.lower() == ".png":
            canvases = render(strokes, size=args.size)
            save_png(out, grid(to_uint8(canvases).numpy(), columns))
            frames = 1
        else:
            _, frames = write_painting_video(out, strokes, args.size, fps=args.fps, columns=columns, progress=True)
    except (CheckpointError, ValueError, OSError) as err:
        print(f"{prog} {err}", file=sys.stderr)
        return 2
    points = sum(len(d) for d in drawings)
    print(f"{args.n} drawings ({points} pen points, {int((strokes[..., 8] > 0).sum())} strokes) at temperature "
          f"{args.temperature}: {out} ({frames} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
