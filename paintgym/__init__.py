"""paintgym: reinforcement-learning agents that learn to paint.

``import paintgym`` registers the Gymnasium environments (without importing torch; they load on
``gymnasium.make``), so ``gymnasium.make("paintgym:paintgym/Reconstruct-v0")`` works in any library
that takes an env id. The packages, bottom layer first (a module imports only from its layer and the ones
below it; ``tests/test_layering.py`` checks):

* ``paintgym.canvas`` — strokes, the renderer, image I/O and dataset splits, exports and videos, atomic
  writes, the numba helpers; imports nothing else of ours;
* ``paintgym.generative`` — GAN, VAE, classifier models and their training steps;
* ``paintgym.rewards`` — pluggable rewards composed by name and weight;
* ``paintgym.envs`` — targets, observations, the batched canvas core and its Gymnasium faces;
* ``paintgym.agents`` — the learners (model-based, PPO, REINFORCE, the SB3 adapter) and painters;
* ``paintgym.cli`` — the ``paintgym`` command (``python train.py`` is ``paintgym train``).
"""

from __future__ import annotations

import gymnasium as gym

__version__ = "0.2.0"

ENV_IDS = ("paintgym/Canvas-v0", "paintgym/Reconstruct-v0")
_DEFAULTS = {"paintgym/Canvas-v0": {}, "paintgym/Reconstruct-v0": {"targets": "digits"}}

for _env_id in ENV_IDS:
    if _env_id not in gym.registry:
        gym.register(
            id=_env_id,
            entry_point="paintgym.envs.canvas_env:CanvasEnv",
            vector_entry_point="paintgym.envs.vector_env:CanvasVectorEnv",
            kwargs=_DEFAULTS[_env_id],
        )
