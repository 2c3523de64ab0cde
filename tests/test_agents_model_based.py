"""The model-based agent: gradients through the renderer, learning, critic, resume, NaN, bad input."""

from __future__ import annotations

import csv
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from paintgym import rewards
from paintgym.agents.common import TrainingDiverged
from paintgym.agents.model_based import (
    ModelBased,
    ModelBasedArgs,
    PatchStrokeActor,
    fold_batch_norms,
    observation_state,
    paint_and_score,
    residual_anchors,
    stroke_layout,
)
from paintgym.agents.painters import GreedyPainter, measure_quality
from paintgym.agents.windows import can_cut_with_numba, cut_windows, cut_windows_numba
from paintgym.canvas.fastpath import HAVE_NUMBA
from paintgym.canvas.render import paint_fitted_
from paintgym.canvas.strokes import radius_fraction
from paintgym.envs.targets import TargetSource
from paintgym.experiments import cli_train
from paintgym.experiments.checkpoints import load_checkpoint
from paintgym.experiments.pretrained import PolicyPainter
from paintgym.experiments.train_config import TrainConfig
from paintgym.experiments.trainer import Trainer
from tests.conftest import interrupt_during

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SMALL = ModelBasedArgs(width=8, hidden=32)


def tiny_config(run_dir: Path, **changes) -> TrainConfig:
    values = dict(agent="model-based", canvas_size=16, max_steps=2, strokes_per_step=2, num_envs=8, eval_episodes=4,
                  video_size=32, threads=1, progress=False, seed=3, total_steps=16 * 4, eval_every=32,
                  checkpoint_every=16, run_dir=str(run_dir))
    values.update(changes)
    return TrainConfig(**values)


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_reward_gradient_through_the_renderer_matches_finite_differences():
    """d(gain)/d(stroke numbers) by autograd through render() equals central differences (float64)."""
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 16, 16, generator=generator, dtype=torch.float64)
    canvas = torch.ones(2, 3, 16, 16, dtype=torch.float64)
    strokes = (0.2 + 0.6 * torch.rand(2, 3, 13, generator=generator, dtype=torch.float64)).requires_grad_(True)
    reward = rewards.build("target")

    def gain(s: torch.Tensor) -> torch.Tensor:
        return paint_and_score(reward, canvas, target, s, per_stroke=0.9, final=True)[0].sum()

    (grad,) = torch.autograd.grad(gain(strokes), strokes)
    assert grad.abs().sum() > 0
    # a few numbers of each kind: positions, radii, opacities, colours, in the first and last stroke
    for index in [(0, 0, 0), (0, 0, 5), (1, 2, 3), (0, 1, 6), (1, 0, 7), (0, 2, 8), (1, 1, 9), (0, 0, 10),
                  (1, 2, 12)]:
        step = 1e-6
        with torch.no_grad():
            up, down = strokes.detach().clone(), strokes.detach().clone()
            up[index] += step
            down[index] -= step
            numeric = (gain(up) - gain(down)) / (2 * step)
        assert grad[index].item() == pytest.approx(numeric.item(), rel=1e-3, abs=1e-7), index


def test_one_iteration_moves_the_actor_along_the_reward_gradient(tiny_env):
    env = tiny_env(8, strokes_per_step=2)
    algo = ModelBased(env, SMALL)
    obs, _ = env.reset(seed=0)
    algo.start(obs)
    before = [p.detach().clone() for p in algo.actor.parameters()]
    metrics = algo.train_iteration(1, 10)
    changed = [not torch.equal(b, p) for b, p in zip(before, algo.actor.parameters(), strict=True)]
    assert all(changed)  # the reward's gradient reached every actor layer through the renderer
    assert metrics["episodes"] == 8 and metrics["actor_grad_norm"] > 0
    assert "value_loss" not in metrics  # whole-episode unroll with a differentiable reward: no critic needed
    assert metrics["policy_loss"] == pytest.approx(-metrics["return"], rel=0.05, abs=2e-3)  # the same return


def test_one_step_horizon_trains_the_critic(tiny_env):
    env = tiny_env(8, strokes_per_step=1)
    algo = ModelBased(env, ModelBasedArgs(width=8, hidden=32, horizon=1))
    obs, _ = env.reset(seed=0)
    algo.start(obs)
    critic_before = [p.detach().clone() for p in algo.critic.parameters()]
    metrics = algo.train_iteration(1, 10)
    assert metrics["value_loss"] >= 0
    assert all(not torch.equal(b, p) for b, p in zip(critic_before, algo.critic.parameters(), strict=True))


