"""``paintgym paint``: run a trained agent and render a video of it painting, stroke by stroke.

The agent paints one episode per seed (``--seeds``, or ``--episodes N`` seeds following the run's
evaluation seed, so the default paints the run's own held-out targets), or one per image of
``--targets`` (in order). The stroke histories are re-rendered at ``--size`` (strokes do not depend on
the canvas resolution), each stroke drawn progressively along its curve, beside its target and over
a caption with the running reward terms; several episodes make a grid video. The output format
follows the extension: ``.mp4`` (H.264), ``.gif``, anything else a folder of PNG frames. ``--svg``
also writes each final painting as an SVG of its strokes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from paintgym.canvas.export import save_svg
from paintgym.canvas.painting_video import reward_captions, write_painting_video
from paintgym.envs.core import CanvasCore
from paintgym.envs.vector_env import CanvasVectorEnv
from paintgym.experiments.device import set_threads
from paintgym.experiments.evaluate import EvalResult, evaluate
from paintgym.experiments.pretrained import load_agent
from paintgym.experiments.refine_flags import add_refine_arguments, check_refine_arguments, refiner

EXAMPLES = """examples:
  paintgym paint runs/ppo-Reconstruct-v0-s1-20250101-120000 --out painting.mp4
  paintgym paint RUN_DIR --targets photos --size 512 --out photos.mp4 --svg photos.svg
  paintgym paint RUN_DIR/checkpoint.pt --seeds 1,2,3,4 --sample --out seeds.gif
  paintgym paint RUN_DIR --targets my_face.jpg --no-caption --fps 60 --hold 3 --out frames/
  paintgym paint RUN_DIR --targets ../shared/data/photos-coco20 --refine 20 --out refined.mp4
"""
DEFAULT_EPISODES = 4  # episodes painted when neither --seeds, --episodes nor --targets say otherwise
MAX_TARGET_EPISODES = 16  # --targets paints at most this many of its images unless --episodes asks for more


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paintgym paint", description=__doc__.splitlines()[0],
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT", help="a run directory of paintgym train, or its "
                        "checkpoint.pt")
    parser.add_argument("--out", default="painting.mp4", help="output: .mp4, .gif, or a folder for PNG frames "
                        "(default: painting.mp4)")
    parser.add_argument("--targets", help="paint these images instead of the run's held-out targets, in order: "
                        "a dataset name, folder, image file or .npy/.npz")
    parser.add_argument("--size", type=int, default=256, help="side in pixels of each painting in the video "
                        "(default: 256)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second (default: 30)")
    parser.add_argument("--frames-per-stroke", type=int, help="frames drawing each stroke (default: about 6 s "
                        "of painting, 1 to 12 per stroke)")
    parser.add_argument("--hold", type=float, default=2.0, metavar="SECONDS",
                        help="pause on the final painting (default: 2)")
    parser.add_argument("--no-target", dest="show_target", action="store_false",
                        help="do not show the targets beside the paintings")
    parser.add_argument("--no-caption", dest="caption", action="store_false",
                        help="do not write the running reward terms under the paintings")
    parser.add_argument("--columns", type=int, help="grid columns for several episodes (default: about square)")
    episodes = parser.add_mutually_exclusive_group()
    episodes.add_argument("--seeds", help="comma-separated episode seeds, one episode each (e.g. 1,2,3)")
    episodes.add_argument("--episodes", type=int, help=f"episodes to paint (default: {DEFAULT_EPISODES}, or the "
                          f"images of --targets up to {MAX_TARGET_EPISODES})")
    parser.add_argument("--svg", help="also write the final painting as SVG (several: one file each, numbered "
                        "_0, _1, ... in grid order)")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--deterministic", dest="deterministic", action="store_const", const=True,
                        help="act with the policy's most likely action (the default when the task has targets)")
    policy.add_argument("--sample", dest="deterministic", action="store_const", const=False,
                        help="sample actions (the default without targets, where every deterministic episode "
                        "would be the same)")
    add_refine_arguments(parser, "refine the agent's paintings by K Adam steps through the renderer before they are "
                         "drawn (every prefix kept a good painting too; tasks with targets and continuous actions): "
                         "better paintings, the same strokes per step")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and the renderer (default: 1)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    return parser


def parse_seeds(text: str) -> list[int]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (non-negative integers)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds takes comma-separated integers like 1,2,3, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds takes comma-separated non-negative integers like 1,2,3, got {text!r}")
    return seeds


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` for option values that cannot work, before any work is done."""
    if not 8 <= args.size <= 4096:
        raise ValueError(f"--size must be between 8 and 4096 pixels, got {args.size}")
    if args.fps < 1:
        raise ValueError(f"--fps must be at least 1, got {args.fps}")
    if args.frames_per_stroke is not None and args.frames_per_stroke < 1:
        raise ValueError(f"--frames-per-stroke must be at least 1, got {args.frames_per_stroke}")
    if not 0.0 <= args.hold <= 3600.0:
        raise ValueError(f"--hold must be between 0 and 3600 seconds, got {args.hold}")
    if args.episodes is not None and not 1 <= args.episodes <= 1024:
        raise ValueError(f"--episodes must be between 1 and 1024, got {args.episodes}")
    if args.columns is not None and args.columns < 1:
        raise ValueError(f"--columns must be at least 1, got {args.columns}")
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    check_refine_arguments(args)
    for flag, value in (("--out", args.out), ("--svg", args.svg)):
        if value is not None:
            _check_writable(flag, Path(value))


