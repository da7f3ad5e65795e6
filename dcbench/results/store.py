"""The results store: ``results/<name>/`` with one directory per cell and tables rebuilt from them.

Layout::

    spec.toml                   every spec that wrote to the store, oldest first ([[runs]] entries)
    .dcbench.results.lock               the lock a running ``dcbench run`` holds (see dcbench.results.lock)
    runs/<cell-id>/synthetic.pt, manifest.json, grid.png, log.txt
    runs/<cell-id>/metrics.json written last, atomically: its presence with status "done" is
                                what "the cell is finished" means, so a kill loses no finished cell
    runs.csv                    one row per evaluation model, rebuilt from every metrics.json
    failures.csv                cells that failed (or whose files are damaged), with the reason

Every cell stores its identity (:mod:`dcbench.results.identity`). A rerun whose spec would compute a
finished cell differently stops instead of mixing results; cells of one (method, dataset, IPC)
with different identities (a spec that added seeds with another config, other data, another
plugin version) are kept apart in ``runs.csv``: their ``method`` column is ``name#identity``.
A finished cell is re-checked before it is skipped: ``metrics.json`` against its schema and
``synthetic.pt`` against the content hash in its manifest; a damaged cell is named and re-run.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError
from dcbench.host.files import (
    atomic_write_text,
    csv_text,
    open_append,
    read_record_text,
    real_directory,
    regular_file_size,
)
from dcbench.method.synthetic import MANIFEST_FILE, load_synthetic
from dcbench.results.identity import CellIdentity, identity_of_metrics, label_identities
from dcbench.results.record import METRICS_FILE, CellRecord, now, record_problem
from dcbench.results.runs_table import FAILURE_COLUMNS, RUNS_COLUMNS

SPEC_FILE = "spec.toml"


def metrics_problem(metrics: Any, cell_id: str) -> str | None:
    """Why a parsed metrics.json cannot be used (None when it can): see :func:`record_problem`."""
    return record_problem(metrics, cell_id)


@dataclass(frozen=True)
class CellState:
    """A cell on disk: ``done`` (finished, verified, same identity) or not; ``damage`` says why
    a cell that claims to be finished cannot be trusted (it is then re-run)."""

    done: bool
    damage: str | None = None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"

    def cell_dir(self, cell_id: str) -> Path:
        return self.runs / cell_id

    def cell_directory(self, cell_id: str, create: bool = True) -> Path:
        """A cell's directory, refused in one line when it (or ``runs/``) is a symbolic link or
        no directory: everything a cell writes goes there, and must stay in the store."""
        return real_directory(self.cell_dir(cell_id), self.root, create)

    def _check_links(self, cell_id: str) -> None:
        """Before any work: a cell directory that is a link, or holds one (log.txt, metrics.json
        pointing elsewhere) or a FIFO, is refused in one line; a run would write through it."""
        directory = self.cell_directory(cell_id, create=False)
        if not directory.is_dir():
            return
        for entry in os.scandir(directory):
            if not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                regular_file_size(Path(entry.path), follow=False, what="dcbench writes nothing through it: remove it")

    def load_metrics(self, cell_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """``(metrics, None)``, ``(None, None)`` when the cell has none, ``(None, problem)`` when
        its metrics.json is unreadable or breaks the schema."""
        path = self.cell_dir(cell_id) / METRICS_FILE
        if not path.is_file() and not path.is_symlink():
            return None, None
        try:
            metrics = json.loads(read_record_text(path))
        except DcbenchError as exc:
            return None, f"{METRICS_FILE} is refused ({exc})"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, f"{METRICS_FILE} is unreadable ({type(exc).__name__})"
        problem = metrics_problem(metrics, cell_id)
        return (None, problem) if problem else (metrics, None)

    def read_metrics(self, cell_id: str) -> dict[str, Any] | None:
        """A cell's metrics, or None when it has none or they are damaged."""
        return self.load_metrics(cell_id)[0]

    def cell_state(self, cell_id: str, identity: dict[str, Any]) -> CellState:
        """Whether a cell is finished; raises a one-line DcbenchError when it was finished with
        another identity (rerunning it would mix results)."""
        self._check_links(cell_id)
        metrics, problem = self.load_metrics(cell_id)
        if problem:
            return CellState(False, problem)
        if metrics is None or metrics["status"] != "done":
            return CellState(False)
        stored, wanted = identity_of_metrics(metrics), CellIdentity.from_dict(identity)
        if stored != wanted:
            raise DcbenchError(
                f"cell {cell_id} in {self.root} was computed with a different config, protocol, data, precision "
                f"or method version ({'; '.join(stored.differences(wanted))}, stored vs this run); use another "
                f"--out or delete {self.cell_dir(cell_id)}"
            )
        damage = self._synthetic_damage(cell_id, metrics)
        return CellState(damage is None, damage)

    def _synthetic_damage(self, cell_id: str, metrics: dict[str, Any]) -> str | None:
        directory = self.cell_dir(cell_id)
        manifest_path = directory / MANIFEST_FILE
        try:
            manifest = json.loads(read_record_text(manifest_path))
        except DcbenchError as exc:
            return f"{MANIFEST_FILE} is refused ({exc})"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{MANIFEST_FILE} is missing or unreadable ({type(exc).__name__})"
        if not isinstance(manifest, dict) or not manifest.get("content_hash"):
            return f"{MANIFEST_FILE} records no content hash"
        if metrics.get("synthetic_hash") not in (None, manifest["content_hash"]):
            return f"{MANIFEST_FILE} is not the one its {METRICS_FILE} was written with"
        try:
            load_synthetic(directory)  # checks synthetic.pt against the manifest's content hash
        except DcbenchError as exc:
            return str(exc).removeprefix(f"{directory}/")
        return None

    def discard(self, cell_id: str, reason: str) -> None:
        """Forget a damaged cell's result (so no table counts it) before it is re-run."""
        (self.cell_dir(cell_id) / METRICS_FILE).unlink(missing_ok=True)
        log = self.cell_directory(cell_id, create=False) / "log.txt"
        if log.parent.is_dir():
            with open_append(log) as f:
                f.write(f"{now()} damaged, re-running: {reason}\n")

    def write_metrics(self, cell_id: str, metrics: CellRecord | dict[str, Any]) -> None:
        data = metrics.to_json() if isinstance(metrics, CellRecord) else metrics
        atomic_write_text(self.cell_directory(cell_id) / METRICS_FILE, json.dumps(data, indent=2, sort_keys=True))

    def record_spec(self, toml_text: str, dcbench_version: str) -> None:
        """Append the spec to ``spec.toml`` unless it is the last one recorded there: the file
        keeps every spec that wrote to the store (older text is never changed)."""
        path = self.root / SPEC_FILE
        old = read_record_text(path) if path.is_file() or path.is_symlink() else ""
        try:
            recorded = tomllib.loads(old)
        except tomllib.TOMLDecodeError as exc:
            raise DcbenchError(
                f"{path} is not valid TOML ({exc}); it records the specs that wrote to "
                "this directory: repair it or move it away"
            ) from None
        history = [entry.get("spec") for entry in recorded.get("runs", []) if isinstance(entry, dict)]
        if not history and {k: v for k, v in recorded.items() if k != "runs"}:  # a single-spec file
            history = [{k: v for k, v in recorded.items() if k != "runs"}]
        if history and history[-1] == tomllib.loads(toml_text):
            return
        header = "" if old else "# Every spec that wrote to this results directory, oldest first (dcbench appends).\n"
        body = re.sub(r"^\[(.+)\]$", r"[runs.spec.\1]", toml_text.strip(), flags=re.MULTILINE)
        block = (
            f"\n[[runs]]\nwritten = {json.dumps(now())}\ndcbench_version = {json.dumps(dcbench_version)}\n\n"
            f"[runs.spec]\n{body}\n"
        )
        atomic_write_text(path, old + ("\n" if old and not old.endswith("\n") else "") + header + block)

    def rebuild_tables(self) -> pd.DataFrame:
        """Rebuild ``runs.csv`` and ``failures.csv`` from the cell directories; return the runs.

        A damaged metrics.json is listed as a failure with its problem instead of stopping."""
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for directory in sorted(p for p in self.runs.iterdir() if p.is_dir()) if self.runs.is_dir() else []:
            metrics, problem = self.load_metrics(directory.name)
            if problem:
                failures.append({"run_id": directory.name, "reason": f"damaged: {problem}; re-run or delete it"})
                continue
            if metrics is None:
                continue
            record = CellRecord.from_json(metrics)
            if record.status != "done":
                cell = record.cell
                failures.append(
                    {
                        "run_id": cell.id,
                        "method": cell.method,
                        "dataset": cell.dataset,
                        "ipc": cell.ipc,
                        "synth_seed": cell.seed,
                        "reason": record.reason,
                    }
                )
                continue
            rows.extend(record.rows())
        runs = pd.DataFrame(rows, columns=RUNS_COLUMNS)
        runs["method"] = label_identities(runs)
        atomic_write_text(self.root / "runs.csv", csv_text(runs))
        failures_path = self.root / "failures.csv"
        if failures:
            atomic_write_text(failures_path, csv_text(pd.DataFrame(failures, columns=FAILURE_COLUMNS)))
        else:
            failures_path.unlink(missing_ok=True)
        return runs
