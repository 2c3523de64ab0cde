"""What a training run logs: ``metrics.csv`` and TensorBoard scalars (the same numbers), and a progress bar.

``metrics.csv`` has one row per logged step; its columns are fixed when the log is opened (a value
without a column is left out of the CSV, a column without a value is left empty). On ``--resume``
the rows up to the checkpoint's step are kept and TensorBoard drops its later events, so the
resumed run's log reads as if it had never stopped.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from paintgym.canvas.export import atomic_write_bytes

METRICS = "metrics.csv"


class MetricsLog:
    """``RUN_DIR/metrics.csv`` and TensorBoard scalars in ``RUN_DIR/tb``.

    :param run_dir: the run directory.
    :param columns: the CSV's columns, ``step`` first (a resumed run keeps its file's columns).
    :param resume_step: the checkpoint's step when the run resumes (rows after it are dropped), else None.

    :attr:`rows` holds every row of the file (earlier rows as read back, as strings), :attr:`history`
    the rows this log wrote, with their values as given.
    """

    def __init__(self, run_dir: Path, columns: list[str], resume_step: int | None = None) -> None:
        self.path = run_dir / METRICS
        self.columns = columns
        self.rows: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        if resume_step is not None and self.path.exists():  # keep the rows up to the checkpoint
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or columns)
                self.rows = [row for row in reader if int(row["step"]) <= resume_step]
        atomic_write_bytes(self.path, self._render(self.rows).encode())
        self._handle = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, self.columns, restval="", extrasaction="ignore")
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def _render(self, rows: list[dict[str, Any]]) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def write(self, step: int, values: dict[str, Any], tensorboard: bool = True) -> dict[str, Any]:
        """Append a row at ``step`` (and, with ``tensorboard``, its finite numbers as scalars); returns it."""
        self._writer.writerow({"step": step, **{key: _fmt(value) for key, value in values.items()}})
        self._handle.flush()
        row = {"step": step, **values}
        self.rows.append(row)
        self.history.append(row)
        if tensorboard:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)
            self.tb.flush()
        return row

    def close(self) -> None:
        self._handle.close()
        self.tb.close()


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def progress_bar(total: int, initial: int, desc: str, enabled: bool = True, unit: str = "step",
                 unit_scale: bool = False) -> tqdm:
    """A progress bar from ``initial`` to ``total`` (a silent one when not ``enabled``)."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=unit_scale, dynamic_ncols=True,
                disable=not enabled)