def test_a_reward_without_gradient_needs_the_critic(tiny_env):
    env = tiny_env(4, reward="target:1.0, harmony:0.1")
    with pytest.raises(ValueError, match="harmony.*not differentiable.*--horizon"):
        ModelBased(env, ModelBasedArgs(width=8, hidden=32, horizon=env.core.max_steps))
    automatic = ModelBased(env, SMALL)  # horizon 0: one step, the critic carries the rest
    assert automatic.horizon == 1 and automatic.uses_critic
    assert ModelBased(tiny_env(4), SMALL).horizon == env.core.max_steps  # every term differentiable: whole episode


def test_discrete_actions_are_refused(tiny_env):
    with pytest.raises(ValueError, match="continuous"):
        ModelBased(tiny_env(4, action_mode="discrete"), SMALL)


def test_learns_a_tiny_task_and_beats_greedy_there(tmp_path):
    """Held-out digits at 16x16 with 2 strokes: the trained agent paints them better than before training
    and better than greedy search (best of 64 random shapes per stroke, least-squares colours)."""
    config = tiny_config(tmp_path / "run", max_steps=1, strokes_per_step=2, num_envs=32, total_steps=8000,
                         eval_every=0, checkpoint_every=10**9)
    trainer = Trainer(config, ModelBasedArgs(width=8, hidden=64, learning_rate=3e-3))
    targets = TargetSource.from_spec("digits", 16, "cpu", "test").images.permute(0, 3, 1, 2).float().div(255.0)
    untrained = measure_quality(trainer.algo.paint(targets), targets, [2]).means()[2]["psnr"]
    trainer.train()
    trained = measure_quality(PolicyPainter(tmp_path / "run", "cpu").paint(targets, 2), targets, [2]).means()[2]["psnr"]
    greedy = measure_quality(GreedyPainter(64, seed=0).paint(targets, 2), targets, [2]).means()[2]["psnr"]
    assert trained > untrained + 1.0
    assert trained > greedy + 0.5, (trained, greedy)  # measured 13.55 against 11.49 dB


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C handling needs the main thread")
    args = ModelBasedArgs(width=8, hidden=32, horizon=1, exploration_noise=0.05)  # critic and noise stream too
    Trainer(tiny_config(tmp_path / "full"), args).train()
    expected = read_rows(tmp_path / "full")

    cut = Trainer(tiny_config(tmp_path / "cut"), args)
    interrupt_during(cut, iteration=2)
    assert cut.train().status == "interrupted"
    assert cli_train.main(["--resume", str(tmp_path / "cut")]) == 0
    resumed = read_rows(tmp_path / "cut")
    keys = ["return", "l2", "policy_loss", "value_loss", "actor_grad_norm", "eval/l2"]
    assert [row["step"] for row in resumed] == [row["step"] for row in expected]
    for got, want in zip(resumed[3:], expected[3:], strict=True):
        assert {k: got[k] for k in keys} == {k: want[k] for k in keys}


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "nan"), SMALL)
    train_iteration = trainer.algo.train_iteration

    def diverge(iteration: int, total: int) -> dict[str, float]:
        metrics = train_iteration(iteration, total)
        if iteration == 3:
            metrics["policy_loss"] = float("nan")
        return metrics

    trainer.algo.train_iteration = diverge
    with pytest.raises(TrainingDiverged, match="policy_loss=nan.*last good checkpoint"):
        trainer.train()
    assert load_checkpoint(tmp_path / "nan")["global_step"] == 32  # written after iteration 2


def test_residual_anchors_go_where_the_painting_is_furthest_from_its_target():
    """Fine-level strokes take the cells with the largest residual, the worst first; coarse levels keep the layout."""
    anchor = stroke_layout(32)[21:24].expand(2, -1, -1)  # three level-3 strokes of a 32-stroke episode
    canvas = torch.full((2, 3, 64, 64), 0.5)
    target = canvas.clone()
    target[0, :, 40:48, 8:16] = 1.0  # cell (x 1, y 5) of the 8x8 level-3 grid: the worst
    target[0, :, 0:8, 56:64] = 0.8  # cell (x 7, y 0): second worst
    target[1, :, 24:32, 24:32] = 0.0  # cell (x 3, y 3)
    partial = [3]  # 32 strokes: only level 3 is partly painted
    moved = residual_anchors(anchor, canvas, target, partial)
    assert torch.equal(moved[..., 2], anchor[..., 2])  # the levels stay
    assert moved[0, 0, :2].tolist() == [1.5 / 8, 5.5 / 8] and moved[0, 1, :2].tolist() == [7.5 / 8, 0.5 / 8]
    assert moved[1, 0, :2].tolist() == [3.5 / 8, 3.5 / 8]
    coarse = stroke_layout(32)[:4].expand(2, -1, -1)
    assert torch.equal(residual_anchors(coarse, canvas, target, partial), coarse)  # levels 0 and 1: the fixed layout


