"""Quality and speed of the generative models: Fréchet distance to held-out images, and training throughput.

For each labelled dataset (scikit-learn's digits; MNIST from ``../shared/data`` when present) the
script trains

1. a small CNN classifier on the training split (labels only serve this classifier), whose
   penultimate layer is the feature space — a self-made "Inception" so that nothing is downloaded;
2. a WGAN-GP and a VAE with ``paintgym``'s own trainers (``generative.train_gan`` / ``train_vae``);

and reports the Fréchet distance (FD) between the features of the held-out images (every 10th
image) and those of: the trained model's samples, the same model at step 0, random-stroke canvases
(what a random painting policy makes) and the training images themselves (the floor: two samples
of real images). Lower is better. Training throughput is real images per second through the
critic (GAN) or the encoder (VAE).

    python bench/generative.py                      # a few minutes on a CPU
    python bench/generative.py --gan-steps 2000 --vae-steps 3000 --width 32 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    # run as `python bench/generative.py`: this file would shadow the generative package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from paintgym import generative  # noqa: E402
from paintgym.canvas.images import split_indices  # noqa: E402
from paintgym.generative import GAN, VAE  # noqa: E402
from paintgym.generative.data import adapt_images, as_float, load_dataset, random_stroke_canvases  # noqa: E402
from paintgym.generative.training import resolve_device  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = SHARED / "mnist-test" / "mnist_t10k.npz"
FEATURES = 64  # classifier feature dimension (small: FD needs a well-estimated covariance)


@dataclass
class Dataset:
    name: str
    train: torch.Tensor  # (N, 1, size, size) uint8
    test: torch.Tensor
    train_labels: torch.Tensor  # (N,) int64
    test_labels: torch.Tensor
    source: str  # what load_images reads
    background: float  # paper colour in [0, 1], for the random-stroke canvases


def labelled(name: str, size: int, device: torch.device) -> Dataset:
    """Images as ``(N, 1, size, size)`` uint8 and labels, split into train / test (every 10th image)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        source, labels = "digits", load_digits().target
    else:
        source, labels = str(MNIST), np.load(MNIST)["labels"]
    images, channels = load_dataset(source, size, channels=1, split="all", device=device)
    labels = torch.as_tensor(labels.astype(np.int64), device=device)
    train, test = split_indices(len(images), "train"), split_indices(len(images), "test")
    background = float(as_float(images[:, :, 0, 0]).median())  # corner pixels are paper
    return Dataset(name, images[train], images[test], labels[train], labels[test], source, background)


