"""dcbench.report end to end on synthetic results directories: outputs, tables, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest
from report_fixtures import EVAL_MODELS, SEEDS, make_results, png_dpi
from scipy import stats as sps

from dcbench import stats
from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.report import FIGURE_WRITERS, SECTIONS, write_report

# A scipy or numpy warning during a report is a bug (it would reach the user's stderr).
pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full report: 3 tasks (< 5), synthetic sets on disk, a failure and a spec."""
    root = make_results(tmp_path_factory.mktemp("results"), {"MNIST": (1, 10), "CIFAR10": (1,)}, grids=True)
    pd.DataFrame(
        [
            {
                "run_id": "cafe-MNIST-ipc1-s0",
                "method": "cafe",
                "dataset": "MNIST",
                "ipc": 1,
                "synth_seed": 0,
                "reason": "CUDA out of memory",
            }
        ]
    ).to_csv(root / "failures.csv", index=False)
    (root / "spec.toml").write_text('name = "toy-grid"\n')
    return write_report(root)


def test_report_writes_every_output(report: Path):
    assert report == report.parent / "report.md" and report.parent.name == "report"
    expected = [
        "cells.csv",
        "comparisons.csv",
        "ranks.csv",
        "omnibus.csv",
        "win_tie_loss.csv",
        "table_wide.csv",
        "table.tex",
        "table.md",
        "report.md",
    ]
    figures = [
        "acc_vs_ipc_MNIST",
        "acc_vs_ipc_CIFAR10",
        "synthetic_grids_MNIST_ipc1",
        "synthetic_grids_MNIST_ipc10",
        "synthetic_grids_CIFAR10_ipc1",
    ]
    for name in expected + [f"{stem}.{kind}" for stem in figures for kind in ("png", "pdf")]:
        assert (report.parent / name).is_file(), name
    # 3 tasks: no pairwise Wilcoxon can reach alpha, no Nemenyi / CD diagram below 5 tasks
    for name in ("wilcoxon.csv", "nemenyi.csv", "cd_diagram.png", "cd_diagram.pdf"):
        assert not (report.parent / name).exists(), name


def test_figures_are_300_dpi_png_and_pdf(report: Path):
    for png in report.parent.glob("*.png"):
        assert png_dpi(png) == pytest.approx(300, abs=0.5), png.name
        assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF"), png.name


def test_cells_equal_a_direct_recomputation_from_runs(report: Path):
    runs = pd.read_csv(report.parent.parent / "runs.csv")
    cells = pd.read_csv(report.parent / "cells.csv")
    # one unnamed evaluation track: the tables leave the track column out
    assert list(cells.columns) == [c for c in stats.CELL_SUMMARY_COLUMNS if c != "track"]
    assert len(cells) == len(runs.groupby([k for k in stats.CELL_KEYS if k != "track"]))
    for cell in cells.itertuples(index=False):
        rows = runs[
            (runs["method"] == cell.method)
            & (runs["dataset"] == cell.dataset)
            & (runs["ipc"] == cell.ipc)
            & (runs["eval_arch"] == cell.eval_arch)
        ]
        percent = 100 * rows["test_acc"]
        seed_means = percent.groupby(rows["synth_seed"]).mean().to_numpy()
        low, high = sps.t.interval(0.95, len(seed_means) - 1, loc=seed_means.mean(), scale=sps.sem(seed_means))
        assert (cell.n_seeds, cell.n_evals) == (len(SEEDS), len(SEEDS) * EVAL_MODELS)
        assert cell.mean == pytest.approx(seed_means.mean())
        assert cell.sd == pytest.approx(seed_means.std(ddof=1))
        assert (cell.ci_low, cell.ci_high) == pytest.approx((low, high))
        assert cell.pooled_mean == pytest.approx(percent.mean())
        assert cell.pooled_sd == pytest.approx(percent.std(ddof=0))


