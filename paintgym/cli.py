"""paintgym's command line: ``paintgym SUBCOMMAND ...`` (also ``python -m paintgym SUBCOMMAND ...``).

``python train.py [options]`` is ``paintgym train [options]``.

Argument parsing and wiring only; the work lives in the packages. Each subcommand is a function
``main(argv: list[str]) -> int`` in its package, listed in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, one-line help); modules are imported only when their subcommand runs
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "paintgym.experiments.cli_train",
        "train an agent to paint: model-based (default), PPO, REINFORCE or SB3 PPO (digits, minutes on CPU)"),
    "demo": (
        "paintgym.envs.demo",
        "paint with a random policy and write a PNG and an MP4"),
    "paint": (
        "paintgym.experiments.cli_paint",
        "run a trained agent and render a video of it painting (MP4, GIF, PNG frames, SVG)"),
    "eval": (
        "paintgym.experiments.cli_eval",
        "paint targets with a trained agent or a painter (random, greedy, optimise) and "
        "measure PSNR, L2, SSIM after 1, 2, 4, ... N strokes"),
    "optimise": (
        "paintgym.experiments.cli_optimise",
        "paint one image by gradient descent on its strokes (PNG, SVG, JSON, MP4)"),
    "sweep": (
        "paintgym.experiments.sweep",
        "run a grid of training runs (reward specs x seeds x ...) and write a report"),
    "report": (
        "paintgym.experiments.report",
        "compare finished runs: metrics table, learning curves, contact sheets"),
    "rewards": (
        "paintgym.rewards.cli",
        "list the rewards with their options, or check a --reward spec"),
    "train-gan": (
        "paintgym.experiments.train_gan",
        "train a WGAN-GP generator and critic on images (reward model, prior)"),
    "train-vae": (
        "paintgym.experiments.train_vae",
        "train a VAE on images (embedding, prior, plausibility score)"),
    "train-classifier": (
        "paintgym.experiments.train_classifier",
        "train a CNN classifier on labelled images (reward model)"),
    "train-strokes": (
        "paintgym.experiments.train_strokes",
        "train a stroke-sequence prior (sketch-rnn) on human pen drawings (reward model)"),
    "sample-strokes": (
        "paintgym.experiments.sample_strokes",
        "a video of a stroke-sequence prior drawing (MP4, GIF, PNG)"),
    "train-cyclegan": (
        "paintgym.experiments.train_cyclegan",
        "train a CycleGAN between two unpaired image folders (photos -> painting-like targets)"),
}


def _usage() -> str:
    lines = ["usage: paintgym SUBCOMMAND [options]   (paintgym SUBCOMMAND --help for its options)", "",
             "subcommands:"]
    lines += [f"  {name:<16} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    """Entry point of the ``paintgym`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"paintgym: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    code = int(module.main(rest) or 0)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
        # A torchrun rank other than 0 has written nothing and has nothing left to do, and its interpreter's
        # teardown can abort in the destructor of a thread the process group left behind ("terminate called
        # without an active exception", about one CPU/gloo run in five): end the process without it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    """``python train.py [options]`` — the same as ``paintgym train [options]``."""
    return cli(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
