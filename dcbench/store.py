"""The results store: ``results/<name>/`` with one directory per cell and tables rebuilt from them.

Layout::

    spec.toml                   the resolved spec
    runs/<cell-id>/synthetic.pt, manifest.json, grid.png, log.txt
    runs/<cell-id>/metrics.json written last, atomically: its presence with status "done" is
                                what "the cell is finished" means, so a kill loses no finished cell
    runs.csv                    one row per evaluation model, rebuilt from every metrics.json
    failures.csv                cells that failed, with the reason

A cell's ``fingerprint`` (method config hash + evaluation protocols) is stored with it; a rerun
whose spec would compute a finished cell differently stops instead of mixing results.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from dcbench.errors import DcbenchError
from dcbench.synthetic import atomic_write_text

METRICS_FILE = "metrics.json"
RUNS_COLUMNS = [
    "run_id", "method", "method_version", "plugin_version", "dataset", "ipc", "eval_arch", "synth_seed",
    "eval_seed", "eval_index", "test_acc", "train_acc", "condense_s", "eval_s", "peak_rss_mb", "cuda_peak_mb",
    "synth_iters", "config_hash", "preset", "protocol", "eval_epochs", "eval_augmentation", "eval_models",
    "device", "dcbench_version",
]
FAILURE_COLUMNS = ["run_id", "method", "dataset", "ipc", "synth_seed", "reason"]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs = root / "runs"

    def cell_dir(self, cell_id: str) -> Path:
        return self.runs / cell_id

    def read_metrics(self, cell_id: str) -> dict[str, Any] | None:
        path = self.cell_dir(cell_id) / METRICS_FILE
        if not path.is_file():
            return None
        try:
            metrics = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # cannot happen with atomic writes; treat as unfinished and recompute
        return metrics if isinstance(metrics, dict) else None

    def is_done(self, cell_id: str, fingerprint: dict[str, Any]) -> bool:
        metrics = self.read_metrics(cell_id)
        if metrics is None or metrics.get("status") != "done":
            return False
        stored = metrics.get("fingerprint")
        if stored != fingerprint and (not isinstance(stored, dict) or set(stored) != set(fingerprint)):
            raise DcbenchError(f"cell {cell_id} in {self.root} has a damaged {METRICS_FILE} (no valid fingerprint); "
                               f"delete {self.cell_dir(cell_id)} to compute the cell again")
        if stored != fingerprint:
            raise DcbenchError(
                f"cell {cell_id} in {self.root} was computed with a different config or protocol "
                f"({metrics.get('fingerprint')} vs {fingerprint}); use another --out or delete {self.cell_dir(cell_id)}")
        return True

    def write_metrics(self, cell_id: str, metrics: dict[str, Any]) -> None:
        atomic_write_text(self.cell_dir(cell_id) / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True))

    def write_spec(self, toml_text: str) -> None:
        atomic_write_text(self.root / "spec.toml", toml_text)

    def rebuild_tables(self) -> pd.DataFrame:
        """Rebuild ``runs.csv`` and ``failures.csv`` from the cell directories; return the runs."""
        rows: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for path in sorted(self.runs.glob(f"*/{METRICS_FILE}")) if self.runs.is_dir() else []:
            metrics = self.read_metrics(path.parent.name)
            if metrics is None:
                continue
            cell = metrics["cell"]
            if metrics.get("status") != "done":
                failures.append({"run_id": cell["id"], "method": cell["method"], "dataset": cell["dataset"],
                                 "ipc": cell["ipc"], "synth_seed": cell["seed"], "reason": metrics.get("reason", "")})
                continue
            for ev in metrics["evaluations"]:
                for k, (test_acc, train_acc, eval_seed) in enumerate(zip(ev["test_accs"], ev["train_accs"],
                                                                        ev["eval_seeds"])):
                    rows.append({
                        "run_id": cell["id"], "method": cell["method"], "method_version": metrics["method_version"],
                        "plugin_version": metrics.get("plugin_version"), "dataset": cell["dataset"],
                        "ipc": cell["ipc"], "eval_arch": ev["arch"], "synth_seed": cell["seed"],
                        "eval_seed": eval_seed, "eval_index": k, "test_acc": test_acc, "train_acc": train_acc,
                        "condense_s": metrics["condense_s"], "eval_s": ev["seconds"],
                        "peak_rss_mb": metrics.get("peak_rss_mb"), "cuda_peak_mb": metrics.get("cuda_peak_mb"),
                        "synth_iters": metrics.get("method_metrics", {}).get("iterations"),
                        "config_hash": metrics["fingerprint"]["config_hash"], "preset": cell["preset"],
                        "protocol": ev["protocol"]["name"], "eval_epochs": ev["protocol"]["epochs"],
                        "eval_augmentation": ev["protocol"]["augmentation"], "eval_models": ev["protocol"]["models"],
                        "device": metrics.get("device"), "dcbench_version": metrics.get("dcbench_version"),
                    })
        runs = pd.DataFrame(rows, columns=RUNS_COLUMNS)
        atomic_write_text(self.root / "runs.csv", runs.to_csv(index=False))
        failures_path = self.root / "failures.csv"
        if failures:
            atomic_write_text(failures_path, pd.DataFrame(failures, columns=FAILURE_COLUMNS).to_csv(index=False))
        else:
            failures_path.unlink(missing_ok=True)
        return runs
