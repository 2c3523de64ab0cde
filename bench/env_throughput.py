"""Throughput of the renderer and the environments, against Learning to Paint's stroke drawing.

Prints one table: strokes/s of the renderer alone (numba CPU path and torch path), full env steps
(single env, vector env with 1/16/256/1024 envs) at 64x64 and 128x128, and in the same run a
baseline that draws each stroke as Learning to Paint does (OpenCV: 100 filled circles along the
curve at twice the resolution, then resized, then composited). With CUDA, also the vector env on
the GPU with 4096 and 16384 envs.

    python bench/env_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from bench.timing import timed  # noqa: E402
from paintgym import envs  # noqa: E402
from paintgym.canvas.render import paint_, render  # noqa: E402


def ltp_draw(f: np.ndarray, width: int) -> np.ndarray:
    """Learning to Paint's ``draw`` (baseline/Renderer/stroke_gen.py): one stroke's alpha ``(width, width)``."""
    x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = f
    x1 = x0 + (x2 - x0) * x1
    y1 = y0 + (y2 - y0) * y1

    def normal(x: float, w: int) -> int:
        return int(x * (w - 1) + 0.5)

    x0, x1, x2 = normal(x0, width * 2), normal(x1, width * 2), normal(x2, width * 2)
    y0, y1, y2 = normal(y0, width * 2), normal(y1, width * 2), normal(y2, width * 2)
    z0, z2 = int(1 + z0 * width // 2), int(1 + z2 * width // 2)
    canvas = np.zeros([width * 2, width * 2], dtype=np.float32)
    for i in range(100):
        t = i / 100
        x = int((1 - t) * (1 - t) * x0 + 2 * t * (1 - t) * x1 + t * t * x2)
        y = int((1 - t) * (1 - t) * y0 + 2 * t * (1 - t) * y1 + t * t * y2)
        z = int((1 - t) * z0 + t * z2)
        w = (1 - t) * w0 + t * w2
        cv2.circle(canvas, (y, x), z, float(w), -1)
    return cv2.resize(canvas, dsize=(width, width))


def bench_ltp(size: int, count: int) -> float:
    rng = np.random.default_rng(0)
    params, colours = rng.random((count, 10)).astype(np.float32), rng.random((count, 3)).astype(np.float32)
    canvas = np.ones((size, size, 3), np.float32)

    def run() -> None:
        for f, colour in zip(params, colours, strict=True):
            alpha = ltp_draw(f, size)[..., None]
            canvas[:] = canvas * (1 - alpha) + colour * alpha

    return count / timed(run)


def bench_renderer(size: int, batch: int, torch_path: bool) -> float:
    strokes = torch.rand(batch, 1, 13, generator=torch.Generator().manual_seed(0))
    canvas = torch.ones(batch, 3, size, size)
    fn = (lambda: render(strokes, canvas)) if torch_path else (lambda: paint_(canvas, strokes))
    return batch / timed(fn)


def bench_vector(size: int, num_envs: int, steps: int, device: str = "cpu") -> float:
    env = envs.CanvasVectorEnv(num_envs, targets="digits", canvas_size=size, device=device,
                               return_tensors=device != "cpu")
    env.reset(seed=0)
    gen = torch.Generator(device=device).manual_seed(0)
    if device == "cpu":
        actions = [np.random.default_rng(i).uniform(-1, 1, (num_envs, 13)).astype(np.float32) for i in range(steps)]
    else:
        actions = [torch.rand(num_envs, 13, generator=gen, device=device) * 2 - 1 for _ in range(steps)]

    def run() -> None:
        for action in actions:
            env.step(action)
        if device != "cpu":
            torch.cuda.synchronize()

    return num_envs * steps / timed(run)


def bench_single(size: int, steps: int, through_make: bool) -> float:
    import gymnasium as gym

    env = (gym.make("paintgym/Reconstruct-v0", canvas_size=size) if through_make
           else envs.CanvasEnv(targets="digits", canvas_size=size))
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 13)).astype(np.float32)

    def run() -> None:
        for action in actions:
            if env.step(action)[2]:
                env.reset()

    return steps / timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a rougher figure)")
    args = parser.parse_args()
    steps = 8 if args.quick else 128  # four 32-step episodes (resets included) per timed run
    rows = []
    for size in (64, 128):
        baseline = bench_ltp(size, 200 if args.quick else 500)
        rows.append((size, "Learning to Paint draw (opencv, baseline)", baseline, "strokes/s"))
        rows.append((size, "renderer, numba CPU path (256 strokes)", bench_renderer(size, 256, False), "strokes/s"))
        rows.append((size, "renderer, torch path (64 strokes)", bench_renderer(size, 64, True), "strokes/s"))
        rows.append((size, "CanvasEnv.step (single env)", bench_single(size, 500 if args.quick else 2000, False),
                     "steps/s"))
        rows.append((size, "gymnasium.make(...).step (single env)", bench_single(size, 500, True), "steps/s"))
        for n in (1, 16, 256, 1024):
            rows.append((size, f"CanvasVectorEnv, {n} envs", bench_vector(size, n, steps if n > 1 else 200),
                         "strokes/s"))
        if torch.cuda.is_available():
            for n in (4096, 16384):
                rows.append((size, f"CanvasVectorEnv on CUDA, {n} envs", bench_vector(size, n, steps, "cuda"),
                             "strokes/s"))
        print(f"... {size}x{size} done", file=sys.stderr)
    print(f"\n{'size':>5} | {'what':<44} | {'rate':>12} | unit      | x baseline")
    print("-" * 90)
    for size, what, rate, unit in rows:
        baseline = next(r for s, w, r, _ in rows if s == size and "baseline" in w)
        print(f"{size:>5} | {what:<44} | {rate:>12,.0f} | {unit:<9} | {rate / baseline:6.1f}")
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; "
          "1 stroke per step; targets: 64x64 vector env >= 50,000 strokes/s, single env >= 5,000 steps/s")


if __name__ == "__main__":
    main()
