"""Image observations: the canvas, the target and the episode progress interleaved as one uint8 array.

:func:`pack_observation` builds it on any device; :class:`IncrementalObservation` keeps it on the CPU and
rebuilds only the boxes the renderer painted (the renderer converts those pixels as it paints them).
"""

from __future__ import annotations

import numpy as np
import torch

from paintgym.canvas.fastpath import HAVE_NUMBA, chunk_range, launch, numba
from paintgym.canvas.images import to_uint8

if HAVE_NUMBA:  # the renderer's kernel that converts painted boxes to uint8 (compiled only with numba on)
    from paintgym.canvas.render import _mirror_box


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
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _emit_rows(canvas, extra, plane, cache, keep, boxes, stale, out, start, stop)

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

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _restart_parallel(cache, mask, level, extra, boxes, stale, chunks):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, mask.shape[0])
            _restart_range(cache, mask, level, extra, boxes, stale, start, stop)


_NO_EXTRA = np.empty((0, 0, 0, 0), np.uint8)


class IncrementalObservation:
    """The ``image`` observation on the CPU, rebuilt only where the canvases changed.

    Converting every canvas to uint8 and interleaving it with the target and the progress plane costs
    about as much as painting, but a step changes only the box its strokes cover. This keeps the
    interleaved ``(B, H, W, C)`` observation in :attr:`cache`; the renderer refreshes its canvas
    channels as it paints (pass :attr:`cache` as ``mirror`` to :func:`canvas.render.paint_numpy`), and a
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
        launch(_restart_range, _restart_parallel, len(mask), self.cache, mask, np.uint8(level),
               _NO_EXTRA if extra is None else extra.numpy(), self.boxes, self.stale)

    def __call__(self, canvas: torch.Tensor, extra: torch.Tensor | None, plane: torch.Tensor) -> torch.Tensor:
        """The same array as :func:`pack_observation` (a new tensor), from the cache."""
        out = np.empty_like(self.cache)
        launch(_emit_rows, _emit_parallel, out.shape[0], canvas.detach().numpy(),
               _NO_EXTRA if extra is None else extra.numpy(), plane.numpy(), self.cache, self.keep, self.boxes,
               self.stale, out)
        return torch.from_numpy(out)
