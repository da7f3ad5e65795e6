"""``runs.csv``: one row per trained evaluation model, rebuilt from the cells' records by the store
(:meth:`dcbench.results.store.Store.rebuild_tables`) and read back, validated, by :func:`load_runs`
for the report and the reference comparison. Accuracy is stored as a fraction; :data:`ACCURACY` is
the same in percent, the unit of every reported number."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dcbench import stats
from dcbench.host.errors import DcbenchError
from dcbench.host.files import read_csv
from dcbench.plugins.manager import load_plugins
from dcbench.results.identity import IDENTITY_COLUMN, IDENTITY_FIELDS

#: what an evaluation track is (name, targets, mixing, whitening, teacher): one column each
TRACK_COLUMNS = (
    "track",
    "eval_labels",
    "labels_used",
    "eval_label_loss",
    "eval_temperature",
    "eval_mixing",
    "zca",
    "teacher",
    "teacher_acc",
    "teacher_build_s",
)
_BASE_COLUMNS = [
    "run_id",
    "method",
    "method_name",
    "reference_only",
    "method_label",
    "init_stream",
    "coreset",
    "dataset_label",
    "method_version",
    "plugin_version",
    "dataset",
    "ipc",
    "eval_arch",
    "synth_seed",
    "eval_seed",
    "eval_index",
    "test_acc",
    "train_acc",
    "condense_s",
    "eval_s",
    "peak_rss_mb",
    "cuda_peak_mb",
    "synth_iters",
    "config_hash",
    "preset",
    "protocol",
    "eval_epochs",
    "eval_augmentation",
    "eval_models",
    "eval_compiled",
    "device",
    "device_name",
    "threads",
    "deterministic",
    "dcbench_version",
    IDENTITY_COLUMN,
]
#: runs.csv columns: every identity field has its own column (a new field adds one by itself)
RUNS_COLUMNS = (
    _BASE_COLUMNS
    + [f for f in IDENTITY_FIELDS if f not in _BASE_COLUMNS]
    + ["data_root", "artifact_s", "artifacts"]
    + list(TRACK_COLUMNS)
)
FAILURE_COLUMNS = ["run_id", "method", "dataset", "ipc", "synth_seed", "reason"]
ACCURACY = "acc_pct"  # test_acc in percent: the unit of every reported number
STATISTICS_COLUMNS = ("run_id", "method", "dataset", "ipc", "eval_arch", "synth_seed", "eval_index", "test_acc")


def load_runs(results_dir: Path) -> pd.DataFrame:
    """Read and validate ``results_dir/runs.csv``; add the accuracy in percent.

    Raises DcbenchError with a one-line cause and fix for anything the statistics cannot use.
    """
    path = Path(results_dir) / "runs.csv"
    if not path.is_file():
        raise DcbenchError(f"{path} not found: pass the results directory written by `dcbench run`")
    try:
        runs = read_csv(path)
    except pd.errors.EmptyDataError:
        runs = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DcbenchError(
            f"{path} is not a CSV table ({type(exc).__name__}); `dcbench run` on the same spec "
            "and --out rebuilds it from runs/*/metrics.json"
        ) from None
    if runs.empty:
        if (path.parent / "failures.csv").is_file():
            raise DcbenchError(
                f"{path} has no rows, every cell failed: see failures.csv, fix the cause and re-run `dcbench run`"
            )
        raise DcbenchError(f"{path} has no rows: run at least one cell with `dcbench run`")
    missing = [column for column in STATISTICS_COLUMNS if column not in runs.columns]
    if missing:
        raise DcbenchError(f"{path} lacks column(s) {', '.join(missing)}: regenerate it with the current `dcbench run`")
    # a store from before tracks has one unnamed track
    runs["track"] = runs["track"].astype("string").fillna("").astype(str) if "track" in runs else ""
    for column in ("method", "dataset", "eval_arch", "run_id"):
        runs[column] = runs[column].astype(str)
    # a run id names a directory under runs/: one that is a path would read files outside the store
    pathlike = runs.loc[runs["run_id"].str.contains(r"[/\\\x00]|^\.\.?$", regex=True), "run_id"].unique()
    if pathlike.size:
        raise DcbenchError(
            f"{path} has run id(s) {some(pathlike)} that are paths, not cell names: rebuild runs.csv with `dcbench run`"
        )
    for column in ("ipc", "synth_seed", "eval_index", "test_acc"):
        values = pd.to_numeric(runs[column], errors="coerce")
        bad = runs.loc[values.isna(), "run_id"].unique()
        if bad.size:
            raise DcbenchError(
                f"{path} has a missing or non-numeric {column} in run(s) "
                f"{some(bad)}: re-run those cells or delete their rows"
            )
        runs[column] = values if column == "test_acc" else values.astype(int)
    outside = runs.loc[~runs["test_acc"].between(0.0, 1.0), "run_id"].unique()
    if outside.size:
        raise DcbenchError(
            f"{path} has test_acc outside [0, 1] in run(s) {some(outside)}: "
            "runs.csv stores accuracy as a fraction, fix the writer"
        )
    duplicated = runs.duplicated([*stats.CELL_KEYS, "synth_seed", "eval_index"])
    if duplicated.any():
        raise DcbenchError(
            f"{path} repeats evaluations of run(s) {some(runs.loc[duplicated, 'run_id'].unique())}: rebuild runs.csv"
        )
    _method_columns(runs)
    _artifact_columns(runs)
    runs[ACCURACY] = 100.0 * runs["test_acc"]
    return runs


def _method_columns(runs: pd.DataFrame) -> None:
    """The columns that say what a method and a dataset are (reference line, coreset, table
    names, shared initial images), typed and filled in. A runs.csv from before they were
    recorded takes the flags and labels from the installed method and dataset of that name, and
    records no shared initial images (so nothing in it is paired)."""
    missing = [c for c in ("reference_only", "coreset", "method_label") if c not in runs.columns]
    if missing:
        installed = load_plugins().methods
        for column, attribute, default in (
            ("reference_only", "reference_only", False),
            ("coreset", "coreset", False),
            ("method_label", "label", ""),
        ):
            if column in missing:
                runs[column] = [getattr(installed.get(m), attribute, default) for m in runs["method"]]
    for column in ("reference_only", "coreset"):
        runs[column] = runs[column].map(_flag).astype(bool)
    if "dataset_label" not in runs.columns:  # older stores: the installed dataset's label
        datasets = load_plugins().datasets
        runs["dataset_label"] = [getattr(datasets.get(d), "label", "") for d in runs["dataset"]]
    for column, fallback in (("method_label", "method"), ("dataset_label", "dataset")):
        values = runs[column] if column in runs.columns else pd.Series(np.nan, index=runs.index)
        values = values.where(values.notna() & (values.astype(str) != ""), runs[fallback])
        runs[column] = values.astype(str)
    # astype("string") first: an all-empty column reads as float64, which refuses a "" fill
    runs["init_stream"] = runs["init_stream"].astype("string").fillna("").astype(str) if "init_stream" in runs else ""


def _artifact_columns(runs: pd.DataFrame) -> None:
    """The shared artifacts a cell used, typed; stores from before artifacts existed used none."""
    runs["artifact_s"] = pd.to_numeric(runs["artifact_s"], errors="coerce").fillna(0.0) if "artifact_s" in runs else 0.0
    runs["artifacts"] = runs["artifacts"].astype("string").fillna("").astype(str) if "artifacts" in runs else ""


def _flag(value: object) -> bool:
    """A boolean cell of runs.csv (pandas reads True/False, hand-made files may hold 1 or "true")."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else str(value).strip().lower() in ("true", "1")


def some(values: np.ndarray, limit: int = 3) -> str:
    """At most ``limit`` values for an error line, and how many more there are."""
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f" (+{values.size - limit} more)" if values.size > limit else "")


def read_optional_csv(path: Path) -> pd.DataFrame:
    """A CSV that may be absent or empty (no failures is the normal case)."""
    if not path.is_file():
        return pd.DataFrame()
    try:
        return read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DcbenchError(
            f"{path} is not a CSV table ({type(exc).__name__}); `dcbench run` on the same spec and --out rebuilds it"
        ) from None