def test_comparisons_exclude_whole_share_one_holm_family_and_name_the_effect_size(report: Path):
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert list(comparisons.columns) == [c for c in stats.COMPARISON_COLUMNS if c != "track"]
    assert "whole" not in set(comparisons["method_a"]) | set(comparisons["method_b"])
    assert set(comparisons["kind"]) <= {"vs_best", "vs_reference"}
    assert (comparisons["family_size"] == comparisons["p_raw"].notna().sum()).all()
    assert (comparisons["p_adj"] >= comparisons["p_raw"]).all()
    # the fixture records a grid's design: shared initial images and evaluation seeds
    assert (comparisons["test"] == "paired_t").all() and comparisons["paired"].all()
    assert comparisons["pairing"].str.startswith("paired by seed").all()
    assert (comparisons["effect_size_kind"] == "g_av").all()


def test_ranks_and_omnibus(report: Path):
    ranks = pd.read_csv(report.parent / "ranks.csv")
    assert "whole" not in set(ranks["method"])
    k = ranks["method"].nunique()
    tasks = [key for key in stats.TASK_KEYS if key != "track"]  # one unnamed track: no column
    assert np.allclose(ranks.groupby(tasks)["rank"].sum(), k * (k + 1) / 2)
    omnibus = pd.read_csv(report.parent / "omnibus.csv").iloc[0]
    assert (omnibus["k"], omnibus["N"]) == (3, 3)
    # every task orders random < dc < dm: 1 of 6^2 combinations of the other tasks' orderings
    assert omnibus["p_method"] == "exact" and omnibus["p"] == pytest.approx(1 / 36)
    assert not omnibus["approximations_hold"] and np.isnan(omnibus["p_F"])
    assert omnibus["nemenyi_cd"] == pytest.approx(stats.nemenyi_cd(3, 3))


def test_latex_table_is_booktabs_with_marks_and_whole_dataset_on_top(report: Path):
    latex = (report.parent / "table.tex").read_text()
    for token in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\textbf{",
        r"\underline{",
        r"$\pm$",
        r"\caption{",
        r"\multicolumn",
        r"\resizebox",
    ):
        assert token in latex, token
    body = [line for line in latex.split(r"\midrule", 1)[1].strip().splitlines() if line != r"\midrule"]
    assert body[0].startswith("Whole dataset")
    assert body[1].startswith("random")  # the reference (a coreset) leads the compared methods


def test_markdown_table_twin_marks_best_second_and_ties_with_best(report: Path):
    lines = (report.parent / "table.md").read_text().splitlines()
    assert lines[0].startswith("| Method | CIFAR10 IPC 1 | MNIST IPC 1 | MNIST IPC 10 | CIFAR10 IPC 1 cost |")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:]
        for line in lines[2:]
        if line.startswith("| ")
    }
    assert list(rows) == ["Whole dataset", "random", "dc", "dm"]
    cells = pd.read_csv(report.parent / "cells.csv")
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    columns = [("CIFAR10", 1), ("MNIST", 1), ("MNIST", 10)]
    for position, (dataset, ipc) in enumerate(columns):
        task = cells[(cells["dataset"] == dataset) & (cells["ipc"] == ipc) & (cells["method"] != "whole")].sort_values(
            "mean", ascending=False
        )
        best, second = task["method"].iloc[0], task["method"].iloc[1]
        assert rows[best][position].startswith("**")
        assert rows[second][position].startswith("<ins>")  # GitHub keeps <ins>, strips <u>
        vs_best = comparisons[
            (comparisons["dataset"] == dataset) & (comparisons["ipc"] == ipc) & (comparisons["kind"] == "vs_best")
        ]
        for row in vs_best.itertuples(index=False):
            assert rows[row.method_a][position].endswith("†") == (not row.significant)
    assert " ± " in rows["random"][0] and "Holm over all 9 pairwise comparisons" in lines[-1]
    assert "‡" not in "\n".join(lines)  # every cell was tested: no not-tested mark or caption


