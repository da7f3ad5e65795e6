"""dcbench.stats against independent references: hand-worked examples, brute-force enumeration
and second libraries used only here (pingouin, statsmodels, scikit-posthocs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pingouin
import pytest
import scikit_posthocs
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from dcbench import stats

# A statistic that silently divides by zero is a bug here, not noise.
pytestmark = pytest.mark.filterwarnings("error")

# Reference notes, B3: 3 seeds per method.
TOY_A = [48.1, 47.5, 48.9]
TOY_B = [46.0, 46.8, 45.9]


# --------------------------------------------------------------------------------------------
# One cell


def test_t_interval_matches_statsmodels():
    values = np.array([61.2, 59.8, 60.5, 62.0, 60.1])
    low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
    assert stats.t_interval(values) == pytest.approx((low, high))


def test_t_interval_hand_worked():
    # mean 2, SD 1, n = 3: half-width t_{.975,2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2.0 - 2.4841, 2.0 + 2.4841), abs=1e-4)


def test_t_interval_degenerate_samples():
    assert all(np.isnan(stats.t_interval([50.0])))
    assert stats.t_interval([50.0, 50.0, 50.0]) == (50.0, 50.0)


def _evaluations(per_seed: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"synth_seed": seed, "acc": value} for seed, values in per_seed.items() for value in values])


def test_summarize_cell_averages_evaluations_within_seeds_first():
    evaluations = _evaluations({0: [40.0, 42.0], 1: [44.0, 44.0], 2: [50.0, 52.0]})
    summary = stats.summarize_cell(evaluations, "acc")
    # seed means 41, 44, 51: mean 45.333, deviations -4.333, -1.333, 5.667 -> SD sqrt(26.333)
    assert summary["n_seeds"] == 3 and summary["n_evals"] == 6
    assert summary["mean"] == pytest.approx(136.0 / 3.0)
    assert summary["sd"] == pytest.approx(math.sqrt(79.0 / 3.0))
    assert summary["sd_ddof"] == 1 and summary["pooled_sd_ddof"] == 0
    assert summary["sem"] == pytest.approx(math.sqrt(79.0 / 3.0) / math.sqrt(3.0))
    assert summary["median"] == 44.0 and summary["min"] == 41.0 and summary["max"] == 51.0
    assert summary["pooled_mean"] == pytest.approx(272.0 / 6.0)
    # pooled values 40 42 44 44 50 52 around 45.333: squared deviations sum to 328/3
    assert summary["pooled_sd"] == pytest.approx(math.sqrt(328.0 / 18.0))
    # within-seed variances (ddof=1): 2, 0, 2 -> root of their mean
    assert summary["within_seed_sd"] == pytest.approx(np.sqrt(4.0 / 3.0))


def test_summarize_cell_with_one_seed_and_one_evaluation_is_nan_not_an_error():
    summary = stats.summarize_cell(_evaluations({7: [55.0]}), "acc")
    assert summary["mean"] == 55.0
    for key in ("sd", "sem", "ci_low", "ci_high", "within_seed_sd"):
        assert np.isnan(summary[key]), key


def test_summarize_cells_one_row_per_cell():
    runs = pd.DataFrame(
        {
            "method": ["dc"] * 4 + ["dm"] * 2,
            "dataset": "MNIST",
            "ipc": [1, 1, 10, 10, 1, 1],
            "eval_arch": "ConvNet",
            "synth_seed": [0, 1, 0, 1, 0, 1],
            "acc": [40.0, 42.0, 50.0, 54.0, 45.0, 47.0],
        }
    )
    cells = stats.summarize_cells(runs, "acc")
    assert list(cells.columns) == list(stats.CELL_SUMMARY_COLUMNS)
    assert cells[["method", "ipc", "mean"]].values.tolist() == [["dc", 1, 41.0], ["dc", 10, 52.0], ["dm", 1, 46.0]]


# --------------------------------------------------------------------------------------------
# Two methods within a task


def test_welch_toy_example_from_the_reference_notes():
    result = stats.welch_t(TOY_A, TOY_B)
    assert result.test == "welch_t" and not result.paired
    assert result.statistic == pytest.approx(3.90, abs=0.005)
    assert result.df == pytest.approx(3.59, abs=0.005)
    assert result.p_raw == pytest.approx(0.022, abs=0.0005)
    assert (result.diff_ci_low, result.diff_ci_high) == pytest.approx((0.49, 3.37), abs=0.005)
    assert result.diff == pytest.approx(np.mean(TOY_A) - np.mean(TOY_B))


def test_welch_matches_statsmodels_on_unequal_samples():
    rng = np.random.default_rng(3)
    a, b = rng.normal(60, 1, size=5), rng.normal(59, 2, size=4)
    compare = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    statistic, p, df = compare.ttest_ind(usevar="unequal")
    low, high = compare.tconfint_diff(alpha=0.1, usevar="unequal")
    result = stats.welch_t(a, b, confidence=0.9)
    assert (result.statistic, result.df, result.p_raw) == pytest.approx((statistic, df, p))
    assert (result.diff_ci_low, result.diff_ci_high) == pytest.approx((low, high))
    assert (result.n_a, result.n_b) == (5, 4)


def test_paired_toy_example_halves_the_degrees_of_freedom():
    result = stats.paired_t(TOY_A, TOY_B)
    assert result.test == "paired_t" and result.paired
    assert result.df == 2
    assert result.p_raw == pytest.approx(0.10, abs=0.005)
    reference = pingouin.ttest(TOY_A, TOY_B, paired=True)
    assert result.statistic == pytest.approx(reference["T"].iloc[0])


@pytest.mark.parametrize("a, b", [([50.0], [48.0, 49.0]), ([50.0, 50.0], [48.0, 48.0])])
def test_untestable_samples_keep_the_difference_and_give_nan(a, b):
    result = stats.welch_t(a, b)
    assert result.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert np.isnan(result.p_raw) and np.isnan(result.statistic) and np.isnan(result.effect_size)
    assert result.effect_size_kind == stats.HEDGES_G


def test_welch_with_one_constant_group_is_a_one_sample_t_without_warnings():
    a, constant = [48.1, 47.5, 48.9], [46.0, 46.0, 46.0 + 1e-13]  # float noise in the last one
    result = stats.welch_t(a, constant)
    statistic, p, df = DescrStatsW(np.array(a)).ttest_mean(46.0)
    assert (result.statistic, result.p_raw, result.df) == pytest.approx((statistic, p, df))


def test_compare_samples_pairs_only_matching_seed_lists():
    a = pd.Series(TOY_A, index=[2, 0, 1])
    matching = pd.Series(TOY_B, index=[2, 0, 1])
    other = pd.Series(TOY_B, index=[3, 4, 5])
    assert stats.compare_samples(a, matching, paired=True).test == "paired_t"
    assert stats.compare_samples(a, other, paired=True).test == "welch_t"
    assert stats.compare_samples(a, matching, paired=False).test == "welch_t"
    # Pairing follows the seed labels, not the row order.
    shuffled = matching.iloc[[2, 0, 1]]
    assert stats.compare_samples(a, shuffled, paired=True).p_raw == pytest.approx(stats.paired_t(TOY_A, TOY_B).p_raw)


def test_effect_sizes_hand_worked():
    # pooled SD 1, d = -1, correction 1 - 3/(4*6 - 9) = 0.8
    assert stats.hedges_g([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(-0.8)
    # paired: means 2 and 4, SDs 1 and 2 -> d_av = -2 / sqrt(2.5), same correction 0.8
    assert stats.g_av([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(-1.6 / math.sqrt(2.5))


def test_effect_sizes_match_pingouin_and_are_labelled_per_kind():
    rng = np.random.default_rng(8)
    a, b = rng.normal(50, 1, 5), rng.normal(48, 2, 5)
    welch = stats.welch_t(a, b)
    assert welch.effect_size_kind == stats.HEDGES_G
    assert welch.effect_size == pytest.approx(pingouin.compute_effsize(a, b, eftype="hedges"))
    paired = stats.paired_t(a, b)
    assert paired.effect_size_kind == stats.G_AV
    assert paired.effect_size == pytest.approx(pingouin.compute_effsize(a, b, paired=True, eftype="hedges"))
    # The mix-up: the SD of the differences gives a different (larger) number.
    d_z = pingouin.compute_effsize(a, b, paired=True, eftype="cohen_dz")
    assert abs(paired.effect_size) != pytest.approx(abs(d_z), rel=0.05)


def test_hedges_g_is_antisymmetric_and_nan_without_spread():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=4), rng.normal(size=6)
    assert stats.hedges_g(a, b) == pytest.approx(-stats.hedges_g(b, a))
    assert np.isnan(stats.hedges_g([1.0, 1.0], [1.0, 1.0]))
    assert np.isnan(stats.g_av([1.0, 1.0], [2.0, 2.0]))


# --------------------------------------------------------------------------------------------
# Holm


def test_holm_hand_worked_step_down():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> running max .06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_clips_at_one_and_skips_nan():
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = stats.holm([0.01, np.nan, 0.02])
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02])
    assert stats.holm([]).size == 0


def test_holm_matches_statsmodels_on_random_p_values():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 30))
        assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


# --------------------------------------------------------------------------------------------
# Which pairs are compared within tasks


def test_planned_pairs_best_and_reference_without_duplicates():
    pairs = list(stats.planned_pairs(["dc", "dm", "random"], best="dm", reference="random"))
    assert pairs == [("dc", "dm", "vs_best"), ("random", "dm", "vs_best"), ("dc", "random", "vs_reference")]


def test_planned_pairs_when_the_reference_is_best_or_absent():
    assert list(stats.planned_pairs(["dc", "random"], best="random", reference="random")) == [
        ("dc", "random", "vs_best")
    ]
    assert list(stats.planned_pairs(["dc", "dm"], best="dm", reference=None)) == [("dc", "dm", "vs_best")]


def _seed_scores(rng: np.random.Generator, n_tasks: int = 3) -> pd.DataFrame:
    means = {"random": 30.0, "dc": 45.0, "dm": 46.0}
    return pd.DataFrame(
        [
            {
                "method": method,
                "dataset": "MNIST",
                "ipc": ipc,
                "eval_arch": "ConvNet",
                "synth_seed": seed,
                "score": mean + ipc + rng.normal(0, 1),
            }
            for method, mean in means.items()
            for ipc in range(1, n_tasks + 1)
            for seed in range(3)
        ]
    )


def test_compare_within_tasks_holm_over_the_whole_report():
    scores = _seed_scores(np.random.default_rng(5))
    comparisons = stats.compare_within_tasks(scores, reference="random", alpha=0.05)
    assert list(comparisons.columns) == list(stats.COMPARISON_COLUMNS)
    assert len(comparisons) == 3 * 3  # per task: 2 vs best + 1 vs reference not yet tested
    assert (comparisons["family_size"] == 9).all()
    assert comparisons["p_adj"].to_numpy() == pytest.approx(multipletests(comparisons["p_raw"], method="holm")[1])
    assert (comparisons["significant"] == (comparisons["p_adj"] < 0.05)).all()
    assert (comparisons["effect_size_kind"] == stats.HEDGES_G).all()
    for _, task in comparisons.groupby(list(stats.TASK_KEYS)):
        assert set(task.loc[task["kind"] == "vs_best", "method_b"]) == {"dm"}
        pairs = [frozenset(pair) for pair in zip(task["method_a"], task["method_b"])]
        assert len(pairs) == len(set(pairs))


def test_compare_within_tasks_matches_pingouin_welch():
    scores = _seed_scores(np.random.default_rng(6), n_tasks=1)
    comparisons = stats.compare_within_tasks(scores, reference="random")
    row = comparisons[(comparisons["method_a"] == "dc") & (comparisons["method_b"] == "dm")].iloc[0]
    by_method = {m: g["score"].to_numpy() for m, g in scores.groupby("method")}
    reference = pingouin.ttest(by_method["dc"], by_method["dm"], correction=True).iloc[0]
    assert row["p_raw"] == pytest.approx(reference["p_val"])
    assert row["statistic"] == pytest.approx(reference["T"])


# --------------------------------------------------------------------------------------------
# Friedman


def test_ranks_highest_score_first_ties_averaged_and_rows_sum_to_k_k_plus_1_over_2():
    matrix = pd.DataFrame(
        {"a": [90.0, 50.0, 70.0], "b": [80.0, 60.0, 70.0], "c": [70.0, 40.0, 60.0], "d": [60.0, 30.0, 70.0]}
    )
    ranks = stats.rank_within_tasks(matrix)
    assert ranks.iloc[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranks.iloc[1].tolist() == [2.0, 1.0, 3.0, 4.0]
    assert ranks.iloc[2].tolist() == [2.0, 2.0, 4.0, 2.0]


def _brute_force_friedman_p(scores: np.ndarray) -> float:
    """Exact p by listing every combination of within-task orderings (independent of the DP)."""
    ranks = sps.rankdata(-scores, axis=1)
    n_tasks, k = ranks.shape

    def chi2(rows: np.ndarray) -> float:  # 12/(Nk(k+1)) sum R_j^2 - 3N(k+1), no tie correction
        rank_sums = rows.sum(axis=0)
        return 12.0 / (n_tasks * k * (k + 1)) * (rank_sums**2).sum() - 3 * n_tasks * (k + 1)

    observed = chi2(ranks)
    orderings = [list(itertools.permutations(row)) for row in ranks]
    values = [chi2(np.array(rows)) for rows in itertools.product(*orderings)]
    return float(np.mean(np.array(values) >= observed - 1e-9))


def test_friedman_exact_p_hand_worked():
    # 2 tasks, 3 methods, same order: only the 1 of 6 orderings of task 2 that matches is as extreme
    assert stats.friedman_exact_p(np.array([[3.0, 2.0, 1.0], [30.0, 20.0, 10.0]])) == pytest.approx(1.0 / 6.0)
    # 3 tasks: 1/36; 4 tasks, k = 3: exact P(chi2 >= 6.5) = 0.042 (published table, Hollander &
    # Wolfe), with rank sums 4, 8, 12 -> chi2 = 8: the 6 orderings of identical tasks, 6^4 in all
    assert stats.friedman_exact_p(np.tile([3.0, 2.0, 1.0], (3, 1))) == pytest.approx(1.0 / 36.0)
    assert stats.friedman_exact_p(np.tile([3.0, 2.0, 1.0], (4, 1))) == pytest.approx(6 / 6**4)


@pytest.mark.parametrize("n_tasks, k, ties", [(4, 3, False), (3, 4, False), (3, 4, True), (2, 5, True)])
def test_friedman_exact_p_equals_brute_force_enumeration(n_tasks, k, ties):
    rng = np.random.default_rng(n_tasks * 10 + k)
    scores = rng.normal(size=(n_tasks, k)) + np.arange(k)
    if ties:
        scores = np.round(scores)  # ties within tasks
    assert stats.friedman_exact_p(scores) == pytest.approx(_brute_force_friedman_p(scores))


def test_friedman_permutation_p_agrees_with_exact_and_is_reproducible():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(5, 4)) + 0.6 * np.arange(4)
    exact = stats.friedman_exact_p(scores)
    permutation = stats.friedman_permutation_p(scores, permutations=20_000)
    assert permutation == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20_000))
    assert permutation == stats.friedman_permutation_p(scores, permutations=20_000)


def test_friedman_uses_permutation_beyond_the_enumeration_budget():
    scores = np.random.default_rng(2).normal(size=(6, 5))
    result = stats.friedman_test(scores, max_states=1_000, permutations=5_000)
    assert result.p_method == "permutation" and result.permutations == 5_000
    assert result.p == pytest.approx(stats.friedman_exact_p(scores), abs=0.03)


def test_friedman_chi2_matches_pingouin_and_approximations_only_where_they_hold():
    scores = np.array([[90, 80, 70], [90, 70, 80], [90, 80, 70], [80, 90, 70]], dtype=float)
    result = stats.friedman_test(scores)
    # ranks 1 2 3 / 1 3 2 / 1 2 3 / 2 1 3 -> rank sums 5, 8, 11 -> chi2 = 4.5
    assert result.chi2 == pytest.approx(4.5)
    wide = pd.DataFrame(scores, columns=list("abc"))
    assert result.chi2 == pytest.approx(pingouin.friedman(wide)["Q"].iloc[0])
    assert result.p_method == "exact" and not result.approximations_hold
    assert np.isnan(result.p_chi2) and np.isnan(result.f) and np.isnan(result.p_f)

    rng = np.random.default_rng(0)
    large = rng.normal(size=(12, 6)) + 0.3 * np.arange(6)
    big = stats.friedman_test(large)
    assert big.approximations_hold and big.p_method == "permutation"
    reference = pingouin.friedman(pd.DataFrame(large), method="f").iloc[0]
    assert big.f == pytest.approx(reference["F"])
    # Iman–Davenport's degrees of freedom (Demšar 2006): k - 1 = 5 and (k - 1)(N - 1) = 55
    # (pingouin's own F p uses a different df correction, so only its F is compared)
    assert big.p_f == pytest.approx(sps.f.sf(reference["F"], 5, 55))
    assert big.p_chi2 == pytest.approx(pingouin.friedman(pd.DataFrame(large))["p_unc"].iloc[0])


def test_friedman_identical_orders_never_give_p_from_an_infinite_f():
    two_tasks = stats.friedman_test(np.tile([3.0, 2.0, 1.0], (2, 1)))
    assert two_tasks.p == pytest.approx(1 / 6) and two_tasks.p >= 0.05
    many = stats.friedman_test(np.tile(np.arange(6.0), (11, 1)))
    assert many.approximations_hold and many.f == np.inf and np.isnan(many.p_f)
    assert many.p == pytest.approx(1 / (1 + stats.PERMUTATIONS))  # no permutation as extreme


def test_friedman_edge_cases():
    assert np.isnan(stats.friedman_test(np.ones((4, 2))).chi2)  # k = 2
    assert np.isnan(stats.friedman_test(np.ones((1, 3))).chi2)  # N = 1
    assert np.isnan(stats.friedman_test(np.ones((4, 3))).p)  # every task tied


# --------------------------------------------------------------------------------------------
# Nemenyi


@pytest.mark.parametrize("k, q", [(3, 2.344), (4, 2.569), (5, 2.728)])
def test_nemenyi_q_matches_demsar(k, q):
    assert stats.nemenyi_q(k, 0.05) == pytest.approx(q, abs=5e-4)


def test_nemenyi_cd_demsar_example():
    # Demšar (2006), 4 classifiers on 14 data sets: CD = 2.569 * sqrt(4*5 / (6*14)) = 1.25
    assert stats.nemenyi_cd(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)


def test_nemenyi_posthoc_matches_scikit_posthocs():
    rng = np.random.default_rng(9)
    matrix = pd.DataFrame(rng.normal(size=(7, 4)) + 0.8 * np.arange(4), columns=list("abcd"))
    table = stats.nemenyi_posthoc(matrix).set_index(["method_a", "method_b"])
    reference = scikit_posthocs.posthoc_nemenyi_friedman(matrix.to_numpy())
    for (i, a), (j, b) in itertools.combinations(enumerate(matrix.columns), 2):
        assert table.loc[(a, b), "p_adj"] == pytest.approx(reference.iloc[i, j], abs=1e-6)


def test_nemenyi_p_is_alpha_at_the_critical_difference():
    # Mean ranks 1 .. 4 over 14 tasks would differ by 3; a pair exactly CD apart has p = alpha.
    sd = math.sqrt(4 * 5 / (6 * 14))
    assert sps.studentized_range.sf(2.569 * math.sqrt(2), 4, np.inf) == pytest.approx(0.05, abs=5e-4)
    assert stats.nemenyi_cd(4, 14) / sd == pytest.approx(2.569, abs=5e-4)


# --------------------------------------------------------------------------------------------
# Pairwise across tasks


@pytest.mark.parametrize("pairs, needed", [(10, 9), (4, 8), (21, 10), (6, 8), (3, 7), (1, 6)])
def test_tasks_needed_hand_worked(pairs, needed):
    # smallest Holm p with N tasks is pairs * 2 / 2^N; it must fall below .05
    assert stats.tasks_needed(pairs, 0.05) == needed
    assert pairs * 2 / 2**needed < 0.05 <= pairs * 2 / 2 ** (needed - 1)


def test_family_is_chosen_from_the_design():
    methods = ["a", "b", "c", "d", "random"]
    families = stats.candidate_families(methods, 8, "random", 0.05)
    all_pairs, vs_reference = families
    assert all_pairs.smallest_adjusted_p == pytest.approx(10 * 2 / 256)  # 0.078, the issue's
    assert not all_pairs.reachable and vs_reference.reachable
    assert stats.choose_family(families) is vs_reference
    assert vs_reference.pairs == (("a", "random"), ("b", "random"), ("c", "random"), ("d", "random"))
    assert stats.choose_family(stats.candidate_families(methods, 9, "random", 0.05)).name == stats.ALL_PAIRS
    assert stats.choose_family(stats.candidate_families(methods, 7, "random", 0.05)) is None
    assert stats.choose_family(stats.candidate_families(methods, 8, None, 0.05)) is None


def _brute_force_wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided exact p by flipping every sign of the non-zero differences (ties averaged)."""
    nonzero = differences[differences != 0]
    ranks = sps.rankdata(np.abs(nonzero))
    observed = ranks[nonzero > 0].sum()
    centre = ranks.sum() / 2
    sums = [ranks[np.array(signs, dtype=bool)].sum() for signs in itertools.product([0, 1], repeat=nonzero.size)]
    return float(np.mean(np.abs(np.array(sums) - centre) >= abs(observed - centre) - 1e-9))


