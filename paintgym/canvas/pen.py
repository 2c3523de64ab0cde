"""Pen sequences (sketch-rnn's stroke-3 and stroke-5 formats) and their conversion to and from paintgym strokes.

A **pen sequence** records a drawing as the pen saw it (Ha & Eck 2017, after Graves 2013). In
**stroke-3** format it is an ``(N, 3)`` array, one row per pen point:

=====  ==========  ==================================================================================
index  name        meaning
=====  ==========  ==================================================================================
0, 1   dx, dy      offset of this point from the previous one (the first: from the origin), in the
                   data's units (screen convention: ``y`` grows downwards, as on a paintgym canvas)
2      lifted      1 if the pen leaves the paper after this point (the next point starts a new line),
                   0 if it draws a line to the next point; the last point has 1
=====  ==========  ==================================================================================

The same rows with absolute positions instead of offsets are the *absolute* form (:func:`to_absolute`,
:func:`to_relative`). **stroke-5** ``(dx, dy, p1, p2, p3)`` one-hot codes the pen state: ``p1`` draw
to the next point, ``p2`` lift after this point, ``p3`` the drawing has ended (the rows after the last
point, the padding of a batch, are ``(0, 0, 0, 0, 1)``).

Pen-down runs of points (*polylines*, :func:`polylines`) become paintgym strokes
(:mod:`canvas.strokes`) with :func:`pen_to_strokes`: each polyline is cut into pieces that one
quadratic Bezier fits within ``tolerance`` (a least-squares fit of the control point with the end
points fixed, and Newton refinement of each point's curve parameter; a piece that does not fit is
split at its worst point), and each piece becomes a stroke of constant radius and opacity. A single
point (a dot) becomes a stroke whose three points coincide. The way back, :func:`strokes_to_pen`,
samples points along each visible stroke at (about) equal arc length and lifts the pen between strokes
unless the next one starts where the last ended.

Drawings are placed on the canvas by a :class:`Placement` (``canvas = data * scale + offset``);
:func:`fit_placement` centres a drawing's bounding box with a margin, keeping its aspect ratio.

>>> pen = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 1], [5, -5, 1]])   # an L, then a dot
>>> strokes, placement = pen_to_strokes(pen)                         # (2, 13) float32 in [0, 1]
>>> back = strokes_to_pen(strokes, placement=placement, absolute=True)   # points along the L, the dot
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paintgym.canvas.strokes import MAX_RADIUS, MIN_RADIUS, STROKE_DIM


class PenFormatError(ValueError):
    """A pen sequence is not an ``(N, 3)`` stroke-3 array (or ``(N, 5)`` stroke-5) of finite numbers."""


# ---------------------------------------------------------------- formats


def check_stroke3(sequence: np.ndarray | torch.Tensor, what: str = "pen sequence") -> np.ndarray:
    """``sequence`` as a float64 ``(N, 3)`` array, checked: finite offsets, pen states 0 or 1.

    :raises PenFormatError: saying what is wrong.
    """
    array = np.asarray(sequence.detach().cpu() if isinstance(sequence, torch.Tensor) else sequence)
    if array.ndim != 2 or array.shape[1] != 3:
        raise PenFormatError(f"{what} must be an (N, 3) stroke-3 array (dx, dy, pen lifted), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise PenFormatError(f"{what} must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise PenFormatError(f"{what} holds NaN or inf")
    if len(array) and not np.isin(array[:, 2], (0.0, 1.0)).all():
        raise PenFormatError(f"{what}: the third column (pen lifted) must be 0 or 1")
    return array


def to_absolute(sequence: np.ndarray) -> np.ndarray:
    """Stroke-3 offsets ``(N, 3)`` -> absolute positions ``(N, 3)`` (cumulative sums; pen states kept)."""
    array = check_stroke3(sequence)
    array[:, :2] = np.cumsum(array[:, :2], axis=0)
    return array


def to_relative(points: np.ndarray, origin: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Absolute positions ``(N, 3)`` -> stroke-3 offsets ``(N, 3)``; the first row is measured from ``origin``."""
    array = check_stroke3(points, "absolute pen sequence")
    if len(array):
        array[:, :2] = np.diff(array[:, :2], axis=0, prepend=np.asarray(origin, dtype=np.float64)[None])
    return array


