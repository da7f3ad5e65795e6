"""How precise the grid is, and what each method gains over its own start.

* Gains: each method's difference from the reference (``random``: at ``quick`` every method starts
  from exactly random's images at a seed) in points, with the 95% interval of the test that ran
  (paired where the design pairs them) — the fair form of a relative-to-random score.
* Precision: per task, the variance of accuracy split into between seeds and between the
  evaluation networks of one seed, for the accuracies and for the gains over the reference; the
  variance of a grid mean that one more seed or one more network per seed would remove, per
  CPU-second it costs; and how many seeds a paired comparison of that spread needs to detect
  1 point at the family's first Holm level.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dcbench import stats
from dcbench.results.runs_table import ACCURACY

GAIN_COLUMNS = (*stats.TASK_KEYS, "method", "gain", "ci_low", "ci_high", "test", "significant", "detectable_diff")
PRECISION_COLUMNS = (
    *stats.TASK_KEYS,
    "seeds",
    "networks",
    "between_seeds_sd",
    "within_seed_sd",
    "gain_between_seeds_sd",
    "gain_within_seed_sd",
    "gain_sd_of_seed_means",
    "per_seed_variance_removed",
    "per_network_variance_removed",
    "seed_cost_s",
    "network_cost_s",
    "buys_more",
    "seeds_for_1_point",
)
TARGET_POINTS = 1.0


def gains_over_reference(comparisons: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Each method's comparison with the reference, oriented method − reference."""
    if reference is None or comparisons.empty:
        return pd.DataFrame(columns=list(GAIN_COLUMNS))
    rows = comparisons[(comparisons["method_a"] == reference) | (comparisons["method_b"] == reference)]
    flip = (rows["method_a"] == reference).to_numpy()
    sign = np.where(flip, -1.0, 1.0)
    gains = pd.DataFrame(
        {
            **{key: rows[key].to_numpy() for key in stats.TASK_KEYS},
            "method": np.where(flip, rows["method_b"], rows["method_a"]),
            "gain": sign * rows["diff"].to_numpy(dtype=float),
            "ci_low": np.where(flip, -rows["diff_ci_high"], rows["diff_ci_low"]),
            "ci_high": np.where(flip, -rows["diff_ci_low"], rows["diff_ci_high"]),
            "test": rows["test"].to_numpy(),
            "significant": rows["significant"].to_numpy(dtype=bool),
            "detectable_diff": rows["detectable_diff"].to_numpy(dtype=float),
        }
    )
    return gains.sort_values([*stats.TASK_KEYS, "method"]).reset_index(drop=True)


def _pooled_components(frames: list[pd.DataFrame], value: str) -> dict[str, float]:
    """Variance components averaged over the methods of a task (NaN where none is estimable)."""
    parts = [stats.variance_components(frame, value) for frame in frames]
    parts = [p for p in parts if np.isfinite(p["within_seed"])]
    if not parts:
        return {"between_seeds": math.nan, "within_seed": math.nan}
    return {key: float(np.mean([p[key] for p in parts])) for key in ("between_seeds", "within_seed")}


def _gain_frames(task_runs: pd.DataFrame, reference: str | None) -> list[pd.DataFrame]:
    """Per method, its accuracy minus the reference's at the same seed and network index."""
    if reference is None or reference not in set(task_runs["method"]):
        return []
    keys = ["synth_seed", "eval_index"]
    base = task_runs[task_runs["method"] == reference].set_index(keys)[ACCURACY]
    frames = []
    for _, group in task_runs[task_runs["method"] != reference].groupby("method"):
        difference = (group.set_index(keys)[ACCURACY] - base).dropna()
        frames.append(difference.rename("gain").reset_index())
    return frames


def precision_table(runs: pd.DataFrame, reference: str | None, family_size: int, alpha: float) -> pd.DataFrame:
    """Per task: the variance decomposition, what a seed or a network buys, and the seeds needed."""
    rows = []
    for task, task_runs in runs.groupby(list(stats.TASK_KEYS), sort=True):
        methods = [group for _, group in task_runs.groupby("method")]
        seeds = int(task_runs["synth_seed"].nunique())
        networks = int(task_runs.groupby(["method", "synth_seed"]).size().min())
        accuracy = _pooled_components(methods, ACCURACY)
        gain_frames = _gain_frames(task_runs, reference)
        gain = _pooled_components(gain_frames, "gain")
        seed_sd = [f.groupby("synth_seed")["gain"].mean().std(ddof=1) for f in gain_frames]
        gain_sd = float(np.sqrt(np.mean(np.square(seed_sd)))) if seed_sd else math.nan
        costs = _costs(task_runs, seeds, networks)
        components = gain if np.isfinite(gain["within_seed"]) else accuracy
        removed = _variance_removed(components, seeds, networks)
        rows.append(
            dict(zip(stats.TASK_KEYS, task))
            | {
                "seeds": seeds,
                "networks": networks,
                "between_seeds_sd": math.sqrt(accuracy["between_seeds"]),
                "within_seed_sd": math.sqrt(accuracy["within_seed"]),
                "gain_between_seeds_sd": math.sqrt(gain["between_seeds"]),
                "gain_within_seed_sd": math.sqrt(gain["within_seed"]),
                "gain_sd_of_seed_means": gain_sd,
                "per_seed_variance_removed": removed[0],
                "per_network_variance_removed": removed[1],
                "seed_cost_s": costs[0],
                "network_cost_s": costs[1],
                "buys_more": _buys_more(removed, costs),
                "seeds_for_1_point": stats.seeds_needed(gain_sd, TARGET_POINTS, alpha / max(family_size, 1)),
            }
        )
    return pd.DataFrame(rows, columns=list(PRECISION_COLUMNS))


def _costs(task_runs: pd.DataFrame, seeds: int, networks: int) -> tuple[float, float]:
    """CPU-seconds of one more seed (a condensation and its networks) and of one more network per
    seed, from the cells' mean condensation and evaluation seconds."""
    if "condense_s" not in task_runs or "eval_s" not in task_runs or not networks:
        return math.nan, math.nan
    cells = task_runs.drop_duplicates("run_id")
    network_s = float(cells["eval_s"].mean()) / networks
    return float(cells["condense_s"].mean()) + networks * network_s, seeds * network_s


def _variance_removed(components: dict[str, float], seeds: int, networks: int) -> tuple[float, float]:
    """How much the variance of a grid mean drops with one more seed, and with one more network."""
    if not np.isfinite(components["within_seed"]):
        return math.nan, math.nan
    now = stats.mean_variance(components, seeds, networks)
    return (
        now - stats.mean_variance(components, seeds + 1, networks),
        now - stats.mean_variance(components, seeds, networks + 1),
    )


def _buys_more(removed: tuple[float, float], costs: tuple[float, float]) -> str:
    """ "seeds" or "networks": which removes more variance per CPU-second ("" when unknown)."""
    if not all(np.isfinite(v) and v > 0 for v in costs) or not all(np.isfinite(v) for v in removed):
        return ""
    return "seeds" if removed[0] / costs[0] >= removed[1] / costs[1] else "networks"
