"""Painting videos: stroke histories re-rendered as frames, each stroke drawn progressively along its curve.

Strokes are resolution-free (:mod:`canvas.strokes`), so a painting made on a 32x32 canvas is
re-rendered here at any ``size``. Frame ``0`` is the blank canvas; then each stroke ``k`` takes
``frames_per_stroke`` frames ``u = 1/F, 2/F, ..., 1`` showing its first fraction ``u``, and the frame
at ``u = 1`` is exactly the canvas holding strokes ``0..k``; then ``hold_frames`` copies of the
final painting. So a history of ``K`` strokes makes ``1 + K * F + hold_frames`` frames
(:func:`count_frames`), where ``K`` leaves out trailing strokes that are invisible in every painting
(the zero padding of unfinished episodes).

The first fraction ``u`` of a quadratic Bezier stroke ``P0, P1, P2`` is again a quadratic Bezier
(de Casteljau's split): ``P0, lerp(P0, P1, u), B(u)``, with the end radius and opacity interpolated
at ``u``. Partial strokes are drawn on a copy of one persistent canvas batch that holds the
completed strokes, all paintings at once through the batched renderer (:func:`canvas.render.paint_`:
numba on the CPU, torch on other devices); the loop runs over time only.

Each frame shows the paintings as tiles in a grid (:func:`canvas.video.grid`), each optionally beside
its target and over a caption band (e.g. the running reward terms, :func:`reward_captions`).
:func:`write_painting_video` writes them as MP4, GIF or PNG frames through
:func:`canvas.video.write_video`, streaming (no frame array is held in memory).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from paintgym.canvas.images import to_float, to_uint8
from paintgym.canvas.render import paint_
from paintgym.canvas.strokes import STROKE_DIM, validate_strokes
from paintgym.canvas.video import grid, write_video

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def partial_strokes(strokes: torch.Tensor, u: float) -> torch.Tensor:
    """The first fraction ``u`` of each stroke, as strokes.

    :param strokes: ``(M, 13)`` float in [0, 1] (layout of :mod:`canvas.strokes`).
    :param u: fraction of the curve's parameter range in [0, 1]; ``u = 1`` returns the strokes unchanged.
    :return: ``(M, 13)``: start point ``P0``, control point ``(1-u) P0 + u P1``, end point ``B(u)``,
        radius and opacity from their start values to their values at ``u``, the same colour.
    """
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"u must lie in [0, 1], got {u}")
    v = 1.0 - u
    p0, p1, p2 = strokes[:, 0:2], strokes[:, 2:4], strokes[:, 4:6]
    control = v * p0 + u * p1  # weights (0, 1) at u = 1, so the full stroke comes back exactly
    end = (v * v) * p0 + (2.0 * u * v) * p1 + (u * u) * p2
    r0, a0 = strokes[:, 6:7], strokes[:, 8:9]
    r_end = v * r0 + u * strokes[:, 7:8]
    a_end = v * a0 + u * strokes[:, 9:10]
    return torch.cat([p0, control, end, r0, r_end, a0, a_end, strokes[:, 10:13]], dim=1)


def drawn_strokes(strokes: np.ndarray | torch.Tensor) -> int:
    """How many strokes a video draws: up to the last one visible in any painting.

    :param strokes: ``(N, K, 13)``; a stroke is invisible when its opacity is 0 at both ends.
    """
    visible = (strokes[..., 8] > 0) | (strokes[..., 9] > 0)
    columns = np.flatnonzero(np.asarray(visible.cpu() if isinstance(visible, torch.Tensor) else visible).any(axis=0))
    return int(columns[-1]) + 1 if len(columns) else 0


def count_frames(num_strokes: int, frames_per_stroke: int, hold_frames: int = 0) -> int:
    """Frames of a video of ``num_strokes`` drawn strokes: the blank canvas, F per stroke, the hold."""
    return 1 + num_strokes * frames_per_stroke + hold_frames


def default_frames_per_stroke(num_strokes: int, fps: int, seconds: float = 6.0, most: int = 12) -> int:
    """Frames per stroke that make the painting last about ``seconds`` at ``fps`` (1 to ``most``)."""
    if num_strokes < 1:
        return 1
    return int(min(most, max(1, round(seconds * fps / num_strokes))))


def reward_captions(step_rewards: np.ndarray, step_terms: Mapping[str, np.ndarray],
                    strokes_per_step: int) -> list[list[str]]:
    """Captions with the running episode return and reward terms, one per number of completed strokes.

    :param step_rewards: ``(N, T)`` the (weighted) reward of each step.
    :param step_terms: ``{key: (N, T)}`` each reward term per step (unweighted, as ``info["reward_terms"]``).
    :param strokes_per_step: S; step ``t`` is complete once stroke ``(t + 1) * S - 1`` is.
    :return: N lists of ``T * S + 1`` strings; entry ``k`` is shown while ``k`` strokes are complete.
    """
    step_rewards = np.asarray(step_rewards, dtype=np.float64)
    if step_rewards.ndim != 2:
        raise ValueError(f"step_rewards must be (N, T), got shape {step_rewards.shape}")
    n, steps = step_rewards.shape
    running = {"return": np.cumsum(step_rewards, axis=1)}
    for key, values in step_terms.items():
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (n, steps):
            raise ValueError(f"reward term {key!r} has shape {values.shape}, expected {(n, steps)}")
        running[key] = np.cumsum(values, axis=1)
    if len(step_terms) == 1:  # a single term is the return up to its weight: show it alone
        running.pop("return")
    captions = []
    for i in range(n):  # N x T short strings, once per video
        by_step = [f"step 0/{steps}"]
        for t in range(steps):
            terms = (f"{key} {values[i, t]:+.3g}" for key, values in running.items())
            by_step.append("  ".join([f"step {t + 1}/{steps}", *terms]))
        captions.append([by_step[k // strokes_per_step] for k in range(steps * strokes_per_step + 1)])
    return captions


def _caption_bands(captions: Sequence[Sequence[str]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render each distinct caption once as a white band of ``width`` pixels with black text.

    :return: bands ``(U, band_h, width, 3)`` uint8 and, per painting and caption entry, the index of
        its band ``(N, K + 1)`` int64. Long captions wrap at double spaces; every band has the height
        of the longest.
    """
    scale = min(0.8, max(0.3, width / 560))
    margin = max(2, round(4 * scale))
    (_, text_h), baseline = cv2.getTextSize("Ag", _FONT, scale, 1)
    line_h = text_h + baseline + margin
    unique = sorted({text for row in captions for text in row})
    wrapped = []
    for text in unique:
        lines: list[str] = []
        for item in text.split("  "):
            joined = f"{lines[-1]}  {item}" if lines else item
            if lines and cv2.getTextSize(joined, _FONT, scale, 1)[0][0] <= width - 2 * margin:
                lines[-1] = joined
            else:
                lines.append(item)
        wrapped.append(lines)
    height = max(len(lines) for lines in wrapped) * line_h + margin
    bands = np.full((len(unique), height, width, 3), 255, dtype=np.uint8)
    for band, lines in zip(bands, wrapped, strict=True):
        for j, line in enumerate(lines):
            cv2.putText(band, line, (margin, margin + j * line_h + text_h), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    lookup = {text: i for i, text in enumerate(unique)}
    index = np.array([[lookup[text] for text in row] for row in captions], dtype=np.int64)
    return bands, index


def _resize_targets(targets: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """``(N, h, w, 3)`` uint8 -> ``(N, size, size, 3)`` uint8 (bilinear, antialiased when shrinking)."""
    images = to_float(targets if isinstance(targets, torch.Tensor) else np.asarray(targets), "cpu")
    if images.shape[-2:] != (size, size):
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                                 antialias=images.shape[-1] > size).clamp_(0.0, 1.0)
    return to_uint8(images).numpy()


def iter_stroke_frames(
    strokes: np.ndarray | torch.Tensor,
    size: int,
    frames_per_stroke: int = 4,
    background: float = 1.0,
    targets: np.ndarray | torch.Tensor | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    hold_frames: int = 0,
    columns: int | None = None,
    device: torch.device | str | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames of a painting video one at a time (see the module docstring).

    :param strokes: ``(N, K, 13)`` (or ``(K, 13)`` for one painting) float in [0, 1], numpy or torch:
        N stroke histories in painting order, as ``CanvasCore.episode_strokes()`` returns them.
    :param size: side in pixels of each re-rendered painting.
    :param frames_per_stroke: F >= 1 frames per stroke (1: each stroke appears whole).
    :param background: grey level of the blank canvas, in [0, 1].
    :param targets: optional ``(N, h, w, 3)`` uint8 images shown right of each painting, resized to ``size``.
    :param captions: optional N sequences of ``K + 1`` strings; entry ``k`` is written under painting
        ``n`` while ``k`` of its strokes are complete (:func:`reward_captions` makes them).
    :param hold_frames: copies of the final frame appended (a pause on the finished painting).
    :param columns: grid columns when N > 1 (default: about square).
    :param device: where to render (default: the strokes' device, the CPU for numpy).
    :return: an iterator of ``(H, W, 3)`` uint8 frames, :func:`count_frames` of them; with N = 1 a
        frame is the tile itself (``size`` x ``size``, or ``size`` x ``2 size`` with a target, plus the
        caption band), with N > 1 a :func:`canvas.video.grid` of the tiles.
    """
    tensor = torch.as_tensor(strokes) if not isinstance(strokes, torch.Tensor) else strokes.detach()
    if tensor.dim() == 2:
        tensor = tensor[None]
    validate_strokes(tensor)
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    if not isinstance(frames_per_stroke, (int, np.integer)) or frames_per_stroke < 1:
        raise ValueError(f"frames_per_stroke must be an integer >= 1, got {frames_per_stroke!r}")
    if hold_frames < 0:
        raise ValueError(f"hold_frames must be >= 0, got {hold_frames}")
    if not 0.0 <= background <= 1.0:
        raise ValueError(f"background must be a grey level in [0, 1], got {background}")
    n, total, _ = tensor.shape
    device = torch.device(device) if device is not None else tensor.device
    tensor = tensor.to(device=device, dtype=torch.float32).contiguous()
    drawn = drawn_strokes(tensor)

    side = None
    if targets is not None:
        if len(targets) != n or tuple(targets.shape[3:]) != (3,) or len(targets.shape) != 4:
            raise ValueError(f"targets must be (N, h, w, 3) uint8 with N = {n} paintings, got {tuple(targets.shape)}")
        side = _resize_targets(targets, size)
    bands = band_index = None
    if captions is not None:
        if len(captions) != n or any(len(row) != total + 1 for row in captions):
            raise ValueError(f"captions must hold {n} sequences of {total + 1} strings (one per number of "
                             "completed strokes, 0 to K)")
        bands, band_index = _caption_bands(captions, size * (2 if side is not None else 1))
    rows = np.arange(n)

    def compose(canvas: torch.Tensor, completed: int) -> np.ndarray:
        tiles = to_uint8(canvas).cpu().numpy()  # (N, size, size, 3)
        if side is not None:
            tiles = np.concatenate([tiles, side], axis=2)
        if bands is not None:
            tiles = np.concatenate([tiles, bands[band_index[rows, completed]]], axis=1)
        return tiles[0] if n == 1 else grid(tiles, columns)

    # the arguments are checked above, when called; the frames are made as they are asked for
    return _render(tensor, drawn, size, frames_per_stroke, float(background), hold_frames, compose)


def _render(strokes: torch.Tensor, drawn: int, size: int, frames_per_stroke: int, background: float,
            hold_frames: int, compose: Callable[[torch.Tensor, int], np.ndarray]) -> Iterator[np.ndarray]:
    """The frame loop of :func:`iter_stroke_frames` (over time only; every painting at once)."""
    n = strokes.shape[0]
    with torch.no_grad():
        canvas = torch.full((n, 3, size, size), background, device=strokes.device)  # the completed strokes
        frame = compose(canvas, 0)
        yield frame
        for k in range(drawn):
            for j in range(1, frames_per_stroke):  # partial strokes go on a copy
                partial = partial_strokes(strokes[:, k], j / frames_per_stroke)[:, None].contiguous()
                yield compose(paint_(canvas.clone(), partial), k)
            paint_(canvas, strokes[:, k:k + 1])
            frame = compose(canvas, k + 1)
            yield frame
    for _ in range(hold_frames):
        yield frame


def stroke_frames(strokes: np.ndarray | torch.Tensor, size: int, frames_per_stroke: int = 4,
                  background: float = 1.0, targets: np.ndarray | torch.Tensor | None = None,
                  captions: Sequence[Sequence[str]] | None = None, hold_frames: int = 0,
                  columns: int | None = None, device: torch.device | str | None = None) -> np.ndarray:
    """All frames of :func:`iter_stroke_frames` in one ``(T, H, W, 3)`` uint8 array (same arguments).

    ``T = count_frames(drawn_strokes(strokes), frames_per_stroke, hold_frames)``. For long videos,
    stream :func:`iter_stroke_frames` into :func:`write_painting_video` instead.
    """
    return np.stack(list(iter_stroke_frames(strokes, size, frames_per_stroke, background, targets, captions,
                                            hold_frames, columns, device)))


def write_painting_video(
    path: str | os.PathLike,
    strokes: np.ndarray | torch.Tensor,
    size: int,
    fps: int = 30,
    frames_per_stroke: int | None = None,
    hold_seconds: float = 2.0,
    background: float = 1.0,
    targets: np.ndarray | torch.Tensor | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    columns: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> tuple[Path, int]:
    """Render stroke histories as a video and write it: ``.mp4`` (H.264), ``.gif`` or a folder of PNGs.

    :param frames_per_stroke: None: :func:`default_frames_per_stroke` (about six seconds of painting).
    :param hold_seconds: pause on the final painting.
    :param progress: show a tqdm progress bar over the frames.
    Other parameters as :func:`iter_stroke_frames`.
    :return: the path written and the number of frames.
    """
    if not isinstance(fps, (int, np.integer)) or fps < 1:
        raise ValueError(f"fps must be a positive integer, got {fps!r}")
    if not (hold_seconds >= 0 and math.isfinite(hold_seconds)):
        raise ValueError(f"hold_seconds must be a finite number >= 0, got {hold_seconds}")
    shape = tuple(strokes.shape)
    if len(shape) not in (2, 3) or shape[-1] != STROKE_DIM:
        raise ValueError(f"strokes must have shape (N, K, {STROKE_DIM}), got {shape}")
    drawn = drawn_strokes(strokes if len(shape) == 3 else strokes[None])
    per_stroke = default_frames_per_stroke(drawn, fps) if frames_per_stroke is None else frames_per_stroke
    hold = round(hold_seconds * fps)
    frames = iter_stroke_frames(strokes, size, per_stroke, background, targets, captions, hold, columns, device)
    total = count_frames(drawn, per_stroke, hold)
    if progress:
        frames = tqdm(frames, total=total, unit="frame", desc="rendering", dynamic_ncols=True)
    try:
        written = write_video(path, frames, fps=fps)
    finally:
        if progress:
            frames.close()
    return written, total
