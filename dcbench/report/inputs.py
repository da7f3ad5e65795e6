"""The report's input: ``runs.csv`` validated for the statistics (:mod:`dcbench.results.runs_table`)
and the optional side files (failures, manifests, the spec)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

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
            try:
                manifest = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):
                continue  # a damaged manifest only costs its dataset's line
            if isinstance(manifest, dict) and manifest.get("class_names"):
                found[str(dataset)] = manifest
                break
    return found


def read_optional_text(path: Path) -> str | None:
    """A text file that may be absent (spec.toml of a results directory)."""
    return path.read_text() if path.is_file() else None
