"""``paintgym train-vae``: train a convolutional VAE (Kingma and Welling, 2014) with a beta-weighted KL term.

Each step minimises ``E[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))`` per image (Bernoulli
likelihood, so the reconstruction term is a per-pixel cross-entropy), with Adam
(:func:`generative.steps.vae_step`). Held-out images (the environment's ``test`` split: every 10th
image) give the reconstruction error and ELBO that are logged.

    paintgym train-vae --data digits --size 32 --steps 3000 --out runs/vae
    paintgym train-vae --steps 6000 --out runs/vae --resume   # continue (its options come from the checkpoint)

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; the encoder is the novelty reward's
embedding, ``targets="vae:OUT/ckpt.pt"`` samples a target set), ``OUT/config.toml``,
``OUT/metrics.csv`` and TensorBoard scalars in ``OUT/tb``, and grids of samples and reconstructions
in ``OUT/samples`` (:mod:`experiments.generative_runs`).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from paintgym.experiments.generative_runs import (
    GenerativeRun,
    GenerativeRunArgs,
    TrainingError,
    command_main,
)
from paintgym.experiments.rng import seed_everything
from paintgym.generative.checkpoint import CHECKPOINT_NAME
from paintgym.generative.data import as_float, load_dataset
from paintgym.generative.models import VAE
from paintgym.generative.steps import evaluating, vae_heldout, vae_step


@dataclass
class Args(GenerativeRunArgs):
    steps: int = 3000
    """optimiser steps to train for (in total, counting those before a --resume)"""
    lr: float = 1e-3
    """Adam learning rate"""
    width: int = 32
    """channels of the first encoder convolution (doubling at each halving)"""
    out: str = "runs/vae"
    """run folder: ckpt.pt, config.toml, metrics.csv, tb/ (TensorBoard), samples/"""
    beta: float = 1.0
    """weight of the KL term (beta-VAE; 1 = the ELBO)"""
    latent_dim: int = 32
    """dimension of the Gaussian latent"""
    sample_every: int = 500
    """steps between held-out evaluations and PNG grids of samples and reconstructions"""

    def check(self) -> None:
        super().check()
        if not self.beta >= 0:
            raise TrainingError(f"--beta must be >= 0, got {self.beta}")


@dataclass
class Result:
    """What :func:`train` returns."""

    model: VAE
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    images_per_second: float
    """training images per second"""
    heldout_mse: float
    """mean squared reconstruction error on the held-out images at the end, per pixel, in [0, 1]"""
    interrupted: bool = False
    """a signal stopped the run (after a checkpoint)"""


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a VAE; see the module docstring."""
    run = GenerativeRun(args, "vae", "train-vae", progress)
    device = run.device
    data, channels = load_dataset(args.data, args.size, args.channels, split="train", device=device)
    heldout, _ = load_dataset(args.data, args.size, channels, split="test", device=device)

    seed_everything(args.seed)
    model = run.prepare(VAE(args.size, channels, args.latent_dim, args.beta, args.width).to(device))
    optimizers = {"optimizer": torch.optim.Adam(model.parameters(), lr=args.lr)}
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + 2)).to(device)
    shown = as_float(heldout[:32])  # reconstructed in every grid
    run.restore(model, optimizers)
    streams = run.streams

    model.train()
    scores: dict[str, float] = {}
    columns = ["loss/loss", "loss/nll", "loss/kl", "heldout/mse", "heldout/elbo"]
    with run.loop(columns, args.batch_size) as stop:
        while run.step < args.steps:
            index = torch.randint(len(data), (run.batch_size,), generator=streams["data"], device=device)  # rank's
            stats = vae_step(model, optimizers["optimizer"], as_float(data[index]), streams["noise"], run.amp)
            run.advance()
            last = run.step == args.steps
            evaluated = run.step % args.sample_every == 0 or last
            if evaluated:
                scores = vae_heldout(model, heldout)
                samples = run.out / "samples"
                with evaluating(model):
                    run.write_sheet(samples / f"step_{run.step:06d}_samples.png", model.decode(fixed_z), "samples")
                    pairs = torch.stack([shown, model.reconstruct(shown)], dim=1).flatten(0, 1)  # original, recon
                    run.write_sheet(samples / f"step_{run.step:06d}_reconstructions.png", pairs, "reconstructions",
                                    columns=16)
            if run.step % args.log_every == 0 or last:
                values = dict(stats)
                if evaluated:
                    values.update({"heldout/mse": scores["mse"], "heldout/elbo": scores["elbo"]})
                row = run.write(values)
                held = {"heldout_mse": f"{scores['mse']:.4f}"} if scores else {}
                run.bar.set_postfix(loss=f"{row['loss/loss']:.1f}", kl=f"{row['loss/kl']:.1f}", **held)
            if run.step % args.checkpoint_every == 0 or last or stop.requested:
                run.save(model, optimizers)
            if stop.requested:
                break
    return Result(model.eval(), run.step, run.history, run.images_per_second(), scores.get("mse", math.nan),
                  stop.requested)


def summary(args: Args, result: Result) -> str:
    """The line ``paintgym train-vae`` ends with."""
    return (f"trained to step {result.step} ({result.images_per_second:.0f} images/s); held-out reconstruction "
            f"MSE {result.heldout_mse:.4f}; checkpoint {args.out}/{CHECKPOINT_NAME}")


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-vae [options]``."""
    return command_main(argv, "train-vae", Args, "vae", __doc__, train, summary)


if __name__ == "__main__":
    sys.exit(main())