def test_report_md_states_protocol_decisions_and_failures(report: Path):
    text = report.read_text()
    for phrase in (
        "Synthesis seeds: 0, 1, 2",
        "300 epochs",
        "augmentation dsa",
        "Welch",
        "Holm over",
        "Hedges' g",
        "exact: every within-task ordering",
        "approximations are not shown",
        "smallest two-sided p is 2/2^N = 0.25",
        "all pairs of methods (m = 3): smallest adjusted p 0.75; below α = 0.05 from 7 tasks",
        "each method vs the reference (m = 2)",
        "no pairwise test is run across tasks",
        "No CD diagram and no Nemenyi post-hoc: 3 complete task(s) < 5",
        "Win/tie/loss vs `random`",
        "Dependence: the 3 tasks are not independent",
        "MNIST: 2 tasks",
        "CUDA out of memory",
        'name = "toy-grid"',
        "## Cost per method",
        "(acc_vs_ipc_MNIST.png)",
        "(synthetic_grids_MNIST_ipc10.png)",
        "PNG (300 dpi) and PDF",
    ):
        assert phrase in text, phrase
    assert "cuda_peak_mb" not in text  # all empty: the column is left out of the cost table
    assert "cd_diagram.png" not in text and "<0.001" not in text.split("## Across tasks")[1][:600]


def test_welch_where_the_design_does_not_pair_and_under_unpaired(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,)}, own_init=("dc",))
    comparisons = pd.read_csv(write_report(root, formats=("csv",)).parent / "comparisons.csv")
    with_dc = (comparisons["method_a"] == "dc") | (comparisons["method_b"] == "dc")
    assert (comparisons.loc[with_dc, "test"] == "welch_t").all()
    assert (comparisons.loc[with_dc, "pairing"] == "Welch: dc records no shared initial images").all()
    assert (comparisons.loc[~with_dc, "test"] == "paired_t").all() and (~with_dc).any()
    runs = pd.read_csv(root / "runs.csv")
    row = comparisons[with_dc].iloc[0]
    seed_means = {
        method: 100 * runs[runs["method"] == method].groupby("synth_seed")["test_acc"].mean().to_numpy()
        for method in (row["method_a"], row["method_b"])
    }
    assert row["effect_size"] == pytest.approx(
        pingouin.compute_effsize(seed_means[row["method_a"]], seed_means[row["method_b"]], eftype="hedges")
    )
    unpaired = write_report(root, formats=("csv",), pairing=False, out_dir=tmp_path / "welch")
    assert (pd.read_csv(unpaired.parent / "comparisons.csv")["test"] == "welch_t").all()


def test_paired_t_by_design_with_g_av_matching_pingouin(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,)})
    report = write_report(root, formats=("csv",), out_dir=tmp_path / "out")
    assert report == tmp_path / "out" / "report.md"
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert (comparisons["test"] == "paired_t").all() and comparisons["paired"].all()
    assert (comparisons["df"] == len(SEEDS) - 1).all()
    assert (comparisons["effect_size_kind"] == "g_av").all()
    runs = pd.read_csv(root / "runs.csv")
    per_seed = (100 * runs.groupby(["method", "synth_seed"])["test_acc"].mean()).unstack()
    for row in comparisons.itertuples(index=False):
        assert row.effect_size == pytest.approx(
            pingouin.compute_effsize(
                per_seed.loc[row.method_a].to_numpy(),
                per_seed.loc[row.method_b].to_numpy(),
                paired=True,
                eftype="hedges",
            )
        )
    assert "g_av" in report.read_text()


def test_single_seed_cells_give_nan_the_not_tested_mark_and_no_figure(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10)}, methods=("dc", "dm"), seeds=(0,))
    report = write_report(root, reference="random")
    cells = pd.read_csv(report.parent / "cells.csv")
    assert cells["sd"].isna().all() and cells["ci_low"].isna().all()
    assert pd.read_csv(report.parent / "comparisons.csv")["p_raw"].isna().all()
    assert not list(report.parent.glob("synthetic_grids_*"))
    text = report.read_text()
    assert "have one synthesis seed" in text and "Reference `random` is not in runs.csv" in text
    table = (report.parent / "table.md").read_text()
    assert "| dm | **" in table and "| dc | " in table
    dc_row = next(line for line in table.splitlines() if line.startswith("| dc |"))
    assert dc_row.count("‡") == 2 and "†" not in dc_row
    assert "‡: not tested against the best" in table
    latex = (report.parent / "table.tex").read_text()
    assert latex.count(r"$^{\ddagger}$") == 3  # two cells and the caption


