"""Stable-Baselines3 on the native vector env: an SB3 ``VecEnv`` over :class:`envs.CanvasVectorEnv`.

SB3's algorithms expect its own ``VecEnv`` API (``step_async``/``step_wait``, a list of info
dicts, ``terminal_observation``). This adapter provides it directly on the batched core, so SB3's
PPO/A2C/SAC train on paintgym without ``DummyVecEnv`` and its one-env-at-a-time Python loop. At an
episode's end the info also holds what SB3's ``Monitor`` would add (``episode``: return ``r``,
length ``l``, time ``t``; SB3 logs ``rollout/ep_rew_mean`` from it), each reward term's episode sum
(``episode_terms``) and the episode's ``strokes``::

    import gymnasium as gym, envs
    from stable_baselines3 import PPO
    from paintgym.agents.sb3_vec_env import SB3VecEnv

    venv = SB3VecEnv(gym.make_vec("paintgym/Reconstruct-v0", num_envs=16))
    PPO("CnnPolicy", venv).learn(10_000)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from paintgym.envs.vector_env import CanvasVectorEnv


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` view of a :class:`CanvasVectorEnv` (SAME_STEP autoreset, numpy outputs).

    :param env: the vector env, e.g. from ``gymnasium.make_vec("paintgym/Reconstruct-v0", num_envs=N)``.
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        native = env.unwrapped
        if not isinstance(native, CanvasVectorEnv):
            raise TypeError(f"SB3VecEnv wraps paintgym's CanvasVectorEnv, got {type(native).__name__}; "
                            "create it with gymnasium.make_vec(..., vectorization_mode=None)")
        if native.autoreset_mode != AutoresetMode.SAME_STEP or native.return_tensors:
            raise ValueError("SB3VecEnv needs autoreset_mode=SAME_STEP and return_tensors=False")
        self.env = native
        self._actions: np.ndarray | None = None
        super().__init__(native.num_envs, native.single_observation_space, native.single_action_space)
        self.render_mode = native.render_mode
        # per-env running sums for Monitor-style ``info["episode"]`` (SB3 logs rollout/ep_rew_mean from it)
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._term_sums = {key: np.zeros(self.num_envs, dtype=np.float64) for key in native.core.reward.keys}
        self._started_at = time.perf_counter()

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._clear_episode_sums(np.ones(self.num_envs, dtype=bool))
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        dones = terminated | truncated
        terms = info["reward_terms"]
        self._returns += reward
        self._lengths += 1
        for key, value in terms.items():
            self._term_sums[key] += value
        infos: list[dict[str, Any]] = [
            {"reward_terms": {key: float(value[i]) for key, value in terms.items()}} for i in range(self.num_envs)
        ]  # SB3's API is a list of per-env dicts
        if dones.any():
            final_info, final_obs = info["final_info"], info["final_obs"]
            elapsed = round(time.perf_counter() - self._started_at, 6)
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final_obs[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                infos[i]["strokes"] = final_info["strokes"][i]
                # what stable_baselines3.common.monitor.Monitor reports, plus each reward term's sum
                infos[i]["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]), "t": elapsed}
                infos[i]["episode_terms"] = {key: float(value[i]) for key, value in self._term_sums.items()}
            self._clear_episode_sums(dones)
        return obs, reward.astype(np.float32), dones, infos

    def _clear_episode_sums(self, mask: np.ndarray) -> None:
        self._returns[mask] = 0.0
        self._lengths[mask] = 0
        for value in self._term_sums.values():
            value[mask] = 0.0

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.env.core.frames(self.env.render_size).cpu().numpy())

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))