def test_wilcoxon_consistent_effect_hand_worked():
    matrix = pd.DataFrame({"a": np.arange(8.0) + 1.0, "random": np.arange(8.0)})
    family = stats.PairFamily(stats.VS_REFERENCE, (("a", "random"),), 8, 0.05)
    row = stats.wilcoxon_across_tasks(matrix, family).iloc[0]
    assert row["p_raw"] == pytest.approx(2 / 2**8)  # every difference positive
    assert row["statistic"] == 0.0 and row["n_tested"] == 8 and row["significant"]


def test_wilcoxon_ties_are_judged_on_rounded_differences():
    # Differences +0.3, -0.3, +0.7, -0.7 are tied in pairs: W+ = W- = 5, p = 1. Computed from
    # float means they differ in the 16th digit, which would break the ties (W = 4 or 6).
    a = np.array([0.1 + 0.2, 0.0, 0.3 + 0.4, 0.0])
    b = np.array([0.0, 0.3, 0.0, 0.7])
    assert len(set(np.abs(a - b))) > 2  # the float noise the rounding removes
    family = stats.PairFamily(stats.ALL_PAIRS, (("a", "b"),), 4, 0.05)
    row = stats.wilcoxon_across_tasks(pd.DataFrame({"a": a, "b": b}), family).iloc[0]
    assert row["statistic"] == 5.0
    assert row["p_raw"] == pytest.approx(1.0)
    assert row["p_raw"] == pytest.approx(_brute_force_wilcoxon_p(np.round(a - b, 6)))
    assert row["p_method"] == "exact sign-flip"


