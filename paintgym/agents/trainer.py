"""The training loop around an algorithm: run directory, logs, checkpoints, evaluation, artefacts.

A run directory holds::

    config.toml            the resolved configuration (``paintgym train --config`` reads it back)
    checkpoint.pt          the latest checkpoint, written atomically (policy, optimiser, reward state,
                           env episode counters, RNG states); ``--resume RUN_DIR`` continues exactly
    metrics.csv            one row per iteration: returns, each reward term, losses, steps/s, and at
                           evaluations the held-out return, L2, PSNR and reward terms
    tb/                    TensorBoard scalars (the same numbers)
    videos/step_*.mp4      the agent painting held-out targets, every ``--video-every`` steps
    final_paintings.png    contact sheet: final paintings beside their held-out targets
    learning_curve.png     returns and held-out L2 / PSNR against env steps
    painting.mp4           the trained agent painting held-out targets
    final_episodes.npz     the final evaluation's episodes: ``strokes`` (N, T*S, 13), ``paintings``
                           (N, H, W, 3) uint8, ``targets`` (N, H, W, 3) uint8 when the task has them
    summary.json           the final evaluation

Iterations end on episode boundaries (episodes have a fixed length), so a checkpoint holds no
half-painted canvas: restoring the env needs only its episode counters. Ctrl-C finishes the current
iteration, writes a checkpoint and stops; a second Ctrl-C stops at once. A NaN or infinite loss
stops the run before anything is saved, so the last checkpoint on disk is the last good one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from paintgym import envs  # noqa: F401  (registers the paintgym env ids)
from paintgym.agents.common import TrainingDiverged, finite_or_raise, set_threads
from paintgym.agents.config import dump_toml
from paintgym.agents.evaluate import EvalResult, evaluate
from paintgym.agents.model_based import ModelBased, ModelBasedArgs
from paintgym.agents.ppo import PPO, PPOArgs
from paintgym.agents.reinforce import Reinforce, ReinforceArgs
from paintgym.canvas.export import atomic_write_bytes, save_png
from paintgym.canvas.painting_video import default_frames_per_stroke, reward_captions, write_painting_video
from paintgym.canvas.video import grid
from paintgym.envs.core import resolve_device
from paintgym.envs.targets import InOrderTargets
from paintgym.envs.vector_env import CanvasVectorEnv

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "paintgym-checkpoint/1"
FINAL_EPISODES = "final_episodes.npz"
EVAL_SEED_OFFSET = 1_000_003  # evaluation env i is seeded config.seed + EVAL_SEED_OFFSET + i
VIDEO_EPISODES = 8  # held-out episodes shown in the videos
VIDEO_FPS = 24


@dataclass
class TrainConfig:
    env: str = "paintgym/Reconstruct-v0"
    """the registered env id (paintgym/Reconstruct-v0 or paintgym/Canvas-v0)"""
    agent: str = "model-based"
    """the algorithm: model-based (learns through the differentiable renderer), ppo, reinforce or sb3-ppo"""
    reward: str | None = None
    """reward spec, e.g. 'target:1.0, harmony:0.2' (None: the env's default)"""
    targets: str | None = None
    """target images: digits, faces, photos, a folder, .npy/.npz, gan:PATH, vae:PATH (None: the env's default)"""
    eval_targets: str | None = None
    """held-out target images for evaluation, all of them; every --targets image then trains (None: every 10th
    image of --targets is held out)"""
    target_augment: int = 0
    """random views (crops of 60-100% of the side, mirrored half the time) added per training image (0: none)"""
    num_envs: int = 64
    """canvases painted in parallel"""
    total_steps: int = 81_920
    """env steps to train for (summed over envs)"""
    device: str = "auto"
    """where env, policy and storage live: auto (CUDA if available), cpu or cuda"""
    seed: int = 1
    """seed of the env, the policy and every random generator"""
    run_dir: str | None = None
    """the run directory (None: runs/AGENT-ENV-sSEED-TIME)"""
    resume: str | None = None
    """continue the run in this run directory (or from this checkpoint file)"""
    eval_every: int = 16_384
    """evaluate on held-out targets every this many env steps (0: only at the start and the end)"""
    video_every: int = 0
    """write a video of the agent painting every this many env steps (0: only at the end)"""
    checkpoint_every: int = 16_384
    """write a checkpoint every this many env steps (and always at the end)"""
    eval_episodes: int = 32
    """held-out episodes per evaluation"""
    canvas_size: int = 32
    """canvas side in pixels"""
    max_steps: int = 8
    """steps per episode"""
    strokes_per_step: int = 1
    """strokes painted per step"""
    action_mode: str = "continuous"
    """continuous (Beta policy) or discrete (one categorical per MultiDiscrete component)"""
    obs_mode: str = "image"
    """image or dict observations"""
    amp: bool = False
    """bfloat16 mixed precision for the network (CUDA only)"""
    video_size: int = 128
    """side of each painting in videos and the contact sheet (re-rendered from the strokes)"""
    progress: bool = True
    """show a progress bar"""
    threads: int = 1
    """CPU threads for torch and the renderer (0: all cores; 1 is steadier, idle OpenMP threads spin on busy CPUs)"""


ALGORITHMS: dict[str, tuple[type, type]] = {"model-based": (ModelBased, ModelBasedArgs), "ppo": (PPO, PPOArgs),
                                            "reinforce": (Reinforce, ReinforceArgs)}


def algorithm_args_class(agent: str) -> type:
    """The hyperparameter dataclass of ``agent``."""
    if agent == "sb3-ppo":
        from paintgym.agents.sb3_ppo import SB3PPOArgs

        return SB3PPOArgs
    if agent not in ALGORITHMS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {', '.join([*ALGORITHMS, 'sb3-ppo'])}")
    return ALGORITHMS[agent][1]


def env_options(config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Keyword arguments for ``gymnasium.make_vec`` from the configuration (None: the env's default)."""
    options: dict[str, Any] = {
        "canvas_size": config.canvas_size, "max_steps": config.max_steps, "strokes_per_step": config.strokes_per_step,
        "action_mode": config.action_mode, "obs_mode": config.obs_mode, "device": device,
    }
    if config.reward is not None:
        options["reward"] = config.reward
    if config.targets is not None:
        options["targets"] = config.targets
    if config.target_augment:
        options["target_augment"] = config.target_augment
    return options


def make_env(config: TrainConfig, num_envs: int, device: torch.device, native: bool = True,
             split: str = "train") -> CanvasVectorEnv:
    """A vector env of ``config.env``: native (torch tensors, autoreset disabled) or for SB3 (numpy, SAME_STEP)."""
    if config.env not in gym.registry:
        raise ValueError(f"unknown env id {config.env!r}; paintgym registers {', '.join(envs.ENV_IDS)}")
    options = env_options(config, device)
    if split != "train":
        options["target_split"] = split
    mode = "disabled" if native else "same_step"
    env = gym.make_vec(config.env, num_envs=num_envs, return_tensors=native, autoreset_mode=mode, **options)
    if not isinstance(env.unwrapped, CanvasVectorEnv):
        raise ValueError(f"env {config.env!r} is not a paintgym canvas env")
    return env.unwrapped


def make_eval_env(config: TrainConfig, num_envs: int, device: torch.device) -> CanvasVectorEnv:
    """The held-out evaluation env: every image of ``--eval-targets``, else the test split of the
    run's targets (the split means nothing to a task without targets), env ``i`` painting image ``i mod N``
    (random draws would paint some images twice and leave others out)."""
    if config.eval_targets is not None:
        env = make_env(dataclasses.replace(config, targets=config.eval_targets), num_envs, device, split="all")
    else:
        env = make_env(config, num_envs, device, split="test")
    pool = env.core.targets
    if pool is not None:
        env.core.targets = InOrderTargets(pool.images, device, pool.name)
    return env


def make_algorithm(config: TrainConfig, args: Any, env: CanvasVectorEnv) -> Any:
    if config.agent == "sb3-ppo":
        from paintgym.agents.sb3_ppo import SB3PPO

        return SB3PPO(env, args, seed=config.seed, amp=config.amp)
    algorithm_class, _ = ALGORITHMS[config.agent]
    return algorithm_class(env, args, amp=config.amp)


# ------------------------------------------------------------------------------------------ RNG
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (SB3 draws its minibatches from the legacy global generator)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain values (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached": float(cached)},
             "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------ run files
def default_run_dir(config: TrainConfig) -> Path:
    name = config.env.split("/")[-1]
    return Path("runs") / f"{config.agent}-{name}-s{config.seed}-{datetime.now():%Y%m%d-%H%M%S}"


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file of a run directory, or ``path`` itself if it is a file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; --resume takes a run directory holding {CHECKPOINT} "
                                "or a checkpoint file")
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :class:`Trainer` (tensors mapped to ``device``)."""
    path = find_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a paintgym training checkpoint")
    return state


class MetricsLog:
    """``metrics.csv`` (columns fixed by the first row written) and TensorBoard scalars."""

    def __init__(self, run_dir: Path, columns: list[str], resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.csv"
        self.columns = columns
        self.rows: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():  # keep the rows up to the checkpoint
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or columns)
                self.rows = [row for row in reader if int(row["step"]) <= resume_step]
        atomic_write_bytes(self.path, self._render(self.rows).encode())
        self._handle = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, self.columns, restval="", extrasaction="ignore")
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def _render(self, rows: list[dict[str, Any]]) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def write(self, step: int, values: dict[str, float]) -> None:
        row = {"step": step, **{key: _fmt(value) for key, value in values.items()}}
        self._writer.writerow(row)
        self._handle.flush()
        self.rows.append(row)
        for key, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(key, value, step)
        self.tb.flush()

    def close(self) -> None:
        self._handle.close()
        self.tb.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


@contextmanager
def _interruptible() -> Iterator[dict[str, bool]]:
    """First Ctrl-C sets ``flag["stop"]`` (the loop saves and stops); a second one interrupts at once.

    SIGTERM (a job scheduler's notice, or the kernel's when a ``paintgym sweep`` dies) also sets the
    flag, however often it comes: it never makes the run quit without its checkpoint. Outside the
    main thread (where Python allows no signal handlers) both behave as usual.
    """
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print("\nCtrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to quit at once)",
                  flush=True)
        elif not flag["stop"]:
            print("\nSIGTERM: finishing this iteration, then saving a checkpoint", flush=True)
        flag["stop"] = True

    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield flag
    finally:
        for signum, old_handler in previous.items():
            signal.signal(signum, old_handler)


@dataclass
class TrainResult:
    """What :func:`train` did: the run directory, the steps trained, the final evaluation, and why it stopped."""

    run_dir: Path
    global_step: int
    final_eval: dict[str, float] | None
    status: str  # "finished", "interrupted" or "diverged"


class Trainer:
    """Trains ``config.agent`` with hyperparameters ``args`` (see the module docstring).

    :param config: the run configuration.
    :param args: the algorithm's hyperparameters (``PPOArgs``, ``ReinforceArgs`` or ``SB3PPOArgs``).
    """

    def __init__(self, config: TrainConfig, args: Any) -> None:
        expected = algorithm_args_class(config.agent)
        if not isinstance(args, expected):
            raise TypeError(f"--agent {config.agent} takes {expected.__name__}, got {type(args).__name__}")
        for name in ("num_envs", "total_steps", "eval_episodes", "video_size"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
        for name in ("eval_every", "video_every", "checkpoint_every"):
            if getattr(config, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or a positive number of steps, got {getattr(config, name)}")
        self.config, self.args = config, args
        self.device = resolve_device(config.device)
        self.checkpoint_state: dict[str, Any] | None = None
        if config.resume:
            self.checkpoint_state = load_checkpoint(config.resume, self.device)
            ckpt = find_checkpoint(config.resume)
            self.run_dir = Path(config.run_dir) if config.run_dir else ckpt.parent
        else:
            self.run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
            if (self.run_dir / CHECKPOINT).exists():
                raise FileExistsError(f"{self.run_dir} already holds a run; continue it with --resume {self.run_dir} "
                                      "or choose another --run-dir")

        if config.threads < 0:
            raise ValueError(f"threads must be 0 (all cores) or a positive count, got {config.threads}")
        if config.threads:
            set_threads(config.threads)
        seed_everything(config.seed)
        native = config.agent != "sb3-ppo"
        train_split = "all" if config.eval_targets is not None else "train"  # held-out images come from elsewhere
        self.env = make_env(config, config.num_envs, self.device, native=native, split=train_split)
        self.eval_env = make_eval_env(config, config.eval_episodes, self.device)
        self.eval_seed = config.seed + EVAL_SEED_OFFSET  # fixed: every evaluation paints the same targets
        self.algo = make_algorithm(config, args, self.env)
        self.num_iterations = max(1, math.ceil(config.total_steps / self.algo.steps_per_iteration))
        self.iteration = 0
        self.global_step = 0
        self.elapsed = 0.0
        self.last_checkpoint: Path | None = None

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        core = self.env.core
        state = {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "args": asdict(self.args),
            "algorithm": self.algo.state_dict(),
            "reward": core.reward.state_dict(),
            "env": {"env_seeds": core.env_seeds.clone(), "episodes": core.episodes.clone()},
            "rng": rng_state(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.last_checkpoint = atomic_write_bytes(self.run_dir / CHECKPOINT, buffer.getvalue())
        return self.last_checkpoint

    def _start_env(self) -> Any:
        """Reset the training env; when resuming, move it to the checkpoint's episodes and restore state."""
        env, core = self.env, self.env.core
        obs, _ = env.reset(seed=self.config.seed)
        state = self.checkpoint_state
        if state is None:
            return obs
        saved = state["env"]
        if saved["episodes"].shape != core.episodes.shape:
            raise ValueError(f"the checkpoint was trained with {saved['episodes'].shape[0]} envs; "
                             f"resume with --num-envs {saved['episodes'].shape[0]}")
        self.algo.load_state_dict(state["algorithm"])
        core.reward.load_state_dict(state["reward"])
        core.env_seeds.copy_(saved["env_seeds"])
        core.episodes.copy_(saved["episodes"] - 1)  # the reset below moves every env to its saved episode
        obs, _ = env.reset(options={"reset_mask": np.ones(env.num_envs, dtype=bool)})
        set_rng_state(state["rng"])
        self.iteration, self.global_step = int(state["iteration"]), int(state["global_step"])
        self.elapsed = float(state["elapsed"])
        self.last_checkpoint = find_checkpoint(self.config.resume)
        return obs

    # ------------------------------------------------------------------------------- evaluation
    def evaluate(self) -> EvalResult:
        # rewards that learn (novelty archive, online GAN critic) score held-out episodes as trained so far
        if self.env.core.reward.learns:
            self.eval_env.core.reward.load_state_dict(self.env.core.reward.state_dict())
        return evaluate(self.algo.act, self.eval_env, self.eval_seed)

    def _write_video(self, result: EvalResult, path: Path) -> Path:
        """The first held-out episodes painted stroke by stroke beside their targets, with the running
        reward terms (:mod:`envs.painting_video`), about four seconds plus two on the final paintings."""
        core, shown = self.eval_env.core, slice(0, VIDEO_EPISODES)
        captions = reward_captions(result.step_rewards[shown], {key: value[shown] for key, value in
                                                                result.step_terms.items()}, core.strokes_per_step)
        per_stroke = default_frames_per_stroke(result.strokes.shape[1], VIDEO_FPS, seconds=4.0)
        return write_painting_video(path, result.strokes[shown], self.config.video_size, fps=VIDEO_FPS,
                                    frames_per_stroke=per_stroke, background=core.background,
                                    targets=None if result.targets is None else result.targets[shown],
                                    captions=captions)[0]

    def _eval_metrics(self, result: EvalResult) -> dict[str, float]:
        return {f"eval/{key}": value for key, value in result.metrics.items()}

    # -------------------------------------------------------------------------------- the loop
    def train(self) -> TrainResult:
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = {key: value for key, value in asdict(config).items() if key not in ("run_dir", "resume")}
        record.update(asdict(self.args))
        header = (f"paintgym train, resolved configuration ({datetime.now():%Y-%m-%d %H:%M:%S})\n"
                  f"rerun with: paintgym train --config {self.run_dir / 'config.toml'} --run-dir NEW_DIR")
        atomic_write_bytes(self.run_dir / "config.toml", dump_toml(record, header).encode())

        obs = self._start_env()
        self.algo.start(obs)
        eval_keys = [f"eval/{key}" for key in self._eval_key_names()]
        columns = ["step", "iteration", "time_s", "steps_per_s", *self.algo.metric_keys, *eval_keys]
        log = MetricsLog(self.run_dir, columns, self.global_step if self.checkpoint_state else None)
        status = "finished"
        progress = self._progress_bar()
        try:
            with _interruptible() as interrupt:
                if self.checkpoint_state is None:  # the untrained policy, for the learning curve
                    log.write(0, {"iteration": 0, "time_s": 0.0, **self._eval_metrics(self.evaluate())})
                while self.iteration < self.num_iterations:
                    started = time.perf_counter()
                    metrics = self.algo.train_iteration(self.iteration + 1, self.num_iterations)
                    finite_or_raise(metrics, ["policy_loss", "value_loss", "entropy"], self.global_step)
                    took = time.perf_counter() - started
                    previous = self.global_step
                    self.iteration += 1
                    self.global_step += self.algo.steps_per_iteration
                    self.elapsed += took
                    row = {"iteration": self.iteration, "time_s": self.elapsed,
                           "steps_per_s": self.algo.steps_per_iteration / took, **metrics}
                    last = self.iteration == self.num_iterations
                    scores = not last and _crossed(previous, self.global_step, config.eval_every)
                    video = not last and _crossed(previous, self.global_step, config.video_every)
                    if scores or video:  # the last iteration's evaluation is finish()'s
                        result = self.evaluate()
                        if scores:
                            row.update(self._eval_metrics(result))
                        if video:
                            self._write_video(result, self.run_dir / "videos" / f"step_{self.global_step:09d}.mp4")
                    log.write(self.global_step, row)
                    if progress is not None:
                        progress.update(self.algo.steps_per_iteration)
                        progress.set_postfix_str(self._postfix(row), refresh=False)
                    if last or interrupt["stop"] or _crossed(previous, self.global_step, config.checkpoint_every):
                        self.save_checkpoint()
                    if interrupt["stop"]:
                        status = "interrupted"
                        break
        except TrainingDiverged as err:
            kept = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(f"{err}; stopped, {kept}") from None
        finally:
            if progress is not None:
                progress.close()
            log.close()
        final = None
        if status == "finished":
            final = self.finish(log)
        return TrainResult(self.run_dir, self.global_step, final, status)

    def _eval_key_names(self) -> list[str]:
        keys = ["return", *[f"term/{key}" for key in self.eval_env.core.reward.keys]]
        return keys + (["l2", "psnr"] if self.eval_env.core.targets is not None else [])

    def _progress_bar(self) -> Any:
        if not self.config.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.num_iterations * self.algo.steps_per_iteration, initial=self.global_step,
                    unit="step", unit_scale=True, dynamic_ncols=True, desc=self.config.agent)

    @staticmethod
    def _postfix(row: dict[str, Any]) -> str:
        parts = [f"return={row['return']:.4f}"] if math.isfinite(row.get("return", math.nan)) else []
        if "eval/l2" in row:
            parts.append(f"eval_l2={row['eval/l2']:.4f}")
        parts.append(f"{row['steps_per_s']:.0f} steps/s")
        return " ".join(parts)

    # ------------------------------------------------------------------------------- artefacts
    def finish(self, log: MetricsLog) -> dict[str, float]:
        """Final evaluation, contact sheet, learning curve, video and summary."""
        result = self.evaluate()
        metrics = self._eval_metrics(result)
        with open(log.path, "a", newline="") as handle:  # the final evaluation joins the last row's step
            csv.DictWriter(handle, log.columns, restval="", extrasaction="ignore").writerow(
                {"step": self.global_step, "iteration": self.iteration, **{k: _fmt(v) for k, v in metrics.items()}})
        log.rows.append({"step": self.global_step, **metrics})
        save_episodes(self.run_dir / FINAL_EPISODES, result)
        sheet = self._contact_sheet(result)
        save_png(self.run_dir / "final_paintings.png", sheet)
        self._write_video(result, self.run_dir / "painting.mp4")
        plot_learning_curve(log.rows, self.run_dir / "learning_curve.png",
                            title=f"{self.config.agent} on {self.config.env}")
        summary = {"global_step": self.global_step, "iterations": self.iteration, "train_seconds": self.elapsed,
                   **metrics}
        atomic_write_bytes(self.run_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        return metrics

    def _contact_sheet(self, result: EvalResult, count: int = 16) -> np.ndarray:
        return grid(self.eval_env.core.frames(self.config.video_size)[:count].cpu().numpy())


def save_episodes(path: Path, result: EvalResult) -> Path:
    """Write an evaluation's stroke histories, paintings and targets to ``path`` (``.npz``, atomically)."""
    arrays = {"strokes": result.strokes, "paintings": result.paintings}
    if result.targets is not None:
        arrays["targets"] = result.targets
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def _crossed(before: int, after: int, every: int) -> bool:
    """Did the step count pass a multiple of ``every`` (0: never)?"""
    return every > 0 and after // every > before // every


def plot_learning_curve(rows: list[dict[str, Any]], path: Path, title: str = "") -> Path:
    """Training and held-out returns, and held-out L2 / PSNR when present, against env steps (a PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key: str) -> tuple[list[float], list[float]]:
        points = [(float(row["step"]), float(row[key])) for row in rows if row.get(key) not in (None, "")]
        points = [(x, y) for x, y in points if math.isfinite(y)]
        return [x for x, _ in points], [y for _, y in points]

    has_l2 = bool(series("eval/l2")[0])
    figure = Figure(figsize=(10 if has_l2 else 6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2 if has_l2 else 1, squeeze=False)[0]
    for key, label, style in (("return", "training episodes", "-"), ("eval/return", "held-out evaluation", "o-")):
        xs, ys = series(key)
        if xs:
            axes[0].plot(xs, ys, style, label=label, markersize=3)
    axes[0].set(xlabel="env steps", ylabel="episode return", title=title)
    axes[0].legend(loc="best")
    if has_l2:
        xs, ys = series("eval/l2")
        axes[1].plot(xs, ys, "o-", color="tab:red", markersize=3)
        axes[1].set(xlabel="env steps", ylabel="held-out L2 (lower is better)", title="held-out reconstruction")
        twin = axes[1].twinx()
        xs, ys = series("eval/psnr")
        twin.plot(xs, ys, "s--", color="tab:green", markersize=3)
        twin.set_ylabel("PSNR (dB)", color="tab:green")
    for ax in axes:
        ax.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def train(config: TrainConfig, args: Any) -> TrainResult:
    """Train ``config.agent`` with ``args``; see :class:`Trainer`."""
    return Trainer(config, args).train()
