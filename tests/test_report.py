"""dcbench.report end to end on synthetic results directories."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread, imsave
from scipy import stats as sps

from dcbench import stats
from dcbench.errors import DcbenchError
from dcbench.report import write_report

# Level of each method in accuracy (fraction); IPC adds a log-shaped gain.
METHOD_LEVELS = {"random": 0.30, "dc": 0.45, "dm": 0.47, "whole": 0.88}
SEEDS = (0, 1, 2)
EVAL_MODELS = 2


def make_results(root: Path, tasks: dict[str, tuple[int, ...]], methods=tuple(METHOD_LEVELS),
                 seeds=SEEDS, grids: bool = False, whole_per_ipc: bool = False) -> Path:
    """Write runs.csv (and optionally grid images) like the runner does.

    ``tasks`` maps dataset -> IPCs. The whole-dataset method is recorded once per dataset with
    ipc 0 (its accuracy does not depend on IPC), or at every IPC with ``whole_per_ipc``.
    """
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for dataset, ipcs in tasks.items():
            for ipc in (0,) if method == "whole" and not whole_per_ipc else ipcs:
                for synth_seed in seeds:
                    run_id = f"{method}-{dataset}-ipc{ipc}-s{synth_seed}"
                    seed_effect = rng.normal(0, 0.01)  # shared by the seed's evaluation models
                    for eval_index in range(EVAL_MODELS):
                        accuracy = (METHOD_LEVELS[method] + 0.05 * np.log10(max(ipc, 1))
                                    + seed_effect + rng.normal(0, 0.004))
                        rows.append({
                            "run_id": run_id, "method": method, "method_version": "0.1",
                            "dataset": dataset, "ipc": ipc, "eval_arch": "ConvNet",
                            "synth_seed": synth_seed, "eval_seed": 1000 + eval_index,
                            "eval_index": eval_index, "test_acc": accuracy, "condense_s": 12.5,
                            "eval_s": 3.0, "peak_rss_mb": 800.0, "cuda_peak_mb": np.nan,
                            "synth_iters": 20, "config_hash": "cafe0123", "preset": "smoke",
                            "protocol": "convnet-dsa-v1", "eval_epochs": 300,
                            "eval_augmentation": "dsa", "eval_models": EVAL_MODELS,
                            "dcbench_version": "0.1.0"})
                    if grids and method != "whole":
                        run_dir = root / "runs" / run_id
                        run_dir.mkdir(parents=True, exist_ok=True)
                        # one 8-pixel tile per image: IPC rows x 10 class columns
                        imsave(run_dir / "grid.png", rng.random((8 * ipc, 80, 3)))
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full report: 3 tasks (< 6), grids on disk, a failure and a spec."""
    root = make_results(tmp_path_factory.mktemp("results"),
                        {"MNIST": (1, 10), "CIFAR10": (1,)}, grids=True)
    pd.DataFrame([{"run_id": "cafe-MNIST-ipc1-s0", "method": "cafe", "dataset": "MNIST",
                   "ipc": 1, "synth_seed": 0, "reason": "CUDA out of memory"}]).to_csv(
        root / "failures.csv", index=False)
    (root / "spec.toml").write_text('name = "toy-grid"\n')
    return write_report(root)


def test_report_writes_every_output(report: Path):
    assert report == report.parent / "report.md" and report.parent.name == "report"
    expected = ["cells.csv", "comparisons.csv", "ranks.csv", "omnibus.csv", "win_tie_loss.csv",
                "table_wide.csv", "table.tex", "table.md", "report.md", "cd_diagram.png",
                "acc_vs_ipc_MNIST.png", "acc_vs_ipc_CIFAR10.png",
                "synthetic_grids_MNIST_ipc1.png", "synthetic_grids_MNIST_ipc10.png",
                "synthetic_grids_CIFAR10_ipc1.png"]
    for name in expected:
        assert (report.parent / name).is_file(), name
    assert not (report.parent / "wilcoxon.csv").exists()


def test_pngs_are_readable_images(report: Path):
    for png in report.parent.glob("*.png"):
        image = imread(png)
        assert image.ndim == 3 and min(image.shape[:2]) > 100, png.name


def test_cells_equal_a_direct_recomputation_from_runs(report: Path):
    runs = pd.read_csv(report.parent.parent / "runs.csv")
    cells = pd.read_csv(report.parent / "cells.csv")
    assert list(cells.columns) == list(stats.CELL_SUMMARY_COLUMNS)
    assert len(cells) == len(runs.groupby(list(stats.CELL_KEYS)))
    for cell in cells.itertuples(index=False):
        rows = runs[(runs["method"] == cell.method) & (runs["dataset"] == cell.dataset)
                    & (runs["ipc"] == cell.ipc) & (runs["eval_arch"] == cell.eval_arch)]
        percent = 100 * rows["test_acc"]
        seed_means = percent.groupby(rows["synth_seed"]).mean().to_numpy()
        low, high = sps.t.interval(0.95, len(seed_means) - 1, loc=seed_means.mean(),
                                   scale=sps.sem(seed_means))
        assert (cell.n_seeds, cell.n_evals) == (len(SEEDS), len(SEEDS) * EVAL_MODELS)
        assert cell.mean == pytest.approx(seed_means.mean())
        assert cell.sd == pytest.approx(seed_means.std(ddof=1))
        assert (cell.ci_low, cell.ci_high) == pytest.approx((low, high))
        assert cell.pooled_mean == pytest.approx(percent.mean())
        assert cell.pooled_sd == pytest.approx(percent.std(ddof=0))


