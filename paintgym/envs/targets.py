"""Target images for reconstruction tasks: a pool on the env's device, drawn reproducibly per env.

A :class:`TargetSource` holds every target of a dataset split as ``(N, H, W, 3)`` uint8 on the
device. Which target an env paints in an episode is a hash of the env's seed and its episode
number, computed in torch on the device: no Python loop over envs, no host round trip, and env
``i`` of a vector env seeded ``s`` draws exactly what a single env seeded ``s + i`` draws.

Target specs (the env's ``targets=`` option, ``--targets`` on the command line):

* a dataset name, folder or ``.npy``/``.npz`` path understood by :func:`canvas.images.load_images`;
* ``gan:PATH`` / ``vae:PATH``: a pool of images sampled once from a trained generative model;
  ``gan:PATH:class=K`` samples only class K of a class-conditional GAN;
* ``sketch:NAME``: human pen drawings of a stroke dataset (``sheep``, ``omniglot``, ``kanji`` or an
  ``.npz``; its test split), painted as black strokes on white: targets for sketching;
* ``cyclegan:PATH:DIR``: the images of DIR translated by a trained CycleGAN (``:b2a`` at the end: backwards);
* an ``(N, H, W[, C])`` numpy array, or a ready :class:`TargetSource`.
"""

from __future__ import annotations

import functools
import os

import cv2
import numpy as np
import torch

from paintgym import generative
from paintgym.canvas.fastpath import HAVE_NUMBA, chunk_range, launch, numba
from paintgym.canvas.images import DatasetError, load_images, split_indices, to_float

if HAVE_NUMBA:
    _TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255.0)  # to_float's values, exactly

    @numba.njit(cache=True, nogil=True)
    def _take_range(images, index, mask, out_u8, out_float, start, stop):  # pragma: no cover - compiled
        """``out_u8[b] = images[index[b]]`` and ``out_float[b]`` its ``to_float`` where ``mask[b]``, in one pass."""
        height, width = images.shape[1], images.shape[2]
        for b in range(start, stop):
            if not mask[b]:
                continue
            src, dst = images[index[b]].reshape(-1), out_u8[b].reshape(-1)
            for i in range(src.shape[0]):
                dst[i] = src[i]
            image, planes = images[index[b]], out_float[b]
            for c in range(3):
                for y in range(height):
                    for x in range(width):
                        planes[c, y, x] = _TO_FLOAT[image[y, x, c]]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _take_parallel(images, index, mask, out_u8, out_float, chunks):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, mask.shape[0])
            _take_range(images, index, mask, out_u8, out_float, start, stop)


PRIOR_POOL = 512  # images sampled from a generative prior


def _cached_images(source: str, size: int) -> np.ndarray:
    return _images_seen_from(source, os.getcwd(), size)  # a relative path names other images from elsewhere


@functools.lru_cache(maxsize=8)
def _images_seen_from(source: str, cwd: str, size: int) -> np.ndarray:
    images = load_images(source, size)
    images.setflags(write=False)  # shared between envs: nobody may change it in place
    return images


def _prior_images(spec: str, size: int) -> np.ndarray:
    if spec.startswith("sketch:"):
        return generative.sketch_images(spec.split(":", 1)[1], size, PRIOR_POOL)
    if spec.startswith("cyclegan:"):
        path, source, direction = generative.parse_cyclegan_spec(spec)
        return generative.translated_images(path, source, size, direction)
    kind, path, label = generative.parse_prior_spec(spec)
    return generative.prior_images(kind, path, size=size, count=PRIOR_POOL, seed=0, label=label)


def is_prior_spec(spec: str) -> bool:
    """Whether ``spec`` names targets made by a model or a stroke dataset (``gan:``, ``vae:``, ``cyclegan:``,
    ``sketch:``) rather than images."""
    return ":" in spec and spec.split(":", 1)[0] in ("gan", "vae", "cyclegan", "sketch")


AUGMENT_SEED = 0x5EED  # the augmented pool is part of the dataset's definition: the same for every run
AUGMENT_SCALE = (0.6, 1.0)  # side of a random crop, as a fraction of the image's side


