"""The executors beyond the sequential one. Worker processes: the same results as one process,
how many run at once, a killed worker's cells rerun and resume. Ray: retries resume from the
checkpoint, a lost cell is recorded and the grid goes on, results reach the driver without a
shared filesystem, thread and GPU settings per task."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from dcbench.host.errors import DcbenchError
from dcbench.method.checkpoint import CHECKPOINT_FILE, KILL_ENV
from dcbench.results.store import Store
from dcbench.run import executors
from dcbench.run.grid import run_benchmark
from dcbench.run.plan import Cell, plan_cells
from dcbench.run.shared import registry as shared_registry
from dcbench.run.spec import load_spec
from dcbench.run.workers import in_process_only, plan_workers

SPEC = """
name = "faults"
preset = "smoke"
methods = ["random", "dm"]
ipcs = [1]
seeds = [0]
checkpoint_every = 1

[overrides.dm]
iterations = 4
"""
DM_CELL = "dm-fashion-mnist-ipc1-s0"


def cell(tmp_path: Path, fashion_root: Path) -> Cell:
    spec_path = tmp_path / "faults.toml"
    spec_path.write_text(SPEC)
    return next(
        c for c in plan_cells(load_spec(spec_path), shared_registry(), str(fashion_root), "cpu") if c.method == "dm"
    )


def test_without_a_shared_filesystem_the_task_returns_the_files_and_the_driver_writes_them(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executors, "assigned_cpus", lambda: 3.0)
    seen_threads = []

    def execute(c: Cell, root: str) -> dict:
        seen_threads.append(c.torch_threads)
        directory = Store(Path(root)).cell_dir(c.id)
        directory.mkdir(parents=True)
        for name, text in (
            ("metrics.json", '{"status": "done"}'),
            ("log.txt", "log"),
            (".tmp", "x"),
            (CHECKPOINT_FILE, "not sent"),
        ):
            (directory / name).write_text(text)
        return {"status": "done"}

    dm = cell(tmp_path, fashion_root)
    worker_root = tmp_path / "worker"  # the worker's disk: it holds no token of the driver
    result = executors.run_cell_task(dm, str(worker_root), execute, token="driver-token")
    assert seen_threads == [3] and not result.shared_filesystem
    assert sorted(result.files) == ["log.txt", "metrics.json"]
    driver = Store(tmp_path / "driver")
    executors._copy_back(driver, dm.id, result.files)
    assert (driver.cell_dir(dm.id) / "log.txt").read_text() == "log"
    assert json.loads((driver.cell_dir(dm.id) / "metrics.json").read_text()) == {"status": "done"}
    with pytest.raises(DcbenchError, match="refusing to write it"):
        executors._copy_back(driver, dm.id, {"../escape": b""})

    (worker_root / executors.TOKEN_FILE).write_text("driver-token")  # a shared filesystem: nothing to copy
    worker_root.joinpath("runs").rename(tmp_path / "old-runs")
    shared = executors.run_cell_task(dm, str(worker_root), execute, token="driver-token")
    assert shared.shared_filesystem and shared.files == {}


def test_a_lost_cell_is_recorded_like_a_failed_one(tmp_path: Path, fashion_root: Path) -> None:
    store = Store(tmp_path)
    metrics = executors._lost_cell(store, cell(tmp_path, fashion_root), RuntimeError("worker died\ntraceback"), 2)
    assert metrics["status"] == "failed"
    store.rebuild_tables()
    failures = pd.read_csv(tmp_path / "failures.csv")
    assert failures["reason"].tolist() == ["RuntimeError: worker died (Ray task failed, 2 retries)"]


def test_gpus_per_cell_defaults_and_limits() -> None:
    assert executors._gpus(None, 0) == 0 and executors._gpus(None, 4) == 1 and executors._gpus(0.25, 1) == 0.25
    assert executors._gpus(0, 0) == 0
    with pytest.raises(DcbenchError, match="the Ray cluster has 0 GPUs"):
        executors._gpus(0.5, 0)
    with pytest.raises(DcbenchError, match="has 1 GPUs"):
        executors._gpus(2, 1)


@pytest.mark.ray
def test_a_killed_ray_worker_is_retried_and_resumes_and_a_lost_cell_does_not_stop_the_grid(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)

    def run(out: str, **options) -> Path:
        return run_benchmark(
            spec,
            out=tmp_path / out,
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            write_report=False,
            **options,
        )

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local reference: 1 thread, like a 1-CPU task
    try:
        reference = torch.load(run("local") / "runs" / DM_CELL / "synthetic.pt", weights_only=True)["images"]
    finally:
        torch.set_num_threads(threads)

    # every dm worker SIGKILLs itself right after its checkpoint at iteration 2 (once: a resumed run
    # starts at 3); the local instance inherits this environment
    monkeypatch.setenv(KILL_ENV, f"2@{DM_CELL}")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        retried = run("retried", executor="ray", max_retries=2)
        log = (retried / "runs" / DM_CELL / "log.txt").read_text()
        assert "checkpoint at iteration 2/4" in log and "resumed at iteration 2" in log
        assert json.loads((retried / "runs" / DM_CELL / "metrics.json").read_text())["resumed_at_iteration"] == 2
        assert not (retried / "runs" / DM_CELL / CHECKPOINT_FILE).exists()
        assert torch.equal(
            torch.load(retried / "runs" / DM_CELL / "synthetic.pt", weights_only=True)["images"], reference
        )
        assert set(pd.read_csv(retried / "runs.csv")["method"]) == {"random", "dm"}

        given_up = run("given-up", executor="ray", max_retries=0)
        failures = pd.read_csv(given_up / "failures.csv")
        assert failures["run_id"].tolist() == [DM_CELL] and "Ray task failed" in failures["reason"][0]
        assert set(pd.read_csv(given_up / "runs.csv")["method"]) == {"random"}  # the grid went on
        assert (given_up / "runs" / DM_CELL / CHECKPOINT_FILE).exists()

        run("given-up", executor="ray", max_retries=0)  # the same command again: resumes the lost cell
        assert "resumed at iteration 2" in (given_up / "runs" / DM_CELL / "log.txt").read_text()
        assert not (given_up / "failures.csv").exists()
        assert set(pd.read_csv(given_up / "runs.csv")["method"]) == {"random", "dm"}
    finally:
        ray.shutdown()


# --- worker processes (dcbench run --workers) ------------------------------------------------------

GiB = 2**30


@pytest.mark.parametrize(
    "workers,threads,device,preset,cells,memory,expected",
    [
        (None, None, "cpu", "quick", 42, 24 * GiB, (2, 1)),  # this project's 2-core CPU: a cell per core
        (None, 2, "cpu", "quick", 42, 24 * GiB, (1, 2)),  # --threads 2 takes both cores: one worker
        (None, None, "cpu", "quick", 1, 24 * GiB, (1, None)),  # one cell: no pool to start
        (None, None, "cpu", "smoke", 42, 24 * GiB, (1, None)),  # starting workers costs more than smoke cells
        (None, None, "cuda", "quick", 42, 24 * GiB, (1, None)),  # one GPU: one cell at a time
        (None, None, "cpu", "quick", 42, 5 * GiB, (1, 2)),  # memory for one worker only
        (2, None, "cpu", "quick", 42, 24 * GiB, (2, 1)),  # asked for: kept, threads split what is left
        (1, None, "cpu", "quick", 42, 24 * GiB, (1, 2)),
    ],
)
def test_plan_workers(workers, threads, device, preset, cells, memory, expected) -> None:
    plan = plan_workers(workers, threads, device, preset, cells, [], cpus=2, memory=memory)
    assert (plan.workers, plan.threads) == (expected[0], expected[1] or torch.get_num_threads())


def test_plan_workers_keeps_in_process_plugins_in_this_process() -> None:
    plan = plan_workers(None, None, "cpu", "quick", 42, ["method 'mine'"], cpus=2, memory=24 * GiB)
    assert plan.workers == 1
    with pytest.raises(DcbenchError, match="method 'mine' was registered in this process.*--workers 1"):
        plan_workers(2, None, "cpu", "quick", 42, ["method 'mine'"], cpus=2, memory=24 * GiB)


def test_a_plugin_registered_by_hand_is_found(tmp_path: Path, fashion_root: Path) -> None:
    registry = shared_registry()
    dm = cell(tmp_path, fashion_root)
    assert in_process_only(registry, [dm]) == []
    registry.owners[("method", "dm")] = "a test"  # as a plugin registered in this process only
    assert in_process_only(registry, [dm]) == ["method 'dm'"]


def test_worker_processes_give_the_results_of_one_process(tmp_path: Path, fashion_root: Path) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)

    def run(out: str, workers: int) -> Path:
        return run_benchmark(
            spec,
            out=tmp_path / out,
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            write_report=False,
            threads=1,
            workers=workers,
        )

    one, two = run("one", 1), run("two", 2)
    columns = ["run_id", "test_acc", "threads"]
    assert pd.read_csv(one / "runs.csv")[columns].equals(pd.read_csv(two / "runs.csv")[columns])
    assert torch.equal(
        torch.load(one / "runs" / DM_CELL / "synthetic.pt", weights_only=True)["images"],
        torch.load(two / "runs" / DM_CELL / "synthetic.pt", weights_only=True)["images"],
    )


def test_a_killed_worker_process_is_rerun_and_resumes_and_a_lost_cell_is_recorded(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    alone = tmp_path / "alone.toml"
    alone.write_text(SPEC.replace('methods = ["random", "dm"]', 'methods = ["dm"]'))

    def run(spec: Path, out: str, **options) -> Path:
        return run_benchmark(
            spec,
            out=tmp_path / out,
            data_root=str(fashion_root),
            device="cpu",
            show_progress=False,
            write_report=False,
            threads=1,
            **options,
        )

    reference_dir = run(spec, "local", workers=1) / "runs" / DM_CELL
    reference = torch.load(reference_dir / "synthetic.pt", weights_only=True)["images"]
    # the dm worker SIGKILLs itself right after its checkpoint at iteration 2 (once: a resumed run
    # starts at 3); spawned workers inherit this environment
    monkeypatch.setenv(KILL_ENV, f"2@{DM_CELL}")
    retried = run(spec, "retried", workers=2, max_retries=2)
    log = (retried / "runs" / DM_CELL / "log.txt").read_text()
    assert "checkpoint at iteration 2/4" in log and "resumed at iteration 2" in log
    assert json.loads((retried / "runs" / DM_CELL / "metrics.json").read_text())["resumed_at_iteration"] == 2
    assert torch.equal(torch.load(retried / "runs" / DM_CELL / "synthetic.pt", weights_only=True)["images"], reference)
    assert set(pd.read_csv(retried / "runs.csv")["method"]) == {"random", "dm"}

    given_up = run(alone, "given-up", workers=2, max_retries=0)
    failures = pd.read_csv(given_up / "failures.csv")
    assert failures["run_id"].tolist() == [DM_CELL]
    assert "worker process failed, 0 retries" in failures["reason"][0]
    assert (given_up / "runs" / DM_CELL / CHECKPOINT_FILE).exists()
    run(alone, "given-up", workers=2, max_retries=0)  # the same command again: resumes the lost cell
    assert "resumed at iteration 2" in (given_up / "runs" / DM_CELL / "log.txt").read_text()
    assert not (given_up / "failures.csv").exists()


def test_workers_are_for_the_local_executor(tmp_path: Path, fashion_root: Path) -> None:
    spec = tmp_path / "faults.toml"
    spec.write_text(SPEC)
    with pytest.raises(DcbenchError, match="workers is for the local executor"):
        run_benchmark(spec, out=tmp_path / "out", data_root=str(fashion_root), device="cpu", executor="ray", workers=2)


def test_workers_is_checked_in_the_spec_and_on_the_command_line(tmp_path: Path, capsys) -> None:
    from dcbench.cli import main

    spec = tmp_path / "bad.toml"
    spec.write_text("workers = 0\n" + SPEC)
    with pytest.raises(DcbenchError, match="workers"):
        load_spec(spec).validate()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--workers", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--workers" in capsys.readouterr().err


def _die(cell, root: str) -> dict:
    os._exit(1)


def _die_at_start(parent: int, started) -> None:
    os._exit(1)


def test_workers_that_die_before_any_cell_are_a_one_line_error(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = cell(tmp_path, fashion_root)
    monkeypatch.setattr(executors, "_worker_init", _die_at_start)  # spawned workers import the original
    with pytest.raises(DcbenchError, match="die before running a cell"):
        list(executors.run_pool([dm], tmp_path, _die_at_start_execute, workers=2))


def _die_at_start_execute(cell, root: str) -> dict:
    raise AssertionError("never runs")


def test_a_cell_that_always_kills_its_worker_is_recorded_after_its_retries(tmp_path: Path, fashion_root: Path) -> None:
    dm = cell(tmp_path, fashion_root)
    (metrics,) = list(executors.run_pool([dm], tmp_path, _die, workers=2, max_retries=1))
    assert metrics["status"] == "failed" and "worker process failed, 1 retries" in metrics["reason"]


@dataclass(frozen=True)
class _NamedCell:
    id: str
    fingerprint: dict


def _done(cell, root: str) -> dict:
    return {"status": "done", "id": cell.id}


def test_a_large_grid_does_not_fill_the_started_cells_pipe(tmp_path: Path) -> None:
    # 1000 long ids are over 200 KB of "started" messages, more than a pipe holds (64 KB on Linux):
    # the driver must read them as cells finish, or the workers block on it (this hung before)
    cells = [_NamedCell(f"{i:05d}-" + "x" * 200, {}) for i in range(1000)]
    finished = [m["id"] for m in executors.run_pool(cells, tmp_path, _done, workers=2)]
    assert sorted(finished) == [c.id for c in cells]
