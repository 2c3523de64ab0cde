"""Load a trained agent from a run directory or checkpoint, to act and to paint (``paintgym paint``, ``eval``).

:func:`load_agent` rebuilds the run's configuration, its policy network (PPO, REINFORCE or SB3's
PPO) with the trained weights, and the state of its reward (a learning reward's critic or archive),
on the device asked for. :meth:`PretrainedAgent.make_env` then makes evaluation envs like the
trainer's: the run's env options, the held-out target split, the reward restored.
:class:`PolicyPainter` is a trained agent as a painter (:mod:`agents.painters`): targets in, strokes out.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paintgym.agents.common import Algorithm
from paintgym.agents.networks import Observation
from paintgym.agents.painters import check_int, check_request, resize_images
from paintgym.canvas.images import DatasetError, to_uint8
from paintgym.envs.targets import InOrderTargets, TargetSource
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.experiments.algorithms import algorithm_entry, make_algorithm, saved_args
from paintgym.experiments.checkpoints import find_checkpoint, load_checkpoint
from paintgym.experiments.device import resolve_device
from paintgym.experiments.env_factory import EVAL_SEED_OFFSET, make_env, make_eval_env
from paintgym.experiments.evaluate import evaluate
from paintgym.experiments.train_config import TrainConfig


@dataclass
class PretrainedAgent:
    """A trained policy with the configuration it was trained under.

    :param config: the run's configuration (``device`` set to where the agent now lives).
    :param args: the algorithm's hyperparameters.
    :param algorithm: the algorithm object holding the trained network (its ``act`` is used).
    :param reward_state: the reward's state at the checkpoint.
    :param checkpoint: the checkpoint file read.
    :param global_step: env steps the agent was trained for.
    :param trained_on_targets: whether its task had target images.
    :param missing_targets: why the run's own images could not be loaded here (None: they could). The agent
        still paints targets passed to it; only its own held-out images are unavailable.
    """

    config: TrainConfig
    args: Any
    algorithm: Algorithm
    reward_state: dict[str, Any]
    checkpoint: Path
    global_step: int
    trained_on_targets: bool = True
    missing_targets: str | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def eval_seed(self) -> int:
        """The seed of the trainer's evaluations: seeds ``eval_seed + i`` paint its held-out episodes."""
        return self.config.seed + EVAL_SEED_OFFSET

    def act(self, obs: Observation, deterministic: bool = True) -> torch.Tensor:
        """Actions ``(B, A)`` on the agent's device for observations of an env from :meth:`make_env`."""
        return self.algorithm.act(obs, deterministic)

    def target_pool(self, targets: str) -> TargetSource:
        """Every image of a target spec (no split) at the run's canvas size, painted in order."""
        source = TargetSource.from_spec(targets, self.config.canvas_size, self.device, "all")
        return InOrderTargets(source.images, self.device, source.name)

    def check_own_targets(self) -> None:
        """Raise ``ValueError`` if the run's own images could not be loaded here (:attr:`missing_targets`)."""
        if self.missing_targets is not None:
            raise ValueError(f"the run's own images cannot be loaded from {Path.cwd()}: {self.missing_targets}; "
                             "pass the images to paint (--targets), or work from the folder the run was trained in")

    def make_env(self, num_envs: int, targets: TargetSource | None = None) -> CanvasVectorEnv:
        """An evaluation env of ``num_envs`` canvases (torch tensors out, autoreset disabled).

        :param targets: None: the run's own targets, held-out split (as the trainer evaluates);
            or a pool (e.g. :meth:`target_pool`) that replaces them.
        :raises ValueError: targets for an agent trained without them, or a reward state that does
            not fit the reward.
        """
        if targets is None:
            self.check_own_targets()
        env = make_eval_env(self.config, num_envs, self.device)
        if targets is not None:
            if env.core.targets is None:
                raise ValueError(f"this agent was trained on {self.config.env} without target images, so it "
                                 "cannot paint --targets; drop --targets")
            if targets.size != env.core.size:
                raise ValueError(f"targets are {targets.size}x{targets.size} but the canvas is "
                                 f"{env.core.size}x{env.core.size}")
            env.core.targets = targets  # read at every reset
        try:
            env.core.reward.load_state_dict(self.reward_state)
        except (ValueError, KeyError, RuntimeError) as err:
            raise ValueError(f"the reward state in {self.checkpoint} does not fit reward "
                             f"{env.core.reward.spec()!r}: {err}") from err
        return env


STAND_IN_TARGETS = "photos"
"""Bundled images that stand in for a run's own when those cannot be loaded (they only give the env its spaces)."""


