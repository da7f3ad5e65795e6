"""Two methods within one task: Welch or paired t on per-seed scores, with a named effect size.

Welch does not assume equal variances across methods, and unlike rank tests it can reach p < .05
with 3 seeds per method. Paired t is for methods whose cells of a seed share their randomness
(common random numbers: the same initial images and evaluation networks), which the recorded design
decides (:mod:`dcbench.stats.design`).

Effect sizes follow pingouin's definitions (``compute_effsize(..., eftype="hedges")``), and every
result names the kind it holds, because the two are on different footings:

* ``hedges_g`` (independent samples): (mean A − mean B) / pooled SD (ddof 1), times
  J = 1 − 3 / (4(n_a + n_b) − 9).
* ``g_av`` (paired samples): (mean A − mean B) / sqrt((var A + var B) / 2), the same correction.
  Standardising by the raw-score SD (Cumming 2012) keeps paired rows on the scale of the Welch
  rows; d_z (the SD of the differences) would grow without bound as the pairing gets tighter.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

HEDGES_G = "hedges_g"
G_AV = "g_av"
EFFECT_SIZE_KINDS = {
    HEDGES_G: "Hedges' g: difference over the pooled SD, small-sample corrected",
    G_AV: "g_av: difference over the average of the two SDs, small-sample corrected (paired)",
}


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
    effect_size: float
    effect_size_kind: str

    @classmethod
    def untestable(
        cls, test: str, paired: bool, n_a: int, n_b: int, diff: float, effect_size_kind: str
    ) -> TwoSampleTest:
        """The difference alone, for samples a t-test cannot judge (NaN for everything else)."""
        nan = float("nan")
        return cls(
            test,
            paired,
            n_a,
            n_b,
            diff,
            diff_ci_low=nan,
            diff_ci_high=nan,
            statistic=nan,
            df=nan,
            p_raw=nan,
            effect_size=nan,
            effect_size_kind=effect_size_kind,
        )


def _small_sample_correction(n_a: int, n_b: int) -> float:
    """Hedges' J as pingouin applies it: 1 − 3 / (4(n_a + n_b) − 9)."""
    return 1.0 - 3.0 / (4.0 * (n_a + n_b) - 9.0)


def hedges_g(a: ArrayLike, b: ArrayLike) -> float:
    """Independent samples: (mean A − mean B) / pooled SD, times J. NaN without spread."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n_a, n_b = a.size, b.size
    if n_a < 2 or n_b < 2:
        return np.nan
    pooled_var = ((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2)
    if pooled_var == 0.0:
        return np.nan
    d = (a.mean() - b.mean()) / np.sqrt(pooled_var)
    return float(d * _small_sample_correction(n_a, n_b))


def g_av(a: ArrayLike, b: ArrayLike) -> float:
    """Paired samples: (mean A − mean B) / sqrt((var A + var B) / 2), times J; NaN if no spread."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or a.size != b.size:
        return np.nan
    average_var = (a.var(ddof=1) + b.var(ddof=1)) / 2.0
    if average_var == 0.0:
        return np.nan
    d_av = (a.mean() - b.mean()) / np.sqrt(average_var)
    return float(d_av * _small_sample_correction(a.size, b.size))


def _snap_constant(x: np.ndarray) -> np.ndarray:
    """A sample whose spread is float noise (below 1e-9 of its scale) made exactly constant."""
    if x.size and np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())):
        return np.full_like(x, x.mean())
    return x


def welch_t(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> TwoSampleTest:
    """Welch's unequal-variance t-test with the CI of the difference of means.

    Untestable samples (fewer than two values in a group, or no variance at all) give NaN
    statistics rather than scipy warnings. A group that is constant up to float noise is made
    exactly constant; Welch with one constant group is then a one-sample t on the other, and
    scipy's "precision loss" warning about the constant group is spurious and silenced.
    """
    a, b = (_snap_constant(np.asarray(x, dtype=float)) for x in (a, b))
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2 or a.var(ddof=1) + b.var(ddof=1) == 0.0:
        return TwoSampleTest.untestable("welch_t", False, a.size, b.size, diff, HEDGES_G)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "Precision loss occurred in moment calculation", RuntimeWarning
        )  # spurious for an exactly constant group
        result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(confidence_level=confidence)
    return TwoSampleTest(
        "welch_t",
        False,
        a.size,
        b.size,
        diff,
        float(ci.low),
        float(ci.high),
        float(result.statistic),
        float(result.df),
        float(result.pvalue),
        hedges_g(a, b),
        HEDGES_G,
    )


def paired_t(a: ArrayLike, b: ArrayLike, confidence: float = 0.95) -> TwoSampleTest:
    """Paired t-test on seed-aligned samples (a[i] and b[i] share synthesis seed i).

    Only worth it under common random numbers: without a real per-seed correlation, pairing
    halves the degrees of freedom and loses power, so it is opt-in.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    differences = _snap_constant(a - b)
    diff = float(differences.mean())
    if differences.size < 2 or differences.std(ddof=1) == 0.0:
        return TwoSampleTest.untestable("paired_t", True, a.size, b.size, diff, G_AV)
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(confidence_level=confidence)
    return TwoSampleTest(
        "paired_t",
        True,
        a.size,
        b.size,
        diff,
        float(ci.low),
        float(ci.high),
        float(result.statistic),
        float(result.df),
        float(result.pvalue),
        g_av(a, b),
        G_AV,
    )


def compare_samples(a: pd.Series, b: pd.Series, paired: bool = False, confidence: float = 0.95) -> TwoSampleTest:
    """Test per-seed scores of A vs B (Series indexed by synth_seed).

    Pairing is used only when asked for and when both methods ran exactly the same seeds;
    otherwise Welch's test, which needs no alignment.
    """
    if paired and set(a.index) == set(b.index):
        seeds = sorted(a.index)
        return paired_t(a.loc[seeds].to_numpy(), b.loc[seeds].to_numpy(), confidence)
    return welch_t(a.to_numpy(), b.to_numpy(), confidence)