def test_one_seed_cell_among_tested_ones_gets_the_not_tested_mark(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10)})
    runs = pd.read_csv(root / "runs.csv")
    one_seed = (runs["method"] == "random") & (runs["ipc"] == 10) & (runs["synth_seed"] > 0)
    runs[~one_seed].to_csv(root / "runs.csv", index=False)
    report = write_report(root, formats=("md", "tex"))
    random_row = next(
        line.strip("| ").split(" | ")
        for line in (report.parent / "table.md").read_text().splitlines()
        if line.startswith("| random |")
    )
    assert random_row[2].endswith("‡") and "|".join(random_row).count("‡") == 1  # MNIST IPC 10
    latex = (report.parent / "table.tex").read_text()
    random_line = next(line for line in latex.splitlines() if line.startswith("random &"))
    assert random_line.rstrip(" \\").endswith(r"$^{\ddagger}$")
    assert r"$^{\ddagger}$: not tested against the best" in latex


def test_whole_dataset_recorded_per_ipc_and_incomplete_tasks(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10)}, whole_per_ipc=True)
    runs = pd.read_csv(root / "runs.csv")
    runs = runs[~((runs["method"] == "dc") & (runs["ipc"] == 10))]  # dc's IPC-10 cells failed
    runs.to_csv(root / "runs.csv", index=False)
    report = write_report(root, formats=("csv", "md"))
    cells = pd.read_csv(report.parent / "cells.csv").set_index(["method", "ipc"])
    whole_row = next(
        line for line in (report.parent / "table.md").read_text().splitlines() if line.startswith("| Whole dataset |")
    )
    for ipc in (1, 10):  # each column shows the whole-dataset cell of its own IPC
        assert f"{cells.loc[('whole', ipc), 'mean']:.1f} ± " in whole_row
    ranks = pd.read_csv(report.parent / "ranks.csv")
    assert set(ranks["ipc"]) == {1} and ranks["method"].nunique() == 3
    text = report.read_text()
    assert "1 of 2 task(s) lack a cell for some method" in text
    assert "Friedman test not run" in text and "No CD diagram" in text


