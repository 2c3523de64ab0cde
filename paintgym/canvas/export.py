"""Export paintings: PNG at any resolution, stroke lists as JSON, and SVG of the strokes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from paintgym.canvas import strokes as stroke_model
from paintgym.canvas.images import to_uint8
from paintgym.canvas.render import paint_

_UMASK = os.umask(0)
os.umask(_UMASK)


def _visible(strokes: np.ndarray) -> np.ndarray:
    """Drop invisible strokes (zero opacity at both ends, e.g. the padding of an unfinished episode)."""
    return strokes[(strokes[:, 8] > 0) | (strokes[:, 9] > 0)]


def render_strokes(strokes: np.ndarray | torch.Tensor, size: int, background: float = 1.0) -> np.ndarray:
    """Render a stroke list ``(N, 13)`` (or a batch ``(B, N, 13)``) to uint8 ``([B,] size, size, 3)``."""
    tensor = torch.as_tensor(np.asarray(strokes, dtype=np.float32) if not isinstance(strokes, torch.Tensor)
                             else strokes.detach().float().cpu())
    single = tensor.dim() == 2
    batch = tensor[None] if single else tensor
    canvas = torch.full((batch.shape[0], 3, size, size), float(background))
    images = to_uint8(paint_(canvas, batch.contiguous())).numpy()
    return images[0] if single else images


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so no half-written file is left."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create folder {path.parent} for {path.name}: {err.strerror}; "
                          "choose a writable output path") from err
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror}; choose a writable output path") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image as PNG."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return atomic_write_bytes(path, encoded.tobytes())


def strokes_to_json(strokes: np.ndarray, canvas_size: int, background: float = 1.0) -> dict[str, Any]:
    """A JSON-ready description of a painting: its visible strokes, one object per stroke."""
    visible = _visible(np.asarray(strokes, dtype=np.float32))
    return {
        "format": "paintgym-strokes/1",
        "layout": list(stroke_model.FIELDS),
        "coordinates": "fractions of the canvas side, origin top-left; radius r maps to "
                       f"{stroke_model.MIN_RADIUS:g} + r * {stroke_model.MAX_RADIUS - stroke_model.MIN_RADIUS:g} "
                       "of the canvas side",
        "canvas_size": int(canvas_size),
        "background": float(background),
        "strokes": [dict(zip(stroke_model.FIELDS, map(float, row), strict=True)) for row in visible],
    }


def save_json(path: str | os.PathLike, strokes: np.ndarray, canvas_size: int, background: float = 1.0) -> Path:
    """Write :func:`strokes_to_json` to ``path``."""
    text = json.dumps(strokes_to_json(strokes, canvas_size, background), indent=1)
    return atomic_write_bytes(path, text.encode())


def load_json(path: str | os.PathLike) -> tuple[np.ndarray, int, float]:
    """Read a stroke list written by :func:`save_json`: ``(N, 13)`` strokes, canvas size, background."""
    try:
        data = json.loads(Path(path).read_text())
        strokes = np.array([[s[name] for name in stroke_model.FIELDS] for s in data["strokes"]], dtype=np.float32)
        return strokes.reshape(-1, stroke_model.STROKE_DIM), int(data["canvas_size"]), float(data["background"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a paintgym stroke file ({err})") from err


def strokes_to_svg(strokes: np.ndarray, size: int, background: float = 1.0) -> str:
    """An SVG of the strokes: one quadratic-curve ``<path>`` per stroke, with its colour, mean width
    and mean opacity (SVG strokes have one width and opacity each)."""
    visible = _visible(np.asarray(strokes, dtype=np.float32))
    grey = int(round(background * 255))
    lines = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">',
             f'<rect width="{size}" height="{size}" fill="rgb({grey},{grey},{grey})"/>']
    for s in visible:
        x0, y0, x1, y1, x2, y2 = (s[:6] * size).tolist()
        mean_r = (s[6] + s[7]) / 2
        radius = stroke_model.radius_fraction(mean_r) * size
        r, g, b = (int(round(c * 255)) for c in s[10:13])
        lines.append(f'<path d="M {x0:.2f} {y0:.2f} Q {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}" fill="none" '
                     f'stroke="rgb({r},{g},{b})" stroke-width="{2 * radius:.2f}" '
                     f'stroke-opacity="{(s[8] + s[9]) / 2:.3f}" stroke-linecap="round"/>')
    lines.append("</svg>")
    return "\n".join(lines)


def save_svg(path: str | os.PathLike, strokes: np.ndarray, size: int, background: float = 1.0) -> Path:
    """Write :func:`strokes_to_svg` to ``path``."""
    return atomic_write_bytes(path, strokes_to_svg(strokes, size, background).encode())
