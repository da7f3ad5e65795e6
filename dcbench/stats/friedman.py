"""Ranks across tasks: the Friedman test with an exact or permutation p, and the Nemenyi post-hoc.

With N tasks and k methods the Friedman χ² and the Iman–Davenport F are large-sample
approximations; at the handful of tasks of a condensation benchmark they can be far off (with 2
tasks and 3 methods in the same order F is infinite while the exact p is 1/6). So the p to read is
computed from the permutation distribution itself: under H0 every ordering of the methods within a
task is equally likely. It is exact (every ordering enumerated) while that is small enough, else a
Monte Carlo permutation p from a seeded generator. χ² and F are added only where Demšar's (2006)
rule of thumb says their approximation holds: N > 10 and k > 5.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from dcbench.stats.cells import TASK_KEYS, with_task_keys

APPROXIMATION_MIN_TASKS = 11  # N > 10
APPROXIMATION_MIN_METHODS = 6  # k > 5
EXACT_MAX_STATES = 1_000_000  # rank-sum vectors expanded at once by the exact enumeration
PERMUTATIONS = 100_000  # Monte Carlo permutations when the enumeration is too large
PERMUTATION_SEED = 20_060_101  # fixed, so the permutation p is reproducible
NEMENYI_MIN_TASKS = 5  # below it the mean-rank normal approximation is too rough
# (autorank refuses fewer than 5 tasks as well)
NEMENYI_COLUMNS: tuple[str, ...] = (
    "method_a",
    "method_b",
    "mean_rank_a",
    "mean_rank_b",
    "rank_diff",
    "q",
    "p_adj",
    "adj_method",
    "significant",
)


def task_score_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """Tasks x methods matrix of cell means (NaN where a method has no cell in a task)."""
    return with_task_keys(cells).pivot_table(
        index=list(TASK_KEYS), columns="method", values="mean", aggfunc="first", sort=True
    )


def rank_within_tasks(matrix: pd.DataFrame) -> pd.DataFrame:
    """Rank methods within each task: highest score = rank 1, ties get the average rank."""
    ranks = stats.rankdata(-matrix.to_numpy(dtype=float), axis=1, method="average")
    return pd.DataFrame(ranks, index=matrix.index, columns=matrix.columns)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman's test over N tasks x k methods.

    ``p`` is the one to read (``p_method``: "exact" or "permutation"); ``p_chi2`` and the
    Iman–Davenport ``f`` / ``p_f`` are NaN unless ``approximations_hold``. ``f`` is infinite and
    ``p_f`` NaN when every task orders the methods the same way (the F approximation breaks there).
    """

    k: int
    n_tasks: int
    chi2: float
    p: float
    p_method: str
    permutations: int
    approximations_hold: bool
    p_chi2: float
    f: float
    p_f: float


def _doubled_ranks(scores: np.ndarray) -> np.ndarray:
    """Within-task ranks times two, as integers (average ranks of ties are halves)."""
    ranks = stats.rankdata(-scores, axis=1, method="average")
    return np.rint(2.0 * ranks).astype(np.int64)


def _sum_of_squared_rank_sums(doubled: np.ndarray) -> np.ndarray:
    """The part of Friedman's statistic that varies under within-task permutations."""
    return (doubled.sum(axis=-2) ** 2).sum(axis=-1)


def friedman_exact_p(scores: np.ndarray, max_states: int = EXACT_MAX_STATES) -> float | None:
    """P(statistic >= observed) over every within-task ordering; None if the enumeration is too big.

    The rank-sum vector is built task by task as a distribution over states. Because relabelling
    the methods leaves the statistic unchanged and each task's ordering is uniform, a state can be
    stored sorted, which keeps the enumeration small (k = 7, N = 2: 5040 orderings, one state).
    Ties are handled exactly: a tied task's distinct orderings are equally likely.
    """
    doubled = _doubled_ranks(np.asarray(scores, dtype=float))
    n_tasks, k = doubled.shape
    observed = _sum_of_squared_rank_sums(doubled)
    states = np.zeros((1, k), dtype=np.int64)
    probabilities: np.ndarray = np.ones(1)
    base = int(doubled.max()) * n_tasks + 1  # every doubled rank sum is below it
    if np.prod(np.arange(1, k + 1, dtype=float)) > max_states or float(base) ** k >= 2.0**62:
        return None
    for row in doubled:
        orderings = np.array(sorted(set(itertools.permutations(row.tolist()))), dtype=np.int64)
        if len(states) * len(orderings) > max_states:
            return None
        expanded = np.sort((states[:, None, :] + orderings[None, :, :]).reshape(-1, k), axis=1)
        weights = np.repeat(probabilities / len(orderings), len(orderings))
        _, first, inverse = np.unique(_row_keys(expanded, base), return_index=True, return_inverse=True)
        states = expanded[first]
        probabilities = np.bincount(inverse.ravel(), weights=weights, minlength=len(states))
    at_least = _sum_of_squared_rank_sums(states[:, None, :]) >= observed
    return float(min(1.0, probabilities[at_least].sum()))


def _row_keys(rows: np.ndarray, base: int) -> np.ndarray:
    """One integer per row of non-negative integers below ``base`` (for a fast 1-D unique)."""
    return rows @ (base ** np.arange(rows.shape[1], dtype=np.int64))


