"""Checkpoints of agent training runs: written atomically, read back with a one-line error when they cannot be.

A checkpoint (``RUN_DIR/checkpoint.pt``) is a ``torch.save`` dict, loadable with ``weights_only=True``::

    format       "paintgym-checkpoint/1"
    config       the run's TrainConfig, as a dict
    args         the algorithm's hyperparameters, as a dict
    algorithm    Algorithm.state_dict(): policy, optimisers, baselines
    frozen       names of the parameters --freeze froze (``KEY.NAME``; --resume freezes them again)
    reward       the reward's state (a learning reward's critic or archive)
    env          the env's episode counters: env_seeds, episodes
    rng          experiments.rng.rng_state()
    iteration, global_step, elapsed

(The generative trainers write ``OUT/ckpt.pt`` in :mod:`generative.checkpoint`'s format.)
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from paintgym.canvas.export import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "paintgym-checkpoint/1"


def find_checkpoint(path: str | Path, what: str = "checkpoint", hint: str = "--resume takes") -> Path:
    """The checkpoint file of a run directory, or ``path`` itself if it is a file.

    :param what: what the message says is missing (``"no <what> at PATH"``).
    :param hint: how the message goes on: ``"<hint> a run directory written by paintgym train ..."``.
    :raises FileNotFoundError: with what to pass instead.
    """
    path = Path(path)
    found = path / CHECKPOINT if path.is_dir() else path
    if not found.is_file():
        where = f"{path} holds no {CHECKPOINT}" if path.is_dir() else f"{path} does not exist"
        raise FileNotFoundError(f"no {what} at {path}: {where}; {hint} a run directory written by paintgym "
                                f"train (holding {CHECKPOINT}) or a checkpoint file")
    return found


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (with its ``format``) to ``path`` atomically: a crash leaves the previous checkpoint."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors mapped to ``device``).

    :raises FileNotFoundError: no checkpoint there.
    :raises ValueError: one line: the file is unreadable, not a paintgym training checkpoint, or of
        another format version.
    """
    path = find_checkpoint(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which, on one line
        raise ValueError(f"cannot read checkpoint {path}: the file is truncated, corrupt or not written by "
                         f"paintgym train ({type(err).__name__})") from err
    found = state.get("format") if isinstance(state, dict) else None
    if isinstance(found, str) and found.startswith("paintgym-checkpoint/") and found != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is a checkpoint of format {found}; this paintgym reads {CHECKPOINT_FORMAT}")
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a paintgym training checkpoint")
    return state
