"""DCGAN vs StyleGAN-lite generators at equal steps: Fréchet distance to held-out digits, and a style-mixing grid.

Both GANs (``GAN(arch="dcgan")`` and ``GAN(arch="stylegan")``, the same DCGAN critic) are trained
on scikit-learn's digits at 32x32 with the WGAN-GP losses of :mod:`generative.losses` and
``train-gan``'s settings (Adam 1e-4, betas (0, 0.9), 5 critic updates per generator update, gradient
penalty 10), from the same seed, for the same number of generator updates. The Fréchet distance
(FD) is :mod:`bench/generative.py`'s: between the held-out images (every 10th) and 1,000 samples,
in the 64-d features of a small classifier trained here on the training split. Lower is better.
The StyleGAN-lite run also writes its style-mixing grid (coarse styles from the left column, fine
ones from the top row) to ``--grid``.

    python bench/stylegan.py                                     # a few minutes on one CPU core
    python bench/stylegan.py --steps 2000 --width 32 --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)  # run as `python bench/stylegan.py`: bench/generative.py would shadow the package

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from paintgym.canvas.export import atomic_write_bytes, save_png  # noqa: E402
from paintgym.canvas.images import to_uint8  # noqa: E402
from paintgym.canvas.video import grid  # noqa: E402
from paintgym.experiments.device import resolve_device  # noqa: E402
from paintgym.generative import GAN, critic_loss, generator_loss  # noqa: E402
from paintgym.generative.data import as_float  # noqa: E402
from paintgym.generative.stylegan import mixing_grid  # noqa: E402


def _bench_generative():
    """bench/generative.py as a module (its data loading, feature classifier and Fréchet distance)."""
    spec = importlib.util.spec_from_file_location("bench_generative", ROOT / "bench" / "generative.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _save(path: str, image: np.ndarray) -> Path:
    """An ``(H, W, 3)`` uint8 image as PNG; one channel when it is grey (a third of the bytes, for the README)."""
    if (image == image[..., :1]).all():
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., 0]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return atomic_write_bytes(path, encoded.tobytes())
    return save_png(path, image)


def _tiles(images: torch.Tensor, columns: int = 4, tile: int = 64) -> np.ndarray:
    """``(N, C, S, S)`` in [0, 1] as one uint8 RGB grid, tiles enlarged (nearest) to ``tile`` pixels."""
    images = F.interpolate(images.float().expand(-1, 3, -1, -1), size=(tile, tile), mode="nearest")
    return grid(to_uint8(images).cpu().numpy(), columns)


def train(arch: str, data: torch.Tensor, args: argparse.Namespace, device: torch.device) -> tuple[GAN, float]:
    """``train-gan``'s loop (WGAN-GP) for ``args.steps`` generator updates; returns the model and seconds."""
    torch.manual_seed(args.seed)
    model = GAN(data.shape[-1], data.shape[1], args.latent_dim, args.width, arch=arch).to(device)
    generator, critic = model.generator, model.critic
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.0, 0.9))
    opt_c = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(0.0, 0.9))
    draws = torch.Generator(device=device).manual_seed(args.seed)

    def noise() -> torch.Tensor:
        return torch.randn(args.batch_size, args.latent_dim, generator=draws, device=device)

    model.train()
    started = time.perf_counter()
    for step in range(args.steps):
        critic.requires_grad_(True)
        for _ in range(args.n_critic):
            real = as_float(data[torch.randint(len(data), (args.batch_size,), generator=draws, device=device)])
            with torch.no_grad():
                fake = generator(noise())
            loss_c, stats = critic_loss(critic, real, fake, 10.0, generator=draws)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        critic.requires_grad_(False)
        loss_g = generator_loss(critic, generator(noise()))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not args.quiet and ((step + 1) % 50 == 0 or step + 1 == args.steps):
            print(f"  [{arch}] step {step + 1}/{args.steps}: wasserstein {stats['wasserstein'].item():.3f} "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)
    critic.requires_grad_(True)
    return model.eval(), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="generator updates of each GAN")
    parser.add_argument("--n-critic", type=int, default=5, help="critic updates per generator update")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="GAN(width=): both generators and the critic")
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--classifier-steps", type=int, default=300, help="feature classifier training steps")
    parser.add_argument("--samples", type=int, default=1000, help="generated images per Fréchet distance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--grid", default=str(ROOT / "docs" / "images" / "stylegan_mixing.png"),
                        help="where to write the style-mixing grid ('' for nowhere)")
    parser.add_argument("--samples-sheet", default=str(ROOT / "docs" / "images" / "stylegan_vs_dcgan.png"),
                        help="where to write 16 samples of each model side by side ('' for nowhere)")
    parser.add_argument("--archs", default="dcgan,stylegan", help="generators to train, comma-separated")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    bench = _bench_generative()

    data = bench.labelled("digits", 32, device)
    started = time.perf_counter()
    classifier, accuracy = bench.train_classifier(data, args.classifier_steps, args.seed)
    print(f"feature classifier: held-out accuracy {accuracy:.3f} ({time.perf_counter() - started:.0f}s)")
    real = bench.features(classifier, as_float(data.test))
    floor = bench.frechet_distance(real, bench.features(classifier, as_float(data.train[:args.samples])))

    rows, models = [], {}
    for arch in [name.strip() for name in args.archs.split(",")]:
        torch.manual_seed(args.seed)
        initial = GAN(32, 1, args.latent_dim, args.width, arch=arch).to(device).eval()
        model, seconds = train(arch, data.train, args, device)
        models[arch] = model
        fd = bench.frechet_distance(real, bench.features(classifier, bench.samples(model, args.samples, args.seed + 1)))
        fd0 = bench.frechet_distance(real, bench.features(classifier,
                                                          bench.samples(initial, args.samples, args.seed + 1)))
        params = sum(p.numel() for p in model.generator.parameters())
        rows.append((arch, args.steps, fd, fd0, params, seconds))

    print(f"\nFréchet distance to held-out digits (32x32) in a self-trained classifier's 64-d features, lower is "
          f"better; WGAN-GP, {args.steps} generator updates x {args.n_critic} critic updates, batch "
          f"{args.batch_size}, width {args.width}, latent {args.latent_dim}, {device.type}, "
          f"{torch.get_num_threads()} thread(s)")
    header = f"{'generator':<10} {'steps':>6} {'trained':>9} {'step 0':>9} {'real':>7} {'params':>8} {'minutes':>8}"
    print(header)
    print("-" * len(header))
    for arch, steps, fd, fd0, params, seconds in rows:
        print(f"{arch:<10} {steps:>6} {fd:>9.2f} {fd0:>9.2f} {floor:>7.2f} {params:>8,} {seconds / 60:>8.1f}")

    if args.grid and "stylegan" in models:
        sheet = mixing_grid(models["stylegan"].generator, rows=4, columns=6, crossover=4, seed=args.seed)
        print(f"style-mixing grid: {_save(args.grid, sheet)}")
    if args.samples_sheet and len(models) == 2:
        sheets = [_tiles(models[arch].sample(16, torch.Generator().manual_seed(args.seed + 2))) for arch in models]
        path = _save(args.samples_sheet, grid(np.stack(sheets), 2, pad=8))
        print(f"samples (left DCGAN, right StyleGAN-lite): {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