def test_wilcoxon_drops_zero_differences_and_counts_the_tested_ones():
    rng = np.random.default_rng(2)
    b = rng.normal(50, 3, 9)
    a = b + np.array([0.0, 0.0, 1.5, 2.0, -0.5, 3.0, 1.0, 2.5, 0.7])
    family = stats.PairFamily(stats.ALL_PAIRS, (("a", "b"),), 9, 0.05)
    row = stats.wilcoxon_across_tasks(pd.DataFrame({"a": a, "b": b}), family).iloc[0]
    assert (row["n_tasks"], row["n_tested"]) == (9, 7)
    assert row["p_raw"] == pytest.approx(_brute_force_wilcoxon_p(np.round(a - b, 6)))


def test_wilcoxon_holm_over_the_family_and_identical_methods():
    rng = np.random.default_rng(2)
    matrix = pd.DataFrame({"a": rng.normal(50, 3, 7), "b": rng.normal(52, 3, 7), "c": rng.normal(49, 3, 7)})
    family = stats.candidate_families(list(matrix.columns), 7, None, 0.05)[0]
    table = stats.wilcoxon_across_tasks(matrix, family)
    assert table[["method_a", "method_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    for row in table.itertuples():
        differences = np.round(matrix[row.method_a] - matrix[row.method_b], 6).to_numpy()
        assert row.p_raw == pytest.approx(_brute_force_wilcoxon_p(differences))
    assert table["p_adj"].to_numpy() == pytest.approx(multipletests(table["p_raw"], method="holm")[1])
    same = stats.wilcoxon_across_tasks(
        pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0)}),
        stats.PairFamily(stats.ALL_PAIRS, (("a", "b"),), 6, 0.05),
    )
    assert same.loc[0, "p_raw"] == 1.0 and same.loc[0, "n_tested"] == 0


def test_win_tie_loss_counts_against_the_reference_in_both_orientations():
    comparisons = pd.DataFrame(
        {
            "method_a": ["dc", "random", "dc", "dc", "dm"],
            "method_b": ["random", "dc", "random", "random", "random"],
            "diff": [5.0, 3.0, 1.0, 2.0, 4.0],
            "p_adj": [0.01, 0.01, 0.5, np.nan, 0.2],
            "significant": [True, True, False, False, False],
        }
    )
    counts = stats.win_tie_loss(comparisons, "random").set_index("method")
    # dc: win (task 1), loss (random ahead by 3, task 2), tie, untested; dm: tie
    assert counts.loc["dc"].tolist() == [1, 1, 1, 1]
    assert counts.loc["dm"].tolist() == [0, 1, 0, 0]
    assert list(counts.columns) == ["wins", "ties", "losses", "untested"]
