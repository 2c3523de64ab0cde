"""``paintgym train-classifier``: train a small CNN classifier on labelled images (a reward model, a judge).

Each step minimises the cross-entropy of a batch of training images (randomly rotated, scaled and
shifted a little, so that painted digits need not sit exactly where the data's do) with Adam.
With ``--reject`` (the default) each batch also holds blank canvases of random colours and
random-stroke paintings labelled "none": the classifier learns that *nothing* is none of its
classes, so that the ``classifier`` reward cannot be won by painting nothing (see
:mod:`generative.classifier`). Held-out images (every 10th, the environment's ``test`` split) give
the accuracy that is logged.

    paintgym train-classifier --data digits --out runs/classifier
    paintgym train-classifier --data mnist_t10k.npz --out runs/mnist        # images + labels arrays
    paintgym train-classifier --data my_styles/ --size 64 --out runs/styles  # one subfolder per class
    paintgym train-classifier --steps 2000 --out runs/classifier --resume   # continue

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; reward ``classifier(checkpoint=OUT/ckpt.pt,
class=7)``), ``OUT/heldout.json`` (accuracy, per class, confusion matrix), ``OUT/confusion.png``,
``OUT/mistakes.png`` (held-out images it gets wrong), ``OUT/config.toml``, ``OUT/metrics.csv`` and
TensorBoard scalars in ``OUT/tb`` (:mod:`experiments.generative_runs`). The steps, the "none"
examples and the held-out scores are :mod:`generative.steps`'s.

Under ``torchrun`` each rank draws the whole global batch (labelled images, "none" examples, augmentations)
from the same streams and trains on its part of it, the gradients averaged in one ``all_reduce``: the
ranks hold the same weights, equal to one process's with the whole batch. Every rank evaluates the
held-out images (the same weights give the same scores); rank 0 alone writes.
"""

from __future__ import annotations

import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paintgym.canvas.collective import shard
from paintgym.canvas.export import atomic_write_bytes
from paintgym.envs.targets import split_indices
from paintgym.experiments.generative_runs import (
    GenerativeRun,
    GenerativeRunArgs,
    TrainingError,
    command_main,
)
from paintgym.experiments.rng import seed_everything
from paintgym.generative.checkpoint import CHECKPOINT_NAME
from paintgym.generative.classifier import Classifier
from paintgym.generative.data import as_float, load_labelled
from paintgym.generative.steps import augment, classifier_heldout, classifier_step, reject_examples

REJECT_POOL = 1024  # "none" examples drawn once per run: blank canvases and random-stroke paintings
REJECT_HELDOUT = 256  # "none" examples, drawn with another seed, for the held-out rejection rate
HELDOUT_NAME = "heldout.json"
CONFUSION_NAME = "confusion.png"


@dataclass
class Args(GenerativeRunArgs):
    data: str = "digits"
    """labelled images: digits, a .npz with 'images' and 'labels' arrays, or a folder with one subfolder per class"""
    steps: int = 600
    """optimiser steps to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """labelled images per batch (plus batch-size / classes "none" examples with --reject)"""
    lr: float = 2e-3
    """Adam learning rate"""
    width: int = 16
    """channels of the first convolution (doubling at each halving)"""
    out: str = "runs/classifier"
    """run folder: ckpt.pt, heldout.json, confusion.png, mistakes.png, config.toml, metrics.csv, tb/ (TensorBoard)"""
    features: int = 64
    """width of the hidden layer before the logits"""
    reject: bool = True
    """add a "none" class trained on blank canvases and random-stroke paintings"""
    augment: bool = True
    """random rotation (up to 10 degrees), scale (0.9-1.1) and shift (up to a tenth of the side) of training images"""
    eval_every: int = 200
    """steps between held-out evaluations"""


@dataclass
class Result:
    """What :func:`train` returns."""

    model: Classifier
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    images_per_second: float
    """labelled training images per second"""
    seconds: float
    """wall-clock time of this call's training loop (evaluations included)"""
    heldout: dict
    """the final held-out evaluation, as written to ``heldout.json`` (empty when interrupted)"""
    interrupted: bool = False
    """a signal stopped the run (after a checkpoint)"""

    @property
    def heldout_accuracy(self) -> float:
        """Fraction of held-out images whose most probable output is their class ("none" counts as wrong)."""
        return self.heldout["accuracy"]


# ---------------------------------------------------------------- evaluation


def plot_confusion(heldout: dict, path: Path, title: str = "") -> Path:
    """The confusion matrix of :func:`generative.steps.classifier_heldout` as a PNG (rows: true class, columns:
    prediction; row-normalised)."""
    counts = np.asarray(heldout["confusion"], dtype=np.float64)
    fractions = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    rows, columns = heldout["rows"], heldout["columns"]
    side = min(4.0 + 0.35 * len(columns), 16.0)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    shown = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row")
    ax.set_xticks(range(len(columns)), columns, rotation=90 if max(map(len, columns)) > 4 else 0)
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="predicted", ylabel="true class", title=title)
    if len(columns) <= 20:  # counts in the cells while they stay legible
        for i in range(len(rows)):
            for j in range(len(columns)):
                if counts[i, j]:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if fractions[i, j] > 0.5 else "black")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def write_heldout(out: Path, heldout: dict, step: int, seconds: float, shared: bool) -> dict:
    """Write ``heldout.json`` and ``confusion.png``; returns what the JSON holds."""
    record = {key: value for key, value in heldout.items() if key != "predictions"}
    record.update(step=step, train_seconds=round(seconds, 2), heldout_is_training_data=shared)
    atomic_write_bytes(out / HELDOUT_NAME, (json.dumps(record, indent=1) + "\n").encode())
    reject = "" if record["reject_accuracy"] is None else f", none {record['reject_accuracy']:.1%}"
    plot_confusion(record, out / CONFUSION_NAME,
                   f"held-out accuracy {record['accuracy']:.1%} ({record['count']} images{reject}), step {step}")
    return record


