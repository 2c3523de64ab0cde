"""Reconstruction towards a target image, and the zero reward of free painting."""

from __future__ import annotations

import functools

import numpy as np
import torch

from paintgym.canvas import fastpath
from paintgym.canvas.fastpath import chunk_range, numba
from paintgym.rewards.base import Reward, StepContext
from paintgym.rewards.registry import register


@register
class TargetReward(Reward):
    """Dense reconstruction reward: the decrease of the distance to the target (Learning to Paint).

    The potential is ``-distance(canvas, target)`` (with ``psnr``: the PSNR), so an episode's return is
    the initial minus the final distance (the PSNR gained).

    :param metric: ``l2`` (mean squared error, default) or ``l1`` (mean absolute error), over pixels
        and channels; ``psnr``: the peak signal-to-noise ratio in dB (``-10 log10`` of the mean squared
        error), whose gains weigh each stroke by how much of the remaining error it removes, so late, fine
        strokes and well-painted images count as much as the first blobs; or ``ssim``: ``1 - SSIM``
        (structural similarity, Wang et al. 2004, see :func:`ssim`), which rewards matching local
        structure and contrast rather than exact values.
    """

    name = "target"
    description = "decrease of the distance to the target image (metric=l2|l1|psnr|ssim)"
    needs_target = True
    differentiable = True
    METRICS = ("l2", "l1", "psnr", "ssim")

    def __init__(self, metric: str = "l2") -> None:
        super().__init__()
        self._row_error: np.ndarray | None = None
        if metric not in self.METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(self.METRICS)}")
        self.metric = metric

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if target is None:
            raise ValueError("the 'target' reward needs a target image; use a task with targets "
                             "(paintgym/Reconstruct-v0) or another reward")
        if self.metric == "ssim":
            return ssim(canvas, target).sub_(1.0)
        distance = mean_distance(canvas, target, squared=self.metric != "l1")
        return psnr(distance) if self.metric == "psnr" else distance.neg_()

    # --- incremental potential on the CPU: per-row error sums, updated only in the rows a step changed.
    # A 64x64 stroke changes about half the rows; the full distance reads every canvas and target pixel.
    def _rows_apply(self, canvas: torch.Tensor, target: torch.Tensor | None) -> bool:
        return (self.metric != "ssim" and target is not None and canvas.shape == target.shape
                and fastpath.use_numba(canvas) and fastpath.use_numba(target))

    def _potential_from_rows(self, canvas: torch.Tensor, target: torch.Tensor, lo: np.ndarray,
                             hi: np.ndarray) -> torch.Tensor:
        b, c, h, w = canvas.shape
        if self._row_error is None or self._row_error.shape != (b, h):
            self._row_error = np.zeros((b, h), dtype=np.float64)  # (B, H) error summed over channels, columns
            lo, hi = np.zeros(b, dtype=np.int64), np.full(b, h - 1, dtype=np.int64)
        out = np.empty(b, dtype=np.float32)
        fastpath.launch(_rows_range, _rows_parallel, b, canvas.detach().numpy(), target.detach().numpy(),
                        self.metric != "l1", lo, hi, self._row_error, out)
        distance = torch.from_numpy(out)
        return psnr(distance) if self.metric == "psnr" else distance.neg_()

    def reset_potential(self, canvas: torch.Tensor, target: torch.Tensor | None, mask: torch.Tensor,
                        condition: torch.Tensor | None = None) -> torch.Tensor:
        if not self._rows_apply(canvas, target):
            self._row_error = None
            return self.score(canvas, target)
        mask = mask.numpy()
        lo = np.where(mask, 0, canvas.shape[2]).astype(np.int64)
        return self._potential_from_rows(canvas, target, lo, np.full_like(lo, canvas.shape[2] - 1))

    def step_potential(self, ctx: StepContext) -> torch.Tensor:
        if ctx.changed_rows is None or not self._rows_apply(ctx.canvas, ctx.target):
            self._row_error = None  # rows unknown: the next row-wise call starts from scratch
            return self.score(ctx.canvas, ctx.target)
        rows = ctx.changed_rows.numpy()
        return self._potential_from_rows(ctx.canvas, ctx.target, rows[:, 0], rows[:, 1])

    def options(self) -> dict[str, str]:
        return {"metric": self.metric}


