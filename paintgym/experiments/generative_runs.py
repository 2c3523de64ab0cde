"""What the generative trainers (``train-gan``, ``train-vae``, ``train-classifier``, ``train-strokes``,
``train-cyclegan``) share: their common options, and the run layer around their training steps
(:mod:`generative.steps`).

A run folder (``--out``) holds::

    ckpt.pt          the latest checkpoint (:mod:`generative.checkpoint`'s format), written atomically:
                     the model, and the optimisers, the step, the options and every random stream
    config.toml      the resolved options (``--config OUT/config.toml`` reads them back)
    metrics.csv, tb/ the logged statistics (:mod:`experiments.logs`), TensorBoard images too
    samples/ ...     the trainer's pictures

Options come from the defaults < the checkpoint's (``--resume``) < a TOML file (``--config``) < the
flags given. ``--resume`` restores the model, the optimisers, the step and every random stream from
``ckpt.pt``, so that a resumed run computes exactly what an uninterrupted one would. Ctrl-C (or
SIGTERM) finishes the step, writes a checkpoint and stops (:mod:`experiments.signals`).
``--init-from RUN`` instead starts a new run from another run's model weights, ``--freeze`` keeping
part of them fixed (:mod:`experiments.transfer`).

Under ``torchrun`` every trainer runs data-parallel (:class:`GenerativeRun`): each rank computes on its
part of ``--batch-size``, the gradients are averaged in one ``all_reduce`` per update, rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from paintgym.canvas.export import atomic_write_bytes, save_png
from paintgym.canvas.images import to_uint8
from paintgym.canvas.video import grid
from paintgym.experiments import distributed
from paintgym.experiments.config import ConfigError, dump_toml, load_toml, resolve_options
from paintgym.experiments.device import use_amp
from paintgym.experiments.flags import parse_flags, peek
from paintgym.experiments.logs import MetricsLog, progress_bar
from paintgym.experiments.rng import make_generator, rng_state, set_rng_state
from paintgym.experiments.run_dir import check_new_run
from paintgym.experiments.signals import StopRequest, stop_on_signals
from paintgym.experiments.transfer import (
    Transfer,
    describe_checkpoint,
    drop_frozen_,
    freeze_,
    freeze_names_,
    frozen_names,
    load_matching_,
    part_prefixes,
)
from paintgym.experiments.transfer import (
    check_options as check_transfer,
)
from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint, save_checkpoint
from paintgym.generative.data import to_rgb
from paintgym.generative.models import CHANNELS, SIZES

RESUME_FREE = ("steps", "out", "resume", "device", "sample_every", "eval_every", "checkpoint_every", "log_every",
               "amp")
"""Options that may change when a run is resumed; every other option must match the checkpoint's."""


class TrainingError(ConfigError):
    """Bad training options or run folder; the message says what to change."""


