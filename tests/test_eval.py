"""``paintgym eval`` (painters and trained runs), ``paintgym optimise``, and trained agents as painters."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from paintgym import cli as train
from paintgym.agents.painters import measure_quality, resize_images
from paintgym.canvas.images import load_images, to_float
from paintgym.experiments import cli_eval, cli_optimise, cli_train
from paintgym.experiments.pretrained import PolicyPainter

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--agent", "ppo",
        "--canvas-size", "16", "--max-steps", "3", "--num-envs", "8", "--eval-episodes", "4", "--video-size", "32",
        "--threads", "1", "--no-progress", "--seed", "5", "--total-steps", "48", "--eval-every", "0"]
QUICK = ["--targets", "digits", "--size", "16", "--limit", "4", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A PPO run trained for a few steps: 16x16 digits, 3 strokes per episode."""
    run = tmp_path_factory.mktemp("eval") / "run"
    assert cli_train.main([*TINY, "--run-dir", str(run)]) == 0
    return run


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------------------ eval
def test_eval_greedy_writes_csv_paintings_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "greedy"
    assert train.cli(["eval", "--painter", "greedy", "--candidates", "8", "--strokes", "2", "5", "--out", str(out),
                      "--png-size", "40", *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "PSNR dB" in printed and "images/s" in printed
    table = [line.split() for line in printed.splitlines() if line.startswith("greedy ")]
    assert [row[2] for row in table] == ["1", "2", "4", "5"]  # prefixes 1, 2, 4 and N = 5 (and 2 asked for)
    rows = read_csv(out / "quality.csv")
    means = [row for row in rows if row["image"] == "mean"]
    assert [int(row["strokes"]) for row in means] == [1, 2, 4, 5]
    assert len(rows) == 4 * 5  # a mean row and 4 image rows per prefix
    l2 = [float(row["l2"]) for row in means]
    assert l2 == sorted(l2, reverse=True)  # greedy never gets worse
    assert float(means[-1]["images_per_s"]) > 0
    for n in (2, 5):
        for i in range(4):
            image = cv2.imread(str(out / "paintings" / f"greedy_{n}_{i:03d}.png"))
            assert image.shape == (40, 40, 3)
            ET.parse(out / "paintings" / f"greedy_{n}_{i:03d}.svg")
        assert (out / f"contact_sheet_greedy_{n}.png").is_file()


def test_eval_optimise_paints_each_n_on_its_own(tmp_path, capsys):
    out = tmp_path / "optimise"
    assert cli_eval.main(["--painter", "optimise", "--steps", "3", "--candidates", "4", "--strokes", "1", "3",
                          "--out", str(out), *QUICK]) == 0
    capsys.readouterr()
    means = [row for row in read_csv(out / "quality.csv") if row["image"] == "mean"]
    assert sorted({int(row["num_strokes"]) for row in means}) == [1, 3]  # two optimisations
    assert {path.name for path in (out / "paintings").glob("*.png")} == {
        f"optimise_{n}_{i:03d}.png" for n in (1, 3) for i in range(4)}


@pytest.mark.parametrize("argv, message", [
    (["--painter", "greedy", "--strokes", "0"], "--strokes must be at least 1, got 0"),
    (["--painter", "greedy", "--strokes", "4", "-2"], "--strokes must be at least 1, got -2"),
    (["--painter", "splatter"], "unknown painter 'splatter'; available: random, greedy, optimise"),
    (["--painter", "random", "--steps", "4"], "painter 'random' has no option steps"),
    ([], "give either a trained run"),
])
def test_eval_errors_are_one_line(argv, message, tmp_path, capsys):
    assert cli_eval.main([*argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = one_line_error(capsys)
    assert err.startswith("paintgym eval: error:") and message in err


def test_eval_of_an_empty_folder_or_one_without_images_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    for folder in (empty, tmp_path / "notes"):
        assert cli_eval.main(["--painter", "greedy", "--targets", str(folder), "--no-progress",
                              "--out", str(tmp_path / "out")]) == 2
        assert "no image files" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- trained runs
def test_policy_painter_paints_targets_of_another_size(run_dir):
    painter = PolicyPainter(run_dir, device="cpu")
    assert painter.name == "ppo" and painter.canvas_size == 16 and painter.max_strokes == 3
    targets = to_float(load_images("digits", 24)[:5])  # 24x24 targets for a 16x16 agent
    strokes = painter.paint(targets, 3)
    assert strokes.shape == (5, 3, 13) and strokes.min() >= 0 and strokes.max() <= 1
    assert torch.equal(painter.paint(targets, 2), strokes[:, :2])  # the first strokes of the same episodes
    quality = measure_quality(strokes, targets)  # re-rendered at 24x24
    assert quality.counts == [1, 2, 3] and bool(torch.isfinite(quality.psnr).all())
    # the agent saw the targets area-averaged to its 16x16 canvas
    assert torch.equal(painter.paint(resize_images(targets, 16), 3), strokes)
    with pytest.raises(ValueError, match="paints 3 strokes per episode .* ask for at most 3"):
        painter.paint(targets, 4)


def test_eval_a_run_on_its_held_out_targets_and_on_other_ones(run_dir, tmp_path, capsys):
    out = tmp_path / "run_eval"
    assert train.cli(["eval", str(run_dir), "--out", str(out), "--limit", "3", "--no-progress",
                      "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "digits, held out" in printed and "16x16" in printed
    means = [row for row in read_csv(out / "quality.csv") if row["image"] == "mean"]
    assert [int(row["strokes"]) for row in means] == [1, 2, 3]
    # other targets, at another size: the agent paints them at its canvas size, they are measured at 32x32
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(load_images("photos", 40)[:2]):
        cv2.imwrite(str(folder / f"{i}.png"), image[..., ::-1])
    checkpoint = run_dir / "checkpoint.pt"
    assert cli_eval.main([str(checkpoint), "--targets", str(folder), "--size", "32", "--strokes", "2",
                          "--out", str(out / "photos"), "--no-progress", "--device", "cpu"]) == 0
    assert "2 images of" in capsys.readouterr().out
    assert cv2.imread(str(out / "photos" / "paintings" / "ppo_2_001.png")).shape == (256, 256, 3)
    assert cli_eval.main([str(run_dir), "--strokes", "4", "--no-progress", "--out", str(out / "x")]) == 2
    assert "the agent paints 3 strokes per episode; ask for at most 3" in one_line_error(capsys)
    assert cli_eval.main([str(run_dir), "--steps", "4", "--no-progress", "--out", str(out / "x")]) == 2
    assert "a trained run takes none" in one_line_error(capsys)


def test_eval_refines_a_model_based_run_and_paints_through_its_fast_path(tmp_path, capsys):
    run = tmp_path / "mb"
    tiny = [arg for arg in TINY if arg != "ppo"]  # --agent model-based
    tiny[tiny.index("--agent") + 1:tiny.index("--agent") + 1] = ["model-based"]
    assert cli_train.main([*tiny, "--width", "8", "--hidden", "32", "--run-dir", str(run)]) == 0
    painter = PolicyPainter(run, "cpu")
    targets = to_float(load_images("digits", 16)[:4])
    env_painted = painter.agent.algorithm.paint(targets)
    assert torch.equal(painter.paint(targets, 3), env_painted)  # whole episodes without the env
    out = tmp_path / "refined"
    assert cli_eval.main([str(run), "--refine", "5", "--out", str(out), "--limit", "4", "--no-progress",
                          "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "model-based and model-based+refine5 paint 4 images" in printed
    means = {(row["painter"], int(row["strokes"])): float(row["l2"])
             for row in read_csv(out / "quality.csv") if row["image"] == "mean"}
    for n in (1, 2, 3):  # refinement keeps every prefix at least as good (prefix-weighted objective)
        assert means[("model-based+refine5", n)] <= means[("model-based", n)] + 1e-6
    assert (out / "contact_sheet_model-based+refine5_3.png").is_file()
    assert cli_eval.main(["--painter", "greedy", "--refine", "5", "--no-progress", "--out", str(out / "x")]) == 2
    assert "--refine refines a trained agent's paintings" in one_line_error(capsys)
    # the whole painting alone: one refinement per stroke count, each at least as good as the agent's
    alone = tmp_path / "alone"
    assert cli_eval.main([str(run), "--refine", "5", "--refine-prefix-weight", "0", "--out", str(alone), "--limit", "4",
                          "--strokes", "2", "3", "--no-progress", "--device", "cpu"]) == 0
    means = {(row["painter"], int(row["strokes"])): float(row["l2"])
             for row in read_csv(alone / "quality.csv") if row["image"] == "mean"}
    assert all(means[("model-based+refine5", n)] <= means[("model-based", n)] + 1e-6 for n in (2, 3))
    assert cli_eval.main([str(run), "--refine", "5", "--refine-prefix-weight", "-1", "--no-progress",
                          "--out", str(out / "x")]) == 2
    assert "--refine-prefix-weight must be a number >= 0, got -1.0" in one_line_error(capsys)
    # most steps at half size: named apart, never worse than the agent's painting; a fraction of 1 is refused
    coarse = tmp_path / "coarse"
    assert cli_eval.main([str(run), "--refine", "6", "--refine-coarse-to-fine", "0.5", "--out", str(coarse),
                          "--limit", "4", "--no-progress", "--device", "cpu"]) == 0
    means = {(row["painter"], int(row["strokes"])): float(row["l2"])
             for row in read_csv(coarse / "quality.csv") if row["image"] == "mean"}
    assert means[("model-based+refine6-coarse0.5", 3)] <= means[("model-based", 3)] + 1e-6
    assert (coarse / "contact_sheet_model-based+refine6-coarse0.5_3.png").is_file()
    assert cli_eval.main([str(run), "--refine", "5", "--refine-coarse-to-fine", "1", "--no-progress",
                          "--out", str(out / "x")]) == 2
    assert "--refine-coarse-to-fine is the fraction of steps at half size, in [0, 1); got 1.0" in one_line_error(capsys)


# -------------------------------------------------------------------------------------- optimise
def test_optimise_writes_a_png_an_svg_and_a_json(tmp_path, capsys):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), load_images("photos", 48)[2][..., ::-1])
    png, svg, stroke_list = tmp_path / "p.png", tmp_path / "p.svg", tmp_path / "p.json"
    assert train.cli(["optimise", str(image), "--strokes", "4", "--size", "16", "--steps", "6", "--candidates", "8",
                      "--out", str(png), "--out", str(svg), "--out", str(stroke_list), "--out-size", "64",
                      "--threads", "1", "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "with 4 strokes at 16x16" in printed and "PSNR" in printed
    assert cv2.imread(str(png)).shape == (64, 64, 3)
    paths = ET.parse(svg).getroot().findall("{http://www.w3.org/2000/svg}path")
    assert 1 <= len(paths) <= 4
    assert stroke_list.is_file()


@pytest.mark.parametrize("argv, message", [
    (["--strokes", "0"], "--strokes must be at least 1, got 0"),
    (["--out", "painting.bmp"], "unknown extension .bmp"),
    (["--index", "99"], "holds 1 image(s); choose 0 to 0"),
])
def test_optimise_errors_are_one_line(argv, message, tmp_path, capsys):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((20, 20, 3), 128, np.uint8))
    assert cli_optimise.main([str(image), "--steps", "1", "--size", "16", "--no-progress", "--threads", "1",
                              "--device", "cpu", *argv]) == 2
    err = one_line_error(capsys)
    assert err.startswith("paintgym optimise: error:") and message in err
    assert cli_optimise.main([str(tmp_path / "missing.png"), "--no-progress"]) == 2
    assert "neither a built-in" in one_line_error(capsys)


def test_eval_of_an_agent_trained_without_targets_says_why_it_cannot(tmp_path, capsys):
    run = tmp_path / "canvas"
    assert cli_train.main([*TINY, "--env", "paintgym/Canvas-v0", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    for extra in ([], ["--targets", "digits"]):
        assert cli_eval.main([str(run), *extra, "--no-progress", "--out", str(tmp_path / "out")]) == 2
        assert "trained on paintgym/Canvas-v0 without target images" in one_line_error(capsys)


def test_a_run_with_eval_targets_is_evaluated_on_them_and_paints_from_anywhere(tmp_path, monkeypatch, capsys):
    """``paintgym eval RUN`` measures a run on its ``--eval-targets`` (its --targets all trained); a run whose
    images were given by a relative path still loads elsewhere and paints what it is given, and asking it for its
    own images there is a one-line error."""
    train_dir, held_out = tmp_path / "train", tmp_path / "held"
    for folder, count in ((train_dir, 3), (held_out, 2)):
        folder.mkdir()
        for i in range(count):
            cv2.imwrite(str(folder / f"{i}.png"), np.full((20, 20, 3), 60 * i + 30, np.uint8))
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert cli_train.main([*TINY, "--targets", "train", "--eval-targets", "held", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert train.cli(["eval", str(run), "--size", "16", "--no-progress", "--out", str(tmp_path / "own")]) == 0
    assert "held" in capsys.readouterr().out
    rows = read_csv(tmp_path / "own" / "quality.csv")
    assert {row["image"] for row in rows} == {"mean", "0", "1"}  # the 2 held-out images, not the training ones

    monkeypatch.chdir(tmp_path / "held")  # "train" and "held" no longer exist relative to here
    painter = PolicyPainter(run, "cpu")
    assert painter.paint(torch.rand(2, 3, 16, 16), 3).shape == (2, 3, 13)
    assert train.cli(["eval", str(run), "--size", "16", "--no-progress", "--out", str(tmp_path / "lost")]) == 2
    assert "cannot be loaded from" in one_line_error(capsys)
