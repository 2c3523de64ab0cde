"""Write frame sequences as MP4 (H.264), GIF or a folder of PNGs, chosen by the path's extension."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from paintgym.canvas.export import save_png

VIDEO_SUFFIXES = (".mp4", ".gif")


def grid(images: np.ndarray, columns: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile ``(N, H, W, 3)`` uint8 images into one ``(rows*H, columns*W, 3)`` image with ``pad`` pixels between."""
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i in range(n):  # N is a handful of tiles for a contact sheet, not a hot path
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        sheet[top:top + h, left:left + w] = images[i]
    return sheet


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames as uint8 ``(H, W, 3)`` arrays, all of the first one's shape (checked as they stream)."""
    shape = None
    for frame in frames:
        frame = np.asarray(frame, dtype=np.uint8)
        if shape is None:
            if frame.ndim != 3 or frame.shape[-1] != 3:
                raise ValueError(f"frames must be (H, W, 3) uint8 images, got one of shape {frame.shape}")
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError(f"every frame must have the first frame's shape {shape}, got {frame.shape}")
        yield frame
    if shape is None:
        raise ValueError("no frames to write; a video needs at least one")


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: int = 30) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames to ``path``: ``.mp4`` (H.264, yuv420p, plays in browsers),
    ``.gif``, or, for a path without one of those extensions, a folder of numbered PNGs.

    ``frames`` may also be any iterable of ``(H, W, 3)`` frames (e.g. a generator): MP4 and PNG
    frames are then written as they come, without holding the whole video in memory."""
    path = Path(path)
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0):
        raise ValueError(f"frames must be (T, H, W, 3) uint8 with T >= 1, got {frames.shape}")
    frames = _checked(frames)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        count = 0
        for count, frame in enumerate(frames, start=1):
            save_png(path / f"frame_{count - 1:05d}.png", frame)
        for stale in path.glob("frame_*.png"):  # frames of an earlier, longer video in the same folder
            index = stale.stem.removeprefix("frame_")
            if index.isdigit() and int(index) >= count:
                stale.unlink()
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create folder {path.parent}: {err.strerror}; choose a writable output path") from err
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    try:
        if suffix == ".mp4":
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                                    macro_block_size=16, output_params=["-movflags", "+faststart"]) as writer:
                for frame in frames:
                    # H.264 needs even sides; pad to a multiple of 16 so every player accepts it
                    ph, pw = (-frame.shape[0]) % 16, (-frame.shape[1]) % 16
                    if ph or pw:
                        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
                    writer.append_data(frame)
        else:
            imageio.mimsave(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(f"cannot write {path}: {err}; choose a writable output path") from err
    except BaseException:  # a frame source that fails midway leaves no partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return path