def psnr(l2: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1] from their mean squared error ``(B,)``
    (at most 100 dB: an exact copy is not infinitely good)."""
    return 10.0 * torch.log10(1.0 / l2.clamp_min(1e-10))


def _tracks_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records an operation on ``tensors`` (then the differentiable torch path runs)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def mean_distance(x: torch.Tensor, y: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """Mean squared (``squared``) or absolute difference of image pairs, over pixels and channels.

    :param x: ``(B, C, H, W)`` float.
    :param y: ``(B, C, H, W)`` float, same shape.
    :return: ``(B,)`` float32. On the CPU a numba kernel reads both images once without allocating
        the difference (a 256 x 3 x 64 x 64 batch: about 5x faster than the torch path; they agree);
        when autograd tracks an input, the torch path runs and the result is differentiable.
    """
    if x.shape != y.shape:
        raise ValueError(f"canvas and target must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if fastpath.use_numba(x) and fastpath.use_numba(y) and not _tracks_grad(x, y):
        out = np.empty(x.shape[0], dtype=np.float32)
        fastpath.launch(_distance_range, _distance_parallel, x.shape[0], x.detach().reshape(x.shape[0], -1).numpy(),
                        y.detach().reshape(y.shape[0], -1).numpy(), squared, out)
        return torch.from_numpy(out)
    diff = torch.sub(x, y)
    distance = diff.square_() if squared else diff.abs_()
    return distance.view(distance.shape[0], -1).mean(dim=1)  # faster than a 3-dim mean


if fastpath.HAVE_NUMBA:

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def _distance_one(x: np.ndarray, y: np.ndarray, squared: bool) -> float:  # pragma: no cover - jit
        total = 0.0  # float64: exact enough for any canvas size
        if squared:
            for i in range(x.shape[0]):
                d = x[i] - y[i]
                total += d * d
        else:
            for i in range(x.shape[0]):
                total += abs(x[i] - y[i])
        return total / x.shape[0]

    @numba.njit(nogil=True, cache=True)
    def _distance_range(x: np.ndarray, y: np.ndarray, squared: bool, out: np.ndarray, start: int,
                        stop: int) -> None:  # pragma: no cover - jit
        for b in range(start, stop):
            out[b] = _distance_one(x[b], y[b], squared)

    @numba.njit(nogil=True, cache=True, parallel=True)
    def _distance_parallel(x: np.ndarray, y: np.ndarray, squared: bool, out: np.ndarray,
                           chunks: int) -> None:  # pragma: no cover - jit
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, x.shape[0])
            _distance_range(x, y, squared, out, start, stop)


    @numba.njit(fastmath=True, nogil=True, cache=True)
    def _rows_range(x, y, squared, lo, hi, row_error, out, start, stop):  # pragma: no cover - jit
        """Recompute ``row_error[b, lo[b]:hi[b] + 1]`` from images ``(B, C, H, W)``; ``out[b]``: the mean."""
        channels, height, width = x.shape[1], x.shape[2], x.shape[3]
        for b in range(start, stop):
            for row in range(max(lo[b], 0), min(hi[b], height - 1) + 1):
                total = 0.0
                for c in range(channels):
                    xr, yr = x[b, c, row], y[b, c, row]
                    for i in range(width):
                        d = xr[i] - yr[i]
                        total += d * d if squared else abs(d)
                row_error[b, row] = total
            out[b] = row_error[b].sum() / (channels * height * width)

    @numba.njit(nogil=True, cache=True, parallel=True)
    def _rows_parallel(x, y, squared, lo, hi, row_error, out, chunks):  # pragma: no cover - jit
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, x.shape[0])
            _rows_range(x, y, squared, lo, hi, row_error, out, start, stop)


SSIM_SIGMA = 1.5
"""Standard deviation in pixels of SSIM's gaussian window (Wang et al. 2004)."""
SSIM_RADIUS = 5
"""Half-width of the window: 11 taps, scipy's truncation of the gaussian at 3.5 sigma, as scikit-image."""
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
"""Stabilising constants ``(K1 L)^2`` and ``(K2 L)^2`` for images with data range ``L = 1``."""


