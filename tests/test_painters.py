"""Painters that need no training (random, greedy, optimise), their registry, and the quality measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_sample_images

import paintgym.canvas.render as render_module
from paintgym.agents import painters
from paintgym.agents.episodes import image_l2
from paintgym.agents.painters import (
    BACKGROUND,
    GreedyPainter,
    OptimisePainter,
    RandomPainter,
    candidate_strokes,
    make_painter,
    measure_quality,
    paint_and_measure,
    painter_options,
    prefix_counts,
    refined,
)
from paintgym.canvas.images import load_images, to_float
from paintgym.canvas.render import paint_, paint_fitted_, render, score_strokes, stroke_alpha, stroke_coverage
from paintgym.rewards.target import psnr, ssim

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def targets() -> torch.Tensor:
    """4 targets at 16x16: two digits (black on white) and two colour photos (scikit-learn's china, flower)."""
    digits = load_images("digits", 16)[:2]
    photos = load_images(np.stack(load_sample_images().images), 16)
    return to_float(np.concatenate([digits, photos]))


def painted(strokes: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return paint_(torch.full_like(like, BACKGROUND), strokes.contiguous())


# --------------------------------------------------------------------------------- greedy scoring
def test_stroke_coverage_matches_the_torch_reference():
    strokes = torch.rand(40, 13, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(stroke_coverage(strokes, 24), stroke_alpha(strokes, 24), atol=5e-4, rtol=0)


def test_paint_fitted_gives_each_stroke_its_least_squares_colour(targets, monkeypatch):
    generator = torch.Generator().manual_seed(5)
    strokes = torch.rand(targets.shape[0], 3, 13, generator=generator)
    fast_canvas, fast = torch.full_like(targets, BACKGROUND), strokes.clone()
    paint_fitted_(fast_canvas, fast, targets)
    monkeypatch.setattr(render_module, "HAVE_NUMBA", False)  # the torch path, stroke by stroke
    slow_canvas, slow = torch.full_like(targets, BACKGROUND), strokes.clone()
    paint_fitted_(slow_canvas, slow, targets)
    torch.testing.assert_close(fast, slow, atol=1e-4, rtol=0)
    torch.testing.assert_close(fast_canvas, slow_canvas, atol=1e-4, rtol=0)
    torch.testing.assert_close(painted(fast, targets), fast_canvas, atol=1e-5, rtol=0)  # colours written back
    # the fitted colour of the last stroke is a minimum of the error: nudging it makes the painting worse
    before = painted(fast[:, :2], targets)
    for delta in (-0.05, 0.05):
        nudged = fast[:, 2:].clone()
        nudged[..., 10:13] = (nudged[..., 10:13] + delta).clamp(0, 1)
        base = (paint_(before.clone(), fast[:, 2:].contiguous()) - targets).square().sum((1, 2, 3))
        worse = (paint_(before.clone(), nudged.contiguous()) - targets).square().sum((1, 2, 3))
        assert (worse >= base - 1e-4).all()


def test_score_strokes_matches_painting_each_candidate(targets):
    generator = torch.Generator().manual_seed(0)
    canvas = painted(torch.rand(4, 3, 13, generator=generator), targets)  # a canvas that is not blank
    candidates = candidate_strokes(4, 12, generator, "cpu")
    colours, deltas = score_strokes(canvas, targets, candidates)  # the numba kernel on the CPU (no gradient)
    # the torch path (taken when a gradient is asked for), in several chunks, agrees and is differentiable
    wanted = candidates.clone().requires_grad_()
    torch_colours, torch_deltas = score_strokes(canvas, targets, wanted, chunk_pixels=3000)
    torch_deltas.sum().backward()
    assert wanted.grad is not None and wanted.grad[..., :10].abs().sum() > 0
    torch.testing.assert_close(torch_colours.detach(), colours, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(torch_deltas.detach(), deltas, atol=2e-2, rtol=1e-3)
    assert colours.shape == (4, 12, 3) and deltas.shape == (4, 12)
    assert colours.min() >= 0 and colours.max() <= 1
    before = (canvas - targets).square().flatten(1).sum(1)
    for k in range(12):  # the reference: paint each candidate with its colour and measure the error
        stroke = candidates[:, k].clone()
        stroke[:, 10:13] = colours[:, k]
        after = (paint_(canvas.clone(), stroke[:, None].contiguous()) - targets).square().flatten(1).sum(1)
        torch.testing.assert_close(deltas[:, k], after - before, atol=2e-2, rtol=1e-3)
        for shift in (-0.05, 0.05):  # and no other colour does better
            other = stroke.clone()
            other[:, 10:13] = (other[:, 10:13] + shift).clamp(0, 1)
            worse = (paint_(canvas.clone(), other[:, None].contiguous()) - targets).square().flatten(1).sum(1)
            assert bool((worse >= after - 2e-2).all())


# ---------------------------------------------------------------------------------------- painters
def test_painters_return_strokes_in_range_on_the_targets_device(targets):
    for painter in (RandomPainter(), GreedyPainter(candidates=8), OptimisePainter(steps=3, candidates=8)):
        strokes = painter.paint(targets, 3)
        assert strokes.shape == (4, 3, 13) and strokes.dtype == torch.float32
        assert strokes.device == targets.device
        assert strokes.min() >= 0 and strokes.max() <= 1


def test_greedy_beats_random_and_optimise_beats_greedy(targets):
    n = 6
    random = image_l2(painted(RandomPainter(seed=1).paint(targets, n), targets), targets)
    greedy = image_l2(painted(GreedyPainter(candidates=32, seed=1).paint(targets, n), targets), targets)
    optimised = OptimisePainter(steps=40, candidates=32, seed=1).paint(targets, n)
    optimise = image_l2(painted(optimised, targets), targets)
    assert bool((greedy < random).all()), (greedy, random)
    assert bool((optimise <= greedy + 1e-6).all()), (optimise, greedy)  # never worse than its greedy start
    assert float(psnr(optimise).mean()) > float(psnr(greedy).mean()) + 3.0  # about +7 dB here


def test_painters_are_deterministic_given_a_seed(targets):
    for make in (lambda seed: RandomPainter(seed=seed), lambda seed: GreedyPainter(candidates=8, seed=seed),
                 lambda seed: OptimisePainter(steps=3, candidates=8, seed=seed)):
        first, again, other = make(5).paint(targets, 3), make(5).paint(targets, 3), make(6).paint(targets, 3)
        assert torch.equal(first, again)
        assert not torch.equal(first, other)


def test_incremental_painters_paint_prefixes(targets):
    for painter in (RandomPainter(seed=2), GreedyPainter(candidates=8, seed=2)):
        assert painter.incremental
        assert torch.equal(painter.paint(targets, 5), painter.paint(targets, 8)[:, :5])
    assert not OptimisePainter().incremental  # each N is its own optimisation


def test_greedy_error_never_rises_and_invisible_strokes_when_nothing_helps(targets):
    strokes = GreedyPainter(candidates=8, seed=0).paint(targets, 12)
    quality = measure_quality(strokes, targets, list(range(1, 13)))
    steps = quality.l2[:, 1:] - quality.l2[:, :-1]
    assert float(steps.max()) <= 1e-6
    # a canvas already equal to its target: no stroke can help, so every stroke is invisible
    white = torch.ones(2, 3, 16, 16)
    idle = GreedyPainter(candidates=8).paint(white, 3)
    assert float(idle[..., 8:10].abs().max()) == 0.0


def test_optimise_takes_a_pluggable_loss_and_a_coarse_to_fine_schedule(targets):
    painter = OptimisePainter(steps=4, candidates=8, coarse_to_fine=0.5)
    assert painter.schedule(16) == [8, 8, 16, 16]
    assert OptimisePainter(steps=3, coarse_to_fine=0.0).schedule(16) == [16, 16, 16]

    def l1(canvas: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (canvas - target).abs().flatten(1).mean(1)

    start = OptimisePainter(steps=0, candidates=8, loss=l1).paint(targets, 4)
    better = OptimisePainter(steps=25, candidates=8, loss=l1).paint(targets, 4)
    assert float(l1(painted(better, targets), targets).mean()) < float(l1(painted(start, targets), targets).mean())


def test_optimise_renders_in_checkpointed_groups_off_the_numba_path(targets, monkeypatch):
    strokes = torch.rand(4, 6, 13, generator=torch.Generator().manual_seed(4), requires_grad=True)
    whole = render(strokes, size=16)
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), strokes)
    monkeypatch.setattr(painters, "HAVE_NUMBA", False)
    blank = torch.full((4, 3, 16, 16), BACKGROUND)
    grouped = OptimisePainter(memory_mb=16)._render(strokes, blank)  # 16 MB: groups of 4 strokes here
    (grad_grouped,) = torch.autograd.grad(grouped.square().sum(), strokes)
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_grouped, grad_whole, atol=1e-3, rtol=1e-3)


def test_optimise_refines_another_painters_painting_and_keeps_its_prefixes_good(targets):
    start = GreedyPainter(candidates=8, seed=1)
    refined = OptimisePainter(steps=15, lr=0.02, init=start, coarse_to_fine=0.0, prefix_weight=0.2)
    assert refined.incremental and not OptimisePainter().incremental
    counts = [1, 2, 4, 8]
    before = measure_quality(start.paint(targets, 8), targets, counts).means()
    after = measure_quality(refined.paint(targets, 8), targets, counts).means()
    assert after[8]["psnr"] > before[8]["psnr"] + 0.3
    for n in counts:  # the any-time objective improves every prefix, not only the whole painting
        assert after[n]["l2"] <= before[n]["l2"] + 1e-6
    with pytest.raises(ValueError, match="prefix_weight"):
        OptimisePainter(prefix_weight=-1.0)
    with pytest.raises(ValueError, match="init"):
        OptimisePainter(init="agent")


def test_refinement_keeps_the_first_strokes_as_painted_and_refines_the_rest_over_them(targets):
    start = GreedyPainter(candidates=8, seed=1)
    strokes = start.paint(targets, 8)
    kept = refined(start, 10, keep_first=3).paint(targets, 8)
    assert torch.equal(kept[:, :3], strokes[:, :3])  # left as the start painted them
    assert not torch.equal(kept[:, 3:], strokes[:, 3:])
    counts = [1, 2, 4, 8]
    before = measure_quality(strokes, targets, counts).means()
    after = measure_quality(kept, targets, counts).means()
    assert after[8]["psnr"] > before[8]["psnr"] + 0.3
    for n in (4, 8):  # the prefixes the refined strokes make are kept good too, over the kept strokes
        assert after[n]["l2"] <= before[n]["l2"] + 1e-6
    # the objective over the kept strokes' canvas is the whole objective less the kept prefixes' constant terms
    painter = refined(start, 1)
    blank = torch.full_like(targets, BACKGROUND)
    whole = painter._objective(strokes, targets)
    tail = painter._objective(strokes[:, 3:], targets, render(strokes[:, :3], blank), kept=3)
    constant = painter.prefix_weight * sum(image_l2(render(strokes[:, :n], blank), targets) for n in (1, 2))
    torch.testing.assert_close(tail + constant, whole, atol=1e-5, rtol=1e-5)
    assert torch.equal(refined(start, 3, keep_first=8).paint(targets, 8), strokes)  # nothing left to refine
    assert refined(start, 3, keep_first=1, coarse_to_fine=0.5).name == "greedy+refine3-coarse0.5-keep1"
    with pytest.raises(ValueError, match="keep_first"):
        OptimisePainter(keep_first=-1)


# ---------------------------------------------------------------------------------------- registry
def test_make_painter_and_its_errors():
    assert isinstance(make_painter("greedy", candidates=4, seed=1), GreedyPainter)
    assert painter_options("greedy")["candidates"] == 64
    with pytest.raises(ValueError, match="unknown painter 'gready'; available: random, greedy, optimise"):
        make_painter("gready")
    with pytest.raises(TypeError, match="painter 'greedy' has no option steps; its options: candidates=64"):
        make_painter("greedy", steps=3)
    with pytest.raises(ValueError, match="candidates must be an integer >= 1"):
        make_painter("greedy", candidates=0)
    with pytest.raises(ValueError, match="coarse_to_fine"):
        make_painter("optimise", coarse_to_fine=1.0)


@pytest.mark.parametrize("painter", [RandomPainter(), GreedyPainter(candidates=4), OptimisePainter(steps=1)])
def test_painters_refuse_no_strokes_and_no_targets(painter, targets):
    for bad in (0, -3):
        with pytest.raises(ValueError, match="number of strokes must be an integer >= 1"):
            painter.paint(targets, bad)
    with pytest.raises(ValueError, match="no targets"):
        painter.paint(targets[:0], 2)
    with pytest.raises(ValueError, match="square"):
        painter.paint(targets[:, :, :8], 2)


# ----------------------------------------------------------------------------------------- quality
def test_prefix_counts():
    assert prefix_counts(1) == [1]
    assert prefix_counts(8) == [1, 2, 4, 8]
    assert prefix_counts(5) == [1, 2, 4, 5]
    assert prefix_counts(32, (3, 32, 40)) == [1, 2, 3, 4, 8, 16, 32]
    with pytest.raises(ValueError):
        prefix_counts(0)


def test_measure_quality_matches_rendering_each_prefix(targets):
    strokes = RandomPainter(seed=3).paint(targets, 5)
    quality = measure_quality(strokes, targets)
    assert quality.counts == [1, 2, 4, 5]
    for j, n in enumerate(quality.counts):
        canvas = render(strokes[:, :n], size=16)
        l2 = image_l2(canvas, targets)
        torch.testing.assert_close(quality.l2[:, j], l2, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(quality.psnr[:, j], psnr(l2), atol=2e-3, rtol=0)
        torch.testing.assert_close(quality.ssim[:, j], ssim(canvas, targets), atol=1e-3, rtol=0)
    means = quality.means()
    assert set(means) == {1, 2, 4, 5}
    assert means[5]["psnr"] == pytest.approx(float(quality.psnr[:, -1].mean()))
    with pytest.raises(ValueError, match="stroke counts must lie in 1..5"):
        measure_quality(strokes, targets, [6])


def test_paint_and_measure_times_batches_and_measures_extra_counts(targets):
    seen = []
    run = paint_and_measure(GreedyPainter(candidates=4), targets, 6, counts=[3], batch_size=3, on_batch=seen.append)
    assert seen == [3, 1]
    assert run.strokes.shape == (4, 6, 13) and run.num_strokes == 6 and run.incremental
    assert run.quality.counts == [1, 2, 3, 4, 6]
    assert run.seconds > 0 and run.images_per_second == pytest.approx(4 / run.seconds)
