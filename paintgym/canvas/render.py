"""Batched stroke renderer: ``(B, S, 13)`` strokes onto ``(B, 3, H, W)`` canvases.

Each stroke (layout in :mod:`canvas.strokes`) is flattened into a polyline of at most ``K`` segments,
``K = flatten_segments(H)``, with as many segments as its curvature needs (so the polyline stays
within ``FLATTEN_TOLERANCE_PX`` of the curve). Its coverage of a pixel centre ``p`` is, over the
segments ``[A, B]`` with ``h`` the projection of ``p`` on the segment::

    alpha(p) = max_segments clamp(r(h) - |p - (A + h (B - A))| + 0.5, 0, 1) * opacity(h)

with radius and opacity interpolated linearly; distances are in pixels, so every edge is
anti-aliased over one pixel at any resolution. Strokes are alpha-composited in order:
``canvas = canvas * (1 - alpha) + colour * alpha``.

Three paths compute exactly that:

* the torch path of :func:`render` (``_render_torch``) — batched torch on any device and dtype,
  differentiable by autograd with respect to the strokes and the canvas (twice, too). It evaluates
  every pixel of every canvas, one segment at a time (memory stays at ``(B, H, W)``), in chunks of
  canvases that fit in cache on the CPU. It is the reference the numba paths are tested against.
* the numba kernel of :func:`paint_` (``_paint_one``) on the CPU: no gradient, in place, visits row
  by row only the pixels each segment's capsule can reach and composites in the same pass (and keeps
  the environments' uint8 observation mirror). It agrees with the torch path to float32 rounding
  (``tests/test_render.py`` checks a largest difference below ``5e-4`` up to 128x128).
* the differentiable numba path of :func:`render` for float32 CPU tensors (``_NumbaRender``): a
  forward kernel that visits, for each segment, the bounding box of its capsule (inside the stroke's
  box), and an analytic backward kernel, both parallel over canvases. It keeps no intermediate: the
  backward replays each canvas's forward from the saved input canvas, keeping for each stroke (inside
  its box) the canvas before it, its alpha and which segments reach the max, sorts the pixels by the
  segment their gradient goes to, and walks the strokes in reverse to ``grad_strokes`` ``(B, S, 13)``
  and ``grad_canvas`` ``(B, 3, H, W)``; its scratch is ``(24 S + 16 K) * H * W`` bytes per chunk of
  canvases a thread runs, never proportional to ``B``. It follows torch autograd's conventions at the
  kinks: clamps pass the gradient on their boundaries, and ties of the max over segments split it as
  chained ``torch.maximum`` does (see ``_bucket``). Its coverage uses torch's order of operations
  without FMA contraction, so its forward equals the torch path's to float32 rounding (~1e-6), and its
  gradients equal torch autograd's except where a pixel sits within rounding of a clamp boundary. It
  is differentiable once (a double backward raises). :func:`render` uses its forward without
  gradients too (on a copy). ``PAINTGYM_NO_NUMBA=1``, CUDA, other dtypes and canvases over ~2700 px
  take the torch path.

:func:`render_fitted` composites strokes each in its least-squares colour on the canvas it lands on (what
:func:`paint_fitted_` paints), differentiably: on the numba path with :func:`paint_fitted_`'s kernel forward
and the backward above with the fit's gradient terms (``_fitted_composite_backward``), elsewhere with torch
operations stroke by stroke.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable

import numpy as np
import torch

from paintgym.canvas.fastpath import HAVE_NUMBA, chunk_range, launch, numba
from paintgym.canvas.strokes import (
    FLATTEN_TOLERANCE_PX,
    MAX_RADIUS,
    MIN_RADIUS,
    STROKE_DIM,
    flatten_segments,
    radius_fraction,
)

_EPS = 1e-12  # keeps sqrt and 1/|AB|^2 finite (and differentiable) for degenerate segments
_CPU_CHUNK = 32  # canvases per chunk on the torch CPU path: 32 x 64 x 64 floats stay in L2
_EXACT = {"nnan", "ninf", "nsz"}  # numba fastmath flags that keep IEEE rounding (see the differentiable kernels)
_MAX_SEGMENTS = 62  # the numba backward keeps one bit per segment in an int64 (canvases up to ~2700 px)
_ZERO_TIE = 1 << 62  # its mark of a pixel where alpha = 0 but a segment's zero cover may have a gradient
_BIT_INDEX = np.zeros(67, dtype=np.int64)  # k from (1 << k) % 67, k < 63 (2 is a primitive root modulo 67)
_BIT_INDEX[[(1 << k) % 67 for k in range(63)]] = np.arange(63)


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
    radius = radius_fraction(r) * size
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


def _render_torch(strokes: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """The torch path of :func:`render` (the reference the numba paths are tested against).

    :param strokes: ``(B, S, 13)`` float in [0, 1].
    :param canvas: ``(B, 3, H, W)`` float in [0, 1], left unchanged.
    :return: ``(B, 3, H, W)``, a new tensor, differentiable by autograd.
    """
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


def _numba_path(strokes: torch.Tensor, canvas: torch.Tensor) -> bool:
    """Whether :func:`render` can take the numba kernels: float32 CPU tensors, at most 62 segments."""
    return (HAVE_NUMBA and canvas.device.type == "cpu" and strokes.device.type == "cpu"
            and canvas.dtype == torch.float32 and strokes.dtype == torch.float32
            and flatten_segments(canvas.shape[-1]) <= _MAX_SEGMENTS)


def render(strokes: torch.Tensor, canvas: torch.Tensor | None = None, size: int | None = None,
           background: float = 1.0) -> torch.Tensor:
    """Composite strokes onto canvases, differentiably.

    float32 CPU tensors take the numba kernels (forward, and the analytic backward when the strokes
    or the canvas require grad); other devices and dtypes, and ``PAINTGYM_NO_NUMBA=1``, the torch path
    (see the module docstring). The numba path keeps no intermediate for the backward, only references
    to ``strokes`` and ``canvas``: modifying either in place before the backward raises autograd's
    usual error.

    :param strokes: ``(B, S, 13)`` float in [0, 1], composited in order ``s = 0 .. S-1``.
    :param canvas: ``(B, 3, H, W)`` float in [0, 1], left unchanged; if None, a blank canvas of
        side ``size`` filled with ``background`` is used.
    :param size: canvas side when ``canvas`` is None.
    :param background: grey level of the blank canvas.
    :return: ``(B, 3, H, W)`` float in [0, 1], a new tensor (differentiable with respect to
        ``strokes`` and ``canvas``, once: no double backward on the numba path).
    """
    if canvas is None:
        if size is None:
            raise ValueError("render() needs either a canvas or a size")
        canvas = torch.full((strokes.shape[0], 3, size, size), float(background),
                            device=strokes.device, dtype=torch.float32)
    _check(canvas, strokes)
    if _numba_path(strokes, canvas):
        if torch.is_grad_enabled() and (strokes.requires_grad or canvas.requires_grad):
            return _NumbaRender.apply(strokes, canvas)
        with torch.no_grad():
            out = canvas.detach().clone(memory_format=torch.contiguous_format)
            render_numpy(out.numpy(), strokes.detach().contiguous().numpy())
        return out
    return _render_torch(strokes, canvas)


def _jit_in_float32(func: Callable) -> Callable:
    """``func`` compiled for the numba kernels (inlined), with the float constants of its module as float32.

    Numba types a Python float constant as float64, which would turn float32 arithmetic into float64 (numpy
    and torch keep a float32 operand's precision). The stroke constants are exact in float32, so float64
    arguments give the same values either way, and float32 arguments round as in torch.
    """
    constants = {name: np.float32(func.__globals__[name]) for name in func.__code__.co_names
                 if type(func.__globals__.get(name)) is float}
    if any(float(value) != func.__globals__[name] for name, value in constants.items()):
        raise ValueError(f"{func.__name__} uses a float constant that float32 does not hold exactly")
    rebound = types.FunctionType(func.__code__, {**func.__globals__, **constants}, func.__name__)
    return numba.njit(inline="always")(rebound)


if HAVE_NUMBA:

    _radius_fraction = _jit_in_float32(radius_fraction)

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
        :func:`canvas.images.to_uint8`'s float32 arithmetic."""
        scale, half, zero = np.float32(255.0), np.float32(0.5), np.float32(0.0)
        for x in range(src.shape[1]):
            for c in range(3):
                dst[x, c] = np.uint8(min(max(src[c, x] * scale + half, zero), scale))

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _fit_colour(img, alpha, span, y_lo, y_hi, target, stroke):  # pragma: no cover - compiled
        """``stroke[10:13] = clip(sum a (T - C (1 - a)) / max(sum a^2, 1e-8), 0, 1)`` over the stroke's rows."""
        den = np.float32(0.0)
        num = np.zeros(3, dtype=np.float32)
        one = np.float32(1.0)
        for y in range(y_lo, y_hi + 1):
            x_lo, x_hi = span[y, 0], span[y, 1]
            if x_hi < x_lo:
                continue
            a_row = alpha[y, x_lo:x_hi + 1]
            for i in range(a_row.shape[0]):
                den += a_row[i] * a_row[i]
            for c in range(3):
                c_row, t_row = img[c, y, x_lo:x_hi + 1], target[c, y, x_lo:x_hi + 1]
                total = np.float32(0.0)
                for i in range(a_row.shape[0]):
                    a = a_row[i]
                    total += a * (t_row[i] - c_row[i] * (one - a))
                num[c] += total
        den = max(den, np.float32(1e-8))
        for c in range(3):
            stroke[10 + c] = min(max(num[c] / den, np.float32(0.0)), one)

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _cover(alpha, span, verts, stroke, size, k_max):  # pragma: no cover - compiled
        """One stroke's coverage times opacity into ``alpha`` ``(H, W)`` (zero on entry), visiting only the pixels
        it can cover; ``span[y] = (x_lo, x_hi)`` for the rows it reaches. Returns those rows ``(y_lo, y_hi)``
        inclusive (``y_lo > y_hi``: none)."""
        x0, y0 = stroke[0] * size, stroke[1] * size
        x1, y1 = stroke[2] * size, stroke[3] * size
        x2, y2 = stroke[4] * size, stroke[5] * size
        ddx, ddy = x0 - 2.0 * x1 + x2, y0 - 2.0 * y1 + y2
        n = math.ceil(math.sqrt(math.sqrt(ddx * ddx + ddy * ddy) / (8.0 * FLATTEN_TOLERANCE_PX)))
        n = min(max(n, 1), k_max)
        for k in range(n + 1):
            t = k / n
            s = 1.0 - t
            verts[k, 0] = s * s * x0 + 2.0 * s * t * x1 + t * t * x2
            verts[k, 1] = s * s * y0 + 2.0 * s * t * y1 + t * t * y2
            verts[k, 2] = _radius_fraction(stroke[6] + t * (stroke[7] - stroke[6])) * size
            verts[k, 3] = stroke[8] + t * (stroke[9] - stroke[8])
        y_lo, y_hi = size, -1
        zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
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
        return y_lo, y_hi

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _paint_one(img, alpha, span, verts, stroke, size, k_max, mirror, target):  # pragma: no cover - compiled
        """Composite one stroke onto one ``(3, H, W)`` image, visiting only the pixels it can cover.

        ``alpha`` ``(H, W)`` must be zero on entry and is left zero; ``span`` ``(H, 2)`` is scratch.
        ``mirror`` ``(H, W, C >= 3)`` uint8 (or empty: skipped) gets ``to_uint8`` of every pixel the
        stroke composited, written while the row is in cache. ``target`` ``(3, H, W)`` (or empty:
        skipped): the stroke's colour ``stroke[10:13]`` is first replaced by its least-squares fit
        (:func:`fitted_colour`'s formula) to the target under the stroke.
        Returns the box it may have changed, ``(y_lo, y_hi, x_lo, x_hi)`` inclusive (``y_lo > y_hi``: none).
        """
        y_lo, y_hi = _cover(alpha, span, verts, stroke, size, k_max)
        zero = np.float32(0.0)
        track = mirror.shape[0] > 0
        if target.shape[0] > 0:
            _fit_colour(img, alpha, span, y_lo, y_hi, target, stroke)
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
    def _paint_range(canvas, strokes, active, k_max, mirror, rows, targets, start, stop):  # pragma: no cover
        """Paint envs ``start:stop``; keep ``mirror`` (unless empty) in step wherever a stroke composited; set
        ``rows[b]`` (unless empty) to the rows painted; fit each stroke's colour to ``targets`` (unless empty)."""
        size = canvas.shape[-1]
        alpha = np.zeros((size, size), dtype=np.float32)
        span = np.empty((size, 2), dtype=np.int64)
        verts = np.empty((k_max + 1, 4), dtype=np.float32)
        track, report = mirror.shape[0] > 0, rows.shape[0] > 0
        no_mirror = np.empty((0, 0, 3), dtype=np.uint8)
        fit, no_target = targets.shape[0] > 0, np.empty((0, 1, 1), dtype=np.float32)
        for b in range(start, stop):
            box_y0, box_y1 = size, -1
            if active[b]:
                env_mirror = mirror[b] if track else no_mirror
                target = targets[b] if fit else no_target
                for s in range(strokes.shape[1]):
                    y_lo, y_hi, x_lo, x_hi = _paint_one(canvas[b], alpha, span, verts, strokes[b, s], size, k_max,
                                                        env_mirror, target)
                    if y_lo <= y_hi and x_lo <= x_hi:
                        box_y0, box_y1 = min(box_y0, y_lo), max(box_y1, y_hi)
            if report:
                rows[b, 0], rows[b, 1] = box_y0, box_y1

    @numba.njit(fastmath=True, cache=True, parallel=True, nogil=True)
    def _paint_parallel(canvas, strokes, active, k_max, mirror, rows, targets, chunks):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _paint_range(canvas, strokes, active, k_max, mirror, rows, targets, start, stop)

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _score_range(canvas, targets, strokes, colours, deltas, k_max, start, stop):  # pragma: no cover - compiled
        """For canvases ``start:stop``, each stroke alone on the canvas: its least-squares colour into ``colours``
        ``(B, K, 3)`` and the change of the summed squared error it would make into ``deltas`` ``(B, K)``.

        Its sums over the stroke's rows include :func:`_fit_colour`'s (``num = sum a R + sum a^2 C``) but are not
        taken by a helper both call: such a helper (the error's extra sum skipped when fitting alone) made
        :func:`paint_fitted_`, which paints every agent's stroke, 17% slower (50 against 43 ms, 256 canvases x
        32 strokes, one thread)."""
        size = canvas.shape[-1]
        alpha = np.zeros((size, size), dtype=np.float32)
        span = np.empty((size, 2), dtype=np.int64)
        verts = np.empty((k_max + 1, 4), dtype=np.float32)
        zero, one = np.float32(0.0), np.float32(1.0)
        a2c = np.empty(3, dtype=np.float32)  # per channel: sum a^2 C,
        ar = np.empty(3, dtype=np.float32)  # sum a R (R = T - C)
        rest = np.empty(3, dtype=np.float32)  # and sum a^2 C^2 + 2 a C R
        for b in range(start, stop):
            img, target = canvas[b], targets[b]
            for k in range(strokes.shape[1]):
                y_lo, y_hi = _cover(alpha, span, verts, strokes[b, k], size, k_max)
                a2 = zero
                a2c[:], ar[:], rest[:] = zero, zero, zero
                for y in range(y_lo, y_hi + 1):
                    x_lo, x_hi = span[y, 0], span[y, 1]
                    if x_hi < x_lo:
                        continue
                    a_row = alpha[y, x_lo:x_hi + 1]
                    for i in range(a_row.shape[0]):
                        a2 += a_row[i] * a_row[i]
                    for c in range(3):
                        c_row, t_row = img[c, y, x_lo:x_hi + 1], target[c, y, x_lo:x_hi + 1]
                        s_a2c, s_ar, s_rest = zero, zero, zero
                        for i in range(a_row.shape[0]):
                            a, value = a_row[i], c_row[i]
                            r = t_row[i] - value
                            s_a2c += a * a * value
                            s_ar += a * r
                            s_rest += a * value * (a * value + np.float32(2.0) * r)
                        a2c[c] += s_a2c
                        ar[c] += s_ar
                        rest[c] += s_rest
                    a_row[:] = zero
                total = zero
                for c in range(3):
                    colour = min(max((ar[c] + a2c[c]) / max(a2, np.float32(1e-12)), zero), one)
                    colours[b, k, c] = colour
                    total += colour * colour * a2 - np.float32(2.0) * colour * (a2c[c] + ar[c]) + rest[c]
                deltas[b, k] = total

    @numba.njit(fastmath=True, cache=True, parallel=True, nogil=True)
    def _score_parallel(canvas, targets, strokes, colours, deltas, k_max, chunks):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _score_range(canvas, targets, strokes, colours, deltas, k_max, start, stop)

    # ---- the differentiable CPU path: a forward, and a backward that replays it ----

    # The polyline, coverage and compositing below use torch's order of operations and IEEE rounding (no FMA
    # contraction, no reassociation: ``_EXACT``), so their values follow the torch path's to the last bit or
    # two (torch's vectorised sqrt is not always correctly rounded): the gradient's kinks (clamp boundaries,
    # which segment gives the max, ties) fall on the same pixels as in torch's autograd, but for pixels
    # within rounding of one. Sums, which need reassociation to vectorise, use full fastmath.

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _copy_row(src, dst):  # pragma: no cover - compiled
        """``dst[:] = src`` for 1-d arrays of one length (an array-to-array slice assignment would compile
        numba's shape-mismatch error message: seconds of compile time)."""
        for i in range(src.shape[0]):
            dst[i] = src[i]

    @numba.njit(fastmath=_EXACT, cache=True, nogil=True)
    def _polyline_f32(stroke, size, k_max, verts, coef):  # pragma: no cover - compiled
        """:func:`polyline` for one stroke, in float32 and torch's order of operations.

        Sets ``verts[k] = (x, y, radius, opacity)`` in pixels and ``coef[k] = (s^2, 2 s t, t^2, t)``
        (the Bezier weights and ``t`` of vertex ``k``) for ``k = 0 .. n``; returns ``n``.
        """
        f, one, two = np.float32(size), np.float32(1.0), np.float32(2.0)
        x0, y0 = stroke[0] * f, stroke[1] * f
        x1, y1 = stroke[2] * f, stroke[3] * f
        x2, y2 = stroke[4] * f, stroke[5] * f
        ddx, ddy = x0 - two * x1 + x2, y0 - two * y1 + y2
        second = np.sqrt(ddx * ddx + ddy * ddy)
        n = int(math.ceil(np.sqrt(second / np.float32(8.0 * FLATTEN_TOLERANCE_PX))))
        n = min(max(n, 1), k_max)
        fn = np.float32(n)
        for k in range(n + 1):
            t = np.float32(k) / fn
            s = one - t
            a, b, c = s * s, two * s * t, t * t
            verts[k, 0] = a * x0 + b * x1 + c * x2
            verts[k, 1] = a * y0 + b * y1 + c * y2
            verts[k, 2] = _radius_fraction(stroke[6] + t * (stroke[7] - stroke[6])) * f
            verts[k, 3] = stroke[8] + t * (stroke[9] - stroke[8])
            coef[k, 0], coef[k, 1], coef[k, 2], coef[k, 3] = a, b, c, t
        return n

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _polyline_box(verts, n, size, box):  # pragma: no cover - compiled
        """``box = (y_lo, y_hi, x_lo, x_hi)``, inclusive and clipped to the canvas: the pixels whose
        centre any segment's capsule (radius + 0.5 px) may reach. Empty: ``y_lo > y_hi`` or ``x_lo > x_hi``."""
        x_min = x_max = verts[0, 0]
        y_min = y_max = verts[0, 1]
        reach = verts[0, 2]
        for k in range(1, n + 1):
            x_min, x_max = min(x_min, verts[k, 0]), max(x_max, verts[k, 0])
            y_min, y_max = min(y_min, verts[k, 1]), max(y_max, verts[k, 1])
            reach = max(reach, verts[k, 2])
        reach = reach + 0.501
        box[0] = max(0, int(math.ceil(y_min - reach - 0.5)))
        box[1] = min(size - 1, int(math.floor(y_max + reach - 0.5)))
        box[2] = max(0, int(math.ceil(x_min - reach - 0.5)))
        box[3] = min(size - 1, int(math.floor(x_max + reach - 0.5)))

    @numba.njit(fastmath=_EXACT, cache=True, nogil=True)
    def _coverage(alpha, mask, verts, n, box):  # pragma: no cover - compiled
        """:func:`stroke_alpha` of one stroke inside ``box`` (set there; untouched outside).

        With a non-empty ``mask`` ``(H, W)`` int64, also records which segment(s) the max came from, for
        the backward: where ``alpha > 0``, bit ``k`` of ``mask`` is set for every segment ``k`` whose cover
        equals ``alpha``; where ``alpha = 0``,
        ``mask`` is ``_ZERO_TIE`` if some segment's cover is 0 with a gradient that may not be 0 there
        (``u >= 0``: the pixel is on the edge ``u = 0`` or the opacity is 0), else 0.
        """
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        track = mask.shape[0] > 0
        zero, one, half, eps = np.float32(0.0), np.float32(1.0), np.float32(0.5), np.float32(_EPS)
        zero_tie = np.int64(_ZERO_TIE)
        for y in range(y_lo, y_hi + 1):
            alpha[y, x_lo:x_hi + 1] = zero
            if track:
                mask[y, x_lo:x_hi + 1] = 0
        for k in range(n):
            ax, ay, ra, oa = verts[k, 0], verts[k, 1], verts[k, 2], verts[k, 3]
            dx, dy = verts[k + 1, 0] - ax, verts[k + 1, 1] - ay
            dr, do = verts[k + 1, 2] - ra, verts[k + 1, 3] - oa
            len2 = dx * dx + dy * dy
            inv_len2 = one / len2 if len2 > eps else zero
            reach = max(ra, ra + dr) + 0.501  # cover > 0 needs distance < radius + 0.5
            # the segment's capsule's bounding box: at these sizes, whole rows of it (longer vector loops, no
            # per-row capsule extent) are faster than the capsule's row spans
            sy0 = max(y_lo, int(math.ceil(min(ay, ay + dy) - reach - 0.5)))
            sy1 = min(y_hi, int(math.floor(max(ay, ay + dy) + reach - 0.5)))
            sx0 = max(x_lo, int(math.ceil(min(ax, ax + dx) - reach - 0.5)))
            sx1 = min(x_hi, int(math.floor(max(ax, ax + dx) + reach - 0.5)))
            if sx1 < sx0:
                continue
            bit = np.int64(1) << k
            for y in range(sy0, sy1 + 1):
                qy = np.float32(np.int32(y)) + half - ay  # pixel centre minus A, as torch: (y + 0.5) - ay
                row = alpha[y, sx0:sx1 + 1]
                if track:
                    m_row = mask[y, sx0:sx1 + 1]
                    for i in range(row.shape[0]):
                        qx = np.float32(np.int32(sx0 + i)) + half - ax
                        h = min(max((qx * dx + qy * dy) * inv_len2, zero), one)
                        ex, ey = qx - h * dx, qy - h * dy
                        dist = np.sqrt(ex * ex + ey * ey + eps)
                        u = ra + h * dr - dist + half
                        cover = min(max(u, zero), one) * (oa + h * do)
                        a, m = row[i], m_row[i]
                        tie = (bit if a > zero else (zero_tie if u >= zero else np.int64(0))) if cover == a else 0
                        m_row[i] = bit if cover > a else m | tie
                        row[i] = max(a, cover)
                else:
                    for i in range(row.shape[0]):
                        qx = np.float32(np.int32(sx0 + i)) + half - ax
                        h = min(max((qx * dx + qy * dy) * inv_len2, zero), one)
                        ex, ey = qx - h * dx, qy - h * dy
                        dist = np.sqrt(ex * ex + ey * ey + eps)
                        cover = min(max(ra + h * dr - dist + half, zero), one) * (oa + h * do)
                        row[i] = max(row[i], cover)

    @numba.njit(fastmath=_EXACT, cache=True, nogil=True)
    def _forward_one(img, pre, box, alpha, mask, verts, coef, stroke, size, k_max):  # pragma: no cover
        """Composite one stroke onto ``img`` ``(3, H, W)`` inside its box; set ``box`` ``(4,)``, and inside the
        box ``alpha`` ``(H, W)`` and ``mask`` (unless empty; see :func:`_coverage`); copy the canvas inside
        the box to ``pre`` ``(3, H, W)`` first unless ``pre`` is empty."""
        n = _polyline_f32(stroke, size, k_max, verts, coef)
        _polyline_box(verts, n, size, box)
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        if y_lo > y_hi or x_lo > x_hi:
            return
        if pre.shape[0] > 0:
            for c in range(3):
                for y in range(y_lo, y_hi + 1):
                    _copy_row(img[c, y, x_lo:x_hi + 1], pre[c, y, x_lo:x_hi + 1])
        _coverage(alpha, mask, verts, n, box)
        for y in range(y_lo, y_hi + 1):
            a_row = alpha[y, x_lo:x_hi + 1]
            for c in range(3):
                colour = stroke[10 + c]
                c_row = img[c, y, x_lo:x_hi + 1]
                for i in range(a_row.shape[0]):
                    c_row[i] += (colour - c_row[i]) * a_row[i]

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _forward_range(canvas, strokes, start, stop, k_max):  # pragma: no cover - compiled
        """:func:`_forward_one` for every stroke of canvases ``start:stop`` (nothing saved)."""
        size = canvas.shape[-1]
        alpha = np.empty((size, size), dtype=np.float32)
        no_mask = np.empty((0, 0), dtype=np.int64)
        verts = np.empty((k_max + 1, 4), dtype=np.float32)
        coef = np.empty((k_max + 1, 4), dtype=np.float32)
        no_pre = np.empty((0, 0, 0), dtype=np.float32)
        box = np.empty(4, dtype=np.int64)
        for b in range(start, stop):
            for s in range(strokes.shape[1]):
                _forward_one(canvas[b], no_pre, box, alpha, no_mask, verts, coef, strokes[b, s], size, k_max)



    @numba.njit(fastmath=_EXACT, cache=True, nogil=True)
    def _bucket(galpha, mask, box, n, k_max, pxs, pys, ws, zs, counts):  # pragma: no cover - compiled
        """Sort the pixels of ``box`` where dL/dalpha (``galpha``) reaches a segment into one list per segment:
        pixel centre ``(pxs, pys)[k, :counts[k]]``, its share of dL/dalpha ``ws`` and ``zs`` 1 where the share
        holds only if the segment's cover is 0 there (a tie with ``alpha = 0``), else 0.

        The shares follow ``torch.maximum``'s tie rule as :func:`stroke_alpha` applies it (``alpha =
        maximum(alpha, cover_k)`` for ``k = 0 .. K-1`` from zeros, a tie splitting the gradient in halves):
        where ``alpha > 0`` and segments ``j_1 < .. < j_m`` reach it, ``j_i`` gets ``2^-(m - i + 1)`` of the
        gradient (``j_1``: ``2^-(m - 1)``); where ``alpha = 0`` every segment ties with the zeros (padding
        segments included) and segment ``k`` gets ``2^-(K - k)``.
        """
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        half, zero, one = np.float32(0.5), np.float32(0.0), np.float32(1.0)
        counts[:n] = 0
        for y in range(y_lo, y_hi + 1):
            m_row, g_row = mask[y, x_lo:x_hi + 1], galpha[y, x_lo:x_hi + 1]
            py = np.float32(np.int32(y)) + half
            for i in range(m_row.shape[0]):
                m, g = m_row[i], g_row[i]
                if m == 0 or g == zero:
                    continue
                px = np.float32(np.int32(x_lo + i)) + half
                if m == _ZERO_TIE:  # alpha = 0: every segment ties
                    for k in range(n):
                        c = counts[k]
                        pxs[k, c], pys[k, c], ws[k, c], zs[k, c] = px, py, g * np.float32(0.5 ** (k_max - k)), one
                        counts[k] = c + 1
                elif m & (m - 1) == 0:  # one segment reaches alpha: the common case
                    k = _BIT_INDEX[m % 67]
                    c = counts[k]
                    pxs[k, c], pys[k, c], ws[k, c], zs[k, c] = px, py, g, zero
                    counts[k] = c + 1
                else:  # ties at alpha > 0
                    ties, rest = 0, m
                    while rest:
                        rest &= rest - 1
                        ties += 1
                    rank = 0
                    for k in range(n):
                        if (m >> k) & 1:
                            rank += 1
                            c = counts[k]
                            share = 0.5 ** (ties - 1 if rank == 1 else ties - rank + 1)
                            pxs[k, c], pys[k, c], ws[k, c], zs[k, c] = px, py, g * np.float32(share), zero
                            counts[k] = c + 1

    @numba.njit(fastmath=_EXACT, cache=True, nogil=True, error_model="numpy")  # IEEE division: vectorises
    def _segment_terms(pxs, pys, ws, zs, count, terms, ax, ay, dx, dy, inv_len2, ra, dr, oa, do):  # pragma: no cover
        """For the ``count`` pixels of one segment (centre ``p``, dL/dcover ``w``, kept only where the cover
        is 0 if ``z``): the terms ``terms[:, i]`` of the segment's gradient sums: d/dq (x, y), d/d(B - A)
        (x, y, without the ``1/|B - A|^2`` path), d/d(1/|B - A|^2), d/du, h d/du, d/do, h d/do, where
        ``q = p - A``, ``cover = clamp(u, 0, 1) * o``, ``u = r(h) - dist + 0.5``, ``o = o(h)``."""
        zero, one, half, eps = np.float32(0.0), np.float32(1.0), np.float32(0.5), np.float32(_EPS)
        for i in range(count):
            qx, qy = pxs[i] - ax, pys[i] - ay
            num = qx * dx + qy * dy
            h_raw = num * inv_len2
            h = min(max(h_raw, zero), one)
            ex, ey = qx - h * dx, qy - h * dy
            dist = np.sqrt(ex * ex + ey * ey + eps)
            u = ra + h * dr - dist + half
            clamped, o = min(max(u, zero), one), oa + h * do
            w = ws[i] if (zs[i] == zero or clamped * o == zero) else zero
            g_o = w * clamped
            g_u = w * o if (u >= zero and u <= one) else zero  # torch's clamp: boundaries pass
            g_dist = -g_u / dist
            g_ex, g_ey = g_dist * ex, g_dist * ey
            g_h = g_u * dr + g_o * do - g_ex * dx - g_ey * dy
            g_hr = g_h if (h_raw >= zero and h_raw <= one) else zero
            g_num = g_hr * inv_len2
            terms[0, i] = g_ex + g_num * dx
            terms[1, i] = g_ey + g_num * dy
            terms[2, i] = g_num * qx - g_ex * h
            terms[3, i] = g_num * qy - g_ey * h
            terms[4, i] = g_hr * num
            terms[5, i] = g_u
            terms[6, i] = g_u * h
            terms[7, i] = g_o
            terms[8, i] = g_o * h

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _sum_terms(terms, count, totals):  # pragma: no cover - compiled
        """``totals[j] = sum(terms[j, :count])`` for ``j < 9`` (float32 blocks of 256, float64 totals)."""
        for j in range(9):
            row = terms[j]
            total = 0.0
            for start in range(0, count, 256):
                block = row[start:min(count, start + 256)]
                acc = np.float32(0.0)
                for i in range(block.shape[0]):
                    acc += block[i]
                total += acc
            totals[j] = total

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _composite_backward(grad, pre, alpha, galpha, stroke, box, gstroke):  # pragma: no cover - compiled
        """Backward of ``out = pre + (colour - pre) * alpha`` inside ``box``: ``grad`` ``(3, H, W)`` goes from
        dL/dout to dL/dpre in place, ``galpha`` gets dL/dalpha, ``gstroke[10:13]`` dL/dcolour."""
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        zero = np.float32(0.0)
        c0, c1, c2 = stroke[10], stroke[11], stroke[12]
        gc0 = gc1 = gc2 = 0.0
        for y in range(y_lo, y_hi + 1):
            a_row, ga_row = alpha[y, x_lo:x_hi + 1], galpha[y, x_lo:x_hi + 1]
            g0, g1, g2 = grad[0, y, x_lo:x_hi + 1], grad[1, y, x_lo:x_hi + 1], grad[2, y, x_lo:x_hi + 1]
            p0, p1, p2 = pre[0, y, x_lo:x_hi + 1], pre[1, y, x_lo:x_hi + 1], pre[2, y, x_lo:x_hi + 1]
            s0 = s1 = s2 = zero
            for i in range(a_row.shape[0]):
                a, v0, v1, v2 = a_row[i], g0[i], g1[i], g2[i]
                ga_row[i] = v0 * (c0 - p0[i]) + v1 * (c1 - p1[i]) + v2 * (c2 - p2[i])
                s0 += v0 * a
                s1 += v1 * a
                s2 += v2 * a
                g0[i] = v0 - v0 * a
                g1[i] = v1 - v1 * a
                g2[i] = v2 - v2 * a
            gc0 += s0
            gc1 += s1
            gc2 += s2
        gstroke[10], gstroke[11], gstroke[12] = gc0, gc1, gc2

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _fitted_composite_backward(grad, pre, alpha, galpha, stroke, box, gstroke, target):  # pragma: no cover
        """:func:`_composite_backward` for a stroke whose colour is its least-squares fit to ``target``
        ``(3, H, W)`` (:func:`fitted_colour`: ``c = clamp(N / D, 0, 1)``, ``N = sum a (T - C (1 - a))``,
        ``D = max(sum a^2, 1e-8)``, per channel): dL/dcolour flows on, through ``N`` and ``D``, into dL/dalpha
        and dL/dpre; ``gstroke[10:13]`` is 0 (the stroke's own colour numbers are not used)."""
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        one = np.float32(1.0)
        # the fit's sums again, and dL/dc = sum g a, from the canvas before the stroke
        den = 0.0
        num = np.zeros(3, dtype=np.float64)
        gc = np.zeros(3, dtype=np.float64)
        for y in range(y_lo, y_hi + 1):
            a_row = alpha[y, x_lo:x_hi + 1]
            for i in range(a_row.shape[0]):
                den += a_row[i] * a_row[i]
            for c in range(3):
                p_row, t_row, g_row = pre[c, y, x_lo:x_hi + 1], target[c, y, x_lo:x_hi + 1], grad[c, y, x_lo:x_hi + 1]
                n_acc = np.float32(0.0)
                g_acc = np.float32(0.0)
                for i in range(a_row.shape[0]):
                    a = a_row[i]
                    n_acc += a * (t_row[i] - p_row[i] * (one - a))
                    g_acc += g_row[i] * a
                num[c] += n_acc
                gc[c] += g_acc
        live = den >= 1e-8  # below, the denominator is the constant 1e-8 (clamp_min): no gradient through it
        den = max(den, 1e-8)
        g_num = np.zeros(3, dtype=np.float32)  # dL/dN = dL/dc / D where the clamp passes it (its boundaries too)
        g_den = 0.0  # dL/dD = -sum dL/dc N / D^2
        for c in range(3):
            u = num[c] / den
            if 0.0 <= u <= 1.0:
                g_num[c] = gc[c] / den
                if live:
                    g_den -= gc[c] * u / den
        g_den2 = np.float32(2.0 * g_den)
        c0, c1, c2 = stroke[10], stroke[11], stroke[12]
        n0, n1, n2 = g_num[0], g_num[1], g_num[2]
        for y in range(y_lo, y_hi + 1):
            a_row, ga_row = alpha[y, x_lo:x_hi + 1], galpha[y, x_lo:x_hi + 1]
            g0, g1, g2 = grad[0, y, x_lo:x_hi + 1], grad[1, y, x_lo:x_hi + 1], grad[2, y, x_lo:x_hi + 1]
            p0, p1, p2 = pre[0, y, x_lo:x_hi + 1], pre[1, y, x_lo:x_hi + 1], pre[2, y, x_lo:x_hi + 1]
            t0, t1, t2 = target[0, y, x_lo:x_hi + 1], target[1, y, x_lo:x_hi + 1], target[2, y, x_lo:x_hi + 1]
            for i in range(a_row.shape[0]):
                a, v0, v1, v2 = a_row[i], g0[i], g1[i], g2[i]
                q0, q1, q2 = p0[i], p1[i], p2[i]
                # out = C + (c - C) a, with dN/da = T - C + 2 a C, dD/da = 2 a, dN/dC = -a (1 - a)
                ga_row[i] = (v0 * (c0 - q0) + v1 * (c1 - q1) + v2 * (c2 - q2)
                             + n0 * (t0[i] - q0 + 2.0 * a * q0) + n1 * (t1[i] - q1 + 2.0 * a * q1)
                             + n2 * (t2[i] - q2 + 2.0 * a * q2) + g_den2 * a)
                keep, fit = one - a, -a * (one - a)
                g0[i] = v0 * keep + n0 * fit
                g1[i] = v1 * keep + n1 * fit
                g2[i] = v2 * keep + n2 * fit
        gstroke[10], gstroke[11], gstroke[12] = 0.0, 0.0, 0.0

    @numba.njit(fastmath=_EXACT, cache=True, nogil=True)
    def _backward_one(grad, pre, box, alpha, mask, stroke, gstroke, size, k_max, verts, coef, gverts, galpha,
                      pxs, pys, ws, zs, counts, terms, totals, target):  # pragma: no cover - compiled
        """Backward of one stroke on one canvas.

        ``grad`` ``(3, H, W)``: dL/d(canvas after the stroke) on entry, dL/d(canvas before it) on exit.
        ``pre`` ``(3, H, W)``, ``alpha`` and ``mask`` ``(H, W)``: the canvas before the stroke and the
        stroke's :func:`_coverage`, as :func:`_forward_one` left them (read inside ``box`` only).
        ``gstroke`` ``(13,)`` is set to dL/dstroke. ``target`` ``(3, H, W)``: the stroke's colour was fitted to
        it (:func:`_fitted_composite_backward`); empty: the colour is the stroke's own. The rest is scratch.
        Ties of the max over segments split the gradient as chained ``torch.maximum`` does (see
        :func:`_bucket`); clamps pass the gradient on their boundaries, as torch's ``clamp`` does.
        """
        for j in range(13):
            gstroke[j] = 0.0
        y_lo, y_hi, x_lo, x_hi = box[0], box[1], box[2], box[3]
        if y_lo > y_hi or x_lo > x_hi:
            return
        n = _polyline_f32(stroke, size, k_max, verts, coef)
        zero, one, eps = np.float32(0.0), np.float32(1.0), np.float32(_EPS)
        if target.shape[0] > 0:
            _fitted_composite_backward(grad, pre, alpha, galpha, stroke, box, gstroke, target)
        else:
            _composite_backward(grad, pre, alpha, galpha, stroke, box, gstroke)
        _bucket(galpha, mask, box, n, k_max, pxs, pys, ws, zs, counts)
        # coverage: from each segment's pixels to its end points' position, radius and opacity
        gverts[: n + 1, :] = 0.0
        for k in range(n):
            count = counts[k]
            if count == 0:
                continue
            ax, ay, ra, oa = verts[k, 0], verts[k, 1], verts[k, 2], verts[k, 3]
            dx, dy = verts[k + 1, 0] - ax, verts[k + 1, 1] - ay
            dr, do = verts[k + 1, 2] - ra, verts[k + 1, 3] - oa
            len2 = dx * dx + dy * dy
            inv_len2 = one / len2 if len2 > eps else zero
            # one long vector loop over the segment's pixels
            _segment_terms(pxs[k], pys[k], ws[k], zs[k], count, terms, ax, ay, dx, dy, inv_len2, ra, dr, oa, do)
            _sum_terms(terms, count, totals)
            t_qx, t_qy, t_dx, t_dy, t_inv = totals[0], totals[1], totals[2], totals[3], totals[4]
            t_u, t_uh, t_o, t_oh = totals[5], totals[6], totals[7], totals[8]
            g_len2 = -t_inv * inv_len2 * inv_len2  # d(1/len2); zero for a degenerate segment (inv_len2 = 0)
            g_dx, g_dy = t_dx + 2.0 * dx * g_len2, t_dy + 2.0 * dy * g_len2
            gverts[k, 0] += -t_qx - g_dx
            gverts[k, 1] += -t_qy - g_dy
            gverts[k + 1, 0] += g_dx
            gverts[k + 1, 1] += g_dy
            gverts[k, 2] += t_u - t_uh
            gverts[k + 1, 2] += t_uh
            gverts[k, 3] += t_o - t_oh
            gverts[k + 1, 3] += t_oh
        # vertices -> stroke numbers
        f = float(size)
        r_scale = (MAX_RADIUS - MIN_RADIUS) * size  # d radius / d r in pixels: the slope of radius_fraction
        g = totals  # scratch
        g[:] = 0.0
        for k in range(n + 1):
            a, b, c, t = coef[k, 0], coef[k, 1], coef[k, 2], coef[k, 3]
            gx, gy, gr, go = gverts[k, 0] * f, gverts[k, 1] * f, gverts[k, 2] * r_scale, gverts[k, 3]
            g[0] += gx * a
            g[1] += gy * a
            g[2] += gx * b
            g[3] += gy * b
            g[4] += gx * c
            g[5] += gy * c
            g[6] += gr * (1.0 - t)
            g[7] += gr * t
            g[8] += go * (1.0 - t)
            g[9] += go * t
        for j in range(10):
            gstroke[j] = g[j]

    @numba.njit(cache=True, nogil=True)
    def _replay_scratch(count, size):  # pragma: no cover - compiled
        """What a replayed forward keeps of each of ``count`` strokes for :func:`_backward_one`: the canvas
        before it, its box, alpha and segment mask."""
        return (np.empty((count, 3, size, size), dtype=np.float32), np.empty((count, 4), dtype=np.int64),
                np.empty((count, size, size), dtype=np.float32), np.empty((count, size, size), dtype=np.int64))

    @numba.njit(cache=True, nogil=True)
    def _stroke_backward_scratch(size, k_max):  # pragma: no cover - compiled
        """The scratch of :func:`_backward_one` after ``grad`` ... ``gstroke``: ``galpha, verts, coef, gverts, pxs,
        pys, ws, zs, counts, terms, totals``."""
        pixels = size * size
        return (np.empty((size, size), dtype=np.float32), np.empty((k_max + 1, 4), dtype=np.float32),
                np.empty((k_max + 1, 4), dtype=np.float32), np.empty((k_max + 1, 4), dtype=np.float64),
                np.empty((k_max, pixels), dtype=np.float32), np.empty((k_max, pixels), dtype=np.float32),
                np.empty((k_max, pixels), dtype=np.float32), np.empty((k_max, pixels), dtype=np.float32),
                np.empty(k_max, dtype=np.int64), np.empty((9, pixels), dtype=np.float32),
                np.empty(10, dtype=np.float64))

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _backward_range(grad, strokes, canvas, gstrokes, start, stop, k_max, targets):  # pragma: no cover - compiled
        """Backward of canvases ``start:stop``: replay the forward from ``canvas`` keeping the canvas before
        each stroke and its coverage (inside its box), then :func:`_backward_one` for each stroke, the last
        first. ``targets`` ``(B, 3, H, W)``: the strokes' colours (as given) were fitted to them; empty: not."""
        size, count = grad.shape[-1], strokes.shape[1]
        pre, boxes, alphas, masks = _replay_scratch(count, size)
        img = np.empty((3, size, size), dtype=np.float32)
        galpha, verts, coef, gverts, pxs, pys, ws, zs, counts, terms, totals = _stroke_backward_scratch(size, k_max)
        fitted, no_target = targets.shape[0] > 0, np.empty((0, 1, 1), dtype=np.float32)
        for b in range(start, stop):
            target = targets[b] if fitted else no_target
            for c in range(3):
                for y in range(size):
                    _copy_row(canvas[b, c, y], img[c, y])
            for s in range(count):
                _forward_one(img, pre[s], boxes[s], alphas[s], masks[s], verts, coef, strokes[b, s], size, k_max)
            for s in range(count - 1, -1, -1):
                _backward_one(grad[b], pre[s], boxes[s], alphas[s], masks[s], strokes[b, s], gstrokes[b, s], size,
                              k_max, verts, coef, gverts, galpha, pxs, pys, ws, zs, counts, terms, totals, target)

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _render_range(canvas, strokes, grad, gstrokes, k_max, targets, start, stop):  # pragma: no cover - compiled
        """Canvases ``start:stop``: :func:`_forward_range` if ``grad`` is empty, else :func:`_backward_range`."""
        if grad.shape[0] > 0:
            _backward_range(grad, strokes, canvas, gstrokes, start, stop, k_max, targets)
        else:
            _forward_range(canvas, strokes, start, stop, k_max)

    @numba.njit(fastmath=True, cache=True, parallel=True, nogil=True)
    def _render_parallel(canvas, strokes, grad, gstrokes, k_max, targets, chunks):  # pragma: no cover - compiled
        """``prange`` over ``chunks`` chunks of canvases, each by :func:`_render_range` (one kernel for the
        forward and the backward: one parallel compile)."""
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _render_range(canvas, strokes, grad, gstrokes, k_max, targets, start, stop)


    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _squared_error(img, target):  # pragma: no cover - compiled
        """``sum((img - target)^2)`` over ``(3, H, W)`` (float32 rows, a float64 total)."""
        total = 0.0
        for c in range(img.shape[0]):
            for y in range(img.shape[1]):
                i_row, t_row = img[c, y], target[c, y]
                acc = np.float32(0.0)
                for x in range(i_row.shape[0]):
                    d = i_row[x] - t_row[x]
                    acc += d * d
                total += acc
        return total

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _add_scaled_difference(out, img, target, scale):  # pragma: no cover - compiled
        """``out += scale * (img - target)`` over ``(3, H, W)``."""
        for c in range(img.shape[0]):
            for y in range(img.shape[1]):
                o_row, i_row, t_row = out[c, y], img[c, y], target[c, y]
                for x in range(i_row.shape[0]):
                    o_row[x] += scale * (i_row[x] - t_row[x])

    @numba.njit(fastmath=True, cache=True, nogil=True)
    def _prefix_l2_range(canvas, strokes, targets, ends, weights, losses, gstrokes, k_max,
                         start, stop):  # pragma: no cover - compiled
        """Canvases ``start:stop`` of :func:`render_prefix_losses`'s numba path: ``losses[b] = sum_j weights[j] *
        mean((canvas after strokes[:ends[j]] - target)^2)``, and unless ``gstrokes`` is empty ``gstrokes[b] =
        dlosses[b] / dstrokes[b]``: each prefix's error gradient kept as the painting passes its end (keeping
        what :func:`_backward_range` keeps of each stroke), then :func:`_backward_one` for each stroke, the last
        first, each prefix's gradient joining the canvas's gradient where the walk reaches its end."""
        size, count, m = canvas.shape[-1], strokes.shape[1], ends.shape[0]
        backward = gstrokes.shape[0] > 0
        inv_n = 1.0 / (3.0 * size * size)
        pre, boxes, alphas, masks = _replay_scratch(count if backward else 0, size)
        galpha, verts, coef, gverts, pxs, pys, ws, zs, counts, terms, totals = _stroke_backward_scratch(
            size if backward else 0, k_max)
        img = np.empty((3, size, size), dtype=np.float32)
        grad = np.empty((3, size, size) if backward else (0, 0, 0), dtype=np.float32)
        end_grads = np.empty((m if backward else 0, 3, size, size), dtype=np.float32)
        alpha, box = np.empty((size, size), dtype=np.float32), np.empty(4, dtype=np.int64)
        no_mask, no_pre = np.empty((0, 0), dtype=np.int64), np.empty((0, 0, 0), dtype=np.float32)
        no_target = np.empty((0, 1, 1), dtype=np.float32)
        for b in range(start, stop):
            target = targets[b]
            for c in range(3):
                for y in range(size):
                    _copy_row(canvas[b, c, y], img[c, y])
            j, total = 0, 0.0
            for s in range(count):
                if backward:
                    _forward_one(img, pre[s], boxes[s], alphas[s], masks[s], verts, coef, strokes[b, s], size, k_max)
                else:
                    _forward_one(img, no_pre, box, alpha, no_mask, verts, coef, strokes[b, s], size, k_max)
                while j < m and ends[j] == s + 1:
                    total += weights[j] * _squared_error(img, target) * inv_n
                    if backward:  # d(w mean((C - T)^2)) / dC = 2 w (C - T) / n
                        end_grads[j] = 0.0
                        _add_scaled_difference(end_grads[j], img, target, np.float32(2.0 * weights[j] * inv_n))
                    j += 1
            losses[b] = total
            if not backward:
                continue
            grad[:] = 0.0
            for s in range(count - 1, -1, -1):
                while j > 0 and ends[j - 1] == s + 1:
                    j -= 1
                    grad += end_grads[j]
                _backward_one(grad, pre[s], boxes[s], alphas[s], masks[s], strokes[b, s], gstrokes[b, s], size,
                              k_max, verts, coef, gverts, galpha, pxs, pys, ws, zs, counts, terms, totals, no_target)

    @numba.njit(fastmath=True, cache=True, parallel=True, nogil=True)
    def _prefix_l2_parallel(canvas, strokes, targets, ends, weights, losses, gstrokes, k_max,
                            chunks):  # pragma: no cover - compiled
        for c in numba.prange(chunks):
            start, stop = chunk_range(c, chunks, canvas.shape[0])
            _prefix_l2_range(canvas, strokes, targets, ends, weights, losses, gstrokes, k_max, start, stop)


_NO_MIRROR = np.empty((0, 0, 0, 3), dtype=np.uint8)
_NO_ROWS = np.empty((0, 2), dtype=np.int64)


_NO_TARGETS = np.empty((0, 3, 1, 1), dtype=np.float32)


def paint_numpy(canvas: np.ndarray, strokes: np.ndarray, active: np.ndarray, mirror: np.ndarray | None = None,
                rows: np.ndarray | None = None, targets: np.ndarray | None = None) -> None:
    """The CPU kernel behind :func:`paint_`, without its checks (callers guarantee them).

    :param canvas: ``(B, 3, H, W)`` float32 C-contiguous, modified in place.
    :param strokes: ``(B, S, 13)`` float32 C-contiguous.
    :param active: ``(B,)`` bool.
    :param mirror: optional ``(B, H, W, C >= 3)`` uint8, channel-last: its first 3 channels are kept
        equal to ``to_uint8(canvas)`` wherever the strokes may have changed the canvas (the image
        observation's canvas channels, converted while the painted rows are still in cache).
    :param rows: optional ``(B, 2)`` int64, set to the rows ``[lo, hi]`` (inclusive) each canvas may
        have changed in this call (``lo > hi``: none).
    :param targets: optional ``(B, 3, H, W)`` float32 C-contiguous: each stroke's colour is first
        replaced (in ``strokes``) by its least-squares fit to the target (see :func:`paint_fitted_`).
    """
    k_max = flatten_segments(canvas.shape[-1])
    mirror = _NO_MIRROR if mirror is None else mirror
    rows = _NO_ROWS if rows is None else rows
    targets = _NO_TARGETS if targets is None else targets
    launch(_paint_range, _paint_parallel, canvas.shape[0], canvas, strokes, active, k_max, mirror, rows, targets)


_NO_GRAD = np.empty((0, 3, 1, 1), dtype=np.float32)
_NO_GRAD_STROKES = np.empty((0, 0, STROKE_DIM), dtype=np.float32)


def render_numpy(canvas: np.ndarray, strokes: np.ndarray) -> None:
    """The forward kernel of :func:`render`'s numba path, without checks (callers guarantee them).

    :param canvas: ``(B, 3, H, W)`` float32 C-contiguous, in [0, 1], modified in place.
    :param strokes: ``(B, S, 13)`` float32 C-contiguous.
    """
    batch = canvas.shape[0]
    if batch == 0 or strokes.shape[1] == 0:
        return
    launch(_render_range, _render_parallel, batch, canvas, strokes, _NO_GRAD, _NO_GRAD_STROKES,
           flatten_segments(canvas.shape[-1]), _NO_TARGETS)


def render_backward_numpy(grad: np.ndarray, strokes: np.ndarray, canvas: np.ndarray, grad_strokes: np.ndarray,
                          targets: np.ndarray | None = None) -> None:
    """The backward kernel of :func:`render`'s numba path, without checks.

    :param grad: ``(B, 3, H, W)`` float32 C-contiguous: dL/d(output canvas) on entry, dL/d(input
        canvas) on exit.
    :param strokes: ``(B, S, 13)`` float32 C-contiguous, as given to :func:`render_numpy`.
    :param canvas: ``(B, 3, H, W)`` float32 C-contiguous, the input canvas as given to :func:`render_numpy`
        (the forward is replayed from it).
    :param grad_strokes: ``(B, S, 13)`` float32, set to dL/dstrokes.
    :param targets: optional ``(B, 3, H, W)`` float32 C-contiguous: the strokes' colours (as given) are their
        least-squares fits to these targets (:func:`render_fitted`), and the gradient flows through the fit.
    """
    batch = grad.shape[0]
    if batch == 0 or strokes.shape[1] == 0:
        grad_strokes[:] = 0.0
        return
    launch(_render_range, _render_parallel, batch, canvas, strokes, grad, grad_strokes,
           flatten_segments(grad.shape[-1]), _NO_TARGETS if targets is None else targets)


class _NumbaRender(torch.autograd.Function):
    """:func:`render` on float32 CPU tensors: numba forward, analytic numba backward (once differentiable).

    Saves only the inputs (the strokes and the input canvas, by reference: modifying either in place
    before the backward raises autograd's usual error). The backward replays the forward canvas by
    canvas, keeping for each stroke, inside its box, the canvas before it, its alpha and the mask of the
    segments that reach the max, in scratch of ``(24 S + 16 K) * H * W`` bytes per chunk of canvases (a
    thread runs one chunk at a time; never ``B`` of them), then walks the strokes in reverse.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, strokes: torch.Tensor,  # type: ignore[override]
                canvas: torch.Tensor) -> torch.Tensor:
        out = canvas.detach().clone(memory_format=torch.contiguous_format)
        render_numpy(out.numpy(), strokes.detach().contiguous().numpy())
        ctx.save_for_backward(strokes, canvas)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        strokes, canvas = ctx.saved_tensors
        return _kernel_backward(ctx, grad_out, strokes, strokes.detach().contiguous(), canvas)


def _kernel_backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor, strokes: torch.Tensor,
                     painted: torch.Tensor, canvas: torch.Tensor, targets: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients ``(strokes, canvas)`` of a numba render by :func:`render_backward_numpy`, for the autograd
    Functions of the numba path: ``painted`` are the strokes as composited (contiguous; their fitted colours,
    with ``targets``), ``strokes`` the input, which anchors the guard against a double backward."""
    with torch.no_grad():
        grad = torch.empty(grad_out.shape, dtype=torch.float32)
        grad.copy_(grad_out)
        grad_strokes = torch.empty(painted.shape, dtype=torch.float32)
        render_backward_numpy(grad.numpy(), painted.numpy(), canvas.detach().contiguous().numpy(), grad_strokes.numpy(),
                              targets=None if targets is None else targets.numpy())
    grads = (grad_strokes if ctx.needs_input_grad[0] else None, grad if ctx.needs_input_grad[1] else None)
    if torch.is_grad_enabled():  # create_graph=True: these gradients must not be differentiated (silently 0)
        anchor = strokes if strokes.requires_grad else canvas
        grads = tuple(None if g is None else _NotTwice.apply(g, anchor) for g in grads)
    return grads  # type: ignore[return-value]


def _painted_fitted(strokes: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A copy of ``canvas`` with ``strokes`` painted by :func:`paint_fitted_`'s kernel, and the strokes as painted
    (a copy, their colours the fits); no gradient."""
    with torch.no_grad():
        out = canvas.detach().clone(memory_format=torch.contiguous_format)
        fitted = strokes.detach().clone(memory_format=torch.contiguous_format)
        targets = target.detach().contiguous().numpy()
        paint_numpy(out.numpy(), fitted.numpy(), _all_active(out.shape[0]), targets=targets)
    return out, fitted


class _NumbaFittedRender(torch.autograd.Function):
    """:func:`render_fitted` on float32 CPU tensors: the numba kernel of :func:`paint_fitted_` forward, and
    :class:`_NumbaRender`'s backward with the fit's own terms (:func:`_fitted_composite_backward`). Saves the
    inputs (by reference) and the fitted strokes; the target gets no gradient."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, strokes: torch.Tensor,  # type: ignore[override]
                canvas: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, fitted = _painted_fitted(strokes, canvas, target)
        ctx.save_for_backward(strokes, canvas, target.detach().contiguous(), fitted)
        colours = fitted[..., 10:13].clone()
        ctx.mark_non_differentiable(colours)
        return out, colours

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor,  # type: ignore[override]
                 grad_colours: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        strokes, canvas, target, fitted = ctx.saved_tensors
        return (*_kernel_backward(ctx, grad_out, strokes, fitted, canvas, target), None)


class _NotTwice(torch.autograd.Function):
    """Identity on ``grad`` that raises if anything backpropagates through it (the numba backward's
    gradients, when a caller asked autograd for a graph of the gradients)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor,  # type: ignore[override]
                anchor: torch.Tensor) -> torch.Tensor:
        return grad.clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, *grads: torch.Tensor) -> None:  # type: ignore[override]
        raise RuntimeError("render() on float32 CPU tensors (the numba path) is differentiable once: no double "
                           "backward. For second derivatives use the torch path (PAINTGYM_NO_NUMBA=1, or float64 "
                           "tensors).")

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


# ------------------------------------------------------------------ strokes coloured to fit a target
def stroke_coverage(strokes: torch.Tensor, size: int) -> torch.Tensor:
    """Coverage times opacity of one stroke per canvas, ``(N, H, W)`` in [0, 1], by the fastest path.

    Differentiable with respect to ``strokes`` when autograd tracks them. On the CPU the stroke is
    painted in white onto black by the numba kernels (which visit only the pixels it can reach, about
    10x faster than :func:`stroke_alpha` at 64x64, the same values to float32 rounding); elsewhere
    :func:`stroke_alpha`.

    :param strokes: ``(N, 13)`` float in [0, 1].
    :param size: canvas side H = W.
    """
    if not (HAVE_NUMBA and strokes.device.type == "cpu"):
        return stroke_alpha(strokes.float(), size)
    white = torch.cat([strokes[:, :10].float(), torch.ones_like(strokes[:, 10:13], dtype=torch.float32)], dim=-1)
    black = torch.zeros((strokes.shape[0], 3, size, size))
    if torch.is_grad_enabled() and strokes.requires_grad:
        return render(white[:, None], black)[:, 0]
    return paint_(black, white[:, None].detach().contiguous())[:, 0]


def score_strokes(canvas: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor,
                  chunk_pixels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The best colour of each candidate stroke and how much it would change the squared error.

    A stroke of coverage-times-opacity ``a`` and colour ``c`` turns the canvas ``C`` into
    ``C + a (c - C)``. Per channel, the colour minimising the squared error to the target ``T`` is
    ``c = sum a (T - C (1 - a)) / sum a^2``, clamped to [0, 1]; the change of the error is
    ``sum a^2 (c - C)^2 - 2 a (c - C) (T - C)``. Both need only five sums per candidate and channel,
    taken on float32 CPU tensors without gradients by one numba kernel that visits only the pixels each
    stroke can cover (``_score_range``), elsewhere as batched matrix products of the candidates' alphas
    (:func:`stroke_coverage`, computed ``chunk_pixels`` alpha values at a time; default: 2^19 on the CPU,
    where they stay in cache, 2^25 elsewhere) with per-pixel maps of the canvas, differentiably.

    :param canvas: ``(B, 3, H, H)`` float in [0, 1].
    :param target: ``(B, 3, H, H)`` float in [0, 1].
    :param candidates: ``(B, K, 13)`` float in [0, 1] (their colours are ignored).
    :return: colours ``(B, K, 3)`` in [0, 1], and the change of the summed squared error over pixels
        and channels ``(B, K)`` (negative: the stroke helps).
    """
    batch, count, _ = candidates.shape
    size = canvas.shape[-1]
    if (HAVE_NUMBA and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (canvas, target, candidates))
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in (canvas, target, candidates)))):
        colours = torch.empty((batch, count, 3))
        deltas = torch.empty((batch, count))
        if batch and count:
            launch(_score_range, _score_parallel, batch, canvas.detach().contiguous().numpy(),
                   target.detach().contiguous().numpy(), candidates.detach().contiguous().numpy(), colours.numpy(),
                   deltas.numpy(), flatten_segments(size))
        return colours, deltas
    return _score_strokes_torch(canvas, target, candidates, chunk_pixels)


