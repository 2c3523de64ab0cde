"""The training loop around an algorithm (:class:`agents.common.Algorithm`): iterations, held-out
evaluations, checkpoints, resume, and the run's files.

A run directory holds::

    config.toml            the resolved configuration (``paintgym train --config`` reads it back)
    checkpoint.pt          the latest checkpoint (:mod:`experiments.checkpoints`): policy, optimiser,
                           reward state, env episode counters, RNG states; ``--resume RUN_DIR`` continues exactly
    metrics.csv, tb/       one row per iteration (:mod:`experiments.logs`): returns, each reward term,
                           losses, steps/s, and at evaluations the held-out return, L2, PSNR and reward terms
    videos/, painting.mp4, final_paintings.png, learning_curve.png, final_episodes.npz, summary.json
                           the output files (:mod:`experiments.artefacts`)

``--init-from RUN`` starts a new run from another run's network weights (:mod:`experiments.transfer`).

Iterations end on episode boundaries (episodes have a fixed length), so a checkpoint holds no
half-painted canvas: restoring the env needs only its episode counters. Ctrl-C finishes the current
iteration, writes a checkpoint and stops; a second Ctrl-C stops at once (:mod:`experiments.signals`).
A NaN or infinite loss stops the run before anything is saved, so the last checkpoint on disk is the
last good one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paintgym.agents.common import Algorithm, TrainingDiverged, finite_or_raise
from paintgym.canvas.export import atomic_write_bytes
from paintgym.experiments import artefacts, distributed
from paintgym.experiments.algorithms import algorithm_entry, make_algorithm
from paintgym.experiments.checkpoints import CHECKPOINT, find_checkpoint, load_checkpoint, save_checkpoint
from paintgym.experiments.config import dump_toml
from paintgym.experiments.device import set_threads
from paintgym.experiments.env_factory import EVAL_SEED_OFFSET, make_env, make_eval_env
from paintgym.experiments.evaluate import EvalResult, evaluate
from paintgym.experiments.logs import MetricsLog, progress_bar
from paintgym.experiments.rng import rng_state, seed_everything, set_rng_state
from paintgym.experiments.run_dir import check_new_run, default_run_dir
from paintgym.experiments.signals import stop_on_signals
from paintgym.experiments.train_config import TrainConfig, run_record
from paintgym.experiments.transfer import Transfer, freeze_names_, frozen_names, init_algorithm_


@dataclass
class TrainResult:
    """What :func:`train` did: the run directory, the steps trained, the final evaluation, and why it stopped."""

    run_dir: Path
    global_step: int
    final_eval: dict[str, float] | None
    status: str  # "finished" or "interrupted"


class Trainer:
    """Trains ``config.agent`` with hyperparameters ``args`` (see the module docstring).

    :param config: the run configuration.
    :param args: the algorithm's hyperparameters (``PPOArgs``, ``ReinforceArgs``, ...; see
        :mod:`experiments.algorithms`).
    """

    def __init__(self, config: TrainConfig, args: Any) -> None:
        entry = algorithm_entry(config.agent)
        if not isinstance(args, entry.args_class):
            raise TypeError(f"--agent {config.agent} takes {entry.args_class.__name__}, got {type(args).__name__}")
        config.check()
        self.config, self.args = config, args
        self.world = distributed.world()
        self.local_envs = check_world(config)  # this rank's envs (all of them on one process)
        self.device = distributed.rank_device(config.device)
        self.checkpoint_state: dict[str, Any] | None = None
        if config.resume:
            self.checkpoint_state = load_checkpoint(config.resume, self.device)
            self.run_dir = Path(config.run_dir) if config.run_dir else find_checkpoint(config.resume).parent
        else:
            # a torchrun run names its directory on rank 0 (the ranks' clocks may straddle a second)
            self.run_dir = Path(config.run_dir) if config.run_dir else distributed.from_main(
                default_run_dir(config.agent, config.env, config.seed))
            check_new_run(self.run_dir, CHECKPOINT, f"--resume {self.run_dir}", "--run-dir")

        if config.threads:
            set_threads(config.threads)
        seed_everything(config.seed)
        train_split = "all" if config.eval_targets is not None else "train"  # held-out images come from elsewhere
        self.env = make_env(config, self.local_envs, self.device, native=entry.native_env, split=train_split)
        # rank 0 alone evaluates (and writes); the other ranks build no evaluation env
        self.eval_env = make_eval_env(config, config.eval_episodes, self.device) if self.world.is_main else None
        self.eval_seed = config.seed + EVAL_SEED_OFFSET  # fixed: every evaluation paints the same targets
        self.algo: Algorithm = make_algorithm(config.agent, self.env, args, amp=config.amp, seed=config.seed)
        self.transfer: Transfer | None = None  # what --init-from copied, re-initialised and froze
        if self.checkpoint_state is not None:  # a resumed run freezes what it froze (its optimisers lack those)
            saved_freeze = self.checkpoint_state["config"].get("freeze")
            if config.freeze != saved_freeze:
                raise ValueError(f"--freeze {config.freeze} differs from the resumed run's ({saved_freeze}); resume "
                                 "with the same --freeze")
            if self.checkpoint_state.get("frozen"):
                freeze_names_(self.algo.networks(), self.checkpoint_state["frozen"])
                self.algo.restart_training()
        elif config.init_from is not None:
            self.transfer = init_algorithm_(self.algo, config.agent, config.init_from, config.freeze, self.device)
            if self.world.is_main:
                print("\n".join(self.transfer.lines()), flush=True)
        # every rank built the same networks from --seed; rank 0's are copied to all the same (as DDP does),
        # then the ranks' random streams part ways (rank 0 keeps the one-process stream)
        for module in _modules(self.algo):
            if config.sync_batchnorm:  # in place: the algorithm's optimisers keep their parameters
                distributed.sync_batchnorm(module, self.device)
            distributed.broadcast_module_(module)
        distributed.reseed_rank(config.seed)
        self.steps_per_iteration = self.algo.steps_per_iteration * self.world.size  # over every rank's envs
        self.num_iterations = max(1, math.ceil(config.steps_budget / self.steps_per_iteration))
        self.iteration = 0
        self.global_step = 0
        self.elapsed = 0.0
        self.last_checkpoint: Path | None = None

    # ---------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write the checkpoint (rank 0; every rank must call this, to gather the envs' counters: the
        checkpoint holds every env of the run, whatever the world size, so ``--resume`` may use another)."""
        core = self.env.core
        env_seeds = distributed.all_gather_cat(core.env_seeds.clone())
        episodes = distributed.all_gather_cat(core.episodes.clone())
        self.last_checkpoint = self.run_dir / CHECKPOINT
        if not self.world.is_main:
            return self.last_checkpoint
        self.last_checkpoint = save_checkpoint(self.run_dir / CHECKPOINT, {
            "config": asdict(self.config),
            "args": asdict(self.args),
            "algorithm": self.algo.state_dict(),
            "frozen": frozen_names(self.algo.networks()),
            "reward": core.reward.state_dict(),
            "env": {"env_seeds": env_seeds, "episodes": episodes},
            "rng": rng_state(),
            "world_size": self.world.size,
            "iteration": self.iteration,
            "global_step": self.global_step,
            "elapsed": self.elapsed,
        })
        return self.last_checkpoint

    def _start_env(self) -> Any:
        """Reset the training env; when resuming, move it to the checkpoint's episodes and restore state."""
        env, core = self.env, self.env.core
        first = self.world.rank * self.local_envs  # rank r owns envs [r n / W, (r + 1) n / W) of the whole run
        obs, _ = env.reset(seed=self.config.seed + first)
        state = self.checkpoint_state
        if state is None:
            return obs
        saved = state["env"]
        if saved["episodes"].shape[0] != self.config.num_envs:
            raise ValueError(f"the checkpoint was trained with {saved['episodes'].shape[0]} envs; "
                             f"resume with --num-envs {saved['episodes'].shape[0]}")
        self.algo.load_state_dict(state["algorithm"])
        core.reward.load_state_dict(state["reward"])
        mine = slice(first, first + self.local_envs)
        core.env_seeds.copy_(saved["env_seeds"][mine])
        core.episodes.copy_(saved["episodes"][mine] - 1)  # the reset below moves every env to its saved episode
        obs, _ = env.reset(options={"reset_mask": np.ones(env.num_envs, dtype=bool)})
        set_rng_state(state["rng"])
        distributed.reseed_rank(self.config.seed, int(state["iteration"]))  # only rank 0's streams were saved
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

    @staticmethod
    def _eval_metrics(result: EvalResult) -> dict[str, float]:
        return {f"eval/{key}": value for key, value in result.metrics.items()}

    def _eval_key_names(self) -> list[str]:
        keys = ["return", *[f"term/{key}" for key in self.eval_env.core.reward.keys]]
        return keys + (["l2", "psnr"] if self.eval_env.core.targets is not None else [])

    # -------------------------------------------------------------------------------- the loop
    def train(self) -> TrainResult:
        config, main = self.config, self.world.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            header = (f"paintgym train, resolved configuration ({datetime.now():%Y-%m-%d %H:%M:%S})\n"
                      f"rerun with: paintgym train --config {self.run_dir / 'config.toml'} --run-dir NEW_DIR")
            atomic_write_bytes(self.run_dir / "config.toml", dump_toml(run_record(config, self.args), header).encode())

        obs = self._start_env()
        self.algo.start(obs)
        log: MetricsLog | None = None
        if main:  # rank 0 alone writes the CSV and TensorBoard and shows progress
            eval_keys = [f"eval/{key}" for key in self._eval_key_names()]
            columns = ["step", "iteration", "time_s", "steps_per_s", *self.algo.metric_keys, *eval_keys]
            log = MetricsLog(self.run_dir, columns, self.global_step if self.checkpoint_state else None)
        status, final = "finished", None
        steps = self.steps_per_iteration
        bar = progress_bar(self.num_iterations * steps, self.global_step, config.agent, config.progress and main,
                           unit_scale=True)
        try:
            with stop_on_signals("iteration") as stop:
                if self.checkpoint_state is None and log is not None:  # the untrained policy, for the learning curve
                    log.write(0, {"iteration": 0, "time_s": 0.0, **self._eval_metrics(self.evaluate())})
                while self.iteration < self.num_iterations:
                    started = time.perf_counter()
                    metrics = self.algo.train_iteration(self.iteration + 1, self.num_iterations)
                    if not config.sync_batchnorm:  # each rank's own batch statistics: one running average again
                        distributed.average_running_stats_(_modules(self.algo))
                    metrics = distributed.average_metrics(metrics)  # global numbers (every rank: the same)
                    finite_or_raise(metrics, ["policy_loss", "value_loss", "entropy"], self.global_step)
                    took = time.perf_counter() - started
                    previous = self.global_step
                    self.iteration += 1
                    self.global_step += steps
                    self.elapsed += took
                    row = {"iteration": self.iteration, "time_s": self.elapsed, "steps_per_s": steps / took,
                           **metrics}
                    last = self.iteration == self.num_iterations
                    scores = not last and _crossed(previous, self.global_step, config.eval_every)
                    video = not last and _crossed(previous, self.global_step, config.video_every)
                    if (scores or video) and main:  # the last iteration's evaluation is finish()'s
                        result = self.evaluate()
                        if scores:
                            row.update(self._eval_metrics(result))
                        if video:
                            artefacts.write_video(result, self.eval_env, config.video_size,
                                                  self.run_dir / "videos" / f"step_{self.global_step:09d}.mp4")
                    if log is not None:
                        log.write(self.global_step, row)
                    bar.update(steps)
                    bar.set_postfix_str(_postfix(row), refresh=False)
                    stopping = bool(distributed.all_reduce_max(float(stop.requested)))  # every rank stops together
                    if last or stopping or _crossed(previous, self.global_step, config.checkpoint_every):
                        self.save_checkpoint()
                    if stopping:
                        status = "interrupted"
                        break
            bar.close()
            # the ranks part here: rank 0 alone evaluates and writes the final files, no one waits on it
            distributed.shutdown()
            if status == "finished" and log is not None:
                final = self.finish(log)
        except TrainingDiverged as err:
            kept = (f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                    else "no checkpoint had been written yet")
            raise TrainingDiverged(f"{err}; stopped, {kept}") from None
        finally:
            bar.close()
            if log is not None:
                log.close()
        return TrainResult(self.run_dir, self.global_step, final, status)

    # ------------------------------------------------------------------------------- artefacts
    def finish(self, log: MetricsLog) -> dict[str, float]:
        """Final evaluation, its row in ``metrics.csv``, and the output files (:mod:`experiments.artefacts`)."""
        result = self.evaluate()
        metrics = self._eval_metrics(result)
        # the final evaluation joins the last row's step (in the CSV; TensorBoard has the step's training row)
        log.write(self.global_step, {"iteration": self.iteration, **metrics}, tensorboard=False)
        run_dir, size = self.run_dir, self.config.video_size
        artefacts.save_episodes(run_dir / artefacts.FINAL_EPISODES, result)
        artefacts.write_contact_sheet(self.eval_env, size, run_dir / "final_paintings.png")
        artefacts.write_video(result, self.eval_env, size, run_dir / "painting.mp4")
        artefacts.plot_learning_curve(log.rows, run_dir / "learning_curve.png",
                                      title=f"{self.config.agent} on {self.config.env}")
        artefacts.write_summary(run_dir / artefacts.SUMMARY, {"global_step": self.global_step,
                                                              "iterations": self.iteration,
                                                              "train_seconds": self.elapsed, **metrics})
        return metrics


