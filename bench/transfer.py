"""Transfer learning: does an agent pre-trained on digits learn faces in fewer steps than one from scratch?

Trains the default model-based agent (``python train.py``: 32 px, 8 strokes, 81,920 steps) on the built-in
digits, then on faces twice with the same budget and seed: from scratch, and ``--init-from`` the digits run
(optionally a third time with ``--freeze encoder``). Every run evaluates on the held-out faces every
``--eval-every`` steps; the table gives held-out PSNR against steps, and the fraction of the budget the
fine-tuned agent needs to reach the from-scratch agent's final PSNR (the first evaluation at or above it).

    python bench/transfer.py                               # Olivetti faces from ../shared/data, else faces
    python bench/transfer.py --out /tmp/transfer --freeze  # also --freeze encoder
    python bench/transfer.py --faces my_faces/ --seeds 1 2

Runs already finished under ``--out`` (a ``summary.json``) are read, not trained again.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paintgym.experiments import cli_train  # noqa: E402

OLIVETTI = ROOT.parent / "shared" / "data" / "faces-olivetti" / "olivetti_faces.npz"


def run(out: Path, argv: list[str]) -> Path:
    """``paintgym train ARGV --run-dir OUT`` unless OUT holds a finished run."""
    if not (out / "summary.json").is_file():
        code = cli_train.main([*argv, "--run-dir", str(out), "--no-progress"])
        if code != 0:
            raise SystemExit(f"paintgym train {' '.join(argv)} failed ({code})")
    return out


def psnr_curve(run_dir: Path) -> list[tuple[int, float]]:
    """``(step, held-out PSNR)`` of every evaluation in a run's ``metrics.csv`` (the final one once)."""
    with (run_dir / "metrics.csv").open(newline="") as handle:
        points = {int(row["step"]): float(row["eval/psnr"]) for row in csv.DictReader(handle) if row["eval/psnr"]}
    return sorted(points.items())


def steps_to_reach(curve: list[tuple[int, float]], level: float) -> int | None:
    """The first evaluated step whose PSNR is at least ``level`` (None: never)."""
    return next((step for step, value in curve if value >= level), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-transfer", help="folder of the runs")
    parser.add_argument("--faces", default=str(OLIVETTI) if OLIVETTI.is_file() else "faces",
                        help="target images to fine-tune on (default: the Olivetti faces if present, else faces)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds of the face runs")
    parser.add_argument("--eval-every", type=int, default=4096, help="env steps between held-out evaluations")
    parser.add_argument("--freeze", action="store_true", help="also fine-tune with --freeze encoder")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = Path(args.out)
    every = ["--eval-every", str(args.eval_every)]
    digits = run(out / "digits", [])  # python train.py: the default agent on digits, seed 1
    variants = {"scratch": [], "init-from digits": ["--init-from", str(digits)]}
    if args.freeze:
        variants["init-from digits, --freeze encoder"] = ["--init-from", str(digits), "--freeze", "encoder"]
    print(f"faces: {args.faces}; digits run: final held-out PSNR {psnr_curve(digits)[-1][1]:.2f} dB")
    fractions: dict[str, list[float]] = {}
    for seed in args.seeds:
        curves = {}
        for name, extra in variants.items():
            slug = name.replace(" ", "-").replace(",", "").replace("--", "")
            curves[name] = psnr_curve(run(out / f"faces-{slug}-s{seed}",
                                          ["--targets", args.faces, "--seed", str(seed), *every, *extra]))
        steps = [step for step, _ in curves["scratch"]]
        budget, target = steps[-1], curves["scratch"][-1][1]
        print(f"\nseed {seed}: held-out PSNR (dB) against env steps")
        print("| steps | " + " | ".join(curves) + " |")
        print("|---:|" + "---:|" * len(curves))
        for index, step in enumerate(steps):
            print(f"| {step:,} | " + " | ".join(f"{curve[index][1]:.2f}" if index < len(curve) else ""
                                               for curve in curves.values()) + " |")
        for name, curve in curves.items():
            if name == "scratch":
                continue
            reached = steps_to_reach(curve, target)
            fractions.setdefault(name, []).append(1.0 if reached is None else reached / budget)
            fraction = "never" if reached is None else f"{reached:,} steps, {reached / budget:.0%} of the budget"
            print(f"{name}: reaches the from-scratch final {target:.2f} dB at {fraction}; "
                  f"final {curve[-1][1]:.2f} dB")

    if len(args.seeds) > 1:
        for name, values in fractions.items():
            listed = ", ".join(f"{value:.0%}" for value in values)
            print(f"{name}: fraction of the budget per seed {listed}; mean {sum(values) / len(values):.0%} "
                  "(never counted as 100%)")


if __name__ == "__main__":
    main()