def test_cli_report_leaves_stderr_empty_with_constant_groups(tmp_path: Path, capsys):
    """No scipy RuntimeWarning reaches the user when a method has no variance across seeds
    (warnings are errors in this module, and stderr must stay empty)."""
    root = make_results(tmp_path, {"MNIST": (1, 10), "CIFAR10": (1,)})
    runs = pd.read_csv(root / "runs.csv")
    runs.loc[runs["method"] == "dm", "test_acc"] = 0.5  # every seed and model identical
    runs.loc[runs["method"] == "random", "test_acc"] = 0.25
    runs.to_csv(root / "runs.csv", index=False)
    assert main(["report", str(root), "--format", "csv,md,tex"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "report written" in captured.out
    comparisons = pd.read_csv(root / "report" / "comparisons.csv")
    pair = comparisons["method_a"] + "-" + comparisons["method_b"]
    assert comparisons.loc[pair == "random-dm", "p_raw"].isna().all()  # both constant: untested
    assert (comparisons.loc[pair == "dc-dm", "p_raw"] < 0.05).all()  # one constant: one-sample t


def test_extension_points_list_every_part_of_the_report():
    names = [writer.__name__ for writer in FIGURE_WRITERS]
    assert names == [
        "accuracy_vs_ipc_figures",
        "cd_diagram_figures",
        "accuracy_vs_cost_figures",
        "gain_figures",
        "synthetic_grid_figures",
        "loss_curve_figures",
    ]
    sections = [section.__name__ for section in SECTIONS]
    assert sections[:5] == [
        "title_section",
        "protocol_section",
        "datasets_section",
        "results_section",
        "reference_section",
    ]
    assert len(SECTIONS) == len(set(SECTIONS))


def _runs_frame(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(make_results(tmp_path, {"MNIST": (1,)}) / "runs.csv")


@pytest.mark.parametrize(
    "break_input, message",
    [
        (lambda path: (path / "runs.csv").unlink(), "not found"),
        (lambda path: (path / "runs.csv").write_text(""), "no rows"),
        (lambda path: (path / "runs.csv").write_text("run_id,method,test_acc\n"), "no rows"),
        (
            lambda path: (
                (path / "runs.csv").write_text("run_id,method,test_acc\n"),
                (path / "failures.csv").write_text("run_id,reason\nx,oom\n"),
            ),
            "every cell failed: see failures.csv",
        ),
        (
            lambda path: (
                _runs_frame(path).drop(columns=["synth_seed", "eval_arch"]).to_csv(path / "runs.csv", index=False)
            ),
            "lacks column(s) eval_arch, synth_seed",
        ),
        (
            lambda path: (
                _runs_frame(path)
                .assign(test_acc=lambda f: f["test_acc"].where(f.index != 2))
                .to_csv(path / "runs.csv", index=False)
            ),
            "non-numeric test_acc",
        ),
        (
            lambda path: (
                _runs_frame(path).assign(test_acc=lambda f: 100 * f["test_acc"]).to_csv(path / "runs.csv", index=False)
            ),
            "outside [0, 1]",
        ),
        (lambda path: pd.concat([_runs_frame(path)] * 2).to_csv(path / "runs.csv", index=False), "repeats evaluations"),
    ],
)
def test_bad_input_raises_one_line_dcbench_error(tmp_path: Path, break_input, message):
    make_results(tmp_path, {"MNIST": (1,)})
    break_input(tmp_path)
    with pytest.raises(DcbenchError) as error:
        write_report(tmp_path, formats=("csv",))
    assert message in str(error.value)
    assert "\n" not in str(error.value) and ": " in str(error.value)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"formats": ("csv", "svg")}, "unknown report format(s) svg"),
        ({"alpha": 5.0}, "not a probability"),
    ],
)
def test_bad_options_raise_dcbench_error(tmp_path: Path, options, message):
    make_results(tmp_path, {"MNIST": (1,)})
    with pytest.raises(DcbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_report(tmp_path, **options)


def test_reference_lines_come_from_the_recorded_flag_not_a_method_name(tmp_path: Path):
    """A third-party reference line (any name, its own label) is shown on top and never tested;
    a runs.csv from before the flag was recorded takes it from the installed ``whole``."""
    root = make_results(tmp_path / "new", {"MNIST": (1,)})
    runs = pd.read_csv(root / "runs.csv")
    flagged = runs["method"] == "whole"
    runs.loc[flagged, "method"], runs.loc[flagged, "method_label"] = "oracle", "Oracle & co"
    runs.to_csv(root / "runs.csv", index=False)
    report = write_report(root, formats=("csv", "md", "tex"))
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert "oracle" not in set(comparisons["method_a"]) | set(comparisons["method_b"])
    assert "| Oracle & co |" in (report.parent / "table.md").read_text()
    assert r"Oracle \& co" in (report.parent / "table.tex").read_text()

    legacy = make_results(tmp_path / "old", {"MNIST": (1,)})
    runs = pd.read_csv(legacy / "runs.csv").drop(columns=["reference_only", "method_label"])
    runs.to_csv(legacy / "runs.csv", index=False)
    report = write_report(legacy, formats=("csv", "md"))
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert "whole" not in set(comparisons["method_a"]) | set(comparisons["method_b"])
    assert "| Whole dataset |" in (report.parent / "table.md").read_text()
