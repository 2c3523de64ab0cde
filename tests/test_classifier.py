"""The CNN classifier: training on digits, labelled data sources, checkpoints, exact resume, the
``classifier`` reward (values, blank canvases, gradients, terminal/dense) and its one-line errors."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from paintgym import generative, rewards
from paintgym.canvas.images import DatasetError, load_images, to_float
from paintgym.envs import CanvasVectorEnv
from paintgym.experiments.generative_runs import TrainingError
from paintgym.experiments.train_classifier import Args, train
from paintgym.generative import CheckpointError, Classifier
from paintgym.generative.data import load_labelled
from paintgym.generative.steps import reject_examples
from paintgym.rewards.base import StepContext
from tests.helpers_generative import _scratch, drawn_digits, one_thread

STEPS = 150  # a few seconds on one core; held-out accuracy about 0.97 (chance: 0.1)
TINY = dict(size=32, batch_size=16, width=8, features=16, device="cpu", log_every=2, eval_every=3,
            checkpoint_every=1000)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


@functools.cache
def trained() -> tuple[Path, object]:
    """Run folder and Result of a classifier trained for :data:`STEPS` steps on the digits (seeded)."""
    out = _scratch("paintgym-test-classifier-") / "classifier"
    with one_thread():
        result = train(Args(steps=STEPS, out=str(out), device="cpu", eval_every=1000, log_every=50, seed=0),
                       progress=False)
    return out, result


def _heldout_digits() -> tuple[torch.Tensor, np.ndarray]:
    """The held-out digits (every 10th) as paintgym canvases ``(180, 3, 64, 64)`` and their classes."""
    return to_float(load_images("digits", 64)[::10]), load_digits().target[::10]


def _term(spec: str):
    return rewards.build(spec).terms[0][2]


# ---------------------------------------------------------------- training and checkpoints


def test_training_on_digits_beats_chance_and_writes_its_run_folder() -> None:
    out, result = trained()
    assert result.step == STEPS
    assert result.heldout_accuracy > 0.85  # 10 classes: chance is 0.1
    assert result.heldout["reject_accuracy"] > 0.9  # blank and random-stroke canvases are "none"
    record = json.loads((out / "heldout.json").read_text())
    assert record["accuracy"] == result.heldout_accuracy and record["step"] == STEPS
    assert record["rows"] == [str(i) for i in range(10)] + ["none"] and record["columns"] == record["rows"]
    confusion = np.asarray(record["confusion"])
    assert confusion.shape == (11, 11) and confusion[:10].sum() == record["count"] == 180
    assert np.trace(confusion[:10, :10]) == round(record["accuracy"] * 180)
    image = cv2.imread(str(out / "confusion.png"))
    assert image is not None and image.shape[0] > 200
    assert (out / "ckpt.pt").is_file() and (out / "tb").is_dir()
    assert {"loss/cross_entropy", "train/accuracy", "heldout/accuracy"} <= set(result.history[-1])


def test_checkpoint_round_trip_through_generative_load() -> None:
    out, result = trained()
    model = generative.load(out)  # a run folder, any kind
    same = generative.load(out / "ckpt.pt", kind="classifier", classes=10, size=32)
    assert isinstance(model, Classifier) and model.kind == "classifier" and not model.training
    assert model.config() == result.model.config() == same.config()
    assert model.names == [str(i) for i in range(10)] and model.reject and model.outputs == 11
    x = torch.rand(4, 1, 32, 32)
    torch.testing.assert_close(model(x), result.model(x))
    assert model.features(x).shape == (4, 64) and model.predict(x).shape == (4,)
    with pytest.raises(CheckpointError, match="is a CLASSIFIER checkpoint, not a GAN one"):
        generative.load(out, kind="gan")
    with pytest.raises(CheckpointError, match="different configuration: classes=10"):
        generative.load(out, classes=3)


def test_resume_continues_exactly(tmp_path) -> None:
    straight = train(Args(steps=6, out=str(tmp_path / "straight"), **TINY), progress=False)
    train(Args(steps=3, out=str(tmp_path / "split"), **TINY), progress=False)
    resumed = train(Args(steps=6, out=str(tmp_path / "split"), resume=True, **TINY), progress=False)
    assert [row["step"] for row in resumed.history] == [4, 6]
    for a, b in zip(straight.history[-2:], resumed.history, strict=True):
        assert {k: v for k, v in a.items() if not k.startswith("perf/")} == \
               {k: v for k, v in b.items() if not k.startswith("perf/")}
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(Args(steps=8, out=str(tmp_path / "split"), **TINY), progress=False)
    with pytest.raises(TrainingError, match="--width 16 \\(run has 8\\)"):
        train(Args(steps=8, out=str(tmp_path / "split"), resume=True, **{**TINY, "width": 16}), progress=False)


# ---------------------------------------------------------------- labelled data


def test_labelled_npz_and_class_folders(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    labels = np.repeat([3, 7, 9], 10)  # any integers: classes in sorted order
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    data = load_labelled(tmp_path / "set.npz", 32, split="all")
    assert data.names == ["3", "7", "9"] and data.channels == 1
    assert data.images.shape == (30, 1, 32, 32) and data.labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert len(load_labelled(tmp_path / "set.npz", 32, split="test").labels) == 3  # every 10th
    np.savez(tmp_path / "named.npz", images=images, labels=labels - 3, class_names=np.array(list("abcdefg")))
    assert load_labelled(tmp_path / "named.npz", 32).names == ["a", "e", "g"]

    folder = tmp_path / "styles"
    for name, value in (("dark", 40), ("light", 220)):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            colour = np.full((16, 16, 3), value, np.uint8)
            colour[..., i % 3] = 128
            cv2.imwrite(str(folder / name / f"{i}.png"), colour)
    data = load_labelled(folder, 32)
    assert data.names == ["dark", "light"] and data.channels == 3 and data.labels.tolist() == [0] * 4 + [1] * 4
    result = train(Args(data=str(folder), steps=2, out=str(tmp_path / "run"), **TINY), progress=False)
    assert result.model.names == ["dark", "light"] and result.model.channels == 3
    assert result.heldout["heldout_is_training_data"]  # 8 images: too few to hold any out
    assert _term(f"classifier(checkpoint={tmp_path / 'run'}, class=light)").index == 1  # a class by name

    for source, message in (("faces", "has no class labels"), (tmp_path / "missing", "neither digits nor"),
                            (folder / "dark", "one subfolder of images per class")):
        with pytest.raises(DatasetError, match=message):
            load_labelled(source, 32)
    np.savez(tmp_path / "unlabelled.npz", images=images, other=images)
    with pytest.raises(DatasetError, match="needs 'images' and 'labels'"):
        load_labelled(tmp_path / "unlabelled.npz", 32)


def test_command_line_trains_and_reports_one_line_errors(tmp_path, capsys) -> None:
    from paintgym.cli import cli

    assert cli(["train-classifier", "--data", "faces", "--out", str(tmp_path / "a")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("paintgym train-classifier: error:") and "no class labels" in error
    assert "\n" not in error
    assert cli(["train-classifier", "--steps", "3", "--batch-size", "8", "--width", "4", "--device", "cpu",
                "--out", str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "confusion matrix" in printed
    assert (tmp_path / "b" / "confusion.png").is_file()


# ---------------------------------------------------------------- the reward


def test_a_digit_of_class_k_beats_a_blank_canvas_and_other_digits() -> None:
    out, _ = trained()
    digits, classes = _heldout_digits()
    blanks = torch.stack([torch.ones(3, 64, 64), torch.zeros(3, 64, 64), torch.full((3, 64, 64), 0.5)])
    for k in range(10):
        reward = _term(f"classifier(checkpoint={out}, class={k})")
        assert not reward.dense and reward.differentiable
        scores, blank = reward.score(digits), reward.score(blanks)
        assert scores.shape == (180,) and scores.dtype == torch.float32 and (scores <= 0).all()
        own, other = scores[classes == k], scores[classes != k]
        assert own.median() > blank.max() + 3.0, k  # painting nothing is far from the best
        assert (own[:, None] > blank[None, :]).float().mean() > 0.95, k
        assert (own[:, None] > other[None, :]).float().mean() > 0.95, k
    painted = drawn_digits()  # a 1, a 0 and a 7, two strokes each
    for index, k in enumerate((1, 0, 7)):
        assert _term(f"classifier(checkpoint={out}, class={k})").score(painted).argmax() == index


def test_class_condition_scores_each_paintings_own_class_and_sets_the_envs_classes() -> None:
    out, _ = trained()
    digits, classes = _heldout_digits()
    reward = _term(f"classifier(checkpoint={out}, class=condition)")
    assert reward.uses_condition and reward.num_classes == 10
    asked = torch.as_tensor(classes[:12]).roll(1)  # each digit asked for its own class or another
    expected = torch.stack([_term(f"classifier(checkpoint={out}, class={int(k)})").score(digits[i:i + 1])[0]
                            for i, k in enumerate(asked)])
    torch.testing.assert_close(reward.score(digits[:12], condition=asked), expected)
    env = CanvasVectorEnv(2, canvas_size=16, max_steps=1, reward=f"classifier(checkpoint={out}, class=condition)",
                          condition=True)
    assert env.core.num_classes == 10 and env.single_observation_space.shape == (16, 16, 3 + 10 + 1)
    with pytest.raises(ValueError, match="condition=True"):
        CanvasVectorEnv(2, canvas_size=16, reward=f"classifier(checkpoint={out}, class=condition)")


def test_entropy_reward_pays_for_a_clear_class_not_for_nothing() -> None:
    out, _ = trained()
    reward = _term(f"classifier(checkpoint={out}, entropy=true)")
    digits, _ = _heldout_digits()
    blank = reward.score(torch.stack([torch.ones(3, 64, 64), torch.zeros(3, 64, 64)]))
    scribbles = reward.score(generative.random_stroke_canvases(32, 64, seed=5))
    scores = reward.score(digits)
    assert (scores <= 1e-6).all() and (scores >= -math.log(10) - 1e-4).all()
    assert (blank < -math.log(10) + 0.2).all()  # "none" counts as maximally uncertain
    assert scores.median() > -0.1 and scores.median() > scribbles.median() + 1.0


def test_reward_keeps_the_graph_only_for_a_canvas_that_requires_grad() -> None:
    out, _ = trained()
    digits, _ = _heldout_digits()
    for spec in (f"classifier(checkpoint={out}, class=3)", f"classifier(checkpoint={out}, entropy=true)"):
        reward = _term(spec)
        canvas = (digits[:4] * 0.8 + 0.1).requires_grad_(True)
        score = reward.score(canvas)
        assert score.requires_grad
        score.sum().backward()
        assert canvas.grad is not None and torch.isfinite(canvas.grad).all() and canvas.grad.abs().sum() > 0
        assert all(p.grad is None for p in reward.model.parameters())  # the classifier stays frozen
        assert not reward.score(digits[:4]).requires_grad  # env steps build no graph
        with torch.no_grad():
            assert not reward.score(canvas).requires_grad


def test_terminal_by_default_and_dense_as_a_potential_difference() -> None:
    out, _ = trained()
    digits, _ = _heldout_digits()
    canvases = [torch.ones(3, 3, 64, 64), reject_examples(3, 64, 3, seed=1).float() / 255, digits[:3]]

    def ctx(canvas: torch.Tensor, done: torch.Tensor, step: int) -> StepContext:
        return StepContext(canvas=canvas, prev_canvas=None, target=None, strokes=torch.zeros(3, 1, 13),
                           step=torch.full((3,), step), done=done, active=None)

    not_done, done = torch.zeros(3, dtype=torch.bool), torch.tensor([True, False, True])
    terminal = _term(f"classifier(checkpoint={out}, class=0)")
    assert torch.equal(terminal.step(ctx(canvases[1], not_done, 1)), torch.zeros(3))
    paid = terminal.step(ctx(canvases[2], done, 2))
    assert torch.allclose(paid, torch.where(done, terminal.score(canvases[2]), torch.zeros(3)), atol=1e-5)
    dense = _term(f"classifier(checkpoint={out}, class=0, dense=true)")
    dense.reset(canvases[0], None, torch.ones(3, dtype=torch.bool))
    total = sum(dense.step(ctx(c, not_done, i + 1)) for i, c in enumerate(canvases[1:]))
    assert torch.allclose(total, dense.score(canvases[2]) - dense.score(canvases[0]), atol=1e-4)
    assert "classifier(checkpoint=" in rewards.build(f"classifier(checkpoint={out}, class=0):2").spec()


def test_bad_reward_options_and_checkpoint_kinds_get_one_line_errors(tmp_path) -> None:
    out, _ = trained()
    gan = generative.save_checkpoint(tmp_path / "gan.pt", generative.GAN(32, 1, latent_dim=4, width=4))
    cases = [
        (f"classifier(checkpoint={out}, class=10)", "class 10 is out of range: the classifier has 10 classes, 0..9"),
        (f"classifier(checkpoint={out}, class=-1)", "class -1 is out of range"),
        (f"classifier(checkpoint={out}, class=seven)", "'seven' is not one of this classifier's classes"),
        (f"classifier(checkpoint={out})", "give class=K .* or entropy=true"),
        (f"classifier(checkpoint={out}, class=1, entropy=true)", "one of the two"),
        ("classifier(class=1)", "give checkpoint=PATH"),
        (f"classifier(checkpoint={gan}, class=1)", "is a GAN checkpoint, not a CLASSIFIER one"),
        (f"gan(checkpoint={out})", "is a CLASSIFIER checkpoint, not a GAN one; use a checkpoint written by "
                                   "paintgym train-gan"),
        (f"novelty(vae={out / 'ckpt.pt'})", "is a CLASSIFIER checkpoint, not a VAE one"),
    ]
    for spec, message in cases:
        with pytest.raises(rewards.RewardSpecError, match=message) as caught:
            rewards.build(spec)
        assert "\n" not in str(caught.value), spec
    from paintgym.envs.targets import TargetSource

    with pytest.raises(CheckpointError, match="is a CLASSIFIER checkpoint, not a GAN one"):
        TargetSource.from_spec(f"gan:{out / 'ckpt.pt'}", 32)  # targets=gan:PATH
    assert "class" in rewards.reward_options(rewards.available()["classifier"])
    assert "classifier" in rewards.describe()
