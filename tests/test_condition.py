"""Free painting to a brief and with variety: the env's ``condition`` (a class per episode) and ``noise``
(a latent per episode) options, in the observation (image and dict), in the rewards (``class=condition``),
in the agents, seeded, and their one-line errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import paintgym  # noqa: F401  (registers the envs)
from paintgym import rewards
from paintgym.agents.model_based import ModelBased, ModelBasedArgs
from paintgym.agents.networks import ActorCritic, obs_planes
from paintgym.envs import CanvasEnv, CanvasVectorEnv
from paintgym.envs.core import UnknownOptionError
from paintgym.rewards.base import Reward, check_condition

pytestmark = pytest.mark.usefixtures("one_thread")
K = 3


class ClassProbe(Reward):
    """A test reward that scores the episode's class: ``-(mean ink - class / (K - 1))^2``, terminal and
    differentiable (a painting is asked to be darker for higher classes)."""

    name = "probe"
    dense = False
    differentiable = True
    uses_condition = True
    num_classes = K

    def score(self, canvas: torch.Tensor, target: torch.Tensor | None = None,
              condition: torch.Tensor | None = None) -> torch.Tensor:
        condition = check_condition(condition, K, self.name)
        ink = 1.0 - canvas.mean(dim=(1, 2, 3))
        return -(ink - condition.float() / (K - 1)).square()


def _env(num_envs: int = 4, **options) -> CanvasVectorEnv:
    options = {"canvas_size": 16, "max_steps": 2, "return_tensors": True, "autoreset_mode": "disabled", **options}
    return CanvasVectorEnv(num_envs, **options)


@pytest.mark.parametrize("obs_mode", ["image", "dict"])
def test_condition_and_noise_are_in_the_observation_and_its_space(obs_mode):
    env = gym.make("paintgym/Canvas-v0", canvas_size=16, max_steps=2, obs_mode=obs_mode, reward=ClassProbe(),
                   condition=True, noise=2)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped, warn=False)
    obs, _ = env.reset(seed=5)
    core = env.unwrapped.core
    cls, noise = int(core.condition[0]), core.noise_u8[0].numpy()
    assert env.observation_space.contains(obs)
    if obs_mode == "image":
        assert obs.shape == (16, 16, 3 + K + 2 + 1)
        assert (obs[..., 3:3 + K] == np.eye(K, dtype=np.uint8)[cls] * 255).all()  # one-hot planes
        assert (obs[..., 3 + K:3 + K + 2] == noise).all()  # one constant plane per latent value
        assert (obs[..., -1] == 0).all()  # progress stays last
    else:
        assert env.observation_space["condition"] == gym.spaces.Discrete(K)
        assert obs["condition"] == cls
        np.testing.assert_allclose(obs["noise"], noise / 255.0)
    # the policies' planes are the same in both modes
    vec = {mode: _env(2, obs_mode=mode, reward=ClassProbe(), condition=True, noise=2) for mode in ("image", "dict")}
    planes = {mode: obs_planes(v.reset(seed=1)[0], K) for mode, v in vec.items()}
    assert torch.equal(planes["image"], planes["dict"])


def test_class_condition_reaches_the_reward_and_is_seeded():
    env = _env(8, reward=ClassProbe(), condition=True, noise=3)
    env.reset(seed=11)
    first = (env.core.condition.clone(), env.core.noise_u8.clone())
    assert len(set(first[0].tolist())) > 1 and len(set(map(tuple, first[1].tolist()))) > 1  # drawn per env
    action = torch.full((8, 13), -1.0)  # invisible strokes (opacity 0): ink 0, so the reward is -(class / 2)^2
    env.step(action)
    _, reward, *_ = env.step(action)
    torch.testing.assert_close(reward, -(first[0].float() / 2).square())
    again = _env(8, reward=ClassProbe(), condition=True, noise=3)
    again.reset(seed=11)
    assert torch.equal(again.core.condition, first[0]) and torch.equal(again.core.noise_u8, first[1])
    env.reset(options={"reset_mask": torch.ones(8, dtype=torch.bool)})  # the next episode draws anew
    assert not torch.equal(env.core.noise_u8, first[1])
    env.core.condition_in_order = True  # evaluations: env i is asked for class i mod K
    env.reset(seed=11)
    assert env.core.condition.tolist() == [i % K for i in range(8)]


def test_noise_lets_a_deterministic_policy_paint_different_pictures():
    paintings = {}
    for noise in (0, 4):
        env = _env(6, noise=noise)
        torch.manual_seed(0)
        agent = ActorCritic(env.single_observation_space, env.single_action_space, hidden=32)
        obs, _ = env.reset(seed=3)
        for _ in range(2):
            obs, *_ = env.step(agent.act(obs, deterministic=True))
        paintings[noise] = env.core.canvas.clone()
    assert all(torch.equal(paintings[0][0], p) for p in paintings[0])  # no source of variety: one picture
    distinct = {tuple(p.flatten().round(decimals=3).tolist()) for p in paintings[4]}
    assert len(distinct) == 6


def test_model_based_agent_trains_and_paints_to_the_condition():
    env = _env(4, reward=ClassProbe(), condition=True, noise=2)
    torch.manual_seed(0)
    agent = ModelBased(env, ModelBasedArgs(width=4, hidden=16))
    obs, _ = env.reset(seed=0)
    agent.start(obs)
    metrics = agent.train_iteration(1, 2)
    assert np.isfinite(metrics["policy_loss"])
    actions = agent.act(agent.obs)
    assert actions.shape == (4, 13)
    code = env.core.code()
    assert code.shape == (4, K + 2) and torch.equal(code[:, :K].argmax(1), env.core.condition)
    strokes = agent.paint(None, 4, code=code)
    assert strokes.shape == (4, 2, 13)
    with pytest.raises(ValueError, match="code of shape"):
        agent.paint(None, 4)
    # acting paints what training paints: on the free canvas every first-step window is the same blank, which
    # batch statistics (training) and running statistics (acting) would normalise differently
    canvas = torch.ones(4, 3, 16, 16)
    progress = torch.zeros(4)
    agent.actor.train()
    training = agent.actor(canvas, None, progress, code)
    agent.actor.eval()
    torch.testing.assert_close(agent.actor(canvas, None, progress, code), training)


def test_bad_condition_options_fail_in_one_line():
    def message(**options) -> str:
        with pytest.raises(ValueError) as info:
            _env(2, **options)
        assert "\n" not in str(info.value)
        return str(info.value)

    assert "has none" in message(condition=True)  # no reward with class=condition: no classes to draw
    assert "condition=True" in message(reward=ClassProbe())  # the reward asks for the class, the env draws none
    assert "know 3" in message(reward=ClassProbe(), condition=5)
    assert "K >= 2" in message(condition=1)
    assert "noise" in message(noise=-1)
    with pytest.raises(UnknownOptionError, match="conditon"):  # a misspelt option stays a TypeError
        CanvasEnv(conditon=True)
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        check_condition(torch.tensor([0, 3]), K, "probe")
    with pytest.raises(ValueError, match="condition=True"):
        ClassProbe().score(torch.ones(1, 3, 8, 8))
    composite = rewards.build(ClassProbe())
    assert composite.uses_condition and composite.num_classes == K
