"""Stroke style transfer: paint photos in a painting's style with the optimiser, in two feature networks.

For every (photo, style image) pair, ``OptimisePainter`` minimises ``mse(canvas, photo) - weight *
style(canvas)`` through the differentiable renderer, once for each ``--features`` choice of the
``style`` reward (``random``: fixed random multi-scale filters; or a trained model's checkpoint,
e.g. a ``train-vae`` run on paintings). It prints a table (PSNR to the photo, and each style
score of the painting measured in random features, so the rows compare on one scale) and writes
one contact sheet: per pair, the photo, the style image, the painting without style, and one
painting per feature network.

    python bench/style.py --features random runs/vae-paintings/ckpt.pt --out docs/images/style_transfer.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paintgym import rewards  # noqa: E402
from paintgym.agents.episodes import image_l2  # noqa: E402
from paintgym.agents.painters import OptimisePainter  # noqa: E402
from paintgym.canvas.images import load_images, to_float, to_uint8  # noqa: E402
from paintgym.canvas.render import render  # noqa: E402
from paintgym.experiments.device import set_threads  # noqa: E402
from paintgym.rewards.target import psnr  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = ("photos-coco20", "photos")  # the shared COCO photos, else scikit-image's
STYLES = ("vangogh_starry_night_1889", "hokusai_great_wave", "kandinsky_composition_vii_1913")


def style_images(data: Path, size: int) -> tuple[list[str], list[Path]]:
    folder = data / "paintings-pd"
    paths = [folder / f"{name}.png" for name in STYLES if (folder / f"{name}.png").exists()]
    if not paths:  # without the shared data: scikit-image's photos as "styles"
        import skimage.data

        root = Path(skimage.data.__file__).parent
        paths = [root / name for name in ("coffee.png", "chelsea.png") if (root / name).exists()]
    return [p.stem for p in paths], paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", nargs="+", default=["random"], help="random and/or trained checkpoints")
    parser.add_argument("--photos", type=int, default=3, help="photos painted (default: 3)")
    parser.add_argument("--size", type=int, default=64, help="canvas side (default: 64)")
    parser.add_argument("--strokes", type=int, default=128, help="strokes per painting (default: 128)")
    parser.add_argument("--steps", type=int, default=200, help="Adam steps (default: 200)")
    parser.add_argument("--weight", type=float, default=0.05, help="style weight against the pixel MSE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("style_transfer.png"), help="contact sheet PNG")
    args = parser.parse_args(argv)
    set_threads(args.threads)

    source = args.data / PHOTOS[0]
    photos = to_float(load_images(source if source.exists() else PHOTOS[1], args.size)[: args.photos])
    names, paths = style_images(args.data, args.size)
    judge = {name: rewards.build(f"style(image={path},size={args.size})").terms[0][2] for name, path in
             zip(names, paths, strict=True)}
    rows, table = [], []
    plain = OptimisePainter(steps=args.steps, coarse_to_fine=0.0).paint(photos, args.strokes)
    plain_canvas = render(plain, size=args.size)
    for name, path in zip(names, paths, strict=True):
        style_tile = to_float(load_images(str(path), args.size))[:1].expand(len(photos), -1, -1, -1)
        row = [photos, style_tile, plain_canvas]
        table.append((name, "none (pixels only)", float(psnr(image_l2(plain_canvas, photos)).mean()),
                      float(judge[name].score(plain_canvas).mean())))
        for features in args.features:
            style = rewards.build(f"style(image={path},features={features},size={args.size})").terms[0][2]
            loss = lambda canvas, target, style=style: (  # noqa: E731
                (canvas - target).square().flatten(1).mean(1) - args.weight * style.score(canvas))
            strokes = OptimisePainter(steps=args.steps, coarse_to_fine=0.0, loss=loss).paint(photos, args.strokes)
            canvas = render(strokes, size=args.size)
            row.append(canvas)
            label = features if features == "random" else f"trained: {Path(features).parent.name or features}"
            quality = float(psnr(image_l2(canvas, photos)).mean())
            table.append((name, label, quality, float(judge[name].score(canvas).mean())))
        rows.append(torch.cat(row, dim=3))  # (P, 3, H, W * columns)
    sheet = to_uint8(torch.cat([r for pair in rows for r in pair.unbind(0)], dim=1)[None])[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, np.ascontiguousarray(sheet.numpy()))

    print(f"\n{len(photos)} photos x {len(names)} styles, {args.strokes} strokes at {args.size}px, "
          f"{args.steps} Adam steps, style weight {args.weight}")
    print("| style image | style features | PSNR to photo (dB) | style score (random features) ↑ |")
    print("|---|---|---:|---:|")
    for name, label, quality, score in table:
        print(f"| {name} | {label} | {quality:.2f} | {score:.3f} |")
    print(f"contact sheet (photo | style | no style | {' | '.join(args.features)}): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