def _check_writable(flag: str, path: Path) -> None:
    """Fail early (before painting) when ``path`` cannot be written."""
    if path.is_dir() and path.suffix.lower() in (".mp4", ".gif", ".svg"):
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    folder = path if path.suffix.lower() not in (".mp4", ".gif", ".svg") else path.parent
    existing = folder
    while not existing.exists():  # the nearest folder that exists must let us create the rest
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path} cannot be written ({existing} is not a writable folder); "
                         "choose another path")


def svg_paths(path: Path, count: int) -> list[Path]:
    """``painting.svg`` for one painting; ``painting_0.svg, painting_1.svg, ...`` for several."""
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}{path.suffix or '.svg'}") for i in range(count)]


def run(args: argparse.Namespace) -> Path:
    """Paint and write the video (and SVGs); returns the video's path."""


    check_args(args)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    set_threads(args.threads)
    agent = load_agent(args.run, args.device)
    pool = agent.target_pool(args.targets) if args.targets is not None else None
    if seeds is None:
        count = args.episodes or (min(len(pool), MAX_TARGET_EPISODES) if pool is not None else DEFAULT_EPISODES)
        seeds = [agent.eval_seed + i for i in range(count)]
    env = agent.make_env(len(seeds), pool)
    core = env.core
    if args.refine:
        check_refinable(core)  # before painting
    deterministic = args.deterministic if args.deterministic is not None else core.targets is not None
    torch.manual_seed(seeds[0])  # sampled actions: the same seeds paint the same video

    started = time.perf_counter()
    result = evaluate(lambda obs: agent.act(obs, deterministic), env, seeds)
    took = time.perf_counter() - started
    print(f"painted {len(seeds)} episode(s) of {result.strokes.shape[1]} strokes in {took:.1f}s "
          f"({'deterministic' if deterministic else 'sampled'} actions); mean {_shown(result)}")
    if args.refine:
        started = time.perf_counter()
        result = refine_episodes(env, seeds, result, args)
        print(f"refined them by {args.refine} Adam steps in {time.perf_counter() - started:.1f}s; "
              f"mean {_shown(result)}")

    captions = None
    if args.caption:
        captions = reward_captions(result.step_rewards, result.step_terms, core.strokes_per_step)
    targets = result.targets if args.show_target else None
    video, frames = write_painting_video(args.out, result.strokes, args.size, fps=args.fps,
                                         frames_per_stroke=args.frames_per_stroke, hold_seconds=args.hold,
                                         background=core.background, targets=targets, captions=captions,
                                         columns=args.columns, device=core.device, progress=args.progress)
    print(f"wrote {video} ({frames} frames, {frames / args.fps:.1f}s at {args.fps} fps)")
    if args.svg is not None:
        paths = svg_paths(Path(args.svg), len(seeds))
        for path, strokes in zip(paths, np.asarray(result.strokes), strict=True):
            save_svg(path, strokes, args.size, core.background)
        print(f"wrote {paths[0]}" if len(paths) == 1 else f"wrote {len(paths)} SVGs: {paths[0]} ... {paths[-1]}")
    return Path(video)


def _shown(result: EvalResult) -> str:
    return ", ".join(f"{key.removeprefix('term/')} {value:.4g}" for key, value in result.metrics.items())


class _Painted:
    """The strokes a painter starts its refinement from: the episodes already painted."""

    def __init__(self, strokes: torch.Tensor) -> None:
        self.strokes = strokes

    def paint(self, targets: torch.Tensor, num_strokes: int) -> torch.Tensor:
        return self.strokes[:targets.shape[0], :num_strokes].clone()


def check_refinable(core: CanvasCore) -> None:
    """Raise ``ValueError`` when ``--refine`` cannot work on ``core``'s task: no targets, or discrete actions."""
    if core.targets is None:
        raise ValueError("--refine brings paintings closer to their targets; this run paints without targets")
    if core.action_mode != "continuous":
        raise ValueError(f"--refine needs continuous actions (refined strokes take any value); this run's are "
                         f"{core.action_mode}")


def refine_episodes(env: CanvasVectorEnv, seeds: list[int], result: EvalResult,
                    args: argparse.Namespace) -> EvalResult:
    """The episodes of ``result`` with their strokes refined by ``args.refine`` Adam steps through the renderer
    (:func:`experiments.refine_flags.refiner`), replayed in ``env`` with the same ``seeds`` so that the rewards,
    captions and paintings are the refined strokes'."""
    core = env.core
    check_refinable(core)
    strokes = torch.as_tensor(result.strokes, device=core.device)
    count = core.max_steps * core.strokes_per_step
    if strokes.shape[1] != count:
        raise ValueError(f"--refine needs whole episodes of {count} strokes; these have {strokes.shape[1]}")
    painter = refiner(_Painted(strokes), args)
    painter.progress = args.progress
    better = painter.paint(core.target.float(), count)
    actions = iter((better.view(len(seeds), core.max_steps, -1) * 2.0 - 1.0).clamp(-1.0, 1.0).unbind(1))
    return evaluate(lambda obs: next(actions), env, seeds)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        run(args)
    except KeyboardInterrupt:
        print("paintgym paint: interrupted; nothing more was written", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:  # FileNotFoundError and DatasetError included
        print(f"paintgym paint: error: {err}", file=sys.stderr)
        return 2
    return 0
