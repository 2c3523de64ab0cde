"""Cutting the patch actor's stroke windows out of the canvas and the target.

A window is a square of ``P x P`` bilinear samples (``grid_sample`` with ``align_corners=False`` and
border padding) at the coordinates ``xs`` along its columns and ``ys`` along its rows, one window per
stroke. :func:`cut_windows` is the torch version, for every device and for gradients into the images;
:func:`cut_windows_numba` is the same sampling on the CPU when no gradient flows into the images (acting,
and training, where the actor sees a detached canvas): one numba kernel that writes the canvas's and the
target's windows side by side in the channels-last layout the window CNN reads, instead of two
``grid_sample`` calls, a transpose, a concatenation and a layout change (the tests check that both
agree). ``grid_sample`` on the CPU is slow inside the painting loop, where its outputs land on fresh
memory: painting with the kernel is 1.5x as fast on one thread.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from paintgym.canvas.fastpath import HAVE_NUMBA, chunk_range, launch, numba, use_numba


def cut_windows(image: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Bilinear windows of ``image``, differentiably.

    :param image: ``(B, C, H, W)``.
    :param xs: ``(B, S, P)`` sample columns as fractions of the width (0 = left edge, 1 = right edge).
    :param ys: ``(B, S, P)`` sample rows, as fractions of the height.
    :return: ``(B * S, C, P, P)``: window ``s`` of image ``b`` at ``b * S + s``, row ``i`` sampled at ``ys[b, s, i]``.
    """
    b, s, p = xs.shape
    grid = torch.stack([xs[:, :, None, :].expand(-1, -1, p, -1), ys[:, :, :, None].expand(-1, -1, -1, p)], -1)
    grid = (grid * 2.0 - 1.0).view(b, s * p, p, 2)  # the S windows stacked along the height
    cut = nn.functional.grid_sample(image, grid.to(image.dtype), align_corners=False, padding_mode="border")
    return cut.view(b, image.shape[1], s, p, p).transpose(1, 2).reshape(b * s, image.shape[1], p, p)


def can_cut_with_numba(*tensors: torch.Tensor | None) -> bool:
    """Whether :func:`cut_windows_numba` takes these images and coordinates: numba is on, they are float32 CPU
    tensors, and none of them needs a gradient."""
    present = [tensor for tensor in tensors if tensor is not None]
    return HAVE_NUMBA and all(use_numba(tensor) and not (torch.is_grad_enabled() and tensor.requires_grad)
                              for tensor in present)


def cut_windows_numba(canvas: torch.Tensor, target: torch.Tensor | None, xs: torch.Tensor,
                      ys: torch.Tensor) -> torch.Tensor:
    """``torch.cat([cut_windows(canvas, xs, ys), cut_windows(target, xs, ys)], 1)`` in channels-last memory
    (the canvas's windows alone without a target), by one numba kernel; no gradient (see :func:`can_cut_with_numba`).

    :param canvas: ``(B, 3, H, W)`` float32 on the CPU.
    :param target: ``(B, 3, H, W)`` float32 on the CPU, or None.
    :return: ``(B * S, 3 or 6, P, P)`` float32, channels-last strides.
    """
    b, s, p = xs.shape
    channels = 3 if target is None else 6
    out = torch.empty((b * s, p, p, channels), dtype=torch.float32)
    canvas_np = canvas.detach().contiguous().numpy()
    target_np = canvas_np if target is None else target.detach().contiguous().numpy()
    gx, gy = (coords.detach().float().mul(2.0).sub_(1.0).contiguous().numpy() for coords in (xs, ys))
    launch(_cut_range, _cut_parallel, b, canvas_np, target_np, target is not None, gx, gy, out.numpy())
    return out.permute(0, 3, 1, 2)


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True, fastmath=True)
    def _cut_range(canvas, target, has_target, gx, gy, out, start, stop):  # pragma: no cover - compiled
        """Windows of images ``start:stop``: ``out[b * S + s, i, j, c]`` samples channel ``c`` (3 + c: the
        target's) at grid coordinates ``(gx[b, s, j], gy[b, s, i])`` in [-1, 1], as ``grid_sample`` does."""
        height, width = canvas.shape[2], canvas.shape[3]
        strokes, patch = gx.shape[1], gx.shape[2]
        left = np.empty(patch, np.int64)
        right = np.empty(patch, np.int64)
        across = np.empty(patch, np.float32)
        one, half = np.float32(1.0), np.float32(0.5)
        for b in range(start, stop):
            for s in range(strokes):
                n = b * strokes + s
                for j in range(patch):  # grid_sample's unnormalisation, clamped to the border
                    x = min(max(((gx[b, s, j] + one) * np.float32(width) - one) * half, np.float32(0.0)),
                            np.float32(width - 1))
                    left[j] = int(np.floor(x))
                    right[j] = min(left[j] + 1, width - 1)
                    across[j] = x - np.float32(left[j])
                for i in range(patch):
                    y = min(max(((gy[b, s, i] + one) * np.float32(height) - one) * half, np.float32(0.0)),
                            np.float32(height - 1))
                    top = int(np.floor(y))
                    bottom = min(top + 1, height - 1)
                    down = y - np.float32(top)
                    for j in range(patch):
                        x0, x1, w = left[j], right[j], across[j]
                        for c in range(3):
                            upper = canvas[b, c, top, x0] + w * (canvas[b, c, top, x1] - canvas[b, c, top, x0])
                            lower = canvas[b, c, bottom, x0] + w * (canvas[b, c, bottom, x1] - canvas[b, c, bottom, x0])
                            out[n, i, j, c] = upper + down * (lower - upper)
                        if has_target:
                            for c in range(3):
                                upper = target[b, c, top, x0] + w * (target[b, c, top, x1] - target[b, c, top, x0])
                                lower = (target[b, c, bottom, x0]
                                         + w * (target[b, c, bottom, x1] - target[b, c, bottom, x0]))
                                out[n, i, j, 3 + c] = upper + down * (lower - upper)

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _cut_parallel(canvas, target, has_target, gx, gy, out, chunks):  # pragma: no cover - compiled
        for chunk in numba.prange(chunks):
            start, stop = chunk_range(chunk, chunks, canvas.shape[0])
            _cut_range(canvas, target, has_target, gx, gy, out, start, stop)
