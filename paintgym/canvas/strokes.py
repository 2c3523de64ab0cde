"""The stroke model: the 13-number layout, and how actions map onto it.

This module is the one place that defines what a stroke is. Every other part of paintgym (renderer,
environment, export, agents) goes through it.

A stroke is a quadratic Bezier curve swept by a round brush whose radius and opacity vary linearly
along the curve, filled with one RGB colour. It is stored as 13 floats, all in ``[0, 1]`` and
independent of the canvas resolution:

=====  ========  ==================================================================================
index  name      meaning
=====  ========  ==================================================================================
0, 1   x0, y0    start point, as a fraction of the canvas width / height (0 = left / top edge)
2, 3   x1, y1    control point of the quadratic Bezier curve (same units)
4, 5   x2, y2    end point (same units)
6      r0        brush radius at the start: :func:`radius_fraction` ``= MIN_RADIUS + r0 * (MAX_RADIUS -
                 MIN_RADIUS)`` of the canvas side, so ``r0 = 0`` is a hairline and ``r0 = 1`` a quarter of it
7      r1        brush radius at the end (same mapping); the radius is interpolated along the curve
8      a0        opacity at the start (0 = invisible, 1 = opaque)
9      a1        opacity at the end; interpolated along the curve like the radius
10-12  R, G, B   colour
=====  ========  ==================================================================================

Action spaces map onto this layout in :func:`decode_continuous` and :func:`decode_discrete`:

* ``continuous``: a ``Box(-1, 1, (S * 13,))``; stroke parameter ``p = clip((action + 1) / 2, 0, 1)``.
* ``discrete``: a ``MultiDiscrete`` with 9 components per stroke, in the style of SPIRAL:
  ``x0 y0 x1 y1 x2 y2`` as cells of a ``grid`` x ``grid`` lattice (the point is the cell centre),
  a brush-size level (both radii), an opacity level (both opacities) and a colour index into a palette.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from paintgym.canvas.fastpath import HAVE_NUMBA, numba

STROKE_DIM = 13
"""Numbers per stroke."""

FIELDS = ("x0", "y0", "x1", "y1", "x2", "y2", "r0", "r1", "a0", "a1", "R", "G", "B")
"""Names of the 13 stroke numbers, in order."""

MIN_RADIUS = 1.0 / 128.0
"""Brush radius at ``r = 0``, as a fraction of the canvas side (half a pixel at 64x64)."""
MAX_RADIUS = 0.25
"""Brush radius at ``r = 1``, as a fraction of the canvas side (as Learning to Paint's largest brush)."""

FLATTEN_TOLERANCE_PX = 0.25
"""Largest distance, in pixels, between the Bezier curve and the polyline that the renderer draws."""

DISCRETE_COMPONENTS = 9
"""Components of the MultiDiscrete action per stroke: 6 coordinates, size, opacity, colour."""

# A 16-colour palette for the discrete action space: black, greys, white and 12 hues.
DEFAULT_PALETTE = np.array(
    [
        [0.00, 0.00, 0.00], [0.33, 0.33, 0.33], [0.67, 0.67, 0.67], [1.00, 1.00, 1.00],
        [0.90, 0.10, 0.10], [0.95, 0.50, 0.10], [0.98, 0.85, 0.15], [0.55, 0.80, 0.15],
        [0.10, 0.60, 0.20], [0.10, 0.70, 0.70], [0.15, 0.45, 0.90], [0.10, 0.15, 0.55],
        [0.50, 0.20, 0.75], [0.90, 0.35, 0.70], [0.55, 0.35, 0.20], [0.95, 0.85, 0.70],
    ],
    dtype=np.float32,
)  # fmt: skip


def radius_fraction(r: Any) -> Any:
    """Map the radius parameter ``r`` in [0, 1] (``r0``, ``r1``) to a radius as a fraction of the canvas side.

    The one definition of the brush radius: the renderer (torch and numba) and the SVG export use it.
    ``r`` may be a number, a numpy array or a torch tensor; the result keeps its precision (the numba
    kernels compile this function with float32 constants, see ``canvas.render._jit_in_float32``).
    """
    return MIN_RADIUS + r * (MAX_RADIUS - MIN_RADIUS)


def decode_continuous(action: torch.Tensor | np.ndarray, strokes_per_step: int, bounds: bool = False) -> Any:
    """Map continuous actions to strokes: stroke parameter ``p = clip((a + 1) / 2, 0, 1)``, in float32.

    A float32 or float64 numpy array is decoded on the CPU by a numba kernel in one pass (which finds the
    bounds too); anything else by torch on the action's device.

    :param action: ``(B, S * 13)`` float in [-1, 1], a torch tensor or a numpy array.
    :param strokes_per_step: S.
    :param bounds: also return the smallest and the largest component, and whether all are finite (None:
        not checked; a NaN fails any range test on the bounds, so check finiteness when that fails).
    :return: ``(B, S, 13)`` float32 in [0, 1] (on the CPU for a numpy array); with ``bounds``,
        ``(strokes, lowest, highest, finite)``.
    """
    if isinstance(action, np.ndarray) and HAVE_NUMBA and action.dtype in (np.float32, np.float64):
        strokes = np.empty((action.shape[0], strokes_per_step, STROKE_DIM), np.float32)
        lowest, highest, finite = _decode_numpy(action, strokes.reshape(action.shape[0], -1))
        strokes = torch.from_numpy(strokes)
    else:
        tensor = torch.as_tensor(action)
        strokes = ((tensor.to(torch.float32) + 1.0) * 0.5).clamp_(0.0, 1.0).view(-1, strokes_per_step, STROKE_DIM)
        if not bounds:
            return strokes
        lowest, highest = torch.aminmax(tensor)
        finite = None
    return (strokes, lowest, highest, finite) if bounds else strokes


if HAVE_NUMBA:

    @numba.njit(cache=True, nogil=True)
    def _decode_numpy(actions, out):  # pragma: no cover - compiled
        """:func:`decode_continuous` of ``actions`` ``(B, N)`` into ``out`` ``(B, N)`` float32, in one pass that
        also returns the smallest and largest action and whether all are finite (NaN fails both bounds)."""
        lowest, highest, finite = np.inf, -np.inf, True
        one, half, zero = np.float32(1.0), np.float32(0.5), np.float32(0.0)
        for b in range(actions.shape[0]):
            for i in range(actions.shape[1]):
                value = actions[b, i]
                if not np.isfinite(value):
                    finite = False
                lowest, highest = min(lowest, value), max(highest, value)
                out[b, i] = min(max((np.float32(value) + one) * half, zero), one)
        return lowest, highest, finite


def discrete_nvec(strokes_per_step: int, grid: int, sizes: int, opacities: int, colours: int) -> np.ndarray:
    """The ``nvec`` of the MultiDiscrete action space: ``(S * 9,)`` int64."""
    one = [grid] * 6 + [sizes, opacities, colours]
    return np.array(one * strokes_per_step, dtype=np.int64)


def decode_discrete(
    action: torch.Tensor, strokes_per_step: int, grid: int, sizes: int, opacities: int, palette: torch.Tensor
) -> torch.Tensor:
    """Map MultiDiscrete actions to strokes.

    :param action: ``(B, S * 9)`` integer, component ``k`` in ``[0, nvec[k])``.
    :param palette: ``(C, 3)`` float in [0, 1] on the action's device.
    :return: ``(B, S, 13)`` float32 in [0, 1].
    """
    a = action.view(-1, strokes_per_step, DISCRETE_COMPONENTS).long()
    points = (a[..., :6].to(torch.float32) + 0.5) / grid  # cell centres
    size = a[..., 6:7].to(torch.float32) / max(sizes - 1, 1)
    opacity = (a[..., 7:8].to(torch.float32) + 1.0) / opacities
    colour = palette[a[..., 8]]
    return torch.cat([points, size, size, opacity, opacity, colour], dim=-1)


def flatten_segments(canvas_size: int) -> int:
    """Number of polyline segments that keeps any stroke within ``FLATTEN_TOLERANCE_PX`` of its curve.

    A quadratic Bezier split into ``n`` equal parameter steps deviates from its chords by at most
    ``|P0 - 2 P1 + P2| / (8 n^2)``; the second difference is at most ``2 * sqrt(2)`` canvas sides.
    """
    worst = 2.0 * math.sqrt(2.0) * canvas_size
    return max(1, math.ceil(math.sqrt(worst / (8.0 * FLATTEN_TOLERANCE_PX))))


def validate_strokes(strokes: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``strokes`` is a finite ``(B, S, 13)`` tensor."""
    if strokes.dim() != 3 or strokes.shape[-1] != STROKE_DIM:
        raise ValueError(f"strokes must have shape (B, S, {STROKE_DIM}), got {tuple(strokes.shape)}")
    if not torch.isfinite(strokes).all():
        raise ValueError("strokes contain NaN or inf; every stroke number must be a finite value in [0, 1]")
