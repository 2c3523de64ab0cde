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
==================  ==========================================================================

Images are centre-cropped to a square and resized with OpenCV once (area interpolation to shrink,
cubic to enlarge); grey images become RGB.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from paintgym.envs.render import HAVE_NUMBA
from paintgym.rewards.fastpath import PARALLEL_MIN_BATCH, keep_torch_threads, launch, parallel_threads

if HAVE_NUMBA:  # the CPU fast path of image observations
    import numba

    from paintgym.envs.render import _mirror_box

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


def pack_observation(canvas: torch.Tensor, extra: torch.Tensor | None, plane: torch.Tensor) -> torch.Tensor:
    """The ``image`` observation: canvas, optional extra channels and a constant plane, channel-last.

    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param extra: ``(B, H, W, E)`` uint8 (the target), or None.
    :param plane: ``(B,)`` uint8, the value of the last channel.
    :return: a new ``(B, H, W, 3 + E + 1)`` uint8 tensor on the canvas's device (on the CPU,
        :class:`IncrementalObservation` builds the same array faster).
    """
    size = canvas.shape[-1]
    parts = [to_uint8(canvas)] + ([extra] if extra is not None else [])
    parts.append(plane.view(-1, 1, 1, 1).expand(-1, size, size, 1))
    return torch.cat(parts, dim=-1)


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def _emit_rows(canvas, extra, plane, cache, keep, boxes, stale, out, start, stop):  # pragma: no cover - compiled
        """Refresh ``cache`` inside ``boxes`` (canvas) and where ``stale`` (target), copy it to ``out`` with the
        plane stamped in (``keep``: see :class:`IncrementalObservation`)."""
        height, width, n_extra, last = canvas.shape[2], canvas.shape[3], extra.shape[3], out.shape[3] - 1
        block = keep.shape[0]
        for b in range(start, stop):
            if boxes[b, 0] <= boxes[b, 1]:
                _mirror_box(canvas[b], cache[b], boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3])
                boxes[b, 0], boxes[b, 1] = height, -1
            if stale[b]:
                for y in range(height):
                    for x in range(width):
                        for c in range(n_extra):
                            cache[b, y, x, 3 + c] = extra[b, y, x, c]
                stale[b] = False
            # flat loops: numba's slice assignment is ~10x slower than what LLVM makes of these
            if block > 0:  # copy and stamp in one pass of 64-bit words: plane bytes come from `level`
                src, dst = cache[b].reshape(-1).view(np.uint64), out[b].reshape(-1).view(np.uint64)
                level = np.uint64(plane[b]) * np.uint64(0x0101010101010101)
                for first in range(0, src.shape[0], block):
                    src_block, dst_block = src[first:first + block], dst[first:first + block]
                    for j in range(block):
                        dst_block[j] = (src_block[j] & keep[j]) | (level & ~keep[j])
            else:  # rows not a whole number of words: bytes, then the plane
                src, dst = cache[b].reshape(-1), out[b].reshape(-1)
                for i in range(src.shape[0]):
                    dst[i] = src[i]
                value = plane[b]
                for i in range(last, dst.shape[0], last + 1):
                    dst[i] = value

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _emit_parallel(canvas, extra, plane, cache, keep, boxes, stale, out, chunks):  # pragma: no cover - compiled
        per = (canvas.shape[0] + chunks - 1) // chunks
        for c in numba.prange(chunks):
            _emit_rows(canvas, extra, plane, cache, keep, boxes, stale, out, c * per,
                       min(canvas.shape[0], (c + 1) * per))

    @numba.njit(cache=True, nogil=True)
    def _restart_range(cache, mask, level, extra, boxes, stale, start, stop):  # pragma: no cover - compiled
        """Where ``mask``: the cache's canvas channels become ``level``, its extra channels ``extra``."""
        n_extra = extra.shape[3]
        for b in range(start, stop):
            if not mask[b]:
                continue
            image = cache[b]
            for y in range(image.shape[0]):
                for x in range(image.shape[1]):
                    image[y, x, 0], image[y, x, 1], image[y, x, 2] = level, level, level
                    for c in range(n_extra):
                        image[y, x, 3 + c] = extra[b, y, x, c]
            boxes[b, 0], boxes[b, 1] = image.shape[0], -1
            stale[b] = False

    @numba.njit(cache=True, nogil=True)
    def _restart_serial(cache, mask, level, extra, boxes, stale):  # pragma: no cover - compiled
        _restart_range(cache, mask, level, extra, boxes, stale, 0, mask.shape[0])

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _restart_parallel(cache, mask, level, extra, boxes, stale):  # pragma: no cover - compiled
        chunks = min(mask.shape[0], 16)
        per = (mask.shape[0] + chunks - 1) // chunks
        for c in numba.prange(chunks):
            _restart_range(cache, mask, level, extra, boxes, stale, c * per, min(mask.shape[0], (c + 1) * per))


