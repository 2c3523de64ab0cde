"""Third-party RL libraries drive paintgym through their own Gymnasium wrappers (skipped where not installed).

TorchRL is not a dependency (its compiled parts follow torch's version closely); ``pip install torchrl`` next
to a CPU torch brings it. skrl is in the ``dev`` extra. Without TorchRL, ``test_envs.py`` still checks the
call it makes (``gymnasium.make(..., frameskip=1)``, then again without on a ``TypeError``).
"""

import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode

import paintgym  # noqa: F401  (registers the env ids)

SMALL = {"canvas_size": 16, "max_steps": 4}


@pytest.mark.parametrize("options", [{}, {"obs_mode": "dict"}, {"action_mode": "discrete"}])
def test_torchrl_gym_env_passes_its_spec_check(options):
    pytest.importorskip("torchrl", exc_type=ImportError)  # absent, or built for another torch
    from torchrl.envs import GymEnv
    from torchrl.envs.utils import check_env_specs

    env = GymEnv("paintgym/Reconstruct-v0", **SMALL, **options)  # passes frameskip=1, drops it on our TypeError
    check_env_specs(env)
    rollout = env.rollout(6, break_when_any_done=False)  # through an episode end and its reset
    assert rollout["next", "done"].sum() == 1 and rollout["next", "reward"].shape == (6, 1)


def test_torchrl_wraps_the_native_vector_env_without_autoreset():
    """TorchRL steps vector envs best with autoreset off (it resets envs with ``reset_mask``, which ours takes).
    With autoreset on, TorchRL 0.14 reads the info dict and cannot stack the nested ``reward_terms``."""
    pytest.importorskip("torchrl", exc_type=ImportError)  # absent, or built for another torch
    from torchrl.envs import GymWrapper
    from torchrl.envs.utils import check_env_specs

    env = GymWrapper(gym.make_vec("paintgym/Reconstruct-v0", num_envs=3, autoreset_mode=AutoresetMode.DISABLED,
                                  **SMALL))
    check_env_specs(env)
    rollout = env.rollout(10, break_when_any_done=False)
    assert rollout.batch_size == (3, 10) and rollout["next", "done"].sum() == 3 * 2


@pytest.mark.parametrize("vector", [False, True])
def test_skrl_wrapper_resets_and_steps(vector):
    pytest.importorskip("skrl", exc_type=ImportError)
    from skrl.envs.wrappers.torch import wrap_env

    made = gym.make_vec("paintgym/Reconstruct-v0", num_envs=3, **SMALL) if vector else gym.make(
        "paintgym/Reconstruct-v0", **SMALL)
    env = wrap_env(made, wrapper="gymnasium")
    observation, _ = env.reset()
    assert observation.shape == (env.num_envs, 16 * 16 * 7)  # flattened, as skrl's models take it
    for _ in range(SMALL["max_steps"]):
        actions = torch.rand(env.num_envs, 13) * 2 - 1
        observation, reward, terminated, truncated, _ = env.step(actions)
    assert reward.shape == (env.num_envs, 1) and bool(terminated.all()) and not truncated.any()
    env.close()
