"""Pieces every algorithm shares: the interface the trainer drives, mixed precision, rollout checks."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Protocol

import torch

from agents.networks import Observation


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names it and what to try."""


class Algorithm(Protocol):
    """What :mod:`agents.trainer` needs from an algorithm (PPO, REINFORCE, SB3 PPO).

    ``train_iteration`` collects one rollout and updates the policy; iterations end on episode
    boundaries, so a checkpoint between two iterations holds no half-finished episode.
    """

    name: str
    steps_per_iteration: int  # env steps (summed over envs) per iteration
    metric_keys: list[str]  # the names train_iteration returns

    def start(self, obs: Any) -> None:
        """Continue from the training env's current observations (the trainer resets the env)."""

    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        """One rollout and update; ``iteration`` counts from 1 to ``num_iterations``."""

    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """Actions ``(B, A)`` on the env's device for a batch of observations (evaluation)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (policy, optimiser, baselines)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when ``enabled`` (no loss scaling needed), else a no-op."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_amp(device: torch.device, amp: bool) -> None:
    """Raise ``ValueError`` for mixed precision on a device other than CUDA."""
    if amp and device.type != "cuda":
        raise ValueError(f"--amp (mixed precision) needs a CUDA device, but training runs on {device}; "
                         "drop --amp or use --device cuda")


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch and for the renderer's numba kernels.

    Numba's OpenMP threading layer resets the process's OpenMP thread count when it starts, which
    would undo ``torch.set_num_threads``; so numba's layer is started (and sized) first.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    torch.set_num_threads(threads)


def finite_or_raise(metrics: dict[str, float], names: list[str], step: int) -> None:
    """Raise :class:`TrainingDiverged` if any of ``names`` in ``metrics`` is NaN or infinite."""
    bad = {name: metrics[name] for name in names if name in metrics and not math.isfinite(metrics[name])}
    if bad:
        shown = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise TrainingDiverged(f"loss became non-finite at step {step} ({shown}); try a lower --learning-rate "
                               "or --max-grad-norm")