def test_reach_bounds_how_far_strokes_go_from_their_anchors(tiny_env):
    """--reach scales the windows and the strokes' extent in cells of their level; bad values are refused."""
    anchor = torch.tensor([[0.375, 0.625, 2], [0.4375, 0.5625, 3], [0.5625, 0.4375, 3], [0.6875, 0.3125, 3]])
    anchor = anchor.expand(3, -1, -1)  # cells of levels 2 and 3 away from the edges (no clamping to the canvas)
    raw = torch.full((3, 4, 13), 20.0)  # saturated: every stroke as far and as wide as it may go
    raw[1] = -20.0
    raw[2] = 0.0
    cell = 0.5 ** anchor[..., 2]
    for reach in (0.8, 1.0):
        actor = PatchStrokeActor(has_target=True, size=64, strokes_per_step=4, width=8, hidden=32, reach=reach)
        strokes = actor._strokes(raw, anchor)
        start = (strokes[..., 0:2] - anchor[..., 0:2]).abs()
        assert torch.allclose(start[:2], (reach * cell)[:2, :, None].expand(-1, -1, 2), atol=1e-5)
        assert torch.equal(strokes[2, :, 0:2], anchor[2, :, 0:2])  # raw 0: at the anchor
        reaches = (strokes[..., 2:6] - strokes[..., 0:2].repeat(1, 1, 2)).abs()
        assert (reaches <= 1.5 * reach * cell[..., None] + 1e-5).all()
        radius = radius_fraction(strokes[0, :, 6:8])  # the widest the actor may paint
        assert torch.allclose(radius, (0.6 * reach * cell[0])[:, None].expand(-1, 2), rtol=1e-4)
    with pytest.raises(ValueError, match="reach"):
        PatchStrokeActor(has_target=True, size=64, strokes_per_step=4, width=8, hidden=32, reach=0.0)
    assert ModelBased(tiny_env(4), replace(SMALL, reach=0.8)).actor.cell[0].item() == pytest.approx(0.8)
    with pytest.raises(ValueError, match="reach"):  # the free actor has no cells to reach from
        ModelBased(tiny_env(4), replace(SMALL, actor="free", reach=0.8))


def test_batch_norm_statistics_are_kept_per_episode_step(tiny_env, tmp_path):
    """Training measures each step's window statistics; acting normalises each window with its step's."""
    env = tiny_env(8, strokes_per_step=2)
    algo = ModelBased(env, SMALL)
    obs, _ = env.reset(seed=0)
    algo.start(obs)
    assert not algo.actor.step_stats_tracked.any()
    algo.train_iteration(1, 10)
    stats = algo.actor.running_step_stats[0]  # (steps, 2, channels)
    assert algo.actor.step_stats_tracked.all() and algo.actor.max_steps == 2
    assert not torch.allclose(stats[0], stats[1], atol=1e-3)  # the blank canvas's windows differ from later ones
    # acting at step 1 differs from normalising with one average over the steps (what the batch norms keep)
    targets = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    painted = algo.paint(targets)
    # acting on env observations, all at one step (the folded network of that step) or at several (each window
    # normalised by its own step), paints what the per-window path paints
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(algo.act(obs))
    mixed = obs.clone()
    mixed[0, ..., -1] = 0  # the first env's progress plane back at step 0
    for observation in (obs, mixed):
        canvas, seen, progress, _ = observation_state(observation, True)
        with torch.no_grad(), algo._acting():
            expected = algo.actor(canvas, seen, progress).contiguous()  # no step: each window by its own step
        paint_fitted_(canvas.contiguous(), expected, seen)  # the colours it gets, as act() fits them
        assert torch.allclose(algo.act(observation), expected.flatten(1) * 2 - 1, atol=1e-5)
    algo.actor.step_stats_tracked.zero_()
    assert not torch.allclose(painted, algo.paint(targets), atol=1e-4)
    # a run saved before the statistics were kept loads, and paints with the batch norms' own
    state = {k: v for k, v in algo.actor.state_dict().items() if "step_stats" not in k}
    old = ModelBased(env, SMALL)
    old.actor.load_state_dict(state)
    assert not old.actor.step_stats_tracked.any()
    assert torch.allclose(old.paint(targets), algo.paint(targets), atol=1e-5)


