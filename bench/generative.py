"""Quality and speed of the generative models: Fréchet distance to held-out images, and training throughput.

For each labelled dataset (scikit-learn's digits; MNIST from ``../shared/data`` when present) the
script trains

1. a small CNN classifier on the training split (labels only serve this classifier), whose
   penultimate layer is the feature space — a self-made "Inception" so that nothing is downloaded;
2. a WGAN-GP and a VAE with ``paintgym``'s own trainers (``experiments.train_gan`` / ``train_vae``);

and reports the Fréchet distance (FD) between the features of the held-out images (every 10th
image) and those of: the trained model's samples, the same model at step 0, random-stroke canvases
(what a random painting policy makes) and the training images themselves (the floor: two samples
of real images). Lower is better. Training throughput is real images per second through the
critic (GAN) or the encoder (VAE).

``--classifier PATH`` (a ``paintgym train-classifier`` run or its ``ckpt.pt``) measures in that classifier's
penultimate features (:func:`generative.frechet.classifier_features`) instead of the script's own small
classifier, so that distances compare across scripts and with the sweep report (``paintgym report
--classifier PATH``).

``--models ...,cgan`` adds a class-conditional GAN (``train-gan --conditional``, or ``--cgan PATH`` to
measure a trained one) with, per class ``k``: the FD of its class-``k`` samples to the real images of
class ``k``, the same for samples of the *other* classes (how much the class condition matters), the
floor (two disjoint halves of the real class-``k`` images: the samples are measured against one half,
in the same number as the other half), and the fraction of class-``k`` samples the classifier reads as
``k``; and a sample grid with one row per class (``--figures DIR``).

    python bench/generative.py                      # a few minutes on a CPU
    python bench/generative.py --gan-steps 2000 --vae-steps 3000 --width 32 --device cuda
    python bench/generative.py --models cgan --cgan runs/cgan --classifier runs/classifier --figures docs/images
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
from paintgym.envs.targets import split_indices  # noqa: E402
from paintgym.experiments.device import resolve_device  # noqa: E402
from paintgym.generative import GAN, VAE  # noqa: E402
from paintgym.generative.data import adapt_images, as_float, load_dataset, random_stroke_canvases  # noqa: E402
from paintgym.generative.frechet import (  # noqa: E402
    classifier_features,
    frechet_distance,
    load_feature_classifier,
)

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


def features(classifier: Classifier | generative.Classifier, images: torch.Tensor) -> np.ndarray:
    """Classifier features ``(N, D)`` of ``(N, 1, size, size)`` float images, in batches: the script's own
    classifier's, or a paintgym classifier's penultimate layer (``--classifier``; images adapted to it)."""
    if isinstance(classifier, generative.Classifier):
        return classifier_features(classifier, images).cpu().double().numpy()
    with torch.no_grad():
        chunks = [classifier.features(images[i:i + 512]) for i in range(0, len(images), 512)]
    return torch.cat(chunks).cpu().double().numpy()


def predict(classifier: Classifier | generative.Classifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's most probable output ``(N,)`` for ``(N, 1, size, size)`` float images."""
    with torch.no_grad():
        if isinstance(classifier, generative.Classifier):
            images = adapt_images(images, classifier.size, classifier.channels)
        return torch.cat([classifier(images[i:i + 512]).argmax(1) for i in range(0, len(images), 512)])


