"""`dcbench run` options of issue 15 end to end: curves, TensorBoard, checkpoint settings and refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dcbench.api import hookimpl
from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.method.checkpoint import CHECKPOINT_FILE, Checkpointer, CheckpointPolicy, checkpoint_identity
from dcbench.run.grid import run_benchmark
from dcbench.run.shared import registry as shared_registry
from dcbench.run.spec import load_spec

SPEC = """
name = "tb"
preset = "smoke"
methods = ["random", "dm"]
ipcs = [1]
seeds = [0]
checkpoint_every = 1
"""


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "tb.toml"
    path.write_text(text)
    return path


def test_run_writes_curves_tensorboard_events_and_a_loss_figure(tmp_path: Path, fashion_root: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    out = run_benchmark(
        write_spec(tmp_path),
        out=tmp_path / "out",
        data_root=str(fashion_root),
        device="cpu",
        show_progress=False,
        tensorboard=True,
    )
    dm = out / "runs" / "dm-fashion-mnist-ipc1-s0"
    assert (dm / "curve.csv").read_text().splitlines()[0] == "step,total,loss"
    assert not (dm / CHECKPOINT_FILE).exists()  # deleted once the cell finished
    assert "checkpoint at iteration 2/2" in (dm / "log.txt").read_text()
    assert (out / "report" / "loss_curves_fashion-mnist_ipc1.png").is_file()
    assert "loss_curves_fashion-mnist_ipc1.png" in (out / "report" / "report.md").read_text()
    events = event_accumulator.EventAccumulator(str(out / "tensorboard" / "dm-fashion-mnist-ipc1-s0"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "condense/loss" in scalars and "eval/ConvNet/test_acc" in scalars and "cell/condense_s" in scalars
    assert [e.step for e in events.Scalars("condense/loss")] == [1, 2]
    curve_losses = [float(line.split(",")[2]) for line in (dm / "curve.csv").read_text().splitlines()[1:]]
    assert [e.value for e in events.Scalars("condense/loss")] == pytest.approx(curve_losses, rel=1e-6)
    assert (out / "tensorboard" / "random-fashion-mnist-ipc1-s0").is_dir()


def test_tensorboard_without_the_package_is_refused_before_work(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a)
    )
    with pytest.raises(DcbenchError, match=r"pip install 'dcbench\[tensorboard\]'"):
        run_benchmark(
            write_spec(tmp_path),
            out=tmp_path / "out",
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            tensorboard=str(tmp_path / "tb"),
        )
    assert not (tmp_path / "out").exists()


def test_a_cell_checkpoint_of_another_config_stops_the_run_before_any_work(tmp_path: Path, fashion_root: Path) -> None:
    cell_dir = tmp_path / "out" / "runs" / "dm-fashion-mnist-ipc1-s0"
    stale = checkpoint_identity("dm", shared_registry().method("dm").version, "0ldc0nf1g", "fashion-mnist", 1, 0)
    Checkpointer(cell_dir, stale, CheckpointPolicy(iterations=1)).save(1, 2, lambda: {"images": torch.zeros(1)})
    with pytest.raises(DcbenchError, match="written by a different config .*config_hash '0ldc0nf1g'"):
        run_benchmark(
            write_spec(tmp_path),
            out=tmp_path / "out",
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            write_report=False,
        )
    assert not (tmp_path / "out" / "runs" / "random-fashion-mnist-ipc1-s0").exists()
    assert (cell_dir / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize(
    "text, match",
    [
        ("checkpoint_every = '5 parsecs'", "neither a number of iterations"),
        ("gpus_per_cell = 1.5", "gpus_per_cell must be a fraction"),
        ("gpus_per_cell = -1", "gpus_per_cell must be a fraction"),
        ("tensorboard = 3", "spec tracking.tensorboard must be true, false or a non-empty string"),
        ("[tracking]\nwandb = ''", "spec tracking.wandb must be"),
    ],
)
def test_bad_run_options_in_a_spec_are_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DcbenchError, match=match):
        load_spec(write_spec(tmp_path, text))


def test_run_options_are_written_to_the_resolved_spec(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, SPEC + "gpus_per_cell = 0.25\ntensorboard = 'tb-logs'\n"))
    assert (spec.checkpoint_every, spec.gpus_per_cell, spec.tracking) == (1, 0.25, {"tensorboard": "tb-logs"})
    text = spec.to_toml()
    assert "checkpoint_every = 1\n" in text and "gpus_per_cell = 0.25\n" in text
    assert '[tracking]\ntensorboard = "tb-logs"' in text
    assert load_spec(write_spec(tmp_path, text)).tracking == {"tensorboard": "tb-logs"}  # read back the same


def test_a_tracking_request_no_plugin_claims_is_refused_before_work(tmp_path: Path, fashion_root: Path) -> None:
    with pytest.raises(DcbenchError, match="tracking 'wandb' asked for, but no loaded plugin handles it"):
        run_benchmark(write_spec(tmp_path), out=tmp_path / "out", data_root=str(fashion_root), tracking={"wandb": True})
    assert not (tmp_path / "out").exists()


def test_a_third_party_tracking_plugin_claims_its_name_and_sees_it_in_every_cell(
    tmp_path: Path, fashion_root: Path
) -> None:
    seen: list[dict[str, str]] = []

    class Recorder:
        @hookimpl
        def dcbench_tracking_setting(self, name: str, value: bool | str, results_dir: Path) -> str | None:
            return f"{results_dir.name}:{value}" if name == "recorder" else None

        @hookimpl
        def dcbench_cell_started(self, cell: dict) -> None:
            seen.append(dict(cell["tracking"]))

    registry = shared_registry()
    registry.manager.register(Recorder(), name="recorder-test")
    try:
        main(
            [
                "run",
                str(write_spec(tmp_path)),
                "--out",
                str(tmp_path / "out"),
                "--data-root",
                str(fashion_root),
                "--device",
                "cpu",
                "--quiet",
                "--reference",
                "none",
                "--track",
                "recorder=run-7",
            ]
        )
    finally:
        registry.manager.unregister(name="recorder-test")
    assert seen == [{"recorder": "out:run-7"}] * 2  # two cells, the one claimed setting


@pytest.mark.parametrize("request_text", ["=dir", "name=", " "])
def test_a_malformed_track_option_is_a_usage_error(request_text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--track", request_text])
    assert "expected NAME or NAME=VALUE" in capsys.readouterr().err
