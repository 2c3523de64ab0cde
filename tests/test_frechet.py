"""The Fréchet distance in a classifier's features (:mod:`generative.frechet`), and ``paintgym report
--classifier``: the classifier's penultimate features replace the random ones when it is given."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from paintgym.experiments import report
from paintgym.generative import GAN, save_checkpoint
from paintgym.generative.frechet import classifier_features, frechet_distance, load_feature_classifier
from tests.helpers_generative import one_thread
from tests.test_classifier import _heldout_digits, trained


def _gan_checkpoint(folder) -> str:
    """An (untrained) GAN checkpoint: where a classifier is expected, a one-line error."""
    return str(save_checkpoint(folder / "gan.pt", GAN(32, 1, 8, 4)))


def test_frechet_distance_is_zero_for_one_set_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 3.0) == pytest.approx(4 * 9.0, rel=1e-6)  # |mu_a - mu_b|^2, same covariance
    assert frechet_distance(torch.from_numpy(a[:5]), a) > 0  # torch in, and fewer samples than dimensions
    with pytest.raises(ValueError, match="feature sets"):
        frechet_distance(a, a[:, :3])


def test_classifier_features_separate_real_digits_from_noise(tmp_path):
    out, _ = trained()
    classifier = load_feature_classifier(out)  # a run folder (its ckpt.pt)
    canvases, _ = _heldout_digits()  # (180, 3, 64, 64): adapted to the classifier's 32x32 grey input
    real = classifier_features(classifier, canvases)
    assert real.shape == (180, classifier.feature_dim) and real.dtype == torch.float32
    noise = classifier_features(classifier, torch.rand(90, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    halves = frechet_distance(real[::2], real[1::2])
    to_noise = frechet_distance(real[::2], noise)
    print(f"FD real vs real {halves:.2f}, real vs uniform noise {to_noise:.2f}")
    assert to_noise > 10 * halves
    with pytest.raises(ValueError, match="classifier"):  # a GAN is not a feature classifier: one line
        load_feature_classifier(_gan_checkpoint(tmp_path))


def _fake_run(folder, paintings: np.ndarray, targets: np.ndarray, seed: int) -> None:
    """A finished run as ``paintgym report`` reads it: config, summary and final episodes."""
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(f'reward = "target"\nseed = {seed}\ncanvas_size = 64\n')
    (folder / "summary.json").write_text(json.dumps({"eval/l2": 0.1, "global_step": 16}))
    np.savez(folder / "final_episodes.npz", strokes=np.zeros((len(paintings), 1, 13), np.float32),
             paintings=paintings, targets=targets)


def test_report_uses_the_classifier_features_when_given(tmp_path, capsys):
    out, _ = trained()
    canvases, _ = _heldout_digits()
    digits = (canvases[:40].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (40, 64, 64, 3)
    shuffled = digits[np.random.default_rng(0).permutation(40)]
    _fake_run(tmp_path / "runs" / "copies", shuffled, digits, 1)  # paints its targets (in another order)
    _fake_run(tmp_path / "runs" / "blank", np.full_like(digits, 255), digits, 2)  # paints nothing
    with one_thread():
        plain = report.load_run(tmp_path / "runs" / "copies")
        judged = {name: report.load_run(tmp_path / "runs" / name, load_feature_classifier(out))
                  for name in ("copies", "blank")}
    assert judged["copies"].metrics["fd"] == pytest.approx(0.0, abs=1e-3)  # the same images, reordered
    assert judged["blank"].metrics["fd"] > 1.0
    assert plain.metrics["novelty"] != pytest.approx(judged["copies"].metrics["novelty"])  # other features
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--classifier", str(out)]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "FD to targets" in text and f"the classifier {out}" in text
    capsys.readouterr()
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "bad"), "--classifier",
                        _gan_checkpoint(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--classifier" in lines[0] and "classifier" in lines[0], lines
