"""Ctrl-C and SIGTERM during training: finish the current step, write a checkpoint, stop.

The first Ctrl-C (SIGINT) asks the loop to stop after the step it is in; a second one interrupts at
once (``KeyboardInterrupt``; the last checkpoint written is kept). SIGTERM -- a job scheduler's notice,
or the kernel's when a ``paintgym sweep`` dies -- asks the same however often it comes: it never makes
a run quit without its checkpoint. Outside the main thread (where Python allows no signal handlers)
both behave as usual.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class StopRequest:
    """Set when a signal asked the loop to stop; the loop checks :attr:`requested` after each step."""

    requested: bool = False


@contextmanager
def stop_on_signals(step: str = "iteration") -> Iterator[StopRequest]:
    """Handle SIGINT and SIGTERM as the module docstring says while the block runs, then restore the
    previous handlers.

    :param step: what the loop finishes before it stops, for the message (``iteration``, ``step``).
    """
    stop = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print(f"\nCtrl-C: finishing this {step}, then saving a checkpoint (Ctrl-C again to quit at once)",
                  flush=True)
        elif not stop.requested:
            print(f"\nSIGTERM: finishing this {step}, then saving a checkpoint", flush=True)
        stop.requested = True

    try:
        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield stop
    finally:
        for signum, old_handler in previous.items():
            signal.signal(signum, old_handler)
