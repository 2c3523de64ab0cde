"""The ``style`` (Gram matrices, Gatys et al. 2016) and ``content`` rewards."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data
import torch

from paintgym import rewards
from paintgym.canvas.images import to_float


def _halves(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The left and right squares of a landscape photo."""
    side = min(image.shape[0], image.shape[1] // 2)
    return image[:side, :side], image[:side, -side:]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two textured photos that come with scikit-image, split into a left and a right half each."""
    folder = tmp_path_factory.mktemp("style")
    coffee_left, coffee_right = _halves(skimage.data.coffee())
    chelsea_left, _ = _halves(skimage.data.chelsea())
    iio.imwrite(folder / "style.png", coffee_left)
    resize = lambda image: torch.nn.functional.interpolate(  # noqa: E731
        to_float(image[None].copy()), size=(64, 64), mode="area")
    return folder / "style.png", resize(coffee_left), resize(coffee_right), resize(chelsea_left)


def test_style_prefers_the_style_images_texture_to_another_image_and_to_a_blank_canvas(photos):
    style_path, same, same_elsewhere, other = photos
    reward = rewards.build(f"style(image={style_path})").terms[0][2]
    blank = torch.ones(1, 3, 64, 64)
    scores = reward.score(torch.cat([same, same_elsewhere, other, blank]))
    assert scores[0] > -0.05  # the style image itself (resized): nearly the maximum, 0
    assert scores[1] > scores[2] and scores[1] > scores[3]  # the same photo's other half has its texture


def test_content_is_highest_for_the_image_itself_and_uses_the_target_without_image(photos):
    style_path, same, same_elsewhere, other = photos
    reward = rewards.build(f"content(image={style_path})").terms[0][2]
    scores = reward.score(torch.cat([same, same_elsewhere, other]))
    assert scores[0] > scores[1] and scores[0] > scores[2]
    to_target = rewards.build("content").terms[0][2]
    assert to_target.needs_target
    torch.testing.assert_close(to_target.score(same, same), torch.zeros(1))
    with pytest.raises(ValueError, match="target"):
        to_target.score(same)


def test_style_and_content_are_differentiable(photos):
    style_path, same, _, _ = photos
    canvas = torch.full((2, 3, 64, 64), 0.5, requires_grad=True)
    total = rewards.build(f"style(image={style_path}):1, content:1").score(canvas, same.expand(2, -1, -1, -1))
    total.sum().backward()
    assert canvas.grad is not None and canvas.grad.abs().sum() > 0


def test_features_from_a_trained_model(tmp_path, photos):
    from paintgym import generative

    style_path, same, _, other = photos
    path = tmp_path / "vae.pt"
    torch.manual_seed(0)
    generative.save_checkpoint(path, generative.VAE(size=32, channels=3, latent_dim=4, width=8))
    reward = rewards.build(f"style(image={style_path},features={path})").terms[0][2]
    assert reward.score(torch.cat([same, other])).shape == (2,)
    with pytest.raises(rewards.RewardSpecError, match="image=PATH"):
        rewards.build("style")


def test_optimise_paints_in_a_style_and_refuses_terms_it_cannot_differentiate(photos, tmp_path, capsys):
    from paintgym.experiments import cli_optimise

    style_path, *_ = photos
    out = tmp_path / "styled.png"
    assert cli_optimise.main([str(style_path), "--strokes", "4", "--size", "16", "--steps", "3", "--candidates", "4",
                              "--reward", f"style(image={style_path},size=16):0.05", "--out", str(out),
                              "--out-size", "32", "--no-progress"]) == 0
    assert out.exists()
    assert cli_optimise.main([str(style_path), "--strokes", "2", "--size", "16", "--steps", "1", "--reward",
                              "strokes", "--out", str(tmp_path / "x.png"), "--no-progress"]) == 2
    assert "not differentiable" in capsys.readouterr().err