def test_second_look_starts_as_no_correction_and_learns_through_the_renderer(tiny_env):
    env = tiny_env(8, strokes_per_step=2)
    torch.manual_seed(0)
    plain = ModelBased(env, SMALL)
    torch.manual_seed(0)
    looking = ModelBased(env, ModelBasedArgs(width=8, hidden=32, second_look=True))
    targets = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    shared = {k: v for k, v in looking.actor.state_dict().items() if "step_stats" not in k}  # (a look's more)
    plain.actor.load_state_dict(shared, strict=False)
    assert torch.equal(plain.paint(targets), looking.paint(targets))  # zero-initialised correction
    obs, _ = env.reset(seed=0)
    looking.start(obs)
    before = [p.detach().clone() for p in looking.actor.second_look.parameters()]
    looking.train_iteration(1, 10)
    assert all(not torch.equal(b, p) for b, p in zip(before, looking.actor.second_look.parameters(), strict=True))


def test_inference_paths_paint_what_the_training_actor_paints(tiny_env, tmp_path):
    """Batch norms folded into the convolutions, and batches split over CPU threads, change nothing but speed."""
    env = tiny_env(8, strokes_per_step=2)
    algo = ModelBased(env, SMALL)
    algo.actor.eval()
    for layer in algo.actor.cnn:  # running statistics that differ from the initial identity
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    canvas, target = torch.rand(5, 3, 16, 16), torch.rand(5, 3, 16, 16)
    planes = algo.actor._planes(canvas, target)
    with torch.no_grad():
        assert torch.allclose(fold_batch_norms(algo.actor.cnn)(planes), algo.actor.cnn(planes), atol=1e-5)
        # the planes folded in too: raw windows in, the same features (the borders included); a step training
        # has not measured yet folds in the batch norms' own statistics
        inference = algo.actor.inference_cnn(0)
        assert torch.allclose(inference(torch.cat([canvas, target], 1)), algo.actor.cnn(planes), atol=1e-5)
        assert algo.actor.inference_cnn(0) is inference  # reused while nothing changes
        algo.actor.cnn[0].weight.mul_(1.5)  # a weight update: rebuilt
        assert torch.allclose(algo.actor.inference_cnn(0)(torch.cat([canvas, target], 1)), algo.actor.cnn(planes),
                              atol=1e-5)
        algo.actor.running_step_stats[0, 1, 0].uniform_(-0.5, 0.5)  # step 1's own statistics, once measured
        algo.actor.running_step_stats[0, 1, 1].uniform_(0.5, 2.0)
        algo.actor.step_stats_tracked[0, 1] = True
        own = fold_batch_norms(algo.actor.cnn, algo.actor.step_statistics()[1])(planes)
        assert torch.allclose(algo.actor.inference_cnn(1)(torch.cat([canvas, target], 1)), own, atol=1e-5)
        assert not torch.allclose(own, algo.actor.cnn(planes), atol=1e-3)
    with pytest.raises(ValueError, match="pass step"):
        algo.actor.inference_cnn()
    free = PatchStrokeActor(has_target=False, size=16, strokes_per_step=2, width=8, hidden=32).eval()
    with torch.no_grad():  # no target: 3 planes, group norms (nothing to fold but the planes)
        assert torch.allclose(free.inference_cnn()(canvas), free.cnn(free._planes(canvas, None)), atol=1e-5)
    coords = PatchStrokeActor(has_target=True, size=16, strokes_per_step=2, width=8, hidden=32, window_coords=True)
    with torch.no_grad():  # coordinate planes: folded into the first convolution's bias per pixel
        coords.eval().cnn[1].running_mean.uniform_(-0.5, 0.5)
        assert torch.allclose(coords.inference_cnn(0)(torch.cat([canvas, target], 1)),
                              coords.cnn(torch.cat([planes, coords.coords.expand(5, -1, -1, -1)], 1)), atol=1e-5)
    for actor, seen in ((algo.actor, target), (free, None), (coords, target)):  # acting (no grad) = training's maths
        for step in (None, actor.max_steps - 1):  # folded per step, or each canvas's step from its progress
            progress = torch.full((5,), (step or 0) / actor.max_steps)
            with torch.no_grad():
                acting = actor(canvas, seen, progress, step=step)
            assert torch.allclose(acting, actor(canvas, seen, progress, step=step).detach(), atol=1e-5)

    Trainer(tiny_config(tmp_path / "run", total_steps=32, eval_every=0), SMALL).train()
    painter = PolicyPainter(tmp_path / "run", "cpu", batch_size=4)
    targets = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threaded = painter.paint(targets, 4)
        assert torch.get_num_threads() == 2  # restored after the pieces are painted
        painter.threaded_batches = False
        assert torch.allclose(painter.paint(targets, 4), threaded, atol=1e-6)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not HAVE_NUMBA, reason="the fast windows are a numba kernel (PAINTGYM_NO_NUMBA is set)")
