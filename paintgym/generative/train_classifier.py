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
    paintgym train-classifier --data digits --steps 2000 --out runs/classifier --resume   # continue

Writes ``OUT/ckpt.pt`` (load with ``generative.load``; reward ``classifier(checkpoint=OUT/ckpt.pt,
class=7)``), ``OUT/heldout.json`` (accuracy, per class, confusion matrix), ``OUT/confusion.png``,
``OUT/mistakes.png`` (held-out images it gets wrong) and TensorBoard scalars in ``OUT/tb``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from paintgym.canvas.export import atomic_write_bytes
from paintgym.canvas.images import DatasetError, split_indices
from paintgym.canvas.render import render
from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from paintgym.generative.classifier import REJECT_NAME, Classifier
from paintgym.generative.data import adapt_images, as_float, load_labelled
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

EVAL_BATCH = 512  # held-out images per evaluation forward pass
REJECT_POOL = 1024  # "none" examples drawn once per run: blank canvases and random-stroke paintings
REJECT_HELDOUT = 256  # "none" examples, drawn with another seed, for the held-out rejection rate
HELDOUT_NAME = "heldout.json"
CONFUSION_NAME = "confusion.png"


@dataclass
class Args:
    data: str = "digits"
    """labelled images: digits, a .npz with 'images' and 'labels' arrays, or a folder with one subfolder per class"""
    size: int = 32
    """image side the model works at: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (RGB); default: 1 if every training image is grey, else 3"""
    steps: int = 600
    """optimiser steps to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """labelled images per batch (plus batch-size / classes "none" examples with --reject)"""
    lr: float = 2e-3
    """Adam learning rate"""
    width: int = 16
    """channels of the first convolution (doubling at each halving)"""
    features: int = 64
    """width of the hidden layer before the logits"""
    reject: bool = True
    """add a "none" class trained on blank canvases and random-stroke paintings"""
    augment: bool = True
    """random rotation (up to 10 degrees), scale (0.9-1.1) and shift (up to a tenth of the side) of training images"""
    device: str = "auto"
    """auto (CUDA if available), cpu or cuda"""
    amp: bool = True
    """bfloat16 mixed precision on CUDA (the CPU always trains in float32)"""
    seed: int = 0
    """random seed: the same seed and options give the same run"""
    out: str = "runs/classifier"
    """run folder: ckpt.pt, heldout.json, confusion.png, mistakes.png, tb/ (TensorBoard)"""
    resume: bool = False
    """continue the run in --out from its checkpoint, exactly"""
    log_every: int = 10
    """steps between TensorBoard scalars and progress-bar updates"""
    eval_every: int = 200
    """steps between held-out evaluations"""
    checkpoint_every: int = 500
    """steps between checkpoints (one is also written at the end and on Ctrl-C)"""


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
    """the final held-out evaluation, as written to ``heldout.json``"""

    @property
    def heldout_accuracy(self) -> float:
        """Fraction of held-out images whose most probable output is their class ("none" counts as wrong)."""
        return self.heldout["accuracy"]


# ---------------------------------------------------------------- data


def reject_examples(count: int, size: int, channels: int, seed: int,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` examples of "none" ``(count, channels, size, size)`` uint8: what is not a painting of anything.

    Half are blank canvases (white, black, then random flat colours), half random-stroke paintings
    (1 to 16 uniformly random strokes on white or black) as a random painting policy makes.
    """
    generator = torch.Generator().manual_seed(seed)
    blanks = count // 2
    colours = torch.rand(blanks, 3, 1, 1, generator=generator)
    colours[0::4], colours[1::4] = 1.0, 0.0  # the usual paper colours, often
    parts = [colours.expand(-1, -1, size, size)]
    groups = (1, 2, 4, 8, 16)
    remaining = count - blanks
    for i, strokes in enumerate(groups):
        n = remaining // len(groups) + (1 if i < remaining % len(groups) else 0)
        if n == 0:
            continue
        params = torch.rand(n, strokes, 13, generator=generator)
        background = float(torch.randint(0, 2, (), generator=generator))  # white or black paper
        parts.append(render(params, size=size, background=background))
    images = adapt_images(torch.cat(parts), size, channels)
    return images.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).to(device)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotate (up to 10 degrees), scale (0.9-1.1) and shift (up to 10% of the side) ``(B, C, H, W)``
    float images, each its own way; edges are extended (``border`` padding), so paper stays paper."""
    b, device = images.shape[0], images.device
    u = torch.rand(b, 4, generator=generator, device=generator.device).to(device) * 2.0 - 1.0
    angle, scale, shift = u[:, 0] * math.radians(10.0), 1.0 + 0.1 * u[:, 1], 0.2 * u[:, 2:]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ---------------------------------------------------------------- evaluation


def evaluate(model: Classifier, images: torch.Tensor, labels: torch.Tensor,
             rejects: torch.Tensor | None = None) -> dict:
    """Held-out scores of ``model``.

    :param images: ``(N, C, size, size)`` uint8 held-out images; ``labels`` ``(N,)`` their classes.
    :param rejects: ``(M, C, size, size)`` uint8 "none" examples, or None.
    :return: ``accuracy`` (argmax over every output), ``per_class`` accuracy by class name,
        ``reject_accuracy`` (fraction of ``rejects`` called "none"; None without), ``confusion``
        (rows: true classes then "none" if ``rejects``; columns: :attr:`Classifier.output_names`),
        ``rows``/``columns`` (names), ``count``, and ``predictions`` ``(N,)`` (a tensor, not in the JSON).
    """
    def predict(batch_source: torch.Tensor) -> torch.Tensor:
        with evaluating(model):
            return torch.cat([model(as_float(batch_source[i:i + EVAL_BATCH])).argmax(1)
                              for i in range(0, len(batch_source), EVAL_BATCH)])

    predictions = predict(images)
    outputs = model.outputs
    confusion = torch.zeros(model.classes + (1 if rejects is not None else 0), outputs, dtype=torch.int64)
    pairs = (labels.cpu() * outputs + predictions.cpu()).bincount(minlength=model.classes * outputs)
    confusion[:model.classes] = pairs.view(model.classes, outputs)
    reject_accuracy = None
    if rejects is not None:
        called = predict(rejects).cpu().bincount(minlength=outputs)
        confusion[-1] = called
        reject_accuracy = float(called[-1]) / len(rejects) if model.reject else 0.0
    per_row = confusion[:model.classes].sum(1).clamp(min=1)
    diagonal = confusion[:model.classes].diagonal()
    return {"accuracy": float(diagonal.sum()) / max(len(labels), 1),
            "per_class": {name: float(d) / float(n) for name, d, n in zip(model.names, diagonal, per_row,
                                                                          strict=True)},
            "reject_accuracy": reject_accuracy, "count": len(labels),
            "rows": model.names + ([REJECT_NAME] if rejects is not None else []), "columns": model.output_names,
            "confusion": confusion.tolist(), "predictions": predictions}


def plot_confusion(heldout: dict, path: Path, title: str = "") -> Path:
    """The confusion matrix of :func:`evaluate` as a PNG (rows: true class, columns: prediction; row-normalised)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
    check_common(args)
    device = resolve_device(args.device)
    out, resumed = prepare_run(args, "classifier")
    data = load_labelled(args.data, args.size, args.channels, split="all", device=device)
    train_index = torch.as_tensor(split_indices(len(data.labels), "train"), device=device)
    test_index = torch.as_tensor(split_indices(len(data.labels), "test"), device=device)
    shared = len(train_index) == len(data.labels)  # too few images to hold any out
    images, labels = data.images[train_index], data.labels[train_index]
    heldout_images, heldout_labels = data.images[test_index], data.labels[test_index]
    classes, channels = len(data.names), data.channels
    amp = use_amp(device, args.amp)

    torch.manual_seed(args.seed)
    model = Classifier(args.size, channels, classes, args.width, args.features, data.names, args.reject).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    streams = {"data": make_generator(device, args.seed), "noise": make_generator(device, args.seed + 1)}
    rejects = heldout_rejects = None
    n_reject = 0
    if args.reject:
        rejects = reject_examples(REJECT_POOL, args.size, channels, args.seed + 2, device)
        heldout_rejects = reject_examples(REJECT_HELDOUT, args.size, channels, args.seed + 3, device)
        n_reject = max(1, round(args.batch_size / classes))  # about as many as one class has in a batch
    step = 0
    if resumed is not None:
        if resumed["config"].get("names") != data.names:
            raise TrainingError(f"--resume: the run's classes {resumed['config'].get('names')} differ from those "
                                f"of --data {args.data} {data.names}")
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["train"]["optimizer"])
        step = resumed["step"]
        set_rng_state(resumed["train"]["rng"], streams, args.seed, step)

    def checkpoint(at: int) -> int:
        train_state = {"args": dataclasses.asdict(args), "optimizer": optimizer.state_dict(),
                       "rng": rng_state(streams)}
        save_checkpoint(out / CHECKPOINT_NAME, model, at, train_state)
        return at

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(len(labels), (args.batch_size,), generator=streams["data"], device=device)
        x, y = images[index], labels[index]
        if rejects is not None:
            pick = torch.randint(len(rejects), (n_reject,), generator=streams["data"], device=device)
            x = torch.cat([x, rejects[pick]])
            y = torch.cat([y, torch.full((n_reject,), classes, dtype=y.dtype, device=device)])
        x = as_float(x)
        return (augment(x, streams["noise"]) if args.augment else x), y

    log = RunLog(out, step, resumed is not None, args.steps, "train-classifier", args.batch_size, progress)
    model.train()
    heldout: dict = {}
    started = time.perf_counter()
    with checkpoint_on_interrupt(log, lambda: checkpoint(step), out / CHECKPOINT_NAME):
        while step < args.steps:
            x, y = batch()
            with autocast(device, amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            log.bar.update(1)

            evaluated = step % args.eval_every == 0 or step == args.steps
            if evaluated:
                heldout = evaluate(model, heldout_images, heldout_labels, heldout_rejects)
            if step % args.log_every == 0 or step == args.steps:
                values = {"loss/cross_entropy": loss.item(),
                          "train/accuracy": (logits.detach().argmax(1) == y).float().mean().item()}
                if evaluated:
                    values["heldout/accuracy"] = heldout["accuracy"]
                    if heldout["reject_accuracy"] is not None:
                        values["heldout/reject_accuracy"] = heldout["reject_accuracy"]
                shown = {"heldout": f"{heldout['accuracy']:.3f}"} if heldout else {}
                log.log(step, values, loss=f"{values['loss/cross_entropy']:.3f}", **shown)
            if step % args.checkpoint_every == 0 or step == args.steps:
                checkpoint(step)
        seconds = time.perf_counter() - started
        record = write_heldout(out, heldout, step, seconds, shared)
        wrong = (heldout["predictions"] != heldout_labels).nonzero().squeeze(1)[:64]
        if len(wrong):
            write_sheet(out / "mistakes.png", as_float(heldout_images[wrong]), log.writer, "mistakes", step)
    return Result(model.eval(), step, log.history, log.images_per_second(step), seconds, record)


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-classifier [options]``."""
    args = parse_args(Args, argv, "paintgym train-classifier", __doc__.splitlines()[0].replace("``", ""))
    try:
        result = train(args)
    except (DatasetError, CheckpointError, TrainingError) as err:
        print(f"paintgym train-classifier: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    heldout = result.heldout
    reject = ("" if heldout["reject_accuracy"] is None
              else f"; blank and random-stroke canvases called none: {heldout['reject_accuracy']:.1%}")
    shared = " (too few images to hold any out: measured on the training images)" \
        if heldout["heldout_is_training_data"] else ""
    print(f"trained to step {result.step} in {result.seconds:.1f} s ({result.images_per_second:.0f} images/s); "
          f"held-out accuracy {heldout['accuracy']:.1%} of {heldout['count']} images{shared}{reject}; "
          f"checkpoint {args.out}/{CHECKPOINT_NAME}; confusion matrix {args.out}/{CONFUSION_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
