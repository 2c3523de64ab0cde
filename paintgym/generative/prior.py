"""Generative models as a prior: images sampled from a trained GAN or VAE, as target datasets."""

from __future__ import annotations

import os

import numpy as np
import torch

from paintgym.canvas.images import to_uint8
from paintgym.generative.checkpoint import CheckpointError, load
from paintgym.generative.data import resize, to_rgb

_BATCH = 256  # samples per forward pass: bounded memory for any count


def parse_prior_spec(spec: str) -> tuple[str, str, int | None]:
    """``gan:PATH``, ``vae:PATH`` or ``gan:PATH:class=K`` -> ``(kind, path, class or None)``."""
    kind, _, rest = spec.partition(":")
    path, label = rest, None
    head, sep, tail = rest.rpartition(":class=")
    if sep:
        if not tail.isdigit():
            raise ValueError(f"the class in {spec!r} must be a class index, e.g. gan:PATH:class=7")
        path, label = head, int(tail)
    return kind, path, label


def prior_images(kind: str, path: str | os.PathLike, size: int, count: int, seed: int = 0,
                 device: torch.device | str = "cpu", label: int | None = None) -> np.ndarray:
    """``count`` images sampled from a trained model, as a target dataset ``(count, size, size, 3)`` uint8.

    GAN samples come from the generator, VAE samples from the decoder at prior draws of the latent;
    both in eval mode, resized to ``size`` and turned RGB if the model is grey. The same
    ``seed`` gives the same images.

    :param kind: ``gan`` or ``vae`` (must match the checkpoint).
    :param label: the class to sample from a class-conditional GAN (``train-gan --conditional``); without
        it such a GAN samples its classes uniformly.
    :raises CheckpointError: for a missing checkpoint or one of the other kind.
    """
    if kind not in ("gan", "vae"):
        raise CheckpointError(f"unknown prior kind {kind!r}; write gan:PATH or vae:PATH")
    if count < 1 or size < 1:
        raise ValueError(f"count and size must be positive, got count={count}, size={size}")
    model = load(path, device=device, kind=kind)
    classes = getattr(model, "num_classes", 0)
    if label is not None and not classes:
        raise ValueError(f"{os.fspath(path)!r} is not a class-conditional GAN; drop :class= or train one with "
                         "paintgym train-gan --conditional")
    if label is not None and not 0 <= label < classes:
        raise ValueError(f"{os.fspath(path)!r} has classes 0..{classes - 1}, not {label}")
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same images on any device
    chunks = []
    for start in range(0, count, _BATCH):  # a few large batches, not a per-image loop
        n = min(_BATCH, count - start)
        if label is None:
            samples = model.sample(n, generator)
        else:
            samples = model.sample(n, generator, torch.full((n,), label, dtype=torch.long))
        chunks.append(to_uint8(resize(to_rgb(samples), size)).cpu())
    return torch.cat(chunks).numpy()
