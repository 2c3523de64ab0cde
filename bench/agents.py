"""Agents benchmark: our PPO vs SB3's PPO (through the adapter) vs REINFORCE vs random vs greedy.

On ``paintgym/Reconstruct-v0`` at 64x64 (digits by default), every learner gets the same budget of
env steps; then all policies paint the same held-out targets (``target_split="test"``, one fixed
seed). The table gives training speed (env steps per second of training, rollouts and updates
together; for the non-learning baselines the acting speed) and the final held-out L2 (mean squared
error, images in [0, 1]) and PSNR.

Baselines in the same run:

* ``random``: uniformly random strokes;
* ``greedy``: at every step, the best of K random strokes, found by painting each candidate on a
  copy of the canvas (``canvas.render.paint_``) and keeping the one closest to the target — a strong,
  target-peeking search baseline that learns nothing;
* ``sb3-ppo``: Stable-Baselines3's PPO with the same PPO hyperparameters as ours and the same
  optimiser (Adam, eps 1e-5, torch's fused kernel where it has one), on the native env through
  :class:`agents.sb3_vec_env.SB3VecEnv`, with SB3's own CNN (``CnnPolicy``, NatureCNN) and with our
  CoordConv encoder (the same network as ours, which isolates the framework's cost;
  ``--no-sb3-ours`` skips it).

Targets (issue 5, 2 CPU cores): our PPO >= 3x SB3 PPO's steps/s, and a lower held-out L2 than SB3 PPO
and random at the same budget.

    python bench/agents.py                      # ~10 minutes on 2 CPU cores
    python bench/agents.py --steps 8192         # a quick look
    python bench/agents.py --device cuda --num-envs 1024 --steps 2000000 --only ppo
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paintgym.agents.ppo import PPOArgs  # noqa: E402
from paintgym.agents.reinforce import ReinforceArgs  # noqa: E402
from paintgym.agents.sb3_ppo import SB3PPOArgs  # noqa: E402
from paintgym.canvas.render import paint_  # noqa: E402
from paintgym.canvas.strokes import decode_continuous  # noqa: E402
from paintgym.envs.vector_env import CanvasVectorEnv  # noqa: E402
from paintgym.experiments.algorithms import make_algorithm  # noqa: E402
from paintgym.experiments.device import resolve_device, set_threads  # noqa: E402
from paintgym.experiments.env_factory import make_env  # noqa: E402
from paintgym.experiments.evaluate import evaluate, random_policy  # noqa: E402
from paintgym.experiments.train_config import TrainConfig  # noqa: E402

ROWS = ("ppo", "sb3-ppo", "sb3-ppo-ours", "reinforce", "random", "greedy")


def greedy_policy(env: CanvasVectorEnv, candidates: int, generator: torch.Generator) -> callable:
    """Best of ``candidates`` uniformly random strokes per step, by L2 to the target after painting it."""
    core = env.core
    if core.action_mode != "continuous" or core.targets is None:
        raise ValueError("the greedy baseline needs continuous actions and a target")

    def act(obs: torch.Tensor) -> torch.Tensor:
        b, k = env.num_envs, candidates
        actions = torch.rand((b, k, core.strokes_per_step * 13), device=env.device, generator=generator) * 2 - 1
        copies = core.canvas.repeat_interleave(k, dim=0)  # (B * K, 3, H, W)
        strokes = decode_continuous(actions.view(b * k, -1), core.strokes_per_step)
        paint_(copies, strokes)
        target = core.target.repeat_interleave(k, dim=0)
        l2 = (copies - target).square().flatten(1).mean(dim=1).view(b, k)
        best = l2.argmin(dim=1)
        return actions[torch.arange(b, device=env.device), best]

    return act


def train_and_evaluate(name: str, config: TrainConfig, steps: int, eval_env: CanvasVectorEnv,
                       eval_seed: int, width: int) -> dict[str, float]:
    """Train one learner for ``steps`` env steps; return its speed and held-out metrics."""
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # noqa: NPY002  (SB3's minibatches)
    agent = "sb3-ppo" if name.startswith("sb3") else name
    config = dataclasses.replace(config, agent=agent)
    native = agent != "sb3-ppo"
    env = make_env(config, config.num_envs, resolve_device(config.device), native=native)
    ppo = PPOArgs(width=width)
    if agent == "ppo":
        args = ppo
    elif agent == "reinforce":
        args = ReinforceArgs(width=width)
    else:
        shared = {f.name: getattr(ppo, f.name) for f in dataclasses.fields(SB3PPOArgs) if hasattr(ppo, f.name)}
        args = SB3PPOArgs(**{**shared, "policy": "paintgym" if name == "sb3-ppo-ours" else "CnnPolicy"})
    algo = make_algorithm(agent, env, args, amp=config.amp, seed=config.seed)
    obs, _ = env.reset(seed=config.seed)
    algo.start(obs)
    iterations = max(1, steps // algo.steps_per_iteration)
    algo.train_iteration(1, iterations)  # warm-up (first-call allocations, numba), timed separately
    started = time.perf_counter()
    for iteration in range(2, iterations + 1):
        algo.train_iteration(iteration, iterations)
    took = time.perf_counter() - started
    trained = iterations * algo.steps_per_iteration
    metrics = evaluate(algo.act, eval_env, eval_seed).metrics
    return {"steps": trained, "steps_per_s": (iterations - 1) * algo.steps_per_iteration / max(took, 1e-9),
            "seconds": took, **metrics}


def act_and_evaluate(name: str, eval_env: CanvasVectorEnv, eval_seed: int, candidates: int) -> dict[str, float]:
    generator = torch.Generator(device=eval_env.device).manual_seed(0)
    policy = (random_policy(eval_env, generator) if name == "random"
              else greedy_policy(eval_env, candidates, generator))
    started = time.perf_counter()
    metrics = evaluate(policy, eval_env, eval_seed).metrics
    took = time.perf_counter() - started
    speed = eval_env.num_envs * eval_env.core.max_steps / took
    return {"steps": 0, "steps_per_s": speed, "seconds": took, **metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32_768, help="env steps of training per learner")
    parser.add_argument("--num-envs", type=int, default=64, help="training envs")
    parser.add_argument("--canvas-size", type=int, default=64, help="canvas side in pixels")
    parser.add_argument("--max-steps", type=int, default=8, help="strokes (steps) per episode")
    parser.add_argument("--targets", default="digits", help="target images (a dataset name, folder or .npz)")
    parser.add_argument("--eval-episodes", type=int, default=64, help="held-out episodes per policy")
    parser.add_argument("--candidates", type=int, default=64, help="K random strokes per step of the greedy baseline")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadier on a busy machine)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every learner and of the evaluation")
    parser.add_argument("--width", type=int, default=PPOArgs.width, help="CNN width of our agents (and SB3 --sb3-ours)")
    parser.add_argument("--sb3-ours", action=argparse.BooleanOptionalAction, default=True,
                        help="also run SB3 PPO with our encoder (same network: isolates the framework)")
    parser.add_argument("--only", nargs="+", choices=ROWS, help="run only these rows")
    args = parser.parse_args(argv)
    if args.threads:
        set_threads(args.threads)
    device = resolve_device(args.device)
    config = TrainConfig(canvas_size=args.canvas_size, max_steps=args.max_steps, num_envs=args.num_envs,
                         targets=args.targets, device=str(device), seed=args.seed, progress=False)
    eval_env = make_env(config, args.eval_episodes, device, split="test")
    eval_seed = args.seed + 1_000_003
    rows = list(args.only or [row for row in ROWS if row != "sb3-ppo-ours" or args.sb3_ours])

    print(f"paintgym/Reconstruct-v0 {args.canvas_size}x{args.canvas_size}, targets {args.targets}, "
          f"{args.max_steps} strokes per episode; {args.steps:,} training env steps per learner, "
          f"{args.num_envs} envs; held-out: {args.eval_episodes} test-split episodes; device {device}, "
          f"{torch.get_num_threads()} torch thread(s)", flush=True)
    results = {}
    for name in rows:
        if name in ("random", "greedy"):
            results[name] = act_and_evaluate(name, eval_env, eval_seed, args.candidates)
        else:
            results[name] = train_and_evaluate(name, config, args.steps, eval_env, eval_seed, args.width)
        r = results[name]
        print(f"  {name}: {r['steps_per_s']:.0f} steps/s, held-out L2 {r['l2']:.4f}, PSNR {r['psnr']:.2f} dB "
              f"({r['seconds']:.0f}s)", flush=True)

    print()
    print("| policy | training env steps | steps/s | held-out L2 | held-out PSNR (dB) | held-out return |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {"ppo": "our PPO (Beta, CoordConv)", "sb3-ppo": "SB3 PPO (CnnPolicy) via adapter",
              "sb3-ppo-ours": "SB3 PPO (our encoder) via adapter", "reinforce": "our REINFORCE (value baseline)",
              "random": "random strokes (acting speed)", "greedy": f"greedy best of {args.candidates} (acting speed)"}
    for name, r in results.items():
        print(f"| {labels[name]} | {r['steps']:,} | {r['steps_per_s']:,.0f} | {r['l2']:.4f} | {r['psnr']:.2f} | "
              f"{r['return']:.4f} |")
    if "ppo" in results and "sb3-ppo" in results:
        ours, sb3 = results["ppo"], results["sb3-ppo"]
        speedup = ours["steps_per_s"] / sb3["steps_per_s"]
        print(f"\nour PPO vs SB3 PPO: {speedup:.2f}x the training steps/s (target >= 3x): "
              f"{'met' if speedup >= 3 else 'NOT met'}; held-out L2 {ours['l2']:.4f} vs {sb3['l2']:.4f} "
              f"({'lower' if ours['l2'] < sb3['l2'] else 'NOT lower'})")
    if "ppo" in results and "random" in results:
        ours, rand = results["ppo"], results["random"]
        print(f"our PPO vs random: held-out L2 {ours['l2']:.4f} vs {rand['l2']:.4f} "
              f"({'lower' if ours['l2'] < rand['l2'] else 'NOT lower'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
