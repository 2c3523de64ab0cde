"""Fixtures shared by the agent tests: one CPU thread, a tiny reconstruction task, a Ctrl-C during training.

Test modules opt in to the thread setting with ``pytestmark = pytest.mark.usefixtures("one_thread")``
(it is not autouse, so modules that test threading keep their own); ``tiny_env`` is a factory.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from paintgym.envs import CanvasVectorEnv
from paintgym.experiments.device import set_threads


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Single-threaded torch and numba for a module: faster and steadier on a shared 2-core machine."""
    before = torch.get_num_threads()
    set_threads(1)
    yield
    set_threads(before)


def make_tiny_env(num_envs: int, action_mode: str = "continuous", **options) -> CanvasVectorEnv:
    """16x16 canvases, 2 steps per episode, 4 digit targets (0-3), black ink on white; the native
    tensor env the algorithms train on (``return_tensors=True``, autoreset disabled) unless ``options`` say
    otherwise."""
    digits = (255.0 - load_digits().images[:4] * 16.0).clip(0, 255).astype(np.uint8)
    options = {"return_tensors": True, "autoreset_mode": "disabled", **options}
    return CanvasVectorEnv(num_envs, targets=digits, canvas_size=16, max_steps=2, action_mode=action_mode, grid=4,
                           **options)


@pytest.fixture
def tiny_env() -> Callable[..., CanvasVectorEnv]:
    """:func:`make_tiny_env`: ``tiny_env(num_envs, action_mode="continuous", **env_options)``."""
    return make_tiny_env


def interrupt_during(trainer: Any, iteration: int, signals: tuple[int, ...] = (signal.SIGINT,)) -> None:
    """Send ``trainer`` a Ctrl-C (SIGINT; or ``signals``, in turn) during its ``iteration``-th training
    iteration, as a user would; the trainer finishes that iteration, saves a checkpoint and stops."""
    train_iteration = trainer.algo.train_iteration

    def interrupted(i: int, total: int) -> dict[str, float]:
        if i == iteration:
            for signum in signals:
                signal.raise_signal(signum)
        return train_iteration(i, total)

    trainer.algo.train_iteration = interrupted
