"""Images in and out of the generative models: datasets, canvas adaptation, random-stroke baselines.

Datasets come from :func:`envs.images.load_images` (the one loader the environment's targets use
too) and are held on the training device as ``(N, C, size, size)`` uint8, converted to float one
batch at a time. The held-out split is the environment's ``test`` split
(:func:`envs.targets.split_indices`: every 10th image).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.nn import functional as F

from envs.images import DatasetError, load_images, to_float
from envs.render import render
from envs.targets import split_indices

GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights used to turn RGB into grey."""


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma, same dtype and range."""
    weights = torch.tensor(GREY_WEIGHTS, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(B, 1 or 3, H, W)`` -> ``(B, 3, H, W)`` (grey is repeated; RGB is returned as is)."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` float images to ``(B, C, size, size)``: area averaging to shrink, bilinear to enlarge."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    if images.shape[-1] > size:
        return F.interpolate(images, size=(size, size), mode="area")
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def adapt_images(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Bring paintgym canvases to a model's input: ``(B, 3, H, W)`` float in [0, 1] -> ``(B, channels, size, size)``.

    Resizes (see :func:`resize`) and converts to grey when ``channels == 1``; stays on the images'
    device and keeps the gradient. Pass ``model.size, model.channels``.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, 3, H, W) (or (B, 1, H, W)), got {tuple(images.shape)}")
    if channels == 1 and images.shape[1] == 3:
        images = to_grey(images)
    elif channels == 3 and images.shape[1] == 1:
        images = to_rgb(images)
    elif channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return resize(images.float(), size)


def is_grey(images: np.ndarray) -> bool:
    """Whether ``(N, H, W, 3)`` uint8 images have equal R, G and B everywhere."""
    return bool((images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all())


def load_dataset(source: str | os.PathLike | np.ndarray, size: int, channels: int | None = None,
                 split: str = "all", device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """A dataset as ``(N, channels, size, size)`` uint8 on ``device``, and its channel count.

    :param source: a built-in name (``digits``, ``faces``, ``photos``), a folder, a ``.npy``/``.npz``
        file or an array (see :func:`envs.images.load_images`).
    :param channels: 1 or 3; None picks 1 when every image is grey, else 3.
    :param split: ``train``, ``test`` (every 10th image) or ``all``.
    :raises DatasetError: for a missing path, an empty folder, undecodable files or a bad array.
    """
    images = load_images(source, size)  # (N, size, size, 3) uint8
    if channels is None:
        channels = 1 if is_grey(images) else 3
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    images = images[split_indices(len(images), split)]
    if channels == 1:
        grey = to_grey(to_float(images)).mul_(255.0).round_().to(torch.uint8)
        return grey.to(device), 1
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device), 3


def as_float(batch: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` uint8 -> float32 in [0, 1]."""
    return batch.float().div_(255.0)


def random_stroke_canvases(n: int, size: int, strokes: int = 8, seed: int = 0, background: float = 1.0,
                           device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` canvases ``(n, 3, size, size)`` in [0, 1], each painted with ``strokes`` uniformly random strokes.

    What a random painting policy produces; the baseline that a trained critic must rate below real images.
    """
    generator = torch.Generator().manual_seed(seed)
    params = torch.rand(n, strokes, 13, generator=generator).to(device)
    return render(params, size=size, background=background)
