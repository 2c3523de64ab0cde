"""Pieces every algorithm shares: the interface the trainer drives (:class:`Algorithm`), the setup of
the network and its optimiser, mixed precision, checks."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import optim

from paintgym.agents.networks import ActorCritic, Observation

if TYPE_CHECKING:
    from paintgym.envs.vector_env import CanvasVectorEnv


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names it and what to try."""


@runtime_checkable
class Algorithm(Protocol):
    """What the trainer (:mod:`experiments.trainer`) needs from a learner; PPO, REINFORCE, SB3's PPO and the
    model-based agent implement it.

    The trainer resets the training env and calls :meth:`start` once, then :meth:`train_iteration`
    for ``iteration = 1 .. num_iterations``; each iteration plays whole episodes (the env steps
    ``steps_per_iteration`` times in all) and updates the learner, so a checkpoint between two
    iterations (:meth:`state_dict`) holds no half-finished episode. :meth:`act` is for evaluation.
    """

    name: str
    """the ``--agent`` name"""
    steps_per_iteration: int
    """env steps, summed over the envs, of one :meth:`train_iteration`"""
    metric_keys: list[str]
    """the names :meth:`train_iteration` returns values for (the columns of ``metrics.csv``)"""

    def start(self, obs: Observation) -> None:
        """Continue from the training env's current observations ``(B, ...)`` (the trainer reset the env)."""

    def train_iteration(self, iteration: int, num_iterations: int) -> dict[str, float]:
        """One rollout and update; ``iteration`` counts from 1 to ``num_iterations`` (for annealing).

        :return: ``{name: value}`` for the names of :attr:`metric_keys` (NaN where there was nothing to measure).
        """

    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """Actions ``(B, A)`` on the env's device for a batch of observations (the mode, or a sample)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (policy, optimisers, baselines, normalisers)."""

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        """Restore :meth:`state_dict`; ``policy_only``: only what acting needs (for a trained agent).

        :raises ValueError: the saved policy does not fit this network (one line, see :func:`load_policy`).
        """

    def networks(self) -> dict[str, torch.nn.Module]:
        """The networks whose weights ``--init-from`` copies, by their key in :meth:`state_dict`."""

    def freeze_parts(self) -> dict[str, list[str]]:
        """What ``--freeze`` may freeze: ``{"encoder": prefixes, "trunk": prefixes}`` of parameter names
        ``KEY.NAME`` (KEY of :meth:`networks`). ``encoder``: the convolutions that read the canvas; ``trunk``:
        everything but the output heads."""

    def restart_training(self) -> None:
        """The weights were replaced and some parameters frozen (``requires_grad`` False; ``--init-from``):
        fresh optimisers over the parameters that still train, and whatever derives from the weights (the
        model-based critic's target network) recomputed."""


# ------------------------------------------------------------------------------------ setup
def encoder_widths(width: int) -> tuple[int, int, int]:
    """CNN widths for ``--width``: the stem's, then twice as many in the convolution and the patch merge."""
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    return width, 2 * width, 2 * width


def adam_options(device: torch.device) -> dict[str, Any]:
    """Keyword arguments for ``torch.optim.Adam`` on ``device``: ``eps=1e-5`` (the PPO implementation
    details) and ``fused=True`` where torch has a fused kernel for the device (a speed-up: with a
    network of a dozen small tensors the unfused optimiser's per-tensor operations cost more than
    its arithmetic; measurements in bench/README.md). Fused Adam runs on CUDA and, from torch 2.4,
    on the CPU; both compute the same update.
    """
    options: dict[str, Any] = {"eps": 1e-5}
    try:
        optim.Adam([torch.zeros(1, device=device, requires_grad=True)], fused=True)
        options["fused"] = True
    except (RuntimeError, TypeError):  # e.g. torch < 2.4 on the CPU
        pass
    return options


def build_agent(env: CanvasVectorEnv, algorithm: str, width: int, hidden: int, learning_rate: float,
                amp: bool) -> tuple[ActorCritic, optim.Adam]:
    """The setup PPO and REINFORCE share: check the env and ``amp``, then build the actor-critic on the
    env's device and its optimiser.

    :param env: the training env; it must return torch tensors and leave resets to the algorithm.
    :param algorithm: the algorithm's name, for error messages.
    :param width: channels of the CNN's first layer (see :func:`encoder_widths`).
    :param hidden: width of the shared features.
    :param learning_rate: Adam's (initial) learning rate.
    :param amp: bfloat16 autocast is requested (CUDA only).
    """
    if not env.return_tensors or env.autoreset_mode.name != "DISABLED":
        raise ValueError(f"{algorithm} needs CanvasVectorEnv(..., return_tensors=True, autoreset_mode='disabled')")
    check_amp(env.device, amp)
    agent = ActorCritic(env.single_observation_space, env.single_action_space, encoder_widths(width), hidden)
    agent.to(env.device)
    return agent, adam(agent, learning_rate, env.device)


