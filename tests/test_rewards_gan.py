"""The ``gan`` reward: frozen critic from a checkpoint, online critic with replay, conditional form, state."""

from __future__ import annotations

import io

import pytest
import torch

from paintgym import generative, rewards
from paintgym.canvas.images import load_images, to_float
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.generative.data import random_stroke_canvases
from paintgym.rewards.base import StepContext
from paintgym.rewards.gan import GANReward
from tests.helpers_generative import drawn_digits, one_thread, trained_gan

ONLINE = "size=32, width=16, batch_size=32, replay=128, lr=0.0005"  # small and quick to learn


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def _digits(count: int = 64, offset: int = 0) -> torch.Tensor:
    """Held-out digits as paintgym canvases ``(count, 3, 64, 64)``."""
    return to_float(load_images("digits", 64)[offset::10][:count])


def _term(spec: str) -> GANReward:
    composite = rewards.build(spec)
    return composite.terms[0][2]


def _ctx(canvas: torch.Tensor, done: torch.Tensor, step: int, target: torch.Tensor | None = None) -> StepContext:
    b = canvas.shape[0]
    return StepContext(canvas=canvas, prev_canvas=None, target=target, strokes=torch.zeros(b, 1, 13),
                       step=torch.full((b,), step), done=done, active=None)


def test_frozen_critic_rewards_digit_like_canvases_above_random_strokes() -> None:
    reward = _term(f"gan(checkpoint={trained_gan() / 'ckpt.pt'})")
    assert not reward.dense and not reward.learns and not reward.needs_target
    real, drawn = reward.score(_digits()), reward.score(drawn_digits())
    scribbles = reward.score(random_stroke_canvases(64, 64, seed=1))
    assert real.shape == (64,) and real.dtype == torch.float32
    assert real.mean() > scribbles.mean()
    assert (real[:, None] > scribbles[None, :]).float().mean() > 0.9
    assert (drawn > scribbles.mean()).all()  # a 1, a 0 and a 7 painted with strokes beat random strokes
    assert reward.update(drawn) == {} and reward.state_dict() == {}  # frozen: nothing learns
    # a run folder works as well as its ckpt.pt, and the weight applies
    weighted = rewards.build(f"gan(checkpoint={trained_gan()}):2.0")
    torch.testing.assert_close(weighted.score(drawn_digits()), 2.0 * drawn)


def test_terminal_by_default_and_dense_as_a_potential_difference() -> None:
    path = trained_gan()
    canvases = [torch.ones(3, 3, 64, 64), random_stroke_canvases(3, 64, strokes=2, seed=1),
                random_stroke_canvases(3, 64, strokes=4, seed=2)]
    terminal = _term(f"gan(checkpoint={path})")
    not_done, done = torch.zeros(3, dtype=torch.bool), torch.tensor([True, False, True])
    assert torch.equal(terminal.step(_ctx(canvases[1], not_done, 1)), torch.zeros(3))
    paid = terminal.step(_ctx(canvases[2], done, 2))
    expected = terminal.score(canvases[2])
    assert torch.allclose(paid, torch.where(done, expected, torch.zeros(3)), atol=1e-5)

    dense = _term(f"gan(checkpoint={path}, dense=true)")
    assert dense.dense
    dense.reset(canvases[0], None, torch.ones(3, dtype=torch.bool))
    total = sum(dense.step(_ctx(c, not_done, i + 1)) for i, c in enumerate(canvases[1:]))
    assert torch.allclose(total, dense.score(canvases[2]) - dense.score(canvases[0]), atol=1e-5)


def test_frozen_reward_in_the_env_pays_at_the_episode_end() -> None:
    env = CanvasVectorEnv(2, canvas_size=32, max_steps=2, reward=f"gan(checkpoint={trained_gan()})", seed=0)
    env.reset(seed=0)
    _, reward1, _, _, info1 = env.step(env.action_space.sample())
    _, reward2, terminated, _, info2 = env.step(env.action_space.sample())
    assert (reward1 == 0).all() and terminated.all()
    assert (reward2 != 0).all() and list(info2["reward_terms"]) == ["gan"]
    env.close()


