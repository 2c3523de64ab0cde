"""Cost of each reward per env step, next to the cost of the env step itself.

    python bench/rewards.py                       # 256 envs, 64x64, digits targets, CPU
    python bench/rewards.py --num-envs 64 --repeats 5 --rewards "harmony,novelty"

Every reward runs inside a real :class:`envs.CanvasVectorEnv` (random strokes, one per step, episodes
of 32 steps). The time spent in the reward (``step_terms``) is measured directly and divided by the
steps, so a terminal reward's cost is spread over the episode as it is in training; the baseline is
the step of the same env with the ``zero`` reward. Rewards that learn (``novelty``) also show the
cost of :meth:`update` with the episode's 256 finished paintings, per step; novelty's archive is
filled to its size limit first, the worst case for the nearest-neighbour search. The specs are
timed in turns, episode by episode, and the medians reported, so that load from other processes on
a shared machine falls on all of them alike.

On a machine whose cores are busy with other work, OpenMP's busy-waiting makes torch with several
threads many times slower than with one (measured here: 144 ms vs 18 ms for the same convolutions);
compare there with ``--threads 1`` or ``OMP_WAIT_POLICY=passive``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is first on sys.path and this file would shadow `rewards`
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from paintgym import envs, rewards
from paintgym.canvas import fastpath

DEFAULT_REWARDS = ("target", "target(metric=ssim)", "strokes", "harmony", "harmony(dense=true)",
                   "novelty", "novelty(rnd=true)")
TORCH_PATH = " [torch path]"  # suffix: the same reward with the numba fast paths switched off
TARGET_OVERHEAD = 0.25  # the budget for harmony and novelty: +25% of an env step on the CPU


@dataclass
class Timing:
    """Per-episode timings of one spec, in seconds per step."""

    step: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    update: list[float] = field(default_factory=list)


class TimedEnv:
    """A vector env whose reward's ``step_terms`` (and ``update``) are timed."""

    def __init__(self, spec: str, args: argparse.Namespace) -> None:
        self.spec = spec
        self.numba_off = spec.endswith(TORCH_PATH)
        self.env = envs.CanvasVectorEnv(args.num_envs, targets="digits", reward=spec.removesuffix(TORCH_PATH),
                                        canvas_size=args.size, max_steps=args.steps, device=args.device)
        self.reward = self.env.core.reward
        self.reward_time = 0.0
        inner = self.reward.step_terms

        def timed_step_terms(ctx: rewards.StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            start = time.perf_counter()
            out = inner(ctx)
            _sync(args.device)
            self.reward_time += time.perf_counter() - start
            return out

        self.reward.step_terms = timed_step_terms
        self.env.reset(seed=0)
        if self.reward.learns:
            self._fill_archives(args)

    def _fill_archives(self, args: argparse.Namespace) -> None:
        """Fill every novelty archive to its limit with (random, unit) embeddings: the slowest search."""
        for _, _, term in self.reward.terms:
            if isinstance(term, rewards.novelty.NoveltyReward) and not term.rnd:
                generator = torch.Generator().manual_seed(0)
                fake = torch.nn.functional.normalize(torch.randn(term.archive_size, term.dim, generator=generator))
                term.load_state_dict({"dim": term.dim, "archive": fake})

    def episode(self, actions: np.ndarray, args: argparse.Namespace) -> tuple[float, float, float]:
        """Run one full episode; returns seconds per step for the env step, the reward and its update."""
        saved = fastpath.HAVE_NUMBA
        fastpath.HAVE_NUMBA = saved and not self.numba_off
        try:
            self.reward_time = 0.0
            start = time.perf_counter()
            for step_actions in actions:
                self.env.step(step_actions)
            _sync(args.device)
            elapsed = time.perf_counter() - start
            update = 0.0
            if self.reward.learns:  # the trainer hands the finished paintings to update() once per episode
                start = time.perf_counter()
                self.reward.update(self.env.core.canvas, self.env.core.target)
                _sync(args.device)
                update = time.perf_counter() - start
        finally:
            fastpath.HAVE_NUMBA = saved
        steps = len(actions)
        return elapsed / steps, self.reward_time / steps, update / steps


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python bench/rewards.py", description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=256, help="canvases stepped together")
    parser.add_argument("--size", type=int, default=64, help="canvas side in pixels")
    parser.add_argument("--steps", type=int, default=32, help="steps per episode")
    parser.add_argument("--repeats", type=int, default=5, help="timed episodes per reward (median reported)")
    parser.add_argument("--rewards", default=";".join(DEFAULT_REWARDS),
                        help="reward specs separated by ';' (the zero baseline is always added)")
    parser.add_argument("--torch-path", action=argparse.BooleanOptionalAction, default=True,
                        help="also time harmony and SSIM with their numba CPU fast paths switched off")
    parser.add_argument("--vae", help="also time novelty with this VAE checkpoint's encoder as the embedding")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    specs = ["zero"] + [spec.strip() for spec in args.rewards.split(";") if spec.strip() and spec.strip() != "zero"]
    if args.vae:
        specs.append(f"novelty(vae={args.vae})")
    if args.torch_path and args.device == "cpu" and fastpath.HAVE_NUMBA:
        specs += [spec + TORCH_PATH for spec in specs if spec.startswith("harmony") or "ssim" in spec]
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (args.steps, args.num_envs, 13)).astype(np.float32)
    timed = {spec: TimedEnv(spec, args) for spec in specs}
    for env in timed.values():  # warm-up: numba compilation, FFT plans, allocator
        env.episode(actions, args)
    if args.threads:  # numba's OpenMP start-up (in the renderer) resets the process-wide thread count
        torch.set_num_threads(args.threads)
    results = {spec: Timing() for spec in specs}
    for _ in tqdm(range(args.repeats), desc="episodes", leave=False):
        for spec, env in timed.items():  # in turns, so that background load hits every spec alike
            step, reward, update = env.episode(actions, args)
            results[spec].step.append(step)
            results[spec].reward.append(reward)
            results[spec].update.append(update)

    median = {spec: {key: statistics.median(getattr(t, key)) * 1e3 for key in ("step", "reward", "update")}
              for spec, t in results.items()}
    base = median["zero"]["step"] - median["zero"]["reward"]  # the env step without any reward work
    print(f"\nreward cost per env step: {args.num_envs} envs, {args.size}x{args.size}, {args.steps} steps per "
          f"episode, {args.device}, {torch.get_num_threads()} threads, median of {args.repeats} episodes")
    print(f"env step without reward work: {base:.2f} ms\n")
    header = f"| {'reward':<34} | {'kind':<8} | {'reward ms':>9} | {'+% step':>7} | {'update ms':>9} | " \
             f"{'env step ms':>11} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for spec in specs:
        m = median[spec]
        terms = timed[spec].reward.terms
        kind = "dense" if all(t.dense for _, _, t in terms) else "terminal"
        update = f"{m['update']:>9.2f}" if timed[spec].reward.learns else f"{'-':>9}"
        print(f"| {spec:<34} | {kind:<8} | {m['reward']:>9.2f} | {100 * m['reward'] / base:>6.1f}% | {update} | "
              f"{m['step']:>11.2f} |")
    print(f"\nreward ms: time inside the reward per env step (terminal rewards: their episode-end cost / "
          f"{args.steps}); +% step: that over the env step without reward work; update ms: update() with the "
          f"finished paintings, per step. Budget for harmony and novelty: +{100 * TARGET_OVERHEAD:.0f}%.")
    over = [spec for spec in specs if spec.split("(")[0] in ("harmony", "novelty") and not spec.endswith(TORCH_PATH)
            and median[spec]["reward"] > TARGET_OVERHEAD * base]
    print("over budget: " + (", ".join(over) if over else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