def samples(model: GAN | VAE, count: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``count`` samples ``(count, C, size, size)`` (of classes ``labels`` for a conditional GAN)."""
    model.eval()
    if labels is not None:
        return model.sample(count, torch.Generator().manual_seed(seed), labels)
    return model.sample(count, torch.Generator().manual_seed(seed))


def feature_classifier(data: Dataset, args: argparse.Namespace,
                       device: torch.device) -> Classifier | generative.Classifier:
    """The classifier whose features the distances use: ``--classifier``'s, or the script's own, trained here."""
    started = time.perf_counter()
    if args.classifier:
        classifier = load_feature_classifier(args.classifier, device)
        what = f"{args.classifier} ({classifier.feature_dim}-d penultimate features)"
    else:
        classifier, _ = train_classifier(data, args.classifier_steps, args.seed)
        what = f"the script's own, {args.classifier_steps} steps ({FEATURES}-d features)"
    accuracy = (predict(classifier, as_float(data.test)) == data.test_labels).float().mean().item()
    print(f"[{data.name}] feature classifier: {what}; held-out accuracy {accuracy:.3f} "
          f"({time.perf_counter() - started:.0f}s)")
    return classifier


def per_class(model: GAN, classifier: Classifier | generative.Classifier, data: Dataset, seed: int) -> list[dict]:
    """Per-class measures of a conditional GAN (module docstring): the real images of each class (both splits)
    are shuffled and halved; ``fd`` is the FD of as many class-``k`` samples as a half to the first half,
    ``other`` that of samples of the other classes, ``floor`` that of the second half of the real images,
    ``accuracy`` the fraction of 500 class-``k`` samples the classifier reads as ``k``."""
    images, labels = torch.cat([data.train, data.test]), torch.cat([data.train_labels, data.test_labels])
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for k in range(model.num_classes):
        mine = images[(labels == k).nonzero().squeeze(1).cpu()[torch.randperm(int((labels == k).sum()),
                                                                           generator=generator)]]
        half = len(mine) // 2
        reference = features(classifier, as_float(mine[:half]))
        other = torch.tensor([c for c in range(model.num_classes) if c != k])[
            torch.randint(model.num_classes - 1, (half,), generator=generator)]
        drawn = samples(model, 500, seed + 10 + k, torch.full((500,), k))
        rows.append({"class": k, "count": half,
                     "fd": frechet_distance(reference, features(classifier, drawn[:half])),
                     "other": frechet_distance(reference, features(classifier, samples(model, half, seed + 100 + k,
                                                                                        other))),
                     "floor": frechet_distance(reference, features(classifier, as_float(mine[half:2 * half]))),
                     "accuracy": (predict(classifier, drawn) == k).float().mean().item()})
    return rows


def class_grid(model: GAN, path: Path, columns: int = 10, seed: int = 0) -> Path:
    """A PNG of samples, one row per class (``columns`` each), enlarged to 64-pixel tiles."""
    from paintgym.canvas.export import save_png
    from paintgym.experiments.generative_runs import image_sheet

    labels = torch.arange(model.num_classes).repeat_interleave(columns)
    return save_png(path, image_sheet(samples(model, len(labels), seed, labels), columns))


def bench_dataset(data: Dataset, args: argparse.Namespace, device: torch.device, out: Path) -> tuple[list[dict],
                                                                                                     list[dict]]:
    """The table's rows for one dataset, and the conditional GAN's per-class rows (empty without ``cgan``)."""
    from paintgym.experiments import train_gan, train_vae

    classifier = feature_classifier(data, args, device)
    real = features(classifier, as_float(data.test))
    size = data.train.shape[-1]
    floor = frechet_distance(real, features(classifier, as_float(data.train[: args.samples])))
    strokes = random_stroke_canvases(args.samples, size, strokes=8, seed=args.seed, background=data.background,
                                     device=device)
    random_fd = frechet_distance(real, features(classifier, adapt_images(strokes, size, 1)))

    rows, classes = [], []
    for kind in args.models.split(","):
        common = dict(data=data.source, size=size, channels=1, width=args.width, batch_size=args.batch_size,
                      device=str(device), seed=args.seed, out=str(out / f"{data.name}-{kind}"), log_every=50,
                      sample_every=10**9, checkpoint_every=10**9)
        torch.manual_seed(args.seed)  # the trainers' initial weights: the step-0 baseline
        speed = float("nan")
        if kind == "gan":
            initial = GAN(size, 1, 100, args.width).to(device)
            run = train_gan.Args(steps=args.gan_steps, **common)
            speed = train_gan.train(run, progress=not args.no_progress).images_per_second
            trained, steps = generative.load(Path(run.out) / "ckpt.pt", device=device, kind="gan"), run.steps
        elif kind == "cgan":
            if args.cgan:
                trained = generative.load(args.cgan, device=device, kind="gan")
                steps = generative.read_checkpoint(args.cgan, "gan")["step"]
                if not trained.num_classes:
                    raise SystemExit(f"--cgan {args.cgan} is not a conditional GAN (train it with --conditional)")
            else:
                run = train_gan.Args(steps=args.cgan_steps, conditional=True, **common)
                speed = train_gan.train(run, progress=not args.no_progress).images_per_second
                trained, steps = generative.load(Path(run.out) / "ckpt.pt", device=device, kind="gan"), run.steps
            torch.manual_seed(args.seed)
            initial = GAN(trained.size, trained.channels, trained.latent_dim, trained.width,
                          num_classes=trained.num_classes, arch=trained.arch).to(device)
            classes = per_class(trained, classifier, data, args.seed)
            if args.figures:
                grid_path = class_grid(trained, Path(args.figures) / f"cgan_{data.name}_classes.png", seed=args.seed)
                print(f"[{data.name}] per-class sample grid: {grid_path}")
        elif kind == "vae":
            initial = VAE(size, 1, 32, 1.0, args.width).to(device)
            run = train_vae.Args(steps=args.vae_steps, **common)
            speed = train_vae.train(run, progress=not args.no_progress).images_per_second
            trained, steps = generative.load(Path(run.out) / "ckpt.pt", device=device, kind="vae"), run.steps
        else:
            raise SystemExit(f"--models: unknown model {kind!r}; choose from gan, vae, cgan")
        rows.append({
            "dataset": data.name, "model": kind.upper(), "steps": steps,
            "trained": frechet_distance(real, features(classifier, samples(trained, args.samples, args.seed + 1))),
            "step0": frechet_distance(real, features(classifier, samples(initial, args.samples, args.seed + 1))),
            "strokes": random_fd, "floor": floor, "images_per_s": speed,
        })
    return rows, classes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gan,vae", help="comma-separated: gan, vae, cgan (class-conditional)")
    parser.add_argument("--gan-steps", type=int, default=300, help="generator updates (5 critic updates each)")
    parser.add_argument("--cgan-steps", type=int, default=300, help="conditional generator updates")
    parser.add_argument("--cgan", default="", help="measure this trained conditional GAN instead of training one")
    parser.add_argument("--vae-steps", type=int, default=1000, help="VAE optimiser steps")
    parser.add_argument("--classifier", default="",
                        help="paintgym train-classifier run or ckpt.pt whose penultimate features the distances use "
                             "(default: a small classifier trained here)")
    parser.add_argument("--classifier-steps", type=int, default=300, help="the script's own classifier's steps")
    parser.add_argument("--figures", default="", help="folder for the conditional GAN's per-class sample grid")
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
        rows, classes = [], {}
        for name in names:
            found, classes[name] = bench_dataset(labelled(name, args.size, device), args, device, out)
            rows += found

    where = f"{device.type}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else
                                f", {torch.cuda.get_device_name(device)}")
    space = f"{args.classifier}'s penultimate features" if args.classifier else \
        f"a self-trained classifier's {FEATURES}-d features"
    print(f"\nFréchet distance to held-out images in {space} "
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
    for name, found in classes.items():
        if not found:
            continue
        print(f"\n[{name}] conditional GAN per class: FD of class-k samples to real class-k images (half of them), "
              "of other classes' samples, of the other half of the real images (the floor); samples read as k")
        print("| class | images | FD class k | FD other classes | FD real (floor) | read as k |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in found:
            print(f"| {r['class']} | {r['count']} | {r['fd']:.1f} | {r['other']:.1f} | {r['floor']:.1f} | "
                  f"{r['accuracy']:.0%} |")
        mean = {key: float(np.mean([r[key] for r in found])) for key in ("fd", "other", "floor", "accuracy")}
        print(f"| mean | | {mean['fd']:.1f} | {mean['other']:.1f} | {mean['floor']:.1f} | {mean['accuracy']:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
