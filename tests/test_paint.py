"""Painting videos: progressive stroke frames, re-rendering at any size, MP4/GIF/PNG output, SVG, ``paintgym paint``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from paintgym.canvas.export import render_strokes, save_png, save_svg, strokes_to_svg
from paintgym.canvas.images import to_uint8
from paintgym.canvas.painting_video import (
    count_frames,
    partial_strokes,
    reward_captions,
    stroke_frames,
    write_painting_video,
)
from paintgym.canvas.video import grid
from paintgym.envs import CanvasVectorEnv
from paintgym.experiments import cli_paint, cli_train

TINY = ["--agent", "ppo",
        "--canvas-size", "16", "--max-steps", "3", "--num-envs", "8", "--eval-episodes", "4", "--video-size", "32",
        "--threads", "1", "--no-progress", "--seed", "5", "--total-steps", "48", "--eval-every", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def episode(num_envs: int = 3, steps: int = 3, size: int = 16, seed: int = 0) -> CanvasVectorEnv:
    """A finished episode of random strokes (digits targets) in a vector env; its core holds the result."""
    env = CanvasVectorEnv(num_envs, targets="digits", canvas_size=size, max_steps=steps, autoreset_mode="disabled",
                          return_tensors=True)
    env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        env.step(torch.rand((num_envs, 13), generator=generator) * 2.0 - 1.0)
    return env


# ---------------------------------------------------------------------------------- the frames
def test_partial_strokes_split_the_curve():
    strokes = torch.rand(5, 13, generator=torch.Generator().manual_seed(1))
    assert torch.equal(partial_strokes(strokes, 1.0), strokes)  # exactly the stroke, no rounding
    half = partial_strokes(strokes, 0.5)
    p0, p1, p2 = strokes[:, 0:2], strokes[:, 2:4], strokes[:, 4:6]
    torch.testing.assert_close(half[:, 4:6], 0.25 * p0 + 0.5 * p1 + 0.25 * p2)  # ends at B(1/2)
    torch.testing.assert_close(half[:, 2:4], 0.5 * (p0 + p1))
    torch.testing.assert_close(half[:, 7], 0.5 * (strokes[:, 6] + strokes[:, 7]))
    torch.testing.assert_close(half[:, 9], 0.5 * (strokes[:, 8] + strokes[:, 9]))
    assert torch.equal(half[:, [0, 1, 6, 8, 10, 11, 12]], strokes[:, [0, 1, 6, 8, 10, 11, 12]])
    # a point of the sub-curve at t is the full curve's point at u * t
    t, u = 0.3, 0.5
    sub = (1 - t) ** 2 * half[:, 0:2] + 2 * t * (1 - t) * half[:, 2:4] + t * t * half[:, 4:6]
    s = u * t
    torch.testing.assert_close(sub, (1 - s) ** 2 * p0 + 2 * s * (1 - s) * p1 + s * s * p2)


def test_each_stroke_ends_on_the_canvas_after_it_and_partial_frames_differ():
    env = episode(num_envs=3, steps=4)
    strokes = env.core.episode_strokes().numpy()  # (3, 4, 13)
    per, size = 4, 24
    frames = stroke_frames(strokes, size, frames_per_stroke=per, columns=3, hold_frames=2)
    assert frames.shape[0] == count_frames(4, per, 2) == 19
    for k in range(5):  # frame k * F shows exactly the canvas after k strokes, all paintings at once
        expected = grid(render_strokes(strokes[:, :k], size) if k else np.full((3, size, size, 3), 255, np.uint8),
                        columns=3)
        np.testing.assert_array_equal(frames[k * per], expected)
    assert (frames[-1] == frames[-3]).all()  # the hold
    for k in range(4):  # in between, the stroke grows: every partial frame is new
        sequence = frames[k * per:(k + 1) * per + 1]
        assert all((a != b).any() for a, b in zip(sequence[:-1], sequence[1:], strict=True))


def test_an_opaque_stroke_covers_more_pixels_as_it_is_drawn():
    stroke = np.array([[0.1, 0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.3, 1.0, 1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    frames = stroke_frames(stroke, 64, frames_per_stroke=6)
    covered = (frames[..., 0] < 128).sum(axis=(1, 2))
    assert covered[0] == 0 and (np.diff(covered) > 0).all()


def test_rerendering_at_4x_and_downscaling_matches_the_canvas():
    env = episode(num_envs=4, steps=8, size=32, seed=3)
    strokes = env.core.episode_strokes()
    big = stroke_frames(strokes, 128, frames_per_stroke=1, columns=4)[-1]  # a 1x4 grid with 2-pixel gaps
    tiles = np.stack([big[2:130, 2 + 130 * i:130 * (i + 1)] for i in range(4)])
    small = np.stack([cv2.resize(tile, (32, 32), interpolation=cv2.INTER_AREA) for tile in tiles])
    difference = np.abs(small.astype(np.float32) - to_uint8(env.core.canvas).numpy()) / 255
    # anti-aliased edges are one pixel wide at both sizes, so pixels along stroke edges differ a little
    # (measured: mean 0.007-0.010, 99th percentile 0.06-0.13 over seeds 0-4); the rest agrees
    assert difference.mean() < 0.015, difference.mean()
    assert np.quantile(difference, 0.99) < 0.2, np.quantile(difference, 0.99)
    other = np.abs(small.astype(np.float32) - small[::-1]) / 255  # different paintings are far apart
    assert other.mean() > 5 * difference.mean()


def test_targets_and_captions_are_laid_out_under_each_tile():
    env = episode(num_envs=2, steps=2)
    result_terms = {"target": np.array([[0.1, 0.2], [0.0, -0.1]]), "harmony": np.ones((2, 2))}
    captions = reward_captions(np.array([[0.3, 0.4], [0.5, 0.6]]), result_terms, strokes_per_step=1)
    assert len(captions) == 2 and len(captions[0]) == 3
    assert captions[0][0] == "step 0/2" and captions[1][2] == "step 2/2  return +1.1  target -0.1  harmony +2"
    plain = stroke_frames(env.core.episode_strokes(), 32, frames_per_stroke=2, columns=2)
    framed = stroke_frames(env.core.episode_strokes(), 32, frames_per_stroke=2, columns=2,
                           targets=env.core.target_u8, captions=captions)
    assert framed.shape[0] == plain.shape[0] == 5
    assert framed.shape[2] == 2 * 64 + 3 * 2 and framed.shape[1] > plain.shape[1]  # targets beside, band below
    tile_h = (framed.shape[1] - 3 * 2) // 2
    band = framed[0, 2 + 32:2 + tile_h, 2:2 + 64]
    assert (band < 128).any()  # text was written
    with pytest.raises(ValueError, match="captions must hold 2 sequences of 3"):
        stroke_frames(env.core.episode_strokes(), 32, captions=[["a"], ["b"]])


# -------------------------------------------------------------------------------- the files
@pytest.mark.parametrize("suffix", [".mp4", ".gif", ""])
def test_videos_have_the_expected_frames_and_decode(tmp_path, suffix):
    env = episode(num_envs=2, steps=3)
    strokes, fps, per = env.core.episode_strokes(), 10, 3
    expected = stroke_frames(strokes, 40, frames_per_stroke=per, hold_frames=5, columns=2)
    path, count = write_painting_video(tmp_path / f"painting{suffix}", strokes, 40, fps=fps,
                                       frames_per_stroke=per, hold_seconds=0.5, columns=2)
    assert count == expected.shape[0] == count_frames(3, per, 5) == 15
    h, w = expected.shape[1:3]
    if suffix == ".mp4":
        frames = imageio.mimread(path, memtest=False)
        assert len(frames) == count
        assert frames[0].shape == (h + (-h) % 16, w + (-w) % 16, 3)  # padded to H.264's macroblocks
        assert np.abs(frames[-1][:h, :w].astype(int) - expected[-1]).mean() < 6  # lossy, but the same picture
    elif suffix == ".gif":
        with Image.open(path) as gif:  # identical frames (the hold) are merged, their durations added
            durations = []
            for i in range(gif.n_frames):
                gif.seek(i)
                durations.append(gif.info["duration"])
            assert gif.size == (w, h)
        assert sum(durations) == pytest.approx(count * 1000 / fps, abs=count)
        assert imageio.mimread(path)[0].shape[:2] == (h, w)
    else:
        files = sorted(path.glob("frame_*.png"))
        assert len(files) == count
        np.testing.assert_array_equal(imageio.imread(files[7]), expected[7])  # lossless
        write_painting_video(path, strokes[:, :1], 40, fps=fps, frames_per_stroke=per, hold_seconds=0.0)
        assert len(list(path.glob("frame_*.png"))) == per + 1  # a shorter video leaves no frames of the last


def test_svg_holds_one_path_per_visible_stroke(tmp_path):
    env = episode(num_envs=1, steps=3)
    strokes = np.concatenate([env.core.episode_strokes()[0].numpy(), np.zeros((2, 13), np.float32)])  # + padding
    root = ET.parse(save_svg(tmp_path / "p.svg", strokes, 256)).getroot()
    paths = root.findall("{http://www.w3.org/2000/svg}path")
    assert root.get("viewBox") == "0 0 256 256" and len(paths) == 3
    x0, y0 = (float(v) for v in paths[0].get("d").split()[1:3])
    assert (x0, y0) == pytest.approx((strokes[0, 0] * 256, strokes[0, 1] * 256), abs=0.01)
    assert float(paths[0].get("stroke-opacity")) == pytest.approx(strokes[0, 8:10].mean(), abs=1e-3)


# ------------------------------------------------------------------------------ paintgym paint
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("paint") / "run"
    assert cli_train.main([*TINY, "--run-dir", str(run)]) == 0
    return run


def test_paint_reproduces_the_runs_final_paintings(run_dir, tmp_path, capsys):
    out = tmp_path / "painting.mp4"
    code = cli_paint.main([str(run_dir), "--out", str(out), "--size", "48", "--frames-per-stroke", "2",
                           "--hold", "0.5", "--fps", "10", "--svg", str(tmp_path / "p.svg"), "--device", "cpu",
                           "--no-progress"])
    assert code == 0, capsys.readouterr().err
    # the default episodes are the run's first held-out episodes: the same strokes, so the same SVGs
    final = np.load(run_dir / "final_episodes.npz")["strokes"]
    for i in range(4):
        assert (tmp_path / f"p_{i}.svg").read_text() == strokes_to_svg(final[i], 48)
    frames = imageio.mimread(out, memtest=False)
    assert len(frames) == count_frames(3, 2, 5)
    assert frames[0].shape[1] >= 2 * (2 * 48) + 3 * 2  # a 2x2 grid of painting + target tiles


def test_paint_several_seeds_targets_and_formats(run_dir, tmp_path, capsys):
    out = tmp_path / "seeds.gif"
    args = [str(run_dir), "--size", "32", "--frames-per-stroke", "1", "--hold", "0", "--no-progress"]
    assert cli_paint.main([*args, "--out", str(out), "--seeds", "1,2,3", "--no-caption", "--columns", "3"]) == 0
    frame = imageio.mimread(out)[0]
    assert frame.shape[:2] == (32 + 4, 3 * 64 + 4 * 2)  # three tiles in a row, no caption band
    # a single image of our own: one episode, the frame is the tile (painting beside the target)
    image = tmp_path / "face.png"
    save_png(image, np.full((20, 20, 3), 30, np.uint8))
    folder = tmp_path / "frames"
    assert cli_paint.main([*args, "--out", str(folder), "--targets", str(image), "--no-caption"]) == 0
    files = sorted(folder.glob("*.png"))
    assert len(files) == count_frames(3, 1, 0)
    last = imageio.imread(files[-1])
    assert last.shape == (32, 64, 3) and (last[:, 32:] < 40).all()  # the dark target on the right
    assert "painted 1 episode(s)" in capsys.readouterr().out


def test_paint_refines_the_agents_strokes_before_drawing_them(run_dir, tmp_path, capsys):
    args = [str(run_dir), "--size", "32", "--frames-per-stroke", "1", "--hold", "0", "--no-progress", "--device", "cpu"]
    assert cli_paint.main([*args, "--out", str(tmp_path / "a.gif"), "--svg", str(tmp_path / "a.svg")]) == 0
    assert cli_paint.main([*args, "--out", str(tmp_path / "b.gif"), "--svg", str(tmp_path / "b.svg"),
                           "--refine", "10"]) == 0
    printed = capsys.readouterr().out
    agent, again, refined = (float(line.rsplit("psnr ", 1)[1]) for line in printed.splitlines() if "psnr" in line)
    assert again == agent and refined > agent + 0.5  # the replayed env measures the refined strokes
    assert "refined them by 10 Adam steps" in printed
    assert (tmp_path / "a_0.svg").read_text() != (tmp_path / "b_0.svg").read_text()
    assert len(imageio.mimread(tmp_path / "b.gif")) == len(imageio.mimread(tmp_path / "a.gif"))


def test_paint_errors_are_one_line(run_dir, tmp_path, capsys):
    def error(argv: list[str]) -> str:
        assert cli_paint.main([*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("paintgym paint: error: ") and err.count("\n") == 1 and "Traceback" not in err
        return err

    assert "no trained agent" in error([str(tmp_path / "missing"), "--out", str(tmp_path / "a.mp4")])
    assert "holds no checkpoint.pt" in error([str(tmp_path), "--out", str(tmp_path / "a.mp4")])
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert "cannot read checkpoint" in error([str(broken), "--out", str(tmp_path / "a.mp4")])
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    assert "cannot be written" in error([str(run_dir), "--out", str(blocker / "a.mp4")])
    assert "--size must be" in error([str(run_dir), "--size", "3"])
    assert "--seeds takes" in error([str(run_dir), "--seeds", "1,x"])
    assert "--refine-keep-first must be" in error([str(run_dir), "--refine", "5", "--refine-keep-first", "-1"])
    assert not list(tmp_path.glob("*.mp4"))
