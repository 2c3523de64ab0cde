"""Batched stroke renderer: ``(B, S, 13)`` strokes onto ``(B, 3, H, W)`` canvases.

Each stroke (layout in :mod:`envs.strokes`) is flattened into a polyline of at most ``K`` segments,
``K = flatten_segments(H)``, with as many segments as its curvature needs (so the polyline stays
within ``FLATTEN_TOLERANCE_PX`` of the curve). Its coverage of a pixel centre ``p`` is, over the
segments ``[A, B]`` with ``h`` the projection of ``p`` on the segment::

    alpha(p) = max_segments clamp(r(h) - |p - (A + h (B - A))| + 0.5, 0, 1) * opacity(h)

with radius and opacity interpolated linearly; distances are in pixels, so every edge is
anti-aliased over one pixel at any resolution. Strokes are alpha-composited in order:
``canvas = canvas * (1 - alpha) + colour * alpha``.

Two implementations compute exactly that:

* :func:`render` — batched torch, differentiable with respect to the strokes and the canvas, on
  any device. It evaluates every pixel of every canvas, one segment at a time (memory stays at
  ``(B, H, W)``), in chunks of canvases that fit in cache on the CPU.
* a numba kernel on the CPU that visits, row by row, only the pixels each segment's capsule can reach, and
  composites in the same pass; :func:`paint_` uses it for CPU tensors that need no gradient. It
  agrees with the torch path to float32 rounding (``tests/test_render.py`` checks a largest
  difference below ``5e-4`` up to 128x128).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import torch

from envs.strokes import (
    FLATTEN_TOLERANCE_PX,
    MAX_RADIUS,
    MIN_RADIUS,
    STROKE_DIM,
    flatten_segments,
)
from rewards.fastpath import PARALLEL_MIN_BATCH, keep_torch_threads, parallel_threads

try:  # numba is the CPU fast path; without it everything runs on the torch path
    import numba

    HAVE_NUMBA = os.environ.get("PAINTGYM_NO_NUMBA", "") == ""
except ImportError:  # pragma: no cover - numba is a dependency, but keep the torch path usable
    numba = None
    HAVE_NUMBA = False

_EPS = 1e-12  # keeps sqrt and 1/|AB|^2 finite (and differentiable) for degenerate segments
_CPU_CHUNK = 32  # canvases per chunk on the torch CPU path: 32 x 64 x 64 floats stay in L2


def _check(canvas: torch.Tensor, strokes: torch.Tensor) -> None:
    if canvas.dim() != 4 or canvas.shape[1] != 3:
        raise ValueError(f"canvas must have shape (B, 3, H, W), got {tuple(canvas.shape)}")
    if canvas.shape[2] != canvas.shape[3]:
        raise ValueError(f"canvas must be square, got {canvas.shape[2]}x{canvas.shape[3]}")
    if strokes.dim() != 3 or strokes.shape[-1] != STROKE_DIM:
        raise ValueError(f"strokes must have shape (B, S, {STROKE_DIM}), got {tuple(strokes.shape)}")
    if strokes.shape[0] != canvas.shape[0]:
        raise ValueError(f"strokes batch {strokes.shape[0]} does not match canvas batch {canvas.shape[0]}")


def polyline(strokes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten strokes into polylines in pixel units.

    :param strokes: ``(N, 13)`` float in [0, 1].
    :param size: canvas side in pixels.
    :return: vertices ``(N, K + 1, 2)`` (x, y in pixels), radii ``(N, K + 1)`` in pixels,
        opacities ``(N, K + 1)`` and the number of segments ``n`` each stroke uses ``(N,)``
        (``n <= K``; vertices past ``n`` repeat the end point and must be ignored).
    """
    k_max = flatten_segments(size)
    p0, p1, p2 = strokes[:, 0:2] * size, strokes[:, 2:4] * size, strokes[:, 4:6] * size
    second_diff = (p0 - 2.0 * p1 + p2).norm(dim=-1)  # (N,)
    n = torch.ceil(torch.sqrt(second_diff.detach() / (8.0 * FLATTEN_TOLERANCE_PX))).clamp_(1, k_max)
    k = torch.arange(k_max + 1, device=strokes.device, dtype=strokes.dtype)
    t = torch.minimum(k[None, :], n[:, None]) / n[:, None]  # (N, K+1)
    s = 1.0 - t
    pts = (
        (s * s)[..., None] * p0[:, None]
        + (2.0 * s * t)[..., None] * p1[:, None]
        + (t * t)[..., None] * p2[:, None]
    )
    r = strokes[:, 6:7] + t * (strokes[:, 7:8] - strokes[:, 6:7])
    radius = (MIN_RADIUS + r * (MAX_RADIUS - MIN_RADIUS)) * size
    opacity = strokes[:, 8:9] + t * (strokes[:, 9:10] - strokes[:, 8:9])
    return pts, radius, opacity, n


