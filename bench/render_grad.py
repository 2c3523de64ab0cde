"""Throughput of the differentiable renderer on the CPU: forward, and forward + backward of a loss.

Prints one table: strokes/s of :func:`canvas.render.render` by the torch path (the reference, autograd)
and by the numba path (numba forward, analytic numba backward), forward alone (no grad) and forward
+ backward of an L2 loss to a random target with respect to the strokes (as a painter optimising
strokes by gradient descent, or an agent backpropagating through the renderer does), at 64x64 and
128x128, batch 64, 8 strokes per canvas, in the same run. Both paths use torch's thread count.

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
        rows.append((size, "torch path, forward", bench(size, batch, count, False, False, fast), "baseline"))
        rows.append((size, "torch path, forward + backward", bench(size, batch, count, False, True, fast), "torch"))
        rows.append((size, "numba path, forward", bench(size, batch, count, True, False, slow), "forward"))
        rows.append((size, "numba path, forward + backward", bench(size, batch, count, True, True, slow), "fb"))
        print(f"... {size}x{size} done", file=sys.stderr)
    print(f"\n{'size':>5} | {'what':<44} | {'rate':>12} | unit      | x torch path")
    print("-" * 92)
    for size, what, rate, _ in rows:
        kind = "forward + backward" if "backward" in what else "forward"
        torch_rate = next(r for s, w, r, _ in rows if s == size and w == f"torch path, {kind}")
        print(f"{size:>5} | {what:<44} | {rate:>12,.0f} | strokes/s | {rate / torch_rate:6.1f}")
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs; "
          f"batch {batch} x {count} strokes per canvas, L2 loss to a random target; "
          "target: numba forward + backward >= 10x the torch path at 64x64")


if __name__ == "__main__":
    main()
