"""``paintgym train-cyclegan``: unpaired translation between two folders of images (CycleGAN, Zhu et al. 2017).

Each step takes a batch of each domain (random crops of images loaded a little larger, mirrored
half the time: the paper's jitter), updates both generators on the least-squares GAN loss plus the
cycle-consistency (L1, ``--cycle-weight`` 10) and identity (``--identity-weight`` 0.5 of that)
terms, then both PatchGAN critics on real images and on translations from a 50-image history
pool; Adam(lr, betas=(0.5, 0.999)), the learning rate constant for the first half of ``--steps``
and then decaying linearly to 0, as in the paper. See :mod:`generative.cyclegan`.

    paintgym train-cyclegan --a photos/ --b paintings/ --size 64 --out runs/cyclegan
    paintgym train-cyclegan --a photos/ --b paintings/ --size 64 --steps 4000 --out runs/cyclegan --resume

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; targets ``cyclegan:OUT/ckpt.pt:PHOTOS``),
``OUT/sheet.png`` (rows: A, A -> B, A -> B -> A, held-out images first), ``OUT/sheet_b.png`` (the
same from B), ``OUT/cycle.json`` (the cycle reconstruction error on held-out images, every 10th; a domain of fewer
than 20 images holds none out and is measured on its training images),
sheets during training in ``OUT/samples``, ``OUT/config.toml``, ``OUT/metrics.csv`` and TensorBoard scalars
in ``OUT/tb`` (the run layer of :mod:`experiments.generative_runs`).

Under ``torchrun`` each rank draws both global batches (and their crops) from the same streams and
trains on its part (``--batch-size`` must divide by the world size); gradients are averaged and the
history pools take every rank's translations, so every rank holds one process's weights and pools.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from paintgym.agents.common import autocast
from paintgym.canvas.collective import shard
from paintgym.canvas.export import atomic_write_bytes
from paintgym.canvas.images import DatasetError, split_indices
from paintgym.experiments.generative_runs import (
    GenerativeRun,
    GenerativeRunArgs,
    TrainingError,
    command_main,
)
from paintgym.generative.checkpoint import CHECKPOINT_NAME
from paintgym.generative.cyclegan import CycleGAN, ImagePool, cycle_errors, linear_decay, random_crops, train_step
from paintgym.generative.data import as_float, load_dataset, resize
from paintgym.generative.steps import evaluating

SHEET_IMAGES = 8  # columns of the before/after sheets
EVAL_TRAIN = 64  # training images (of each domain) whose cycle error is also recorded
SHEET_NAME, SHEET_B_NAME, CYCLE_NAME = "sheet.png", "sheet_b.png", "cycle.json"


@dataclass
class Args(GenerativeRunArgs):
    a: str = "photos"
    """domain A images (e.g. photos): a folder, a .npy/.npz array or a built-in dataset"""
    b: str = ""
    """domain B images (e.g. paintings): a folder, a .npy/.npz array or a built-in dataset"""
    size: int = 64
    """image side the models work at: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (RGB); default: 1 if every image of both domains is grey, else 3"""
    steps: int = 1500
    """updates to train for (in total, counting those before a --resume)"""
    batch_size: int = 2
    """images of each domain per update (the paper: 1)"""
    lr: float = 2e-4
    """Adam learning rate of generators and critics (the paper's)"""
    beta1: float = 0.5
    """Adam beta1 (the paper's)"""
    beta2: float = 0.999
    """Adam beta2"""
    decay: bool = True
    """decay the learning rate linearly to 0 over the second half of --steps (the paper's schedule)"""
    width: int = 16
    """first-layer channels of the generators (the paper: 64)"""
    blocks: int = 3
    """residual blocks per generator (the paper: 6 at 128 px, 9 at 256 px)"""
    critic_width: int = 16
    """first-layer channels of the PatchGAN critics (the paper: 64)"""
    critic_layers: int | None = None
    """stride-2 critic layers: 1, 2, 3 give 16, 34, 70-pixel patches (default: 1 at 32 px, 2 at 64, 3 at 128)"""
    cycle_weight: float = 10.0
    """weight of the cycle-consistency L1 loss"""
    identity_weight: float = 0.5
    """weight of the identity L1 loss, as a fraction of --cycle-weight (0: none)"""
    pool_size: int = 50
    """translations kept in each critic's history pool (0: none)"""
    jitter: bool = True
    """random crops of images loaded 1/8 larger, and left-right mirroring"""
    out: str = "runs/cyclegan"
    """run folder: ckpt.pt, sheet.png, sheet_b.png, cycle.json, samples/, tb/ (TensorBoard)"""
    sample_every: int = 500
    """steps between before/after sheets in samples/"""

    def check(self) -> None:
        super().check()
        if not self.b:
            raise TrainingError("--b is required: the folder of domain B images (e.g. paintings)")
        if self.blocks < 0 or self.critic_width < 1 or self.pool_size < 0:
            raise TrainingError("--blocks and --pool-size must be >= 0 and --critic-width >= 1")
        if self.cycle_weight < 0 or self.identity_weight < 0:
            raise TrainingError("--cycle-weight and --identity-weight must be >= 0")


@dataclass
class Result:
    """What :func:`train` returns."""

    model: CycleGAN
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    images_per_second: float
    """training images (both domains) per second"""
    seconds: float
    """wall-clock time of this call's training loop"""
    heldout: dict
    """what ``cycle.json`` holds: the cycle and change errors on held-out images (empty when interrupted)"""
    interrupted: bool = False
    """a signal stopped the run (after a checkpoint)"""


def load_domain(flag: str, source: str, size: int, channels: int | None,
                device: torch.device) -> tuple[torch.Tensor, int]:
    """Every image of a domain as ``(N, channels, size, size)`` uint8; errors name the flag (``--a``, ``--b``)."""
    try:
        return load_dataset(source, size, channels, split="all", device=device)
    except DatasetError as err:
        raise DatasetError(f"{flag} {source}: {err}") from err


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a CycleGAN; see the module docstring."""
    run = GenerativeRun(args, "cyclegan", "train-cyclegan", progress, shared_streams=True)
    device = run.device
    load_size = args.size + args.size // 8 if args.jitter else args.size
    data_a, channels_a = load_domain("--a", args.a, load_size, args.channels, device)
    data_b, channels_b = load_domain("--b", args.b, load_size, args.channels, device)
    channels = max(channels_a, channels_b)  # grey + RGB trains in RGB
    data_a, data_b = (d.expand(-1, channels, -1, -1) for d in (data_a, data_b))
    splits = {name: (split_indices(len(d), "train"), split_indices(len(d), "test"))
              for name, d in (("a", data_a), ("b", data_b))}
    train_a, train_b = data_a[splits["a"][0]], data_b[splits["b"][0]]
    heldout_a = resize(as_float(data_a[splits["a"][1]]), args.size)
    heldout_b = resize(as_float(data_b[splits["b"][1]]), args.size)
    shared = {name: bool(len(train) == len(test)) for name, (train, test) in splits.items()}  # too few to hold out

    torch.manual_seed(args.seed)
    model = run.prepare(CycleGAN(args.size, channels, args.width, args.blocks, args.critic_width,
                                 args.critic_layers).to(device))
    optimizers = {"opt_generators": torch.optim.Adam(model.generators(), lr=args.lr, betas=(args.beta1, args.beta2)),
                  "opt_critics": torch.optim.Adam(model.critics(), lr=args.lr, betas=(args.beta1, args.beta2))}
    opt_g, opt_d = optimizers["opt_generators"], optimizers["opt_critics"]
    pools = (ImagePool(args.pool_size), ImagePool(args.pool_size))
    run.restore(model, optimizers)
    if run.resumed is not None:
        for pool, state in zip(pools, run.resumed["train"]["pools"], strict=True):
            pool.load_state(state, device)
    streams = run.streams  # "data": batches and crops; "noise": the history pools' draws

    # the sheets' images: held-out ones first, then training images, up to SHEET_IMAGES (a small dataset
    # holds none out: split_indices gives it all as both splits)
    def sheet_images(heldout: torch.Tensor, train_images: torch.Tensor, same: bool) -> torch.Tensor:
        extra = 0 if same else max(0, SHEET_IMAGES - len(heldout))
        return torch.cat([heldout, resize(as_float(train_images[:extra]), args.size)])[:SHEET_IMAGES]

    sheet_a, sheet_b = sheet_images(heldout_a, train_a, shared["a"]), sheet_images(heldout_b, train_b, shared["b"])

    def write_sheets(folder: Path, suffix: str) -> None:
        with evaluating(model):
            for images, direction, name in ((sheet_a, "a2b", SHEET_NAME), (sheet_b, "b2a", SHEET_B_NAME)):
                there, back = model.cycle(images, direction)
                run.write_sheet(folder / name.replace(".png", f"{suffix}.png"), torch.cat([images, there, back]),
                                f"sheet/{direction}", columns=len(images))

    def batch(images: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch (all of it on one process), drawn alike on every rank."""
        index = torch.randint(len(images), (args.batch_size,), generator=streams["data"], device=device)
        chosen = as_float(images[index])
        return shard(random_crops(chosen, args.size, streams["data"]) if args.jitter else chosen)

    def save() -> None:
        run.save(model, optimizers, {"pools": [pool.state() for pool in pools]})

    model.train()
    columns = ["loss/loss_g", "loss/loss_d", "loss/gan_ab", "loss/gan_ba", "loss/cycle_a", "loss/cycle_b",
               "loss/identity", "loss/critic_a", "loss/critic_b", "lr"]
    started = time.perf_counter()
    record: dict = {}
    with run.loop(columns, 2 * args.batch_size) as stop:
        while run.step < args.steps:
            lr = args.lr * (linear_decay(run.step, args.steps) if args.decay else 1.0)
            for optimizer in (opt_g, opt_d):
                for group in optimizer.param_groups:
                    group["lr"] = lr
            real_a, real_b = batch(train_a), batch(train_b)
            with autocast(device, run.amp):
                stats = train_step(model, real_a, real_b, opt_g, opt_d, pools, streams["noise"],
                                   args.cycle_weight, args.identity_weight)
            run.advance()
            last = run.step == args.steps
            if run.step % args.log_every == 0 or last:
                row = run.write({f"loss/{k}": v for k, v in stats.items()} | {"lr": lr})
                run.bar.set_postfix(cycle=f"{row['loss/cycle_a']:.3f}/{row['loss/cycle_b']:.3f}",
                                    g=f"{row['loss/loss_g']:.2f}", d=f"{row['loss/loss_d']:.3f}")
            if (run.step % args.sample_every == 0 or last) and run.world.is_main:
                write_sheets(run.out / "samples", f"_step_{run.step:06d}")
            if run.step % args.checkpoint_every == 0 or last or stop.requested:
                save()
            if stop.requested:
                break
        seconds = time.perf_counter() - started
        if not stop.requested and run.world.is_main:  # rank 0 alone evaluates and writes
            write_sheets(run.out, "")
            with evaluating(model):
                errors = cycle_errors(model, heldout_a, heldout_b)
                seen = cycle_errors(model, resize(as_float(train_a[:EVAL_TRAIN]), args.size),
                                    resize(as_float(train_b[:EVAL_TRAIN]), args.size))
            record = {**{k: round(v, 5) for k, v in errors.items()},
                      **{f"train_{k}": round(v, 5) for k, v in seen.items()},
                      "step": run.step, "train_seconds": round(seconds, 1),
                      "heldout_a": len(heldout_a), "heldout_b": len(heldout_b),
                      "heldout_a_is_training_data": shared["a"], "heldout_b_is_training_data": shared["b"],
                      "note": "mean absolute per-pixel error in [0, 1]: cycle = |G_ba(G_ab(a)) - a| (a) and "
                              "|G_ab(G_ba(b)) - b| (b); change = |G_ab(a) - a|, |G_ba(b) - b|; held-out images, "
                              f"train_*: the first {EVAL_TRAIN} training images of each domain"}
            atomic_write_bytes(run.out / CYCLE_NAME, (json.dumps(record, indent=1) + "\n").encode())
    return Result(model.eval(), run.step, run.history, run.images_per_second(), seconds, record, stop.requested)


def summary(args: Args, result: Result) -> str:
    """The line ``paintgym train-cyclegan`` ends with."""
    held = result.heldout
    where = " + ".join(f"{held[f'heldout_{d}']} {'training' if held[f'heldout_{d}_is_training_data'] else 'held-out'} "
                       f"{d.upper()} images" for d in ("a", "b"))
    return (f"trained to step {result.step} in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s); "
            f"cycle error A->B->A {held['cycle_a']:.4f}, B->A->B {held['cycle_b']:.4f} "
            f"(translation changes {held['change_a']:.4f}, {held['change_b']:.4f}) on {where} "
            f"({held['train_cycle_a']:.4f}, {held['train_cycle_b']:.4f} on training images); "
            f"checkpoint {args.out}/{CHECKPOINT_NAME}; sheet {args.out}/{SHEET_NAME}")


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-cyclegan [options]``."""
    return command_main(argv, "train-cyclegan", Args, "cyclegan", __doc__, train, summary)


if __name__ == "__main__":
    sys.exit(main())
