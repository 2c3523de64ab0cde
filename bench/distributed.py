"""Data-parallel scaling: ``paintgym train`` under ``torchrun`` on 1 and 2 CPU processes (gloo), the measured
all-reduce cost per update for the actor's parameter count, and a projection to 8 GPUs.

What it does:

1. trains the same run (same global batch: ``--num-envs`` envs over the ranks) with
   ``torchrun --nproc-per-node 1`` and ``--nproc-per-node 2`` and reads ``steps_per_s`` from each
   run's ``metrics.csv`` (the median over the iterations after the first, which warms up);
   scaling efficiency = steps/s on P processes / (P x steps/s on 1);
2. under ``torchrun --nproc-per-node 2`` (this script's ``--worker`` mode) times an ``all_reduce`` of a
   float32 buffer of the actor's parameter count (the one collective per update the learners make);
3. projects 8 GPUs. Model (weak scaling: every GPU keeps the same envs, the global batch grows 8x):
   ``t_update(N) = t_compute + t_allreduce(N)`` with no overlap (the learners reduce after the backward
   pass), ``t_allreduce(N) = 2 (N-1)/N * bytes / bus_bandwidth + 2 (N-1) * latency`` (ring all-reduce),
   so the efficiency is ``t_compute / t_update(N)``. ``t_compute`` per update is measured here on the
   CPU; on a GPU pass ``--gpu-update-ms`` (the time of one update on one GPU, e.g. from a 1-GPU run's
   metrics.csv: 1000 / steps_per_s * steps per update) -- this machine has no GPU, so the default is an
   assumption, stated in the output. NCCL figures assumed for one NVLink node: 100 GB/s bus bandwidth,
   10 us per ring step (``--bus-gbps``, ``--latency-us``). The small collectives of an update
   (advantage mean/std, batch-norm statistics of the model-based actor: 2 per batch norm per actor call)
   are latency-bound: 25 us each assumed (``--small-us``; NCCL's small all-reduce on one NVLink node).

    python bench/distributed.py                         # ~3 minutes on 2 busy CPU cores
    python bench/distributed.py --agent ppo --num-envs 16
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TORCHRUN = Path(sys.executable).with_name("torchrun")


def train_speed(nproc: int, args: argparse.Namespace, out: Path, extra: tuple[str, ...] = ()) -> float:
    """Median steps/s (after the first iteration) of a training run on ``nproc`` ranks."""
    run = out / f"run{nproc}{''.join(extra)}"
    cmd = [str(TORCHRUN), "--standalone", f"--nproc-per-node={nproc}", str(ROOT / "train.py"),
           "--agent", args.agent, "--num-envs", str(args.num_envs), "--total-steps", str(args.total_steps),
           "--canvas-size", str(args.canvas_size), "--max-steps", str(args.max_steps), "--eval-every", "0",
           "--checkpoint-every", "0", "--eval-episodes", "2", "--video-size", "16", "--threads", "1",
           "--no-progress", "--device", "cpu", "--run-dir", str(run), *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    with (run / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["steps_per_s"]]
    speeds = [float(row["steps_per_s"]) for row in rows[1:]] or [float(rows[0]["steps_per_s"])]
    return statistics.median(speeds)


def actor_parameters(args: argparse.Namespace) -> int:
    """The parameter count of the agent's network that every update all-reduces."""
    from paintgym.agents.model_based import PatchStrokeActor

    if args.agent == "model-based":
        actor = PatchStrokeActor(True, args.canvas_size, 1, 16, 256, max_steps=args.max_steps)
        return sum(p.numel() for p in actor.parameters())
    from paintgym.agents.common import build_agent
    from paintgym.experiments.env_factory import make_env
    from paintgym.experiments.train_config import TrainConfig

    env = make_env(TrainConfig(canvas_size=args.canvas_size, max_steps=args.max_steps), 1, torch.device("cpu"))
    agent, _ = build_agent(env, args.agent, 16, 256, 1e-3, False)
    return sum(p.numel() for p in agent.parameters())


