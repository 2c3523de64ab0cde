"""Data-parallel runs under ``torchrun``: detect the launch, start and end the process group, each rank's
device and share of the work.

``torchrun --nproc-per-node G train.py ...`` starts G processes with ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` in their environment. :func:`process_group` then starts ``torch.distributed`` (NCCL with
one GPU per rank, ``cuda:LOCAL_RANK``; gloo on the CPU) with a timeout (default 60 s, or
``PAINTGYM_DIST_TIMEOUT`` seconds), so that when a rank dies the others stop with an error within that
time instead of waiting for ever. Without ``torchrun`` (or with a world of one) nothing starts: no
process group, no extra cost, and the collectives of :mod:`canvas.collective` (gradient averaging,
global mean/std, metric averaging, parameter broadcast) are no-ops.

The collectives live on the ground floor (:mod:`canvas.collective`) so that the learners and the
generative steps, which sit below the run tooling, can call them; they are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from paintgym.canvas.collective import (  # noqa: F401  (re-exported)
    active,
    all_gather_cat,
    all_reduce_max,
    all_reduce_mean_,
    all_reduce_sum_,
    average_gradients_,
    average_metrics,
    average_running_stats_,
    barrier,
    broadcast_module_,
    moments,
    normalise,
    sync_batchnorm,
)
from paintgym.experiments.device import resolve_device

DEFAULT_TIMEOUT_S = 60.0
"""The process group's timeout: a collective that waits longer for a (dead) rank raises."""

RANK_SEED_OFFSET = 7_919_011
"""Rank ``r > 0`` reseeds its random streams with ``seed + r * RANK_SEED_OFFSET`` after the networks are
built (every rank builds the same initial networks from ``--seed``; rank 0 keeps the one-process stream)."""


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` ranks, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, checkpoints, videos and evaluations."""
        return self.rank == 0


def launched() -> bool:
    """Whether ``torchrun`` (or another launcher setting ``WORLD_SIZE``) started this process in a world of
    more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> World:
    """This process's :class:`World` (rank 0 of 1 without ``torchrun``)."""
    if not launched():
        return World()
    return World(int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]),
                 int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(name: str | torch.device) -> torch.device:
    """The device of this rank for ``--device name``: under ``torchrun``, CUDA means ``cuda:LOCAL_RANK``
    (``auto`` picks CUDA when there is one); otherwise :func:`experiments.device.resolve_device`."""
    device = resolve_device(name)
    if launched() and device.type == "cuda":
        local = world().local_rank
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} has no GPU (this node has {torch.cuda.device_count()}); "
                             "use --nproc-per-node at most the GPU count, or --device cpu")
        device = torch.device("cuda", local)
    return device


def timeout_s() -> float:
    """The process group's timeout in seconds: ``PAINTGYM_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`."""
    return float(os.environ.get("PAINTGYM_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))


@contextmanager
def process_group(device: str | torch.device = "auto") -> Iterator[World]:
    """Run the block inside a process group when ``torchrun`` launched this process (NCCL for CUDA,
    gloo for the CPU, with :func:`timeout_s`); afterwards :func:`shutdown` (unless the block did).
    Without ``torchrun``, or when a group is already running (its owner ends it), only yields the
    :class:`World`.

    :param device: the ``--device`` option: it chooses the backend.
    """
    info = world()
    if not launched() or dist.is_initialized():
        yield info
        return
    where = rank_device(device)
    backend = "nccl" if where.type == "cuda" else "gloo"
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()), rank=info.rank,
                            world_size=info.size)
    try:
        yield info
        shutdown()  # every rank arrives, then all leave together
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def shutdown() -> None:
    """End the process group now, every rank together (a barrier, then destroy): a rank that tore its
    connections down while another still used them could abort at exit. Rank 0 may then go on alone
    (e.g. the final evaluation and files) without the others waiting on it. A no-op without a group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_count(total: int, what: str = "num_envs", flag: str = "--num-envs") -> int:
    """This rank's share of ``total`` (envs, or a batch): ``total / world size``.

    :raises ValueError: one line, when ``total`` does not divide by the world size.
    """
    size = world().size
    if total % size:
        lower, upper = total // size * size, (total // size + 1) * size
        raise ValueError(f"{flag} {total} does not divide among {size} ranks: each rank owns {what} / "
                         f"world size; use {lower or upper} or {upper}")
    return total // size


def reseed_rank(seed: int, step: int = 0) -> None:
    """Give ranks other than 0 their own random streams (see :data:`RANK_SEED_OFFSET`); ``step`` varies
    them on ``--resume``, where only rank 0's streams are in the checkpoint."""
    from paintgym.experiments.rng import seed_everything

    info = world()
    if info.rank > 0:
        seed_everything((seed + info.rank * RANK_SEED_OFFSET + step * 104_729) % 2**63)


def from_main(value: object) -> object:
    """Rank 0's ``value`` on every rank (``broadcast_object_list``); ``value`` itself without a process group."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