@pytest.mark.parametrize("threads", [1, 2])
def test_numba_windows_are_the_grid_sample_windows(threads):
    """The numba window cutter samples what grid_sample samples: inside, across the borders (windows
    larger than the canvas, as the first levels' are), with and without a target, in the serial and parallel kernels."""
    generator = torch.Generator().manual_seed(0)
    batch, strokes, patch = 20, 3, 16  # 20 paintings: the parallel kernel with 2 threads
    canvas, target = torch.rand(2, batch, 3, 24, 24, generator=generator)
    centre = torch.rand(batch, strokes, 2, generator=generator) * 1.4 - 0.2  # some windows hang over the edges
    span = torch.rand(batch, strokes, 1, generator=generator) * 2.5 + 0.05
    offsets = (torch.arange(patch) + 0.5) / patch - 0.5
    xs, ys = centre[..., 0:1] + offsets * span, centre[..., 1:2] + offsets * span
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            assert can_cut_with_numba(canvas, target) and can_cut_with_numba(canvas, None)
            both = cut_windows_numba(canvas, target, xs, ys)
            alone = cut_windows_numba(canvas, None, xs, ys)
    finally:
        torch.set_num_threads(previous)
    assert both.shape == (batch * strokes, 6, patch, patch) and both.is_contiguous(memory_format=torch.channels_last)
    expected = torch.cat([cut_windows(canvas, xs, ys), cut_windows(target, xs, ys)], 1)
    assert torch.allclose(both, expected, atol=1e-6)
    assert torch.allclose(alone, expected[:, :3], atol=1e-6)
    assert not can_cut_with_numba(canvas.double(), target)  # other dtypes (and devices) take grid_sample
    with torch.enable_grad():  # and so do images that need a gradient (--backprop-observation)
        assert can_cut_with_numba(canvas, target, xs, ys)
        assert not can_cut_with_numba(canvas.requires_grad_(), target, xs, ys)


def test_a_run_saved_before_residual_anchors_still_paints_with_the_fixed_layout(tmp_path):
    """Options a checkpoint predates take the values the run had (``LEGACY_DEFAULTS``), not the new defaults."""
    Trainer(tiny_config(tmp_path / "run", total_steps=32, eval_every=0), SMALL).train()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    assert state["args"]["anchors"] == "residual"
    del state["args"]["anchors"]  # as written before the option existed
    torch.save(state, checkpoint)
    assert PolicyPainter(tmp_path / "run", "cpu").agent.args.anchors == "fixed"
    config, args = cli_train.resolve(["--resume", str(tmp_path / "run")])
    assert args.anchors == "fixed"


def test_residual_is_measured_only_at_the_steps_that_place_residual_anchors():
    """The step hint skips the residual where the bundle has no stroke of a partly painted level: the same strokes."""
    torch.manual_seed(0)
    actor = PatchStrokeActor(has_target=True, size=16, strokes_per_step=4, width=8, hidden=32, max_steps=8,
                             anchors="residual").eval()
    assert actor.partial_levels == [3] and actor.residual_steps == {5, 6, 7}  # 1 + 4 + 16 strokes, then 11 of 64
    canvas, target = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        for step in range(8):
            progress = torch.full((3,), step / 8)
            assert torch.equal(actor(canvas, target, progress, step=step), actor(canvas, target, progress))
