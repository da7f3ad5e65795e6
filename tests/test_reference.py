"""The committed references themselves: every record valid, every set its manifest's content, runs.csv
what the records make, and the report's tables what `dcbench report` makes from them today."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dcbench.method.synthetic import MANIFEST_FILE, TENSOR_FILE, load_synthetic
from dcbench.report import write_report
from dcbench.results.record import record_problem
from dcbench.results.store import Store

REFERENCES = sorted(p for p in (Path(__file__).resolve().parents[1] / "results" / "reference").iterdir() if p.is_dir())
#: the report's tables that hold numbers (figures and report.md's prose are not compared)
TABLES = ("cells.csv", "comparisons.csv", "gains.csv", "precision.csv", "table.md")


def test_there_are_references() -> None:
    assert {p.name for p in REFERENCES} >= {"fashion-mnist-quick", "fashion-mnist-trajectory"}


@pytest.mark.parametrize("reference", REFERENCES, ids=lambda p: p.name)
def test_every_cell_record_is_valid_and_every_set_is_its_manifest(reference: Path) -> None:
    cells = sorted((reference / "runs").iterdir())
    assert cells
    for cell in cells:
        metrics = json.loads((cell / "metrics.json").read_text())
        assert record_problem(metrics, cell.name) is None, cell.name
        assert metrics["status"] == "done", cell.name
        manifest = json.loads((cell / MANIFEST_FILE).read_text())
        assert metrics["synthetic_hash"] == manifest["content_hash"], cell.name
        load_synthetic(cell)  # refuses a synthetic.pt that is not the manifest's content


@pytest.fixture(params=REFERENCES, ids=lambda p: p.name)
def rebuilt(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the reference made from its records only (no committed table), rebuilt."""
    reference: Path = request.param
    copy = tmp_path / reference.name
    for cell in (reference / "runs").iterdir():
        (copy / "runs" / cell.name).mkdir(parents=True)
        for name in ("metrics.json", MANIFEST_FILE, TENSOR_FILE):
            shutil.copy2(cell / name, copy / "runs" / cell.name / name)
    shutil.copy2(reference / "spec.toml", copy / "spec.toml")
    Store(copy).rebuild_tables()
    return reference, copy


def test_runs_csv_is_what_the_records_make(rebuilt: tuple[Path, Path]) -> None:
    reference, copy = rebuilt
    committed = pd.read_csv(reference / "runs.csv")
    made = pd.read_csv(copy / "runs.csv")
    # columns added since the reference was made are left out: its own columns must match
    pd.testing.assert_frame_equal(made[committed.columns], committed)


@pytest.mark.slow
def test_the_report_tables_are_what_dcbench_report_makes_from_them(rebuilt: tuple[Path, Path]) -> None:
    reference, copy = rebuilt
    out = write_report(copy, copy / "report", formats=("csv", "md")).parent
    for name in TABLES:
        assert (out / name).read_text() == (reference / "report" / name).read_text(), f"{reference.name}: {name}"
