"""Images in and out of the generative models: datasets, canvas adaptation, random-stroke baselines.

Datasets come from :func:`canvas.images.load_images` (the one loader the environment's targets use
too) and are held on the training device as ``(N, C, size, size)`` uint8, converted to float one
batch at a time. The held-out split is the environment's ``test`` split
(:func:`canvas.images.split_indices`: every 10th image).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from paintgym.canvas.images import BUILTIN_DATASETS, IMAGE_SUFFIXES, DatasetError, load_images, split_indices, to_float
from paintgym.canvas.render import render

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
        file or an array (see :func:`canvas.images.load_images`).
    :param channels: 1 or 3; None picks 1 when every image is grey, else 3.
    :param split: ``train``, ``test`` (every 10th image) or ``all``.
    :raises DatasetError: for a missing path, an empty folder, undecodable files or a bad array.
    """
    images = load_images(source, size)  # (N, size, size, 3) uint8
    return _channels_first(images[split_indices(len(images), split)], channels, is_grey(images), device)


def _channels_first(images: np.ndarray, channels: int | None, grey: bool,
                    device: torch.device | str) -> tuple[torch.Tensor, int]:
    """``(N, S, S, 3)`` uint8 -> ``(N, channels, S, S)`` uint8 on ``device`` (None: 1 if ``grey`` else 3)."""
    if channels is None:
        channels = 1 if grey else 3
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    if channels == 1:
        grey_images = to_grey(to_float(images)).mul_(255.0).round_().to(torch.uint8)
        return grey_images.to(device), 1
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device), 3


@dataclass
class Labelled:
    """A labelled dataset (what :func:`load_labelled` returns)."""

    images: torch.Tensor
    """``(N, channels, size, size)`` uint8"""
    labels: torch.Tensor
    """``(N,)`` int64 class indices in ``0 .. len(names) - 1``"""
    names: list[str]
    """class names, by index (the whole dataset's classes, whatever the split)"""
    channels: int


LABEL_KEYS = ("labels", "label", "targets", "y")
"""Names of the label array looked for in an ``.npz`` (else its only other 1-D integer array)."""


def _npz_labels(path: Path, count: int) -> tuple[np.ndarray, list[str] | None]:
    with np.load(path, allow_pickle=False) as loaded:
        arrays = {name: loaded[name] for name in loaded.files}
    candidates = [name for name in LABEL_KEYS if name in arrays]
    if not candidates:  # e.g. the Olivetti faces' `subject`
        candidates = [name for name, array in arrays.items()
                      if name != "images" and array.ndim == 1 and array.dtype.kind in "iu" and len(array) == count]
    if len(candidates) != 1:
        raise DatasetError(f"{path} holds arrays {sorted(arrays)}; a labelled .npz needs 'images' and 'labels' "
                           "(one integer class per image)")
    labels = arrays[candidates[0]]
    if labels.ndim != 1 or len(labels) != count or labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: '{candidates[0]}' must be {count} integer class labels, one per image, "
                           f"got {labels.dtype} {labels.shape}")
    names = [str(name) for name in arrays["class_names"]] if "class_names" in arrays else None
    return labels.astype(np.int64), names


def _folder_classes(path: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if len(folders) < 2:
        raise DatasetError(f"{path} needs one subfolder of images per class (at least 2), as ImageFolder; "
                           f"it has {len(folders)} subfolder(s)")
    if loose:
        warnings.warn(f"ignored {len(loose)} image file(s) directly in {path}: a labelled folder holds images "
                      "only in its class subfolders", stacklevel=3)
    images, labels = [], []
    for index, folder in enumerate(folders):
        try:
            part = load_images(folder, size)
        except DatasetError as err:
            raise DatasetError(f"class {folder.name!r}: {err}") from err
        images.append(part)
        labels.append(np.full(len(part), index, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels), [folder.name for folder in folders]


def load_labelled(source: str | os.PathLike, size: int, channels: int | None = None, split: str = "all",
                  device: torch.device | str = "cpu") -> Labelled:
    """A labelled image dataset, split as :func:`load_dataset` splits (every 10th image held out).

    :param source: ``digits`` (scikit-learn's, classes 0-9), a ``.npz`` with ``images`` and
        ``labels`` (any integers; optional ``class_names``), or a folder with one subfolder of
        images per class (ImageFolder layout; classes in the subfolders' sorted order).
    :param channels: 1 or 3; None picks 1 when every image is grey, else 3.
    :raises DatasetError: for unlabelled sources, missing labels or a folder without class subfolders.
    """
    path = Path(source).expanduser()
    names = None
    if str(source) == "digits":
        from sklearn.datasets import load_digits  # about a second to import: only the digits need it

        images, labels = load_images("digits", size), load_digits().target.astype(np.int64)
    elif isinstance(source, str) and source in BUILTIN_DATASETS:
        raise DatasetError(f"{source!r} has no class labels; give digits, an .npz with images and labels, "
                           "or a folder with one subfolder per class")
    elif path.is_dir():
        images, labels, names = _folder_classes(path, size)
    elif path.suffix.lower() == ".npz" and path.is_file():
        images = load_images(path, size)
        labels, names = _npz_labels(path, len(images))
    elif not path.exists():
        raise DatasetError(f"dataset {str(source)!r} is neither digits nor an existing .npz file or folder")
    else:
        raise DatasetError(f"{str(source)!r} has no class labels; give digits, an .npz with images and labels, "
                           "or a folder with one subfolder per class")
    values, labels = np.unique(labels, return_inverse=True)  # any integers -> 0 .. classes - 1
    if names is None:
        names = [str(value) for value in values]
    else:  # names by label value
        if values.min() < 0 or values.max() >= len(names):
            raise DatasetError(f"{str(source)!r}: {len(names)} class_names for labels {values.min()}..{values.max()}")
        names = [names[value] for value in values]
    if len(values) < 2:
        raise DatasetError(f"{str(source)!r} holds a single class ({names[0]!r}); a classifier needs at least 2")
    index = split_indices(len(images), split)
    tensor, channels = _channels_first(images[index], channels, is_grey(images), device)
    return Labelled(tensor, torch.as_tensor(labels[index], device=device), names, channels)


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