@dataclass
class GenerativeRunArgs:
    """The options every generative trainer has (each trainer's ``Args`` adds its own, and may change a
    default or a docstring by declaring the field again)."""

    data: str = "digits"
    """training images: digits, faces, photos, a folder of images or a .npy/.npz array"""
    size: int = 32
    """image side the model works at: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (RGB); default: 1 if every training image is grey, else 3"""
    steps: int = 1000
    """optimiser steps to train for (in total, counting those before a --resume)"""
    batch_size: int = 64
    """images per batch"""
    lr: float = 1e-3
    """Adam learning rate"""
    width: int = 32
    """channels of the first convolution (doubling at each halving)"""
    device: str = "auto"
    """auto (CUDA if available), cpu or cuda"""
    amp: bool = True
    """bfloat16 mixed precision on CUDA (the CPU always trains in float32)"""
    seed: int = 0
    """random seed: the same seed and options give the same run"""
    out: str = "runs/generative"
    """run folder: ckpt.pt, config.toml, metrics.csv, tb/ (TensorBoard)"""
    resume: bool = False
    """continue the run in --out from its checkpoint, exactly"""
    init_from: str | None = None
    """start from the model weights of this run folder or ckpt.pt (same kind of model; layers whose shapes differ are
    re-initialised and listed; fresh optimisers, step 0)"""
    freeze: str | None = None
    """with --init-from: do not train the copied encoder (the convolutions that read images) or trunk (all but the
    output layers)"""
    log_every: int = 10
    """steps between logged statistics (metrics.csv, TensorBoard) and progress-bar updates"""
    checkpoint_every: int = 500
    """steps between checkpoints (one is also written at the end and on Ctrl-C)"""

    def check(self) -> None:
        """Raise :class:`TrainingError` for option values that cannot work, saying what to change."""
        if self.size not in SIZES:
            raise TrainingError(f"--size {self.size} is not supported; choose one of {', '.join(map(str, SIZES))}")
        if self.channels is not None and self.channels not in CHANNELS:
            raise TrainingError(f"--channels must be 1 or 3 (or omitted to follow the data), got {self.channels}")
        for name in ("steps", "batch_size", "sample_every", "eval_every", "checkpoint_every", "log_every", "width",
                     "latent_dim", "features"):
            if hasattr(self, name) and getattr(self, name) < 1:  # the options this trainer has
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise TrainingError(f"--lr must be positive, got {self.lr}")
        try:
            check_transfer(self.init_from, self.freeze)
        except ValueError as err:
            raise TrainingError(str(err)) from None


# ---------------------------------------------------------------- options


def description(doc: str) -> str:
    """``--help``'s text from a trainer's module docstring: its first line and its indented examples."""
    lines = doc.replace("``", "").splitlines()
    examples = [line.strip() for line in lines if line.startswith("    paintgym ")]
    return lines[0] + ("\n\nexamples:\n  " + "\n  ".join(examples) if examples else "")


def parse_args(cls: type, argv: list[str], prog: str, description: str, kind: str) -> Any:
    """The options of a generative trainer for a command line: defaults < the checkpoint's (``--resume``:
    ``OUT/ckpt.pt``) < ``--config FILE`` < flags.

    :param cls: the trainer's ``Args`` (a :class:`GenerativeRunArgs`).
    :param kind: the model kind its checkpoints hold (``gan``, ``vae``, ``classifier``).
    :raises ConfigError: an unknown option or a wrong type in the config file.
    :raises CheckpointError: ``--resume`` finds a checkpoint of another kind, or an unreadable one.
    """
    known = peek(argv, {"--config": {}, "--out": {}, "--resume": {"action": argparse.BooleanOptionalAction},
                        "--init-from": {}})
    if known.resume and known.init_from:
        raise TrainingError("--init-from starts a new run from another run's weights, --resume continues the run in "
                            "--out: give one of them")
    from_file = load_toml(known.config) if known.config else {}
    out = known.out or from_file.get("out") or cls.out
    resume = known.resume if known.resume is not None else from_file.get("resume", False)
    layers: list[tuple[str, dict[str, Any]]] = []
    ckpt = Path(out).expanduser() / CHECKPOINT_NAME
    if resume is True and ckpt.is_file():
        saved = read_checkpoint(ckpt, kind).get("train", {}).get("args", {})
        names = {field.name for field in dataclasses.fields(cls)} - {"out", "resume"}
        layers.append((f"checkpoint {ckpt}", {key: value for key, value in saved.items() if key in names}))
    if known.config:
        layers.append((f"config file {known.config}", from_file))
    (values,) = resolve_options([cls], layers)
    (args,) = parse_flags([(kind, cls(**values))], argv, prog, description)
    return args


