"""dcbench.report.compare and `dcbench compare`: a run held against a reference store or published numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.report.compare import (
    compare_paths,
    find_reference,
    load_cells,
    resolve_reference,
    skipped_lines,
    summary_line,
    welch_from_stats,
)
from dcbench.run.grid import run_benchmark
from dcbench.run.shared import forget_data, reset_caches
from dcbench.stats import holm

REPO = Path(__file__).resolve().parents[2]

# Accuracy (%) of each (method, ipc) per seed: three seeds, two evaluation models each.
LEVELS = {("random", 1): 48.0, ("random", 10): 72.0, ("dm", 1): 69.0, ("dm", 10): 78.0}


def write_store(
    root: Path,
    shift: dict[str, float] | None = None,
    protocol: str = "ConvNet/300ep/none/v2",
    seeds: tuple[int, ...] = (0, 1, 2),
) -> Path:
    """A results directory with runs.csv as the runner writes it; ``shift`` moves a method's accuracy."""
    rng = np.random.default_rng(len(str(root)))
    rows = []
    for (method, ipc), level in LEVELS.items():
        for seed in seeds:
            seed_effect = rng.normal(0, 0.8)
            for k in range(2):
                accuracy = level + (shift or {}).get(method, 0.0) + seed_effect + rng.normal(0, 0.3)
                rows.append(
                    {
                        "run_id": f"{method}-fashion-mnist-ipc{ipc}-s{seed}",
                        "method": method,
                        "dataset": "fashion-mnist",
                        "ipc": ipc,
                        "eval_arch": "ConvNet",
                        "synth_seed": seed,
                        "eval_index": k,
                        "test_acc": accuracy / 100,
                        "protocol": protocol,
                        "config_hash": f"hash-{method}",
                        "preset": "quick",
                    }
                )
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "runs.csv", index=False)
    (root / "spec.toml").write_text('name = "x"\npreset = "quick"\ndatasets = ["fashion-mnist"]\n')
    return root


def test_welch_from_summaries_matches_a_hand_worked_example() -> None:
    # A = [48.1, 47.5, 48.9], B = [46.0, 46.8, 45.9]: means 48.1667 and 46.2333, variances 0.49333 and
    # 0.24333. SE^2 = 0.49333/3 + 0.24333/3 = 0.245556, t = 1.93333/0.495536 = 3.9015,
    # df = 0.245556^2 / (0.164444^2/2 + 0.081111^2/2) = 3.587, t_.975(3.587) = 2.906,
    # CI = 1.9333 -+ 2.906 * 0.4955 = [0.493, 3.374], p = 0.0215.
    test = welch_from_stats(48.1 + 1 / 15, np.sqrt(0.74 / 1.5), 3, 46.2 + 1 / 30, np.sqrt(0.365 / 1.5), 3)
    assert test.diff == pytest.approx(1.9333, abs=1e-4)
    assert test.statistic == pytest.approx(3.9015, abs=1e-3)
    assert test.df == pytest.approx(3.587, abs=1e-3)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.493, 3.374), abs=2e-3)
    assert test.p == pytest.approx(0.0215, abs=1e-3)


def test_welch_from_summaries_agrees_with_raw_data() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(70, 2, 5), rng.normal(68, 0.5, 3)
    test = welch_from_stats(a.mean(), a.std(ddof=1), 5, b.mean(), b.std(ddof=1), 3, confidence=0.9)
    raw = sps.ttest_ind(a, b, equal_var=False)
    ci = raw.confidence_interval(0.9)
    assert (test.statistic, test.df, test.p) == pytest.approx((raw.statistic, raw.df, raw.pvalue))
    assert (test.ci_low, test.ci_high) == pytest.approx((ci.low, ci.high))


def test_untestable_and_constant_summaries() -> None:
    assert np.isnan(welch_from_stats(70, 1, 1, 70, 1, 3).p)  # one seed: no variance estimate
    assert np.isnan(welch_from_stats(70, np.nan, 5, 70, 1, 3).p)  # a published mean without SD
    identical = welch_from_stats(70, 0, 3, 70, 0, 3)
    assert identical.p == 1.0 and identical.ci_low == identical.ci_high == 0.0
    assert welch_from_stats(70, 0, 3, 71, 0, 3).p == 0.0


