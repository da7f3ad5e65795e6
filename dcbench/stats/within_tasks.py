"""Comparisons within tasks: every method vs the best and vs the reference, Holm over the report.

A task is (dataset, ipc, eval_arch). Each pair is tested with a paired t where the recorded design
pairs it (:mod:`.design`), else Welch; the family for Holm is every distinct pair tested in the
report, stated in the report's footer; each row says which test ran and why, and the smallest
difference it could detect (:mod:`.power`). Win/tie/loss counts summarise the vs-reference rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from dcbench.stats.cells import TASK_KEYS, with_task_keys
from dcbench.stats.design import Pairing, SeedDesign, pairing
from dcbench.stats.multiplicity import holm
from dcbench.stats.power import POWER, detectable_difference, paired_standard_error, welch_standard_error
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
    "pairing",
    "alpha_first_step",
    "detectable_diff",
)
WIN_TIE_LOSS_COLUMNS: tuple[str, ...] = ("wins", "ties", "losses", "untested")


def planned_pairs(methods: Sequence[str], best: str, reference: str | None) -> Iterator[tuple[str, str, str]]:
    """(method_a, method_b, kind) for every pair of the task: vs the best, then vs the reference,
    then every other pair (kind ``pair``, in name order).

    Every pair is tested because the best is chosen from the data: Holm over the vs-best rows
    alone would not hold the family's error at α (simulated: 0.09 instead of 0.05, see
    :mod:`dcbench.stats.simulation`), Holm over all pairs holds it for any pair chosen after the
    fact. A pair is tested once: if {A, B} is both a vs-best and a vs-reference pair it is kept as
    the vs-best row, oriented A = the other method, B = the best.
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
    for i, method_a in enumerate(methods):
        for method_b in methods[i + 1 :]:
            if frozenset((method_a, method_b)) not in tested:
                yield method_a, method_b, "pair"


def compare_within_tasks(
    scores: pd.DataFrame,
    reference: str | None,
    alpha: float = 0.05,
    designs: Mapping[tuple[tuple[object, ...], str], SeedDesign] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every pair of methods in every task (vs the best, vs the reference, the others), Holm over all.

    ``scores`` is the output of :func:`dcbench.stats.seed_scores`; ``designs`` maps (task, method)
    to its recorded :class:`SeedDesign` (None: no design recorded, every pair keeps Welch). Which
    test a pair gets is decided from the designs alone, before any score is read.
    ``family_size`` (the same on every row) counts the tested rows; untested rows keep p = NaN and
    stay outside the family. ``detectable_diff`` is the difference the row's test detects with 80%
    power at ``alpha_first_step`` = α / family size. Ties for the best mean go to the
    alphabetically first method so the choice is deterministic.
    """
    rows = []
    for task, task_scores in with_task_keys(scores).groupby(list(TASK_KEYS), sort=True):
        samples = {
            method: group.set_index("synth_seed")["score"] for method, group in task_scores.groupby("method", sort=True)
        }
        means = {method: sample.mean() for method, sample in samples.items()}
        best = min(samples, key=lambda method: (-means[method], method))
        for method_a, method_b, kind in planned_pairs(list(samples), best, reference):
            decided = _pairing(designs, task, method_a, method_b)
            a, b = samples[method_a], samples[method_b]
            result = compare_samples(a, b, decided.paired, confidence)
            rows.append(
                dict(zip(TASK_KEYS, task))
                | {"method_a": method_a, "method_b": method_b, "kind": kind}
                | asdict(result)
                | {"pairing": decided.reason, "_se": _standard_error(a, b, decided.paired)}
            )
    comparisons = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "_se"])
    comparisons["p_adj"] = holm(comparisons["p_raw"])
    comparisons["adj_method"] = "holm"
    family = int(comparisons["p_raw"].notna().sum())
    comparisons["family_size"] = family
    comparisons["significant"] = (comparisons["p_adj"] < alpha).astype(bool)
    comparisons["alpha_first_step"] = alpha / max(family, 1)
    comparisons["detectable_diff"] = [
        detectable_difference(se, df, alpha / max(family, 1), POWER) if np.isfinite(p) else np.nan
        for (se, df), p in zip(comparisons["_se"], comparisons["p_raw"])
    ]
    return comparisons.drop(columns="_se")


def _pairing(
    designs: Mapping[tuple[tuple[object, ...], str], SeedDesign] | None,
    task: tuple[object, ...],
    method_a: str,
    method_b: str,
) -> Pairing:
    if designs is None or (task, method_a) not in designs or (task, method_b) not in designs:
        return Pairing(False, "Welch: the design (initial images, evaluation seeds) is not recorded")
    return pairing(method_a, designs[(task, method_a)], method_b, designs[(task, method_b)])


def _standard_error(a: pd.Series, b: pd.Series, paired: bool) -> tuple[float, float]:
    """(standard error, df) of the test that runs on these per-seed scores."""
    if paired:
        seeds = sorted(a.index)
        differences = a.loc[seeds].to_numpy() - b.loc[seeds].to_numpy()
        return paired_standard_error(float(np.std(differences, ddof=1)) if len(seeds) > 1 else np.nan, len(seeds))
    sd = [float(x.std(ddof=1)) if len(x) > 1 else np.nan for x in (a, b)]
    return welch_standard_error(sd[0], len(a), sd[1], len(b))


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
