"""``paintgym demo``: paint targets with a random policy and write a PNG and an MP4 of it.

Needs no downloads (targets from scikit-learn's digits by default); a quick check that the
renderer, the env and video writing work on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from paintgym.canvas.export import render_strokes, save_png
from paintgym.canvas.video import grid, write_video
from paintgym.envs.vector_env import CanvasVectorEnv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paintgym demo", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="digits", help="target dataset: digits, faces, photos, a folder or .npz")
    parser.add_argument("--num-envs", type=int, default=4, help="canvases painted side by side")
    parser.add_argument("--steps", type=int, default=24, help="steps per episode")
    parser.add_argument("--strokes-per-step", type=int, default=4, help="strokes painted per step")
    parser.add_argument("--canvas-size", type=int, default=64, help="canvas side in pixels")
    parser.add_argument("--render-size", type=int, default=256, help="side of each frame in the video")
    parser.add_argument("--fps", type=int, default=8, help="frames per second of the video")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="out/demo", help="output prefix: writes OUT.png and OUT.mp4")
    return parser


def run(args: argparse.Namespace) -> tuple[Path, Path]:
    env = CanvasVectorEnv(args.num_envs, targets=args.targets, max_steps=args.steps, seed=args.seed,
                          strokes_per_step=args.strokes_per_step, canvas_size=args.canvas_size)
    env.action_space.seed(args.seed)
    env.reset(seed=args.seed)
    frames, returns = [], np.zeros(args.num_envs)
    started = time.perf_counter()
    for _ in range(args.steps):
        frames.append(grid(env.core.frames(args.render_size).cpu().numpy()))
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        returns += reward
        if terminated.all():
            final_strokes = info["final_info"]["strokes"]
            break
    elapsed = time.perf_counter() - started
    # the env has auto-reset: re-render the finished paintings from their stroke history,
    # each beside its target (channels 3..5 of the final observation)
    finals = render_strokes(final_strokes, args.render_size, env.core.background)
    targets = np.stack([_resize(obs[..., 3:6], args.render_size) for obs in info["final_obs"]])
    last = grid(np.concatenate([finals, targets], axis=2))
    frames += [last] * max(1, args.fps)  # hold the final painting for a second
    out = Path(args.out)
    png = save_png(out.with_suffix(".png"), last)
    mp4 = write_video(out.with_suffix(".mp4"), frames, fps=args.fps)
    strokes = args.num_envs * args.steps * args.strokes_per_step
    print(f"painted {strokes} strokes on {args.num_envs} canvases in {elapsed:.2f}s; "
          f"mean return (L2 decrease) {returns.mean():+.4f}")
    print(f"wrote {png} and {mp4}")
    return png, mp4


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=cv2.INTER_NEAREST)


def main(argv: list[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0