def test_identical_stores_reproduce_every_cell(tmp_path: Path) -> None:
    run = write_store(tmp_path / "run")
    reference = tmp_path / "reference"
    shutil.copytree(run, reference)
    table = compare_paths(run, reference)
    assert len(table) == 4 and (table["verdict"] == "reproduced").all()
    assert (table["diff"] == 0).all() and (table["diff_ci_low"] < 0).all() and (table["diff_ci_high"] > 0).all()
    assert summary_line(table).startswith(
        "4 of 4 cells reproduced (Welch t, Holm over 4 cells, α = 0.05; differences up to "
    )


def test_a_shifted_method_differs_and_is_named(tmp_path: Path) -> None:
    table = compare_paths(write_store(tmp_path / "run", shift={"dm": -8.0}), write_store(tmp_path / "reference"))
    verdicts = dict(zip(table["method"] + table["ipc"].astype(str), table["verdict"]))
    assert verdicts == {"dm1": "differs", "dm10": "differs", "random1": "reproduced", "random10": "reproduced"}
    np.testing.assert_allclose(table["p_adj"], holm(table["p_raw"]))
    line = summary_line(table)
    assert line.startswith("2 of 4 cells reproduced; differ: dm fashion-mnist IPC 1 (")
    assert "dm fashion-mnist IPC 10 (" in line


def test_a_changed_protocol_is_flagged(tmp_path: Path) -> None:
    table = compare_paths(
        write_store(tmp_path / "run"), write_store(tmp_path / "ref", protocol="ConvNet/300ep/none/v1")
    )
    assert not table["same_protocol"].any()
    from dcbench.report.compare import warnings

    assert "another protocol than the reference" in warnings(table)[0]


PUBLISHED = """# a paper's table
method,dataset,ipc,mean,sd,n
dm,fashion-mnist,1,69.0,0.8,5
dm,fashion-mnist,10,90.0,0.3,5
dc,fashion-mnist,1,70.5,0.6,5
"""


def test_a_run_against_published_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "paper.csv"
    csv.write_text(PUBLISHED)
    cells = load_cells(csv)
    assert list(cells["eval_arch"]) == ["ConvNet"] * 3 and cells["n"].tolist() == [5, 5, 5]
    table = compare_paths(write_store(tmp_path / "run"), csv)
    assert dict(zip(table["ipc"], table["verdict"])) == {1: "reproduced", 10: "differs"}
    assert table["same_protocol"].isna().all()  # a paper records no dcbench protocol
    from dcbench.report.compare import warnings

    assert warnings(table) == [
        "2 cell(s) ran another preset than the reference (run quick vs reference paper): the settings differ"
    ]


def test_the_cells_that_were_not_compared_are_named(tmp_path: Path) -> None:
    run = write_store(tmp_path / "run")
    csv = tmp_path / "paper.csv"
    csv.write_text(PUBLISHED + "mtt,fashion-mnist,10,80.0,1.0,5\n")
    table = compare_paths(run, csv)
    [line] = [line for line in skipped_lines(table) if "of the reference" in line]
    assert line == (
        "not compared: 2 cell(s) of the reference have no counterpart in the run: "
        "dc fashion-mnist IPC 1, mtt fashion-mnist IPC 10"
    )
    assert all("mtt" not in line for line in skipped_lines(table) if "of the run" in line)


def test_the_shipped_published_numbers_load() -> None:
    cells = load_cells(REPO / "benchmarks" / "published" / "dc-dsa-dm-cafe.csv")
    assert {"dc", "dsa", "dm", "cafe", "cafe_dsa"} == set(cells["method"])
    assert cells.set_index(["method", "dataset", "ipc"]).loc[("dsa", "fashion-mnist", 10), "mean"] == 84.6