def prepare_run(args: GenerativeRunArgs, kind: str) -> tuple[Path, dict[str, Any] | None]:
    """The run folder and, with ``--resume``, the checkpoint to continue (checked against ``args``).

    :raises TrainingError: when ``--resume`` finds no checkpoint or different options.
    :raises FileExistsError: when a new run would overwrite an existing one.
    """
    out = Path(args.out).expanduser()
    ckpt = out / CHECKPOINT_NAME
    if not args.resume:
        check_new_run(out, CHECKPOINT_NAME, "--resume", "--out")
        return out, None
    if not ckpt.exists():
        raise TrainingError(f"--resume: no checkpoint at {ckpt}; start the run without --resume")
    try:
        payload = read_checkpoint(ckpt, kind)
    except CheckpointError as err:
        raise TrainingError(f"--resume: {err}") from err
    if "train" not in payload:
        raise TrainingError(f"--resume: {ckpt} holds a model without training state; it cannot be resumed")
    saved = payload["train"]["args"]
    now = dataclasses.asdict(args)
    changed = {k: (saved.get(k), v) for k, v in now.items() if k not in RESUME_FREE and saved.get(k) != v}
    if changed:
        listed = ", ".join(f"--{k.replace('_', '-')} {new!r} (run has {old!r})" for k, (old, new) in changed.items())
        raise TrainingError(f"--resume: options differ from the run being resumed: {listed}; "
                            "resume with the same options or start a new --out")
    if payload["step"] >= args.steps:
        raise TrainingError(f"--resume: the run is already at step {payload['step']} of --steps {args.steps}; "
                            "raise --steps to train further")
    return out, payload


# ---------------------------------------------------------------- the run


