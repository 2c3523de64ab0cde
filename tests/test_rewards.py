"""The reward interface: spec syntax and errors, composition in the env, telescoping, strokes, SSIM, CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from paintgym import cli as paintgym_cli
from paintgym import envs, rewards
from paintgym.canvas import fastpath
from paintgym.canvas.images import load_images, to_float
from paintgym.canvas.strokes import FIELDS
from paintgym.rewards import cli
from paintgym.rewards.base import Reward, StepContext
from paintgym.rewards.target import ssim

# ------------------------------------------------------------------------------------ spec and errors


def test_spec_builds_weighted_terms_with_options():
    composite = rewards.build("target(metric=ssim):1.0, harmony(dense=true, bins=180):0.2, strokes:0.01, target")
    assert composite.keys == ["target", "harmony", "strokes", "target_2"]
    assert [weight for _, weight, _ in composite.terms] == [1.0, 0.2, 0.01, 1.0]
    assert composite.terms[0][2].metric == "ssim" and composite.terms[1][2].bins == 180
    assert composite.terms[1][2].dense and composite.needs_target
    rebuilt = rewards.build(composite.spec())
    assert rebuilt.spec() == composite.spec()


@pytest.mark.parametrize(("spec", "message"), [
    ("colour:1.0", r"unknown reward 'colour'; available: .*harmony.*novelty.*strokes.*target"),
    ("harmony(bin=90)", r"reward 'harmony' has no option bin; its options: dense=False, bins=360"),
    ("novelty(kk=3)", r"has no option kk; its options: k=5, archive_size=4096"),
    ("target(metric=ms-ssim)", r"unknown metric 'ms-ssim'; choose one of l2, l1, psnr, ssim"),
    ("strokes(min_opacity=1.5)", r"min_opacity must be a number in \[0, 1\)"),
    ("target:heavy", r"cannot parse reward term 'target:heavy'"),
    ("harmony(dense)", r"must be key=value"),
    ("harmony(dense=true", r"unbalanced '\('"),
    (" , ", r"empty reward spec"),
])
def test_bad_specs_are_errors_that_list_what_exists(spec, message):
    with pytest.raises(rewards.RewardSpecError, match=message):
        rewards.build(spec)


def test_describe_lists_every_reward_with_kind_and_options():
    text = rewards.describe()
    for name in ("target", "zero", "harmony", "novelty", "strokes"):
        assert any(line.startswith(name) for line in text.splitlines())
    assert "terminal" in text and "options: dense=False, bins=360" in text and "device" not in text
    assert "Matsuda" in rewards.describe("harmony")
    with pytest.raises(rewards.RewardSpecError, match="available"):
        rewards.describe("nope")


def test_cli_lists_rewards_and_checks_specs(capsys):
    assert cli.main([]) == 0
    assert "novelty" in capsys.readouterr().out
    assert cli.main(["strokes"]) == 0
    assert "visible stroke" in capsys.readouterr().out
    assert cli.main(["--spec", "target:1.0, harmony:0.2"]) == 0
    out = capsys.readouterr().out
    assert "harmony      weight 0.2" in out and "spec: target(metric=l2):1, harmony" in out
    assert cli.main(["--spec", "target(metrc=l1)"]) == 2
    assert "its options: metric='l2'" in capsys.readouterr().err


def test_paintgym_cli_has_the_rewards_subcommand(capsys):
    assert paintgym_cli.cli(["rewards"]) == 0
    assert "harmony" in capsys.readouterr().out


# ------------------------------------------------------------------------------ composition in the env


@pytest.mark.parametrize("spec", ["target:1.0, harmony:0.2", "target:2.0, harmony:0.5, strokes:0.01"])
def test_weights_apply_and_every_term_is_in_info(spec):
    env = gym.make("paintgym/Reconstruct-v0", reward=spec, max_steps=3, canvas_size=32)
    weights = {key: weight for key, weight, _ in rewards.build(spec).terms}
    env.reset(seed=0)
    env.action_space.seed(0)
    harmony_paid = []
    for _ in range(3):
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        terms = info["reward_terms"]
        assert set(terms) == set(weights)
        expected = sum(weights[key] * float(np.asarray(value).reshape(-1)[0]) for key, value in terms.items())
        assert reward == pytest.approx(expected, abs=1e-6)
        harmony_paid.append(float(np.asarray(terms["harmony"]).reshape(-1)[0]))
    assert terminated
    assert harmony_paid[:2] == [0.0, 0.0] and 0.0 < harmony_paid[2] <= 1.0  # terminal: paid at the end only


def test_vector_env_batches_every_term():
    env = envs.CanvasVectorEnv(6, targets="digits", reward="target:1.0, harmony:0.2, strokes:0.1",
                               canvas_size=16, max_steps=2, return_tensors=True)
    env.reset(seed=1)
    actions = torch.rand(6, 13) * 2 - 1
    _, reward, _, _, info = env.step(actions)
    terms = info["reward_terms"]
    assert {key: tuple(value.shape) for key, value in terms.items()} == {"target": (6,), "harmony": (6,),
                                                                           "strokes": (6,)}
    torch.testing.assert_close(reward, terms["target"] + 0.2 * terms["harmony"] + 0.1 * terms["strokes"])


# ---------------------------------------------------------------------------------------- telescoping

DENSE_SPEC = "target:1.0, target(metric=l1):0.5, target(metric=ssim):0.5, harmony(dense=true):0.3"


def test_dense_rewards_telescope_to_the_change_of_the_potential():
    env = envs.CanvasVectorEnv(5, targets="digits", reward=DENSE_SPEC, canvas_size=24, max_steps=6,
                               strokes_per_step=2, autoreset_mode="disabled", return_tensors=True)
    env.reset(seed=3)
    core = env.core
    blank, target = core.canvas.clone(), core.target.clone()
    generator = torch.Generator().manual_seed(0)
    totals = {key: torch.zeros(5) for key in core.reward.keys}
    total = torch.zeros(5)
    for _ in range(6):
        strokes = torch.rand(5, 26, generator=generator) * 2 - 1
        strokes.view(5, 2, 13)[..., 10:] = torch.rand(5, 2, 3, generator=generator) * 2 - 1  # colourful
        _, reward, terminated, _, info = env.step(strokes)
        total += reward
        for key, value in info["reward_terms"].items():
            totals[key] += value
    assert terminated.all()
    final = core.canvas
    for key, _, term in core.reward.terms:
        change = term.score(final, target) - term.score(blank, target)
        torch.testing.assert_close(totals[key], change, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(total, core.reward.score(final, target) - core.reward.score(blank, target),
                               atol=1e-5, rtol=1e-4)
    assert (totals["harmony"].abs() > 1e-4).any()  # the colourful strokes changed the harmony


# --------------------------------------------------------------------------------------------- strokes


def test_stroke_cost_counts_visible_strokes():
    assert FIELDS[8:10] == ("a0", "a1")  # the opacity indices rewards.strokes relies on
    strokes = torch.rand(4, 3, 13) * 0.5 + 0.25
    strokes[1, 0, 8:10] = 0.0  # invisible
    strokes[2, :, 8:10] = 0.0
    strokes[3, 1, 8] = 0.0  # visible: fades in
    ctx = StepContext(canvas=torch.ones(4, 3, 8, 8), prev_canvas=None, target=None, strokes=strokes,
                      step=torch.ones(4, dtype=torch.long), done=torch.zeros(4, dtype=torch.bool), active=None)
    cost = rewards.build("strokes").terms[0][2]
    assert cost.step(ctx).tolist() == [-3.0, -2.0, 0.0, -3.0]
    assert rewards.build("strokes(min_opacity=0.8)").terms[0][2].step(ctx).tolist() == [0.0, 0.0, 0.0, 0.0]
    ctx.active = torch.tensor([True, False, True, True])
    assert cost.step(ctx).tolist() == [-3.0, 0.0, 0.0, -3.0]
    assert cost.score(ctx.canvas).tolist() == [0.0] * 4


def test_stroke_cost_over_an_episode_is_minus_the_visible_strokes():
    env = envs.CanvasVectorEnv(3, reward="strokes", canvas_size=16, max_steps=4, strokes_per_step=2)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    total, visible = np.zeros(3), np.zeros(3)
    for _ in range(4):
        actions = rng.uniform(-1, 1, (3, 26)).astype(np.float32)
        actions.reshape(3, 2, 13)[0, :, 8:10] = -1.0  # env 0 paints only invisible strokes
        _, reward, _, _, _ = env.step(actions)
        total += reward
        visible += (actions.reshape(3, 2, 13)[..., 8:10].max(axis=-1) > -1.0).sum(axis=1)
    np.testing.assert_allclose(total, -visible)
    assert total[0] == 0.0 and total[1] == -8.0


# ------------------------------------------------------------------------------------------------ SSIM


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(0)
    digits = to_float(torch.from_numpy(load_images("digits", 32)[:4]))
    noisy = (digits + torch.from_numpy(rng.normal(0, 0.2, digits.shape).astype(np.float32))).clamp(0, 1)
    pairs = [(digits, noisy), (torch.rand(3, 3, 20, 24), torch.rand(3, 3, 20, 24))]
    for x, y in pairs:
        expected = [structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), data_range=1.0,
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          channel_axis=2) for a, b in zip(x, y, strict=True)]
        torch.testing.assert_close(ssim(x, y), torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ssim(digits, digits), torch.ones(4))
    small = torch.rand(2, 3, 8, 8)  # smaller than the window: a narrower one
    assert torch.allclose(ssim(small, small), torch.ones(2))


@pytest.mark.skipif(not fastpath.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("batch", [5, fastpath.PARALLEL_MIN_BATCH + 3])  # serial and parallel kernels
def test_ssim_numba_and_torch_paths_agree(monkeypatch, batch):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 23, 30, generator=generator)
    y = (x + 0.2 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    fast = ssim(x, y)
    monkeypatch.setattr(fastpath, "HAVE_NUMBA", False)
    torch.testing.assert_close(fast, ssim(x, y), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not fastpath.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("metric", ["l2", "l1", "psnr"])
@pytest.mark.parametrize("batch", [4, fastpath.PARALLEL_MIN_BATCH + 1])
def test_target_distance_numba_and_torch_paths_agree(monkeypatch, metric, batch):
    generator = torch.Generator().manual_seed(1)
    canvas, target = torch.rand(2, batch, 3, 17, 17, generator=generator)
    reward = rewards.build(f"target(metric={metric})")
    fast = reward.score(canvas, target)
    monkeypatch.setattr(fastpath, "HAVE_NUMBA", False)
    torch.testing.assert_close(fast, reward.score(canvas, target))
    diff = (canvas - target).double()
    expected = -(diff.abs() if metric == "l1" else diff.square()).mean(dim=(1, 2, 3))
    torch.testing.assert_close(fast, (10 * torch.log10(-1 / expected) if metric == "psnr" else expected).float())


def test_target_psnr_is_the_peak_signal_to_noise_ratio_and_rewards_getting_closer():
    digits = to_float(torch.from_numpy(load_images("digits", 32)[:4]))
    reward = rewards.build("target(metric=psnr)")
    blank = torch.ones_like(digits)
    halfway = (blank + digits) / 2
    mse = (blank - digits).double().square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(reward.score(blank, digits), (10 * torch.log10(1 / mse)).float())
    assert torch.all(reward.score(halfway, digits) > reward.score(blank, digits) + 6.0)  # half the error: +6 dB
    assert torch.all(reward.score(digits, digits) == 100.0)  # an exact copy: the cap, not infinity
    canvas = halfway.clone().requires_grad_()
    reward.score(canvas, digits).sum().backward()  # differentiable: the model-based agent's gradient
    assert torch.isfinite(canvas.grad).all() and canvas.grad.abs().sum() > 0


def test_target_ssim_rewards_getting_closer():
    digits = to_float(torch.from_numpy(load_images("digits", 32)[:4]))
    reward = rewards.build("target(metric=ssim)")
    blank = torch.ones_like(digits)
    halfway = (blank + digits) / 2
    assert torch.all(reward.score(digits, digits) == 0)
    assert torch.all(reward.score(halfway, digits) > reward.score(blank, digits))
    with pytest.raises(ValueError, match="same shape"):
        ssim(digits, digits[:, :1])


# ------------------------------------------------------------------------- terminal rewards, subsets


class CountingTerminal(Reward):
    """A terminal reward that records the batches it scores."""

    name = "counting"
    dense = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append(canvas.shape[0])
        return canvas.mean(dim=(1, 2, 3)) + (0.0 if target is None else target.mean(dim=(1, 2, 3)))


def test_terminal_rewards_score_only_finished_paintings():
    reward = CountingTerminal()
    canvas, target = torch.rand(5, 3, 4, 4), torch.rand(5, 3, 4, 4)
    expected = reward.score(canvas, target)
    reward.calls.clear()

    def ctx(done, active=None):
        return StepContext(canvas=canvas, prev_canvas=None, target=target, strokes=torch.zeros(5, 1, 13),
                           step=torch.ones(5, dtype=torch.long), done=torch.tensor(done), active=active)

    assert torch.equal(reward.step(ctx([False] * 5)), torch.zeros(5)) and reward.calls == []
    done = [True, False, True, False, False]
    torch.testing.assert_close(reward.step(ctx(done)), torch.where(torch.tensor(done), expected, 0.0))
    assert reward.calls == [2]
    torch.testing.assert_close(reward.step(ctx([True] * 5)), expected)
    active = torch.tensor([True, True, False, True, True])
    torch.testing.assert_close(reward.step(ctx([True] * 5, active)), torch.where(active, expected, 0.0))
    assert reward.calls == [2, 5, 4]