@pytest.mark.parametrize(
    "text,match",
    [
        ("method,dataset,ipc,mean,sd\ndm,fashion-mnist,1,69,1\n", "lacks column"),
        ("method,dataset,ipc,mean,sd,n\ndm,fashion-mnist,1,0.69,0.01,5\n", "fractions"),
        ("method,dataset,ipc,mean,sd,n\ndm,fashion-mnist,1,69,1,5\ndm,fashion-mnist,1,70,1,5\n", "twice"),
        ("method,dataset,ipc,mean,sd,n\ndm,fashion-mnist,1,69,1,0\n", "line 2: n must be a positive integer"),
        ("method,dataset,ipc,mean,sd,n\ndm,fashion-mnist,one,69,1,5\n", "line 2: ipc 'one' is not a number"),
        ("method,dataset,ipc,mean,sd,n\n", "no rows"),
    ],
)
def test_bad_published_csv_is_one_line_error(tmp_path: Path, text: str, match: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(DcbenchError, match=match):
        load_cells(csv)


def test_compare_command(tmp_path: Path, capsys) -> None:
    run = write_store(tmp_path / "run")
    csv = tmp_path / "paper.csv"
    csv.write_text(PUBLISHED)
    assert main(["compare", str(run), str(csv), "--csv", str(tmp_path / "out.csv")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("1 of 2 cells reproduced; differ: dm fashion-mnist IPC 10 (")
    assert len(pd.read_csv(tmp_path / "out.csv")) == 2
    # warnings and skipped cells come before the table; CI can ask for a failing exit
    table_start = next(i for i, line in enumerate(out) if line.startswith("| cell"))
    assert all(i < table_start for i, line in enumerate(out) if line.startswith("- "))
    assert main(["compare", str(run), str(csv), "--fail-on-differ"]) == 3
    capsys.readouterr()
    assert main(["compare", str(run), str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    csv.write_text("method,dataset,ipc,mean,sd,n\ndsa,cifar10,10,52.1,0.5,5\n")
    assert main(["compare", str(run), str(csv)]) == 2
    err = capsys.readouterr().err
    assert "no cell of" in err and err.count("\n") == 1


def test_reference_is_found_by_dataset_and_preset(tmp_path: Path) -> None:
    root = tmp_path / "reference"
    write_store(root / "fashion-mnist-quick")
    assert find_reference(["fashion-mnist"], "quick", root) == root / "fashion-mnist-quick"
    assert find_reference(["fashion-mnist"], "paper", root) is None
    assert find_reference(["mnist"], "quick", root) is None
    run_root = tmp_path / "local"
    assert resolve_reference("none", ["fashion-mnist"], "quick", run_root)[0] is None
    assert resolve_reference(str(root / "fashion-mnist-quick"), ["mnist"], "smoke", run_root) == (
        root / "fashion-mnist-quick",
        "",
    )
    # regenerating the reference in place compares it with nothing, and says so
    assert resolve_reference(str(root / "fashion-mnist-quick"), [], "quick", root / "fashion-mnist-quick") == (
        None,
        f"{root / 'fashion-mnist-quick'} is the reference itself: nothing compared",
    )
    with pytest.raises(DcbenchError, match="not found"):
        resolve_reference(str(tmp_path / "nope"), ["fashion-mnist"], "quick", run_root)
    assert resolve_reference("auto", ["fashion-mnist"], "paper", run_root)[1].startswith(
        "no committed reference of fashion-mnist at preset paper"
    )


def test_the_committed_reference_is_found_from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert find_reference(["fashion-mnist"], "quick") == Path("results/reference/fashion-mnist-quick")


SPEC = """
name = "tiny"
preset = "smoke"
methods = ["random"]
ipcs = [1]
seeds = [0, 1]
"""


def test_run_ends_with_the_comparison(tmp_path: Path, fashion_root: Path, capsys) -> None:
    reset_caches()
    forget_data()
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    with pytest.raises(DcbenchError, match="not found"):  # a bad reference is refused before any work
        run_benchmark(
            spec,
            out=tmp_path / "run",
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            reference=str(tmp_path / "missing"),
        )
    assert not (tmp_path / "run").exists()
    reference = run_benchmark(
        spec,
        out=tmp_path / "reference",
        data_root=str(fashion_root),
        device="cpu",
        show_progress=False,
        write_report=False,
        reference="none",
    )
    shutil.copytree(reference, tmp_path / "run")
    capsys.readouterr()
    run_benchmark(
        spec,
        out=tmp_path / "run",
        data_root=str(fashion_root),
        device="cpu",
        show_progress=False,
        reference=str(reference),
    )
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("1 of 1 cells reproduced")
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Against the reference" in report and "1 of 1 cells reproduced" in report
    assert (tmp_path / "run" / "report" / "reference_comparison.csv").is_file()
