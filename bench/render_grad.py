"""Throughput of the differentiable renderer on the CPU: forward, and forward + backward of a loss.

Prints one table: strokes/s of :func:`canvas.render.render` by the torch path (the reference, autograd)
and by the numba path (numba forward, analytic numba backward), forward alone (no grad) and forward
+ backward of an L2 loss to a random target with respect to the strokes (as a painter optimising
strokes by gradient descent, or an agent backpropagating through the renderer does), at 64x64 and
128x128, batch 64, 8 strokes per canvas, in the same run. Both paths use torch's thread count.
Two more rows time strokes coloured by their least-squares fit to the target, one stroke per call as the
model-based agent trains (:func:`canvas.render.render_fitted`): its numba kernels against the torch
operations it replaced (the numba coverage, then the fit and the compositing in torch, autograd). Two
more score candidate strokes as greedy search does, 64 per canvas, no gradient
(:func:`canvas.render.score_strokes`): its numba kernel against its torch path (batched matrix products
of the candidates' coverages).

    python bench/render_grad.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from bench.timing import timed  # noqa: E402
from paintgym.canvas import render as render_module  # noqa: E402


def bench(size: int, batch: int, count: int, numba_path: bool, backward: bool, repeats: int) -> float:
    """Strokes/s of one render of ``batch`` canvases x ``count`` strokes (and the backward of an L2 loss)."""
    gen = torch.Generator().manual_seed(size)
    strokes = torch.rand(batch, count, 13, generator=gen)
    target = torch.rand(batch, 3, size, size, generator=gen)
    fn = render_module.render if numba_path else render_module._render_torch

    def forward() -> None:
        with torch.no_grad():
            fn(strokes, torch.ones(batch, 3, size, size))

    def forward_backward() -> None:
        params = strokes.clone().requires_grad_(True)
        loss = (fn(params, torch.ones(batch, 3, size, size)) - target).square().mean()
        loss.backward()

    return batch * count / timed(forward_backward if backward else forward, repeats)


def bench_fitted(size: int, batch: int, count: int, numba_path: bool, repeats: int) -> float:
    """Strokes/s of forward + backward of ``count`` fitted strokes on ``batch`` canvases, one stroke per call."""
    gen = torch.Generator().manual_seed(size)
    strokes = torch.rand(batch, count, 13, generator=gen)
    target = torch.rand(batch, 3, size, size, generator=gen)
    fn = render_module.render_fitted if numba_path else render_module._render_fitted_torch

    def forward_backward() -> None:
        params = strokes.clone().requires_grad_(True)
        canvas = torch.ones(batch, 3, size, size)
        for s in range(count):
            canvas, _ = fn(params[:, s:s + 1], canvas, target)
        (canvas - target).square().mean().backward()

    return batch * count / timed(forward_backward, repeats)


def bench_scoring(size: int, batch: int, count: int, numba_path: bool, repeats: int) -> float:
    """Candidates/s of scoring ``count`` candidate strokes on each of ``batch`` painted canvases (no gradient)."""
    gen = torch.Generator().manual_seed(size)
    canvas = render_module.render(torch.rand(batch, 16, 13, generator=gen), torch.ones(batch, 3, size, size))
    target = torch.rand(batch, 3, size, size, generator=gen)
    candidates = torch.rand(batch, count, 13, generator=gen)
    fn = render_module.score_strokes if numba_path else render_module._score_strokes_torch

    def score() -> None:
        with torch.no_grad():
            fn(canvas, target, candidates)

    return batch * count / timed(score, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rougher figure)")
    args = parser.parse_args()
    if not render_module.HAVE_NUMBA:
        sys.exit("numba is off (PAINTGYM_NO_NUMBA set or numba missing): nothing to compare")
    batch, count = 64, 8
    rows = []
    for size in (64, 128):
        fast, slow = (1, 3) if args.quick else (3, 7)
        torch_fb, fitted_torch = "torch path, forward + backward", "fitted colour: torch ops, forward + backward"
        rows.append((size, "torch path, forward", bench(size, batch, count, False, False, fast), "torch path, forward"))
        rows.append((size, torch_fb, bench(size, batch, count, False, True, fast), torch_fb))
        rows.append((size, "numba path, forward", bench(size, batch, count, True, False, slow), "torch path, forward"))
        rows.append((size, "numba path, forward + backward", bench(size, batch, count, True, True, slow), torch_fb))
        rows.append((size, fitted_torch, bench_fitted(size, batch, count, False, slow), fitted_torch))
        fitted = bench_fitted(size, batch, count, True, slow)
        rows.append((size, "fitted colour: render_fitted, forward + backward", fitted, fitted_torch))
        scoring_torch = "candidate scoring: torch path (no grad)"
        rows.append((size, scoring_torch, bench_scoring(size, batch, 64, False, slow), scoring_torch))
        rows.append((size, "candidate scoring: score_strokes kernel", bench_scoring(size, batch, 64, True, slow),
                     scoring_torch))
        print(f"... {size}x{size} done", file=sys.stderr)
    print(f"\n{'size':>5} | {'what':<50} | {'rate':>12} | unit      | x its baseline")
    print("-" * 100)
    for size, what, rate, baseline in rows:
        base_rate = next(r for s, w, r, _ in rows if s == size and w == baseline)
        print(f"{size:>5} | {what:<50} | {rate:>12,.0f} | strokes/s | {rate / base_rate:6.1f}")
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; "
          f"batch {batch} x {count} strokes per canvas, L2 loss to a random target; "
          "baselines: the torch path (render), the torch ops render_fitted replaced (fitted colour), "
          "score_strokes's torch path (candidate scoring; candidates/s, 64 per canvas, not strokes/s); "
          "target: numba forward + backward >= 10x the torch path at 64x64")


if __name__ == "__main__":
    main()
