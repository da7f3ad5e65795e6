"""Statistics for comparing condensation methods over seeds and tasks.

The protocol is fixed in advance (reference/style_and_stats.md, Part B) so that no test is chosen
after seeing the data:

* The unit of replication is the synthesis seed: evaluation models trained on one synthetic set
  share that set's luck, so they are averaged within the seed before any inference.
* Within a task, methods are compared with two-sided Welch t-tests (paired t only on request and
  only when the seed lists match), each with the CI of the difference and Hedges' g, and Holm's
  step-down over every comparison of the report.
* Across tasks: mean ranks, Friedman + Iman–Davenport, the Nemenyi critical difference (for the CD
  diagram only), and pairwise Wilcoxon signed-rank tests with Holm once there are enough tasks for
  them to reach significance; otherwise win/tie/loss counts against the reference.

Everything here is pure (numpy / scipy / pandas, no I/O). Scores are in whatever unit the caller
passes; dcbench's report passes accuracy in percent.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

TASK_KEYS: tuple[str, ...] = ("dataset", "ipc", "eval_arch")
CELL_KEYS: tuple[str, ...] = ("method", *TASK_KEYS)

# Two-sided Wilcoxon signed-rank cannot go below p = 2/2^N: N = 5 gives .0625, N = 6 gives .031.
MIN_TASKS_FOR_WILCOXON = 6

CELL_SUMMARY_COLUMNS: tuple[str, ...] = (
    *CELL_KEYS, "n_seeds", "n_evals", "mean", "sd", "sd_ddof", "sem", "ci_low", "ci_high",
    "ci_method", "median", "min", "max", "pooled_mean", "pooled_sd", "pooled_sd_ddof",
    "within_seed_sd",
)
COMPARISON_COLUMNS: tuple[str, ...] = (
    *TASK_KEYS, "method_a", "method_b", "kind", "test", "paired", "n_a", "n_b", "diff",
    "diff_ci_low", "diff_ci_high", "statistic", "df", "p_raw", "p_adj", "adj_method",
    "family_size", "hedges_g", "significant",
)


# --------------------------------------------------------------------------------------------
# One cell


def t_interval(values: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean.

    At 3–10 seeds bootstrap intervals undercover badly (74–90% for a nominal 95%); the
    t-interval keeps its coverage. Undefined (NaN, NaN) with fewer than two values.
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return (np.nan, np.nan)
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / np.sqrt(x.size)
    if sem == 0.0:  # scipy rejects scale=0; a constant sample has a zero-width interval
        return (mean, mean)
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return (float(low), float(high))


def summarize_cell(evaluations: pd.DataFrame, value: str,
                   confidence: float = 0.95) -> dict[str, object]:
    """Summary of one cell from its evaluation rows (one row per evaluation model).

    Inference statistics use the per-seed means; the pooled mean and ddof=0 SD over all evaluation
    models reproduce what DC/DM-style papers print and are flagged as such.
    """
    by_seed = evaluations.groupby("synth_seed")[value]
    seed_means = by_seed.mean().to_numpy(dtype=float)
    n_seeds = seed_means.size
    sd = float(seed_means.std(ddof=1)) if n_seeds > 1 else np.nan
    ci_low, ci_high = t_interval(seed_means, confidence)
    pooled = evaluations[value].to_numpy(dtype=float)
    # Root of the mean within-seed variance: the evaluation-init noise, kept as a diagnostic.
    within_seed_var = by_seed.var(ddof=1).mean()
    return {
        "n_seeds": n_seeds,
        "n_evals": pooled.size,
        "mean": float(seed_means.mean()),
        "sd": sd,
        "sd_ddof": 1,
        "sem": sd / np.sqrt(n_seeds),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_method": f"t{round(confidence * 100)}",
        "median": float(np.median(seed_means)),
        "min": float(seed_means.min()),
        "max": float(seed_means.max()),
        "pooled_mean": float(pooled.mean()),
        "pooled_sd": float(pooled.std(ddof=0)),
        "pooled_sd_ddof": 0,
        "within_seed_sd": float(np.sqrt(within_seed_var)),
    }


def summarize_cells(runs: pd.DataFrame, value: str, confidence: float = 0.95) -> pd.DataFrame:
    """One summary row per cell (method, dataset, ipc, eval_arch); columns CELL_SUMMARY_COLUMNS."""
    rows = [
        dict(zip(CELL_KEYS, cell)) | summarize_cell(evaluations, value, confidence)
        for cell, evaluations in runs.groupby(list(CELL_KEYS), sort=True)
    ]
    return pd.DataFrame(rows, columns=list(CELL_SUMMARY_COLUMNS))


def seed_scores(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per-seed mean score of every cell: the observations all tests are run on."""
    return (
        runs.groupby([*CELL_KEYS, "synth_seed"], sort=True)[value]
        .mean()
        .rename("score")
        .reset_index()
    )