def stroke_alpha(strokes: torch.Tensor, size: int) -> torch.Tensor:
    """Coverage times opacity of one stroke per canvas, on every pixel.

    :param strokes: ``(N, 13)`` float in [0, 1].
    :param size: canvas side H = W in pixels.
    :return: ``(N, H, W)`` float in [0, 1], differentiable with respect to ``strokes``.
    """
    pts, radius, opacity, n_segments = polyline(strokes, size)
    centres = torch.arange(size, device=strokes.device, dtype=strokes.dtype) + 0.5
    px, py = centres.view(1, 1, size), centres.view(1, size, 1)
    alpha = torch.zeros(strokes.shape[0], size, size, device=strokes.device, dtype=strokes.dtype)
    for k in range(pts.shape[1] - 1):
        ax, ay = pts[:, k, 0].view(-1, 1, 1), pts[:, k, 1].view(-1, 1, 1)
        dx = pts[:, k + 1, 0].view(-1, 1, 1) - ax
        dy = pts[:, k + 1, 1].view(-1, 1, 1) - ay
        len2 = dx * dx + dy * dy
        inv_len2 = torch.where(len2 > _EPS, 1.0 / len2.clamp_min(_EPS), torch.zeros_like(len2))
        qx, qy = px - ax, py - ay  # (N, 1, W), (N, H, 1)
        h = ((qx * dx + qy * dy) * inv_len2).clamp(0.0, 1.0)  # (N, H, W)
        ex, ey = qx - h * dx, qy - h * dy
        dist = torch.sqrt(ex * ex + ey * ey + _EPS)
        ra, rb = radius[:, k].view(-1, 1, 1), radius[:, k + 1].view(-1, 1, 1)
        oa, ob = opacity[:, k].view(-1, 1, 1), opacity[:, k + 1].view(-1, 1, 1)
        cover = (ra + h * (rb - ra) - dist + 0.5).clamp(0.0, 1.0) * (oa + h * (ob - oa))
        # padding segments of strokes that need fewer than K would add an extra end cap
        cover = cover * (n_segments > k).to(cover.dtype).view(-1, 1, 1)
        alpha = torch.maximum(alpha, cover)
    return alpha


def render(strokes: torch.Tensor, canvas: torch.Tensor | None = None, size: int | None = None,
           background: float = 1.0) -> torch.Tensor:
    """Composite strokes onto canvases with the differentiable torch path.

    :param strokes: ``(B, S, 13)`` float in [0, 1], composited in order ``s = 0 .. S-1``.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1], left unchanged; if None, a blank canvas of
        side ``size`` filled with ``background`` is used.
    :param size: canvas side when ``canvas`` is None.
    :param background: grey level of the blank canvas.
    :return: ``(B, 3, H, W)`` float in [0, 1], a new tensor (differentiable).
    """
    if canvas is None:
        if size is None:
            raise ValueError("render() needs either a canvas or a size")
        canvas = torch.full((strokes.shape[0], 3, size, size), float(background),
                            device=strokes.device, dtype=torch.float32)
    _check(canvas, strokes)
    size = canvas.shape[-1]
    chunk = _CPU_CHUNK if canvas.device.type == "cpu" else canvas.shape[0]
    outputs = []
    for start in range(0, canvas.shape[0], chunk):  # cache-sized chunks of canvases, not a loop per canvas
        out = canvas[start:start + chunk]
        for s in range(strokes.shape[1]):
            stroke = strokes[start:start + chunk, s]
            alpha = stroke_alpha(stroke, size).unsqueeze(1)  # (b, 1, H, W)
            colour = stroke[:, 10:13].view(-1, 3, 1, 1)
            out = out + (colour - out) * alpha
        outputs.append(out)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