class Classifier(nn.Module):
    """A small CNN on ``(B, 1, size, size)`` in [0, 1]; :meth:`features` is its penultimate layer."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(64 * 16, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2.0 - 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(data: Dataset, steps: int, seed: int) -> tuple[Classifier, float]:
    """Train on the training split (with small random shifts); return it and its held-out accuracy."""
    torch.manual_seed(seed)
    model = Classifier(data.train.shape[-1]).to(data.train.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator(device=data.train.device).manual_seed(seed)
    for step in range(steps):
        index = torch.randint(len(data.train), (64,), generator=generator, device=data.train.device)
        x = as_float(data.train[index])
        shift = [int(s) for s in torch.randint(-2, 3, (2,), generator=torch.Generator().manual_seed(step))]
        x = torch.roll(x, shifts=shift, dims=(2, 3))  # one shift per batch: cheap augmentation
        loss = F.cross_entropy(model(x), data.train_labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(as_float(data.test)).argmax(1) == data.test_labels).float().mean().item()
    return model, accuracy


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to feature sets ``(N, D)`` and ``(M, D)``."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) = sum sqrt(eig(sqrt(A) B sqrt(A))): symmetric PSD throughout, stable for singular A or B
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def features(classifier: Classifier, images: torch.Tensor) -> np.ndarray:
    """Classifier features ``(N, FEATURES)`` of ``(N, 1, size, size)`` float images, in batches."""
    with torch.no_grad():
        chunks = [classifier.features(images[i:i + 512]) for i in range(0, len(images), 512)]
    return torch.cat(chunks).cpu().double().numpy()


def samples(model: GAN | VAE, count: int, seed: int) -> torch.Tensor:
    model.eval()
    return model.sample(count, torch.Generator().manual_seed(seed))


def bench_dataset(data: Dataset, args: argparse.Namespace, device: torch.device, out: Path) -> list[dict]:
    from paintgym.generative import train_gan, train_vae

    started = time.perf_counter()
    classifier, accuracy = train_classifier(data, args.classifier_steps, args.seed)
    print(f"[{data.name}] classifier: held-out accuracy {accuracy:.3f} ({time.perf_counter() - started:.0f}s)")
    real = features(classifier, as_float(data.test))
    size = data.train.shape[-1]
    floor = frechet_distance(real, features(classifier, as_float(data.train[: args.samples])))
    strokes = random_stroke_canvases(args.samples, size, strokes=8, seed=args.seed, background=data.background,
                                     device=device)
    random_fd = frechet_distance(real, features(classifier, adapt_images(strokes, size, 1)))

    rows = []
    for kind in ("gan", "vae"):
        common = dict(data=data.source, size=size, channels=1, width=args.width, batch_size=args.batch_size,
                      device=str(device), seed=args.seed, out=str(out / f"{data.name}-{kind}"), log_every=50,
                      sample_every=10**9, checkpoint_every=10**9)
        torch.manual_seed(args.seed)  # the trainers' initial weights: the step-0 baseline
        if kind == "gan":
            initial = GAN(size, 1, 100, args.width).to(device)
            run = train_gan.Args(steps=args.gan_steps, **common)
            result = train_gan.train(run, progress=not args.no_progress)
        else:
            initial = VAE(size, 1, 32, 1.0, args.width).to(device)
            run = train_vae.Args(steps=args.vae_steps, **common)
            result = train_vae.train(run, progress=not args.no_progress)
        trained = generative.load(Path(run.out) / "ckpt.pt", device=device, kind=kind)
        rows.append({
            "dataset": data.name, "model": kind.upper(), "steps": run.steps,
            "trained": frechet_distance(real, features(classifier, samples(trained, args.samples, args.seed + 1))),
            "step0": frechet_distance(real, features(classifier, samples(initial, args.samples, args.seed + 1))),
            "strokes": random_fd, "floor": floor, "images_per_s": result.images_per_second,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-steps", type=int, default=300, help="generator updates (5 critic updates each)")
    parser.add_argument("--vae-steps", type=int, default=1000, help="VAE optimiser steps")
    parser.add_argument("--classifier-steps", type=int, default=300, help="feature classifier training steps")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--width", type=int, default=16, help="model width (train-gan/train-vae --width)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--samples", type=int, default=1000, help="generated images per Fréchet distance")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--datasets", default="auto",
                        help="comma-separated: digits, mnist (../shared/data); auto = digits, plus mnist if present")
    parser.add_argument("--out", default="", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    names = (["digits"] + (["mnist"] if MNIST.exists() else [])) if args.datasets == "auto" else \
        [name.strip() for name in args.datasets.split(",")]
    if "mnist" in names and not MNIST.exists():
        parser.error(f"mnist needs {MNIST}")

    with tempfile.TemporaryDirectory(prefix="paintgym-bench-") as scratch:
        out = Path(args.out or scratch)
        rows = []
        for name in names:
            rows += bench_dataset(labelled(name, args.size, device), args, device, out)

    where = f"{device.type}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else
                                f", {torch.cuda.get_device_name(device)}")
    print(f"\nFréchet distance to held-out images in a self-trained classifier's {FEATURES}-d features "
          f"(lower is better); {args.size}x{args.size}, width {args.width}, batch {args.batch_size}, {where}")
    header = f"{'dataset':<8} {'model':<5} {'steps':>6} {'trained':>9} {'step 0':>9} {'strokes':>9} " \
             f"{'real':>9} {'train img/s':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['dataset']:<8} {r['model']:<5} {r['steps']:>6} {r['trained']:>9.2f} {r['step0']:>9.2f} "
              f"{r['strokes']:>9.2f} {r['floor']:>9.2f} {r['images_per_s']:>12.0f}")
    print("trained: the model's samples; step 0: the same model untrained; strokes: random-stroke canvases; "
          "real: training images (the floor)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