def _crossed(before: int, after: int, every: int) -> bool:
    """Did the step count pass a multiple of ``every`` (0: never)?"""
    return every > 0 and after // every > before // every


def _postfix(row: dict[str, Any]) -> str:
    """The progress bar's text: the training return, the held-out L2 when evaluated, the speed."""
    parts = [f"return={row['return']:.4f}"] if math.isfinite(row.get("return", math.nan)) else []
    if "eval/l2" in row:
        parts.append(f"eval_l2={row['eval/l2']:.4f}")
    parts.append(f"{row['steps_per_s']:.0f} steps/s")
    return " ".join(parts)


def train(config: TrainConfig, args: Any) -> TrainResult:
    """Train ``config.agent`` with ``args``; see :class:`Trainer`. Under ``torchrun``, inside a process group
    (:mod:`experiments.distributed`): every rank trains its share of the envs, rank 0 writes."""
    check_world(config)  # before the ranks meet: every rank fails alike, at once
    with distributed.process_group(config.device):
        return Trainer(config, args).train()


def check_world(config: TrainConfig) -> int:
    """This rank's number of envs.

    :raises ValueError: one line: the agent does not train data-parallel, or ``--num-envs`` does not
        divide by the world size.
    """
    if distributed.world().size > 1 and config.agent not in DISTRIBUTED_AGENTS:
        raise ValueError(f"--agent {config.agent} does not run under torchrun yet; data-parallel agents: "
                         f"{', '.join(DISTRIBUTED_AGENTS)}")
    return distributed.local_count(config.num_envs)


DISTRIBUTED_AGENTS = ("model-based", "ppo", "reinforce")
"""The agents that train data-parallel under ``torchrun`` (SB3's PPO has its own loop and does not)."""


def _modules(algo: Any) -> list[Any]:
    """The networks of an algorithm whose initial weights rank 0 broadcasts."""
    found = [getattr(algo, name) for name in ("agent", "critic_target") if hasattr(algo, name)]
    return [module for module in found if isinstance(module, torch.nn.Module)]
