"""Run directories: where a run writes, named by default, and never overwritten by a new run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def default_run_dir(agent: str, env: str, seed: int) -> Path:
    """``runs/AGENT-ENV-sSEED-YYYYmmdd-HHMMSS`` (the env id without its namespace)."""
    return Path("runs") / f"{agent}-{env.split('/')[-1]}-s{seed}-{datetime.now():%Y%m%d-%H%M%S}"


def check_new_run(run_dir: Path, checkpoint: str, how_to_resume: str, other: str) -> None:
    """Refuse to start a new run where one already is (its checkpoint exists).

    :param checkpoint: the checkpoint's file name in the run directory.
    :param how_to_resume: the flag that continues it, e.g. ``"--resume RUN_DIR"``.
    :param other: the flag that chooses another directory, e.g. ``"--run-dir"``.
    :raises FileExistsError: saying how to continue that run or where else to go.
    """
    if (run_dir / checkpoint).exists():
        raise FileExistsError(f"{run_dir} already holds a run ({run_dir / checkpoint}); continue it with "
                              f"{how_to_resume}, or choose another {other}")