def friedman_permutation_p(
    scores: np.ndarray, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED, chunk: int = 5_000
) -> float:
    """Monte Carlo permutation p: (1 + #{permuted >= observed}) / (1 + permutations).

    Each permutation reorders every task's ranks independently (numpy Generator, fixed seed).
    """
    doubled = _doubled_ranks(np.asarray(scores, dtype=float))
    observed = _sum_of_squared_rank_sums(doubled)
    generator = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        shuffled = generator.permuted(np.broadcast_to(doubled, (size, *doubled.shape)), axis=2)
        at_least += int((_sum_of_squared_rank_sums(shuffled) >= observed).sum())
    return (1.0 + at_least) / (1.0 + permutations)


def friedman_test(
    scores: np.ndarray,
    max_states: int = EXACT_MAX_STATES,
    permutations: int = PERMUTATIONS,
    seed: int = PERMUTATION_SEED,
) -> FriedmanResult:
    """Friedman test over an N tasks x k methods score matrix (k >= 3, N >= 2), else all NaN.

    χ² is scipy's (tie-corrected). When every task ties all methods the statistic is 0/0: NaN.
    """
    scores = np.asarray(scores, dtype=float)
    n_tasks, k = scores.shape
    nothing = FriedmanResult(k, n_tasks, np.nan, np.nan, "", 0, False, np.nan, np.nan, np.nan)
    if k < 3 or n_tasks < 2:
        return nothing
    with np.errstate(invalid="ignore", divide="ignore"):  # every task fully tied: chi2 = 0/0
        chi2, p_chi2 = stats.friedmanchisquare(*scores.T)
    chi2, p_chi2 = float(chi2), float(p_chi2)
    if not np.isfinite(chi2):
        return nothing
    p = friedman_exact_p(scores, max_states)
    p_method, used_permutations = "exact", 0
    if p is None:
        p = friedman_permutation_p(scores, permutations, seed)
        p_method, used_permutations = "permutation", permutations
    hold = n_tasks >= APPROXIMATION_MIN_TASKS and k >= APPROXIMATION_MIN_METHODS
    f = p_f = np.nan
    if hold:
        denominator = n_tasks * (k - 1) - chi2
        if denominator <= 1e-9 * n_tasks * (k - 1):  # every task in the same order: F = c / 0
            f = np.inf
        else:
            f = (n_tasks - 1) * chi2 / denominator
            p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n_tasks - 1)))
    return FriedmanResult(
        k, n_tasks, chi2, p, p_method, used_permutations, hold, p_chi2 if hold else np.nan, float(f), p_f
    )


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test: studentized range (k, inf) / sqrt(2)."""
    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def _rank_sd(k: int, n_tasks: int) -> float:
    """Standard error of a difference of two mean ranks under H0: sqrt(k(k+1) / (6N))."""
    return float(np.sqrt(k * (k + 1) / (6.0 * n_tasks)))


def nemenyi_cd(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks, CD = q_alpha sqrt(k(k+1) / (6N)) (Demšar 2006)."""
    return nemenyi_q(k, alpha) * _rank_sd(k, n_tasks)


def nemenyi_posthoc(matrix: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Nemenyi's all-pairs test on mean ranks (the test the CD diagram draws).

    q = |mean rank A − mean rank B| / sqrt(k(k+1) / (6N)); p = P(studentized range(k, ∞) >
    q sqrt(2)), which controls the family-wise error over all pairs by itself. A vs B depends on
    the other methods in the pool (Benavoli et al. 2016), so it complements, not replaces, the
    pairwise Wilcoxon tests.
    """
    n_tasks, k = matrix.shape
    mean_ranks = rank_within_tasks(matrix).mean()
    rows = []
    for method_a, method_b in itertools.combinations(matrix.columns, 2):
        difference = float(mean_ranks[method_a] - mean_ranks[method_b])
        q = abs(difference) / _rank_sd(k, n_tasks)
        p = float(stats.studentized_range.sf(q * np.sqrt(2.0), k, np.inf)) if q > 0 else 1.0
        rows.append(
            {
                "method_a": method_a,
                "method_b": method_b,
                "mean_rank_a": float(mean_ranks[method_a]),
                "mean_rank_b": float(mean_ranks[method_b]),
                "rank_diff": difference,
                "q": q,
                "p_adj": min(1.0, p),
                "adj_method": "nemenyi",
            }
        )
    table = pd.DataFrame(rows, columns=list(NEMENYI_COLUMNS))
    table["significant"] = (table["p_adj"] < alpha).astype(bool)
    return table


def omnibus_tests(matrix: pd.DataFrame, alpha: float = 0.05) -> dict[str, object]:
    """One omnibus row: k, N, Friedman (the p to read and the approximations) and the Nemenyi CD."""
    n_tasks, k = matrix.shape
    friedman = friedman_test(matrix.to_numpy(dtype=float))
    return {
        "k": k,
        "N": n_tasks,
        "friedman_chi2": friedman.chi2,
        "p": friedman.p,
        "p_method": friedman.p_method,
        "permutations": friedman.permutations,
        "approximations_hold": friedman.approximations_hold,
        "p_chi2": friedman.p_chi2,
        "iman_davenport_F": friedman.f,
        "p_F": friedman.p_f,
        "nemenyi_cd": nemenyi_cd(k, n_tasks, alpha) if k >= 2 and n_tasks >= 1 else np.nan,
        "alpha": alpha,
    }
