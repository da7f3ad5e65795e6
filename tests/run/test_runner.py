"""`dcbench run`: grid expansion, resumable store, failures, config changes, kill/resume, Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch
from plugin_sources import GOOD_PLUGIN

from dcbench.host.errors import DcbenchError
from dcbench.method.contract import Method, class_major_labels
from dcbench.method.synthetic import SyntheticSet
from dcbench.run import grid
from dcbench.run.grid import run_benchmark
from dcbench.run.plan import plan_cells
from dcbench.run.shared import registry as shared_registry
from dcbench.run.spec import load_spec

REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference" / "fashion-mnist-quick"
TIMING_COLUMNS = ["condense_s", "eval_s", "peak_rss_mb", "cuda_peak_mb"]
SPEC = """
name = "tiny"
preset = "smoke"
methods = ["random", "herding"]
ipcs = [1, 2]
seeds = [0, 1]
"""


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def numbers(out: Path) -> pd.DataFrame:
    runs = pd.read_csv(out / "runs.csv").drop(columns=TIMING_COLUMNS)
    return runs.sort_values(["run_id", "eval_arch", "eval_index"]).reset_index(drop=True)


def run(tmp_path: Path, out: Path, fashion_root: Path, **kwargs) -> Path:
    return run_benchmark(
        write_spec(tmp_path),
        out=out,
        data_root=str(fashion_root),
        device="cpu",
        show_progress=False,
        write_report=False,
        **kwargs,
    )


def test_default_spec_is_the_quick_fashion_mnist_benchmark() -> None:
    spec = load_spec(None)
    assert (spec.name, spec.preset, spec.datasets, spec.ipcs, spec.seeds) == (
        "fashion-mnist-quick",
        "quick",
        ["fashion-mnist"],
        [1, 10],
        [0, 1, 2, 3, 4, 5],
    )
    registry = shared_registry()
    cells = plan_cells(spec, registry, None, "cpu")
    methods = {c.method for c in cells}
    # exactly the committed default reference's methods, whatever else is installed
    assert methods == set(pd.read_csv(REFERENCE / "runs.csv")["method"])
    assert not methods & {"whole", "mtt", "datm", "kcenter"}  # a spec names them to run them
    assert len(cells) == len(methods) * 2 * 6


def test_a_third_party_method_runs_only_where_named(
    extra_plugins, tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    extra_plugins("zero", GOOD_PLUGIN.replace("{name}", "zero"))
    planned: list[set[str]] = []
    monkeypatch.setattr(grid, "_run_cells", lambda todo, *rest: planned.append({c.method for c in todo}))
    spec = write_spec(tmp_path, 'preset = "smoke"\nipcs = [1]\nseeds = [0]\n')
    options = {"data_root": str(fashion_root), "device": "cpu", "show_progress": False, "write_report": False}
    options["reference"] = "none"
    grid.run_grid(grid.RunOptions(spec, out=tmp_path / "default", **options))
    note = capsys.readouterr().err
    assert planned[0] == set(pd.read_csv(REFERENCE / "runs.csv")["method"])  # zero is not in it ...
    assert (
        "left out of the default grid: datm (opt-in), kcenter (opt-in), mtt (opt-in), zero (from plugin 'zero')" in note
    )
    grid.run_grid(grid.RunOptions(spec, out=tmp_path / "named", methods=["zero", "random"], **options))
    assert planned[1] == {"zero", "random"}  # ... until it is named
    assert "left out" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "text,match",
    [
        ("ipcs = [0]", r"ipcs\[0\] must be an integer >= 1"),
        ("seeds = [1, 1]", "seeds lists 1 twice"),
        ("preset = 'huge'", "preset"),
        ("colour = 1", "no field 'colour'"),
        ("ipcs = [1", "not valid TOML"),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DcbenchError, match=match):
        load_spec(write_spec(tmp_path, text))


def test_second_run_skips_every_cell(tmp_path: Path, fashion_root: Path, capsys) -> None:
    out = tmp_path / "out"
    start = time.perf_counter()
    run(tmp_path, out, fashion_root)
    first = time.perf_counter() - start
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * 2 * 2 * 2  # methods x ipcs x seeds x evaluation models
    assert {
        "method",
        "dataset",
        "ipc",
        "eval_arch",
        "synth_seed",
        "eval_seed",
        "test_acc",
        "condense_s",
        "eval_s",
        "method_version",
        "config_hash",
    } <= set(runs.columns)
    for cell in runs["run_id"].unique():
        files = {p.name for p in (out / "runs" / cell).iterdir()}
        assert {"synthetic.pt", "manifest.json", "metrics.json", "grid.png", "log.txt"} <= files
    assert (out / "spec.toml").is_file()
    before = numbers(out)  # read now: the second run rewrites runs.csv
    metrics_before = {p: p.read_bytes() for p in (out / "runs").glob("*/metrics.json")}
    capsys.readouterr()
    start = time.perf_counter()
    run(tmp_path, out, fashion_root)
    second = time.perf_counter() - start
    assert "8 already done, 0 to run" in capsys.readouterr().err
    assert second < first / 2
    pd.testing.assert_frame_equal(numbers(out), before)  # a second run changes no number
    assert {p: p.read_bytes() for p in (out / "runs").glob("*/metrics.json")} == metrics_before


def test_changed_config_is_detected(tmp_path: Path, fashion_root: Path) -> None:
    out = tmp_path / "out"
    run(tmp_path, out, fashion_root)
    write_spec(tmp_path, SPEC + "\n[overrides.herding]\nnet_width = 8\n")
    with pytest.raises(DcbenchError, match="computed with a different config"):
        run_benchmark(
            tmp_path / "tiny.toml",
            out=out,
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            write_report=False,
        )


@dataclass
class NaNConfig:
    PRESETS: ClassVar[dict] = {}


class DivergingMethod(Method):
    name = "diverging"
    version = "0"
    config_class = NaNConfig

    def condense(self, real, ipc, config, seed, ctx):
        ctx.check_finite(torch.tensor(float("nan")), 0)
        return SyntheticSet(torch.zeros(1), class_major_labels(real.num_classes, ipc))


def test_failed_cell_is_recorded_and_others_go_on(tmp_path: Path, fashion_root: Path) -> None:
    registry = shared_registry()
    registry.methods["diverging"] = DivergingMethod()
    registry.owners[("method", "diverging")] = "test"
    spec = write_spec(tmp_path, SPEC.replace('["random", "herding"]', '["random", "diverging"]'))
    out = run_benchmark(
        spec, out=tmp_path / "out", data_root=str(fashion_root), device="cpu", show_progress=False, write_report=False
    )
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 4 and failures["reason"].str.contains("NonFiniteLossError: loss became nan").all()
    assert set(pd.read_csv(out / "runs.csv")["method"]) == {"random"}


def test_kill_minus_nine_loses_no_finished_cell(tmp_path: Path, fashion_root: Path) -> None:
    spec = write_spec(tmp_path)
    reference = run(tmp_path, tmp_path / "reference", fashion_root)
    out = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "dcbench.cli",
        "run",
        str(spec),
        "--out",
        str(out),
        "--data-root",
        str(fashion_root),
        "--device",
        "cpu",
        "--quiet",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("runs/*/metrics.json"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(out.glob("runs/*/metrics.json")))
    assert 2 <= finished < 8, "the run should have been killed mid-way"
    subprocess.run(command, check=True, capture_output=True)
    pd.testing.assert_frame_equal(numbers(out), numbers(reference))


@pytest.mark.ray
def test_ray_executor_gives_the_local_numbers(tmp_path: Path, fashion_root: Path) -> None:
    pytest.importorskip("ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a Ray task uses as many threads as it has CPUs: 1
    try:
        local = run(tmp_path, tmp_path / "local", fashion_root)
    finally:
        torch.set_num_threads(threads)
    on_ray = run(tmp_path, tmp_path / "ray", fashion_root, executor="ray")
    pd.testing.assert_frame_equal(numbers(on_ray).drop(columns=["device"]), numbers(local).drop(columns=["device"]))