if HAVE_NUMBA:

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _slab(alpha_, beta, lo, hi):  # pragma: no cover - compiled
        """Interval of u with ``lo <= alpha_ * u + beta <= hi`` (empty as ``(inf, -inf)``)."""
        if abs(alpha_) > 1e-9:
            a, b = (lo - beta) / alpha_, (hi - beta) / alpha_
            return (a, b) if a <= b else (b, a)
        if lo <= beta <= hi:
            return -np.inf, np.inf
        return np.inf, -np.inf

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _capsule_row(ax, ay, dx, dy, len2, reach, py):  # pragma: no cover - compiled
        """x-extent of the row ``y = py`` inside the capsule of radius ``reach`` around segment A->A+d."""
        lo, hi = np.inf, -np.inf
        for cx, cy in ((ax, ay), (ax + dx, ay + dy)):  # the two end discs
            q = py - cy
            if q * q <= reach * reach:
                w = math.sqrt(reach * reach - q * q)
                lo, hi = min(lo, cx - w), max(hi, cx + w)
        if len2 > _EPS:  # the band between them: 0 <= projection <= |d|^2 and |normal offset| <= reach
            qy = py - ay
            p_lo, p_hi = _slab(dx, dy * qy, 0.0, len2)
            n_lo, n_hi = _slab(-dy, dx * qy, -reach * math.sqrt(len2), reach * math.sqrt(len2))
            b_lo, b_hi = max(p_lo, n_lo), min(p_hi, n_hi)
            if b_lo <= b_hi:
                lo, hi = min(lo, ax + b_lo), max(hi, ax + b_hi)
        return lo, hi

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _to_u8_interleaved(src, dst):  # pragma: no cover - compiled
        """``(3, n)`` float pixels -> the first 3 channels of ``dst`` ``(n, C)`` uint8, with
        :func:`envs.images.to_uint8`'s float32 arithmetic."""
        scale, half, zero = np.float32(255.0), np.float32(0.5), np.float32(0.0)
        for x in range(src.shape[1]):
            for c in range(3):
                dst[x, c] = np.uint8(min(max(src[c, x] * scale + half, zero), scale))

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _paint_one(img, alpha, span, verts, stroke, size, k_max, mirror):  # pragma: no cover - compiled
        """Composite one stroke onto one ``(3, H, W)`` image, visiting only the pixels it can cover.

        ``alpha`` ``(H, W)`` must be zero on entry and is left zero; ``span`` ``(H, 2)`` is scratch.
        ``mirror`` ``(H, W, C >= 3)`` uint8 (or empty: skipped) gets ``to_uint8`` of every pixel the
        stroke composited, written while the row is in cache.
        Returns the box it may have changed, ``(y_lo, y_hi, x_lo, x_hi)`` inclusive (``y_lo > y_hi``: none).
        """
        x0, y0 = stroke[0] * size, stroke[1] * size
        x1, y1 = stroke[2] * size, stroke[3] * size
        x2, y2 = stroke[4] * size, stroke[5] * size
        ddx, ddy = x0 - 2.0 * x1 + x2, y0 - 2.0 * y1 + y2
        n = math.ceil(math.sqrt(math.sqrt(ddx * ddx + ddy * ddy) / (8.0 * FLATTEN_TOLERANCE_PX)))
        n = min(max(n, 1), k_max)
        scale = (MAX_RADIUS - MIN_RADIUS) * size
        for k in range(n + 1):
            t = k / n
            s = 1.0 - t
            verts[k, 0] = s * s * x0 + 2.0 * s * t * x1 + t * t * x2
            verts[k, 1] = s * s * y0 + 2.0 * s * t * y1 + t * t * y2
            verts[k, 2] = MIN_RADIUS * size + (stroke[6] + t * (stroke[7] - stroke[6])) * scale
            verts[k, 3] = stroke[8] + t * (stroke[9] - stroke[8])
        y_lo, y_hi = size, -1
        zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
        track = mirror.shape[0] > 0
        for k in range(n):
            ax, ay, ra, oa = verts[k, 0], verts[k, 1], verts[k, 2], verts[k, 3]
            dx, dy = verts[k + 1, 0] - ax, verts[k + 1, 1] - ay
            dr, do = verts[k + 1, 2] - ra, verts[k + 1, 3] - oa
            len2 = dx * dx + dy * dy
            inv_len2 = one / len2 if len2 > _EPS else zero
            reach = max(ra, ra + dr) + 0.501  # cover > 0 needs distance < radius + 0.5
            sy0 = max(0, int(math.ceil(min(ay, ay + dy) - reach - 0.5)))
            sy1 = min(size - 1, int(math.floor(max(ay, ay + dy) + reach - 0.5)))
            for y in range(sy0, sy1 + 1):
                if y < y_lo or y > y_hi:  # first time this stroke touches the row
                    for yy in range(y, y_lo) if y < y_lo else range(y_hi + 1, y + 1):
                        span[yy, 0], span[yy, 1] = size, -1
                    y_lo, y_hi = min(y_lo, y), max(y_hi, y)
                lo, hi = _capsule_row(ax, ay, dx, dy, len2, reach, y + 0.5)
                sx0 = max(0, int(math.ceil(lo - 0.5)))
                sx1 = min(size - 1, int(math.floor(hi - 0.5)))
                if sx1 < sx0:
                    continue
                span[y, 0], span[y, 1] = min(span[y, 0], sx0), max(span[y, 1], sx1)
                # float32 throughout: a float64 literal would promote the row to half-width vectors
                qx0 = np.float32(sx0 + 0.5) - ax
                qy = np.float32(y + 0.5) - ay
                row = alpha[y, sx0:sx1 + 1]
                # loop index from 0 lets LLVM drop negative-index checks and vectorise the row; int32 -> float32
                # converts a whole vector at once (AVX2 has no vector int64 -> float conversion)
                for i in range(row.shape[0]):
                    qx = qx0 + np.float32(np.int32(i))
                    h = min(max((qx * dx + qy * dy) * inv_len2, zero), one)
                    ex, ey = qx - h * dx, qy - h * dy
                    dist = np.sqrt(ex * ex + ey * ey + np.float32(_EPS))
                    cover = min(max(ra + h * dr - dist + half, zero), one) * (oa + h * do)
                    row[i] = max(row[i], cover)
        box_lo, box_hi = size, -1
        for y in range(y_lo, y_hi + 1):
            x_lo, x_hi = span[y, 0], span[y, 1]
            if x_hi < x_lo:
                continue
            box_lo, box_hi = min(box_lo, x_lo), max(box_hi, x_hi)
            a_row = alpha[y, x_lo:x_hi + 1]
            for c in range(3):
                colour = stroke[10 + c]
                c_row = img[c, y, x_lo:x_hi + 1]
                for i in range(a_row.shape[0]):
                    c_row[i] += (colour - c_row[i]) * a_row[i]
            if track:
                _to_u8_interleaved(img[:, y, x_lo:x_hi + 1], mirror[y, x_lo:x_hi + 1])
            a_row[:] = zero
        return y_lo, y_hi, box_lo, box_hi

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _mirror_box(img, mirror, y_lo, y_hi, x_lo, x_hi):  # pragma: no cover - compiled
        """``mirror[y, x, :3] = to_uint8(img[:, y, x])`` inside the box (inclusive)."""
        for y in range(y_lo, y_hi + 1):
            _to_u8_interleaved(img[:, y, x_lo:x_hi + 1], mirror[y, x_lo:x_hi + 1])

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _paint_range(canvas, strokes, active, start, stop, k_max, mirror, rows):  # pragma: no cover - compiled
        """Paint envs ``start:stop``; keep ``mirror`` (unless empty) in step wherever a stroke composited; set
        ``rows[b]`` (unless empty) to the rows painted."""
        size = canvas.shape[-1]
        alpha = np.zeros((size, size), dtype=np.float32)
        span = np.empty((size, 2), dtype=np.int64)
        verts = np.empty((k_max + 1, 4), dtype=np.float32)
        track, report = mirror.shape[0] > 0, rows.shape[0] > 0
        no_mirror = np.empty((0, 0, 3), dtype=np.uint8)
        for b in range(start, stop):
            box_y0, box_y1 = size, -1
            if active[b]:
                env_mirror = mirror[b] if track else no_mirror
                for s in range(strokes.shape[1]):
                    y_lo, y_hi, x_lo, x_hi = _paint_one(canvas[b], alpha, span, verts, strokes[b, s], size, k_max,
                                                        env_mirror)
                    if y_lo <= y_hi and x_lo <= x_hi:
                        box_y0, box_y1 = min(box_y0, y_lo), max(box_y1, y_hi)
            if report:
                rows[b, 0], rows[b, 1] = box_y0, box_y1

    @numba.njit(fastmath=True, cache=True, parallel=True, nogil=True)
    def _paint_parallel(canvas, strokes, active, k_max, chunks, mirror, rows):  # pragma: no cover - compiled
        batch = canvas.shape[0]
        per = (batch + chunks - 1) // chunks
        for c in numba.prange(chunks):
            _paint_range(canvas, strokes, active, c * per, min(batch, (c + 1) * per), k_max, mirror, rows)




