"""The hostile-input corpus, second round: one test per kind of finding, each reproducing it.

Kinds: writes that escape the store, markup and formula injection, tiny inputs with huge memory,
crashes and hangs, silent wrong results, unclean errors. Every case ends refused (one line,
``dcbench: error: ...``) or accepted correctly; none in a traceback or a write outside the store.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.results.record import record_problem
from dcbench.results.store import Store

pytestmark = pytest.mark.acceptance

SPEC = """
name = "hostile"
preset = "smoke"
eval_models = 1
methods = ["random"]
ipcs = [1]
seeds = [0]
"""
CELL = "random-fashion-mnist-ipc1-s0"


def cli(capsys: pytest.CaptureFixture, *args: Any) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def assert_refused(code: int, err: list[str], *fragments: str) -> None:
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("dcbench: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one finished smoke cell (runs in a few seconds), copied by each test."""
    from dcbench.run.grid import RunOptions, run_grid
    from dcbench.testing import write_fashion_mnist_idx

    base = tmp_path_factory.mktemp("store")
    write_fashion_mnist_idx(base / "data", per_class=4, test_per_class=2)
    (base / "spec.toml").write_text(SPEC)
    options = RunOptions(
        base / "spec.toml", out=base / "out", data_root=str(base / "data"), device="cpu", show_progress=False
    )
    options = RunOptions(**{**options.__dict__, "write_report": False, "reference": "none"})
    assert run_grid(options).exit_status == 0
    return base


