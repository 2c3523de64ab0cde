"""What the trainers (``train-gan``, ``train-vae``, ``train-classifier``) share: options, device, run folder,
resume, sample grids, logging.

A run folder (``--out``) holds ``ckpt.pt`` (the latest checkpoint, written atomically), ``tb/``
(TensorBoard scalars and images) and ``samples/step_NNNNNN*.png``. ``--resume`` restores the
model, the optimisers, the step and every random stream from ``ckpt.pt``, so that a resumed run
computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from paintgym.canvas.export import save_png
from paintgym.canvas.images import to_uint8
from paintgym.canvas.video import grid
from paintgym.generative.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint
from paintgym.generative.data import to_rgb
from paintgym.generative.models import CHANNELS, SIZES

RESUME_FREE = ("steps", "out", "resume", "device", "sample_every", "eval_every", "checkpoint_every", "log_every",
               "amp")
"""Options that may change when a run is resumed; every other option must match the checkpoint's."""


class TrainingError(ValueError):
    """Bad training options or run folder; the message says what to change."""


# ---------------------------------------------------------------- options


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (CleanRL style), by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
            docs[node.target.id] = following.value.value.strip()
    return docs


def parse_args(cls: type, argv: list[str] | None, prog: str, description: str) -> Any:
    """Build ``cls`` (a dataclass of options) from command-line arguments ``--field-name value``."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        help_text = docs.get(field.name, "")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str, "int | None": int}.get(str(field.type), str)
            parser.add_argument(flag, type=kind, default=field.default, help=help_text, metavar=field.name.upper())
    return cls(**vars(parser.parse_args(argv)))


def check_common(args: Any) -> None:
    """Validate options every trainer has; raise TrainingError with what to change."""
    if args.size not in SIZES:
        raise TrainingError(f"--size {args.size} is not supported; choose one of {', '.join(map(str, SIZES))}")
    if args.channels is not None and args.channels not in CHANNELS:
        raise TrainingError(f"--channels must be 1 or 3 (or omitted to follow the data), got {args.channels}")
    for name in ("steps", "batch_size", "sample_every", "eval_every", "checkpoint_every", "log_every", "width",
                 "latent_dim", "features"):
        if hasattr(args, name) and getattr(args, name) < 1:  # the options this trainer has
            raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise TrainingError(f"--lr must be positive, got {args.lr}")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise TrainingError(f"unknown device {name!r}; use auto, cpu or cuda") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise TrainingError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return device


def use_amp(device: torch.device, requested: bool) -> bool:
    """Mixed precision runs on CUDA in bfloat16 (no loss scaling needed); the CPU trains in float32."""
    return requested and device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------- run folder and resume


def prepare_run(args: Any, kind: str) -> tuple[Path, dict[str, Any] | None]:
    """The run folder and, with ``--resume``, the checkpoint to continue (checked against ``args``).

    :raises TrainingError: when ``--resume`` finds no checkpoint or different options, or when a
        new run would overwrite an existing one.
    """
    out = Path(args.out).expanduser()
    ckpt = out / CHECKPOINT_NAME
    if not args.resume:
        if ckpt.exists():
            raise TrainingError(f"{out} already holds a run ({ckpt}); add --resume to continue it, "
                                "or choose another --out")
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


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every random stream of a run: the named generators and torch's global ones."""
    state = {"torch": torch.get_rng_state(), "generators": {k: g.get_state() for k, g in generators.items()},
             "devices": {k: g.device.type for k, g in generators.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator], seed: int, step: int) -> None:
    """Restore :func:`rng_state`; a stream saved on another device type is reseeded (with a warning)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in generators.items():
        if state["devices"].get(name) == generator.device.type:
            generator.set_state(state["generators"][name])
        else:
            warnings.warn(f"resuming on {generator.device.type} a run saved on {state['devices'].get(name)}: "
                          f"its {name} random stream restarts (the run is not bit-identical)", stacklevel=2)
            generator.manual_seed(seed * 1_000_003 + step)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded random stream on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)


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


def write_sheet(path: Path, images: torch.Tensor, writer: Any, tag: str, step: int,
                columns: int | None = None) -> Path:
    """Save an image sheet as PNG (atomically) and add it to TensorBoard."""
    sheet = image_sheet(images, columns)
    writer.add_image(tag, sheet, step, dataformats="HWC")
    return save_png(path, sheet)


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module) -> Iterator[None]:
    """Put modules in eval mode (and no-grad) for the block, then back in train mode."""
    for module in modules:
        module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module in modules:
            module.train()


# ---------------------------------------------------------------- the loop's bookkeeping


class RunLog:
    """What every training loop here keeps besides the models: TensorBoard scalars in ``out/tb``, a
    progress bar, the logged history and the training speed.

    :param out: the run folder.
    :param step: the step training starts (or resumes) at.
    :param resumed: whether the run continues a checkpoint (TensorBoard then drops later events).
    :param total: the step training ends at.
    :param desc: progress-bar label.
    :param images_per_step: training images one step consumes (for ``perf/images_per_s``).
    :param progress: show the progress bar.
    """

    def __init__(self, out: Path, step: int, resumed: bool, total: int, desc: str, images_per_step: int,
                 progress: bool = True) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self.writer = SummaryWriter(str(out / "tb"), purge_step=step if resumed else None)
        self.bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, dynamic_ncols=True)
        self.history: list[dict[str, float]] = []
        self.images_per_step = images_per_step
        self._started, self._start_step = time.perf_counter(), step

    def images_per_second(self, step: int) -> float:
        """Training images per second since this log started."""
        return (step - self._start_step) * self.images_per_step / max(time.perf_counter() - self._started, 1e-9)

    def log(self, step: int, values: dict[str, float], **postfix: str) -> dict[str, float]:
        """Record ``values`` (plus ``perf/images_per_s``) at ``step``: history, TensorBoard, progress bar."""
        row = {"step": step, **values, "perf/images_per_s": self.images_per_second(step)}
        self.history.append(row)
        for key, value in row.items():
            if key != "step":
                self.writer.add_scalar(key, value, step)
        self.bar.set_postfix(**postfix)
        return row

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


@contextlib.contextmanager
def checkpoint_on_interrupt(log: RunLog, save: Callable[[], int], path: Path) -> Iterator[None]:
    """Run the loop; on Ctrl-C ``save()`` a checkpoint (it returns the step saved), say how to resume,
    and re-raise. The log is closed either way."""
    try:
        yield
    except KeyboardInterrupt:
        step = save()
        log.close()
        print(f"\ninterrupted at step {step}; checkpoint saved to {path}; "
              "continue with the same command and --resume", file=sys.stderr)
        raise
    log.close()
