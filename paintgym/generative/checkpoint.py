"""Checkpoints of the generative models: written atomically, with the model configuration inside.

A checkpoint is a ``torch.save`` dict::

    {"format": "paintgym-generative", "version": 1, "kind": "gan" | "vae" | "classifier" | "cyclegan",
     "config": {...constructor arguments...}, "model": state_dict, "step": int,
     "train": {...optimisers, RNG states, training options...}}   # only in training checkpoints

It is loaded with ``weights_only=True`` (no pickled code runs), so everything in it is tensors,
numbers, strings, lists and dicts.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from paintgym.canvas.export import atomic_write_bytes
from paintgym.generative import classifier as _classifier  # noqa: F401  (registers the "classifier" kind in MODELS)
from paintgym.generative import cyclegan as _cyclegan  # noqa: F401  (registers the "cyclegan" kind in MODELS)
from paintgym.generative import sketch_rnn as _sketch_rnn  # noqa: F401  (registers the "sketch-rnn" kind)
from paintgym.generative.models import GAN, MODELS, VAE

FORMAT = "paintgym-generative"
VERSION = 1
CHECKPOINT_NAME = "ckpt.pt"
"""File name of a run's checkpoint inside its ``--out`` folder."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of the wrong kind or does not fit its configuration."""


def save_checkpoint(path: str | os.PathLike, model: GAN | VAE, step: int = 0,
                    train: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and optional training state) to ``path`` atomically (temporary file + rename)."""
    payload = {"format": FORMAT, "version": VERSION, "kind": model.kind, "config": model.config(),
               "model": model.state_dict(), "step": int(step)}
    if train is not None:
        payload["train"] = train
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike, kind: str | None = None,
                    map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """The checked checkpoint dict at ``path``.

    :param path: a checkpoint file, or a run folder (its ``ckpt.pt``).
    :param kind: ``gan``, ``vae`` or ``classifier`` to insist on, or None for any.
    :raises CheckpointError: with a message saying what is wrong and what to do.
    """
    if kind is not None and kind not in MODELS:
        raise CheckpointError(f"unknown model kind {kind!r}; choose one of {', '.join(MODELS)}")
    path = Path(path).expanduser()
    if path.is_dir():  # a run folder: its latest checkpoint
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; give the {CHECKPOINT_NAME} of a run of "
                              "`paintgym train-gan`, `train-vae`, `train-classifier` or `train-cyclegan` "
                              "(or its folder)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types (pickle, zip, runtime) for a damaged file
        raise CheckpointError(f"cannot read checkpoint {str(path)!r} ({type(err).__name__}); "
                              "is it a paintgym generative checkpoint (ckpt.pt of train-gan/train-vae/"
                              "train-classifier/train-cyclegan)?") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a paintgym generative checkpoint "
                              "(expected the ckpt.pt written by paintgym train-gan, train-vae, train-classifier or "
                              "train-cyclegan)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {payload.get('version')!r}; "
                              f"this paintgym reads version {VERSION}")
    if payload.get("kind") not in MODELS:
        raise CheckpointError(f"{str(path)!r} holds an unknown model kind {payload.get('kind')!r}")
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{str(path)!r} is a {payload['kind'].upper()} checkpoint, not a {kind.upper()} one; "
                              f"use a checkpoint written by paintgym train-{kind}")
    return payload


def build_model(payload: dict[str, Any], path: str | os.PathLike = "checkpoint") -> GAN | VAE:
    """Rebuild the model a checkpoint dict describes and load its weights (on the CPU, in eval mode)."""
    try:
        model = MODELS[payload["kind"]](**payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{str(path)!r}: its model configuration {payload.get('config')} is invalid: "
                              f"{err}") from err
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{str(path)!r}: the weights do not match the configuration "
                              f"{payload['config']} ({first})") from err
    return model.eval()


def check_config(payload: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike = "checkpoint") -> None:
    """Raise CheckpointError if the checkpoint's configuration differs from ``expected`` (keys set to None are free)."""
    config = payload["config"]
    wrong = {key: (config.get(key), value) for key, value in expected.items()
             if value is not None and config.get(key) != value}
    if wrong:
        listed = ", ".join(f"{key}={have!r} (wanted {want!r})" for key, (have, want) in wrong.items())
        raise CheckpointError(f"{str(path)!r} was trained with a different configuration: {listed}")


def load(path: str | os.PathLike, device: torch.device | str = "cpu", kind: str | None = None,
         **expected: Any) -> GAN | VAE:
    """Load a trained model ready for use on ``device``, in eval mode.

    >>> gan = load("runs/gan/ckpt.pt", kind="gan")                 # doctest: +SKIP
    >>> images = gan.generator.sample(16)                           # (16, C, size, size) in [0, 1]
    >>> vae = load("runs/vae/ckpt.pt", kind="vae", size=64)          # doctest: +SKIP

    :param kind: ``gan``, ``vae`` or ``classifier`` to insist on a kind, or None for any.
    :param expected: configuration values that must match, e.g. ``size=64, channels=3``.
    :return: a :class:`~generative.models.GAN` (with ``.generator`` and ``.critic``), a
        :class:`~generative.models.VAE` or a :class:`~generative.classifier.Classifier`.
    :raises CheckpointError: for a missing or unreadable file, a checkpoint of the wrong kind, or a
        configuration that differs from ``expected`` or does not fit the weights.
    """
    payload = read_checkpoint(path, kind)
    check_config(payload, expected, path)
    return build_model(payload, path).to(device)
