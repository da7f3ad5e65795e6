"""Comparisons within tasks: every method vs the best and vs the reference, Holm over the report.

A task is (dataset, ipc, eval_arch). The family for Holm is every distinct pair tested in the
report, stated in the report's footer; win/tie/loss counts summarise the vs-reference rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from dcbench.stats.cells import TASK_KEYS
from dcbench.stats.multiplicity import holm
from dcbench.stats.two_sample import compare_samples

COMPARISON_COLUMNS: tuple[str, ...] = (
    *TASK_KEYS,
    "method_a",
    "method_b",
    "kind",
    "test",
    "paired",
    "n_a",
    "n_b",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "statistic",
    "df",
    "p_raw",
    "p_adj",
    "adj_method",
    "family_size",
    "effect_size",
    "effect_size_kind",
    "significant",
)
WIN_TIE_LOSS_COLUMNS: tuple[str, ...] = ("wins", "ties", "losses", "untested")


def planned_pairs(methods: Sequence[str], best: str, reference: str | None) -> Iterator[tuple[str, str, str]]:
    """(method_a, method_b, kind) for every method vs the best, then vs the reference.

    A pair is tested once: if {A, B} is both a vs-best and a vs-reference pair (the reference is
    the best, or the best is compared with the reference) it is kept as the vs-best row, oriented
    A = the other method, B = the best.
    """
    tested: set[frozenset[str]] = set()
    for kind, target in (("vs_best", best), ("vs_reference", reference)):
        if target is None or target not in methods:
            continue
        for method in methods:
            pair = frozenset((method, target))
            if method != target and pair not in tested:
                tested.add(pair)
                yield method, target, kind


def compare_within_tasks(
    scores: pd.DataFrame, reference: str | None, alpha: float = 0.05, paired: bool = False, confidence: float = 0.95
) -> pd.DataFrame:
    """Every method vs the best (by mean) and vs the reference, in every task, Holm over all.

    ``scores`` is the output of :func:`dcbench.stats.seed_scores`. ``family_size`` (the same on
    every row) counts the tested rows; untested rows keep p = NaN and stay outside the family.
    Ties for the best mean go to the alphabetically first method so the choice is deterministic.
    """
    rows = []
    for task, task_scores in scores.groupby(list(TASK_KEYS), sort=True):
        samples = {
            method: group.set_index("synth_seed")["score"] for method, group in task_scores.groupby("method", sort=True)
        }
        means = {method: sample.mean() for method, sample in samples.items()}
        best = min(samples, key=lambda method: (-means[method], method))
        for method_a, method_b, kind in planned_pairs(list(samples), best, reference):
            result = compare_samples(samples[method_a], samples[method_b], paired, confidence)
            rows.append(
                dict(zip(TASK_KEYS, task)) | {"method_a": method_a, "method_b": method_b, "kind": kind} | asdict(result)
            )
    comparisons = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    comparisons["p_adj"] = holm(comparisons["p_raw"])
    comparisons["adj_method"] = "holm"
    comparisons["family_size"] = int(comparisons["p_raw"].notna().sum())
    comparisons["significant"] = (comparisons["p_adj"] < alpha).astype(bool)
    return comparisons


def win_tie_loss(comparisons: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per method, the tasks where it beats / ties with / loses to the reference.

    A tie is a within-task comparison that is not significant after Holm; comparisons that could
    not be tested (fewer than two seeds, no variance) are counted apart as ``untested``.
    """
    vs_reference = comparisons[(comparisons["method_a"] == reference) | (comparisons["method_b"] == reference)]
    reference_is_a = (vs_reference["method_a"] == reference).to_numpy()
    method = np.where(reference_is_a, vs_reference["method_b"], vs_reference["method_a"])
    advantage = np.where(reference_is_a, -1.0, 1.0) * vs_reference["diff"].to_numpy(dtype=float)
    outcome = np.select(
        [vs_reference["p_adj"].isna().to_numpy(), ~vs_reference["significant"].to_numpy(dtype=bool), advantage > 0],
        ["untested", "ties", "wins"],
        default="losses",
    )
    counts = pd.crosstab(pd.Series(method, name="method"), pd.Series(outcome, name="outcome"))
    return counts.reindex(columns=list(WIN_TIE_LOSS_COLUMNS), fill_value=0).rename_axis(columns=None).reset_index()