_NO_EXTRA = np.empty((0, 0, 0, 0), np.uint8)


class IncrementalObservation:
    """The ``image`` observation on the CPU, rebuilt only where the canvases changed.

    Converting every canvas to uint8 and interleaving it with the target and the progress plane costs
    about as much as painting, but a step changes only the box its strokes cover. This keeps the
    interleaved ``(B, H, W, C)`` observation in :attr:`cache`; the renderer refreshes its canvas
    channels as it paints (pass :attr:`cache` as ``mirror`` to :func:`envs.render.paint_numpy`), and a
    call hands out a copy with the current progress plane. Canvases or targets changed any other way
    must be announced with :meth:`invalidate`.

    :param num_envs: B.
    :param size: H = W.
    :param extra_channels: E, the target's channels (0 without a target).
    """

    def __init__(self, num_envs: int, size: int, extra_channels: int) -> None:
        channels = 3 + extra_channels + 1
        self.cache = np.zeros((num_envs, size, size, channels), dtype=np.uint8)
        # one image row as 64-bit words, all ones but the plane channel's bytes: an observation is then
        # (cache & keep) | (plane & ~keep), word by word (empty when a row is not a whole number of words)
        row = np.full((size, channels), 0xFF, dtype=np.uint8)
        row[:, -1] = 0
        self.keep = row.reshape(-1).view(np.uint64).copy() if row.size % 8 == 0 else np.empty(0, np.uint64)
        # (B, 4) int64 (y_lo, y_hi, x_lo, x_hi), inclusive: canvas pixels to refresh (empty: y_lo > y_hi)
        self.boxes = np.empty((num_envs, 4), dtype=np.int64)
        self.stale = np.empty(num_envs, dtype=np.bool_)  # (B,) envs whose target changed
        self.invalidate()

    def invalidate(self, mask: np.ndarray | None = None) -> None:
        """Mark whole envs (``mask`` ``(B,)`` bool; None: all) as changed: canvas and target."""
        index = slice(None) if mask is None else mask
        self.boxes[index] = (0, self.cache.shape[1] - 1, 0, self.cache.shape[2] - 1)
        self.stale[index] = True

    def restart(self, mask: np.ndarray, level: int, extra: torch.Tensor | None) -> None:
        """Envs in ``mask`` ``(B,)`` bool start over: a blank canvas of grey ``level`` (uint8) and new
        ``extra`` ``(B, H, W, E)`` uint8 (read where ``mask``); cheaper than :meth:`invalidate`."""
        launch(_restart_serial, _restart_parallel, len(mask), self.cache, mask, np.uint8(level),
               _NO_EXTRA if extra is None else extra.numpy(), self.boxes, self.stale)

    def __call__(self, canvas: torch.Tensor, extra: torch.Tensor | None, plane: torch.Tensor) -> torch.Tensor:
        """The same array as :func:`pack_observation` (a new tensor), from the cache."""
        out = np.empty_like(self.cache)
        args = (canvas.detach().numpy(), _NO_EXTRA if extra is None else extra.numpy(), plane.numpy(), self.cache,
                self.keep, self.boxes, self.stale, out)
        batch = out.shape[0]
        if batch >= PARALLEL_MIN_BATCH and torch.get_num_threads() > 1:
            _emit_parallel(*args, min(batch, parallel_threads() * 4))
            keep_torch_threads()
        else:
            _emit_rows(*args, 0, batch)
        return torch.from_numpy(out)


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
    if name == "digits":
        from sklearn.datasets import load_digits

        ink = load_digits().images / 16.0  # (1797, 8, 8), 0 = paper, 1 = ink
        return list(np.rint(255.0 * (1.0 - ink)).astype(np.uint8))
    if name == "faces":
        from skimage import data

        return list(_as_uint8(data.lfw_subset()))
    if name == "photos":
        import imageio.v3 as iio
        import skimage.data
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