# --------------------------------------------------------------------------------------------
# Two methods within a task


@dataclass(frozen=True)
class TwoSampleTest:
    """A two-sided t-test of method A vs method B; diff = mean(A) - mean(B)."""

    test: str
    paired: bool
    n_a: int
    n_b: int
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    statistic: float
    df: float
    p_raw: float
    hedges_g: float

    @classmethod
    def untestable(cls, test: str, paired: bool, n_a: int, n_b: int, diff: float) -> TwoSampleTest:
        """The difference alone, for samples a t-test cannot judge (NaN for everything else)."""
        return cls(test, paired, n_a, n_b, diff, *[np.nan] * 6)


def hedges_g(a: ArrayLike, b: ArrayLike) -> float:
    """Standardised mean difference (A - B) / pooled SD with the small-sample correction.

    Cohen's d overstates the effect at a handful of seeds; g = d * (1 - 3 / (4(n_a + n_b) - 9)).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = a.size, b.size
    if n_a < 2 or n_b < 2:
        return np.nan
    pooled_var = ((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2)
    if pooled_var == 0.0:
        return np.nan
    d = (a.mean() - b.mean()) / np.sqrt(pooled_var)
    return float(d * (1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)))


def hedges_g_paired(differences: ArrayLike) -> float:
    """Paired effect size d_z = mean(d) / SD(d), with the same correction at df = n - 1."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2 or d.std(ddof=1) == 0.0:
        return np.nan
    d_z = d.mean() / d.std(ddof=1)
    return float(d_z * (1.0 - 3.0 / (4.0 * (d.size - 1) - 1.0)))


def welch_t(a: ArrayLike, b: ArrayLike,
            confidence: float = 0.95) -> TwoSampleTest:
    """Welch's unequal-variance t-test with the CI of the difference of means.

    The default test: it does not assume equal variances across methods, and unlike rank tests it
    can reach p < .05 with 3 seeds per method. Untestable samples (fewer than two values in a
    group, or no variance at all) give NaN statistics rather than scipy warnings.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2 or a.var(ddof=1) + b.var(ddof=1) == 0.0:
        return TwoSampleTest.untestable("welch_t", False, a.size, b.size, diff)
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(confidence_level=confidence)
    return TwoSampleTest("welch_t", False, a.size, b.size, diff, float(ci.low), float(ci.high),
                         float(result.statistic), float(result.df), float(result.pvalue),
                         hedges_g(a, b))


def paired_t(a: ArrayLike, b: ArrayLike,
             confidence: float = 0.95) -> TwoSampleTest:
    """Paired t-test on seed-aligned samples (a[i] and b[i] share synthesis seed i).

    Only worth it under common random numbers: without a real per-seed correlation, pairing
    halves the degrees of freedom and loses power, so it is opt-in.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    differences = a - b
    diff = float(differences.mean())
    if differences.size < 2 or differences.std(ddof=1) == 0.0:
        return TwoSampleTest.untestable("paired_t", True, a.size, b.size, diff)
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(confidence_level=confidence)
    return TwoSampleTest("paired_t", True, a.size, b.size, diff, float(ci.low), float(ci.high),
                         float(result.statistic), float(result.df), float(result.pvalue),
                         hedges_g_paired(differences))


