"""Evaluation tracks side by side: what each method owes to a track's labels or augmentation.

A grid with several tracks evaluates every synthetic set under each of them, so a method's
difference between two tracks is paired by synthesis seed (the same set, judged twice): per
method and task, the mean of the per-seed differences ``track - baseline`` in points, its
t-interval, and a paired t-test with Holm over every difference of the report. This is the fair
form of DD-Ranking's label- and augmentation-robustness scores, which pass percentages through an
exponential and saturate; here the difference stays in points, with its uncertainty.

In the report's other tables a task's evaluation is its architecture and, in a grid with several
tracks, its track: ``ConvNet [teacher]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from dcbench import stats
from dcbench.results.runs_table import ACCURACY

TRACK_COLUMNS = (
    "dataset",
    "ipc",
    "eval_arch",
    "method",
    "track",
    "baseline",
    "n_seeds",
    "diff",
    "ci_low",
    "ci_high",
    "p_raw",
    "p_adj",
    "significant",
)


def tracks_of(runs: pd.DataFrame) -> list[str]:
    """The named tracks of a grid (empty: one unnamed track)."""
    names = sorted(set(runs["track"])) if "track" in runs else []
    return [] if names in ([], [""]) else names


def baseline_track(runs: pd.DataFrame) -> str:
    """The track the others are measured from: a hard-label track without augmentation or mixing
    (the alphabetically first of them), else the alphabetically first track."""
    names = tracks_of(runs)
    plain = runs
    for column, value in (("eval_labels", "hard"), ("eval_mixing", "none"), ("eval_augmentation", "none")):
        if column in plain:
            plain = plain[plain[column].fillna(value).astype(str) == value]
    candidates = sorted(set(plain["track"]) & set(names))
    return candidates[0] if candidates else names[0]


def fold_tracks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its evaluation named by architecture and track (``ConvNet [teacher]``) when
    the grid has several tracks, so that every table and figure shows each track apart."""
    if len(tracks_of(frame)) < 2:
        return frame
    frame = frame.copy()
    frame["eval_arch"] = frame["eval_arch"] + " [" + frame["track"] + "]"
    return frame


def track_differences(runs: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per method, task and track: the paired difference from the baseline track (see the module
    docstring); empty for a grid with one track."""
    names = tracks_of(runs)
    if len(names) < 2:
        return pd.DataFrame(columns=list(TRACK_COLUMNS))
    baseline = baseline_track(runs)
    seeds = runs.groupby(["method", "dataset", "ipc", "eval_arch", "track", "synth_seed"])[ACCURACY].mean()
    wide = seeds.unstack("track")
    rows = []
    for (method, dataset, ipc, arch), group in wide.groupby(level=["method", "dataset", "ipc", "eval_arch"]):
        for track in names:
            if track == baseline:
                continue
            diffs = (group[track] - group[baseline]).dropna().to_numpy()
            n = len(diffs)
            mean = float(diffs.mean()) if n else np.nan
            low, high = stats.t_interval(diffs) if n >= 2 else (np.nan, np.nan)
            p = np.nan
            if n >= 2 and np.ptp(diffs) > 0:
                p = float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
            rows.append([dataset, ipc, arch, method, track, baseline, n, mean, low, high, p])
    table = pd.DataFrame(rows, columns=list(TRACK_COLUMNS[:-2]))
    tested = table["p_raw"].notna()
    table["p_adj"] = np.nan
    if tested.any():
        table.loc[tested, "p_adj"] = stats.holm(table.loc[tested, "p_raw"].to_numpy())
    table["significant"] = table["p_adj"] < alpha
    return table.sort_values(["dataset", "ipc", "eval_arch", "track", "method"]).reset_index(drop=True)


def teachers_of(runs: pd.DataFrame) -> pd.DataFrame:
    """The teachers a grid's tracks used: key, track, test accuracy (%) and build seconds."""
    if "teacher" not in runs:
        return pd.DataFrame(columns=["track", "teacher", "teacher_acc", "teacher_build_s"])
    used = runs[runs["teacher"].astype("string").fillna("") != ""]
    columns = ["track", "teacher", "teacher_acc", "teacher_build_s"]
    return used[columns].drop_duplicates(["track", "teacher"]).sort_values(columns[:2]).reset_index(drop=True)
