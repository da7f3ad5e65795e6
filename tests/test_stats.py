"""dcbench.stats against direct scipy computations, hand-worked examples and invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dcbench import stats

# A statistic that silently divides by zero is a bug here, not noise.
pytestmark = pytest.mark.filterwarnings("error")

# Reference notes, B3: 3 seeds per method.
TOY_A = [48.1, 47.5, 48.9]
TOY_B = [46.0, 46.8, 45.9]


# --------------------------------------------------------------------------------------------
# One cell


def test_t_interval_matches_one_sample_t_test():
    values = np.array([61.2, 59.8, 60.5, 62.0, 60.1])
    expected = sps.ttest_1samp(values, 0.0).confidence_interval(confidence_level=0.95)
    assert stats.t_interval(values) == pytest.approx((expected.low, expected.high))


def test_t_interval_hand_worked():
    # mean 2, SD 1, n = 3: half-width t_{.975,2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2.0 - 2.4841, 2.0 + 2.4841), abs=1e-4)


def test_t_interval_degenerate_samples():
    assert all(np.isnan(stats.t_interval([50.0])))
    assert stats.t_interval([50.0, 50.0, 50.0]) == (50.0, 50.0)


def _evaluations(per_seed: dict[int, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"synth_seed": seed, "acc": value}
                         for seed, values in per_seed.items() for value in values])


def test_summarize_cell_averages_evaluations_within_seeds_first():
    evaluations = _evaluations({0: [40.0, 42.0], 1: [44.0, 44.0], 2: [50.0, 52.0]})
    summary = stats.summarize_cell(evaluations, "acc")
    seed_means = np.array([41.0, 44.0, 51.0])
    assert summary["n_seeds"] == 3 and summary["n_evals"] == 6
    assert summary["mean"] == pytest.approx(seed_means.mean())
    assert summary["sd"] == pytest.approx(seed_means.std(ddof=1))
    assert summary["sd_ddof"] == 1 and summary["pooled_sd_ddof"] == 0
    assert summary["sem"] == pytest.approx(seed_means.std(ddof=1) / np.sqrt(3))
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx(stats.t_interval(seed_means))
    assert summary["median"] == 44.0 and summary["min"] == 41.0 and summary["max"] == 51.0
    pooled = evaluations["acc"].to_numpy()
    assert summary["pooled_mean"] == pytest.approx(pooled.mean())
    assert summary["pooled_sd"] == pytest.approx(pooled.std(ddof=0))
    # within-seed variances (ddof=1): 2, 0, 2 -> root of their mean
    assert summary["within_seed_sd"] == pytest.approx(np.sqrt(4.0 / 3.0))


def test_summarize_cell_with_one_seed_and_one_evaluation_is_nan_not_an_error():
    summary = stats.summarize_cell(_evaluations({7: [55.0]}), "acc")
    assert summary["mean"] == 55.0
    for key in ("sd", "sem", "ci_low", "ci_high", "within_seed_sd"):
        assert np.isnan(summary[key]), key


def test_summarize_cells_one_row_per_cell():
    runs = pd.DataFrame({
        "method": ["dc"] * 4 + ["dm"] * 2, "dataset": "MNIST", "ipc": [1, 1, 10, 10, 1, 1],
        "eval_arch": "ConvNet", "synth_seed": [0, 1, 0, 1, 0, 1],
        "acc": [40.0, 42.0, 50.0, 54.0, 45.0, 47.0]})
    cells = stats.summarize_cells(runs, "acc")
    assert list(cells.columns) == list(stats.CELL_SUMMARY_COLUMNS)
    assert cells[["method", "ipc", "mean"]].values.tolist() == [
        ["dc", 1, 41.0], ["dc", 10, 52.0], ["dm", 1, 46.0]]


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


def test_welch_matches_scipy_on_unequal_samples():
    rng = np.random.default_rng(3)
    a, b = rng.normal(60, 1, size=5), rng.normal(59, 2, size=4)
    direct = sps.ttest_ind(a, b, equal_var=False)
    ci = direct.confidence_interval(confidence_level=0.9)
    result = stats.welch_t(a, b, confidence=0.9)
    assert (result.statistic, result.df, result.p_raw) == pytest.approx(
        (direct.statistic, direct.df, direct.pvalue))
    assert (result.diff_ci_low, result.diff_ci_high) == pytest.approx((ci.low, ci.high))
    assert (result.n_a, result.n_b) == (5, 4)


def test_paired_toy_example_halves_the_degrees_of_freedom():
    result = stats.paired_t(TOY_A, TOY_B)
    assert result.test == "paired_t" and result.paired
    assert result.df == 2
    assert result.p_raw == pytest.approx(0.10, abs=0.005)


@pytest.mark.parametrize("a, b", [([50.0], [48.0, 49.0]), ([50.0, 50.0], [48.0, 48.0])])
def test_untestable_samples_keep_the_difference_and_give_nan(a, b):
    result = stats.welch_t(a, b)
    assert result.diff == pytest.approx(np.mean(a) - np.mean(b))
    assert np.isnan(result.p_raw) and np.isnan(result.statistic) and np.isnan(result.hedges_g)


def test_compare_samples_pairs_only_matching_seed_lists():
    a = pd.Series(TOY_A, index=[2, 0, 1])
    matching = pd.Series(TOY_B, index=[2, 0, 1])
    other = pd.Series(TOY_B, index=[3, 4, 5])
    assert stats.compare_samples(a, matching, paired=True).test == "paired_t"
    assert stats.compare_samples(a, other, paired=True).test == "welch_t"
    assert stats.compare_samples(a, matching, paired=False).test == "welch_t"
    # Pairing follows the seed labels, not the row order.
    shuffled = matching.iloc[[2, 0, 1]]
    assert stats.compare_samples(a, shuffled, paired=True).p_raw == pytest.approx(
        stats.paired_t(TOY_A, TOY_B).p_raw)


def test_hedges_g_hand_worked():
    # pooled SD 1, d = -1, correction 1 - 3/(4*6 - 9) = 0.8
    assert stats.hedges_g([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(-0.8)
    # paired: d_z = 2 / 1, correction 1 - 3/(4*2 - 1) = 4/7
    assert stats.hedges_g_paired([1.0, 2.0, 3.0]) == pytest.approx(8.0 / 7.0)


def test_hedges_g_is_antisymmetric_and_nan_without_spread():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=4), rng.normal(size=6)
    assert stats.hedges_g(a, b) == pytest.approx(-stats.hedges_g(b, a))
    assert np.isnan(stats.hedges_g([1.0, 1.0], [1.0, 1.0]))


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


def test_holm_properties_on_random_p_values():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 30))
        adjusted = stats.holm(p)
        assert np.all(adjusted >= p - 1e-15) and np.all(adjusted <= 1.0)
        order = np.argsort(p)
        assert np.all(np.diff(adjusted[order]) >= -1e-15)  # same order as the raw p-values


# --------------------------------------------------------------------------------------------
# Which pairs are compared


def test_planned_pairs_best_and_reference_without_duplicates():
    pairs = list(stats.planned_pairs(["dc", "dm", "random"], best="dm", reference="random"))
    assert pairs == [("dc", "dm", "vs_best"), ("random", "dm", "vs_best"),
                     ("dc", "random", "vs_reference")]


def test_planned_pairs_when_the_reference_is_best_or_absent():
    assert list(stats.planned_pairs(["dc", "random"], best="random", reference="random")) == [
        ("dc", "random", "vs_best")]
    assert list(stats.planned_pairs(["dc", "dm"], best="dm", reference=None)) == [
        ("dc", "dm", "vs_best")]


def _seed_scores(rng: np.random.Generator, n_tasks: int = 3) -> pd.DataFrame:
    means = {"random": 30.0, "dc": 45.0, "dm": 46.0}
    return pd.DataFrame([
        {"method": method, "dataset": "MNIST", "ipc": ipc, "eval_arch": "ConvNet",
         "synth_seed": seed, "score": mean + ipc + rng.normal(0, 1)}
        for method, mean in means.items() for ipc in range(1, n_tasks + 1) for seed in range(3)])


def test_compare_within_tasks_holm_over_the_whole_report():
    scores = _seed_scores(np.random.default_rng(5))
    comparisons = stats.compare_within_tasks(scores, reference="random", alpha=0.05)
    assert list(comparisons.columns) == list(stats.COMPARISON_COLUMNS)
    assert len(comparisons) == 3 * 3  # per task: 2 vs best + 1 vs reference not yet tested
    assert (comparisons["method_a"] != comparisons["method_b"]).all()
    assert (comparisons["family_size"] == 9).all()
    assert np.allclose(comparisons["p_adj"], stats.holm(comparisons["p_raw"]))
    assert (comparisons["p_adj"] >= comparisons["p_raw"]).all()
    assert (comparisons["significant"] == (comparisons["p_adj"] < 0.05)).all()
    # The best is the method with the highest mean, and each pair appears once per task.
    for _, task in comparisons.groupby(list(stats.TASK_KEYS)):
        assert set(task.loc[task["kind"] == "vs_best", "method_b"]) == {"dm"}
        pairs = [frozenset(pair) for pair in zip(task["method_a"], task["method_b"])]
        assert len(pairs) == len(set(pairs))


def test_compare_within_tasks_matches_direct_welch():
    scores = _seed_scores(np.random.default_rng(6), n_tasks=1)
    comparisons = stats.compare_within_tasks(scores, reference="random")
    row = comparisons[(comparisons["method_a"] == "dc") & (comparisons["method_b"] == "dm")].iloc[0]
    by_method = {m: g["score"].to_numpy() for m, g in scores.groupby("method")}
    direct = sps.ttest_ind(by_method["dc"], by_method["dm"], equal_var=False)
    assert row["p_raw"] == pytest.approx(direct.pvalue)
    assert row["statistic"] == pytest.approx(direct.statistic)


# --------------------------------------------------------------------------------------------
# Across tasks


def test_ranks_highest_score_first_ties_averaged_and_rows_sum_to_k_k_plus_1_over_2():
    matrix = pd.DataFrame({"a": [90.0, 50.0, 70.0], "b": [80.0, 60.0, 70.0],
                           "c": [70.0, 40.0, 60.0], "d": [60.0, 30.0, 70.0]})
    ranks = stats.rank_within_tasks(matrix)
    assert ranks.iloc[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranks.iloc[1].tolist() == [2.0, 1.0, 3.0, 4.0]
    assert ranks.iloc[2].tolist() == [2.0, 2.0, 4.0, 2.0]
    k = matrix.shape[1]
    assert np.allclose(ranks.sum(axis=1), k * (k + 1) / 2)


def test_friedman_and_iman_davenport_hand_worked():
    # Ranks (1 = best) per task: A B C = 1 2 3 / 1 3 2 / 1 2 3 / 2 1 3 -> rank sums 5, 8, 11.
    # chi2 = 12N/(k(k+1)) * (sum(Rbar^2) - k(k+1)^2/4) = 4 * (13.125 - 12) = 4.5
    # F = (N-1) chi2 / (N(k-1) - chi2) = 13.5 / 3.5
    scores = np.array([[90, 80, 70], [90, 70, 80], [90, 80, 70], [80, 90, 70]], dtype=float)
    result = stats.friedman_iman_davenport(scores)
    assert result.chi2 == pytest.approx(4.5)
    assert result.p == pytest.approx(np.exp(-2.25))  # chi2 with 2 df: sf(x) = exp(-x/2)
    assert result.f == pytest.approx(13.5 / 3.5)
    assert result.p_f == pytest.approx(sps.f.sf(13.5 / 3.5, 2, 6))
    direct = sps.friedmanchisquare(*scores.T)
    assert (result.chi2, result.p) == pytest.approx((direct.statistic, direct.pvalue))


def test_friedman_edge_cases():
    concordant = np.tile([3.0, 2.0, 1.0], (5, 1))
    result = stats.friedman_iman_davenport(concordant)
    assert result.f == np.inf and result.p_f == 0.0
    assert np.isnan(stats.friedman_iman_davenport(np.ones((4, 2))).chi2)  # k = 2
    assert np.isnan(stats.friedman_iman_davenport(np.ones((1, 3))).chi2)  # N = 1
    assert np.isnan(stats.friedman_iman_davenport(np.ones((4, 3))).chi2)  # every task tied


@pytest.mark.parametrize("k, q", [(3, 2.344), (4, 2.569), (5, 2.728)])
def test_nemenyi_q_matches_demsar(k, q):
    assert stats.nemenyi_q(k, 0.05) == pytest.approx(q, abs=5e-4)


def test_nemenyi_cd_demsar_example():
    # Demšar (2006), 4 classifiers on 14 data sets: CD = 2.569 * sqrt(4*5 / (6*14)) = 1.25
    assert stats.nemenyi_cd(4, 14, 0.05) == pytest.approx(2.569 * np.sqrt(20 / 84), abs=1e-3)
    assert stats.nemenyi_cd(4, 14, 0.05) == pytest.approx(1.25, abs=0.005)


def test_omnibus_row_has_the_b7_columns():
    matrix = pd.DataFrame(np.array([[90, 80, 70], [90, 70, 80], [90, 80, 70], [80, 90, 70]],
                                   dtype=float), columns=["a", "b", "c"])
    row = stats.omnibus_tests(matrix, alpha=0.05)
    assert list(row) == ["k", "N", "friedman_chi2", "p", "iman_davenport_F", "p_F",
                         "nemenyi_cd", "alpha"]
    assert (row["k"], row["N"]) == (3, 4)
    assert row["nemenyi_cd"] == pytest.approx(stats.nemenyi_cd(3, 4))


def test_wilcoxon_across_tasks_matches_scipy_and_applies_holm():
    rng = np.random.default_rng(2)
    matrix = pd.DataFrame({"a": rng.normal(50, 3, 7), "b": rng.normal(52, 3, 7),
                           "c": rng.normal(49, 3, 7)})
    table = stats.wilcoxon_across_tasks(matrix, alpha=0.05)
    assert table[["method_a", "method_b"]].values.tolist() == [["a", "b"], ["a", "c"], ["b", "c"]]
    direct = sps.wilcoxon(matrix["a"] - matrix["b"])
    assert table.loc[0, "p_raw"] == pytest.approx(direct.pvalue)
    assert table.loc[0, "statistic"] == pytest.approx(direct.statistic)
    assert np.allclose(table["p_adj"], stats.holm(table["p_raw"]))
    assert (table["family_size"] == 3).all() and (table["n_tasks"] == 7).all()


def test_wilcoxon_identical_methods_give_p_one():
    matrix = pd.DataFrame({"a": np.arange(6.0), "b": np.arange(6.0)})
    assert stats.wilcoxon_across_tasks(matrix).loc[0, "p_raw"] == 1.0


def test_win_tie_loss_counts_against_the_reference_in_both_orientations():
    comparisons = pd.DataFrame({
        "method_a": ["dc", "random", "dc", "dc", "dm"],
        "method_b": ["random", "dc", "random", "random", "random"],
        "diff": [5.0, 3.0, 1.0, 2.0, 4.0],
        "p_adj": [0.01, 0.01, 0.5, np.nan, 0.2],
        "significant": [True, True, False, False, False]})
    counts = stats.win_tie_loss(comparisons, "random").set_index("method")
    # dc: win (task 1), loss (random ahead by 3, task 2), tie, untested; dm: tie
    assert counts.loc["dc"].tolist() == [1, 1, 1, 1]
    assert counts.loc["dm"].tolist() == [0, 1, 0, 0]
    assert list(counts.columns) == ["wins", "ties", "losses", "untested"]