# ---------------------------------------------------------------- training


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a classifier; see the module docstring."""
    run = GenerativeRun(args, "classifier", "train-classifier", progress, shared_streams=True)
    device = run.device
    data = load_labelled(args.data, args.size, args.channels, split="all", device=device)
    train_index = torch.as_tensor(split_indices(len(data.labels), "train"), device=device)
    test_index = torch.as_tensor(split_indices(len(data.labels), "test"), device=device)
    shared = len(train_index) == len(data.labels)  # too few images to hold any out
    images, labels = data.images[train_index], data.labels[train_index]
    heldout_images, heldout_labels = data.images[test_index], data.labels[test_index]
    classes, channels = len(data.names), data.channels

    seed_everything(args.seed)
    model = run.prepare(Classifier(args.size, channels, classes, args.width, args.features, data.names,
                                   args.reject).to(device))
    optimizers = {"optimizer": torch.optim.Adam(model.parameters(), lr=args.lr)}
    rejects = heldout_rejects = None
    n_reject = 0
    if args.reject:
        rejects = reject_examples(REJECT_POOL, args.size, channels, args.seed + 2, device)
        heldout_rejects = reject_examples(REJECT_HELDOUT, args.size, channels, args.seed + 3, device)
        n_reject = max(1, round(args.batch_size / classes))  # about as many as one class has in a batch
    if run.resumed is not None and run.resumed["config"].get("names") != data.names:
        raise TrainingError(f"--resume: the run's classes {run.resumed['config'].get('names')} differ from those "
                            f"of --data {args.data} {data.names}")
    run.restore(model, optimizers)
    streams = run.streams

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of the global batch (all of it on one process): every rank draws the global
        batch's indices and augmentations from the same streams (``shared_streams``) and keeps its part."""
        index = torch.randint(len(labels), (args.batch_size,), generator=streams["data"], device=device)
        x, y = images[index], labels[index]
        if rejects is not None:
            pick = torch.randint(len(rejects), (n_reject,), generator=streams["data"], device=device)
            x = torch.cat([x, rejects[pick]])
            y = torch.cat([y, torch.full((n_reject,), classes, dtype=y.dtype, device=device)])
        draws = torch.rand(len(y), 4, generator=streams["noise"], device=device) if args.augment else None
        x, y = as_float(shard(x)), shard(y)
        return (augment(x, streams["noise"], shard(draws)) if draws is not None else x), y

    model.train()
    heldout: dict = {}
    record: dict = {}
    started = time.perf_counter()
    columns = ["loss/cross_entropy", "train/accuracy", "heldout/accuracy", "heldout/reject_accuracy"]
    with run.loop(columns, args.batch_size) as stop:
        while run.step < args.steps:
            stats = classifier_step(model, optimizers["optimizer"], *batch(), amp=run.amp,
                                    total=args.batch_size + n_reject)
            run.advance()
            last = run.step == args.steps
            evaluated = run.step % args.eval_every == 0 or last
            if evaluated:
                heldout = classifier_heldout(model, heldout_images, heldout_labels, heldout_rejects)
            if run.step % args.log_every == 0 or last:
                values = dict(stats)
                if evaluated:
                    values["heldout/accuracy"] = heldout["accuracy"]
                    if heldout["reject_accuracy"] is not None:
                        values["heldout/reject_accuracy"] = heldout["reject_accuracy"]
                row = run.write(values)
                held = {"heldout": f"{heldout['accuracy']:.3f}"} if heldout else {}
                run.bar.set_postfix(loss=f"{row['loss/cross_entropy']:.3f}", **held)
            if run.step % args.checkpoint_every == 0 or last or stop.requested:
                run.save(model, optimizers)
            if stop.requested:
                break
        seconds = time.perf_counter() - started
        if not stop.requested and run.world.is_main:  # rank 0 alone writes
            record = write_heldout(run.out, heldout, run.step, seconds, shared)
            wrong = (heldout["predictions"] != heldout_labels).nonzero().squeeze(1)[:64]
            if len(wrong):
                run.write_sheet(run.out / "mistakes.png", as_float(heldout_images[wrong]), "mistakes")
    return Result(model.eval(), run.step, run.history, run.images_per_second(), seconds, record, stop.requested)


def summary(args: Args, result: Result) -> str:
    """The line ``paintgym train-classifier`` ends with."""
    heldout = result.heldout
    reject = ("" if heldout["reject_accuracy"] is None
              else f"; blank and random-stroke canvases called none: {heldout['reject_accuracy']:.1%}")
    shared = " (too few images to hold any out: measured on the training images)" \
        if heldout["heldout_is_training_data"] else ""
    return (f"trained to step {result.step} in {result.seconds:.1f} s ({result.images_per_second:.0f} images/s); "
            f"held-out accuracy {heldout['accuracy']:.1%} of {heldout['count']} images{shared}{reject}; "
            f"checkpoint {args.out}/{CHECKPOINT_NAME}; confusion matrix {args.out}/{CONFUSION_NAME}")


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-classifier [options]``."""
    return command_main(argv, "train-classifier", Args, "classifier", __doc__, train, summary)


if __name__ == "__main__":
    sys.exit(main())
