"""The numba CPU fast paths of the rewards: availability and launching.

Rewards keep a torch implementation for every device and use a numba kernel on the CPU when it is
much faster (tests check that both agree). ``PAINTGYM_NO_NUMBA=1`` switches the kernels off.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

try:
    import numba

    HAVE_NUMBA = os.environ.get("PAINTGYM_NO_NUMBA", "") == ""
except ImportError:  # pragma: no cover - numba is a dependency, but keep the torch paths usable
    numba = None
    HAVE_NUMBA = False


def use_numba(tensor: torch.Tensor) -> bool:
    """Whether a numba kernel can take ``tensor``: numba is on, and it is a float32 CPU tensor."""
    return HAVE_NUMBA and tensor.device.type == "cpu" and tensor.dtype == torch.float32


def launch(kernel: Callable[..., Any], *args: Any) -> Any:
    """Run a parallel numba kernel with as many threads as torch may use, and leave torch's count as it was.

    Numba's OpenMP threading layer sets the process-wide OpenMP thread count when it starts, which
    would undo a user's ``torch.set_num_threads``.
    """
    threads = torch.get_num_threads()
    wanted = min(threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    result = kernel(*args)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return result