_NO_MIRROR = np.empty((0, 0, 0, 3), dtype=np.uint8)
_NO_ROWS = np.empty((0, 2), dtype=np.int64)


def paint_numpy(canvas: np.ndarray, strokes: np.ndarray, active: np.ndarray, mirror: np.ndarray | None = None,
                rows: np.ndarray | None = None) -> None:
    """The CPU kernel behind :func:`paint_`, without its checks (callers guarantee them).

    :param canvas: ``(B, 3, H, W)`` float32 C-contiguous, modified in place.
    :param strokes: ``(B, S, 13)`` float32 C-contiguous.
    :param active: ``(B,)`` bool.
    :param mirror: optional ``(B, H, W, C >= 3)`` uint8, channel-last: its first 3 channels are kept
        equal to ``to_uint8(canvas)`` wherever the strokes may have changed the canvas (the image
        observation's canvas channels, converted while the painted rows are still in cache).
    :param rows: optional ``(B, 2)`` int64, set to the rows ``[lo, hi]`` (inclusive) each canvas may
        have changed in this call (``lo > hi``: none).
    """
    k_max = flatten_segments(canvas.shape[-1])
    mirror = _NO_MIRROR if mirror is None else mirror
    rows = _NO_ROWS if rows is None else rows
    batch = canvas.shape[0]
    if batch >= PARALLEL_MIN_BATCH and torch.get_num_threads() > 1:
        threads = parallel_threads()
        chunks = min(batch, max(threads * 4, batch // 16))
        _paint_parallel(canvas, strokes, active, k_max, chunks, mirror, rows)
        keep_torch_threads()
    else:
        _paint_range(canvas, strokes, active, 0, batch, k_max, mirror, rows)


@functools.lru_cache(maxsize=16)
def _all_active(batch: int) -> np.ndarray:
    flags = np.ones(batch, dtype=np.bool_)
    flags.setflags(write=False)
    return flags


def paint_(canvas: torch.Tensor, strokes: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
    """Composite strokes onto canvases in place, by the fastest path for the device (no gradient).

    Use :func:`render` when gradients are needed.

    :param canvas: ``(B, 3, H, W)`` float32 in [0, 1], contiguous, modified in place.
    :param strokes: ``(B, S, 13)`` float32 in [0, 1] on the same device.
    :param active: optional ``(B,)`` bool; canvases where it is False are left unchanged.
    :return: ``canvas``.
    """
    _check(canvas, strokes)
    if not canvas.is_contiguous():
        raise ValueError("paint_ needs a contiguous canvas")
    with torch.no_grad():
        if HAVE_NUMBA and canvas.device.type == "cpu" and canvas.dtype == torch.float32:
            strokes_np = strokes.detach().contiguous().numpy()
            if strokes_np.dtype != np.float32:
                strokes_np = strokes_np.astype(np.float32)
            active_np = _all_active(canvas.shape[0]) if active is None else active.detach().contiguous().numpy()
            paint_numpy(canvas.detach().numpy(), strokes_np, active_np)
            return canvas
        painted = render(strokes.to(canvas.dtype), canvas)
        if active is not None:
            painted = torch.where(active.view(-1, 1, 1, 1), painted, canvas)
        canvas.copy_(painted)
    return canvas
