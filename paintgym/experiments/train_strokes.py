"""``paintgym train-strokes``: train a stroke-sequence prior (sketch-rnn's decoder) on human pen drawings.

Each step is :func:`generative.sketch_rnn.train_step`: Adam on the paper's reconstruction loss of a
batch of training drawings (offsets dequantised), gradients clipped to norm 1, the learning rate
decaying by ``--lr-decay`` per step down to ``--min-lr`` (as Ha & Eck). Batches hold drawings of
similar length (each epoch shuffles the drawings, sorts pools of 20 batches by length and shuffles the
batches), so little of a batch is padding. Every ``--eval-every`` steps the ``valid`` split's negative
log-likelihood is logged; at the end the ``test`` split's, beside the Gaussian baseline's (offsets
from one Gaussian, pen states from their frequencies), is written and printed.

    paintgym train-strokes --data sheep --out runs/sheep                         # ../shared/data/sketch-strokes
    paintgym train-strokes --data kanji --hidden 512 --steps 20000 --out runs/kanji
    paintgym train-strokes --data sheep,omniglot --conditional --out runs/two    # one class per file
    paintgym train-strokes --data sheep --out runs/sheep --steps 4000 --resume   # continue

Writes ``OUT/ckpt.pt`` (``generative.load``; reward ``strokeprior(checkpoint=OUT)``; ``paintgym
sample-strokes OUT``), ``OUT/heldout.json`` (nats per drawing and per point, model and baseline),
``OUT/samples.png`` (drawings sampled at temperature 0.5), ``OUT/config.toml``, ``OUT/metrics.csv`` and
TensorBoard scalars in ``OUT/tb`` (the run layer of :mod:`experiments.generative_runs`).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paintgym.canvas.collective import shard
from paintgym.canvas.export import atomic_write_bytes, save_png
from paintgym.canvas.images import to_uint8
from paintgym.canvas.pen import render_pen
from paintgym.canvas.video import grid
from paintgym.experiments.generative_runs import (
    GenerativeRun,
    GenerativeRunArgs,
    TrainingError,
    command_main,
)
from paintgym.generative.checkpoint import CHECKPOINT_NAME
from paintgym.generative.pen_data import PenDataset, PenSplit, collate, drawing_statistics, load_pen_dataset
from paintgym.generative.sketch_rnn import CELLS, GaussianBaseline, SketchRNN, evaluate, to_stroke3, train_step

HELDOUT_NAME = "heldout.json"
SAMPLES_NAME = "samples.png"
POOL = 20  # batches per length-sorted pool


@dataclass
class Args(GenerativeRunArgs):
    data: str = "sheep"
    """stroke dataset: sheep, omniglot, kanji (in $PAINTGYM_SKETCH_DATA or ../shared/data/sketch-strokes), an .npz
    path, or several joined by commas"""
    steps: int = 2000
    """optimiser steps to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """drawings per batch"""
    hidden: int = 256
    """units of the recurrent cell"""
    mixtures: int = 20
    """Gaussians in the offset mixture"""
    cell: str = "lstm"
    """recurrent cell: lstm or gru"""
    conditional: bool = False
    """condition on the class (the dataset's labels, or which file of a comma-joined --data)"""
    embedding: int = 16
    """width of the class embedding (with --conditional)"""
    max_len: int = 250
    """training drawings with more points are left out (evaluation keeps every drawing)"""
    lr: float = 1e-3
    """Adam learning rate at step 0"""
    lr_decay: float = 0.9999
    """learning-rate factor per step"""
    min_lr: float = 1e-5
    """the learning rate decays no lower"""
    clip: float = 1.0
    """gradient norm clip"""
    out: str = "runs/strokes"
    """run folder: ckpt.pt, heldout.json, samples.png, config.toml, metrics.csv, tb/ (TensorBoard)"""
    eval_every: int = 500
    """steps between evaluations on the valid split"""

    def check(self) -> None:
        super().check()
        for name in ("hidden", "mixtures", "embedding", "max_len"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.cell not in CELLS:
            raise TrainingError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if not (0 < self.lr_decay <= 1 and self.min_lr >= 0 and self.clip > 0):
            raise TrainingError("--clip must be positive, --lr-decay in (0, 1], --min-lr at least 0")


@dataclass
class Result:
    """What :func:`train` returns."""

    model: SketchRNN
    step: int
    history: list[dict[str, float]]
    """logged statistics, one dict per logged step (``step`` included)"""
    seconds: float
    """wall-clock time of this call's training loop"""
    heldout: dict
    """the test split's evaluation, as written to ``heldout.json`` (empty when interrupted)"""
    interrupted: bool = False
    """a signal stopped the run (after a checkpoint)"""


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch (drawing indices): shuffled, sorted by length in pools of :data:`POOL` batches,
    split, and the batches shuffled. A function of ``(seed, epoch)`` only, so a resumed run repeats them."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches = []
    pool = POOL * batch_size
    for start in range(0, len(order), pool):
        part = order[start:start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part) - batch_size + 1, batch_size)]
    if not batches:  # fewer drawings than a batch: one batch of all of them
        batches = [order]
    return [batches[i] for i in rng.permutation(len(batches))]


