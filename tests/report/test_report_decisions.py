"""The across-task procedure chosen from the design, on constructed runs.csv files."""

from __future__ import annotations

from math import factorial
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import consistent_effect, make_results

from dcbench.report import write_report

pytestmark = pytest.mark.filterwarnings("error")


def test_eight_tasks_five_methods_consistent_effect_gives_a_significant_pair(tmp_path: Path):
    # All pairs (10 tests) cannot reach .05 with 8 tasks (10 * 2/256 = 0.078); the family of
    # each method vs the reference (4 tests) can: 4 * 2/256 = 0.031.
    root = consistent_effect(tmp_path, n_tasks=8, n_methods=5)
    report = write_report(root, formats=("csv", "png"))
    wilcoxon = pd.read_csv(report.parent / "wilcoxon.csv")
    assert (wilcoxon["family"] == "vs_reference").all() and len(wilcoxon) == 4
    assert (wilcoxon["method_b"] == "random").all()
    assert wilcoxon["significant"].any()
    assert wilcoxon["p_raw"].tolist() == pytest.approx([2 / 256] * 4)
    assert wilcoxon["p_adj"].tolist() == pytest.approx([4 * 2 / 256] * 4)  # Holm's running max
    assert (wilcoxon["n_tested"] == 8).all()
    omnibus = pd.read_csv(report.parent / "omnibus.csv").iloc[0]
    assert omnibus["p"] < 0.001
    nemenyi = pd.read_csv(report.parent / "nemenyi.csv")
    assert len(nemenyi) == 10 and nemenyi["significant"].any()
    assert (report.parent / "cd_diagram.png").is_file()  # 8 >= 5 tasks
    text = report.read_text()
    assert "all pairs of methods (m = 10): smallest adjusted p 0.0781; below α = 0.05 from 9" in text
    assert "Run over each method vs the reference" in text
    assert "Dependence" not in text  # 8 distinct datasets, one architecture


def test_nine_tasks_reach_alpha_over_all_pairs(tmp_path: Path):
    report = write_report(consistent_effect(tmp_path, n_tasks=9, n_methods=5), formats=("csv",))
    wilcoxon = pd.read_csv(report.parent / "wilcoxon.csv")
    assert (wilcoxon["family"] == "all_pairs").all() and len(wilcoxon) == 10
    assert wilcoxon["significant"].all()


def test_two_tasks_in_identical_order_never_reach_significance(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,), "CIFAR10": (1,)}, methods=("random", "dc", "dm"))
    report = write_report(root, formats=("csv", "md"))
    omnibus = pd.read_csv(report.parent / "omnibus.csv").iloc[0]
    assert omnibus["p"] == pytest.approx(1 / factorial(3)) and omnibus["p"] >= 0.05
    assert omnibus["p_method"] == "exact"
    assert pd.isna(omnibus["p_F"]) and pd.isna(omnibus["p_chi2"])
    across_tasks = report.read_text().split("## Across tasks")[1].split("\n## ")[0]
    assert "p = 0.167" in across_tasks and "∞" not in across_tasks
    assert "<0.001" not in across_tasks
    assert not (report.parent / "wilcoxon.csv").exists()


@pytest.mark.parametrize("n_tasks", [2, 4])
def test_fewer_than_five_tasks_draw_no_cd_diagram_and_say_why(tmp_path: Path, n_tasks: int):
    report = write_report(consistent_effect(tmp_path, n_tasks=n_tasks, n_methods=4), formats=("csv", "png", "pdf"))
    assert not list(report.parent.glob("cd_diagram.*"))
    assert not (report.parent / "nemenyi.csv").exists()
    text = report.read_text()
    assert f"No CD diagram and no Nemenyi post-hoc: {n_tasks} complete task(s) < 5" in text
    if n_tasks == 2:  # CD = 2.569 * sqrt(20 / 12) = 3.32 > k - 1 = 3
        assert "the critical difference (3.32 ranks) is wider than the whole range" in text


def test_five_tasks_draw_the_cd_diagram_in_both_formats(tmp_path: Path):
    report = write_report(consistent_effect(tmp_path, n_tasks=5, n_methods=4), formats=("csv", "png", "pdf"))
    assert (report.parent / "cd_diagram.png").is_file()
    assert (report.parent / "cd_diagram.pdf").is_file()
    assert "![cd_diagram](cd_diagram.png)" in report.read_text()


def test_dependence_caveat_for_shared_datasets_and_synthetic_sets(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,), "CIFAR10": (1,)}, archs=("ConvNet", "MLP"))
    text = write_report(root, formats=("csv",)).read_text()
    assert "Dependence: the 4 tasks are not independent replicates" in text
    assert "CIFAR10: 2 tasks" in text and "MNIST: 2 tasks" in text
    assert "the synthetic sets of 2 (dataset, IPC) pair(s) are evaluated on several architectures" in text
