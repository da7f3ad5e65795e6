"""dcbench.report.cost: cost per cell, the Pareto front of accuracy against condensation seconds, report outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcbench.report import write_report
from dcbench.report.cost import cell_costs, pareto_front

# method: (accuracy % at IPC 1, condensation seconds per seed)
METHODS = {
    "random": (48.0, 0.001),
    "herding": (66.0, 6.0),
    "dm": (70.0, 18.0),
    "dc": (67.0, 22.0),
    "whole": (90.0, 0.0),
}


def write_runs(root: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for method, (accuracy, seconds) in METHODS.items():
        for seed in (0, 1, 2):
            condense_s = seconds * (1 + 0.1 * seed)  # one value per condensation, repeated per model
            for k in range(2):
                rows.append(
                    {
                        "run_id": f"{method}-fashion-mnist-ipc1-s{seed}",
                        "method": method,
                        "reference_only": method == "whole",
                        "method_label": "Whole dataset" if method == "whole" else method,
                        "dataset": "fashion-mnist",
                        "ipc": 1,
                        "eval_arch": "ConvNet",
                        "synth_seed": seed,
                        "eval_index": k,
                        "test_acc": (accuracy + rng.normal(0, 0.5)) / 100,
                        "condense_s": condense_s,
                        "eval_s": 10.0 + seed,
                        "peak_rss_mb": 1000.0 + 100 * seed,
                        "cuda_peak_mb": np.nan,
                    }
                )
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    return root


def test_pareto_front_by_hand() -> None:
    seconds = [0.0, 6.0, 9.0, 10.0, 18.0, 22.0, 18.0]
    accuracy = [48.0, 66.0, 66.2, 66.1, 69.6, 67.9, 69.6]
    # (10, 66.1) is beaten by (9, 66.2); (22, 67.9) by (18, 69.6); the two (18, 69.6) tie and both stay
    assert pareto_front(seconds, accuracy).tolist() == [True, True, True, False, True, False, True]


def test_cell_costs_are_per_condensation_not_per_model(tmp_path: Path) -> None:
    runs = pd.read_csv(write_runs(tmp_path / "r") / "runs.csv")
    costs = cell_costs(runs).set_index("method")
    assert costs.loc["dm", "condense_s"] == pytest.approx(18.0 * 1.1)  # mean of 18, 19.8, 21.6
    assert costs.loc["dm", "eval_s"] == pytest.approx(11.0)
    assert costs.loc["dm", "peak_rss_mb"] == 1200.0  # the peak: the largest over seeds
    assert costs.loc["dm", "condense_s_ci_low"] < 19.8 < costs.loc["dm", "condense_s_ci_high"]
    assert "cuda_peak_mb" not in costs.columns  # recorded only as blanks (no GPU)


def test_report_shows_cost_columns_plot_and_front(tmp_path: Path) -> None:
    root = write_runs(tmp_path / "r")
    report = write_report(root)
    wide = pd.read_csv(root / "report" / "table_wide.csv", header=[0, 1, 2, 3], index_col=0)
    statistics = set(wide.columns.get_level_values(3))
    assert {"mean", "sd", "condense_s", "eval_s", "peak_rss_mb"} <= statistics
    dm = wide.loc["dm"]
    assert dm[dm.index.get_level_values(3) == "condense_s"].iloc[0] == pytest.approx(19.8)
    table = (root / "report" / "table.md").read_text()
    assert "FashionMNIST IPC 1 cost" in table and "| 20 s / 11 s / 1.2 GB |" in table  # display name
    front = pd.read_csv(root / "report" / "pareto.csv").set_index("method")["on_front"]
    assert front.to_dict() == {"random": True, "herding": True, "dm": True, "dc": False}  # whole is not a method here
    assert (root / "report" / "acc_vs_cost_fashion-mnist.png").is_file()
    text = report.read_text()
    assert "![acc_vs_cost_fashion-mnist](acc_vs_cost_fashion-mnist.png)" in text
    assert "- fashion-mnist IPC 1 (ConvNet): random (" in text and "dm (" in text
