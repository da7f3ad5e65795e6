"""curve.csv (written per progress call, trimmed on resume), loss-curve plots and the cell progress line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread

from dcbench.report.curves import plot_loss_curves
from dcbench.results.curves import CURVE_FILE, CurveWriter, read_curves
from dcbench.run.progress import CellProgressBar


def rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()]


def test_a_resumed_run_keeps_the_rows_before_it_and_drops_the_lost_ones(tmp_path: Path) -> None:
    path = tmp_path / CURVE_FILE
    first = CurveWriter(path)
    for step in (1, 2, 3, 4):  # killed after its checkpoint at 2: rows 3 and 4 were lost work
        first.add(step, 6, {"loss": 10.0 - step, "image_steps": 2})
    first.close()
    assert rows(path)[0] == ["step", "total", "loss", "image_steps"]
    resumed = CurveWriter(path)
    resumed.add(3, 6, {"loss": 0.5, "image_steps": 1, "new_metric": 9.0})  # extra keys are ignored
    resumed.add(4, 6, {"loss": 0.25})  # missing keys stay empty
    resumed.close()
    assert rows(path) == [
        ["step", "total", "loss", "image_steps"],
        ["1", "6", "9.0", "2"],
        ["2", "6", "8.0", "2"],
        ["3", "6", "0.5", "1"],
        ["4", "6", "0.25", ""],
    ]
    restarted = CurveWriter(path)  # a method without checkpoints starts again at step 1
    restarted.add(1, 6, {"accuracy": 0.1})
    restarted.close()
    assert rows(path) == [["step", "total", "accuracy"], ["1", "6", "0.1"]]


def write_cell(root: Path, method: str, ipc: int, seed: int, losses: list[float] | None, status: str = "done") -> None:
    cell_id = f"{method}-tiny-ipc{ipc}-s{seed}"
    directory = root / "runs" / cell_id
    directory.mkdir(parents=True)
    metrics: dict = {
        "status": status,
        "cell": {"id": cell_id, "method": method, "dataset": "tiny", "ipc": ipc, "seed": seed, "preset": "smoke"},
    }
    if status == "done":  # the fields the store's schema requires of a finished cell
        metrics.update(
            fingerprint={},
            method_version="0",
            condense_s=1.0,
            evaluations=[
                {
                    "arch": "ConvNet",
                    "seconds": 1.0,
                    "test_accs": [0.5],
                    "train_accs": [0.5],
                    "eval_seeds": [0],
                    "protocol": {"name": "p", "epochs": 1, "augmentation": "none", "models": 1},
                }
            ],
        )
    else:
        metrics["reason"] = "failed on purpose"
    (directory / "metrics.json").write_text(json.dumps(metrics))
    if losses is not None:
        writer = CurveWriter(directory / CURVE_FILE)
        for step, loss in enumerate(losses, 1):
            writer.add(step, len(losses), {"loss": loss})
        writer.close()


def test_loss_curves_one_figure_per_task_from_finished_cells(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_cell(tmp_path, "dm", 1, seed, [5.0, 3.0, 2.0 + seed])
        write_cell(tmp_path, "dc", 1, seed, [0.9, -0.1, 0.4])  # not positive: linear scale
    write_cell(tmp_path, "dm", 10, 0, [4.0, 1.0])
    write_cell(tmp_path, "random", 1, 0, None)  # a coreset has no curve
    write_cell(tmp_path, "cafe", 1, 0, [1.0, 2.0], status="failed")  # only finished cells are plotted
    curves = read_curves(tmp_path)
    assert sorted(curves.groupby(["method", "ipc"]).size().items()) == [(("dc", 1), 6), (("dm", 1), 6), (("dm", 10), 2)]
    assert curves[(curves["method"] == "dm") & (curves["seed"] == 1)]["value"].tolist() == [5.0, 3.0, 3.0]
    paths = plot_loss_curves(tmp_path, tmp_path / "report")
    assert [p.name for p in paths] == ["loss_curves_tiny_ipc1.png", "loss_curves_tiny_ipc10.png"]
    assert all(imread(p).shape[0] > 100 for p in paths)
    assert plot_loss_curves(tmp_path / "empty", tmp_path / "report2") == []


def test_progress_line_shows_iteration_loss_and_resumed_start(capsys: pytest.CaptureFixture[str]) -> None:
    bar = CellProgressBar(position=0, disable=False)
    cell = {"id": "dm-tiny-ipc1-s0"}
    bar.dcbench_cell_started(cell=cell)
    for step in (3, 4, 5):  # resumed at iteration 2 of 5
        bar.dcbench_condense_progress(cell=cell, step=step, total=5, metrics={"loss": 0.125 * step})
    bar.dcbench_cell_finished(cell=cell, result={"status": "done"})
    err = capsys.readouterr().err
    assert "dm-tiny-ipc1-s0" in err and "5/5" in err and "loss=0.625" in err
    assert "2/5" in err  # the bar starts where the resumed run starts


def test_report_links_the_loss_curves(tmp_path: Path) -> None:
    from dcbench.report import write_report

    write_cell(tmp_path, "dm", 1, 0, [5.0, 3.0])
    rows_ = [
        {
            "run_id": "dm-tiny-ipc1-s0",
            "method": "dm",
            "method_version": "1",
            "dataset": "tiny",
            "ipc": 1,
            "eval_arch": "ConvNet",
            "synth_seed": 0,
            "eval_seed": 0,
            "eval_index": 0,
            "test_acc": 0.5,
            "condense_s": 1.0,
            "eval_s": 1.0,
            "preset": "smoke",
            "protocol": "p",
            "eval_epochs": 1,
            "eval_augmentation": "none",
            "eval_models": 1,
        }
    ]
    pd.DataFrame(rows_).to_csv(tmp_path / "runs.csv", index=False)
    report = write_report(tmp_path, reference="dm")
    assert (report.parent / "loss_curves_tiny_ipc1.png").is_file()
    assert "![loss_curves_tiny_ipc1](loss_curves_tiny_ipc1.png)" in report.read_text()