def compare_samples(a: pd.Series, b: pd.Series, paired: bool = False,
                    confidence: float = 0.95) -> TwoSampleTest:
    """Test per-seed scores of A vs B (Series indexed by synth_seed).

    Pairing is used only when asked for and when both methods ran exactly the same seeds;
    otherwise Welch's test, which needs no alignment.
    """
    if paired and set(a.index) == set(b.index):
        seeds = sorted(a.index)
        return paired_t(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy(), confidence)
    return welch_t(a.to_numpy(), b.to_numpy(), confidence)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values (valid under any dependence between the tests).

    Sorted ascending, the i-th smallest of m p-values is scaled by (m - i); a running maximum keeps
    the adjusted values in the same order as the raw ones, and they are clipped at 1. NaN p-values
    (untestable comparisons) stay NaN and are not counted in m.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.size
    order = tested[np.argsort(p[tested], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def planned_pairs(methods: Sequence[str], best: str,
                  reference: str | None) -> Iterator[tuple[str, str, str]]:
    """(method_a, method_b, kind) for every method vs the best, then vs the reference.

    A pair is tested once: if {A, B} is both a vs-best and a vs-reference pair (the reference is
    the best, or the best is compared with the reference) it is kept as the vs-best row, oriented
    A = the other method, B = the best.
    """
    tested: set[frozenset[str]] = set()
    for kind, target in (("vs_best", best), ("vs_reference", reference)):
        if target not in methods:
            continue
        for method in methods:
            pair = frozenset((method, target))
            if method != target and pair not in tested:
                tested.add(pair)
                yield method, target, kind


def compare_within_tasks(scores: pd.DataFrame, reference: str | None, alpha: float = 0.05,
                         paired: bool = False, confidence: float = 0.95) -> pd.DataFrame:
    """Every method vs the best (by mean) and vs the reference, in every task, Holm over all.

    ``scores`` is the output of :func:`seed_scores`. The family for Holm is every distinct pair
    tested in the report, so ``family_size`` is the same on every row. Ties for the best mean go
    to the alphabetically first method so the choice is deterministic.
    """
    rows = []
    for task, task_scores in scores.groupby(list(TASK_KEYS), sort=True):
        samples = {method: group.set_index("synth_seed")["score"]
                   for method, group in task_scores.groupby("method", sort=True)}
        means = {method: sample.mean() for method, sample in samples.items()}
        best = min(samples, key=lambda method: (-means[method], method))
        for method_a, method_b, kind in planned_pairs(list(samples), best, reference):
            result = compare_samples(samples[method_a], samples[method_b], paired, confidence)
            rows.append(dict(zip(TASK_KEYS, task)) | {
                "method_a": method_a, "method_b": method_b, "kind": kind} | asdict(result))
    comparisons = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    comparisons["p_adj"] = holm(comparisons["p_raw"])
    comparisons["adj_method"] = "holm"
    comparisons["family_size"] = int(comparisons["p_raw"].notna().sum())
    comparisons["significant"] = (comparisons["p_adj"] < alpha).astype(bool)
    return comparisons


# --------------------------------------------------------------------------------------------
# Across tasks


def task_score_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """Tasks x methods matrix of cell means (NaN where a method has no cell in a task)."""
    return cells.pivot_table(index=list(TASK_KEYS), columns="method", values="mean",
                             aggfunc="first", sort=True)


def rank_within_tasks(matrix: pd.DataFrame) -> pd.DataFrame:
    """Rank methods within each task: highest score = rank 1, ties get the average rank."""
    ranks = stats.rankdata(-matrix.to_numpy(dtype=float), axis=1, method="average")
    return pd.DataFrame(ranks, index=matrix.index, columns=matrix.columns)


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman's chi-square and the Iman–Davenport F (less conservative) with their p-values."""

    chi2: float
    p: float
    f: float
    p_f: float


def friedman_iman_davenport(matrix: np.ndarray) -> FriedmanResult:
    """Friedman test over an N tasks x k methods score matrix (k >= 3, N >= 2).

    Iman–Davenport: F = (N-1) chi2 / (N(k-1) - chi2) on (k-1, (k-1)(N-1)) df. When every task
    orders the methods identically chi2 reaches N(k-1) and F is infinite (p_F = 0).
    """
    scores = np.asarray(matrix, dtype=float)
    n_tasks, k = scores.shape
    if k < 3 or n_tasks < 2:
        return FriedmanResult(np.nan, np.nan, np.nan, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # every task fully tied: chi2 = 0/0
        chi2, p = stats.friedmanchisquare(*scores.T)
    chi2, p = float(chi2), float(p)
    denominator = n_tasks * (k - 1) - chi2
    if not np.isfinite(chi2):
        f = p_f = np.nan
    elif denominator <= 0.0:
        f, p_f = np.inf, 0.0
    else:
        f = (n_tasks - 1) * chi2 / denominator
        p_f = float(stats.f.sf(f, k - 1, (k - 1) * (n_tasks - 1)))
    return FriedmanResult(chi2, p, float(f), p_f)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test: studentized range (k, inf) / sqrt(2)."""
    return float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf) / np.sqrt(2.0))


def nemenyi_cd(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Critical difference of mean ranks, CD = q_alpha sqrt(k(k+1) / (6N)) (Demšar 2006).

    Drawn on the CD diagram as a visual summary only: whether A and B differ in a mean-rank test
    depends on which other methods are in the pool (Benavoli et al. 2016).
    """
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n_tasks)))