def stroke3_to_stroke5(sequence: np.ndarray, length: int | None = None) -> np.ndarray:
    """Stroke-3 ``(N, 3)`` -> stroke-5 ``(length, 5)`` float32: the ``N`` points, then end rows ``(0, 0, 0, 0, 1)``.

    :param length: rows of the result, at least ``N + 1`` (default ``N + 1``: the points and one end row).
    """
    array = check_stroke3(sequence)
    n = len(array)
    length = n + 1 if length is None else length
    if length < n + 1:
        raise PenFormatError(f"a stroke-5 array of {length} rows cannot hold {n} points and the end row")
    out = np.zeros((length, 5), dtype=np.float32)
    out[:n, :2] = array[:, :2]
    out[:n, 3] = array[:, 2]
    out[:n, 2] = 1.0 - array[:, 2]
    out[n:, 4] = 1.0
    return out


def stroke5_to_stroke3(sequence: np.ndarray | torch.Tensor) -> np.ndarray:
    """Stroke-5 ``(L, 5)`` -> stroke-3 ``(N, 3)`` float64: the rows before the first end row (``p3``
    largest); the last point's pen is lifted."""
    array = np.asarray(sequence.detach().cpu() if isinstance(sequence, torch.Tensor) else sequence, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 5:
        raise PenFormatError(f"a stroke-5 sequence must be (L, 5), got shape {array.shape}")
    state = array[:, 2:5].argmax(axis=1)
    ends = np.flatnonzero(state == 2)
    n = int(ends[0]) if len(ends) else len(array)
    out = np.zeros((n, 3), dtype=np.float64)
    out[:, :2] = array[:n, :2]
    out[:, 2] = state[:n] == 1
    if n:
        out[-1, 2] = 1.0
    return out


def polylines(sequence: np.ndarray, absolute: bool = False) -> list[np.ndarray]:
    """The pen-down runs of a stroke-3 sequence: a list of absolute ``(n_i, 2)`` point arrays (``n_i >= 1``).

    A run starts at the first point and after every lifted point, and ends at a lifted point (or the
    sequence's end).
    """
    array = check_stroke3(sequence) if absolute else to_absolute(sequence)
    if not len(array):
        return []
    ends = np.flatnonzero(array[:, 2] > 0.5)
    cuts = [0, *(ends + 1)]
    if cuts[-1] != len(array):
        cuts.append(len(array))
    return [array[a:b, :2] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


# ---------------------------------------------------------------- placement


@dataclass(frozen=True)
class Placement:
    """Where a drawing sits on the canvas: ``canvas = data * scale + offset`` (canvas units: fractions of the side)."""

    scale: float
    offset: tuple[float, float] = (0.0, 0.0)

    def to_canvas(self, points: np.ndarray) -> np.ndarray:
        """Data positions ``(..., 2)`` -> canvas positions ``(..., 2)``."""
        return np.asarray(points, dtype=np.float64) * self.scale + np.asarray(self.offset)

    def to_data(self, points: np.ndarray) -> np.ndarray:
        """Canvas positions ``(..., 2)`` -> data positions ``(..., 2)``."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.offset)) / self.scale


def fit_placement(points: np.ndarray, margin: float = 0.1) -> Placement:
    """The placement that centres the bounding box of absolute ``points`` ``(N, >= 2)`` on the canvas,
    its longer side spanning ``1 - 2 margin`` of it (aspect ratio kept; a single point sits in the centre)."""
    if not 0.0 <= margin < 0.5:
        raise ValueError(f"margin must lie in [0, 0.5), got {margin}")
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    if not len(xy):
        return Placement(1.0, (0.5, 0.5))
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    side = float((hi - lo).max())
    scale = (1.0 - 2.0 * margin) / side if side > 0 else 1.0
    centre = (lo + hi) / 2.0
    offset = 0.5 - centre * scale
    return Placement(scale, (float(offset[0]), float(offset[1])))


# ---------------------------------------------------------------- Bezier fitting


def bezier_points(control: np.ndarray | torch.Tensor, t: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Points ``(..., n, 2)`` of quadratic Beziers ``control`` ``(..., 3, 2)`` at parameters ``t`` ``(..., n)``
    (numpy arrays or tensors, differentiable in both)."""
    t = t[..., None]
    s = 1.0 - t
    return s * s * control[..., None, 0, :] + 2.0 * s * t * control[..., None, 1, :] + t * t * control[..., None, 2, :]


def _chord_parameters(points: np.ndarray) -> np.ndarray:
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    total = lengths.sum()
    if total <= 0:
        return np.linspace(0.0, 1.0, len(points))
    return np.concatenate([[0.0], np.cumsum(lengths)]) / total


def fit_bezier(points: np.ndarray, iterations: int = 32) -> tuple[np.ndarray, float]:
    """Least-squares quadratic Bezier through ``points`` ``(n, 2)``, ``n >= 1``, with its ends on the first and
    last point.

    The control point minimises ``sum_i |B(t_i) - q_i|^2`` for the current parameters ``t_i`` (first
    chord-length, then refined by a Newton step towards each point's nearest curve parameter, at most
    ``iterations`` times: until no parameter moves by more than 1e-6).

    :return: the control points ``(3, 2)`` (start, control, end) and the largest distance between a
        point and its curve point ``B(t_i)`` (an upper bound of its distance to the curve).
    """
    q = np.asarray(points, dtype=np.float64)
    p0, p2 = q[0], q[-1]
    if len(q) <= 2:
        return np.stack([p0, (p0 + p2) / 2.0, p2]), 0.0
    t = _chord_parameters(q)
    control = np.stack([p0, (p0 + p2) / 2.0, p2])
    converged = False
    for i in range(iterations + 1):
        s = 1.0 - t
        w = 2.0 * s * t
        denominator = float((w * w).sum())
        if denominator > 1e-12:
            residual = q - (s * s)[:, None] * p0 - (t * t)[:, None] * p2
            control[1] = (w[:, None] * residual).sum(axis=0) / denominator
        if i == iterations or converged:
            break
        # Newton on f(t) = (B(t) - q) . B'(t) for each inner point (the ends stay at 0 and 1)
        diff = bezier_points(control, t) - q
        d1 = 2.0 * ((1.0 - t)[:, None] * (control[1] - control[0]) + t[:, None] * (control[2] - control[1]))
        d2 = 2.0 * (control[2] - 2.0 * control[1] + control[0])
        f = (diff * d1).sum(axis=1)
        df = (d1 * d1).sum(axis=1) + (diff * d2).sum(axis=1)
        step = np.where(np.abs(df) > 1e-12, f / np.where(np.abs(df) > 1e-12, df, 1.0), 0.0)
        moved = np.clip(t - step, 0.0, 1.0)
        moved[0], moved[-1] = 0.0, 1.0
        moved = np.maximum.accumulate(moved)  # keep the order of the points along the curve
        converged = bool(np.abs(moved - t).max() < 1e-6)  # then one more solve, for these parameters
        t = moved
    error = float(np.linalg.norm(bezier_points(control, t) - q, axis=1).max())
    return control, error


def _densify(points: np.ndarray, step: float, most: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Points along the polyline ``points`` ``(n, 2)``: its vertices and up to ``most - 1`` more on each
    segment, about ``step`` apart; returns them ``(m, 2)`` and the index of each vertex among them ``(n,)``."""
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    parts = np.clip(np.ceil(lengths / step), 1, most).astype(np.int64)
    dense = [points[:1]]
    for i, k in enumerate(parts):
        u = np.arange(1, k + 1)[:, None] / k
        dense.append(points[i] + u * (points[i + 1] - points[i]))
    return np.concatenate(dense), np.concatenate([[0], np.cumsum(parts)])


def fit_polyline(points: np.ndarray, tolerance: float, max_points: int | None = None) -> list[np.ndarray]:
    """Quadratic Bezier pieces ``[(3, 2), ...]`` that follow the polyline ``points`` ``(n, 2)`` within ``tolerance``.

    Each piece is fitted (:func:`fit_bezier`) to its vertices and to points along its segments (a
    quarter of ``tolerance`` apart, at most 8 per segment), so that it follows the lines between the
    pen points, not only the points; its error is the larger of the points' distance to the curve and
    the curve's distance to the points (no excursion between them). A piece that errs by more than
    ``tolerance``, or that holds
    more than ``max_points`` vertices, is split at its worst-fitting inner vertex (the middle one for
    ``max_points``), the two halves sharing it, and each half is fitted again. Two vertices always fit
    (a straight line); one vertex is a dot (three equal points).
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    if max_points is not None and max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    q = np.asarray(points, dtype=np.float64)
    if len(q) == 1:
        return [np.repeat(q, 3, axis=0)]
    pieces: list[np.ndarray] = []
    stack = [(0, len(q))]
    while stack:
        a, b = stack.pop()
        part = q[a:b]
        if len(part) <= 2:
            pieces.append(np.stack([part[0], (part[0] + part[-1]) / 2.0, part[-1]]))
            continue
        control, error = fit_bezier(part)  # the vertices alone first: cheap, and rules out most misfits
        if error <= tolerance:
            dense, _ = _densify(part, tolerance / 4.0)
            control, error = fit_bezier(dense)
        if error <= tolerance:  # the points are near the curve; is the curve near the points (no excursion)?
            curve = bezier_points(control, np.linspace(0.0, 1.0, 2 * len(dense) + 1))
            error = max(error, float(np.linalg.norm(curve[:, None] - dense[None], axis=2).min(axis=1).max()))
        too_long = max_points is not None and len(part) > max_points
        if error <= tolerance and not too_long:
            pieces.append(control)
            continue
        if too_long and error <= tolerance:
            split = len(part) // 2
        else:  # the inner vertex farthest from the fitted curve: the corner, usually
            curve = bezier_points(control, np.linspace(0.0, 1.0, 129))
            distance = np.linalg.norm(part[1:-1, None] - curve[None], axis=2).min(axis=1)
            split = int(np.argmax(distance)) + 1
        stack.append((a + split, b))  # popped after the first half: pieces stay in drawing order
        stack.append((a, a + split + 1))
    return pieces


def radius_parameter(radius: float) -> float:
    """The stroke parameter ``r`` in [0, 1] of a brush radius given as a fraction of the canvas side."""
    return float(np.clip((radius - MIN_RADIUS) / (MAX_RADIUS - MIN_RADIUS), 0.0, 1.0))


def pen_to_strokes(sequence: np.ndarray, absolute: bool = False, placement: Placement | None = None,
                   margin: float = 0.1, tolerance: float = 0.008, max_points: int | None = None,
                   radius: float = 0.012, opacity: float = 1.0,
                   colour: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, Placement]:
    """Fit paintgym strokes to one pen sequence.

    :param sequence: ``(N, 3)`` stroke-3, offsets (or absolute positions with ``absolute=True``).
    :param placement: data -> canvas mapping; default :func:`fit_placement` with ``margin``.
    :param tolerance: largest distance between a pen point and its fitted stroke, as a fraction of the
        canvas side (0.008: half a pixel at 64x64).
    :param max_points: at most this many pen points per stroke (None: as many as one curve fits).
    :param radius: brush radius of every stroke, as a fraction of the canvas side (0.012: 0.8 px at 64x64).
    :param opacity: opacity of every stroke, in [0, 1].
    :param colour: RGB in [0, 1].
    :return: strokes ``(K, 13)`` float32 in [0, 1] (layout of :mod:`canvas.strokes`; points outside the
        canvas are clipped to it), in drawing order, and the placement used.
    """
    points = check_stroke3(sequence) if absolute else to_absolute(sequence)
    placement = fit_placement(points, margin) if placement is None else placement
    r = radius_parameter(radius)
    rows = []
    for line in polylines(points, absolute=True):
        for control in fit_polyline(placement.to_canvas(line), tolerance, max_points):
            rows.append([*control.reshape(-1), r, r, opacity, opacity, *colour])
    strokes = np.asarray(rows, dtype=np.float64).reshape(-1, STROKE_DIM)
    return np.clip(strokes, 0.0, 1.0).astype(np.float32), placement


def pen_to_stroke_batch(sequences: list[np.ndarray], absolute: bool = False, margin: float = 0.1,
                        **options: float) -> tuple[torch.Tensor, list[Placement]]:
    """:func:`pen_to_strokes` of several drawings, each placed by its own bounding box, as one batch.

    :return: strokes ``(B, K, 13)`` float32 (``K`` the most any drawing needs; the others are padded with
        invisible strokes, opacity 0, as unfinished episodes are) and each drawing's placement.
    """
    fitted = [pen_to_strokes(s, absolute=absolute, margin=margin, **options) for s in sequences]
    k = max([len(strokes) for strokes, _ in fitted], default=0)
    batch = torch.zeros(len(sequences), k, STROKE_DIM)
    for i, (strokes, _) in enumerate(fitted):
        batch[i, :len(strokes)] = torch.from_numpy(strokes)
    return batch, [placement for _, placement in fitted]


# ---------------------------------------------------------------- strokes -> pen


def stroke_lengths(strokes: np.ndarray | torch.Tensor, samples: int = 32) -> np.ndarray | torch.Tensor:
    """Arc lengths ``(...,)`` of strokes ``(..., 13)``, in canvas units (from a ``samples``-segment polyline);
    a numpy array for a numpy input, else a tensor (differentiable)."""
    array = not isinstance(strokes, torch.Tensor)
    x = torch.as_tensor(np.asarray(strokes, dtype=np.float64)) if array else strokes
    curve = bezier_points(x[..., :6].unflatten(-1, (3, 2)), torch.linspace(0.0, 1.0, samples + 1, dtype=x.dtype,
                                                                       device=x.device))
    lengths = torch.linalg.vector_norm(curve.diff(dim=-2), dim=-1).sum(-1)
    return lengths.numpy() if array else lengths


def sample_strokes(strokes: torch.Tensor, counts: int | torch.Tensor, dense: int = 64) -> torch.Tensor:
    """Points ``(..., P, 2)`` along strokes ``(..., 13)`` at equal arc length, both ends included.

    Stroke ``k`` gets ``counts[k] >= 2`` points (an int: the same for all; ``P`` the most), the rest of its
    ``P`` rows repeat its end. The arc length is measured on a polyline of ``dense`` segments and the
    curve parameter of each point interpolated linearly in it; the points are differentiable in the stroke's
    control points, both through the curve and through their parameters (exactly, except where a point
    crosses from one segment of the polyline to the next). A stroke of no length gives its start point.
    """
    counts = torch.as_tensor(counts, device=strokes.device).expand(strokes.shape[:-1])
    if counts.numel() and int(counts.min()) < 2:
        raise ValueError(f"each stroke needs at least 2 points, got counts down to {int(counts.min())}")
    most = int(counts.max()) if counts.numel() else 2
    dtype = strokes.dtype
    control = strokes[..., :6].unflatten(-1, (3, 2))
    grid = torch.linspace(0.0, 1.0, dense + 1, dtype=dtype, device=strokes.device)
    path = bezier_points(control, grid)  # (..., dense + 1, 2)
    arc = torch.cat([torch.zeros_like(path[..., :1, 0]),
                     torch.linalg.vector_norm(path.diff(dim=-2), dim=-1).cumsum(-1)], dim=-1)
    j = torch.arange(most, device=strokes.device, dtype=dtype)
    wanted = (j / (counts[..., None] - 1).to(dtype)).clamp(max=1.0) * arc[..., -1:]  # (..., P) arc lengths
    with torch.no_grad():  # which segment of the polyline each point falls in: a piecewise-constant choice
        right = torch.searchsorted(arc.detach().contiguous(), wanted.detach().contiguous(), right=True)
        right = right.clamp(1, dense)
    a, b = arc.gather(-1, right - 1), arc.gather(-1, right)
    span = torch.where(b > a, b - a, torch.ones_like(b))  # no 0/0 (and no NaN gradient) in a flat segment
    frac = torch.where(b > a, (wanted - a) / span, torch.zeros_like(wanted)).clamp(0.0, 1.0)
    t = ((right - 1).to(dtype) + frac) / dense
    t = torch.where(arc[..., -1:] > 0, t, torch.zeros_like(t))
    return bezier_points(control, t)


def sample_stroke(stroke: np.ndarray, points: int) -> np.ndarray:
    """``points >= 2`` points ``(points, 2)`` along one stroke ``(13,)`` at equal arc length, both ends included
    (:func:`sample_strokes` of one stroke, float64)."""
    return sample_strokes(torch.as_tensor(np.asarray(stroke, dtype=np.float64)), points).numpy()


def pen_points(strokes: torch.Tensor, counts: int | torch.Tensor, min_opacity: float = 0.0,
               join: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pen path that draws a batch of paintings' strokes, differentiable in the strokes' control points.

    Each visible stroke (larger opacity above ``min_opacity``) of length above 1e-9 gets ``counts`` points
    (:func:`sample_strokes`; an int or ``(B, K)``), a shorter one a single point (a dot); the pen is lifted
    after each stroke's last point, unless the next visible stroke starts within ``join`` (canvas units)
    of it: then the line continues without repeating the point (a dot there adds nothing). Which points
    there are is decided without gradient (a piecewise-constant choice); where they lie is differentiable.

    :param strokes: ``(B, K, 13)`` float (layout of :mod:`canvas.strokes`).
    :return: ``points`` ``(B, N, 2)`` absolute canvas positions in drawing order (``N`` the longest length,
        at least 1; rows past a painting's length repeat its last point, or are 0 for an empty painting),
        ``lifted`` ``(B, N)`` bool (the pen leaves the paper after the point; False past the length),
        ``stroke`` ``(B, N)`` int64 (the stroke each point lies on) and ``lengths`` ``(B,)`` int64.
    """
    if strokes.dim() != 3 or strokes.shape[-1] != STROKE_DIM:
        raise ValueError(f"strokes must have shape (B, K, {STROKE_DIM}), got {tuple(strokes.shape)}")
    batch, k = strokes.shape[:2]
    device = strokes.device
    if not k:  # no strokes: one empty row per painting
        return (strokes.new_zeros(batch, 1, 2), torch.zeros(batch, 1, dtype=torch.bool, device=device),
                torch.zeros(batch, 1, dtype=torch.int64, device=device), torch.zeros(batch, dtype=torch.int64,
                                                                                    device=device))
    with torch.no_grad():
        visible = strokes[..., 8:10].amax(-1) > min_opacity
        dot = stroke_lengths(strokes.detach()) <= 1e-9
        counts = torch.as_tensor(counts, device=device).expand(batch, k)
        counts = torch.where(dot, torch.full_like(counts, 2), counts)
    path = sample_strokes(strokes, counts)  # (B, K, P, 2)
    most = path.shape[2]
    with torch.no_grad():
        j = torch.arange(most, device=device)
        keep = visible[..., None] & (j < torch.where(dot, torch.ones_like(counts), counts)[..., None])
        last = torch.where(dot, torch.zeros_like(counts), counts - 1)  # index of each stroke's end point
        ends = path.detach().gather(2, last[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]  # (B, K, 2)
        # the last visible stroke before each stroke, and whether this one continues its line
        order = torch.where(visible, torch.arange(k, device=device), torch.full_like(counts, -1))
        previous = torch.cat([torch.full_like(order[:, :1], -1), order[:, :-1].cummax(1).values], dim=1)
        before = ends.gather(1, previous.clamp_min(0)[..., None].expand(-1, -1, 2))
        joins = visible & (previous >= 0) & (torch.linalg.vector_norm(path.detach()[:, :, 0] - before, dim=-1) <= join)
        keep[..., 0] &= ~joins
        # the pen lifts after a stroke's end unless a later visible stroke with points left continues from it
        carries = joins & keep.any(-1)
        for_row = torch.zeros(batch, k + 1, dtype=torch.bool, device=device)
        for_row.scatter_(1, torch.where(carries, previous, torch.full_like(previous, k)), carries)
        continued = for_row[:, :k]
        lifted = torch.zeros(batch, k, most, dtype=torch.bool, device=device)
        lifted.scatter_(2, last[..., None], (visible & ~continued)[..., None])
        flat_keep = keep.flatten(1)
        lengths = flat_keep.sum(1)
        rank = torch.argsort((~flat_keep).to(torch.int8), dim=1, stable=True)  # kept points first, in order
        n = max(int(lengths.max()) if batch else 0, 1)  # one row at least (all 0 when nothing is painted)
        rank = rank[:, :n]
        valid = torch.arange(n, device=device)[None] < lengths[:, None]
        # past the length: the last kept point (or row 0 of an empty painting)
        rank = torch.where(valid, rank, rank.gather(1, (lengths - 1).clamp_min(0)[:, None]).expand(-1, n))
    points = path.flatten(1, 2).gather(1, rank[..., None].expand(-1, -1, 2))
    points = torch.where((lengths > 0)[:, None, None], points, torch.zeros_like(points))
    lifted = lifted.flatten(1).gather(1, rank) & valid
    return points, lifted, rank // most, lengths


def simplify(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: the indices ``(m,)`` of the points of the polyline ``points`` ``(n, 2)`` to keep so
    that every dropped point lies within ``epsilon`` of the simplified line (the ends are always kept).

    Human-drawing datasets are simplified so (Quick Draw: ``epsilon = 2`` in 256-pixel drawings), so a pen
    path meant to look like their drawings should be too: straight runs become one offset.
    """
    q = np.asarray(points, dtype=np.float64)
    n = len(q)
    if n <= 2 or epsilon <= 0:
        return np.arange(n)
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        inner = q[a + 1:b]
        chord = q[b] - q[a]
        length = np.hypot(*chord)
        if length > 0:
            distance = np.abs(chord[0] * (inner[:, 1] - q[a, 1]) - chord[1] * (inner[:, 0] - q[a, 0])) / length
        else:
            distance = np.linalg.norm(inner - q[a], axis=1)
        k = int(np.argmax(distance))
        if distance[k] > epsilon:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return np.flatnonzero(keep)


def strokes_to_pen(strokes: np.ndarray | torch.Tensor, spacing: float | None = None, points: int = 8,
                   placement: Placement | None = None, absolute: bool = False, min_opacity: float = 0.0,
                   join: float = 1e-6, epsilon: float = 0.0) -> np.ndarray:
    """The pen path that draws strokes: points sampled along each visible stroke, in order (:func:`pen_points`
    of one painting, then simplified).

    :param strokes: ``(K, 13)`` float in [0, 1] (one painting's strokes, layout of :mod:`canvas.strokes`).
    :param spacing: distance between sampled points, in canvas units (each stroke gets
        ``max(1, ceil(length / spacing))`` pieces); None: ``points`` points per stroke.
    :param points: points per stroke when ``spacing`` is None (at least 2).
    :param placement: canvas -> data mapping of the result (:meth:`Placement.to_data`); default: data = canvas.
    :param absolute: return absolute positions instead of offsets.
    :param min_opacity: strokes whose opacity (larger end) is at most this are skipped (invisible).
    :param join: a stroke starting within this distance (canvas units) of the previous stroke's end
        continues its line (no pen lift, no repeated point; a dot there adds nothing).
    :param epsilon: simplify the points each stroke adds to the path (:func:`simplify`, canvas units; 0: keep
        every sampled point).
    :return: ``(N, 3)`` float64 stroke-3; with offsets, the first row is ``(0, 0)`` (the pen starts at
        the first point). An empty ``(0, 3)`` array if no stroke is visible.
    """
    array = np.asarray(strokes.detach().cpu() if isinstance(strokes, torch.Tensor) else strokes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != STROKE_DIM:
        raise ValueError(f"strokes must have shape (K, {STROKE_DIM}), got {array.shape}")
    if spacing is None and points < 2:
        raise ValueError(f"points must be at least 2, got {points}")
    if spacing is not None and not spacing > 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    x = torch.from_numpy(array)[None]
    counts: int | torch.Tensor = points
    if spacing is not None:
        counts = (stroke_lengths(x) / spacing).ceil().clamp_min(1).long() + 1
    xy, lifted, stroke, lengths = pen_points(x, counts, min_opacity=min_opacity, join=join)
    n = int(lengths[0])
    if not n:
        return np.zeros((0, 3))
    out = np.zeros((n, 3))
    out[:, :2] = xy[0, :n].numpy()
    out[:, 2] = lifted[0, :n].numpy()
    if epsilon > 0:  # each stroke's points (a line continued by a stroke keeps the point where they meet)
        cuts = np.flatnonzero(np.diff(stroke[0, :n].numpy())) + 1
        out = np.concatenate([block[simplify(block[:, :2], epsilon)] for block in np.split(out, cuts)])
    if placement is not None:
        out[:, :2] = placement.to_data(out[:, :2])
    return out if absolute else to_relative(out, origin=tuple(out[0, :2]))


def sequence_length(sequence: np.ndarray) -> float:
    """Total pen-down length of a stroke-3 sequence (data units)."""
    return float(sum(np.linalg.norm(np.diff(line, axis=0), axis=1).sum() for line in polylines(sequence)))


def _point_segment_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance ``(n,)`` of each point ``(n, 2)`` to the polyline ``(m, 2)`` (its segments; a dot if ``m = 1``)."""
    if len(polyline) == 1:
        return np.linalg.norm(points - polyline[0], axis=1)
    a, b = polyline[:-1], polyline[1:]
    d = b - a
    length2 = np.maximum((d * d).sum(axis=1), 1e-300)
    h = np.clip(((points[:, None] - a[None]) * d[None]).sum(axis=2) / length2[None], 0.0, 1.0)
    nearest = a[None] + h[..., None] * d[None]
    return np.linalg.norm(points[:, None] - nearest, axis=2).min(axis=1)


def polyline_distance(a: np.ndarray, b: np.ndarray, samples: int = 8) -> float:
    """Symmetric Hausdorff distance between two polylines ``(n, >= 2)`` and ``(m, >= 2)`` (absolute
    positions; the lines between the points count, not only the points), measured on ``samples`` points
    per segment; ``inf`` if one is empty."""
    if not len(a) or not len(b):
        return math.inf
    a, b = np.asarray(a, dtype=np.float64)[:, :2], np.asarray(b, dtype=np.float64)[:, :2]

    def along(line: np.ndarray) -> np.ndarray:
        if len(line) == 1:
            return line
        u = np.linspace(0.0, 1.0, samples + 1)[:-1, None, None]
        inner = (line[:-1][None] + u * (line[1:] - line[:-1])[None]).transpose(1, 0, 2).reshape(-1, 2)
        return np.concatenate([inner, line[-1:]])

    return float(max(_point_segment_distance(along(a), b).max(), _point_segment_distance(along(b), a).max()))


def render_pen(sequences: list[np.ndarray], size: int = 64, absolute: bool = False, margin: float = 0.1,
               background: float = 1.0, **options: float) -> torch.Tensor:
    """Pen drawings painted by paintgym's renderer: ``(B, 3, size, size)`` float32 in [0, 1] on the CPU.

    Each drawing is fitted to strokes (:func:`pen_to_strokes`, placed by its own bounding box; ``options``
    go there: ``radius``, ``tolerance``, ``colour``...) and painted on a blank canvas of grey ``background``.
    """
    from paintgym.canvas.render import render  # the renderer: imported on use (it compiles numba kernels)

    strokes, _ = pen_to_stroke_batch(sequences, absolute=absolute, margin=margin, **options)
    return render(strokes, size=size, background=background)
