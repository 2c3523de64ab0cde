"""The algorithms ``paintgym train --agent`` knows, by name: their class, hyperparameter dataclass and env.

Every algorithm implements :class:`agents.common.Algorithm`. The native ones train on the vector env's
torch tensors with resets left to them; SB3's PPO steps the same env through numpy
(:class:`agents.sb3_vec_env.SB3VecEnv`), with same-step autoreset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paintgym.agents.common import Algorithm
from paintgym.agents.model_based import ModelBased, ModelBasedArgs
from paintgym.agents.ppo import PPO, PPOArgs
from paintgym.agents.reinforce import Reinforce, ReinforceArgs
from paintgym.agents.sb3_ppo import SB3PPO, SB3PPOArgs
from paintgym.envs.vector_env import CanvasVectorEnv


@dataclass(frozen=True)
class AlgorithmEntry:
    """One ``--agent``: its class, its hyperparameters, and whether it steps the native tensor env."""

    cls: type
    args_class: type
    native_env: bool = True
    network: str = ""
    """the kind of network it trains (agents with the same one can start from each other's runs, --init-from)"""


ALGORITHMS: dict[str, AlgorithmEntry] = {
    "model-based": AlgorithmEntry(ModelBased, ModelBasedArgs, network="the model-based actor and critic"),
    "ppo": AlgorithmEntry(PPO, PPOArgs, network="an actor-critic"),
    "reinforce": AlgorithmEntry(Reinforce, ReinforceArgs, network="an actor-critic"),
    "sb3-ppo": AlgorithmEntry(SB3PPO, SB3PPOArgs, native_env=False, network="an SB3 policy"),
}


def algorithm_entry(agent: str) -> AlgorithmEntry:
    """The registry entry of ``agent``; an unknown name raises ``ValueError`` listing the known ones."""
    if agent not in ALGORITHMS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[agent]


def algorithm_args_class(agent: str) -> type:
    """The hyperparameter dataclass of ``agent``."""
    return algorithm_entry(agent).args_class


def saved_args(agent: str, saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters, with the values of options it predates as they were before them.

    An option added later would otherwise take its new default when an older run is resumed or loaded,
    and change what that run paints (the model-based agent's residual anchors, for one); an args
    dataclass lists such values in ``LEGACY_DEFAULTS``.
    """
    if agent not in ALGORITHMS:
        return dict(saved)
    return {**getattr(ALGORITHMS[agent].args_class, "LEGACY_DEFAULTS", {}), **saved}


def make_algorithm(agent: str, env: CanvasVectorEnv, args: Any, amp: bool = False, seed: int = 0) -> Algorithm:
    """Build ``agent`` on ``env`` (made by :func:`experiments.env_factory.make_env` with its ``native_env``).

    :param args: an instance of the agent's hyperparameter dataclass.
    :param amp: bfloat16 autocast for the network (CUDA).
    :param seed: seeds SB3's own generators (the native algorithms draw from torch's global one).
    """
    entry = algorithm_entry(agent)
    if not isinstance(args, entry.args_class):
        raise TypeError(f"--agent {agent} takes {entry.args_class.__name__}, got {type(args).__name__}")
    if entry.cls is SB3PPO:
        return SB3PPO(env, args, seed=seed, amp=amp)
    return entry.cls(env, args, amp=amp)
