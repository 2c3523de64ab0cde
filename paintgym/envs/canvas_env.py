"""The single-canvas Gymnasium env: a view of a batch of one in the shared core."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from paintgym.canvas import export
from paintgym.envs.core import CanvasCore, check_options


class CanvasEnv(gym.Env):
    """Paint on a canvas with Bezier brush strokes.

    ## Description
    Each step paints ``strokes_per_step`` strokes (quadratic Bezier curves swept by a round brush
    whose radius and opacity vary along the curve, in one colour) onto the canvas. With a target
    dataset the task is to reproduce the target image (``paintgym/Reconstruct-v0``); without one it
    is free painting, scored by whatever reward is plugged in (``paintgym/Canvas-v0``).

    ## Action Space
    ``continuous`` (default): ``Box(-1, 1, (S * 13,), float32)``; stroke number ``p = (a + 1) / 2``:

    | index (per stroke) | meaning                                  |
    |--------------------|------------------------------------------|
    | 0-5                | start, control and end point (x, y)      |
    | 6-7                | brush radius at start and end            |
    | 8-9                | opacity at start and end                 |
    | 10-12              | colour R, G, B                           |

    ``discrete``: ``MultiDiscrete`` with 9 components per stroke (SPIRAL style): 6 point
    coordinates on a ``grid`` lattice, a brush size, an opacity level and a palette colour.
    The exact mapping is in :mod:`canvas.strokes`.

    ## Observation Space
    | ``obs_mode``      | observation                                                              |
    |-------------------|--------------------------------------------------------------------------|
    | ``image`` (default) | ``Box(0, 255, (H, W, C), uint8)``: canvas RGB, target RGB (if any), ``K`` one-hot planes of the episode's class (0 or 255; with ``condition``), ``D`` constant planes of the episode's noise (with ``noise``), and a plane filled with the episode progress (0 at the start, 255 at the end) |
    | ``dict``          | ``{"canvas": (H, W, 3) uint8, "target": (H, W, 3) uint8 (if any), "condition": Discrete(K) (with condition), "noise": (D,) float32 in [0, 1] (with noise), "progress": (1,) float32 in [0, 1]}`` |

    ## Rewards
    Set by ``reward`` (a spec string, see :mod:`rewards`). Default: ``target`` (the decrease of the
    mean squared error to the target, so an episode's return is initial minus final error) when
    there are targets, else ``zero``. ``info["reward_terms"]`` holds every term, unweighted.

    ## Starting State
    A blank canvas filled with ``background``; a target drawn from the dataset, the class asked for
    (``condition``) and the noise latent (``noise``) drawn from the env's seed and episode number
    (the same seed paints the same episodes).

    ## Episode End
    The episode terminates after ``max_steps`` steps (the progress is in the observation, so this
    is a termination, not a truncation). ``info["strokes"]`` then holds the episode's strokes
    ``(max_steps * S, 13)``.

    ## Arguments
    | argument           | default        | meaning                                                           |
    |--------------------|----------------|-------------------------------------------------------------------|
    | ``canvas_size``    | 64             | canvas side in pixels                                             |
    | ``strokes_per_step`` | 1            | strokes painted per step (S)                                      |
    | ``max_steps``      | 32             | steps per episode                                                 |
    | ``action_mode``    | ``continuous`` | ``continuous`` or ``discrete``                                    |
    | ``obs_mode``       | ``image``      | ``image`` or ``dict``                                             |
    | ``targets``        | None           | ``digits``, ``faces``, ``photos``, a folder, ``.npy``/``.npz``, ``gan:PATH``, ``vae:PATH`` |
    | ``target_split``   | ``train``      | ``train``, ``test`` (every 10th image, held out) or ``all``       |
    | ``target_augment`` | 0              | add this many random views (crop of 60-100% of the side, mirrored half the time) of every training image to the pool |
    | ``reward``         | see Rewards    | reward spec, e.g. ``"target:1.0, harmony:0.2"``                   |
    | ``device``         | ``cpu``        | ``cpu``, ``cuda``, ``auto``: where canvases live and are painted  |
    | ``background``     | 1.0            | grey level of the blank canvas                                    |
    | ``grid``, ``brush_sizes``, ``opacity_levels``, ``palette`` | 16, 4, 4, 16 colours | the discrete action space |
    | ``clip_actions``   | False          | clip out-of-range continuous actions (counted in ``info["clipped_actions"]``) instead of raising |
    | ``condition``      | False          | ask for a class per episode, shown in the observation; rewards written ``class=condition`` (``classifier``, ``gan`` of a class-conditional GAN) score that class. ``True``: the reward's classes; ``K``: classes 0..K-1 |
    | ``noise``          | 0              | a random latent of this many values per episode in the observation, so a deterministic policy can paint a different picture in every episode (free painting) |
    | ``render_mode``    | None           | ``rgb_array``: canvas (and target beside it) as uint8             |
    | ``render_size``    | canvas size    | re-render the strokes at this size for ``render()``               |
    | ``seed``           | None           | seed used by the first ``reset()`` without one                    |

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, render_size: int | None = None, seed: int | None = None,
                 **options: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"unsupported render_mode {render_mode!r}; paintgym renders 'rgb_array'")
        check_options(options, "CanvasEnv.__init__")
        self.core = CanvasCore(1, **options)
        self.render_mode = render_mode
        self.render_size = int(render_size or self.core.size)
        self.action_space = self.core.single_action_space
        self.observation_space = self.core.single_observation_space
        self._initial_seed = seed
        self._started = False
        self._done = True

    def _observation(self) -> Any:
        obs = self.core.observation()
        if isinstance(obs, dict):
            return {key: value.cpu().numpy()[0] for key, value in obs.items()}
        return obs.cpu().numpy()[0]  # a view into a fresh array: nobody else holds it

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; CanvasEnv.reset takes none")
        if seed is None and not self._started:
            seed = self._initial_seed
        super().reset(seed=seed)
        seeds = None
        if seed is not None or not self._started:  # a new seed stream; drawn from np_random when unseeded
            if seed is not None and seed < 0:
                raise ValueError("seed must be a non-negative integer")
            env_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
            seeds = torch.tensor([env_seed], device=self.core.device)
        self.core.reset(None, seeds)
        self._started, self._done = True, False
        return self._observation(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode is over (or never started); call reset() before step()")
        batch = action.unsqueeze(0) if isinstance(action, torch.Tensor) else np.asarray(action)[None]
        strokes, clipped = self.core.decode(batch)
        reward, terminated, terms = self.core.step(strokes)
        info: dict[str, Any] = {"reward_terms": {key: value.item() for key, value in terms.items()}}
        if clipped is not None:
            info["clipped_actions"] = int(clipped.item())
        self._done = bool(terminated.item())
        if self._done:
            info["strokes"] = self.strokes()
        return self._observation(), reward.item(), self._done, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        return self.core.frames(self.render_size)[0].cpu().numpy()

    # ------------------------------------------------------------------------------------ export
    def strokes(self) -> np.ndarray:
        """The strokes painted so far in this episode, ``(N, 13)`` float32 (layout in :mod:`canvas.strokes`)."""
        log = self.core.episode_strokes()[0, : int(self.core.steps[0]) * self.core.strokes_per_step]
        return log.cpu().numpy()

    def export_png(self, path: str | os.PathLike, size: int | None = None) -> Path:
        """Save the painting as PNG, re-rendered from its strokes at ``size`` (default: canvas size)."""
        image = export.render_strokes(self.strokes(), size or self.core.size, self.core.background)
        return export.save_png(path, image)

    def export_json(self, path: str | os.PathLike) -> Path:
        """Save the stroke list as JSON."""
        return export.save_json(path, self.strokes(), self.core.size, self.core.background)

    def export_svg(self, path: str | os.PathLike, size: int | None = None) -> Path:
        """Save the painting as SVG, one path per stroke."""
        return export.save_svg(path, self.strokes(), size or self.core.size, self.core.background)