def test_comparisons_exclude_whole_and_share_one_holm_family(report: Path):
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert list(comparisons.columns) == list(stats.COMPARISON_COLUMNS)
    assert "whole" not in set(comparisons["method_a"]) | set(comparisons["method_b"])
    assert (comparisons["method_a"] != comparisons["method_b"]).all()
    assert set(comparisons["kind"]) <= {"vs_best", "vs_reference"}
    assert (comparisons["family_size"] == comparisons["p_raw"].notna().sum()).all()
    assert (comparisons["p_adj"] >= comparisons["p_raw"]).all()
    assert (comparisons["test"] == "welch_t").all() and not comparisons["paired"].any()
    for _, task in comparisons.groupby(list(stats.TASK_KEYS)):
        pairs = [frozenset(pair) for pair in zip(task["method_a"], task["method_b"])]
        assert len(pairs) == len(set(pairs))


def test_ranks_and_omnibus(report: Path):
    ranks = pd.read_csv(report.parent / "ranks.csv")
    assert "whole" not in set(ranks["method"])
    k = ranks["method"].nunique()
    assert np.allclose(ranks.groupby(list(stats.TASK_KEYS))["rank"].sum(), k * (k + 1) / 2)
    omnibus = pd.read_csv(report.parent / "omnibus.csv").iloc[0]
    assert (omnibus["k"], omnibus["N"]) == (3, 3)
    assert omnibus["nemenyi_cd"] == pytest.approx(stats.nemenyi_cd(3, 3))


def test_latex_table_is_booktabs_with_marks_and_whole_dataset_on_top(report: Path):
    latex = (report.parent / "table.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\textbf{", r"\underline{",
                  r"$\pm$", r"\caption{", r"\multicolumn"):
        assert token in latex, token
    body = latex.split(r"\midrule")[1].strip().splitlines()
    assert body[0].startswith("Whole dataset")
    assert body[1].startswith("random")  # the reference leads the compared methods


def test_markdown_table_twin_marks_best_second_and_ties_with_best(report: Path):
    lines = (report.parent / "table.md").read_text().splitlines()
    assert lines[0].startswith("| Method | CIFAR10 IPC 1 | MNIST IPC 1 | MNIST IPC 10 | CIFAR10 IPC 1 cost |")
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:]
            for line in lines[2:] if line.startswith("| ")}
    assert list(rows) == ["Whole dataset", "random", "dc", "dm"]
    cells = pd.read_csv(report.parent / "cells.csv")
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    columns = [("CIFAR10", 1), ("MNIST", 1), ("MNIST", 10)]
    for position, (dataset, ipc) in enumerate(columns):
        task = cells[(cells["dataset"] == dataset) & (cells["ipc"] == ipc)
                     & (cells["method"] != "whole")].sort_values("mean", ascending=False)
        best, second = task["method"].iloc[0], task["method"].iloc[1]
        assert rows[best][position].startswith("**")
        assert rows[second][position].startswith("<u>")
        vs_best = comparisons[(comparisons["dataset"] == dataset) & (comparisons["ipc"] == ipc)
                              & (comparisons["kind"] == "vs_best")]
        for row in vs_best.itertuples(index=False):
            assert rows[row.method_a][position].endswith("†") == (not row.significant)
    assert " ± " in rows["random"][0] and "Holm over 9 comparisons" in lines[-1]


def test_report_md_states_protocol_trail_and_failures(report: Path):
    text = report.read_text()
    for phrase in ("Synthesis seeds: 0, 1, 2", "300 epochs", "augmentation dsa", "Welch",
                   "Holm over", "3 complete task(s) < 6: pairwise Wilcoxon not run",
                   "win/tie/loss counts vs `random`", "CUDA out of memory", 'name = "toy-grid"',
                   "## Cost per method", "(cd_diagram.png)", "(acc_vs_ipc_MNIST.png)",
                   "(synthetic_grids_MNIST_ipc10.png)"):
        assert phrase in text, phrase
    assert "cuda_peak_mb" not in text  # all empty: the column is left out of the cost table


