"""Image conventions and image datasets — the one place both the environment and ``generative`` load from.

Inside paintgym an image batch is ``(B, 3, H, W)`` float32 in [0, 1]; outside (Gymnasium
observations, files) it is ``(B, H, W, 3)`` uint8. :func:`to_uint8` and :func:`to_float` are the
only conversions between the two.

:func:`load_images` reads a dataset into a ``(N, size, size, 3)`` uint8 array. A source is:

==================  ==========================================================================
``digits``          scikit-learn's 1,797 handwritten digits (8x8), black ink on white
``faces``           scikit-image's bundled LFW subset: 200 grey faces (25x25)
``photos``          the colour and grey photos bundled with scikit-image and scikit-learn (17)
a folder            every readable image below it, recursively (PNG, JPEG, BMP, TIFF, WebP)
a ``.npy``/``.npz``  an array ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)``, uint8 or float in [0, 1];
                    from a ``.npz`` the array named ``images``, else the only array in it
``A+B+...``         the images of every source named, in that order (a path that exists as written,
                    ``+`` and all, is one source)
==================  ==========================================================================

Images are centre-cropped to a square and resized with OpenCV once (area interpolation to shrink,
cubic to enlarge); grey images become RGB.

:func:`split_indices` is the one train/test split of a dataset (every 10th image held out), shared by
the environment's targets and the generative models' training.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
import skimage.data
import torch

BUILTIN_DATASETS = {
    "digits": "scikit-learn's handwritten digits, 1,797 images, black ink on white",
    "faces": "scikit-image's LFW subset, 200 grey faces",
    "photos": "17 photos bundled with scikit-image and scikit-learn (astronaut, coffee, chelsea, ...)",
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
    "retina.jpg", "rocket.jpg", "camera.png", "coins.png", "moon.png", "grass.png", "gravel.png", "brick.png",
    "page.png",
)  # fmt: skip


class DatasetError(ValueError):
    """A dataset could not be loaded; the message says why and what to do."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float in [0, 1] -> a new ``(B, H, W, 3)`` uint8 tensor on the same device."""
    return images.detach().permute(0, 2, 3, 1).mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)


def to_float(images: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 (tensor or array) -> ``(B, 3, H, W)`` float32 in [0, 1] on ``device``."""
    tensor = torch.as_tensor(images, device=device)
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``(H, W[, C])`` uint8 to a square and resize it to ``(size, size, 3)`` uint8 RGB."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top:top + side, left:left + side]
    if side != size:
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _as_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise DatasetError("image array contains NaN or inf values")
    if array.max(initial=0.0) > 1.0 + 1e-6:  # values in 0..255
        return np.clip(np.rint(array), 0, 255).astype(np.uint8)
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def _read_file(path: Path) -> np.ndarray | None:
    """An image file as RGB(A)/grey uint8, or None if it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = (image.astype(np.float64) / np.iinfo(image.dtype).max * 255.0).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:  # composite transparency on white
        alpha = image[..., 3:4].astype(np.float32) / 255.0
        image = (image[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _from_array(array: np.ndarray, origin: str) -> list[np.ndarray]:
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 4 and array.shape[1] in (1, 3, 4) and array.shape[3] not in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3, 4)):
        raise DatasetError(
            f"{origin}: expected images shaped (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1/3/4, "
            f"got {array.shape}"
        )
    if len(array) == 0:
        raise DatasetError(f"{origin}: the array holds no images")
    return list(_as_uint8(array))


def _load_array_file(path: Path) -> list[np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}; give a .npy or .npz file of images") from err
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if "images" in names:
                array = loaded["images"]
            elif len(names) == 1:
                array = loaded[names[0]]
            else:
                raise DatasetError(f"{path} holds arrays {names}; name the image array 'images'")
    else:
        array = loaded
    return _from_array(array, str(path))


def _load_folder(path: Path) -> list[np.ndarray]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {path}")
    images, unreadable = [], 0
    for file in files:
        image = _read_file(file)
        if image is None:
            unreadable += 1
        else:
            images.append(image)
    if not images:
        raise DatasetError(f"none of the {len(files)} image files under {path} could be decoded")
    if unreadable:
        warnings.warn(f"skipped {unreadable} unreadable image file(s) under {path}", stacklevel=3)
    return images


def _load_builtin(name: str) -> list[np.ndarray]:
    # scikit-learn takes about a second to import: only the built-in datasets load it, when they are asked for
    if name == "digits":
        from sklearn.datasets import load_digits

        ink = load_digits().images / 16.0  # (1797, 8, 8), 0 = paper, 1 = ink
        return list(np.rint(255.0 * (1.0 - ink)).astype(np.uint8))
    if name == "faces":
        return list(_as_uint8(skimage.data.lfw_subset()))
    if name == "photos":
        from sklearn.datasets import load_sample_images

        folder = Path(skimage.data.__file__).parent
        images = [iio.imread(folder / file) for file in _SKIMAGE_PHOTOS if (folder / file).exists()]
        images = [image[..., :3] if image.ndim == 3 else image for image in images]  # drop alpha
        return images + list(load_sample_images().images)
    raise DatasetError(f"unknown dataset {name!r}")


def load_images(source: str | os.PathLike | np.ndarray, size: int) -> np.ndarray:
    """Load a dataset as ``(N, size, size, 3)`` uint8 RGB (see the module docstring for sources).

    :raises DatasetError: for a missing path, an empty folder, undecodable files or a bad array.
    """
    if isinstance(source, str) and "+" in source and not Path(source).expanduser().exists():
        try:
            return np.concatenate([load_images(part, size) for part in source.split("+")])
        except DatasetError as error:
            raise DatasetError(f"{error} (in the union {source!r})") from None
    if isinstance(source, np.ndarray):
        images = _from_array(source, "array")
    elif isinstance(source, str) and source in BUILTIN_DATASETS:
        images = _load_builtin(source)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            known = ", ".join(BUILTIN_DATASETS)
            raise DatasetError(f"dataset {str(source)!r} is neither a built-in ({known}) nor an existing path")
        if path.is_dir():
            images = _load_folder(path)
        elif path.suffix.lower() in (".npy", ".npz"):
            images = _load_array_file(path)
        else:
            image = _read_file(path)
            if image is None:
                raise DatasetError(f"cannot decode image file {path}")
            images = [image]
    return np.stack([fit_square(image, size) for image in images])


SPLITS = ("train", "test", "all")
HELD_OUT_EVERY = 10  # every 10th image (index % 10 == 0) is held out for evaluation


def split_indices(count: int, split: str) -> np.ndarray:
    """Indices of ``split`` in a dataset of ``count`` images (small datasets share all images)."""
    if split not in SPLITS:
        raise ValueError(f"unknown target split {split!r}; choose one of {', '.join(SPLITS)}")
    index = np.arange(count)
    if split == "all" or count < 2 * HELD_OUT_EVERY:
        return index
    held_out = index % HELD_OUT_EVERY == 0
    return index[held_out] if split == "test" else index[~held_out]
