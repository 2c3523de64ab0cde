"""The numba CPU fast paths: availability, the thread pool, and launching a kernel over a batch.

The renderer, the image observations, the target pools and the rewards keep a torch implementation
for every device and use a numba kernel on the CPU when it is much faster (tests check that both
agree). ``PAINTGYM_NO_NUMBA=1`` switches the kernels off (:data:`HAVE_NUMBA`).

Each kernel comes as a pair over a batch of independent items (canvases, images):

* ``serial(*args, start, stop)`` runs items ``start:stop`` in one thread;
* ``parallel(*args, chunks)`` splits the batch into ``chunks`` contiguous chunks (:func:`chunk_range`)
  and runs them in numba's threads (``numba.prange(chunks)``), each chunk by the serial loop.

:func:`launch` picks one: small batches run the serial kernel, because threads cost more than they
save there, and a process that never started numba's OpenMP threads can still fork safely
(``gymnasium`` async vector envs).

Numba's cache (``cache=True``) checks only the file of the kernel it compiled: after editing a helper that
kernels in other files inline (:func:`chunk_range`, ``canvas.strokes.radius_fraction``), delete their
``__pycache__/*.nbi`` / ``*.nbc`` files (or touch those files) so that they compile again.
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
"""Batches smaller than this run the serial kernel."""


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


def parallel_chunks(batch: int) -> int:
    """How many chunks a parallel kernel splits a batch of ``batch`` items into; 0: run the serial kernel.

    0 below :data:`PARALLEL_MIN_BATCH` items or when torch may use one thread only; else four chunks
    per thread (so that uneven items even out), or more for large batches (at most 16 items a chunk).
    Sizes numba's thread pool like torch's (:func:`parallel_threads`).
    """
    if batch < PARALLEL_MIN_BATCH or torch.get_num_threads() < 2:
        return 0
    return min(batch, max(parallel_threads() * 4, batch // 16))


def launch(serial: Callable[..., Any], parallel: Callable[..., Any], batch: int, *args: Any) -> Any:
    """Run a kernel pair over a batch of ``batch`` items: ``serial(*args, 0, batch)``, or
    ``parallel(*args, chunks)`` with ``chunks = parallel_chunks(batch)`` when that is not 0 (numba then
    uses as many threads as torch may, and torch's thread count is kept)."""
    chunks = parallel_chunks(batch)
    if not chunks:
        return serial(*args, 0, batch)
    result = parallel(*args, chunks)
    keep_torch_threads()
    return result


def chunk_range(chunk: int, chunks: int, batch: int) -> tuple[int, int]:
    """Items ``start:stop`` of chunk ``chunk`` of ``chunks`` (contiguous, the last may be short or empty):
    for the ``numba.prange(chunks)`` loop of a parallel kernel (compiled by numba when it is on)."""
    per = (batch + chunks - 1) // chunks
    return min(batch, chunk * per), min(batch, (chunk + 1) * per)


if HAVE_NUMBA:
    chunk_range = numba.njit(cache=True, nogil=True)(chunk_range)
