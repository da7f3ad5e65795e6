"""The hostile-input corpus, signals and resources: one test per finding, each reproducing it.

Findings: a Ctrl-C while the command line is still importing, a Ctrl-C to a grid running in worker
processes, and an explicit ``--workers`` beyond the machine's cores or memory. Every case ends in
one line on stderr, never a traceback, and leaves no process writing to the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dcbench.cli import main
from dcbench.console import INTERRUPTED
from dcbench.host.compat import tomllib
from dcbench.method.checkpoint import CHECKPOINT_FILE
from dcbench.run import workers
from dcbench.run.workers import plan_workers

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


def console_script_target() -> tuple[str, str]:
    """(module, function) that ``pip install`` makes the ``dcbench`` script call."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["dcbench"].partition(":")
    return module, function


def test_an_interrupt_while_the_command_line_imports_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Seen: Ctrl-C in the first seconds of ``dcbench ...`` (while torch imports) printed a
    ``KeyboardInterrupt`` traceback: the console script imported dcbench.cli, and torch with it,
    before main()'s handler could run. Here the import of torch is interrupted, as a Ctrl-C then
    would, in a process started like the installed script (its wrapper imports the target module
    and calls the function, outside any handler)."""
    module, function = console_script_target()
    script = textwrap.dedent(
        f"""
        import builtins, sys
        real_import = builtins.__import__

        def interrupted_import(name, *args, **kwargs):
            if name == "torch" or name.startswith("torch."):
                raise KeyboardInterrupt  # what Ctrl-C raises in the middle of an import
            return real_import(name, *args, **kwargs)

        builtins.__import__ = interrupted_import
        from {module} import {function}
        sys.exit({function}())
        """
    )
    result = subprocess.run([sys.executable, "-c", script, "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [interrupted_during_a_command(monkeypatch, capsys)]


def interrupted_during_a_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> str:
    """The line dcbench.cli.main prints for a Ctrl-C during a command (``dcbench list`` here)."""
    import dcbench.cli

    def interrupt(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(dcbench.cli, "cmd_list", interrupt)
    capsys.readouterr()
    assert dcbench.cli.main(["list"]) == 130
    return capsys.readouterr().err.strip()


SLOW_GRID = """
name = "signals"
preset = "smoke"
eval_models = 1
methods = ["random", "dm"]
ipcs = [1]
seeds = [0]
checkpoint_every = 1

[overrides.dm]
iterations = 1000000
"""
FAST_CELL, SLOW_CELL = "random-fashion-mnist-ipc1-s0", "dm-fashion-mnist-ipc1-s0"


def group_members(group: int) -> dict[int, str]:
    """pid -> command line of the live (not zombie) processes in process group ``group``."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while being read
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members[int(stat.parent.name)] = command
    return members


def files_and_times(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def spawned_workers(group: int) -> set[int]:
    return {pid for pid, line in group_members(group).items() if "spawn_main" in line}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the worker processes")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--workers 2 needs 2 usable cores (capped otherwise)")
@pytest.mark.parametrize("when,to", [("running", "group"), ("running", "parent"), ("starting", "group")])
def test_sigint_to_a_grid_in_worker_processes_ends_the_workers(
    tmp_path: Path, fashion_root: Path, when: str, to: str
) -> None:
    """Seen: SIGINT to ``dcbench run --workers 2`` printed "interrupted" while the workers went on
    running their cells and writing to the store (its lock released), and the command did not end
    until they had finished. Here SIGINT comes once one cell has finished and a second (endless)
    one is running in the other worker, or as soon as the workers exist (still importing torch),
    to the whole process group (a terminal's Ctrl-C: each worker printed a KeyboardInterrupt
    traceback) or to the dcbench process alone (``kill -INT``: the workers went on)."""
    (tmp_path / "spec.toml").write_text(SLOW_GRID)
    out = tmp_path / "out"
    command = [sys.executable, "-c", "import sys; from dcbench.console import main; sys.exit(main())"]
    command += ["run", str(tmp_path / "spec.toml"), "--out", str(out), "--data-root", str(fashion_root)]
    command += ["--device", "cpu", "--quiet", "--reference", "none", "--workers", "2", "--threads", "1"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if when == "running":
            wait_for(lambda: (out / "runs" / FAST_CELL / "metrics.json").exists(), 240, "the first cell to finish")
            wait_for(lambda: (out / "runs" / SLOW_CELL / CHECKPOINT_FILE).exists(), 120, "the second cell to run")
        wait_for(lambda: len(spawned_workers(proc.pid)) == 2, 120, "two worker processes")
        worker_pids = spawned_workers(proc.pid)
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)  # the endless cell would never end by itself
        assert not worker_pids & set(group_members(proc.pid)), "a worker outlived the command"
        wait_for(lambda: not group_members(proc.pid), 10, "the process group to end")  # the resource tracker too
    finally:
        if proc.poll() is None or group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    err = stderr.strip().splitlines()
    assert [line for line in err if "interrupted" in line] == [err[-1]] == [INTERRUPTED], err
    before = files_and_times(out)
    time.sleep(2)
    assert files_and_times(out) == before, "cell files changed after the command ended"
    # runs.csv was rebuilt on the way out: the finished cell is in it, the interrupted one is not
    assert set(pd.read_csv(out / "runs.csv")["run_id"]) == ({FAST_CELL} if when == "running" else set())
    assert not (out / "runs" / SLOW_CELL / "metrics.json").exists()


GiB = 2**30


@pytest.mark.parametrize(
    "asked,cpus,memory,expected,note",
    [
        (11, 2, 24 * GiB, 2, "2 usable cores"),  # the finding: 11 processes on 2 cores
        (8, 16, 2 * GiB, 3, "memory for 3 workers at 640 MiB each"),  # 2 GiB free holds 3 of them
        (4, 1, 24 * GiB, 1, "1 usable core"),
        (4, 8, 600 * 2**20, 1, "memory for 1 worker at 640 MiB each"),  # never below one
        (2, 2, 24 * GiB, 2, ""),  # what the machine holds: kept, no note
    ],
)
def test_an_explicit_worker_count_is_capped_by_cores_and_memory(asked, cpus, memory, expected, note) -> None:
    """Seen: ``--workers 11`` started 11 worker processes (7 GB) on a 2-core machine: only the
    automatic count was bounded by the cores and memory, an explicit one was taken as it came."""
    plan = plan_workers(asked, None, "cpu", "quick", 42, [], cpus=cpus, memory=memory)
    assert (plan.workers, plan.capped) == (expected, note)
    assert plan.threads == max(1, cpus // expected)


def test_a_capped_worker_count_is_said_in_one_line(
    tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The command line says when it lowers ``--workers`` (here to the 1 core a machine has), and why."""
    monkeypatch.setattr(workers, "usable_cpus", lambda: 1)
    monkeypatch.setattr(workers, "available_memory", lambda: 24 * GiB)
    (tmp_path / "spec.toml").write_text(
        SLOW_GRID.partition("checkpoint_every")[0].replace('"random", "dm"', '"random"')
    )
    args = ["run", tmp_path / "spec.toml", "--out", tmp_path / "out", "--data-root", fashion_root, "--device", "cpu"]
    assert main([str(a) for a in [*args, "--quiet", "--reference", "none", "--workers", "4"]]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "capped at" in line] == ["note: --workers 4 capped at 1: 1 usable core"], err
    assert any("in this process, 1 torch thread" in line for line in err), err
