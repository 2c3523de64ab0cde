"""Painting quality: PSNR against the number of strokes, for painters that need no training and trained agents.

    python bench/quality.py --limit 4                    # a quick look
    python bench/quality.py                              # the 32 dev images at 64x64 (minutes on 2 CPU cores)
    python bench/quality.py --ppo runs/PPO_RUN --agent runs/MODEL_BASED_RUN

Targets: the development paintings and photos of ``../shared/data`` (``paintings-dev``, 12, and
``photos-coco20``, 20; never trained on), resized to ``--size`` (64). Without that folder, the
17 photos bundled with scikit-image and scikit-learn (and the table says so).

Rows (:mod:`agents.painters`): ``random`` (uniform random strokes), ``greedy`` (best of K random
shapes per stroke, least-squares colour), ``optimise`` (Adam on every stroke through the
differentiable renderer from the greedy start; one optimisation per N), and trained agents given as
``--ppo RUN`` and ``--agent RUN`` (their episode's strokes, deterministic actions; the first n
strokes of an episode for the columns n below its length, "–" above it), and the ``--agent``'s
paintings refined by ``--refine`` Adam steps through the renderer (``NAME+refineK``, every prefix
kept a good painting too; :func:`agents.painters.refined`). Random, greedy and the
agents paint once with their largest N and are measured after each column's n strokes (their first
n strokes are their n-stroke painting).

Columns: the mean over images of each image's PSNR (dB) after N strokes, and images painted per
second of painting time at the row's largest N (the CSV has the seconds of every optimisation).
Writes ``quality.csv`` and ``quality.png`` (PSNR against strokes, log scale) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paintgym.agents.painters import PaintingRun, make_painter, paint_and_measure  # noqa: E402
from paintgym.canvas.export import atomic_write_bytes  # noqa: E402
from paintgym.canvas.images import load_images, to_float  # noqa: E402
from paintgym.envs.core import resolve_device  # noqa: E402
from paintgym.experiments.device import set_threads  # noqa: E402
from paintgym.experiments.pretrained import PolicyPainter  # noqa: E402
from paintgym.experiments.refine_flags import add_refine_arguments, check_refine_arguments, refiner  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEV_SETS = ("paintings-dev/paintings_dev.npz", "photos-coco20/photos_coco20.npz")
FALLBACK = "photos"
DASH = "–"


def load_dev_images(data: Path, size: int, limit: int | None) -> tuple[np.ndarray, str]:
    """The dev paintings and photos at ``size`` (or the bundled photos when ``data`` lacks them) and what they are."""
    files = [data / name for name in DEV_SETS]
    if all(file.is_file() for file in files):
        images = np.concatenate([load_images(file, size) for file in files])
        source = " + ".join(f"{file.parent.name} ({len(load_images(file, 8))})" for file in files)
    else:
        missing = next(file for file in files if not file.is_file())
        print(f"note: {missing} is absent; measuring on the {FALLBACK!r} images bundled with scikit-image and "
              "scikit-learn instead (the figures do not compare with the dev set's)")
        images, source = load_images(FALLBACK, size), f"{FALLBACK} (bundled)"
    if limit is not None:
        images = images[:limit]
    return images, source


def measure_row(name: str, painter: object, targets: torch.Tensor, strokes: list[int],
                bar: tqdm) -> list[PaintingRun]:
    """Paint the targets with one painter at the columns' stroke counts it can paint; returns its runs."""
    most = getattr(painter, "max_strokes", None)
    wanted = [n for n in strokes if most is None or n <= most]
    if not wanted:  # an agent with fewer strokes than the first column: measure its whole episode
        wanted = [most]
    plan = [max(wanted)] if painter.incremental else wanted
    runs = []
    for n in plan:
        bar.set_description(f"{name}, {n} strokes")
        runs.append(paint_and_measure(painter, targets, n, counts=wanted, batch_size=len(targets)))
        bar.update(1)
    return runs


def row_values(runs: list[PaintingRun], strokes: list[int]) -> tuple[dict[int, float], float]:
    """PSNR for each column it has and images/s at its largest N."""
    psnr = {}
    for run in runs:
        means = run.quality.means()
        for n in strokes:
            if n in means and (run.incremental or n == run.num_strokes):
                psnr[n] = means[n]["psnr"]
    largest = max(runs, key=lambda run: run.num_strokes)
    return psnr, largest.images_per_second


def format_table(rows: dict[str, tuple[dict[int, float], float]], strokes: list[int]) -> str:
    width = max([14, *(len(name) for name in rows)])
    header = f"| {'painter':<{width}} | " + " | ".join(f"{n:>6}" for n in strokes) + f" | {'images/s':>8} |"
    lines = [header, "|" + "|".join(["-" * (width + 2)] + ["-" * 7 + ":" for _ in strokes] + ["-" * 9 + ":"]) + "|"]
    for name, (psnr, rate) in rows.items():
        cells = " | ".join(f"{psnr[n]:6.2f}" if n in psnr else f"{DASH:>6}" for n in strokes)
        lines.append(f"| {name:<{width}} | {cells} | {rate:8.3g} |")
    return "\n".join(lines)