def copy_store(finished_store: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(spec, store, data root) of a private copy of the finished store."""
    shutil.copytree(finished_store, tmp_path / "s", symlinks=True)
    return tmp_path / "s" / "spec.toml", tmp_path / "s" / "out", tmp_path / "s" / "data"


def run_args(spec: Path, out: Path, data: Path) -> list[Any]:
    return ["run", spec, "--out", out, "--data-root", data, "--device", "cpu", "--quiet", "--reference", "none"]


# --- 1. writes that escape the store -------------------------------------------------------------


def test_a_linked_lock_file_is_refused_and_its_target_untouched(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    lock = out / ".dcbench.results.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "symbolic link")
    assert outside.read_text() == "keep me\n"


def test_a_linked_cell_directory_is_refused_before_any_work(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "elsewhere"
    shutil.move(out / "runs" / CELL, outside)
    (outside / "metrics.json").unlink()  # so the cell would be re-run
    (out / "runs" / CELL).symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "symbolic link", "remove it")
    assert sorted(p.name for p in outside.iterdir()) == before


def test_a_linked_log_is_never_appended_to(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "outside.log"
    outside.write_text("")
    cell = out / "runs" / CELL
    (cell / "metrics.json").unlink()
    (cell / "log.txt").unlink()
    (cell / "log.txt").symlink_to(outside)
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "log.txt is a symbolic link")
    assert outside.read_text() == ""
    # nor a damaged cell's note, nor a cell's own log when the link appears after the check
    with pytest.raises(DcbenchError, match="symbolic link"):
        Store(out).discard(CELL, "test")
    from dcbench.host.files import open_append

    with pytest.raises(DcbenchError, match="symbolic link"):
        open_append(cell / "log.txt")
    assert outside.read_text() == ""


# --- 2. markup and formula injection ---------------------------------------------------------------

HOSTILE = {"random": 0.30, "# Head <b>x `a": 0.45, "=HYPERLINK(1)": 0.47, "$x^$": 0.40}


@pytest.fixture
def hostile_report(tmp_path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from report_fixtures import make_results

    from dcbench.report import write_report

    root = make_results(tmp_path / "r", {"d`<i>": (1,)}, methods=tuple(HOSTILE), levels=HOSTILE, seeds=(0, 1))
    runs = pd.read_csv(root / "runs.csv")  # a class-name-like label, and a negative number that must stay one
    runs["method_label"] = runs["method"]
    runs["condense_s"] = -1.5
    runs.to_csv(root / "runs.csv", index=False)
    return write_report(root, formats=("csv", "md", "tex", "png"))


def test_names_are_escaped_in_markdown_and_latex(hostile_report: Path) -> None:
    report = hostile_report.read_text()
    table = (hostile_report.parent / "table.md").read_text()
    for text in (report, table):
        assert not any(line.startswith("# Head") for line in text.splitlines())
        assert "<b>" not in text and "<i>" not in text  # raw HTML would pass through
        assert r"\# Head \<b\>x \`a" in text
    assert r"\$x\textasciicircum \$" in (hostile_report.parent / "table.tex").read_text()


def test_markdown_code_spans_hold_backticks() -> None:
    from dcbench.report.formatting import markdown_code, markdown_text

    assert markdown_code("a`b") == "``a`b``" and markdown_code("`x") == "`` `x ``"
    assert markdown_text("# a\nb_c _d_ *e*") == r"\# a b_c \_d\_ \*e\*"


def test_csv_cells_cannot_be_formulas_and_numbers_stay_numbers(hostile_report: Path) -> None:
    from dcbench.host.files import read_csv

    cells = (hostile_report.parent / "cells.csv").read_text()
    assert "\n=HYPERLINK" not in cells and "\n'=HYPERLINK(1)," in cells
    assert read_csv(hostile_report.parent / "cells.csv")["method"].str.startswith("=").any()  # restored
    pareto = pd.read_csv(hostile_report.parent / "pareto.csv")
    assert (pareto["condense_s"] == -1.5).all()  # a number, not text


def test_runs_csv_round_trips_formula_like_names(tmp_path: Path) -> None:
    from dcbench.host.files import atomic_write_text, csv_text
    from dcbench.results.runs_table import load_runs

    frame = pd.DataFrame(
        {"run_id": ["=a-d-ipc1-s0", "'b"], "method": ["=a", "'b"], "dataset": ["-d", "@e"], "ipc": [1, 1]}
    )
    frame = frame.assign(eval_arch="ConvNet", synth_seed=[0, 1], eval_index=0, test_acc=[0.5, 0.25])
    atomic_write_text(tmp_path / "runs.csv", csv_text(frame))
    assert "\n=" not in (tmp_path / "runs.csv").read_text()
    runs = load_runs(tmp_path)
    assert list(runs["method"]) == ["=a", "'b"] and list(runs["dataset"]) == ["-d", "@e"]
    assert list(runs["test_acc"]) == [0.5, 0.25]


def test_a_dollar_class_name_draws_its_grid_and_report(tmp_path: Path) -> None:
    from dcbench.method.synthetic import SyntheticSet
    from dcbench.report.image_grids import write_set_grid

    images = torch.zeros(2, 1, 8, 8)
    SyntheticSet(images, torch.tensor([0, 1]), {"class_names": ["$x^$", "ok"]}).save(tmp_path / "set")
    assert write_set_grid(tmp_path / "set", "$x^$ method").is_file()


# --- 5. silent wrong results -------------------------------------------------------------------------


def cell_metrics(finished_store: Path) -> dict[str, Any]:
    return json.loads((finished_store / "out" / "runs" / CELL / "metrics.json").read_text())


@pytest.mark.parametrize(
    "change",
    [
        {"train_accs": [-5.0]},
        {"train_accs": [1e308]},
        {"seconds": -1.0},
        {"condense_s": 1e308},
    ],
)
def test_impossible_measures_in_metrics_json_are_damage(finished_store: Path, change: dict) -> None:
    metrics = cell_metrics(finished_store)
    for key, value in change.items():
        if key in metrics:
            metrics[key] = value
        else:
            metrics["evaluations"][0][key] = value
    assert record_problem(metrics, CELL) is not None


def test_a_stray_cell_directory_is_not_a_method(finished_store: Path, tmp_path: Path) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    stray = out / "runs" / "notes"
    stray.mkdir()
    metrics = cell_metrics(finished_store)
    metrics["cell"]["id"] = "notes"
    (stray / "metrics.json").write_text(json.dumps(metrics))
    runs = Store(out).rebuild_tables()
    assert set(runs["method"]) == {"random"} and "notes" not in set(runs["run_id"])


def test_the_report_refuses_runs_that_no_cell_holds(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    runs = pd.read_csv(out / "runs.csv")
    extra = runs.assign(run_id="random-fashion-mnist-ipc1-s9", synth_seed=9)
    pd.concat([runs, extra]).to_csv(out / "runs.csv", index=False)
    code, err = cli(capsys, "report", out)
    assert_refused(code, err, "random-fashion-mnist-ipc1-s9", "no cell")


def test_class_names_are_not_read_from_a_manifest_outside_the_store(
    finished_store: Path, tmp_path: Path, capsys
) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    elsewhere = tmp_path / "elsewhere" / "x"
    elsewhere.mkdir(parents=True)
    (elsewhere / "manifest.json").write_text(json.dumps({"class_names": ["SECRET", "B"]}))
    runs = pd.read_csv(out / "runs.csv")
    runs["run_id"] = "../../elsewhere/x"
    runs.to_csv(out / "runs.csv", index=False)
    code, err = cli(capsys, "report", out)
    assert_refused(code, err, "are paths")
    # and a manifest that is a link out of the store is not followed
    runs["run_id"] = CELL
    runs.to_csv(out / "runs.csv", index=False)
    manifest = out / "runs" / CELL / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(elsewhere / "manifest.json")
    from dcbench.report.inputs import dataset_manifests

    assert dataset_manifests(out, runs) == {}
