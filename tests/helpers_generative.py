"""Small trained models shared by the generative and gan-reward tests (each trained once per session)."""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from paintgym.canvas.render import render

# tiny settings that still learn within seconds on one CPU core (digits upscaled to 32x32)
GAN_OPTIONS = dict(data="digits", size=32, latent_dim=32, width=16, batch_size=32, n_critic=2, device="cpu",
                   log_every=5, sample_every=1000, checkpoint_every=1000)
GAN_STEPS = 60


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train on one thread: on a shared 2-core machine, two OpenMP threads stall whenever a core is taken."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _scratch(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def trained_gan() -> Path:
    """Run folder of a WGAN-GP trained for :data:`GAN_STEPS` steps on the digits (``ckpt.pt`` inside)."""
    from paintgym.experiments.train_gan import Args, train

    out = _scratch("paintgym-test-gan-") / "gan"
    with one_thread():
        train(Args(steps=GAN_STEPS, out=str(out), **GAN_OPTIONS), progress=False)
    return out


def stroke(x0: float, y0: float, x1: float, y1: float, x2: float, y2: float, r: float = 0.23) -> list[float]:
    """One opaque black stroke (13 numbers) along a quadratic curve, about as thick as a digit's pen."""
    return [x0, y0, x1, y1, x2, y2, r, r, 1.0, 1.0, 0.0, 0.0, 0.0]


def drawn_digits(size: int = 64) -> torch.Tensor:
    """A 1, a 0 and a 7 painted with two strokes each on white: ``(3, 3, size, size)`` in [0, 1]."""
    strokes = torch.tensor([
        [stroke(0.5, 0.2, 0.5, 0.5, 0.5, 0.8), stroke(0.45, 0.25, 0.48, 0.22, 0.5, 0.2)],  # 1
        [stroke(0.5, 0.15, 0.1, 0.5, 0.5, 0.85), stroke(0.5, 0.15, 0.9, 0.5, 0.5, 0.85)],  # 0
        [stroke(0.3, 0.2, 0.5, 0.2, 0.7, 0.2), stroke(0.7, 0.2, 0.55, 0.5, 0.4, 0.85)],  # 7
    ])
    return render(strokes, size=size)
