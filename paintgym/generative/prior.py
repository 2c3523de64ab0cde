"""Generative models as a prior: images sampled from a trained GAN or VAE, or photos translated by a CycleGAN,
as target datasets."""

from __future__ import annotations

import os

import numpy as np
import torch

from paintgym.canvas.images import load_images, to_float, to_uint8
from paintgym.canvas.pen import render_pen
from paintgym.generative.checkpoint import CheckpointError, load
from paintgym.generative.data import resize, to_rgb
from paintgym.generative.pen_data import load_pen_dataset, resolve_data

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


def parse_cyclegan_spec(spec: str) -> tuple[str, str, str]:
    """``cyclegan:PATH:DIR`` (or ``cyclegan:PATH:DIR:b2a``) -> ``(checkpoint path, image source, direction)``.

    PATH is a ``train-cyclegan`` checkpoint or run folder, DIR the images to translate (a folder, a
    ``.npy``/``.npz`` or a built-in dataset, as ``--targets`` takes them); the direction is ``a2b``
    (domain A to B, e.g. photos to paintings) unless the spec ends in ``:b2a``. PATH must not contain ``:``.
    """
    kind, _, rest = spec.partition(":")
    direction = "a2b"
    if rest.endswith((":a2b", ":b2a")):
        rest, direction = rest[:-4], rest[-3:]
    path, sep, source = rest.partition(":")
    if kind != "cyclegan" or not sep or not path or not source:
        raise ValueError(f"a CycleGAN target spec is cyclegan:CHECKPOINT:IMAGES[:b2a], e.g. "
                         f"cyclegan:runs/cyclegan/ckpt.pt:photos/, got {spec!r}")
    return path, source, direction


def translated_images(path: str | os.PathLike, source: str | os.PathLike | np.ndarray, size: int,
                      direction: str = "a2b", device: torch.device | str = "cpu") -> np.ndarray:
    """Every image of ``source`` translated by a trained CycleGAN, as a target dataset ``(N, size, size, 3)`` uint8.

    The images are loaded at the model's side (:func:`envs.images.load_images`: centre-cropped,
    resized), translated by ``G_ab`` (``direction="a2b"``) or ``G_ba``, then resized to ``size`` and
    turned RGB if the model is grey. Deterministic: the translators have no noise.

    :raises CheckpointError: for a missing checkpoint or one that is not a CycleGAN.
    :raises DatasetError: for a source with no readable images.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    model = load(path, device=device, kind="cyclegan")
    images = to_float(load_images(source, model.size))  # (N, 3, model.size, model.size)
    chunks = [to_uint8(resize(to_rgb(model.translate(images[i:i + _BATCH], direction)), size)).cpu()
              for i in range(0, len(images), _BATCH)]
    return torch.cat(chunks).numpy()


def sketch_images(name: str, size: int, count: int, split: str = "test") -> np.ndarray:
    """Human pen drawings of a stroke dataset (:func:`generative.pen_data.resolve_data`) as targets
    ``(count, size, size, 3)`` uint8: black ink on white.

    The dataset's own rasters (``{split}_images64`` or ``_images28``) when it has them; else the
    drawings fitted with paintgym strokes and rendered (slower: a fit per drawing). The ``test`` split
    by default, so that an agent copies drawings a stroke prior trained on ``train`` never saw.
    """
    with np.load(resolve_data(name), allow_pickle=False) as archive:
        key = next((f"{split}_images{side}" for side in (64, 28) if f"{split}_images{side}" in archive.files), None)
        rasters = None if key is None else archive[key][:count]
    if rasters is not None:
        grey = torch.from_numpy(255 - rasters).float().div_(255.0)[:, None]  # ink 255 on 0 -> black on white
        return to_uint8(resize(to_rgb(grey), size)).numpy()
    drawings = load_pen_dataset(name).splits[split]
    chosen = [drawings.drawing(i) for i in range(min(count, len(drawings)))]
    if not chosen:
        raise ValueError(f"stroke dataset {name!r} has no {split} drawings")
    return to_uint8(render_pen(chosen, size)).numpy()