def worker(count: int, reps: int) -> None:
    """Under torchrun: time all_reduce of ``count`` float32 numbers and of one number (latency)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    results = {}
    for name, size in (("params", count), ("scalar", 3)):
        buffer = torch.randn(size)
        for _ in range(5):
            dist.all_reduce(buffer)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(buffer)
        results[name] = (time.perf_counter() - start) / reps * 1e3
    if dist.get_rank() == 0:
        print(f"ALLREDUCE {results['params']:.4f} {results['scalar']:.4f}")
    dist.destroy_process_group()


def allreduce_ms(count: int, reps: int) -> tuple[float, float]:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node=2", str(Path(__file__).resolve()), "--worker",
           "--count", str(count), "--reps", str(reps)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("ALLREDUCE"))
    params, scalar = line.split()[1:]
    return float(params), float(scalar)


def updates_per_iteration(args: argparse.Namespace) -> tuple[int, int]:
    """Gradient all-reduces per iteration and small (latency-bound) collectives per iteration."""
    if args.agent == "model-based":  # one group-update per minibatch, whole-episode horizon; critic unused
        groups = min(8, args.num_envs)
        # 4 batch norms x 2 (forward stats, backward) per actor call, max_steps calls per group
        return groups, groups * args.max_steps * 4 * 2 + 2
    minibatches, epochs = 8, 8 if args.agent == "ppo" else 1
    # per minibatch: advantage mean/std; per env step: the reward normaliser's moments
    return minibatches * epochs, minibatches * epochs + args.max_steps + 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="model-based", choices=["model-based", "ppo", "reinforce"])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--total-steps", type=int, default=16 * 8 * 6)
    parser.add_argument("--canvas-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs to project to")
    parser.add_argument("--gpu-update-ms", type=float, default=5.0,
                        help="one update's compute on one GPU (assumed; measure it with a 1-GPU run)")
    parser.add_argument("--bus-gbps", type=float, default=100.0, help="NCCL bus bandwidth, GB/s (assumed)")
    parser.add_argument("--latency-us", type=float, default=10.0, help="NCCL latency per ring step, us (assumed)")
    parser.add_argument("--small-us", type=float, default=25.0, help="one small NCCL collective, us (assumed)")
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.count, args.reps)
        return

    count = actor_parameters(args)
    configs = [(1, ()), (2, ())]
    if args.agent == "model-based":  # the actor's batch norms: synchronised (default) or each rank's own
        configs.append((2, ("--no-sync-batchnorm",)))
    with tempfile.TemporaryDirectory() as tmp:
        speeds = {(nproc, extra): train_speed(nproc, args, Path(tmp), extra) for nproc, extra in configs}
    one = speeds[(1, ())]
    reduce_ms, latency_ms = allreduce_ms(count, args.reps)
    grads, small = updates_per_iteration(args)
    steps_per_iteration = args.num_envs * args.max_steps
    iteration_ms = steps_per_iteration / one * 1e3

    print(f"\n{args.agent}, {args.num_envs} envs (global), {args.canvas_size} px, {args.max_steps} steps per "
          f"episode, CPU, gloo, {os.cpu_count()} cores")
    print(f"{'processes':>9} | {'options':<20} | {'steps/s':>8} | {'efficiency':>10}")
    for (nproc, extra), speed in speeds.items():
        print(f"{nproc:>9} | {' '.join(extra):<20} | {speed:8.1f} | {speed / (nproc * one):10.0%}")
    print(f"\nall-reduce of the gradients ({count:,} float32 = {count * 4 / 1e6:.2f} MB), 2 ranks, gloo: "
          f"{reduce_ms:.3f} ms; a 3-number all-reduce: {latency_ms:.3f} ms")
    comm_ms = grads * reduce_ms + small * latency_ms
    print(f"per iteration: {grads} gradient all-reduces + {small} small collectives = {comm_ms:.1f} ms of "
          f"{iteration_ms:.1f} ms on one process ({comm_ms / iteration_ms:.1%})")

    n = args.gpus
    ring = 2 * (n - 1) / n * count * 4 / (args.bus_gbps * 1e9) * 1e3 + 2 * (n - 1) * args.latency_us * 1e-3
    small_ms = args.small_us * 1e-3
    print(f"\nprojection to {n} GPUs (weak scaling, NCCL ring, no overlap; ASSUMED: {args.bus_gbps:g} GB/s bus, "
          f"{args.latency_us:g} us per ring step, {args.small_us:g} us per small collective, "
          f"{args.gpu_update_ms:g} ms of compute per update on one GPU):")
    cases = [("", small)]
    if args.agent == "model-based":
        cases = [("synchronised batch norm", small), ("--no-sync-batchnorm", 2)]
    for label, count_small in cases:
        per_update_comm = ring + count_small / grads * small_ms
        efficiency = args.gpu_update_ms / (args.gpu_update_ms + per_update_comm)
        need = per_update_comm * 0.85 / 0.15
        print(f"  {label + ': ' if label else ''}gradient all-reduce {ring * 1e3:.0f} us + "
              f"{count_small / grads:.1f} small collectives {count_small / grads * small_ms * 1e3:.0f} us per update "
              f"-> efficiency {efficiency:.1%}; >= 85% needs >= {need:.2f} ms of compute per update per GPU")


if __name__ == "__main__":
    main()
