"""The stroke-sequence prior (sketch-rnn): pen <-> stroke conversion both ways, the model and its baseline,
training and resume on synthetic pen drawings, checkpoints, the ``strokeprior`` reward, ``sample-strokes``
and the one-line errors. Everything runs on tiny synthetic drawings made here (no shared data)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paintgym import generative, rewards
from paintgym.canvas.pen import (
    PenFormatError,
    Placement,
    check_stroke3,
    fit_bezier,
    pen_to_stroke_batch,
    pen_to_strokes,
    polyline_distance,
    polylines,
    render_pen,
    simplify,
    stroke3_to_stroke5,
    stroke5_to_stroke3,
    strokes_to_pen,
    to_absolute,
    to_relative,
)
from paintgym.canvas.render import render
from paintgym.experiments.train_strokes import Args, train
from paintgym.generative import CheckpointError, Classifier, save_checkpoint
from paintgym.generative.pen_data import PenDatasetError, collate, load_pen_dataset, resolve_data
from paintgym.generative.sketch_rnn import GaussianBaseline, SketchRNN, evaluate, load_sketch_rnn, loss, to_stroke3
from paintgym.rewards.base import StepContext
from tests.helpers_generative import _scratch, one_thread

TINY = dict(hidden=32, mixtures=3, batch_size=16, device="cpu", log_every=10, eval_every=1000,
            checkpoint_every=1000)
STEPS = 150


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


# ---------------------------------------------------------------- synthetic pen drawings


def synthetic_drawing(rng: np.random.Generator) -> np.ndarray:
    """A pen drawing of 2-3 smooth arcs: steps of about 8 units turning at a constant rate, the pen lifted
    and moved between arcs; integer stroke-3 ``(n, 3)``, as the shared data is."""
    rows = []
    for _ in range(int(rng.integers(2, 4))):
        jump = rng.uniform(-30, 30, size=2) if rows else rng.uniform(-3, 3, size=2)
        rows.append([*jump, 0])
        heading, turn = rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
        for _ in range(int(rng.integers(6, 12))):
            heading += turn
            rows.append([8 * np.cos(heading), 8 * np.sin(heading), 0])
        rows[-1][2] = 1
    return np.rint(np.asarray(rows)).astype(np.int16)


def synthetic_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    drawings = [synthetic_drawing(rng) for _ in range(n)]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in drawings])]).astype(np.int64)
    return np.concatenate(drawings), offsets


def write_dataset(path: Path, sizes: tuple[int, int, int] = (400, 60, 60)) -> Path:
    arrays = {}
    for k, (split, n) in enumerate(zip(("train", "valid", "test"), sizes, strict=True)):
        arrays[f"{split}_strokes"], arrays[f"{split}_offsets"] = synthetic_split(n, seed=k)
    np.savez(path, **arrays)
    return path


@functools.cache
def dataset() -> Path:
    return write_dataset(_scratch("paintgym-test-pen-data-") / "arcs.npz")


@functools.cache
def trained() -> tuple[Path, object]:
    """Run folder and Result of a tiny prior trained :data:`STEPS` steps on the synthetic arcs (seeded)."""
    out = _scratch("paintgym-test-sketch-rnn-") / "run"
    with one_thread():
        result = train(Args(data=str(dataset()), steps=STEPS, out=str(out), seed=0, **TINY), progress=False)
    return out, result


def drawings(split: str) -> list[np.ndarray]:
    data = load_pen_dataset(dataset()).splits[split]
    return [data.drawing(i) for i in range(len(data))]


# ---------------------------------------------------------------- formats and conversion


def test_stroke3_stroke5_and_absolute_relative_are_inverse() -> None:
    seq = synthetic_drawing(np.random.default_rng(1))
    five = stroke3_to_stroke5(seq, len(seq) + 3)
    assert five.shape == (len(seq) + 3, 5) and (five[len(seq):, 4] == 1).all()
    assert (five[:len(seq), 2:4].sum(1) == 1).all()
    np.testing.assert_array_equal(stroke5_to_stroke3(five), seq)
    np.testing.assert_allclose(to_relative(to_absolute(seq)), seq)
    lines = polylines(seq)
    assert len(lines) == int(seq[:, 2].sum()) and sum(len(line) for line in lines) == len(seq)
    with pytest.raises(PenFormatError, match="pen lifted"):
        check_stroke3(np.array([[0, 0, 2]]))
    with pytest.raises(PenFormatError, match=r"\(N, 3\)"):
        check_stroke3(np.zeros((4, 5)))


def test_bezier_fit_recovers_a_quadratic_and_simplify_drops_collinear_points() -> None:
    control = np.array([[0.1, 0.2], [0.5, 0.9], [0.8, 0.3]])
    t = np.linspace(0, 1, 15) ** 1.3  # uneven speed along the curve: the fit must find the parameters
    s = 1 - t
    points = s[:, None] ** 2 * control[0] + (2 * s * t)[:, None] * control[1] + t[:, None] ** 2 * control[2]
    fitted, error = fit_bezier(points)
    assert error < 1e-3 and np.abs(fitted - control).max() < 5e-3
    line = np.stack([np.linspace(0, 10, 11), np.linspace(0, 5, 11)], 1)
    np.testing.assert_array_equal(simplify(line, 0.01), [0, 10])
    corner = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 2.0]])
    np.testing.assert_array_equal(simplify(corner, 0.01), [0, 2, 4])


def test_pen_to_strokes_to_pen_round_trips_within_the_tolerance() -> None:
    rng = np.random.default_rng(2)
    tolerance = 0.004
    corner_and_dot = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 1], [5, -5, 1]])
    for seq in [synthetic_drawing(rng) for _ in range(10)] + [corner_and_dot]:
        strokes, placement = pen_to_strokes(seq, tolerance=tolerance)
        assert strokes.dtype == np.float32 and strokes.shape[1] == 13 and 0 <= strokes.min() and strokes.max() <= 1
        back = strokes_to_pen(strokes, spacing=0.005, placement=placement, absolute=True)
        original, returned = polylines(seq), polylines(back, absolute=True)
        assert len(returned) == len(original)  # the same pen lifts
        for a, b in zip(original, returned, strict=True):
            # in canvas units: within the fitting tolerance (plus the sampling of the curve)
            assert polyline_distance(a, b) * placement.scale < tolerance + 1e-3
    strokes, _ = pen_to_strokes(np.array([[0, 0, 0], [10, 0, 0], [0, 10, 1], [5, -5, 1]]))
    assert len(strokes) == 3  # the L's corner is kept (two strokes), the dot is one stroke
    np.testing.assert_allclose(strokes[2, 0:2], strokes[2, 4:6])


def test_strokes_to_pen_to_strokes_round_trips_and_renders_the_same() -> None:
    rng = np.random.default_rng(3)
    strokes = np.zeros((6, 13), dtype=np.float32)
    for k in range(6):  # gently curved strokes, apart from each other, each drawn as its own line
        p0 = rng.uniform(0.15, 0.85, 2)
        p2 = np.clip(p0 + rng.uniform(-0.3, 0.3, 2), 0.05, 0.95)
        normal = np.array([p0[1] - p2[1], p2[0] - p0[0]]) / np.linalg.norm(p2 - p0)
        p1 = (p0 + p2) / 2 + normal * rng.uniform(0.04, 0.1) * rng.choice([-1, 1])  # a curve, not a line
        strokes[k, :6] = [*p0, *p1, *p2]
    strokes[:, 6:10] = [0.05, 0.05, 1.0, 1.0]
    pen = strokes_to_pen(strokes, points=20, absolute=True)
    assert len(polylines(pen, absolute=True)) == 6 and pen[-1, 2] == 1
    back, placement = pen_to_strokes(pen, absolute=True, placement=Placement(1.0), tolerance=0.002,
                                     radius=0.05 * (0.25 - 1 / 128) + 1 / 128)
    assert placement == Placement(1.0) and back.shape == strokes.shape
    assert np.abs(back[:, :6] - strokes[:, :6]).max() < 0.01  # each stroke comes back as one stroke
    np.testing.assert_allclose(back[:, 6:10], strokes[:, 6:10], atol=1e-5)
    a = render(torch.from_numpy(strokes)[None], size=64)
    b = render(torch.from_numpy(back)[None], size=64)
    assert (a - b).abs().mean() < 0.01
    relative = strokes_to_pen(strokes, points=20)
    np.testing.assert_array_equal(relative[0], [0.0, 0.0, 0.0])  # the pen starts at the first point
    np.testing.assert_allclose(to_absolute(relative)[:, :2] + pen[0, :2], pen[:, :2], atol=1e-12)
    invisible = strokes.copy()
    invisible[:, 8:10] = 0
    assert strokes_to_pen(invisible).shape == (0, 3)


def test_pen_batches_pad_with_invisible_strokes_and_render() -> None:
    rng = np.random.default_rng(4)
    seqs = [synthetic_drawing(rng) for _ in range(3)] + [np.zeros((0, 3))]
    batch, placements = pen_to_stroke_batch(seqs)
    assert batch.shape[0] == 4 and len(placements) == 4 and (batch[3, :, 8:10] == 0).all()
    canvases = render_pen(seqs, size=32)
    assert canvases.shape == (4, 3, 32, 32)
    assert (canvases[:3] < 0.5).any(dim=1).flatten(1).sum(1).min() > 10 and (canvases[3] == 1).all()


# ---------------------------------------------------------------- model and baseline


def test_model_likelihood_units_loss_and_sampling() -> None:
    torch.manual_seed(0)
    model = SketchRNN(hidden=16, mixtures=3, scale=8.0)
    seq5, lengths = collate(drawings("valid")[:5], torch.Generator().manual_seed(0), integer=True)
    raw = model.log_likelihood(seq5, lengths)
    normalised = model.log_likelihood(seq5, lengths, normalised=True)
    assert raw.shape == (5,)
    torch.testing.assert_close(raw, normalised - 2 * math.log(8.0) * lengths, rtol=1e-5, atol=1e-3)
    padded = torch.cat([seq5, torch.tensor([0.0, 0, 0, 0, 1]).expand(5, 4, 5)], 1)
    torch.testing.assert_close(model.log_likelihood(padded, lengths), raw)  # padding after the end is free
    torch.testing.assert_close(loss(model, seq5, lengths), -normalised.mean() / seq5.shape[1])
    a = model.sample(3, 0.5, torch.Generator().manual_seed(1), max_len=30)
    b = model.sample(3, 0.5, torch.Generator().manual_seed(1), max_len=30)
    torch.testing.assert_close(a, b)
    seq, lens = a
    assert seq.shape[0] == 3 and (lens <= 30).all() and seq.shape[1] == int(lens.max()) + 1
    assert [len(d) for d in to_stroke3(seq, lens)] == lens.tolist()
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, 0.0)
    conditioned = SketchRNN(hidden=16, mixtures=3, num_classes=2)
    assert conditioned.log_likelihood(seq5, lengths, torch.tensor([0, 1, 0, 1, 1])).shape == (5,)
    assert conditioned.sample(2, 1.0, labels=torch.tensor([0, 1]), max_len=5)[0].shape[0] == 2
    with pytest.raises(ValueError, match="class-conditioned"):
        conditioned.log_likelihood(seq5, lengths)


def test_gaussian_baseline_is_fitted_by_moments() -> None:
    rows, offsets = synthetic_split(50, seed=5)
    base = GaussianBaseline.fit(rows, len(offsets) - 1)
    np.testing.assert_allclose(base.mean, rows[:, :2].mean(0))
    np.testing.assert_allclose(base.cov, np.cov(rows[:, :2].T, bias=True), rtol=1e-4)
    lifts = rows[:, 2].sum()
    np.testing.assert_allclose(base.pen, np.array([len(rows) - lifts, lifts, 50]) / (len(rows) + 50))
    seq = [rows[offsets[i]:offsets[i + 1]] for i in range(50)]
    seq5, lengths = collate(seq)
    total = float(base.log_likelihood(seq5, lengths).sum())
    # its mean log-likelihood per row, on its own training data, is the closed form it reports
    assert abs(total / (len(rows) + 50) - base.mean_log_likelihood()) < 1e-3
    again = GaussianBaseline.from_dict(base.to_dict())
    assert again == base


# ---------------------------------------------------------------- training, checkpoints, resume


def test_training_beats_the_gaussian_baseline_on_held_out_drawings() -> None:
    out, result = trained()
    heldout = json.loads((out / "heldout.json").read_text())
    assert heldout["split"] == "test" and heldout["drawings"] == 60 and heldout["step"] == STEPS
    assert heldout == result.heldout
    # nats per drawing in data units: the arcs' regular steps are learned, the Gaussian cannot know them
    assert heldout["nll"] < heldout["baseline_nll"] - 0.5 * heldout["points"] / heldout["drawings"]
    assert (out / "ckpt.pt").is_file() and (out / "tb").is_dir()
    assert cv2.imread(str(out / "samples.png")) is not None
    assert result.history[-1]["loss/reconstruction"] < result.history[0]["loss/reconstruction"]


def test_checkpoint_round_trip_and_kind_errors() -> None:
    out, result = trained()
    model = generative.load(out)
    same = load_sketch_rnn(out / "ckpt.pt")
    assert isinstance(model, SketchRNN) and model.kind == "sketch-rnn" and not model.training
    assert model.config() == result.model.config() and model.baseline is not None
    seq5, lengths = collate(drawings("test")[:4], torch.Generator().manual_seed(0), integer=True)
    with torch.no_grad():
        torch.testing.assert_close(model.log_likelihood(seq5, lengths), result.model.log_likelihood(seq5, lengths))
        torch.testing.assert_close(same.log_likelihood(seq5, lengths), result.model.log_likelihood(seq5, lengths))
    other = _scratch("paintgym-test-other-kind-") / "ckpt.pt"
    save_checkpoint(other, Classifier(size=32, channels=1, classes=2, width=4, features=8))
    with pytest.raises(CheckpointError, match="not a stroke-sequence prior.*train-strokes"):
        load_sketch_rnn(other)
    with pytest.raises(CheckpointError, match="does not exist.*train-strokes"):
        load_sketch_rnn(other.parent / "missing.pt")
    with pytest.raises(rewards.RewardSpecError, match="not a stroke-sequence prior"):
        rewards.build(f"strokeprior(checkpoint={other})")


def test_resume_continues_exactly() -> None:
    folder = _scratch("paintgym-test-sketch-resume-")
    options = dict(TINY, data=str(dataset()), hidden=8, mixtures=2, seed=3, eval_every=5)
    whole = train(Args(steps=8, out=str(folder / "whole"), **options), progress=False)
    train(Args(steps=4, out=str(folder / "half"), **options), progress=False)
    resumed = train(Args(steps=8, out=str(folder / "half"), resume=True, **options), progress=False)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(Args(steps=8, out=str(folder / "whole"), **options), progress=False)


# ---------------------------------------------------------------- the reward


def _reward(**options: object):
    out, _ = trained()
    spec = ", ".join([f"checkpoint={out}", *(f"{k}={v}" for k, v in options.items())])
    return rewards.build(f"strokeprior({spec})").terms[0][2]


def test_reward_ranks_a_likely_painting_above_an_unlikely_one_and_an_empty_one() -> None:
    reward = _reward()
    likely = [pen_to_strokes(d)[0] for d in drawings("test")[:8]]  # held-out arcs, painted as strokes
    g = torch.Generator().manual_seed(0)
    unlikely = torch.rand(8, 6, 13, generator=g)  # random strokes across the canvas
    unlikely[..., 8:10] = 1.0
    dots = unlikely.clone()
    dots[..., 2:6] = dots[..., 0:2].repeat(1, 1, 2)  # scattered dots: one pen point each, random jumps
    scores_likely = reward.score_strokes(likely)
    scores_unlikely, scores_dots = reward.score_strokes(unlikely), reward.score_strokes(dots)
    empty = reward.score_strokes(torch.zeros(2, 4, 13))  # invisible strokes: nothing painted
    assert scores_likely.shape == (8,)
    # random Bezier strokes are smooth arcs too (what these drawings are made of), so closer
    assert scores_likely.min() > 0 and scores_likely.mean() > scores_unlikely.mean() + 0.5
    assert scores_likely.mean() > scores_dots.mean() + 1.0 and scores_dots.mean() < 0
    assert (empty == 0).all() and scores_likely.min() > empty.max()
    # two lucky points cannot buy a high average: a short dash is averaged over min_points
    dash = np.zeros((1, 13), dtype=np.float32)
    dash[0, :6] = [0.5, 0.5, 0.51, 0.5, 0.52, 0.5]
    dash[0, 8:10] = 1.0
    assert reward.score_strokes([dash]).abs().max() < scores_likely.mean()


def test_reward_in_the_env_loop_terminal_and_dense() -> None:
    likely = torch.from_numpy(pen_to_stroke_batch(drawings("test")[:3])[0].numpy())  # (3, K, 13)
    steps = likely.shape[1]
    canvas = torch.ones(3, 3, 16, 16)
    terminal, dense = _reward(), _reward(dense="true")
    expected = terminal.score_strokes(likely)
    totals = {"terminal": torch.zeros(3), "dense": torch.zeros(3)}
    for reward, key in ((terminal, "terminal"), (dense, "dense")):
        reward.reset(canvas, None, torch.ones(3, dtype=torch.bool))
        for t in range(steps):
            ctx = StepContext(canvas=canvas, prev_canvas=None, target=None, strokes=likely[:, t:t + 1],
                              step=torch.full((3,), t + 1), done=torch.full((3,), t == steps - 1), active=None)
            r = reward.step(ctx)
            if key == "terminal" and t < steps - 1:
                assert (r == 0).all()
            totals[key] += r
    torch.testing.assert_close(totals["terminal"], expected)
    torch.testing.assert_close(totals["dense"], expected, atol=1e-4, rtol=1e-4)  # a telescoping sum
    assert "strokeprior" in rewards.available() and terminal.options() == {"checkpoint": str(trained()[0])}


# ---------------------------------------------------------------- commands and one-line errors


def test_sample_strokes_writes_a_picture_and_a_video(capsys: pytest.CaptureFixture[str]) -> None:
    from paintgym.cli import cli

    out, _ = trained()
    folder = _scratch("paintgym-test-sample-strokes-")
    assert cli(["sample-strokes", str(out), "--out", str(folder / "s.png"), "--n", "4", "--size", "32"]) == 0
    image = cv2.imread(str(folder / "s.png"))
    assert image is not None and image.shape[0] > 64 and (image < 128).any()
    assert cli(["sample-strokes", str(out), "--out", str(folder / "s.gif"), "--n", "2", "--size", "32",
                "--fps", "10"]) == 0
    assert (folder / "s.gif").stat().st_size > 0
    capsys.readouterr()  # the progress bar
    assert cli(["sample-strokes", str(folder / "none"), "--out", str(folder / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_bad_input_gets_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from paintgym.experiments.train_strokes import main

    assert main(["--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err
    monkeypatch.setenv("PAINTGYM_SKETCH_DATA", str(tmp_path))
    assert main(["--data", "sheep", "--out", str(tmp_path / "a")]) == 2  # the default folder holds no sheep
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no stroke dataset 'sheep'" in err and "PAINTGYM_SKETCH_DATA" in err
    np.savez(tmp_path / "images.npz", images=np.zeros((3, 8, 8)))
    assert main(["--data", str(tmp_path / "images.npz"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a stroke dataset" in err and "train_strokes" in err
    rows, offsets = synthetic_split(3, seed=0)
    np.savez(tmp_path / "bad.npz", **{f"{s}_strokes": rows[:, :2] for s in ("train", "valid", "test")},
             **{f"{s}_offsets": offsets for s in ("train", "valid", "test")})
    with pytest.raises(PenDatasetError, match=r"must be \(N, 3\)"):
        load_pen_dataset(tmp_path / "bad.npz")
    write_dataset(tmp_path / "aaron_sheep_flat.npz", (20, 4, 4))
    assert resolve_data("sheep") == tmp_path / "aaron_sheep_flat.npz"  # short names, in $PAINTGYM_SKETCH_DATA
    assert main(["--data", "sheep", "--out", str(tmp_path / "c"), "--conditional", "--steps", "1"]) == 2
    assert "--conditional needs classes" in capsys.readouterr().err


def test_conditional_training_on_two_files() -> None:
    folder = _scratch("paintgym-test-sketch-two-")
    a, b = write_dataset(folder / "a.npz", (40, 6, 6)), write_dataset(folder / "b.npz", (40, 6, 6))
    result = train(Args(data=f"{a},{b}", conditional=True, steps=3, out=str(folder / "run"),
                        **dict(TINY, hidden=8, mixtures=2)), progress=False)
    model = result.model
    assert model.num_classes == 2 and model.names == ["a", "b"]
    assert evaluate(model, drawings("test")[:4], np.array([0, 1, 0, 1]), integer=True)["nll"] > 0
    reward = rewards.build(f"strokeprior(checkpoint={folder / 'run'}, class=b)").terms[0][2]
    assert reward.index == 1
    with pytest.raises(rewards.RewardSpecError, match="class-conditioned"):
        rewards.build(f"strokeprior(checkpoint={folder / 'run'})")


def test_sketch_targets_are_the_datasets_drawings_black_on_white(tmp_path: Path) -> None:
    from paintgym.envs.targets import TargetSource

    rasters = np.zeros((20, 28, 28), np.uint8)
    rasters[:, 10:18, 4:24] = 255  # ink 255 on 0, as the sketch-rnn datasets store it
    rows = np.array([[0, 0, 0], [5, 0, 0], [0, 5, 1]] * 20, np.int16)
    np.savez(tmp_path / "toy.npz", test_images28=rasters, test_strokes=rows,
             test_offsets=np.arange(0, 61, 3, dtype=np.int64))
    source = TargetSource.from_spec(f"sketch:{tmp_path / 'toy.npz'}", 16, split="all")
    images = source.images.numpy()
    assert images.shape == (20, 16, 16, 3)
    assert images[:, 0, 0].min() == 255 and images[:, 8, 8].max() < 10  # white paper, black ink
