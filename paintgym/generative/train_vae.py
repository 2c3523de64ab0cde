"""``paintgym train-vae``: train a convolutional VAE (Kingma and Welling, 2014) with a beta-weighted KL term.

Each step minimises ``E[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))`` per image (Bernoulli
likelihood, so the reconstruction term is a per-pixel cross-entropy), with Adam. Held-out images
(the environment's ``test`` split: every 10th image) give the reconstruction error and ELBO
that are logged.

    paintgym train-vae --data digits --size 32 --steps 3000 --out runs/vae
    paintgym train-vae --data digits --size 32 --steps 6000 --out runs/vae --resume   # continue

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; the encoder is the novelty reward's
embedding, ``targets="vae:OUT/ckpt.pt"`` samples a target set), TensorBoard scalars in
``OUT/tb`` and grids of samples and reconstructions in ``OUT/samples``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import torch

from paintgym.canvas.images import DatasetError
from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from paintgym.generative.data import as_float, load_dataset
from paintgym.generative.models import VAE
from paintgym.generative.training import (
    RunLog,
    TrainingError,
    autocast,
    check_common,
    checkpoint_on_interrupt,
    evaluating,
    make_generator,
    parse_args,
    prepare_run,
    resolve_device,
    rng_state,
    set_rng_state,
    use_amp,
    write_sheet,
)

EVAL_BATCH = 256  # held-out images per evaluation forward pass


@dataclass
class Args:
    data: str = "digits"
    """training images: digits, faces, photos, a folder of images or a .npy/.npz array"""
    size: int = 32
    """image side the model works at: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (RGB); default: 1 if every training image is grey, else 3"""
    steps: int = 3000
    """optimiser steps to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """images per batch"""
    lr: float = 1e-3
    """Adam learning rate"""
    beta: float = 1.0
    """weight of the KL term (beta-VAE; 1 = the ELBO)"""
    latent_dim: int = 32
    """dimension of the Gaussian latent"""
    width: int = 32
    """channels of the first encoder convolution (doubling at each halving)"""
    device: str = "auto"
    """auto (CUDA if available), cpu or cuda"""
    amp: bool = True
    """bfloat16 mixed precision on CUDA (the CPU always trains in float32)"""
    seed: int = 0
    """random seed: the same seed and options give the same run"""
    out: str = "runs/vae"
    """run folder: ckpt.pt, tb/ (TensorBoard), samples/"""
    resume: bool = False
    """continue the run in --out from its checkpoint, exactly"""
    log_every: int = 10
    """steps between TensorBoard scalars and progress-bar updates"""
    sample_every: int = 500
    """steps between held-out evaluations and PNG grids of samples and reconstructions"""
    checkpoint_every: int = 500
    """steps between checkpoints (one is also written at the end and on Ctrl-C)"""


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


def evaluate(model: VAE, images: torch.Tensor) -> dict[str, float]:
    """Held-out reconstruction MSE (per pixel) and mean ELBO (nats per image, posterior mean decoded).

    :param images: ``(N, C, size, size)`` uint8 on the model's device.
    """
    squared, elbo = torch.zeros((), device=images.device), torch.zeros((), device=images.device)
    with evaluating(model):
        for start in range(0, len(images), EVAL_BATCH):  # bounded memory for any held-out set
            x = as_float(images[start:start + EVAL_BATCH])
            squared += (model.reconstruct(x) - x).square().sum()
            elbo += model.elbo(x, samples=0).sum()
    return {"mse": squared.item() / images.numel(), "elbo": elbo.item() / len(images)}


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a VAE; see the module docstring."""
    check_common(args)
    if not args.beta >= 0:
        raise TrainingError(f"--beta must be >= 0, got {args.beta}")
    device = resolve_device(args.device)
    out, resumed = prepare_run(args, "vae")
    data, channels = load_dataset(args.data, args.size, args.channels, split="train", device=device)
    heldout, _ = load_dataset(args.data, args.size, channels, split="test", device=device)
    amp = use_amp(device, args.amp)

    torch.manual_seed(args.seed)
    model = VAE(args.size, channels, args.latent_dim, args.beta, args.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    streams = {"data": make_generator(device, args.seed), "noise": make_generator(device, args.seed + 1)}
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + 2)).to(device)
    shown = as_float(heldout[:32])  # reconstructed in every grid
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["train"]["optimizer"])
        step = resumed["step"]
        set_rng_state(resumed["train"]["rng"], streams, args.seed, step)

    def checkpoint(at: int) -> int:
        train_state = {"args": dataclasses.asdict(args), "optimizer": optimizer.state_dict(),
                       "rng": rng_state(streams)}
        save_checkpoint(out / CHECKPOINT_NAME, model, at, train_state)
        return at

    log = RunLog(out, step, resumed is not None, args.steps, "train-vae", args.batch_size, progress)
    model.train()
    scores: dict[str, float] = {}
    with checkpoint_on_interrupt(log, lambda: checkpoint(step), out / CHECKPOINT_NAME):
        while step < args.steps:
            index = torch.randint(len(data), (args.batch_size,), generator=streams["data"], device=device)
            with autocast(device, amp):
                loss, stats = model.loss(as_float(data[index]), streams["noise"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            log.bar.update(1)

            evaluated = step % args.sample_every == 0 or step == args.steps
            if evaluated:
                scores = evaluate(model, heldout)
                with evaluating(model):
                    write_sheet(out / "samples" / f"step_{step:06d}_samples.png", model.decode(fixed_z), log.writer,
                                "samples", step)
                    pairs = torch.stack([shown, model.reconstruct(shown)], dim=1).flatten(0, 1)  # original, recon
                    write_sheet(out / "samples" / f"step_{step:06d}_reconstructions.png", pairs, log.writer,
                                "reconstructions", step, columns=16)
            if step % args.log_every == 0 or step == args.steps:
                values = {f"loss/{k}": v.item() for k, v in stats.items()}
                if evaluated:
                    values.update({"heldout/mse": scores["mse"], "heldout/elbo": scores["elbo"]})
                shown_scores = {"heldout_mse": f"{scores['mse']:.4f}"} if scores else {}
                log.log(step, values, loss=f"{values['loss/loss']:.1f}", kl=f"{values['loss/kl']:.1f}",
                        **shown_scores)
            if step % args.checkpoint_every == 0 or step == args.steps:
                checkpoint(step)
    return Result(model.eval(), step, log.history, log.images_per_second(step), scores["mse"])


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-vae [options]``."""
    args = parse_args(Args, argv, "paintgym train-vae", __doc__.splitlines()[0].replace("``", ""))
    try:
        result = train(args)
    except (DatasetError, CheckpointError, TrainingError) as err:
        print(f"paintgym train-vae: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(f"trained to step {result.step} ({result.images_per_second:.0f} images/s); held-out reconstruction "
          f"MSE {result.heldout_mse:.4f}; checkpoint {args.out}/{CHECKPOINT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