def _score_strokes_torch(canvas: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor,
                         chunk_pixels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch path of :func:`score_strokes` (any device, differentiable; the reference of its kernel)."""
    batch, count, _ = candidates.shape
    size = canvas.shape[-1]
    pixels = size * size
    flat_canvas = canvas.reshape(batch, 3, pixels)
    residual = target.reshape(batch, 3, pixels) - flat_canvas
    ones = torch.ones((batch, 1, pixels), device=canvas.device, dtype=canvas.dtype)
    squared_maps = torch.cat([ones, flat_canvas, flat_canvas * flat_canvas], 1).transpose(1, 2)  # (B, P, 7)
    linear_maps = torch.cat([residual, flat_canvas * residual], 1).transpose(1, 2)  # (B, P, 6)
    if chunk_pixels is None:
        chunk_pixels = 1 << 19 if canvas.device.type == "cpu" else 1 << 25
    per_chunk = max(1, chunk_pixels // (pixels * batch))  # candidates per image per chunk
    colours, deltas = [], []
    for start in range(0, count, per_chunk):  # chunks of candidates keep the alphas in cache
        chunk = candidates[:, start:start + per_chunk]
        k = chunk.shape[1]
        alpha = stroke_coverage(chunk.reshape(-1, STROKE_DIM), size).view(batch, k, pixels)
        squared = torch.bmm(alpha * alpha, squared_maps)  # sum a^2, sum a^2 C, sum a^2 C^2
        linear = torch.bmm(alpha, linear_maps)  # sum a R, sum a C R
        sum_a2, sum_a2c, sum_a2c2 = squared[..., 0:1], squared[..., 1:4], squared[..., 4:7]
        sum_ar, sum_acr = linear[..., 0:3], linear[..., 3:6]
        colour = ((sum_ar + sum_a2c) / sum_a2.clamp_min(1e-12)).clamp_(0.0, 1.0)
        delta = colour * colour * sum_a2 - 2.0 * colour * (sum_a2c + sum_ar) + sum_a2c2 + 2.0 * sum_acr
        colours.append(colour)
        deltas.append(delta.sum(-1))
    return torch.cat(colours, 1), torch.cat(deltas, 1)


def fitted_colour(alpha: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The colour of a stroke that brings the canvas closest to the target (squared error), in [0, 1].

    A stroke of coverage-times-opacity ``a`` and colour ``c`` turns ``C`` into ``C + a (c - C)``; per
    channel the best ``c`` is ``sum a (T - C (1 - a)) / sum a^2`` (differentiable in ``a``, ``C``, ``T``).

    :param alpha: ``(B, H, W)`` float in [0, 1] (:func:`stroke_coverage`).
    :param canvas: ``(B, 3, H, W)`` float in [0, 1].
    :param target: ``(B, 3, H, W)`` float in [0, 1].
    :return: ``(B, 3)``.
    """
    a = alpha.flatten(1).unsqueeze(1)  # (B, 1, P)
    numerator = (a * (target.flatten(2) - canvas.flatten(2) * (1.0 - a))).sum(-1)
    return (numerator / (a * a).sum(-1).clamp_min(1e-8)).clamp(0.0, 1.0)


def paint_fitted_(canvas: torch.Tensor, strokes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Composite strokes in place, each in its :func:`fitted_colour` on the canvas it lands on (no gradient).

    The fitted colours are written into ``strokes[..., 10:13]`` (in place), so that painting the
    returned strokes with :func:`paint_` gives the same canvas. On the CPU one numba pass fits and
    composites each stroke over the pixels it covers; elsewhere, stroke by stroke in torch.

    :param canvas: ``(B, 3, H, W)`` float32 in [0, 1], contiguous, modified in place.
    :param strokes: ``(B, S, 13)`` float32 in [0, 1], contiguous, its colours modified in place.
    :param targets: ``(B, 3, H, W)`` float in [0, 1].
    :return: ``strokes``.
    """
    _check(canvas, strokes)
    if targets.shape != canvas.shape:
        raise ValueError(f"targets must have the canvas's shape {tuple(canvas.shape)}, got {tuple(targets.shape)}")
    if not (canvas.is_contiguous() and strokes.is_contiguous()):
        raise ValueError("paint_fitted_ needs a contiguous canvas and contiguous strokes")
    with torch.no_grad():
        if HAVE_NUMBA and canvas.device.type == "cpu" and canvas.dtype == torch.float32 == strokes.dtype:
            paint_numpy(canvas.detach().numpy(), strokes.detach().numpy(), _all_active(canvas.shape[0]),
                        targets=targets.detach().float().contiguous().numpy())
            return strokes
        painted, colours = _render_fitted_torch(strokes, canvas, targets)
        canvas.copy_(painted)
        strokes[..., 10:13] = colours.to(strokes.dtype)
    return strokes


def render_fitted(strokes: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite strokes in order, each in its :func:`fitted_colour` on the canvas it lands on, differentiably.

    What :func:`paint_fitted_` paints, as :func:`render` does it: a new canvas, differentiable with respect to
    the strokes' shapes (their colour numbers are replaced by the fits, so they get no gradient) and the
    canvas, the gradient flowing through each fit too; ``target`` gets none. Float32 CPU tensors take one
    numba kernel forward and one backward (:class:`_NumbaFittedRender`: training the model-based agent
    composites every stroke this way, and a dozen whole-canvas torch operations per stroke, forward and
    backward, cost more than the strokes); elsewhere torch, stroke by stroke
    (:func:`stroke_coverage`, :func:`fitted_colour`, compositing).

    :param strokes: ``(B, S, 13)`` float in [0, 1].
    :param canvas: ``(B, 3, H, W)`` float in [0, 1], left unchanged.
    :param target: ``(B, 3, H, W)`` float in [0, 1].
    :return: the canvas after the strokes ``(B, 3, H, W)``, and the fitted colours ``(B, S, 3)`` (no gradient).
    """
    _check(canvas, strokes)
    if target.shape != canvas.shape:
        raise ValueError(f"target must have the canvas's shape {tuple(canvas.shape)}, got {tuple(target.shape)}")
    if (_numba_path(strokes, canvas) and target.device.type == "cpu" and target.dtype == torch.float32
            and not (torch.is_grad_enabled() and target.requires_grad)):
        if torch.is_grad_enabled() and (strokes.requires_grad or canvas.requires_grad):
            return _NumbaFittedRender.apply(strokes, canvas, target)
        out, fitted = _painted_fitted(strokes, canvas, target)
        return out, fitted[..., 10:13]
    return _render_fitted_torch(strokes, canvas, target)


def _render_fitted_torch(strokes: torch.Tensor, canvas: torch.Tensor, target: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch path of :func:`render_fitted`, stroke by stroke (autograd; the reference of its kernels)."""
    colours = []
    for s in range(strokes.shape[1]):
        alpha = stroke_coverage(strokes[:, s], canvas.shape[-1]).to(canvas.dtype)
        colour = fitted_colour(alpha, canvas, target.to(canvas.dtype))
        canvas = canvas + (colour[:, :, None, None] - canvas) * alpha[:, None]
        colours.append(colour.detach())
    return canvas, torch.stack(colours, dim=1) if colours else strokes[..., 10:13].detach()


# ------------------------------------------------------------------------ the errors of a painting's prefixes
def render_prefix_losses(strokes: torch.Tensor, targets: torch.Tensor, ends: list[int], weights: list[float],
                         canvas: torch.Tensor | None = None, loss: Callable | None = None,
                         render_group: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = render,
                         background: float = 1.0) -> torch.Tensor:
    """``sum_j weights[j] * loss(painting of the first ends[j] strokes, targets)`` per image, differentiably
    with respect to ``strokes``: the objective of a painting whose prefixes must be good paintings too.

    With ``loss`` None (the mean squared error per image) on float32 CPU tensors, one numba kernel paints
    and measures every prefix and walks back to the gradient (:class:`_NumbaPrefixL2`): a render and a whole-image
    error per prefix, with the copies between them, made a refinement step 2.6x as slow
    (0.58 against 0.22 ms per 64-px canvas of 32 strokes, 6 prefixes). Elsewhere: ``render_group`` (e.g.
    :func:`render` under activation checkpointing) paints each group of strokes onto the last, and ``loss``
    (default: the mean squared error) measures each prefix.

    :param strokes: ``(B, S, 13)`` float in [0, 1].
    :param targets: ``(B, 3, H, W)`` float in [0, 1] (no gradient).
    :param ends: prefix lengths, increasing, in ``1 .. S`` (strokes after the last do not count).
    :param weights: one weight per end.
    :param canvas: ``(B, 3, H, W)`` canvas the strokes start on (no gradient); None: blank, ``background`` grey.
    :param loss: ``(canvas, targets) -> (B,)``, differentiable; None: mean squared error over pixels and channels.
    :param render_group: ``(strokes, canvas) -> canvas`` for the paths other than the kernel.
    :return: ``(B,)``.
    """
    if len(ends) != len(weights) or not ends:
        raise ValueError(f"render_prefix_losses needs one weight per prefix end, got {len(ends)} ends and "
                         f"{len(weights)} weights")
    if sorted(set(ends)) != list(ends) or ends[0] < 1 or ends[-1] > strokes.shape[1]:
        raise ValueError(f"prefix ends must increase within 1..{strokes.shape[1]}, got {list(ends)}")
    if canvas is None:
        canvas = torch.full(targets.shape, float(background), device=targets.device, dtype=torch.float32)
    _check(canvas, strokes)
    if targets.shape != canvas.shape:
        raise ValueError(f"targets must have the canvas's shape {tuple(canvas.shape)}, got {tuple(targets.shape)}")
    if (loss is None and _numba_path(strokes, canvas) and targets.dtype == torch.float32
            and not canvas.requires_grad and not targets.requires_grad):
        with_grad = torch.is_grad_enabled() and strokes.requires_grad
        return _NumbaPrefixL2.apply(strokes, canvas.contiguous(), targets.contiguous(), tuple(ends),
                                    tuple(float(w) for w in weights), with_grad)
    measure = loss if loss is not None else image_l2
    total, first = torch.zeros(strokes.shape[0], device=strokes.device, dtype=canvas.dtype), 0
    for end, weight in zip(ends, weights, strict=True):  # each prefix's canvas on the way to the last
        canvas = render_group(strokes[:, first:end], canvas)
        total, first = total + weight * measure(canvas, targets), end
    return total


def image_l2(canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: ``(B, 3, H, W)`` float in [0, 1] twice -> ``(B,)``."""
    # mse_loss: one fused kernel forward and backward (25% faster than subtract and square under autograd)
    return torch.nn.functional.mse_loss(canvas, target, reduction="none").flatten(1).mean(dim=1)


def _prefix_l2_numpy(canvas: torch.Tensor, strokes: torch.Tensor, targets: torch.Tensor, ends: tuple[int, ...],
                     weights: tuple[float, ...], with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The kernel of :class:`_NumbaPrefixL2`: the losses ``(B,)`` and, ``with_grad``, their gradients with respect
    to the strokes ``(B, S, 13)`` (each image's own loss's)."""
    batch = canvas.shape[0]
    ends_np, weights_np = np.asarray(ends, dtype=np.int64), np.asarray(weights, dtype=np.float64)
    losses = np.zeros(batch, dtype=np.float64)
    grads = torch.zeros(strokes.shape if with_grad else (0, 0, STROKE_DIM), dtype=torch.float32)
    launch(_prefix_l2_range, _prefix_l2_parallel, batch, canvas.detach().numpy(),
           strokes.detach().contiguous().numpy(), targets.detach().numpy(), ends_np, weights_np, losses,
           grads.numpy(), flatten_segments(canvas.shape[-1]))
    return torch.from_numpy(losses).to(torch.float32), grads if with_grad else None


class _NumbaPrefixL2(torch.autograd.Function):
    """:func:`render_prefix_losses` with the mean squared error on float32 CPU tensors, only the strokes
    differentiable. When a gradient will be wanted, the forward kernel takes each image's loss's gradient in the
    same call (it replays its painting backward): a loss is nearly always backpropagated right after it is
    measured, and one call instead of a forward and a backward that repaints saved a fifth of a refinement
    step. The backward scales those gradients by the incoming ``(B,)`` gradient (each image's loss depends on
    its own strokes only)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, strokes: torch.Tensor,  # type: ignore[override]
                canvas: torch.Tensor, targets: torch.Tensor, ends: tuple[int, ...], weights: tuple[float, ...],
                with_grad: bool) -> torch.Tensor:
        losses, grads = _prefix_l2_numpy(canvas, strokes, targets, ends, weights, with_grad)
        if grads is not None:
            ctx.save_for_backward(strokes, grads)
        return losses

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,  # type: ignore[override]
                 grad_losses: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None, None]:
        strokes, grads = ctx.saved_tensors
        grad = grads * grad_losses.to(grads.dtype).view(-1, 1, 1)
        if torch.is_grad_enabled():  # create_graph=True: this gradient must not be differentiated (silently 0)
            grad = _NotTwice.apply(grad, strokes)
        return grad, None, None, None, None, None
