"""The interface the trainer drives (:class:`agents.common.Algorithm`): every learner implements it, and the
shared rollout takes its inputs and returns its outputs explicitly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paintgym.agents.common import Algorithm
from paintgym.agents.episodes import EpisodeTracker
from paintgym.agents.model_based import ModelBased, ModelBasedArgs
from paintgym.agents.networks import ActorCritic
from paintgym.agents.ppo import PPO, PPOArgs
from paintgym.agents.reinforce import Reinforce, ReinforceArgs
from paintgym.agents.rollout import collect_rollout
from paintgym.agents.sb3_ppo import SB3PPO, SB3PPOArgs
from tests.conftest import make_tiny_env

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def build(name: str, seed: int = 0) -> tuple[Algorithm, object]:
    """A small learner of each kind on the tiny task, and its env (SB3 steps a numpy env)."""
    torch.manual_seed(seed)
    if name == "sb3-ppo":
        env = make_tiny_env(4, return_tensors=False, autoreset_mode="same_step")
        return SB3PPO(env, SB3PPOArgs(hidden=32, width=4, num_minibatches=2, update_epochs=1), seed=seed), env
    env = make_tiny_env(4)
    small = dict(hidden=32, width=4, num_minibatches=2)
    algo = {"ppo": lambda: PPO(env, PPOArgs(update_epochs=1, **small)),
            "reinforce": lambda: Reinforce(env, ReinforceArgs(hidden=32, width=4)),
            "model-based": lambda: ModelBased(env, ModelBasedArgs(**small))}[name]()
    return algo, env


@pytest.mark.parametrize("name", ["ppo", "reinforce", "sb3-ppo", "model-based"])
def test_every_learner_implements_the_interface_the_trainer_drives(name):
    algo, env = build(name)
    assert isinstance(algo, Algorithm) and algo.name == name
    assert algo.steps_per_iteration == env.num_envs * env.core.max_steps  # one whole episode per env
    obs, _ = env.reset(seed=0)
    algo.start(obs)
    metrics = algo.train_iteration(1, 2)
    assert set(metrics) <= {*algo.metric_keys, *(key for key in metrics if key.startswith("reward/"))}
    assert metrics["episodes"] == env.num_envs and np.isfinite(metrics["policy_loss"])

    # a trained agent: its policy alone, restored into a fresh learner, acts the same
    tensor_env = make_tiny_env(4)
    observation, _ = tensor_env.reset(seed=1)
    actions = algo.act(observation, deterministic=True)
    assert actions.shape == (4, 13) and actions.device == tensor_env.device
    assert float(actions.min()) >= -1.0 and float(actions.max()) <= 1.0
    fresh, _ = build(name, seed=1)
    fresh.load_state_dict(algo.state_dict(), policy_only=True)
    assert torch.allclose(fresh.act(observation, deterministic=True), actions, atol=1e-6)


def test_a_policy_of_another_layout_fails_with_one_line(tiny_env):
    algo, _ = build("ppo")
    other = PPO(tiny_env(4), PPOArgs(hidden=64, width=4, num_minibatches=2))
    with pytest.raises(ValueError, match="does not fit this network") as error:
        other.load_state_dict(algo.state_dict(), policy_only=True)
    assert "\n" not in str(error.value)


def test_collect_rollout_takes_its_inputs_and_returns_its_outputs(tiny_env):
    env = tiny_env(3)
    torch.manual_seed(0)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, hidden=16)
    tracker = EpisodeTracker(env)
    obs, _ = env.reset(seed=0)
    storage, next_obs = collect_rollout(env, agent, obs, 4, tracker)  # two episodes of 2 steps per env
    assert storage.rewards.shape == (4, 3) and storage.dones[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert torch.equal(storage.obs[0], obs) and next_obs.shape == obs.shape
    assert tracker.summary()["episodes"] == 6
    again, _ = collect_rollout(env, agent, next_obs, 4, tracker, storage=storage)
    assert again is storage  # filled in place
    with pytest.raises(ValueError, match="num_steps"):
        collect_rollout(env, agent, next_obs, 0, tracker)
