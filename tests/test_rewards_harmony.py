"""The colour-harmony reward against a straightforward NumPy reference of Cohen-Or et al. (2006)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

from paintgym import rewards
from paintgym.canvas import fastpath
from paintgym.rewards import harmony

# Matsuda's templates as drawn in Cohen-Or et al. 2006, Fig. 2: (sector centre, sector width) in degrees.
# Written out again here, independently of rewards.harmony.TEMPLATES, so a typo there fails the tests.
REFERENCE_TEMPLATES = {
    "i": [(0.0, 18.0)],
    "V": [(0.0, 93.6)],
    "L": [(0.0, 18.0), (90.0, 79.2)],
    "I": [(0.0, 18.0), (180.0, 18.0)],
    "T": [(0.0, 180.0)],
    "Y": [(0.0, 93.6), (180.0, 18.0)],
    "X": [(0.0, 93.6), (180.0, 93.6)],
}
GAP_HALF_WIDTH = (180.0 - 93.6) / 2  # farthest a hue can be from the X template


def reference_distance(hue: np.ndarray, sectors: list[tuple[float, float]], alpha: float) -> np.ndarray:
    """Arc distance in degrees from each hue to the nearest sector border (0 inside a sector)."""
    distance = np.full(hue.shape, np.inf)
    for centre, width in sectors:
        arc = np.abs((hue - alpha - centre + 180.0) % 360.0 - 180.0)
        distance = np.minimum(distance, np.maximum(arc - width / 2.0, 0.0))
    return distance


def reference_harmony(image: np.ndarray) -> float:
    """``mean(S) - min over templates and 360 one-degree rotations of mean(S * distance) / 43.2``.

    :param image: ``(H, W, 3)`` float RGB in [0, 1].
    """
    hsv = rgb_to_hsv(image.astype(np.float64))
    hue, saturation = hsv[..., 0].ravel() * 360.0, hsv[..., 1].ravel()
    best = np.inf
    for sectors in REFERENCE_TEMPLATES.values():
        for alpha in range(360):
            best = min(best, float((reference_distance(hue, sectors, alpha) * saturation).sum()))
    return float(saturation.mean()) - best / (hue.size * GAP_HALF_WIDTH)


def images_from_hues(hues: np.ndarray, saturation: float | np.ndarray = 1.0, value: float | np.ndarray = 1.0
                     ) -> torch.Tensor:
    """``(B, H, W)`` hues in degrees -> ``(B, 3, H, W)`` float32 RGB canvases."""
    hsv = np.stack([np.broadcast_to(c, hues.shape) for c in ((hues % 360.0) / 360.0, saturation, value)], -1)
    return torch.from_numpy(hsv_to_rgb(hsv).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def hues_inside(template: str, rotation: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Hues drawn uniformly from the sectors of a rotated template (strictly inside each sector)."""
    sectors = REFERENCE_TEMPLATES[template]
    which = rng.integers(len(sectors), size=shape)
    centres = np.array([c for c, _ in sectors])[which]
    widths = np.array([w for _, w in sectors])[which]
    return rotation + centres + rng.uniform(-0.45, 0.45, size=shape) * widths