class _Batches:
    """Training batch ``step`` (a pure function of the seed and the step: exact resume, no stream to save).

    Under ``torchrun`` every rank collates the whole global batch (the same padded length and dequantisation
    noise) and keeps its rows (:func:`canvas.collective.shard`): the ranks train on one process's batch."""

    def __init__(self, split: PenSplit, batch_size: int, seed: int, device: torch.device, labels: bool) -> None:
        self.split, self.batch_size, self.seed, self.device, self.labels = split, batch_size, seed, device, labels
        self._epoch, self._batches = -1, []
        self.per_epoch = len(epoch_batches(split.lengths, batch_size, seed, 0))

    def _index(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, epoch_batches(self.split.lengths, self.batch_size, self.seed, epoch)
        return self._batches[k]

    def size(self, step: int) -> int:
        """Drawings in the global batch ``step`` (over every rank)."""
        return len(self._index(step))

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This rank's part of batch ``step``: stroke-5 ``(b, T, 5)`` (``T`` the global batch's padded length),
        lengths ``(b,)``, labels ``(b,)`` or None."""
        index = self._index(step)
        noise = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        seq5, lengths = collate([self.split.drawing(int(i)) for i in index], noise, self.split.integer)
        labels = shard(torch.as_tensor(self.split.labels[index], device=self.device)) if self.labels else None
        return shard(seq5).to(self.device), shard(lengths).to(self.device), labels


def sample_sheet(model: SketchRNN, n: int = 16, temperature: float = 0.5, seed: int = 0, size: int = 96,
                 labels: torch.Tensor | None = None) -> np.ndarray:
    """``n`` drawings sampled from ``model``, painted (black on white) and tiled: ``(H, W, 3)`` uint8."""
    if model.num_classes and labels is None:
        labels = torch.arange(n) % model.num_classes
    seq5, lengths = model.sample(n, temperature, torch.Generator().manual_seed(seed), labels=labels)
    canvases = render_pen(to_stroke3(seq5, lengths), size, radius=0.012)
    return grid(to_uint8(canvases).numpy(), columns=int(np.ceil(np.sqrt(n))))


def _dataset(args: Args) -> tuple[PenDataset, PenSplit]:
    data = load_pen_dataset(args.data)
    train = data.splits["train"]
    keep = np.flatnonzero(train.lengths <= args.max_len)
    if not len(keep):
        raise TrainingError(f"no training drawing of {data.name} has at most --max-len {args.max_len} points")
    if len(keep) < len(train):
        train = train.subset(keep)
    if args.conditional and train.labels is None:
        raise TrainingError(f"--conditional needs classes: {data.name} has no train_labels; join several files "
                            "with commas (one class each) or train without --conditional")
    return data, train


def train(args: Args, progress: bool = True) -> Result:
    """Train (or, with ``args.resume``, continue training) a :class:`SketchRNN`; see the module docstring."""
    data, train_split = _dataset(args)
    run = GenerativeRun(args, SketchRNN.kind, "train-strokes", progress, shared_streams=True)
    if len(train_split) < run.world.size:
        raise TrainingError(f"{data.name} has {len(train_split)} training drawings, fewer than the {run.world.size} "
                            "ranks; run on fewer processes")
    device = run.device
    stats = drawing_statistics(train_split)
    baseline = GaussianBaseline.fit(train_split.rows, len(train_split), dequantised=train_split.integer)
    classes = (len(data.names) or int(train_split.labels.max()) + 1) if args.conditional else 0
    names = (data.names or None) if args.conditional else None

    torch.manual_seed(args.seed)
    model = SketchRNN(args.hidden, args.mixtures, args.cell, stats["scale"], classes, args.embedding, names,
                      stats["extent"], stats["step_length"], stats["simplify"], baseline.to_dict()).to(device)
    model = run.prepare(model)
    optimizers = {"optimizer": torch.optim.Adam(model.parameters(), lr=args.lr)}
    optimizer = optimizers["optimizer"]
    run.restore(model, optimizers)
    batches = _Batches(train_split, args.batch_size, args.seed, device, args.conditional)
    valid, test = data.splits["valid"], data.splits["test"]

    def heldout(split: PenSplit) -> dict:
        drawings = [split.drawing(i) for i in range(len(split))]
        return evaluate(model, drawings, split.labels if args.conditional else None, split.integer, seed=args.seed)

    columns = ["loss/reconstruction", "train/grad_norm", "train/lr", "valid/nll", "valid/nll_per_point",
               "valid/baseline_nll"]
    shown: dict[str, str] = {}
    started = time.perf_counter()
    with run.loop(columns, args.batch_size) as stop:
        while run.step < args.steps:
            for group in optimizer.param_groups:
                group["lr"] = max(args.min_lr, args.lr * args.lr_decay ** run.step)
            seq5, lengths, labels = batches(run.step)
            step_stats = train_step(model, optimizer, seq5, lengths, labels, args.clip, batches.size(run.step))
            run.advance()
            last = run.step == args.steps
            values: dict[str, float] = {}
            if (run.step % args.eval_every == 0 or last) and len(valid):
                result = heldout(valid)
                values.update({"valid/nll": result["nll"], "valid/nll_per_point": result["nll_per_point"],
                               "valid/baseline_nll": result["baseline_nll"]})
                shown["valid"] = f"{result['nll']:.1f}"
            if run.step % args.log_every == 0 or last or values:
                values.update({"loss/reconstruction": step_stats["loss"], "train/grad_norm": step_stats["grad_norm"],
                               "train/lr": optimizer.param_groups[0]["lr"]})
                run.write(values)
                run.bar.set_postfix(loss=f"{step_stats['loss']:.3f}", **shown)
            if run.step % args.checkpoint_every == 0 or last or stop.requested:
                run.save(model, optimizers)
            if stop.requested:
                break
        seconds = time.perf_counter() - started
        record: dict = {}
        if not stop.requested and run.world.is_main:  # rank 0 alone evaluates the test split and writes
            final = heldout(test if len(test) else valid)
            units = "nats, data units" + (" (integer offsets dequantised)" if test.integer else "")
            config = {key: value for key, value in model.config().items() if key != "baseline"}
            record = {**final, "split": "test" if len(test) else "valid", "step": run.step, "data": data.name,
                      "train_seconds": round(seconds, 2), "units": units, "config": config}
            atomic_write_bytes(run.out / HELDOUT_NAME, (json.dumps(record, indent=1) + "\n").encode())
            sheet = sample_sheet(model, seed=args.seed)
            save_png(run.out / SAMPLES_NAME, sheet)
            assert run.log is not None
            run.log.tb.add_image("samples", sheet, run.step, dataformats="HWC")
    return Result(model.eval(), run.step, run.history, seconds, record, stop.requested)


def summary(args: Args, result: Result) -> str:
    """The line ``paintgym train-strokes`` ends with."""
    h = result.heldout
    return (f"trained to step {result.step} in {result.seconds:.1f} s; held-out ({h['split']}, {h['drawings']} "
            f"drawings) NLL {h['nll']:.1f} nats per drawing ({h['nll_per_point']:.3f} per point), Gaussian "
            f"baseline {h['baseline_nll']:.1f} ({h['baseline_nll_per_point']:.3f}); checkpoint "
            f"{Path(args.out) / CHECKPOINT_NAME}")


def main(argv: list[str] | None = None) -> int:
    """``paintgym train-strokes [options]``."""
    return command_main(argv, "train-strokes", Args, SketchRNN.kind, __doc__, train, summary)


if __name__ == "__main__":
    sys.exit(main())