def prefixed(prefix: str, parts: dict[str, list[str]]) -> dict[str, list[str]]:
    """``freeze_parts`` of a network under its key: every prefix with ``prefix`` (e.g. ``"agent."``) in front."""
    return {part: [prefix + name for name in names] for part, names in parts.items()}


def adam(module: torch.nn.Module, learning_rate: float, device: torch.device) -> optim.Adam:
    """Adam (with :func:`adam_options`) over the parameters of ``module`` that require gradients."""
    return optim.Adam([p for p in module.parameters() if p.requires_grad], lr=learning_rate, **adam_options(device))


class FlatGradients:
    """The gradients of ``parameters`` as views of one flat buffer: ``zero_grad`` and ``clip_grad_norm_``
    for updates of many small minibatches, computing what torch's do.

    Zeroing is one fill, the global gradient norm one reduction and clipping one multiply, where
    ``optimizer.zero_grad`` and ``nn.utils.clip_grad_norm_`` run a few operations per parameter
    tensor (a speed-up on a CPU without foreach kernels; measurements in bench/README.md). Backward
    passes accumulate into the views in place. :meth:`zero_grad` re-attaches the views, so code
    elsewhere that sets ``.grad`` to ``None`` (``zero_grad(set_to_none=True)``) cannot leave the
    buffer stale.

    :param parameters: the parameters (those that do not require gradients are left alone).
    """

    def __init__(self, parameters: Any) -> None:
        self.params = [p for p in parameters if p.requires_grad]
        if not self.params:
            raise ValueError("no parameters that require gradients")
        self.flat = torch.zeros(sum(p.numel() for p in self.params), dtype=self.params[0].dtype,
                                device=self.params[0].device)
        self.views = list(self.flat.split([p.numel() for p in self.params]))
        self.views = [view.view_as(p) for view, p in zip(self.views, self.params, strict=True)]

    def zero_grad(self) -> None:
        """Zero the gradients (and point every parameter's ``.grad`` at its view)."""
        self.flat.zero_()
        for p, view in zip(self.params, self.views, strict=True):
            if p.grad is not view:
                p.grad = view

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a global norm of at most ``max_norm`` (``clip_grad_norm_``'s rule,
        ``max_norm / (norm + 1e-6)`` capped at 1); returns the norm before clipping."""
        norm = torch.linalg.vector_norm(self.flat)
        self.flat.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm


def load_policy(agent: torch.nn.Module, state: dict[str, Any]) -> None:
    """``agent.load_state_dict(state)``, with a one-line ``ValueError`` when the saved policy has another
    architecture (e.g. a checkpoint of an older paintgym whose network has since changed)."""
    try:
        agent.load_state_dict(state)
    except RuntimeError as err:
        missing = sorted(set(agent.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(agent.state_dict()))
        detail = f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "tensor shapes differ"
        raise ValueError(f"the saved policy does not fit this network ({detail}); it was trained with another "
                         "network layout (another --width/--hidden or an older paintgym): retrain it") from err


def minibatch_size(batch: int, num_minibatches: int) -> int:
    """Transitions per minibatch when a rollout of ``batch`` transitions is split ``num_minibatches`` ways."""
    if not 1 <= num_minibatches <= batch:
        raise ValueError(f"num_minibatches must be between 1 and the batch of {batch} transitions, got "
                         f"{num_minibatches}; use fewer minibatches or more envs")
    return batch // num_minibatches


# -------------------------------------------------------------------------------- precision
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


# ------------------------------------------------------------------------------------- checks
def finite_or_raise(metrics: dict[str, float], names: list[str], step: int) -> None:
    """Raise :class:`TrainingDiverged` if any of ``names`` in ``metrics`` is NaN or infinite."""
    bad = {name: metrics[name] for name in names if name in metrics and not math.isfinite(metrics[name])}
    if bad:
        shown = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise TrainingDiverged(f"loss became non-finite at step {step} ({shown}); try a lower --learning-rate "
                               "or --max-grad-norm")
