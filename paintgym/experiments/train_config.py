"""``TrainConfig``: the options of an agent's training run (``paintgym train``), one docstring per option.

The algorithm's own hyperparameters are another dataclass (``PPOArgs``, ``ReinforceArgs``...,
:mod:`experiments.algorithms`); together they are what ``config.toml`` records and ``--config`` reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from paintgym.experiments.transfer import check_options as check_transfer

BASE_STEPS = 81_920
"""The automatic budget for a 32 px canvas and 8 strokes per episode (the default digits task, about a minute
of the model-based agent on 2 CPU cores); it grows in proportion to the canvas side and the strokes."""


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
    condition: bool = False
    """ask for a class per episode, shown in the observation; the classes are those of the reward's class=condition
    term, e.g. --reward 'classifier(checkpoint=runs/clf, class=condition)' (free painting: one agent paints every
    class)"""
    noise: int = 0
    """a per-episode random latent of this many values in the observation, so that a deterministic policy paints a
    different picture in every episode (free painting; 0: none)"""
    target_augment: int = 0
    """random views (crops of 60-100% of the side, mirrored half the time) added per training image (0: none)"""
    num_envs: int = 64
    """canvases painted in parallel"""
    total_steps: int = 0
    """env steps to train for (summed over envs); 0: a budget that grows with the task, 81,920 steps per 32 px
    of canvas side and per 8 strokes of an episode (81,920 for the default digits; 655,360 for 64 px, 32 strokes)"""
    device: str = "auto"
    """where env, policy and storage live: auto (CUDA if available), cpu or cuda"""
    seed: int = 1
    """seed of the env, the policy and every random generator"""
    run_dir: str | None = None
    """the run directory (None: runs/AGENT-ENV-sSEED-TIME)"""
    resume: str | None = None
    """continue the run in this run directory (or from this checkpoint file)"""
    init_from: str | None = None
    """start from the network weights of this run directory (or checkpoint file) of the same agent (ppo and reinforce
    share theirs); layers whose shapes differ (action space, canvas size) are re-initialised and listed; fresh
    optimiser, step 0"""
    freeze: str | None = None
    """with --init-from: do not train the copied encoder (the convolutions that read the canvas) or trunk (all but the
    output heads); see paintgym.experiments.transfer"""
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
    sync_batchnorm: bool = True
    """under torchrun: batch norms (the model-based actor's) use the batch statistics of every rank (the maths of one
    process; two small all-reduces per batch norm and actor call); off: each rank's own, as DDP without SyncBatchNorm
    (faster; fine with hundreds of envs per rank, costs ~3 dB with 8: bench/README.md), the running statistics
    averaged over the ranks once per iteration"""
    threads: int = 1
    """CPU threads for torch and the renderer (0: all cores; 1 is steadier, idle OpenMP threads spin on busy CPUs)"""

    @property
    def steps_budget(self) -> int:
        """The env steps this run trains for: ``total_steps``, or with 0 the task's automatic budget."""
        if self.total_steps > 0:
            return self.total_steps
        strokes = self.max_steps * self.strokes_per_step
        return BASE_STEPS * max(1, round(self.canvas_size / 32 * strokes / 8))

    def check(self) -> None:
        """Raise ``ValueError`` for counts and intervals that cannot work, naming the option."""
        for name in ("num_envs", "eval_episodes", "video_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.total_steps < 0:
            raise ValueError(f"total_steps must be at least 1 (or 0: the automatic budget), got {self.total_steps}")
        for name in ("eval_every", "video_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off) or a positive number of steps, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (all cores) or a positive count, got {self.threads}")
        check_transfer(self.init_from, self.freeze)


def run_record(config: TrainConfig, args: Any) -> dict[str, Any]:
    """What a run directory's ``config.toml`` records: the run's options (not where it lives or what it
    resumed) and the algorithm's hyperparameters, flat."""
    record = {key: value for key, value in asdict(config).items() if key not in ("run_dir", "resume")}
    record.update(asdict(args))
    return record
