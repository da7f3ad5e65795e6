"""Pairwise claims across tasks: Wilcoxon signed-rank on per-task differences, Holm over a family.

Pairwise tests use the two methods' own scores only, so a claim does not change when other methods
join the pool (unlike mean-rank post-hoc tests). Their family is decided from the design alone
(methods, number of tasks, reference), never from the outcomes: all pairs when Holm over all
pairs can reach α with the tasks at hand, else every method vs the reference when that can, else
no pairwise test. The smallest two-sided Wilcoxon p with N tasks is 2 / 2^N (every difference of
one sign), and the smallest Holm-adjusted p of m tests is m times that.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dcbench.stats.multiplicity import holm, smallest_holm_p

# Differences of cell means are rounded to this many decimals before ranking: float noise in a mean
# is ~1e-13, a real difference of one test image in 10 000 is 1e-2 accuracy points.
WILCOXON_DECIMALS = 6
ALL_PAIRS = "all_pairs"
VS_REFERENCE = "vs_reference"
WILCOXON_COLUMNS: tuple[str, ...] = (
    "method_a",
    "method_b",
    "n_tasks",
    "n_tested",
    "median_diff",
    "statistic",
    "p_method",
    "p_raw",
    "p_adj",
    "adj_method",
    "family",
    "family_size",
    "significant",
)


def smallest_wilcoxon_p(n_tasks: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p over n differences: 2 / 2^n (at most 1)."""
    return min(1.0, 2.0 / 2.0**n_tasks)


def tasks_needed(family_size: int, alpha: float) -> int:
    """Fewest tasks at which Holm over ``family_size`` Wilcoxon tests can give p_adj < alpha."""
    return max(1, math.floor(math.log2(2.0 * family_size / alpha)) + 1)


@dataclass(frozen=True)
class PairFamily:
    """A candidate family of across-task pairs and what it can reach with N tasks."""

    name: str  # ALL_PAIRS or VS_REFERENCE
    pairs: tuple[tuple[str, str], ...]  # (method_a, method_b); B is the reference
    n_tasks: int
    alpha: float

    @property
    def smallest_adjusted_p(self) -> float:
        return smallest_holm_p(len(self.pairs), smallest_wilcoxon_p(self.n_tasks))

    @property
    def tasks_needed(self) -> int:
        return tasks_needed(len(self.pairs), self.alpha)

    @property
    def reachable(self) -> bool:
        return bool(self.pairs) and self.smallest_adjusted_p < self.alpha


def candidate_families(methods: Sequence[str], n_tasks: int, reference: str | None, alpha: float) -> list[PairFamily]:
    """All pairs, then every method vs the reference (when there is one), in order of preference."""
    ordered = sorted(methods)
    families = [PairFamily(ALL_PAIRS, tuple(itertools.combinations(ordered, 2)), n_tasks, alpha)]
    if reference in ordered:
        pairs = tuple((method, reference) for method in ordered if method != reference)
        families.append(PairFamily(VS_REFERENCE, pairs, n_tasks, alpha))
    return families


def choose_family(families: Sequence[PairFamily]) -> PairFamily | None:
    """The first family whose Holm-adjusted p can reach α, or None."""
    return next((family for family in families if family.reachable), None)


def wilcoxon_across_tasks(
    matrix: pd.DataFrame, family: PairFamily, alpha: float = 0.05, decimals: int = WILCOXON_DECIMALS
) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank test on per-task differences for each pair of ``family``.

    Differences are rounded to ``decimals`` so that ties and zeros are real ones. Zero differences
    are dropped (Wilcoxon's method; ``n_tested`` counts the rest); scipy's exact distribution is
    used without ties or zeros, the exact sign-flip permutation distribution with them (up to 13
    tasks), the normal approximation beyond. A pair with no non-zero difference gets p = 1.
    """
    rows = []
    for method_a, method_b in family.pairs:
        differences = np.round((matrix[method_a] - matrix[method_b]).to_numpy(dtype=float), decimals)
        nonzero = differences[differences != 0.0]
        if nonzero.size == 0:
            statistic, p, p_method = np.nan, 1.0, "no non-zero difference"
        else:
            _, counts = np.unique(np.abs(nonzero), return_counts=True)
            ties_or_zeros = nonzero.size < differences.size or bool((counts > 1).any())
            p_method = (
                "exact"
                if not ties_or_zeros
                else "exact sign-flip"
                if differences.size <= 13
                else "normal approximation"
            )
            result = stats.wilcoxon(differences)
            statistic, p = float(result.statistic), float(result.pvalue)
        rows.append(
            {
                "method_a": method_a,
                "method_b": method_b,
                "n_tasks": differences.size,
                "n_tested": int(nonzero.size),
                "median_diff": float(np.median(differences)),
                "statistic": statistic,
                "p_method": p_method,
                "p_raw": p,
            }
        )
    table = pd.DataFrame(rows, columns=list(WILCOXON_COLUMNS[:8]))
    table["p_adj"] = holm(table["p_raw"])
    table["adj_method"] = "holm"
    table["family"] = family.name
    table["family_size"] = len(table)
    table["significant"] = (table["p_adj"] < alpha).astype(bool)
    return table