class GenerativeRun:
    """The run layer around one generative trainer's loop: device, mixed precision, run folder, resume,
    random streams, checkpoints, ``metrics.csv`` + TensorBoard, progress bar, signals.

    :param args: the trainer's options (checked here).
    :param kind: the model kind (``gan``, ``vae``, ``classifier``), for checkpoints.
    :param command: the subcommand, for ``config.toml``'s header and the progress bar.
    :param progress: show the progress bar.
    :param shared_streams: under ``torchrun``, every rank keeps the one-process random streams: the trainer
        draws each global batch (its indices, augmentations, noise) on every rank and keeps its part
        (:func:`canvas.collective.shard`), so the run trains on exactly what one process trains on and
        ``--resume`` continues exactly at any world size (``train-classifier``, ``train-strokes``,
        ``train-cyclegan``). Otherwise ranks other than 0 reseed their streams and draw their own
        ``batch_size / world size`` (``train-gan``, ``train-vae``).

    Data-parallel under ``torchrun`` (every generative trainer): each rank computes on its part of
    ``--batch-size`` (which must divide by the world size), the steps average the gradients in one
    ``all_reduce`` per update, every rank holds the same weights, and rank 0 alone writes.
    """

    def __init__(self, args: GenerativeRunArgs, kind: str, command: str, progress: bool = True,
                 shared_streams: bool = False) -> None:
        args.check()
        self.args, self.kind, self.command, self.progress = args, kind, command, progress
        self.world = distributed.world()
        self.shared_streams = shared_streams
        self.batch_size = distributed.local_count(args.batch_size, "batch_size", "--batch-size")  # this rank's
        self.device = distributed.rank_device(args.device)
        self.out, self.resumed = prepare_run(args, kind)
        self.amp = use_amp(self.device, args.amp)
        self.step = 0
        self.streams = {"data": make_generator(self.device, args.seed),
                        "noise": make_generator(self.device, args.seed + 1)}
        self._reseed_rank(0)
        self.log: MetricsLog | None = None
        self._stop: StopRequest | None = None
        self.transfer: Transfer | None = None
        """what ``--init-from`` copied, re-initialised and froze (None without it)"""

    def _reseed_rank(self, step: int) -> None:
        """Ranks other than 0 draw their own batches and noise (rank 0 keeps the one-process streams), unless
        the streams are shared."""
        for offset, stream in enumerate(self.streams.values()):
            if self.world.rank > 0 and not self.shared_streams:
                stream.manual_seed(self.args.seed + offset + self.world.rank * distributed.RANK_SEED_OFFSET
                                   + step * 104_729)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Under ``torchrun``: the model's batch norms synchronised over the ranks and rank 0's weights
        copied to every rank; without it, ``model`` as it is."""
        model = distributed.sync_batchnorm(model, self.device)
        distributed.broadcast_module_(model)
        return model

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def restore(self, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """With ``--resume``: load the model, the optimisers, the step and the random streams (and freeze what
        the run froze). With ``--init-from`` (:mod:`experiments.transfer`): copy the weights that fit, freeze
        ``--freeze``'s part, and take the frozen parameters out of the (fresh) optimisers."""
        if self.resumed is None:
            if self.args.init_from is not None:
                self.transfer = self._init_from(model)
                drop_frozen_(optimizers.values())
            return
        freeze_names_({"model": model}, self.resumed["train"].get("frozen", []))
        drop_frozen_(optimizers.values())
        model.load_state_dict(self.resumed["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(self.resumed["train"][name])
        self.step = int(self.resumed["step"])
        set_rng_state(self.resumed["train"]["rng"], self.streams, reseed=self.args.seed * 1_000_003 + self.step)
        self._reseed_rank(self.step)  # only rank 0's streams are in the checkpoint

    def _init_from(self, model: torch.nn.Module) -> Transfer:
        """``--init-from``: the weights that fit, ``--freeze``, and the log (rank 0 prints it)."""
        source = str(self.args.init_from)
        try:
            payload = read_checkpoint(source, self.kind)
        except CheckpointError as err:
            found = describe_checkpoint(source)
            if found is not None and not found.startswith(f"a {self.kind.upper()} "):
                raise TrainingError(f"--init-from {source} is {found}; paintgym {self.command} starts from a "
                                    f"{self.kind.upper()} checkpoint (written by paintgym {self.command})") from None
            raise TrainingError(f"--init-from: {err}") from None
        try:
            report = load_matching_({"model": model}, {"model": payload["model"]}, source)
            if self.args.freeze is not None:
                parts = model.freeze_parts() if hasattr(model, "freeze_parts") else {}
                prefixes = part_prefixes(parts, self.args.freeze, f"a {self.kind} model")
                freeze_({"model": model}, [f"model.{prefix}" for prefix in prefixes], report, self.args.freeze,
                        f"the {self.kind} model")
        except ValueError as err:
            raise TrainingError(str(err)) from None
        if self.world.is_main:
            print("\n".join(report.lines()), flush=True)
        return report

    def save(self, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
             extra: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint of the current step (rank 0 alone under ``torchrun``; ``extra``: more
        training state, e.g. history pools, read back from ``self.resumed["train"]``)."""
        if not self.world.is_main:
            return self.checkpoint_path
        train_state = {"args": dataclasses.asdict(self.args), **{name: opt.state_dict() for name, opt in
                                                                 optimizers.items()},
                       "rng": rng_state(self.streams), "frozen": frozen_names({"model": model}), **(extra or {})}
        return save_checkpoint(self.checkpoint_path, model, self.step, train_state)

    @contextmanager
    def loop(self, columns: list[str], images_per_step: int) -> Iterator[StopRequest]:
        """Open the logs (``config.toml``, ``metrics.csv``, TensorBoard, progress bar) around the training
        loop, with Ctrl-C / SIGTERM asking it to stop after the step it is in (the loop checks
        ``stop.requested``, saves and breaks); the logs are closed however the loop ends.

        :param columns: the statistics the loop logs (``metrics.csv``'s columns after ``step``).
        :param images_per_step: training images one step consumes (for ``perf/images_per_s``).
        """
        main = self.world.is_main
        if main:  # rank 0 alone writes
            self.out.mkdir(parents=True, exist_ok=True)
            record = {key: value for key, value in dataclasses.asdict(self.args).items()
                      if key not in ("out", "resume")}
            header = (f"paintgym {self.command}, resolved options ({datetime.now():%Y-%m-%d %H:%M:%S})\n"
                      f"rerun with: paintgym {self.command} --config {self.out / 'config.toml'} --out NEW_DIR")
            atomic_write_bytes(self.out / "config.toml", dump_toml(record, header).encode())
            self.log = MetricsLog(self.out, ["step", *columns, "perf/images_per_s"],
                                  self.step if self.resumed is not None else None)
        self.bar = progress_bar(self.args.steps, self.step, self.command, self.progress and main)
        self._images_per_step, self._started, self._start_step = images_per_step, time.perf_counter(), self.step
        try:
            with stop_on_signals("step") as stop:
                self._stop = stop
                yield stop
        finally:
            self.bar.close()
            if self.log is not None:
                self.log.close()

    def advance(self) -> None:
        """Count one finished training step (under ``torchrun``: every rank stops at the same step)."""
        self.step += 1
        self.bar.update(1)
        if self._stop is not None and self.world.size > 1:
            self._stop.requested = bool(distributed.all_reduce_max(float(self._stop.requested)))

    def images_per_second(self) -> float:
        """Training images per second since the loop started (over every rank)."""
        done = (self.step - self._start_step) * self._images_per_step
        return done / max(time.perf_counter() - self._started, 1e-9)

    def write(self, values: dict[str, float | torch.Tensor]) -> dict[str, float]:
        """Log ``values`` (tensors are read) and ``perf/images_per_s`` at the current step; returns the row."""
        row = distributed.average_metrics({key: float(value) for key, value in values.items()}, sums=())
        row["perf/images_per_s"] = self.images_per_second()
        if self.log is None:  # ranks other than 0
            return {"step": self.step, **row}
        return self.log.write(self.step, row)

    @property
    def history(self) -> list[dict[str, float]]:
        """The rows logged by this run (since it started or resumed), ``step`` included."""
        return self.log.history if self.log is not None else []

    def write_sheet(self, path: Path, images: torch.Tensor, tag: str, columns: int | None = None) -> Path:
        """Save an image sheet of ``images`` (:func:`image_sheet`) as PNG, and add it to TensorBoard."""
        if self.log is None:  # ranks other than 0
            return path
        sheet = image_sheet(images, columns)
        self.log.tb.add_image(tag, sheet, self.step, dataformats="HWC")
        return save_png(path, sheet)


def command_main(argv: list[str] | None, command: str, cls: type, kind: str, doc: str,
                 train: Callable[[Any], Any], summary: Callable[[Any, Any], str]) -> int:
    """The ``main`` of a generative trainer's subcommand: options (:func:`parse_args`), ``train(args)``
    (under ``torchrun`` in a process group, data-parallel: :class:`GenerativeRun`), and what it says and
    returns: one line and 2 for bad data, options, a checkpoint or a run folder; 130 after a signal
    (checkpoint kept); rank 0 prints ``summary(args, result)`` and returns 0.

    :param command: the subcommand, e.g. ``train-gan``; ``kind`` the model kind of its checkpoints.
    :param doc: the trainer's module docstring (``--help``'s text, :func:`description`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(cls, argv, f"paintgym {command}", description(doc), kind)
        with distributed.process_group(args.device):  # under torchrun: data-parallel, rank 0 writes
            result = train(args)
    except (ValueError, FileExistsError) as err:  # bad data, options, checkpoint or run folder
        print(f"paintgym {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, keep the last checkpoint
        print(f"paintgym {command}: interrupted; the last checkpoint written (if any) is kept", file=sys.stderr)
        return 130
    if not distributed.world().is_main:  # rank 0 speaks for the run
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(interrupted_message(result.step, f"{args.out}/{CHECKPOINT_NAME}"), file=sys.stderr)
        return 130
    print(summary(args, result))
    return 0


def interrupted_message(step: int, path: Path | str) -> str:
    """What a trainer says when a signal stopped it."""
    return f"interrupted at step {step}; checkpoint saved to {path}; continue with the same command and --resume"


# ---------------------------------------------------------------- images


def image_sheet(images: torch.Tensor, columns: int | None = None, min_tile: int = 64) -> np.ndarray:
    """Tile ``(N, C, H, W)`` float images in [0, 1] into one ``(rows*H', columns*W', 3)`` uint8 RGB sheet.

    Small images are enlarged (nearest neighbour) to at least ``min_tile`` pixels so that grids of
    32x32 digits stay legible.
    """
    images = to_rgb(images.detach().float().clamp(0.0, 1.0))
    if images.shape[-1] < min_tile:
        factor = -(-min_tile // images.shape[-1])
        images = F.interpolate(images, scale_factor=factor, mode="nearest")
    return grid(to_uint8(images).cpu().numpy(), columns)
