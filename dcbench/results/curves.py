"""Loss curves of a cell's condensation: ``curve.csv`` in the cell's directory, and their plots.

The runner (and ``dcbench condense``) appends one row per ``ctx.progress(step, total, **metrics)``
call: ``step``, ``total`` and the metrics the method reported (``loss``, ...), columns fixed by
the run's first row. A resumed run keeps the rows before the iteration it continues from and drops
the rest (work lost after the last checkpoint), so a finished cell's curve is one clean run.

:func:`read_curves` reads them back for the report's figures (:mod:`dcbench.report.curves`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

from dcbench.host.files import atomic_write_text, open_append
from dcbench.results.store import Store

CURVE_FILE = "curve.csv"
FIXED_COLUMNS = ("step", "total")


def _step(row: Mapping[str, Any]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return math.nan


class CurveWriter:
    """Appends progress rows to ``path`` (line-buffered, so a kill loses at most the row being written)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._writer: csv.DictWriter | None = None

    def add(self, step: int, total: int, metrics: Mapping[str, float]) -> None:
        if self._writer is None:
            self._open(step, metrics)
        assert self._writer is not None and self._file is not None
        self._writer.writerow({"step": step, "total": total, **metrics})
        self._file.flush()

    def _open(self, first_step: int, metrics: Mapping[str, float]) -> None:
        columns: list[str] = [*FIXED_COLUMNS, *metrics]
        kept: list[dict[str, str]] = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                kept = [row for row in reader if _step(row) < first_step]
                if kept and reader.fieldnames:
                    columns = list(reader.fieldnames)
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, text.getvalue())
        self._file = open_append(self.path)
        self._writer = csv.DictWriter(self._file, columns, restval="", extrasaction="ignore", lineterminator="\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


def read_curves(store_root: Path, metric: str = "loss") -> pd.DataFrame:
    """``metric`` per step of every finished cell with a curve: columns method, dataset, ipc,
    seed, step, value."""
    store = Store(Path(store_root))
    frames = []
    for path in sorted(store.runs.glob(f"*/{CURVE_FILE}")) if store.runs.is_dir() else []:
        metrics = store.read_metrics(path.parent.name)
        if metrics is None or metrics.get("status") != "done":
            continue
        try:
            curve = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue  # a damaged curve only costs its line in the plot
        if metric not in curve.columns or "step" not in curve.columns:
            continue
        values = pd.to_numeric(curve[metric], errors="coerce")
        cell = metrics["cell"]
        frames.append(
            pd.DataFrame(
                {
                    "method": cell["method"],
                    "dataset": cell["dataset"],
                    "ipc": cell["ipc"],
                    "seed": cell["seed"],
                    "step": pd.to_numeric(curve["step"], errors="coerce"),
                    "value": values,
                }
            ).dropna()
        )
    columns = ["method", "dataset", "ipc", "seed", "step", "value"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
