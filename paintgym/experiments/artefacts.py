"""The output files of an agent's training run, beside its checkpoint and logs::

    videos/step_*.mp4      the agent painting held-out targets, every ``--video-every`` steps
    painting.mp4           the trained agent painting held-out targets
    final_paintings.png    contact sheet: final paintings beside their held-out targets
    learning_curve.png     returns and held-out L2 / PSNR against env steps
    final_episodes.npz     the final evaluation's episodes: ``strokes`` (N, T*S, 13), ``paintings``
                           (N, H, W, 3) uint8, ``targets`` (N, H, W, 3) uint8 when the task has them
    summary.json           the final evaluation

Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paintgym.canvas.export import atomic_write_bytes, save_png
from paintgym.canvas.painting_video import default_frames_per_stroke, reward_captions, write_painting_video
from paintgym.canvas.video import grid
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.experiments.evaluate import EvalResult

FINAL_EPISODES = "final_episodes.npz"
SUMMARY = "summary.json"
VIDEO_EPISODES = 8  # held-out episodes shown in the videos
VIDEO_FPS = 24
SHEET_EPISODES = 16  # paintings on the contact sheet


def write_video(result: EvalResult, eval_env: CanvasVectorEnv, size: int, path: Path) -> Path:
    """The first held-out episodes of an evaluation painted stroke by stroke beside their targets, with the
    running reward terms (:mod:`canvas.painting_video`): about four seconds, plus two on the final paintings.

    :param size: side of each painting in pixels (re-rendered from the strokes).
    """
    core, shown = eval_env.core, slice(0, VIDEO_EPISODES)
    captions = reward_captions(result.step_rewards[shown], {key: value[shown] for key, value in
                                                            result.step_terms.items()}, core.strokes_per_step)
    per_stroke = default_frames_per_stroke(result.strokes.shape[1], VIDEO_FPS, seconds=4.0)
    return write_painting_video(path, result.strokes[shown], size, fps=VIDEO_FPS, frames_per_stroke=per_stroke,
                                background=core.background,
                                targets=None if result.targets is None else result.targets[shown],
                                captions=captions)[0]


def write_contact_sheet(eval_env: CanvasVectorEnv, size: int, path: Path) -> Path:
    """The evaluation env's final paintings beside their targets, ``size`` pixels each, as a PNG."""
    return save_png(path, grid(eval_env.core.frames(size)[:SHEET_EPISODES].cpu().numpy()))


def save_episodes(path: Path, result: EvalResult) -> Path:
    """Write an evaluation's stroke histories, paintings and targets to ``path`` (``.npz``)."""
    arrays = {"strokes": result.strokes, "paintings": result.paintings}
    if result.targets is not None:
        arrays["targets"] = result.targets
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def write_summary(path: Path, summary: dict[str, Any]) -> Path:
    """``summary.json``: the final evaluation and how long the run trained."""
    return atomic_write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode())


def plot_learning_curve(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Training and held-out returns, and held-out L2 / PSNR when present, against env steps (a PNG).

    :param rows: ``metrics.csv`` rows (values as numbers or their text; empty where not measured).
    """

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(float(row["step"]), float(row[key])) for row in rows if row.get(key) not in (None, "")]
        points = [(x, y) for x, y in points if math.isfinite(y)]
        return [x for x, _ in points], [y for _, y in points]

    has_l2 = bool(series("eval/l2")[0])
    figure = Figure(figsize=(10 if has_l2 else 6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if has_l2 else 1, squeeze=False)[0]
    for key, label, style in (("return", "training episodes", "-"), ("eval/return", "held-out evaluation", "o-")):
        xs, ys = series(key)
        if xs:
            axes[0].plot(xs, ys, style, label=label, markersize=3)
    axes[0].set(xlabel="env steps", ylabel="episode return", title=title)
    axes[0].legend(loc="best")
    if has_l2:
        xs, ys = series("eval/l2")
        axes[1].plot(xs, ys, "o-", color="tab:red", markersize=3)
        axes[1].set(xlabel="env steps", ylabel="held-out L2 (lower is better)", title="held-out reconstruction")
        twin = axes[1].twinx()
        xs, ys = series("eval/psnr")
        twin.plot(xs, ys, "s--", color="tab:green", markersize=3)
        twin.set_ylabel("PSNR (dB)", color="tab:green")
    for ax in axes:
        ax.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())
