"""``paintgym train-gan``: train a DCGAN generator against a WGAN-GP critic (Gulrajani et al., 2017).

Each step trains the critic ``n_critic`` times on real batches and generator samples (loss
``E[D(fake)] - E[D(real)] + gp_weight * gradient penalty``), then the generator once (loss
``-E[D(G(z))]``), with Adam(lr, betas=(0, 0.9)) as in the paper.

    paintgym train-gan --data digits --size 32 --steps 2000 --out runs/gan
    paintgym train-gan --data digits --size 32 --steps 4000 --out runs/gan --resume   # continue

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; use as ``gan(checkpoint=OUT/ckpt.pt)`` reward
or ``targets="gan:OUT/ckpt.pt"``), TensorBoard scalars in ``OUT/tb`` and sample grids in ``OUT/samples``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import torch

from paintgym.canvas.images import DatasetError
from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from paintgym.generative.data import as_float, load_dataset
from paintgym.generative.losses import critic_loss, generator_loss
from paintgym.generative.models import GAN
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


@dataclass
class Args:
    data: str = "digits"
    """training images: digits, faces, photos, a folder of images or a .npy/.npz array"""
    size: int = 32
    """image side the models work at: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (RGB); default: 1 if every training image is grey, else 3"""
    steps: int = 2000
    """generator updates to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """images per critic and generator batch"""
    n_critic: int = 5
    """critic updates per generator update"""
    gp_weight: float = 10.0
    """weight of the gradient penalty"""
    lr: float = 1e-4
    """Adam learning rate of both networks"""
    beta1: float = 0.0
    """Adam beta1 (0 as in WGAN-GP)"""
    beta2: float = 0.9
    """Adam beta2"""
    latent_dim: int = 100
    """dimension of the generator's latent noise"""
    width: int = 64
    """base channel width of generator and critic"""
    device: str = "auto"
    """auto (CUDA if available), cpu or cuda"""
    amp: bool = True
    """bfloat16 mixed precision on CUDA (the CPU always trains in float32)"""
    seed: int = 0
    """random seed: the same seed and options give the same run"""
    out: str = "runs/gan"
    """run folder: ckpt.pt, tb/ (TensorBoard), samples/"""
    resume: bool = False
    """continue the run in --out from its checkpoint, exactly"""
    log_every: int = 10
    """steps between TensorBoard scalars and progress-bar updates"""
    sample_every: int = 500
    """steps between PNG grids of samples"""
    checkpoint_every: int = 500
    """steps between checkpoints (one is also written at the end and on Ctrl-C)"""


@dataclass
class Result:
    """What :func:`train` returns."""

    model: GAN
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    images_per_second: float
    """real images through the critic per second of training"""


def check_args(args: Args) -> None:
    check_common(args)
    if args.n_critic < 1:
        raise TrainingError(f"--n-critic must be at least 1, got {args.n_critic}")
    if args.gp_weight < 0:
        raise TrainingError(f"--gp-weight must be >= 0, got {args.gp_weight}")


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a WGAN-GP; see the module docstring."""
    check_args(args)
    device = resolve_device(args.device)
    out, resumed = prepare_run(args, "gan")
    data, channels = load_dataset(args.data, args.size, args.channels, split="train", device=device)
    amp = use_amp(device, args.amp)

    torch.manual_seed(args.seed)
    model = GAN(args.size, channels, args.latent_dim, args.width).to(device)
    generator, critic = model.generator, model.critic
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    opt_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(args.beta1, args.beta2))
    streams = {"data": make_generator(device, args.seed), "noise": make_generator(device, args.seed + 1)}
    fixed_z = torch.randn(64, args.latent_dim, generator=torch.Generator().manual_seed(args.seed + 2)).to(device)
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        opt_g.load_state_dict(resumed["train"]["opt_generator"])
        opt_c.load_state_dict(resumed["train"]["opt_critic"])
        step = resumed["step"]
        set_rng_state(resumed["train"]["rng"], streams, args.seed, step)

    def checkpoint(at: int) -> int:
        train_state = {"args": dataclasses.asdict(args), "opt_generator": opt_g.state_dict(),
                       "opt_critic": opt_c.state_dict(), "rng": rng_state(streams)}
        save_checkpoint(out / CHECKPOINT_NAME, model, at, train_state)
        return at

    def real_batch() -> torch.Tensor:
        index = torch.randint(len(data), (args.batch_size,), generator=streams["data"], device=device)
        return as_float(data[index])

    def noise() -> torch.Tensor:
        return torch.randn(args.batch_size, args.latent_dim, generator=streams["noise"], device=device)

    log = RunLog(out, step, resumed is not None, args.steps, "train-gan", args.n_critic * args.batch_size, progress)
    model.train()
    with checkpoint_on_interrupt(log, lambda: checkpoint(step), out / CHECKPOINT_NAME):
        while step < args.steps:
            # critic: n_critic updates on fresh real batches and generator samples
            critic.requires_grad_(True)
            for _ in range(args.n_critic):
                real = real_batch()
                with autocast(device, amp):
                    with torch.no_grad():
                        fake = generator(noise())
                    loss_c, stats = critic_loss(critic, real, fake.float(), args.gp_weight,
                                                generator=streams["noise"])
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
            # generator: one update through the frozen critic
            critic.requires_grad_(False)
            with autocast(device, amp):
                loss_g = generator_loss(critic, generator(noise()))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            step += 1
            log.bar.update(1)

            if step % args.log_every == 0 or step == args.steps:
                values = {"loss/critic": loss_c.item(), "loss/generator": loss_g.item(),
                          **{f"critic/{k}": v.item() for k, v in stats.items()}}
                log.log(step, values, critic=f"{values['loss/critic']:.3f}", gen=f"{values['loss/generator']:.3f}",
                        w=f"{values['critic/wasserstein']:.3f}", gp=f"{values['critic/gp']:.3f}")
            if step % args.sample_every == 0 or step == args.steps:
                with evaluating(generator):
                    samples = generator(fixed_z)
                write_sheet(out / "samples" / f"step_{step:06d}.png", samples, log.writer, "samples", step)
            if step % args.checkpoint_every == 0 or step == args.steps:
                checkpoint(step)
    critic.requires_grad_(True)
    return Result(model.eval(), step, log.history, log.images_per_second(step))


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-gan [options]``."""
    args = parse_args(Args, argv, "paintgym train-gan", __doc__.splitlines()[0].replace("``", ""))
    try:
        result = train(args)
    except (DatasetError, CheckpointError, TrainingError) as err:
        print(f"paintgym train-gan: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = result.history[-1] if result.history else {}
    print(f"trained to step {result.step} ({result.images_per_second:.0f} real images/s); "
          f"critic wasserstein estimate {summary.get('critic/wasserstein', float('nan')):.3f}; "
          f"checkpoint {args.out}/{CHECKPOINT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
