"""dcbench.stats.power and .design: detectable differences against statsmodels, the variance
decomposition by hand, and which pairs the design pairs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestIndPower, TTestPower

from dcbench import stats


@pytest.mark.parametrize("n, sd, alpha", [(3, 1.0, 0.05), (5, 0.4, 0.05 / 12), (10, 2.5, 0.01), (2, 1.0, 0.05)])
def test_paired_detectable_difference_matches_statsmodels(n: int, sd: float, alpha: float) -> None:
    ours = stats.detectable_difference(*stats.paired_standard_error(sd, n), alpha, 0.8)
    assert TTestPower().power(effect_size=ours / sd, nobs=n, alpha=alpha) == pytest.approx(0.8, abs=1e-6)
    assert stats.t_power(ours, sd / math.sqrt(n), n - 1, alpha) == pytest.approx(0.8, abs=1e-8)


def test_welch_detectable_difference_with_equal_groups_matches_the_pooled_t_of_statsmodels() -> None:
    # equal n and SD: Welch's SE and df are those of the pooled t (2n - 2)
    se, df = stats.welch_standard_error(1.5, 6, 1.5, 6)
    assert df == pytest.approx(10.0)
    ours = stats.detectable_difference(se, df, 0.05)
    assert TTestIndPower().power(effect_size=ours / 1.5, nobs1=6, ratio=1.0, alpha=0.05) == pytest.approx(0.8, abs=1e-6)


def test_welch_satterthwaite_df_by_hand() -> None:
    se, df = stats.welch_standard_error(1.0, 3, 2.0, 5)
    va, vb = 1 / 3, 4 / 5
    assert se == pytest.approx(math.sqrt(va + vb))
    assert df == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 4))


def test_undefined_tests_have_no_detectable_difference() -> None:
    assert math.isnan(stats.detectable_difference(*stats.paired_standard_error(1.0, 1), 0.05))
    assert math.isnan(stats.detectable_difference(0.0, 4.0, 0.05))


def test_seeds_needed_is_the_first_n_that_reaches_the_target() -> None:
    n = stats.seeds_needed(1.5, 1.0, 0.05 / 6)
    assert n is not None
    mdd = [stats.detectable_difference(*stats.paired_standard_error(1.5, k), 0.05 / 6) for k in (n - 1, n)]
    assert mdd[0] > 1.0 >= mdd[1]
    assert stats.seeds_needed(0.0, 1.0, 0.05) is None


def test_variance_components_worked_example() -> None:
    # seeds' values [1, 3], [5, 7], [9, 11]: each seed's networks differ by variance 2; the seed
    # means 2, 6, 10 have variance 16, of which 2 / 2 is the networks' share: 15 between seeds
    frame = pd.DataFrame({"synth_seed": [0, 0, 1, 1, 2, 2], "acc": [1, 3, 5, 7, 9, 11]})
    components = stats.variance_components(frame, "acc")
    assert components == {"between_seeds": 15.0, "within_seed": 2.0, "models": 2.0, "seeds": 3}
    assert stats.mean_variance(components, seeds=3, models=2) == pytest.approx(16 / 3)
    # seeds that agree more than their networks: clipped at 0
    flat = pd.DataFrame({"synth_seed": [0, 0, 1, 1], "acc": [0.0, 4.0, 1.0, 3.0]})
    assert stats.variance_components(flat, "acc")["between_seeds"] == 0.0


def test_variance_components_match_a_balanced_anova_from_statsmodels() -> None:
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(3)
    seeds, models = 6, 3
    frame = pd.DataFrame(
        {
            "synth_seed": np.repeat(np.arange(seeds), models),
            "acc": np.repeat(rng.normal(0, 2, seeds), models) + rng.normal(0, 0.5, seeds * models),
        }
    )
    table = anova_lm(ols("acc ~ C(synth_seed)", frame).fit())
    ms_between, ms_within = table["mean_sq"].iloc[0], table["mean_sq"].iloc[1]
    components = stats.variance_components(frame, "acc")
    assert components["within_seed"] == pytest.approx(ms_within)
    assert components["between_seeds"] == pytest.approx((ms_between - ms_within) / models)


EVAL = {0: (11, 12), 1: (21, 22), 2: (31, 32)}


@pytest.mark.parametrize(
    "a, b, paired, reason",
    [
        (stats.SeedDesign("init", EVAL), stats.SeedDesign("init", EVAL), True, "paired by seed"),
        (stats.SeedDesign("", EVAL), stats.SeedDesign("init", EVAL), False, "Welch: a records no shared"),
        (stats.SeedDesign("init", EVAL), stats.SeedDesign("other", EVAL), False, "different streams"),
        (stats.SeedDesign("init", EVAL), stats.SeedDesign("init", {0: (11, 12), 1: (21, 22)}), False, "seeds"),
        (stats.SeedDesign("init", EVAL), stats.SeedDesign("init", {**EVAL, 2: (31, 99)}), False, "networks"),
        (stats.SeedDesign("init", {0: (1,)}), stats.SeedDesign("init", {0: (1,)}), False, "fewer than 2"),
    ],
)
def test_pairing_is_decided_from_the_design(a, b, paired: bool, reason: str) -> None:
    decided = stats.pairing("a", a, "b", b)
    assert decided.paired is paired and reason in decided.reason


def test_design_of_reads_the_design_columns_only() -> None:
    runs = pd.DataFrame(
        {
            "synth_seed": [0, 0, 1, 1],
            "eval_index": [1, 0, 0, 1],
            "eval_seed": [12, 11, 21, 22],
            "init_stream": "init",
            "test_acc": [np.nan] * 4,  # never read
        }
    )
    assert stats.design_of(runs) == stats.SeedDesign("init", {0: (11, 12), 1: (21, 22)})
    assert stats.design_of(runs.drop(columns="init_stream")).init_stream == ""