def omnibus_tests(matrix: pd.DataFrame, alpha: float = 0.05) -> dict[str, float]:
    """One omnibus row: k, N, Friedman, Iman–Davenport and the Nemenyi CD (B7 column names)."""
    n_tasks, k = matrix.shape
    friedman = friedman_iman_davenport(matrix.to_numpy(dtype=float))
    return {
        "k": k,
        "N": n_tasks,
        "friedman_chi2": friedman.chi2,
        "p": friedman.p,
        "iman_davenport_F": friedman.f,
        "p_F": friedman.p_f,
        "nemenyi_cd": nemenyi_cd(k, n_tasks, alpha) if k >= 2 and n_tasks >= 1 else np.nan,
        "alpha": alpha,
    }


def wilcoxon_across_tasks(matrix: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Wilcoxon signed-rank test on per-task differences for every pair of methods, Holm over pairs.

    Pairwise claims across tasks use the two methods' own scores only, so they do not change when
    other methods join the pool (unlike mean-rank post-hoc tests). Zero differences are dropped
    (scipy's default); a pair with no non-zero difference gets p = 1.
    """
    rows = []
    for method_a, method_b in itertools.combinations(matrix.columns, 2):
        differences = (matrix[method_a] - matrix[method_b]).to_numpy(dtype=float)
        if np.all(differences == 0.0):
            statistic, p = np.nan, 1.0
        else:
            result = stats.wilcoxon(differences)
            statistic, p = float(result.statistic), float(result.pvalue)
        rows.append({"method_a": method_a, "method_b": method_b, "n_tasks": differences.size,
                     "median_diff": float(np.median(differences)), "statistic": statistic,
                     "p_raw": p})
    table = pd.DataFrame(rows, columns=["method_a", "method_b", "n_tasks", "median_diff",
                                        "statistic", "p_raw"])
    table["p_adj"] = holm(table["p_raw"])
    table["adj_method"] = "holm"
    table["family_size"] = len(table)
    table["significant"] = (table["p_adj"] < alpha).astype(bool)
    return table


def win_tie_loss(comparisons: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per method, the tasks where it beats / ties with / loses to the reference.

    A tie is a within-task comparison that is not significant after Holm; comparisons that could
    not be tested (fewer than two seeds, no variance) are counted apart as ``untested``.
    """
    outcomes = ["wins", "ties", "losses", "untested"]
    vs_reference = comparisons[(comparisons["method_a"] == reference)
                               | (comparisons["method_b"] == reference)]
    reference_is_a = (vs_reference["method_a"] == reference).to_numpy()
    method = np.where(reference_is_a, vs_reference["method_b"], vs_reference["method_a"])
    advantage = np.where(reference_is_a, -1.0, 1.0) * vs_reference["diff"].to_numpy(dtype=float)
    outcome = np.select(
        [vs_reference["p_adj"].isna().to_numpy(), ~vs_reference["significant"].to_numpy(dtype=bool),
         advantage > 0],
        ["untested", "ties", "wins"], default="losses")
    counts = pd.crosstab(pd.Series(method, name="method"), pd.Series(outcome, name="outcome"))
    return counts.reindex(columns=outcomes, fill_value=0).rename_axis(columns=None).reset_index()
