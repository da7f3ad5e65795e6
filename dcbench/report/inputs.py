"""The report's input: ``runs.csv`` validated for the statistics (:mod:`dcbench.results.runs_table`)
and the optional side files (failures, manifests, the spec)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dcbench.host.errors import DcbenchError
from dcbench.host.files import read_record_text
from dcbench.results.runs_table import some

COST_COLUMNS = ("condense_s", "eval_s", "peak_rss_mb", "cuda_peak_mb", "artifact_s")


def reference_lines(runs: pd.DataFrame) -> dict[str, str]:
    """The reference lines of validated runs (methods recorded ``reference_only``, such as the whole
    training set), method name -> table label: shown on top of a table, never ranked or tested."""
    flagged = runs.loc[runs["reference_only"], ["method", "method_label"]].drop_duplicates("method")
    return dict(zip(flagged["method"], flagged["method_label"]))


def dataset_manifests(results_dir: Path, runs: pd.DataFrame) -> dict[str, dict]:
    """Per dataset, the first cell manifest (by run id) that records its class names; datasets
    whose manifests record none (older results) are left out."""
    found = {}
    for dataset, run_ids in runs.groupby("dataset")["run_id"]:
        for run_id in sorted(set(run_ids)):
            path = Path(results_dir) / "runs" / str(run_id) / "manifest.json"
            try:  # the store's own file: a link (to a manifest elsewhere) is not read
                manifest = json.loads(read_record_text(path)) if path.exists() or path.is_symlink() else {}
            except (OSError, ValueError, DcbenchError):
                continue  # a damaged manifest only costs its dataset's line
            if isinstance(manifest, dict) and manifest.get("class_names"):
                found[str(dataset)] = manifest
                break
    return found


def check_runs_have_cells(results_dir: Path, runs: pd.DataFrame) -> None:
    """In a store whose cells are on disk (``runs/*/metrics.json``), every run of runs.csv must be
    one of them: a row no cell holds (an edited or stale runs.csv) would be counted as a seed."""
    cells = Path(results_dir) / "runs"
    if not cells.is_dir() or not any(cells.glob("*/metrics.json")):
        return  # a runs.csv on its own (copied, or published without its cells)
    missing = sorted(r for r in runs["run_id"].unique() if not (cells / r / "metrics.json").is_file())
    if missing:
        raise DcbenchError(
            f"{Path(results_dir) / 'runs.csv'} lists run(s) {some(np.array(missing))} that no cell of {cells} holds; "
            "`dcbench run` on the same spec and --out rebuilds it from the cells"
        )


def read_optional_text(path: Path) -> str | None:
    """A text file that may be absent (spec.toml of a results directory), never through a link."""
    return read_record_text(path) if path.exists() or path.is_symlink() else None