def test_six_tasks_switch_to_pairwise_wilcoxon(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10, 50), "CIFAR10": (1, 10, 50)})
    report = write_report(root, formats=("csv",))
    wilcoxon = pd.read_csv(report.parent / "wilcoxon.csv")
    assert len(wilcoxon) == 3  # k(k-1)/2 pairs of random, dc, dm
    assert (wilcoxon["n_tasks"] == 6).all()
    assert "6 tasks >= 6: pairwise Wilcoxon signed-rank" in report.read_text()
    assert not (report.parent / "table.tex").exists()


def test_paired_t_when_requested_and_seed_lists_match(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,)})
    report = write_report(root, formats=("csv",), paired=True, out_dir=tmp_path / "out")
    assert report == tmp_path / "out" / "report.md"
    comparisons = pd.read_csv(report.parent / "comparisons.csv")
    assert (comparisons["test"] == "paired_t").all() and comparisons["paired"].all()
    assert (comparisons["df"] == len(SEEDS) - 1).all()


def test_single_seed_cells_give_nan_and_no_grids_give_no_figure(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10)}, methods=("dc", "dm"), seeds=(0,))
    report = write_report(root, reference="random")
    cells = pd.read_csv(report.parent / "cells.csv")
    assert cells["sd"].isna().all() and cells["ci_low"].isna().all()
    assert pd.read_csv(report.parent / "comparisons.csv")["p_raw"].isna().all()
    assert not list(report.parent.glob("synthetic_grids_*.png"))
    text = report.read_text()
    assert "have one synthesis seed" in text and "Reference `random` is not in runs.csv" in text
    assert "| dm | **" in (report.parent / "table.md").read_text()


def test_whole_dataset_recorded_per_ipc_and_incomplete_tasks(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1, 10)}, whole_per_ipc=True)
    runs = pd.read_csv(root / "runs.csv")
    runs = runs[~((runs["method"] == "dc") & (runs["ipc"] == 10))]  # dc's IPC-10 cells failed
    runs.to_csv(root / "runs.csv", index=False)
    report = write_report(root, formats=("csv", "md"))
    cells = pd.read_csv(report.parent / "cells.csv").set_index(["method", "ipc"])
    whole_row = next(line for line in (report.parent / "table.md").read_text().splitlines()
                     if line.startswith("| Whole dataset |"))
    for ipc in (1, 10):  # each column shows the whole-dataset cell of its own IPC
        assert f"{cells.loc[('whole', ipc), 'mean']:.1f} ± " in whole_row
    assert "| dc | " in (report.parent / "table.md").read_text()
    ranks = pd.read_csv(report.parent / "ranks.csv")
    assert set(ranks["ipc"]) == {1} and ranks["method"].nunique() == 3
    text = report.read_text()
    assert "1 of 2 task(s) lack a cell for some method" in text
    assert "No CD diagram" in text


def _runs_frame(tmp_path: Path) -> pd.DataFrame:
    return pd.read_csv(make_results(tmp_path, {"MNIST": (1,)}) / "runs.csv")


@pytest.mark.parametrize("break_input, message", [
    (lambda path: (path / "runs.csv").unlink(), "not found"),
    (lambda path: (path / "runs.csv").write_text(""), "no rows"),
    (lambda path: (path / "runs.csv").write_text("run_id,method,test_acc\n"), "no rows"),
    (lambda path: ((path / "runs.csv").write_text("run_id,method,test_acc\n"),
                   (path / "failures.csv").write_text("run_id,reason\nx,oom\n")),
     "every cell failed: see failures.csv"),
    (lambda path: _runs_frame(path).drop(columns=["synth_seed", "eval_arch"]).to_csv(
        path / "runs.csv", index=False), "lacks column(s) eval_arch, synth_seed"),
    (lambda path: _runs_frame(path).assign(test_acc=lambda f: f["test_acc"].where(
        f.index != 2)).to_csv(path / "runs.csv", index=False), "non-numeric test_acc"),
    (lambda path: _runs_frame(path).assign(test_acc=lambda f: 100 * f["test_acc"]).to_csv(
        path / "runs.csv", index=False), "outside [0, 1]"),
    (lambda path: pd.concat([_runs_frame(path)] * 2).to_csv(path / "runs.csv", index=False),
     "repeats evaluations"),
])
def test_bad_input_raises_one_line_dcbench_error(tmp_path: Path, break_input, message):
    make_results(tmp_path, {"MNIST": (1,)})
    break_input(tmp_path)
    with pytest.raises(DcbenchError) as error:
        write_report(tmp_path, formats=("csv",))
    assert message in str(error.value)
    assert "\n" not in str(error.value) and ": " in str(error.value)


@pytest.mark.parametrize("options, message", [
    ({"formats": ("csv", "pdf")}, "unknown report format(s) pdf"),
    ({"alpha": 5.0}, "not a probability"),
])
def test_bad_options_raise_dcbench_error(tmp_path: Path, options, message):
    make_results(tmp_path, {"MNIST": (1,)})
    with pytest.raises(DcbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_report(tmp_path, **options)
