"""What a comparison could have seen: the smallest detectable difference and the seeds it needs.

A "not significant" row says nothing unless the reader knows how large a difference the test could
have found. For a two-sided t-test at level α with the spread the grid measured, the smallest
detectable difference (MDD) is the true difference the test finds with the given power (80% by
convention), computed from the noncentral t distribution:

* paired t on n seeds with differences of SD s_d: standard error s_d / √n, df = n − 1;
* Welch t with SDs s_a, s_b on n_a, n_b seeds: standard error √(s_a²/n_a + s_b²/n_b) and the
  Welch–Satterthwaite df.

The level is the comparison's Holm level at its first step, α / m for a family of m tests (the
level a comparison must reach whatever the other p-values are): it does not depend on outcomes.
The variance decomposition says where precision comes from: between seeds (which real images a
seed starts from, the method's own randomness) or between the evaluation networks of one seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

POWER = 0.8


def t_power(difference: float, standard_error: float, df: float, alpha: float) -> float:
    """Power of a two-sided t-test at level ``alpha`` when the true difference is ``difference``."""
    critical = stats.t.ppf(1.0 - alpha / 2.0, df)
    noncentrality = difference / standard_error
    upper = stats.nct.sf(critical, df, noncentrality)
    # the wrong-direction tail: negligible for a positive difference, and scipy's nct returns NaN
    # far out in it, where it is below 1e-12
    lower = np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality), nan=0.0)
    return float(upper + lower)


def detectable_difference(standard_error: float, df: float, alpha: float, power: float = POWER) -> float:
    """The true difference a two-sided t-test of this standard error and df detects with
    probability ``power`` at level ``alpha`` (NaN when the test is undefined)."""
    if not (np.isfinite(standard_error) and standard_error > 0 and np.isfinite(df) and df > 0 and 0 < alpha < 1):
        return math.nan
    if power <= alpha:
        return 0.0
    upper = standard_error
    while t_power(upper, standard_error, df, alpha) < power:
        upper *= 2.0
    return float(optimize.brentq(lambda d: t_power(d, standard_error, df, alpha) - power, 0.0, upper, xtol=1e-10))


def paired_standard_error(sd_differences: float, n: int) -> tuple[float, float]:
    """(standard error, df) of a paired t on ``n`` differences of SD ``sd_differences``."""
    return (sd_differences / math.sqrt(n), float(n - 1)) if n >= 2 else (math.nan, math.nan)


def welch_standard_error(sd_a: float, n_a: int, sd_b: float, n_b: int) -> tuple[float, float]:
    """(standard error, Welch–Satterthwaite df) of Welch's t."""
    if n_a < 2 or n_b < 2:
        return math.nan, math.nan
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    if va + vb == 0:
        return 0.0, math.nan
    return math.sqrt(va + vb), (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))


def seeds_needed(
    sd_differences: float, target: float, alpha: float, power: float = POWER, max_seeds: int = 1000
) -> int | None:
    """The fewest seeds at which a paired t detects ``target`` points with ``power`` at ``alpha``
    (None beyond ``max_seeds`` or without a spread)."""
    if not (np.isfinite(sd_differences) and sd_differences > 0):
        return None
    for n in range(2, max_seeds + 1):
        if detectable_difference(*paired_standard_error(sd_differences, n), alpha, power) <= target:
            return n
    return None


def variance_components(frame: pd.DataFrame, value: str, seed: str = "synth_seed") -> dict[str, float]:
    """One-way random-effects decomposition of ``value`` by seed (the method of moments).

    ``frame`` holds one row per evaluation network of one cell (or one paired difference per
    network). Returns ``between_seeds`` (variance of the seed effect), ``within_seed`` (variance
    between the evaluation networks of one seed), ``models`` (networks per seed, the harmonic mean
    when unequal) and ``seeds``; ``between_seeds`` is clipped at 0, as the moment estimate can be
    negative when the seeds agree more than their networks do.
    """
    groups = frame.groupby(seed)[value]
    sizes = groups.size()
    seeds = int(len(sizes))
    if seeds < 2 or (sizes < 2).any():
        return {"between_seeds": math.nan, "within_seed": math.nan, "models": math.nan, "seeds": seeds}
    models = float(stats.hmean(sizes.to_numpy()))
    within = float(groups.var(ddof=1).mean())
    between = max(0.0, float(groups.mean().var(ddof=1)) - within / models)
    return {"between_seeds": between, "within_seed": within, "models": models, "seeds": seeds}


def mean_variance(components: dict[str, float], seeds: int, models: int) -> float:
    """Variance of a grid mean over ``seeds`` seeds of ``models`` networks each."""
    return (components["between_seeds"] + components["within_seed"] / models) / seeds
