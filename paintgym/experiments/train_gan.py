"""``paintgym train-gan``: train a DCGAN generator against a WGAN-GP critic (Gulrajani et al., 2017).

Each step trains the critic ``n_critic`` times on real batches and generator samples (loss
``E[D(fake)] - E[D(real)] + gp_weight * gradient penalty``), then the generator once (loss
``-E[D(G(z))]``), with Adam(lr, betas=(0, 0.9)) as in the paper (:func:`generative.steps.gan_step`).

    paintgym train-gan --data digits --size 32 --steps 2000 --out runs/gan
    paintgym train-gan --steps 4000 --out runs/gan --resume   # continue (its options come from the checkpoint)
    paintgym train-gan --data digits --conditional --out runs/cgan   # a CGAN: one class per sample row
    paintgym train-gan --data faces --arch stylegan --out runs/style  # StyleGAN-lite generator

``--conditional`` trains a class-conditional GAN (CGAN; :class:`generative.GAN` with ``num_classes``):
the generator paints a given class, the projection critic scores (image, class) pairs. Its checkpoint
serves as targets ``gan:OUT/ckpt.pt:class=K`` and as the reward ``gan(checkpoint=OUT/ckpt.pt,class=K)``.

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; use as ``gan(checkpoint=OUT/ckpt.pt)`` reward
or ``targets="gan:OUT/ckpt.pt"``), ``OUT/config.toml``, ``OUT/metrics.csv`` and TensorBoard scalars in
``OUT/tb``, and sample grids in ``OUT/samples`` (:mod:`experiments.generative_runs`).
"""

from __future__ import annotations

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
from paintgym.generative.data import as_float, load_dataset, load_labelled
from paintgym.generative.models import ARCHS, GAN
from paintgym.generative.steps import evaluating, gan_step

CRITIC_STATS = ["critic/wasserstein", "critic/gp", "critic/real", "critic/fake"]


@dataclass
class Args(GenerativeRunArgs):
    size: int = 32
    """image side the models work at: 32, 64 or 128"""
    steps: int = 2000
    """generator updates to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """images per critic and generator batch"""
    lr: float = 1e-4
    """Adam learning rate of both networks"""
    width: int = 64
    """base channel width of generator and critic"""
    out: str = "runs/gan"
    """run folder: ckpt.pt, config.toml, metrics.csv, tb/ (TensorBoard), samples/"""
    n_critic: int = 5
    """critic updates per generator update"""
    gp_weight: float = 10.0
    """weight of the gradient penalty"""
    beta1: float = 0.0
    """Adam beta1 (0 as in WGAN-GP)"""
    beta2: float = 0.9
    """Adam beta2"""
    latent_dim: int = 100
    """dimension of the generator's latent noise"""
    sample_every: int = 500
    """steps between PNG grids of samples"""
    arch: str = "dcgan"
    """generator architecture: dcgan, or stylegan (a mapping network and modulated convolutions, small)"""
    conditional: bool = False
    """train a class-conditional GAN (CGAN) on labelled data: digits, an .npz with images and labels, or a
    folder with one subfolder per class; samples/ then holds one row per class"""

    def check(self) -> None:
        super().check()
        if self.n_critic < 1:
            raise TrainingError(f"--n-critic must be at least 1, got {self.n_critic}")
        if self.arch not in ARCHS:
            raise TrainingError(f"--arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.gp_weight < 0:
            raise TrainingError(f"--gp-weight must be >= 0, got {self.gp_weight}")


@dataclass
class Result:
    """What :func:`train` returns."""

    model: GAN
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    images_per_second: float
    """real images through the critic per second of training"""
    interrupted: bool = False
    """a signal stopped the run (after a checkpoint)"""


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a WGAN-GP; see the module docstring."""
    run = GenerativeRun(args, "gan", "train-gan", progress)
    device = run.device
    labels: torch.Tensor | None = None
    names: list[str] = []
    if args.conditional:
        labelled = load_labelled(args.data, args.size, args.channels, split="train", device=device)
        data, labels, channels, names = labelled.images, labelled.labels.to(device), labelled.channels, labelled.names
    else:
        data, channels = load_dataset(args.data, args.size, args.channels, split="train", device=device)

    seed_everything(args.seed)
    model = run.prepare(GAN(args.size, channels, args.latent_dim, args.width, num_classes=len(names),
                            arch=args.arch).to(device))
    optimizers = {"opt_generator": torch.optim.Adam(model.generator.parameters(), lr=args.lr,
                                                    betas=(args.beta1, args.beta2)),
                  "opt_critic": torch.optim.Adam(model.critic.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))}
    # the sample grid: 8 columns of fixed noise; for a CGAN one row per class (at most 10 rows shown)
    rows = min(len(names), 10) if names else 8
    fixed_z = torch.randn(rows * 8, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + 2)).to(device)
    fixed_labels = torch.arange(rows, device=device).repeat_interleave(8) if names else None
    run.restore(model, optimizers)
    streams = run.streams

    def real_batch() -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(data), (run.batch_size,), generator=streams["data"], device=device)
        return as_float(data[index]) if labels is None else (as_float(data[index]), labels[index])

    def noise() -> torch.Tensor:  # this rank's slice of the batch (all of it on one process)
        return torch.randn(run.batch_size, args.latent_dim, generator=streams["noise"], device=device)

    model.train()
    columns = ["loss/critic", "loss/generator", *CRITIC_STATS]
    with run.loop(columns, args.n_critic * args.batch_size) as stop:
        while run.step < args.steps:
            stats = gan_step(model, optimizers["opt_generator"], optimizers["opt_critic"], real_batch, noise,
                             args.n_critic, args.gp_weight, streams["noise"], run.amp)
            run.advance()
            last = run.step == args.steps
            if run.step % args.log_every == 0 or last:
                row = run.write(stats)
                run.bar.set_postfix(critic=f"{row['loss/critic']:.3f}", gen=f"{row['loss/generator']:.3f}",
                                    w=f"{row['critic/wasserstein']:.3f}", gp=f"{row['critic/gp']:.3f}")
            if run.step % args.sample_every == 0 or last:
                with evaluating(model.generator):
                    samples = model.generator(fixed_z, fixed_labels) if names else model.generator(fixed_z)
                run.write_sheet(run.out / "samples" / f"step_{run.step:06d}.png", samples, "samples", columns=8)
            if run.step % args.checkpoint_every == 0 or last or stop.requested:
                run.save(model, optimizers)
            if stop.requested:
                break
    return Result(model.eval(), run.step, run.history, run.images_per_second(), stop.requested)


def summary(args: Args, result: Result) -> str:
    """The line ``paintgym train-gan`` ends with."""
    last = result.history[-1] if result.history else {}
    return (f"trained to step {result.step} ({result.images_per_second:.0f} real images/s); "
            f"critic wasserstein estimate {last.get('critic/wasserstein', float('nan')):.3f}; "
            f"checkpoint {args.out}/{CHECKPOINT_NAME}")


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-gan [options]``."""
    return command_main(argv, "train-gan", Args, "gan", __doc__, train, summary)


if __name__ == "__main__":
    sys.exit(main())
