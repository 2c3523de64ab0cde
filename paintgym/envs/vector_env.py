"""The natively batched Gymnasium vector env: every canvas in one :class:`~envs.core.CanvasCore`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from paintgym.envs.core import CanvasCore, check_options

_AUTORESET_NAMES = {"same_step": AutoresetMode.SAME_STEP, "next_step": AutoresetMode.NEXT_STEP,
                    "disabled": AutoresetMode.DISABLED}


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    for member in AutoresetMode:
        if mode == member.value:
            return member
    key = str(mode).lower().replace("-", "_")
    if key in _AUTORESET_NAMES:
        return _AUTORESET_NAMES[key]
    raise ValueError(f"unknown autoreset_mode {mode!r}; choose one of {', '.join(_AUTORESET_NAMES)}")


class CanvasVectorEnv(VectorEnv):
    """``num_envs`` canvases stepped together in one batched core (no sub-environments, no processes).

    Options are those of :class:`envs.CanvasEnv`, plus:

    =================  ==========================================================================
    ``num_envs``       number of canvases (default 1)
    ``autoreset_mode`` ``AutoresetMode.SAME_STEP`` (default, what Stable-Baselines3 expects),
                       ``NEXT_STEP`` or ``DISABLED`` (then reset with ``options={"reset_mask": m}``)
    ``return_tensors`` False (default): numpy out, like every Gymnasium env; True: torch tensors on
                       the env's device, for torch-native agents (nothing crosses to the host)
    =================  ==========================================================================

    ``step`` infos hold ``reward_terms`` (each reward term, unweighted, ``(B,)``), and where episodes
    end, ``strokes`` ``(B, max_steps * S, 13)`` (masked by ``_strokes``); in SAME_STEP mode the final
    observations and infos are in ``final_obs`` / ``final_info`` as Gymnasium specifies.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
        return_tensors: bool = False,
        render_mode: str | None = None,
        render_size: int | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}; paintgym renders 'rgb_array'")
        check_options(options, "CanvasVectorEnv.__init__")
        self.core = CanvasCore(num_envs, **options)
        self.num_envs = self.core.num_envs
        self.device = self.core.device
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.return_tensors = bool(return_tensors)
        self.render_mode = render_mode
        self.render_size = int(render_size or self.core.size)
        self.single_action_space = self.core.single_action_space
        self.single_observation_space = self.core.single_observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._needs_reset = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self._started = False
        self._initial_seed = seed
        self.options = dict(options)

    # --------------------------------------------------------------------------------- helpers
    def _out(self, value: Any) -> Any:
        """Tensors -> numpy (fresh arrays) unless ``return_tensors``; recurses into dicts."""
        if isinstance(value, dict):
            return {key: self._out(item) for key, item in value.items()}
        if isinstance(value, torch.Tensor) and not self.return_tensors:
            return value.detach().cpu().numpy()
        return value

    def _mask(self, mask: Any) -> torch.Tensor:
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask,
                               device=self.device)
        if mask.shape != (self.num_envs,) or mask.dtype != torch.bool:
            raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},), got "
                             f"{tuple(mask.shape)} {mask.dtype}")
        return mask

    def _seeds(self, seed: int | list[int] | None) -> torch.Tensor | None:
        if seed is None:
            if self._started:
                return None
            seed = self._initial_seed
        if seed is None:  # never seeded: fresh entropy, as Gymnasium does
            self._np_random, self._np_random_seed = seeding.np_random(None)
            per_env = self._np_random.integers(0, 2**31 - 1, size=self.num_envs)
        elif isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
            per_env = int(seed) + np.arange(self.num_envs)  # env i behaves like a single env seeded seed + i
        else:
            per_env = np.asarray(seed, dtype=np.int64)
            if per_env.shape != (self.num_envs,):
                raise ValueError(f"seed must be an int or a list of {self.num_envs} ints, got {len(per_env)}")
            self._np_random, self._np_random_seed = seeding.np_random(int(per_env[0]))
        if (per_env < 0).any():
            raise ValueError("seeds must be non-negative integers")
        return torch.as_tensor(per_env, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Reset all envs, or those in ``options["reset_mask"]``; ``seed`` s seeds env i with s + i."""
        options = options or {}
        unknown = set(options) - {"reset_mask"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; the only one is 'reset_mask'")
        mask = self._mask(options["reset_mask"]) if "reset_mask" in options else None
        self.core.reset(mask, self._seeds(seed))
        self._started = True
        if mask is None:
            self._needs_reset.zero_()
        else:
            self._needs_reset &= ~mask
        return self._out(self.core.observation()), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every env with ``actions`` ``(num_envs, *single_action_space.shape)``."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        core = self.core
        strokes, clipped = core.decode(actions)
        active = None
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            if bool(self._needs_reset.any()):
                core.reset(self._needs_reset)
            active = ~self._needs_reset
        elif self.autoreset_mode == AutoresetMode.DISABLED and bool(self._needs_reset.any()):
            envs_done = torch.nonzero(self._needs_reset).flatten().tolist()
            raise ValueError(f"envs {envs_done} finished their episodes; with autoreset DISABLED call "
                             "reset(options={'reset_mask': mask}) before stepping them")
        reward, done, terms = core.step(strokes, active)
        if active is not None:
            reward = torch.where(active, reward, torch.zeros_like(reward))
        every_env = (torch.ones(self.num_envs, dtype=torch.bool, device=self.device) if self.return_tensors
                     else np.ones(self.num_envs, dtype=np.bool_))
        infos: dict[str, Any] = {"reward_terms": terms, "_reward_terms": every_env}
        if clipped is not None:
            infos["clipped_actions"], infos["_clipped_actions"] = clipped, every_env.copy()
        obs = core.observation()
        any_done = bool(done.any())
        if any_done:
            infos["strokes"], infos["_strokes"] = core.episode_strokes(), done.clone()
        final_obs = None
        if self.autoreset_mode == AutoresetMode.SAME_STEP and any_done:
            final_obs = self._final_obs_array(self._out(obs), done)
            infos = {"final_info": infos, "_final_info": done.clone(), "_final_obs": done.clone(),
                     "reward_terms": terms, "_reward_terms": infos["_reward_terms"]}
            core.reset(done)
            obs = core.observation()
        elif self.autoreset_mode != AutoresetMode.SAME_STEP:
            self._needs_reset = done
        infos = self._out(infos)
        if final_obs is not None:
            infos["final_obs"] = final_obs
        truncated = torch.zeros_like(done) if self.return_tensors else np.zeros(self.num_envs, dtype=np.bool_)
        return self._out(obs), self._out(reward), self._out(done), truncated, infos

    def _final_obs_array(self, final_obs: Any, done: torch.Tensor) -> np.ndarray:
        """Gymnasium's SAME_STEP format: an object array with each done env's own observation."""
        array = np.full(self.num_envs, None, dtype=object)
        for i in torch.nonzero(done).flatten().tolist():  # only envs that finished, once per episode
            if isinstance(final_obs, dict):
                array[i] = {key: value[i] for key, value in final_obs.items()}
            else:
                array[i] = final_obs[i]
        return array

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``(R, R or 2R, 3)`` uint8 frame per env: the canvas, beside its target when there is one."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        return tuple(self.core.frames(self.render_size).cpu().numpy())

    def close_extras(self, **kwargs: Any) -> None:
        self._started = False
