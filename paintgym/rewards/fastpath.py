"""The numba CPU fast paths of the rewards: availability and launching.

Rewards keep a torch implementation for every device and use a numba kernel on the CPU when it is
much faster (tests check that both agree). ``PAINTGYM_NO_NUMBA=1`` switches the kernels off.

Each kernel comes as a serial and a parallel (``prange``) loop over the batch. Small batches run
the serial one, as the renderer does: threads cost more than they save there, and a process that
never started numba's OpenMP threads can still fork safely (``gymnasium`` async vector envs).
"""

from __future__ import annotations

import os
import threading
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


_pool = threading.local()  # per thread (numba's thread count is thread-local): the torch count it follows


def parallel_threads() -> int:
    """Size numba's thread pool like torch's (``torch.set_num_threads`` is the one knob); return its size.

    ``numba.get_num_threads()`` costs ~15 us, so the size is remembered per torch setting. Numba's
    OpenMP layer resets the process-wide OpenMP thread count when its pool starts, which would undo
    the user's ``torch.set_num_threads``: call :func:`keep_torch_threads` after the launch.
    """
    threads = torch.get_num_threads()
    if getattr(_pool, "torch_threads", 0) != threads:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        _pool.torch_threads = threads
    return min(threads, numba.config.NUMBA_NUM_THREADS)


def keep_torch_threads() -> None:
    """Put torch's thread count back after a numba parallel launch (see :func:`parallel_threads`)."""
    threads = getattr(_pool, "torch_threads", 0)
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def launch(serial: Callable[..., Any], parallel: Callable[..., Any], batch: int, *args: Any) -> Any:
    """Run ``serial(*args)``, or ``parallel(*args)`` for a batch of at least :data:`PARALLEL_MIN_BATCH`
    when torch may use several threads; numba then uses as many threads as torch may."""
    if batch < PARALLEL_MIN_BATCH or torch.get_num_threads() < 2:
        return serial(*args)
    parallel_threads()
    result = parallel(*args)
    keep_torch_threads()
    return result
