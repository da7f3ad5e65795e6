"""The report's verdict outputs: gains over random, the precision table, the paired design in
the comparisons, and tables a paper can take (display names, groups, caption)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest
from report_fixtures import make_results
from scipy import stats as sps

from dcbench.report import write_report

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_results(tmp_path_factory.mktemp("verdicts"), {"MNIST": (1, 10)}, own_init=("dc",), seed_sd=0.02)
    runs = pd.read_csv(root / "runs.csv")
    runs["coreset"] = runs["method"] == "random"
    runs["method_label"] = runs["method"].map({"random": "Random", "dc": "DC", "dm": "D_M", "whole": "Whole dataset"})
    runs["dataset_label"] = "MNIST-1"
    runs.to_csv(root / "runs.csv", index=False)
    return write_report(root, formats=("csv", "md", "tex", "png"))


def _seed_means(report: Path, method: str, ipc: int) -> pd.Series:
    runs = pd.read_csv(report.parent.parent / "runs.csv")
    task = runs[(runs["method"] == method) & (runs["ipc"] == ipc)]
    return 100 * task.groupby("synth_seed")["test_acc"].mean()


def test_gains_are_the_paired_difference_from_random_with_scipys_interval(report: Path) -> None:
    gains = pd.read_csv(report.parent / "gains.csv").set_index(["method", "ipc"])
    assert set(gains.index.get_level_values("method")) == {"dc", "dm"}
    dm, random = _seed_means(report, "dm", 10), _seed_means(report, "random", 10)
    row = gains.loc[("dm", 10)]
    result = pingouin.ttest(dm.to_numpy(), random.to_numpy(), paired=True)
    assert row["test"] == "paired_t"
    assert row["gain"] == pytest.approx((dm - random).mean())
    assert [row["ci_low"], row["ci_high"]] == pytest.approx(list(result["CI95"].iloc[0]), abs=0.01)
    # dc starts from its own images: Welch, and the gain still reads dc - random
    dc = _seed_means(report, "dc", 10)
    welch = sps.ttest_ind(dc, random, equal_var=False).confidence_interval()
    row = gains.loc[("dc", 10)]
    assert row["test"] == "welch_t" and [row["ci_low"], row["ci_high"]] == pytest.approx([welch.low, welch.high])
    assert "## Gain over `random`" in report.read_text()
    assert (report.parent / "gain_over_random_MNIST.png").is_file()


def test_every_pair_is_tested_and_the_detectable_difference_matches_statsmodels(report: Path) -> None:
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert len(comparisons) == 2 * 3  # 3 compared methods, every pair, 2 tasks
    assert set(comparisons["kind"]) == {"vs_best", "vs_reference"}  # 3 methods: no other pair
    row = comparisons[(comparisons["test"] == "paired_t")].iloc[0]
    a, b = _seed_means(report, row["method_a"], row["ipc"]), _seed_means(report, row["method_b"], row["ipc"])
    sd = float(np.std(a - b, ddof=1))
    alpha = 0.05 / row["family_size"]
    assert row["alpha_first_step"] == pytest.approx(alpha)
    # the power at that difference by Monte Carlo (statsmodels' solve_power misses the root at
    # df = 2 and alpha = 0.008, and its power() returns NaN there)
    n, rng = len(a), np.random.default_rng(0)
    t = (rng.standard_normal(400_000) + row["detectable_diff"] / (sd / np.sqrt(n))) / np.sqrt(
        rng.chisquare(n - 1, 400_000) / (n - 1)
    )
    assert np.mean(np.abs(t) > sps.t.ppf(1 - alpha / 2, n - 1)) == pytest.approx(0.8, abs=0.004)
    assert "not detected at this precision" in report.read_text()


def test_the_precision_table_decomposes_the_spread(report: Path) -> None:
    precision = pd.read_csv(report.parent / "precision.csv").set_index("ipc")
    runs = pd.read_csv(report.parent.parent / "runs.csv")
    task = runs[(runs["ipc"] == 1) & (runs["method"] != "whole")]
    within = task.groupby(["method", "synth_seed"])["test_acc"].var(ddof=1).groupby("method").mean() * 100**2
    assert precision.loc[1, "within_seed_sd"] == pytest.approx(np.sqrt(within.mean()))
    assert precision.loc[1, "networks"] == 2 and precision.loc[1, "seeds"] == 3
    assert precision.loc[1, "buys_more"] in ("seeds", "networks")
    assert "## Precision" in report.read_text()


def test_tables_use_display_names_group_coresets_and_name_the_protocol(report: Path) -> None:
    latex = (report.parent / "table.tex").read_text()
    body = latex.split("\\midrule\n", 1)[1]
    # the whole-dataset line, a rule, the coresets (Random), a rule, the synthesising methods
    assert body.index("Whole dataset") < body.index("\\midrule\nRandom") < body.index("\\midrule\nDC")
    assert "D\\_M" in latex and "MNIST-1" in latex and "MNIST &" not in latex
    assert "\\label{tab:dcbench}\n\\medskip" in latex
    caption = latex.split("\\caption{", 1)[1]
    for phrase in (
        "smoke preset",
        "2 ConvNet evaluation networks per seed",
        "300 epochs",
        "augmentation dsa",
        "Holm over all",
        "not detected at this precision",
    ):
        assert phrase in caption, phrase
    table = (report.parent / "table.md").read_text()
    assert "| D_M |" in table and "MNIST-1 IPC 1" in table
