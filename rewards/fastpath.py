"""The numba CPU fast paths of the rewards: availability and launching.

Rewards keep a torch implementation for every device and use a numba kernel on the CPU when it is
much faster (tests check that both agree). ``PAINTGYM_NO_NUMBA=1`` switches the kernels off.

Each kernel comes as a serial and a parallel (``prange``) loop over the batch. Small batches run
the serial one, as the renderer does: threads cost more than they save there, and a process that
never started numba's OpenMP threads can still fork safely (``gymnasium`` async vector envs).
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


PARALLEL_MIN_BATCH = 16
"""Batches smaller than this run the serial kernel (the renderer's threshold too)."""


def launch(serial: Callable[..., Any], parallel: Callable[..., Any], batch: int, *args: Any) -> Any:
    """Run ``serial(*args)``, or ``parallel(*args)`` for a batch of at least :data:`PARALLEL_MIN_BATCH`
    when torch may use several threads; numba then uses as many threads as torch may.

    Numba's OpenMP threading layer sets the process-wide OpenMP thread count when it starts, which
    would undo a user's ``torch.set_num_threads``: the count is put back.
    """
    threads = torch.get_num_threads()
    if batch < PARALLEL_MIN_BATCH or threads < 2:
        return serial(*args)
    wanted = min(threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    result = parallel(*args)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return result