def rotate_hue(canvas: torch.Tensor, degrees: float) -> torch.Tensor:
    hsv = rgb_to_hsv(canvas.permute(0, 2, 3, 1).double().numpy())
    hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
    return torch.from_numpy(hsv_to_rgb(hsv).astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def test_templates_match_the_paper():
    assert harmony.TEMPLATES == {name: tuple(s) for name, s in REFERENCE_TEMPLATES.items()}
    assert harmony.MAX_DISTANCE == pytest.approx(GAP_HALF_WIDTH)


def test_matches_numpy_reference_on_random_images():
    rng = np.random.default_rng(0)
    uniform = rng.uniform(size=(3, 12, 12, 3))
    structured = images_from_hues(hues_inside("L", 77.0, (3, 12, 12), rng) + rng.normal(0, 25, (3, 12, 12)),
                                  rng.uniform(0, 1, (3, 12, 12)), rng.uniform(0.2, 1, (3, 12, 12)))
    images = np.concatenate([uniform, structured.permute(0, 2, 3, 1).numpy()]).astype(np.float32)
    expected = np.array([reference_harmony(image) for image in images])
    got = harmony.harmony_score(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).numpy()
    # the batched version interpolates hues linearly between 1-degree bins: exact except near sector borders
    np.testing.assert_allclose(got, expected, atol=5e-4)
    assert np.ptp(expected) > 0.05  # the images really differ in harmony


@pytest.mark.parametrize("template", list(REFERENCE_TEMPLATES))
def test_hues_inside_a_template_beat_uniform_hues(template):
    rng = np.random.default_rng(1)
    inside = images_from_hues(hues_inside(template, rng.uniform(0, 360), (4, 16, 16), rng))
    uniform = images_from_hues(rng.uniform(0, 360, (4, 16, 16)))
    inside_score, uniform_score = harmony.harmony_score(inside), harmony.harmony_score(uniform)
    assert inside_score.min() > 0.995
    assert uniform_score.max() < 0.85
    assert (inside_score.min() > uniform_score.max()).item()


def test_invariant_to_a_global_hue_rotation():
    rng = np.random.default_rng(2)
    canvas = torch.from_numpy(rng.uniform(size=(4, 3, 16, 16)).astype(np.float32))
    canvas[2:] = images_from_hues(hues_inside("Y", 10.0, (2, 16, 16), rng), 0.8, 0.9)
    base = harmony.harmony_score(canvas)
    for degrees in (37.0, 123.5, 301.25):
        torch.testing.assert_close(harmony.harmony_score(rotate_hue(canvas, degrees)), base, atol=5e-4, rtol=0)


def test_a_canvas_without_colour_scores_zero_and_colour_fitting_a_template_scores_more():
    rng = np.random.default_rng(3)
    grey = torch.from_numpy(rng.uniform(size=(3, 1, 16, 16)).astype(np.float32)).expand(3, 3, 16, 16)
    blank = torch.ones(2, 3, 16, 16)
    black = torch.zeros(1, 3, 16, 16)
    assert torch.equal(harmony.harmony_score(torch.cat([grey, blank, black])), torch.zeros(6))
    full = images_from_hues(hues_inside("V", 40.0, (1, 16, 16), rng))
    pale = images_from_hues(hues_inside("V", 40.0, (1, 16, 16), rng), saturation=0.5)
    half = full.clone()
    half[..., 8:] = 1.0  # the right half left white
    scores = harmony.harmony_score(torch.cat([full, pale, half]))
    assert scores[0] > 0.99
    torch.testing.assert_close(scores[1:], torch.full((2,), 0.5 * float(scores[0])), atol=0.01, rtol=0)


def test_best_template_and_rotation_fit_the_image():
    rng = np.random.default_rng(4)
    canvas = images_from_hues(hues_inside("I", 70.0, (2, 16, 16), rng))
    score, template, rotation = harmony.fit_templates(canvas)
    assert torch.all(score > 0.999)
    hsv = rgb_to_hsv(canvas.permute(0, 2, 3, 1).numpy().astype(np.float64))
    names = list(harmony.TEMPLATES)
    for b in range(2):  # the reported template, at the reported rotation, really holds the hues
        hue, saturation = hsv[b, ..., 0].ravel() * 360.0, hsv[b, ..., 1].ravel()
        distance = reference_distance(hue, REFERENCE_TEMPLATES[names[template[b]]], float(rotation[b]))
        assert float((distance * saturation).mean()) < 0.05


@pytest.mark.skipif(not fastpath.HAVE_NUMBA, reason="numba not installed")
def test_numba_histogram_matches_torch():
    rng = np.random.default_rng(5)
    canvas = torch.from_numpy(rng.uniform(size=(5, 3, 20, 20)).astype(np.float32))
    canvas[0] = 0.5  # grey
    canvas[1, :, :10] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # ties and hue 0 at the wheel's seam
    canvas[2] = torch.round(canvas[2] * 4) / 4  # equal channels: tie-breaking between maxima
    canvas = torch.cat([canvas, canvas.flip(0).repeat(4, 1, 1, 1)])  # a batch for the parallel kernel too
    for batch in (5, len(canvas)):
        for bins in (360, 100):
            fast = harmony.hue_histogram(canvas[:batch], bins)
            torch.testing.assert_close(fast, harmony.hue_histogram_torch(canvas[:batch], bins), atol=1e-4, rtol=1e-5)


def test_reward_is_terminal_by_default_and_dense_on_request():
    assert not rewards.build("harmony").terms[0][2].dense
    assert rewards.build("harmony(dense=true)").terms[0][2].dense
    with pytest.raises(rewards.RewardSpecError, match="bins"):
        rewards.build("harmony(bins=2)")
