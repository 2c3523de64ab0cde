"""paintgym environments: a batched canvas core with Gymnasium faces.

``import paintgym`` (or anything under it) registers:

* ``paintgym/Canvas-v0`` — free painting on a blank canvas, no target (reward ``zero`` unless set);
* ``paintgym/Reconstruct-v0`` — paint towards targets drawn from a dataset (default: scikit-learn's
  digits), reward ``target``; the observation includes the target.

Both work with ``gymnasium.make`` and ``gymnasium.make_vec`` (which returns the native
:class:`CanvasVectorEnv` unless another ``vectorization_mode`` is asked for).
"""

from __future__ import annotations

import os

import torch

from paintgym import ENV_IDS
from paintgym.canvas.render import paint_
from paintgym.envs.canvas_env import CanvasEnv
from paintgym.envs.core import CanvasCore, resolve_device
from paintgym.envs.targets import TargetSource
from paintgym.envs.vector_env import CanvasVectorEnv

__all__ = ["CanvasCore", "CanvasEnv", "CanvasVectorEnv", "TargetSource", "paint_", "resolve_device",
           "ENV_IDS"]


# A forked child (gymnasium's AsyncVectorEnv on Linux) inherits OpenMP's thread pool in a state it cannot
# use: its first parallel torch op would hang. One intra-op thread per worker process is what an async
# vector env wants anyway.
os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))