def test_online_critic_learns_from_paintings_and_real_digits() -> None:
    reward = _term(f"gan(data=digits, {ONLINE})")
    assert reward.learns and reward.channels == 1 and reward.size == 32
    before = [p.detach().clone() for p in reward.critic.parameters()]
    for i in range(30):  # the agent keeps painting random strokes
        stats = reward.update(random_stroke_canvases(16, 64, seed=100 + i))
    assert set(stats) == {"loss", "wasserstein", "gp", "steps", "replay"} and stats["steps"] == 1
    assert reward.replay_size == 128 and stats["replay"] == 128  # bounded by the replay option
    assert any(not torch.equal(a, b) for a, b in zip(before, reward.critic.parameters(), strict=True))
    real, scribbles = reward.score(_digits()), reward.score(random_stroke_canvases(64, 64, seed=1))
    assert (real[:, None] > scribbles[None, :]).float().mean() > 0.9


def test_online_state_survives_save_and_restore() -> None:
    spec = f"gan(data=digits, {ONLINE})"
    reward = _term(spec)
    for i in range(3):
        reward.update(random_stroke_canvases(8, 64, seed=i))
    buffer = io.BytesIO()
    torch.save(reward.state_dict(), buffer)  # as a training checkpoint stores it
    buffer.seek(0)
    restored = _term(spec)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    probe = _digits(16)
    assert torch.equal(reward.score(probe), restored.score(probe))
    assert restored.replay_size == reward.replay_size == 24
    more = random_stroke_canvases(8, 64, seed=9)
    assert reward.update(more) == restored.update(more)  # same replay draws, optimiser moments and real batch
    for a, b in zip(reward.critic.parameters(), restored.critic.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="do not fit"):
        _term("gan(data=digits, size=64, width=16)").load_state_dict(reward.state_dict())


def test_update_ratio_sets_critic_steps_per_call() -> None:
    canvas = random_stroke_canvases(4, 64, seed=0)
    half = _term(f"gan(data=digits, {ONLINE}, ratio=0.5)")
    assert [half.update(canvas)["steps"] for _ in range(4)] == [0, 1, 0, 1]
    double = _term(f"gan(data=digits, {ONLINE}, ratio=2)")
    assert double.update(canvas)["steps"] == 2


def test_conditional_critic_scores_target_canvas_pairs() -> None:
    reward = _term(f"gan(conditional=true, {ONLINE})")
    assert reward.needs_target and reward.learns and reward.channels == 3
    targets = _digits(128, offset=1)
    for i in range(30):
        index = torch.randint(128, (16,), generator=torch.Generator().manual_seed(i))
        reward.update(random_stroke_canvases(16, 64, seed=200 + i), targets[index])
    probe = _digits(32)
    exact = reward.score(probe, probe)  # a painting that matches its target
    scribbles = reward.score(random_stroke_canvases(32, 64, seed=1), probe)
    assert exact.shape == (32,) and (exact > scribbles).float().mean() > 0.9
    with pytest.raises(ValueError, match="needs a target"):
        reward.score(probe)
    with pytest.raises(ValueError, match="targets"):
        reward.update(probe)


def test_bad_options_get_clear_errors(tmp_path) -> None:
    with pytest.raises(rewards.RewardSpecError, match="checkpoint=PATH"):
        rewards.build("gan")
    with pytest.raises(rewards.RewardSpecError, match="conditional critic is trained online"):
        rewards.build(f"gan(checkpoint={trained_gan()}, conditional=true)")
    vae = generative.save_checkpoint(tmp_path / "vae.pt", generative.VAE(32, 1, latent_dim=4, width=4))
    with pytest.raises(rewards.RewardSpecError, match="not a GAN one"):
        rewards.build(f"gan(checkpoint={vae})")
    with pytest.raises(rewards.RewardSpecError, match="neither a built-in"):
        rewards.build(f"gan(data={tmp_path / 'nothing'})")
    with pytest.raises(rewards.RewardSpecError, match="has no option"):
        rewards.build("gan(data=digits, temperature=2)")
    assert "gan" in rewards.available()
