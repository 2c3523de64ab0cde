"""The stroke prior as a differentiable regulariser: the ``strokeprior`` score's gradient in the strokes
(:meth:`StrokePriorReward.differentiable_score`, :func:`canvas.pen.pen_points`) and the model-based agent's
``--prior`` term. A tiny prior trained on synthetic arcs (tests/test_sketch_rnn.py; no shared data)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from paintgym import rewards
from paintgym.agents.model_based import ModelBasedArgs
from paintgym.canvas.pen import pen_points, pen_to_stroke_batch, strokes_to_pen
from paintgym.experiments.trainer import Trainer
from tests.test_agents_model_based import read_rows, tiny_config
from tests.test_sketch_rnn import drawings, trained

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _prior():
    return rewards.build(f"strokeprior(checkpoint={trained()[0]})").terms[0][2]


def _random_strokes(batch: int, count: int, seed: int) -> torch.Tensor:
    strokes = 0.2 + 0.6 * torch.rand(batch, count, 13, generator=torch.Generator().manual_seed(seed))
    strokes[..., 8:10] = 1.0
    return strokes


def test_pen_points_are_the_pen_path_of_strokes_to_pen_and_move_with_the_strokes() -> None:
    strokes = _random_strokes(2, 3, seed=1).double()
    strokes[0, 1, 0:2] = strokes[0, 0, 4:6]  # continues stroke 0's line: no lift, no repeated point
    strokes[1, 2, 8:10] = 0.0  # invisible
    points, lifted, stroke, lengths = pen_points(strokes, 4)
    assert lengths.tolist() == [11, 8] and stroke[0, :lengths[0]].tolist() == [0] * 4 + [1] * 3 + [2] * 4
    for b in range(2):  # the same path as the reward's conversion (without its simplification)
        pen = strokes_to_pen(strokes[b], points=4, absolute=True)
        torch.testing.assert_close(points[b, :lengths[b]], torch.from_numpy(pen[:, :2]))
        assert lifted[b, :lengths[b]].tolist() == (pen[:, 2] == 1).tolist()
    moved = strokes.clone().requires_grad_(True)
    pen_points(moved, 4)[0].sum().backward()
    visible = moved.grad[[0, 0, 0, 1, 1], [0, 1, 2, 0, 1]]
    assert visible[:, :6].abs().min() > 0 and visible[:, 6:].abs().max() == 0  # the geometry of what is drawn
    assert moved.grad[1, 2].abs().max() == 0


def test_differentiable_score_gradient_matches_finite_differences_and_ascent_raises_it() -> None:
    prior = _prior()
    strokes = _random_strokes(2, 4, seed=0).requires_grad_(True)
    score = prior.differentiable_score(strokes)
    assert score.shape == (2,)
    (grad,) = torch.autograd.grad(score.sum(), strokes)
    assert grad[..., :6].abs().sum() > 0 and grad[..., 6:8].abs().max() == 0
    eps = 1e-3
    for b, k, c in ((0, 0, 0), (0, 2, 3), (1, 1, 4), (1, 3, 5)):
        up, down = strokes.detach().clone(), strokes.detach().clone()
        up[b, k, c] += eps
        down[b, k, c] -= eps
        numeric = (prior.differentiable_score(up).sum() - prior.differentiable_score(down).sum()) / (2 * eps)
        torch.testing.assert_close(grad[b, k, c], numeric, rtol=0.05, atol=2e-3)
    # ranking as the reward's: held-out arcs above random strokes; nothing painted scores 0
    arcs, _ = pen_to_stroke_batch(drawings("test")[:8])
    assert prior.differentiable_score(arcs).mean() > prior.differentiable_score(_random_strokes(8, 6, 2)).mean() + 0.5
    assert (prior.differentiable_score(torch.zeros(2, 3, 13)) == 0).all()
    # gradient ascent on the strokes raises their score
    moving = strokes.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([moving], lr=0.01)
    for _ in range(15):
        optimiser.zero_grad()
        (-prior.differentiable_score(moving).sum()).backward()
        optimiser.step()
    assert (prior.differentiable_score(moving.detach()) > score.detach() + 0.1).all()


def test_model_based_agent_adds_the_prior_term_to_the_actor_loss(tmp_path: Path) -> None:
    prior = str(trained()[0])
    losses, scores = {}, {}
    for weight in (0.0, 1.0):  # the same seed: the first iteration paints the same episodes
        run = tmp_path / f"w{weight}"
        config = tiny_config(run, max_steps=2, strokes_per_step=2, total_steps=16 * 2, eval_every=0,
                             checkpoint_every=10**9)
        Trainer(config, ModelBasedArgs(width=8, hidden=32, num_minibatches=1, prior=prior,
                                       prior_weight=weight)).train()
        rows = [row for row in read_rows(run) if row["policy_loss"]]
        assert len(rows) == 2 and all(row["prior_score"] for row in rows)
        losses[weight], scores[weight] = float(rows[0]["policy_loss"]), float(rows[0]["prior_score"])
    assert scores[0.0] == pytest.approx(scores[1.0], abs=1e-5) and scores[1.0] != 0
    assert losses[1.0] == pytest.approx(losses[0.0] - scores[1.0], abs=1e-4)  # loss = -gain - weight * score
    with pytest.raises(ValueError, match="prior_weight") as error:
        Trainer(tiny_config(tmp_path / "bad"), ModelBasedArgs(prior=prior, prior_weight=-1.0))
    assert "\n" not in str(error.value)
    saved = {key: value for key, value in asdict(ModelBasedArgs()).items() if not key.startswith("prior")}
    assert ModelBasedArgs(**saved).prior is None  # runs saved before the option train as they did
