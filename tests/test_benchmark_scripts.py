"""The benchmark scripts run: gpu_check.py end to end in its dry mode (toy sizes on the CPU), so
that it is known to work before a GPU is at hand, and speed.py at toy size with its raw JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_the_gpu_check_dry_run_checks_everything_it_promises(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    checks = " ".join(rows)
    for expected in (
        "auto picks CUDA",
        "dm condenses",
        "mtt condenses",
        "stacked vs sequential evaluation",
        "compiled evaluation",
        "bf16 autocast",
        "same seed twice",
        "conformance on cpu",
    ):
        assert expected in checks
    assert all("| yes |" in row for row in rows)
    assert not (tmp_path / "x.json").exists()  # a dry run records nothing


@pytest.mark.slow
def test_the_speed_harness_runs_and_writes_its_raw_json(tmp_path: Path) -> None:
    script = SCRIPT.with_name("speed.py")
    raw = tmp_path / "speed.json"
    args = ["--eval", "--repeats", "1", "--eval-epochs", "1", "--eval-widths", "32", "--eval-models", "1"]
    args += ["--eval-ipcs", "1"]
    out = subprocess.run(
        [sys.executable, str(script), *args, "--json", str(raw)], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "GFLOP/s" in out.stdout and "ConvNet-32" in out.stdout
    result = json.loads(raw.read_text())
    row = result["results"][0]
    # per-epoch seconds are a difference of two runs (E epochs minus 0): at toy size only its presence counts
    assert result["cpu"] and row["test_pass_s"] > 0 and "train_s_per_epoch" in row