def load_agent(path: str | Path, device: str | torch.device = "auto") -> PretrainedAgent:
    """Load the trained agent of a run directory or checkpoint file onto ``device``.

    :param path: a run directory written by ``paintgym train`` or its ``checkpoint.pt``.
    :param device: ``auto`` (CUDA if available), ``cpu``, ``cuda``...
    :raises FileNotFoundError: no checkpoint there.
    :raises ValueError: the file is not a paintgym checkpoint, or does not match its own configuration.
    """
    device = resolve_device(device)
    ckpt = find_checkpoint(path, what="trained agent", hint="pass")
    state = load_checkpoint(ckpt, device)
    try:
        known = {field.name for field in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{key: value for key, value in state["config"].items() if key in known})
        entry = algorithm_entry(config.agent)
        args_class = entry.args_class
        arg_names = {field.name for field in dataclasses.fields(args_class)}
        saved = saved_args(config.agent, state["args"])
        args = args_class(**{key: value for key, value in saved.items() if key in arg_names})
        algorithm_state, reward_state = state["algorithm"], state["reward"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{ckpt} is not a complete paintgym checkpoint ({err})") from err
    # acting needs neither the run's batch layout nor mixed precision on a CPU
    config = dataclasses.replace(config, device=str(device), run_dir=None, resume=None,
                                 amp=config.amp and device.type == "cuda")
    if hasattr(args, "num_minibatches"):
        args = dataclasses.replace(args, num_minibatches=1)
    # a two-canvas env gives the algorithm its spaces (SB3 needs a batch of at least 2 transitions)
    missing = None
    try:
        env = make_env(config, 2, device, native=entry.native_env)
    except DatasetError as err:
        if config.targets is None:
            raise
        # the run's images are not where its configuration says, seen from here (a relative path, another
        # machine); the policy needs only the spaces, which bundled images at the same size give
        missing = str(err)
        config = dataclasses.replace(config, targets=STAND_IN_TARGETS, eval_targets=None, target_augment=0)
        env = make_env(config, 2, device, native=entry.native_env)
    trained_on_targets = env.core.targets is not None
    algorithm = make_algorithm(config.agent, env, args, amp=config.amp, seed=config.seed)
    try:
        algorithm.load_state_dict(algorithm_state, policy_only=True)
    except (KeyError, ValueError) as err:
        raise ValueError(f"the policy in {ckpt} does not match its configuration ({err})") from err
    return PretrainedAgent(config, args, algorithm, reward_state, ckpt, int(state.get("global_step", 0)),
                           trained_on_targets, missing)


class PolicyPainter:
    """A trained agent (``paintgym train``) painting targets in its own env, deterministic actions.

    An agent that can paint whole episodes without the env (``algorithm.paint(targets)``, as the
    model-based agent does) paints that way: the same strokes but for the observations' uint8
    rounding, several times faster.

    The agent paints ``max_steps * strokes_per_step`` strokes per episode (:attr:`max_strokes`);
    asking for fewer keeps the first ones, asking for more is an error. Targets of another size
    than the run's canvas are resized to it for the agent (area averaging or bicubic); the strokes
    do not depend on the resolution, so :func:`measure_quality` re-renders them at the targets' size.

    :param run: a run directory of ``paintgym train``, its checkpoint file, or a loaded
        :class:`experiments.pretrained.PretrainedAgent`.
    :param device: where the agent runs (``auto``: CUDA if available); ignored for a loaded agent.
    :param batch_size: canvases painted at once.
    :param threaded_batches: on the CPU, paint one piece of each batch per torch thread
        (:func:`paint_on_threads`) instead of one batch with torch's threads inside each operation.
    :raises ValueError: the agent was trained without targets (``paintgym/Canvas-v0``).
    """

    incremental = True

    def __init__(self, run: str | Path | PretrainedAgent, device: str | torch.device = "auto",
                 batch_size: int = 64, threaded_batches: bool = True) -> None:
        self.agent = run if isinstance(run, PretrainedAgent) else load_agent(run, device)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.threaded_batches = bool(threaded_batches)
        config = self.agent.config
        if not self.agent.trained_on_targets:
            raise ValueError(f"the agent of {self.agent.checkpoint} was trained on {config.env} without target images, "
                             "so there is nothing to compare its paintings with; evaluate an agent trained on "
                             "paintgym/Reconstruct-v0")
        self.name = config.agent
        self.canvas_size = config.canvas_size
        self.max_strokes = config.max_steps * config.strokes_per_step

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        """Strokes ``(B, N, 13)`` on the targets' device: the first N of each episode."""
        check_request(targets, num_strokes)
        if num_strokes > self.max_strokes:
            raise ValueError(f"the agent of {self.agent.checkpoint} paints {self.max_strokes} strokes per episode "
                             f"(max_steps {self.agent.config.max_steps} x strokes_per_step "
                             f"{self.agent.config.strokes_per_step}); ask for at most {self.max_strokes}")
        device = self.agent.device
        algorithm = self.agent.algorithm
        if callable(getattr(algorithm, "paint", None)):  # a whole episode without the env (the model-based agent)
            resized = resize_images(targets.detach().float(), self.canvas_size).to(device)
            pieces = -(-resized.shape[0] // self.batch_size)
            workers = min(torch.get_num_threads(), resized.shape[0])
            if device.type != "cpu" or not self.threaded_batches:
                workers = 1
            if workers <= 1:
                out = [algorithm.paint(chunk) for chunk in resized.tensor_split(pieces)]
            else:  # every image is painted on its own, so the pieces are independent: one per CPU thread
                out = paint_on_threads(algorithm.paint, resized.tensor_split(max(pieces, workers)), workers)
            return torch.cat(out)[:, :num_strokes].to(targets.device)
        images = to_uint8(resize_images(targets.detach().float(), self.canvas_size).to(device))
        out = []
        for first in range(0, images.shape[0], self.batch_size):
            chunk = images[first:first + self.batch_size]
            env = self.agent.make_env(chunk.shape[0], InOrderTargets(chunk, device, "eval"))
            result = evaluate(lambda obs: self.agent.act(obs, True), env, self.agent.eval_seed)
            env.close()
            out.append(torch.as_tensor(result.strokes[:, :num_strokes]))
        return torch.cat(out).to(targets.device)


def paint_on_threads(paint: Any, pieces: tuple[torch.Tensor, ...], workers: int) -> list[torch.Tensor]:
    """``[paint(piece) for piece in pieces]``, the pieces painted at once on ``workers`` CPU threads.

    The window CNN's convolutions are small, and torch's intra-op threads (OpenMP) meet at a barrier
    after each one; one whole batch per thread with a single intra-op thread each keeps every core
    busy instead (bench/inference.py measures both). Torch's thread count is process-wide, so it is
    1 while the pieces are painted and restored after.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="paintgym-paint") as pool:
            return list(pool.map(paint, pieces))
    finally:
        torch.set_num_threads(threads)