@functools.lru_cache(maxsize=8)
def _window(radius: int) -> torch.Tensor:
    """``(2 * radius + 1,)`` float64: the normalised gaussian window."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-taps.square() / (2.0 * SSIM_SIGMA**2))
    return window / window.sum()


@functools.lru_cache(maxsize=16)
def _band_matrix(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """``(size, size - 2 * radius)``: multiplying by it is a 'valid' correlation with the gaussian window."""
    window = _window(radius)
    out = size - 2 * radius
    band = torch.zeros(size, out, dtype=torch.float64)
    rows = torch.arange(out).view(1, -1) + torch.arange(2 * radius + 1).view(-1, 1)  # (taps, out)
    band[rows, torch.arange(out).expand_as(rows)] = window.view(-1, 1).expand_as(rows)
    return band.float().to(device)


def _ssim_torch(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    channels = x.shape[1]
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    mean_x, mean_y, xx, yy, xy = (rows.T @ moments @ cols).split(channels, dim=1)  # gaussian-weighted means
    mean_xy = mean_x * mean_y
    mean_xx, mean_yy = mean_x.square(), mean_y.square()
    numerator = (2.0 * mean_xy + SSIM_C1) * (2.0 * (xy - mean_xy) + SSIM_C2)
    denominator = (mean_xx + mean_yy + SSIM_C1) * (xx - mean_xx + yy - mean_yy + SSIM_C2)
    return (numerator / denominator).mean(dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity of image pairs, averaged over channels and window positions.

    Gaussian window (sigma 1.5, 11 taps), population covariances and 'valid' windows only — the same
    numbers as ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=...)``. Images smaller than 11 pixels use
    the largest window that fits. On the CPU a numba kernel computes it (about 3x faster than the
    torch path, which serves every other device; the two agree).

    :param x: ``(B, C, H, W)`` float in [0, 1].
    :param y: ``(B, C, H, W)`` float in [0, 1], same shape.
    :return: ``(B,)`` float32 in [-1, 1]; 1 for identical images.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    height, width = x.shape[-2:]
    radius = min(SSIM_RADIUS, (min(height, width) - 1) // 2)
    x, y = x.float(), y.float()
    if fastpath.use_numba(x) and not _tracks_grad(x, y):
        out = np.empty(x.shape[0], dtype=np.float32)
        window = _window(radius).float().numpy()
        fastpath.launch(_ssim_range, _ssim_parallel, x.shape[0], x.detach().contiguous().numpy(),
                        y.detach().contiguous().numpy(), window, SSIM_C1, SSIM_C2, out)
        return torch.from_numpy(out)
    rows, cols = _band_matrix(height, radius, x.device), _band_matrix(width, radius, x.device)
    return _ssim_torch(x, y, rows, cols)


if fastpath.HAVE_NUMBA:

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def _ssim_plane(x: np.ndarray, y: np.ndarray, window: np.ndarray, c1: float, c2: float,
                    rows: np.ndarray, cols: np.ndarray) -> float:  # pragma: no cover - jit
        """Mean SSIM of one ``(H, W)`` plane pair; ``rows`` ``(5, H, W')`` and ``cols`` ``(5, W')`` are scratch."""
        height, width = x.shape
        taps = window.shape[0]
        out_h, out_w = height - taps + 1, width - taps + 1
        for i in range(height):  # horizontal pass: the five moments filtered along each row
            rows[:, i, :] = 0.0
            for k in range(taps):
                g = window[k]
                for j in range(out_w):  # innermost loops run along memory: SIMD
                    a = x[i, j + k]
                    b = y[i, j + k]
                    rows[0, i, j] += g * a
                    rows[1, i, j] += g * b
                    rows[2, i, j] += g * a * a
                    rows[3, i, j] += g * b * b
                    rows[4, i, j] += g * a * b
        total = 0.0
        for i in range(out_h):  # vertical pass, then the SSIM of each window position
            cols[:, :] = 0.0
            for k in range(taps):
                g = window[k]
                for m in range(5):
                    for j in range(out_w):
                        cols[m, j] += g * rows[m, i + k, j]
            for j in range(out_w):
                mean_xy = cols[0, j] * cols[1, j]
                mean_xx = cols[0, j] * cols[0, j]
                mean_yy = cols[1, j] * cols[1, j]
                numerator = (2.0 * mean_xy + c1) * (2.0 * (cols[4, j] - mean_xy) + c2)
                denominator = (mean_xx + mean_yy + c1) * (cols[2, j] - mean_xx + cols[3, j] - mean_yy + c2)
                total += numerator / denominator
        return total / (out_h * out_w)

    @numba.njit(fastmath=True, nogil=True, cache=True)
    def _ssim_one(x: np.ndarray, y: np.ndarray, window: np.ndarray, c1: float, c2: float) -> float:  # pragma: no cover
        """Mean SSIM of one image pair ``(C, H, W)`` over its channels."""
        channels, height, width = x.shape
        out_w = width - window.shape[0] + 1
        rows = np.empty((5, height, out_w), dtype=np.float32)
        cols = np.empty((5, out_w), dtype=np.float32)
        total = 0.0
        for c in range(channels):
            total += _ssim_plane(x[c], y[c], window, c1, c2, rows, cols)
        return total / channels

    @numba.njit(nogil=True, cache=True)
    def _ssim_range(x: np.ndarray, y: np.ndarray, window: np.ndarray, c1: float, c2: float,
                    out: np.ndarray, start: int, stop: int) -> None:  # pragma: no cover - jit
        for b in range(start, stop):
            out[b] = _ssim_one(x[b], y[b], window, c1, c2)

    @numba.njit(nogil=True, cache=True, parallel=True)
    def _ssim_parallel(x: np.ndarray, y: np.ndarray, window: np.ndarray, c1: float, c2: float,
                       out: np.ndarray, chunks: int) -> None:  # pragma: no cover - jit
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, x.shape[0])
            _ssim_range(x, y, window, c1, c2, out, start, stop)


@register
class ZeroReward(Reward):
    """No reward at all: free painting, or a placeholder term while designing a reward."""

    name = "zero"
    description = "always 0 (free painting)"
    differentiable = True  # a constant: its gradient is zero

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(canvas.shape[0], device=canvas.device)