def write_csv(path: Path, all_runs: dict[str, list[PaintingRun]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "painted_strokes", "strokes", "psnr", "l2", "ssim", "images", "seconds", "images_per_s"])
    for name, runs in all_runs.items():
        for run in runs:
            for n, values in run.quality.means().items():
                if not run.incremental and n != run.num_strokes:
                    continue  # a prefix of an optimised painting is not an n-stroke painting
                writer.writerow([name, run.num_strokes, n, repr(values["psnr"]), repr(values["l2"]),
                                 repr(values["ssim"]), run.strokes.shape[0], repr(run.seconds),
                                 repr(run.images_per_second)])
    atomic_write_bytes(path, buffer.getvalue().encode())


def plot(path: Path, rows: dict[str, tuple[dict[int, float], float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, (psnr, rate) in rows.items():
        counts = sorted(psnr)
        axes.plot(counts, [psnr[n] for n in counts], marker="o", label=f"{name} ({rate:.3g} images/s)")
    axes.set_xscale("log", base=2)
    every = sorted({n for psnr, _ in rows.values() for n in psnr})
    axes.set_xticks(every, [str(n) for n in every])
    axes.set_xlabel("strokes")
    axes.set_ylabel("PSNR (dB), mean over images")
    axes.set_title(title, fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="side the targets are painted and measured at")
    parser.add_argument("--strokes", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="the columns")
    parser.add_argument("--limit", type=int, help="measure only the first LIMIT images (a quick look)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"folder of the dev data (default: {DATA})")
    parser.add_argument("--ppo", help="a trained PPO run (directory or checkpoint) to add as a row")
    parser.add_argument("--agent", help="a run of another trained agent (e.g. --agent model-based) to add as a row")
    add_refine_arguments(parser, "add a row of the --agent's paintings refined by this many Adam steps through the "
                         "renderer (0: none; default: 50)", steps_default=50)
    parser.add_argument("--only", nargs="+", choices=("random", "greedy", "optimise"),
                        help="only these painters (trained runs are added when given)")
    parser.add_argument("--candidates", type=int, default=64, help="greedy, optimiser start: K shapes per stroke")
    parser.add_argument("--steps", type=int, default=200, help="optimise: Adam steps")
    parser.add_argument("--lr", type=float, default=0.03, help="optimise: Adam learning rate")
    parser.add_argument("--coarse-to-fine", type=float, default=0.5, help="optimise: fraction of steps at half size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the painters")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadier on a busy machine)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-quality"), help="folder for quality.csv/.png")
    args = parser.parse_args(argv)
    strokes = sorted(set(args.strokes))
    if strokes[0] < 1:
        parser.error(f"--strokes must be at least 1, got {strokes[0]}")
    try:
        check_refine_arguments(args)
    except ValueError as err:
        parser.error(str(err))
    set_threads(args.threads)
    device = resolve_device(args.device)

    images, source = load_dev_images(args.data, args.size, args.limit)
    targets = to_float(images, device)
    painters: dict[str, object] = {}
    for name in args.only or ("random", "greedy", "optimise"):
        options = {"seed": args.seed}
        if name in ("greedy", "optimise"):
            options["candidates"] = args.candidates
        if name == "optimise":
            options.update(steps=args.steps, lr=args.lr, coarse_to_fine=args.coarse_to_fine)
        painters[name] = make_painter(name, **options)
    notes = []
    for flag, run in (("--ppo", args.ppo), ("--agent", args.agent)):
        if run is None:
            notes.append(f"{flag} RUN not given: no {'PPO' if flag == '--ppo' else 'trained agent'} row")
            continue
        painter = PolicyPainter(run, device)
        label = painter.name if painter.name not in painters else f"{painter.name} ({Path(run).name})"
        painters[label] = painter
        if flag == "--agent" and args.refine:
            refining = refiner(painter, args)
            painters[label + refining.name[len(painter.name):]] = refining  # NAME+refineK[-coarseF][-keepN]
        notes.append(f"{label}: {run}, {painter.max_strokes} strokes per episode at {painter.canvas_size}x"
                     f"{painter.canvas_size}")
        if source.startswith(FALLBACK) and FALLBACK in str(painter.agent.config.targets).split("+"):
            notes.append(f"WARNING: {label} was trained on {FALLBACK!r}, the images measured here (the dev set is "
                         f"absent): its row is not held-out; pass --data ../shared/data")

    total = sum(1 if painter.incremental else len(strokes) for painter in painters.values())
    all_runs: dict[str, list[PaintingRun]] = {}
    with tqdm(total=total, unit="painting run", dynamic_ncols=True) as bar:
        for name, painter in painters.items():
            all_runs[name] = measure_row(name, painter, targets, strokes, bar)
    rows = {name: row_values(runs, strokes) for name, runs in all_runs.items()}

    title = (f"{len(images)} images of {source} at {args.size}x{args.size}, {device}, {args.threads} thread(s)"
             + (f", --limit {args.limit}" if args.limit else ""))
    print(f"\nPSNR (dB, mean over images) after N strokes; {title}")
    print(format_table(rows, strokes))
    settings = {"greedy": f"greedy: best of {args.candidates} shapes per stroke",
                "optimise": f"optimise: {args.steps} Adam steps, lr {args.lr}, {args.coarse_to_fine:g} of them at half "
                            f"size, from the greedy start (one optimisation per N)"}
    shown = [text for name, text in settings.items() if name in painters]
    print("; ".join([*shown, "images/s at the row's largest N"]))
    for note in notes:
        print(f"note: {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "quality.csv", all_runs)
    plot(args.out / "quality.png", rows, title)
    print(f"wrote {args.out / 'quality.csv'} and {args.out / 'quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