def augmented_views(images: np.ndarray, size: int, count: int, seed: int = AUGMENT_SEED) -> np.ndarray:
    """``count`` random views of every image: a square crop of 60-100% of its side at a random place,
    mirrored left-right half the time, resized to ``size``.

    :param images: ``(N, S, S, 3)`` uint8 (best at a larger side than ``size``, so that crops keep detail).
    :return: ``(N * count, size, size, 3)`` uint8, view ``j`` of image ``i`` at ``i * count + j``.
    """
    rng = np.random.default_rng(seed)
    side = images.shape[1]
    out = np.empty((len(images) * count, size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):  # once per dataset, at load time
        for j in range(count):
            crop = max(2, int(round(side * rng.uniform(*AUGMENT_SCALE))))
            top, left = rng.integers(0, side - crop + 1, size=2)
            view = image[top:top + crop, left:left + crop]
            if rng.random() < 0.5:
                view = view[:, ::-1]
            interpolation = cv2.INTER_AREA if crop > size else cv2.INTER_CUBIC
            out[i * count + j] = cv2.resize(np.ascontiguousarray(view), (size, size), interpolation=interpolation)
    return out


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mix (Chris Wellons' lowbias32 family) on int64 tensors; values stay < 2**59."""
    mask = 0xFFFFFFFF
    x = x & mask
    x = (((x >> 16) ^ x) * 0x45D9F3B) & mask
    x = (((x >> 16) ^ x) * 0x45D9F3B) & mask
    return (x >> 16) ^ x


def hash_draw(seeds: torch.Tensor, episodes: torch.Tensor, salt: int | torch.Tensor = 0) -> torch.Tensor:
    """A reproducible pseudo-random 32-bit draw per (env seed, episode number, salt), int64 tensors
    broadcast together: the same seed and episode always draw the same value, different salts
    independent ones (targets use salt 0; the env's condition and noise draw with others)."""
    mixed = _hash32(seeds) ^ ((episodes * 0x9E3779B1) & 0xFFFFFFFF)
    if not (isinstance(salt, int) and salt == 0):
        mixed = _hash32(mixed ^ ((torch.as_tensor(salt, device=seeds.device) * 0x85EBCA6B) & 0xFFFFFFFF))
    return _hash32(mixed)


class TargetSource:
    """A pool of target images on a device.

    :param images: ``(N, H, W, 3)`` uint8 (array or tensor), already at the canvas size.
    :param device: where the pool lives.
    :param name: what the pool came from, for messages and run records.
    """

    def __init__(self, images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu", name: str = "array"):
        images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise DatasetError(f"target images must be (N, H, W, 3) uint8, got {tuple(images.shape)} {images.dtype}")
        if len(images) == 0:
            raise DatasetError(f"target source {name!r} holds no images")
        self.images = images.to(device).contiguous()  # (N, H, W, 3) uint8
        self.name = name

    @classmethod
    def from_spec(cls, spec: str | os.PathLike | np.ndarray | TargetSource, size: int,
                  device: torch.device | str = "cpu", split: str = "train", augment: int = 0) -> TargetSource:
        """Build the pool for ``spec`` (see the module docstring) at ``size`` x ``size``.

        :param augment: for the ``train`` or ``all`` split of an image dataset, add this many random
            views of every image (:func:`augmented_views`) to the pool; held-out images are never augmented.
        """
        if not isinstance(augment, (int, np.integer)) or augment < 0:
            raise ValueError(f"target_augment must be a count of views per image (>= 0), got {augment!r}")
        if isinstance(spec, TargetSource):
            if spec.size != size:
                raise DatasetError(f"target source is {spec.size}x{spec.size} but the canvas is {size}x{size}")
            return cls(spec.images, device, spec.name)
        prior = isinstance(spec, (str, os.PathLike)) and is_prior_spec(os.fspath(spec))
        if prior and augment:
            raise ValueError("target_augment works on image datasets; samples of a generative prior vary already")
        if isinstance(spec, np.ndarray):
            images, name = load_images(spec, size), "array"
        else:
            name = os.fspath(spec)
            images = _prior_images(name, size) if prior else _cached_images(name, size)
        chosen = split_indices(len(images), split)
        images = images[chosen]
        if augment and split != "test":
            large = load_images(spec, 2 * size) if isinstance(spec, np.ndarray) else _cached_images(name, 2 * size)
            images = np.concatenate([images, augmented_views(large[chosen], size, augment)])
            name = f"{name}[+{augment} views]"
        return cls(images, device, f"{name}[{split}]")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[1]

    def draw(self, seeds: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor:
        """Target index for each env: ``(B,)`` int64 seeds and episode numbers -> ``(B,)`` int64."""
        return hash_draw(seeds, episodes) % len(self)

    def get(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images at ``index`` ``(B,)``: ``(B, H, W, 3)`` uint8 and ``(B, 3, H, W)`` float in [0, 1]."""
        chosen = self.images[index]
        return chosen, to_float(chosen)

    def get_into(self, index: torch.Tensor, mask: torch.Tensor, out_u8: torch.Tensor, out_float: torch.Tensor) -> None:
        """:meth:`get` written into ``out_u8`` ``(B, H, W, 3)`` and ``out_float`` ``(B, 3, H, W)`` where ``mask``
        ``(B,)`` is True; the rest is left as it is (a reset of some envs does not rebuild every target)."""
        if HAVE_NUMBA and out_float.device.type == "cpu" and out_float.dtype == torch.float32:
            launch(_take_range, _take_parallel, len(mask), self.images.numpy(), index.numpy(), mask.numpy(),
                   out_u8.numpy(), out_float.numpy())
            return
        chosen_u8, chosen_float = self.get(index)
        out_u8.copy_(torch.where(mask.view(-1, 1, 1, 1), chosen_u8, out_u8))
        out_float.copy_(torch.where(mask.view(-1, 1, 1, 1), chosen_float, out_float))


class InOrderTargets(TargetSource):
    """A target pool that env ``i`` paints in order: image ``i mod N`` in every episode (evaluations:
    every image once, none twice before all have come, whatever the seeds)."""

    def draw(self, seeds: torch.Tensor, episodes: torch.Tensor) -> torch.Tensor:
        return torch.arange(seeds.shape[0], device=seeds.device) % len(self)
