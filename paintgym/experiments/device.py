"""Where a run computes, chosen once and passed down: the device (``--device auto``), mixed precision, CPU threads."""

from __future__ import annotations

import numba
import torch

from paintgym.envs import core


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA if available), ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device.

    :raises ValueError: one line: an unknown device, or CUDA asked for where there is none.
    """
    try:
        device = core.resolve_device(name)
    except RuntimeError as err:  # torch's message for a name it does not know runs over lines
        raise ValueError(f"unknown device {str(name)!r}; use auto, cpu or cuda") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {str(name)!r}; use auto, cpu or cuda")
    return device


def use_amp(device: torch.device, requested: bool) -> bool:
    """Whether bfloat16 mixed precision runs: asked for, on CUDA with bfloat16 (no loss scaling needed).
    The CPU trains in float32."""
    return requested and device.type == "cuda" and torch.cuda.is_bf16_supported()


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch and for the renderer's numba kernels.

    Numba's OpenMP threading layer resets the process's OpenMP thread count when it starts, which
    would undo ``torch.set_num_threads``; so numba's layer is started (and sized) first.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
