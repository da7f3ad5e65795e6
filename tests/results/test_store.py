"""The results store (issue 14): one test per finding, each reproducing it and now passing.

1 changed config pooled, 2 other data / plugin version pooled, 3 IPC budget, 4 one method
corrupting another's data, 5 sys.exit in a plugin, 6 two writers, 7 damaged finished cells,
8 work thrown away at the end (output paths, atomic writes, exit status).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pandas as pd
import pytest
import torch

from dcbench.cli import main
from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write_text
from dcbench.host.outputs import staged_directory
from dcbench.method.contract import Method, class_major_labels
from dcbench.method.synthetic import SyntheticSet
from dcbench.results import lock
from dcbench.results.identity import CellIdentity, data_fingerprint, identity_notes
from dcbench.results.store import Store
from dcbench.run import grid, shared
from dcbench.run.grid import RunOptions, RunOutcome, run_grid
from dcbench.run.shared import dataset_fingerprint, forget_data, loaded_dataset, reset_caches
from dcbench.run.shared import registry as shared_registry

TESTS = Path(__file__).parent
BASE = """
name = "store"
preset = "smoke"
eval_models = 1
methods = {methods}
ipcs = [1]
seeds = {seeds}
"""


def spec_file(tmp_path: Path, methods: list[str], seeds: list[int], extra: str = "", name: str = "spec") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(BASE.format(methods=json.dumps(methods), seeds=json.dumps(seeds)) + extra)
    return path


def run(spec: Path, out: Path, data_root: Path) -> RunOutcome:
    return run_grid(
        RunOptions(spec, out=out, data_root=str(data_root), device="cpu", show_progress=False, write_report=False)
    )


def register(method: Method) -> None:
    registry = shared_registry()
    registry.methods[method.name] = method
    registry.owners[("method", method.name)] = "test"


@dataclass
class EmptyConfig:
    PRESETS: ClassVar[dict] = {}
    path: str = ""


def blank_set(real, ipc: int) -> SyntheticSet:
    return SyntheticSet(
        torch.zeros(real.num_classes * ipc, real.channels, *real.image_size), class_major_labels(real.num_classes, ipc)
    )


class GateMethod(Method):
    """Waits until the file ``config.path`` exists (after creating ``path.waiting``)."""

    name = "gate"
    version = "1"
    config_class = EmptyConfig

    def condense(self, real, ipc, config, seed, ctx):
        Path(config.path + ".waiting").touch()
        while not Path(config.path).exists():
            time.sleep(0.02)
        return blank_set(real, ipc)


class GreedyMethod(Method):
    """Returns 3 images per class whatever the IPC (finding 3)."""

    name = "greedy"
    version = "1"
    config_class = EmptyConfig

    def condense(self, real, ipc, config, seed, ctx):
        return blank_set(real, 3 * ipc)


class VandalMethod(Method):
    """Zeroes the real images it was lent, in place (finding 4)."""

    name = "vandal"
    version = "1"
    config_class = EmptyConfig

    def condense(self, real, ipc, config, seed, ctx):
        real.train_images.zero_()
        real.test_images.zero_()
        return blank_set(real, ipc)


class ExitingMethod(Method):
    """Calls sys.exit (finding 5)."""

    name = "exiting"
    version = "1"
    config_class = EmptyConfig

    def condense(self, real, ipc, config, seed, ctx):
        sys.exit(3)


def accuracies(out: Path, method: str) -> list[float]:
    runs = pd.read_csv(out / "runs.csv")
    return runs.loc[runs["method"] == method].sort_values("run_id")["test_acc"].tolist()


# --- 1, 2: identities ----------------------------------------------------------------------------


def test_1_a_changed_config_is_kept_apart_and_both_specs_are_recorded(
    tmp_path: Path, fashion_root: Path, capsys
) -> None:
    out = tmp_path / "out"
    run(spec_file(tmp_path, ["random", "herding"], [0, 1]), out, fashion_root)
    first_spec = (out / "spec.toml").read_text()
    run(
        spec_file(tmp_path, ["random", "herding"], [2], "[overrides.herding]\nnet_width = 8\n", name="more"),
        out,
        fashion_root,
    )
    runs = pd.read_csv(out / "runs.csv")
    herding = runs[runs["method_name"] == "herding"].groupby("method")["synth_seed"].unique()
    assert len(herding) == 2 and sorted(map(list, herding)) == [[0, 1], [2]]
    assert all(label.startswith("herding#") for label in herding.index)
    assert set(runs.loc[runs["method_name"] == "random", "method"]) == {"random"}  # one identity: pooled
    # runs.csv and the summary never average the two: one line names both
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: herding on fashion-mnist IPC 1")]
    assert len(notes) == 1 and all(label in notes[0] for label in herding.index) and "config_hash" in notes[0]
    # spec.toml keeps the first spec's text and appends the second
    text = (out / "spec.toml").read_text()
    assert text.startswith(first_spec)
    recorded = [entry["spec"] for entry in tomllib.loads(text)["runs"]]
    assert [s["seeds"] for s in recorded] == [[0, 1], [2]] and recorded[1]["overrides"] == {"herding": {"net_width": 8}}
    # rerunning the latest spec appends nothing
    run(
        spec_file(tmp_path, ["random", "herding"], [2], "[overrides.herding]\nnet_width = 8\n", name="more"),
        out,
        fashion_root,
    )
    assert (out / "spec.toml").read_text() == text


def test_1_the_report_shows_both_identities_separately_and_says_so(tmp_path: Path, fashion_root: Path) -> None:
    from dcbench.report import write_report

    out = tmp_path / "out"
    run(spec_file(tmp_path, ["random", "herding"], [0, 1]), out, fashion_root)
    run(
        spec_file(tmp_path, ["random", "herding"], [2, 3], "[overrides.herding]\nnet_width = 8\n", name="b"),
        out,
        fashion_root,
    )
    report = write_report(out).read_text()
    labels = sorted(pd.read_csv(out / "runs.csv").query("method_name == 'herding'")["method"].unique())
    table = (out / "report" / "table.md").read_text()
    # the table's name is the method's label, each identity after it
    assert len(labels) == 2 and all(f"| Herding{label[len('herding') :]} |" in table for label in labels)
    said = [line for line in report.splitlines() if "holds 2 identities" in line]
    assert len(said) == 1 and all(label in said[0] for label in labels) and "never averaged" in said[0]
    cells = pd.read_csv(out / "report" / "cells.csv")
    assert cells.loc[cells["method"].isin(labels), "n_seeds"].tolist() == [2, 2]


def test_2_other_data_and_another_plugin_version_are_not_pooled(tmp_path: Path, fashion_root: Path) -> None:
    from dcbench.testing import write_fashion_mnist_idx

    other_root = tmp_path / "other-data"
    write_fashion_mnist_idx(other_root, per_class=12, test_per_class=2, seed=1)  # 20 test images, not 40
    out = tmp_path / "out"
    run(spec_file(tmp_path, ["random"], [0]), out, fashion_root)
    run(spec_file(tmp_path, ["random"], [1]), out, other_root)
    reset_caches()
    registry = shared_registry()
    registry.plugins[registry.owners[("method", "random")]].version = "9.9.9"
    run(spec_file(tmp_path, ["random"], [2]), out, fashion_root)

    runs = pd.read_csv(out / "runs.csv").drop_duplicates("run_id").set_index("synth_seed")
    assert runs["identity"].nunique() == 3 and runs["method"].nunique() == 3
    assert runs.at[0, "data_fingerprint"] != runs.at[1, "data_fingerprint"]
    assert runs.at[0, "data_fingerprint"] == runs.at[2, "data_fingerprint"]
    assert runs.at[0, "data_root"] == str(fashion_root.resolve())
    assert runs.at[1, "data_root"] == str(other_root.resolve())
    assert runs.at[2, "plugin_version"] == "9.9.9" and runs.at[0, "plugin_version"] != "9.9.9"
    [note] = identity_notes(pd.read_csv(out / "runs.csv"))
    assert "3 identities" in note and "data_fingerprint" in note


def test_2_a_finished_cell_with_other_data_refuses_instead_of_mixing(tmp_path: Path, fashion_root: Path) -> None:
    from dcbench.testing import write_fashion_mnist_idx

    other_root = tmp_path / "other-data"
    write_fashion_mnist_idx(other_root, per_class=12, test_per_class=2, seed=1)
    out = tmp_path / "out"
    spec = spec_file(tmp_path, ["random"], [0])
    run(spec, out, fashion_root)
    with pytest.raises(DcbenchError, match="computed with a different config.*data_fingerprint"):
        run(spec, out, other_root)


def test_identity_fields_default_for_older_cells_and_precision_is_fp32() -> None:
    old = CellIdentity.from_dict({"method_name": "dm", "config_hash": "abc", "unknown_future_field": 1})
    assert old.precision == "fp32" and old.data_fingerprint == "unrecorded"
    assert old.key == CellIdentity.from_dict(old.to_dict()).key
    assert old.key != CellIdentity.from_dict({**old.to_dict(), "precision": "bf16"}).key
    assert old.key.isalpha() and len(old.key) == 8  # never read back as a number from CSV


def test_data_fingerprint_is_content_only_and_cached_per_process(fashion_root: Path, monkeypatch) -> None:
    real = loaded_dataset("fashion-mnist", str(fashion_root))
    tensors = (real.train_images, real.train_labels, real.test_images, real.test_labels, real.num_classes)
    reference = data_fingerprint(*tensors)
    copies = [t.clone() if isinstance(t, torch.Tensor) else t for t in tensors]
    assert data_fingerprint(*copies) == reference
    copies[0][3, 0, 5, 5] += 1e-3
    assert data_fingerprint(*copies) != reference
    calls = []
    monkeypatch.setattr(shared, "fingerprint_of", lambda real: calls.append(1) or reference)
    forget_data()
    for _ in range(3):
        assert dataset_fingerprint("fashion-mnist", str(fashion_root)) == reference
    assert len(calls) == 1


# --- 3, 4, 5: what a plugin returns or does --------------------------------------------------------


def test_3_a_set_outside_the_ipc_budget_is_a_failed_cell(tmp_path: Path, fashion_root: Path) -> None:
    register(GreedyMethod())
    outcome = run(spec_file(tmp_path, ["greedy", "random"], [0]), tmp_path / "out", fashion_root)
    assert outcome.failed == ["greedy-fashion-mnist-ipc1-s0"] and outcome.exit_status == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert failures["reason"].str.contains("outside the IPC budget").all()
    assert set(pd.read_csv(tmp_path / "out" / "runs.csv")["method"]) == {"random"}


def test_3_budget_check_names_classes_with_too_few_or_none() -> None:
    synthetic = SyntheticSet(torch.zeros(3, 1, 4, 4), torch.tensor([0, 0, 2]))
    with pytest.raises(DcbenchError, match="class 1: 0, class 2: 1"):
        synthetic.check_budget(2, 3)
    SyntheticSet(torch.zeros(3, 1, 4, 4), torch.tensor([2, 0, 1])).check_budget(1, 3)


def test_4_a_method_that_writes_to_the_real_data_cannot_corrupt_the_next_cell(
    tmp_path: Path, fashion_root: Path
) -> None:
    clean = tmp_path / "clean"
    run(spec_file(tmp_path, ["random"], [0, 1]), clean, fashion_root)
    register(VandalMethod())
    out = tmp_path / "out"
    outcome = run(spec_file(tmp_path, ["vandal", "random"], [0, 1], name="vandal"), out, fashion_root)
    assert sorted(outcome.failed) == ["vandal-fashion-mnist-ipc1-s0", "vandal-fashion-mnist-ipc1-s1"]
    reasons = pd.read_csv(out / "failures.csv")["reason"]
    assert reasons.str.contains("modified the real dataset in place").all()
    assert accuracies(out, "random") == accuracies(clean, "random")


def test_5_sys_exit_in_a_plugin_is_that_cells_failure_and_the_grid_goes_on(
    tmp_path: Path, fashion_root: Path, capsys
) -> None:
    register(ExitingMethod())
    spec = spec_file(tmp_path, ["exiting", "random"], [0])
    status = main(
        [
            "run",
            str(spec),
            "--out",
            str(tmp_path / "out"),
            "--data-root",
            str(fashion_root),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert status == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert failures["run_id"].tolist() == ["exiting-fashion-mnist-ipc1-s0"]
    assert failures["reason"].iloc[0].startswith("SystemExit")
    assert set(pd.read_csv(tmp_path / "out" / "runs.csv")["method"]) == {"random"}
    assert "1 of 2 cells failed" in capsys.readouterr().err


def test_exit_status_all_cells_failed_is_1_all_done_is_0_and_no_method_is_2(
    tmp_path: Path, fashion_root: Path, monkeypatch, capsys
) -> None:
    register(ExitingMethod())
    common = ["--data-root", str(fashion_root), "--device", "cpu", "--quiet"]
    assert main(["run", str(spec_file(tmp_path, ["exiting"], [0, 1])), "--out", str(tmp_path / "a"), *common]) == 1
    assert (
        main(["run", str(spec_file(tmp_path, ["random"], [0], name="ok")), "--out", str(tmp_path / "b"), *common]) == 0
    )
    capsys.readouterr()
    monkeypatch.setenv("DCBENCH_LOAD_PLUGINS", "")  # no method plugin at all
    reset_caches()
    (tmp_path / "all.toml").write_text('preset = "smoke"\nipcs = [1]\nseeds = [0]\n')
    assert main(["run", str(tmp_path / "all.toml"), "--out", str(tmp_path / "c"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no method plugin is loaded" in err[0]


# --- 6: one writer ----------------------------------------------------------------------------------

DRIVER = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from dcbench import cli
from dcbench.run.shared import registry as shared_registry
from test_store import GateMethod
registry = shared_registry()
registry.methods["gate"] = GateMethod()
registry.owners[("method", "gate")] = "test"
sys.exit(cli.main(sys.argv[1:]))
"""


def start_gated_run(tmp_path: Path, out: Path, gate: Path, fashion_root: Path) -> subprocess.Popen:
    spec = spec_file(
        tmp_path, ["gate", "random"], [0, 1], f"[overrides.gate]\npath = {json.dumps(str(gate))}\n", name="gated"
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(driver),
            "run",
            str(spec),
            "--out",
            str(out),
            "--data-root",
            str(fashion_root),
            "--device",
            "cpu",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not Path(str(gate) + ".waiting").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the gated run never started its first cell"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_6_a_second_run_on_a_store_in_use_exits_2_and_a_killed_run_blocks_nothing(
    tmp_path: Path, fashion_root: Path
) -> None:
    out, gate = tmp_path / "out", tmp_path / "gate-open"
    first = start_gated_run(tmp_path, out, gate, fashion_root)
    second = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "driver.py"),
            "run",
            str(tmp_path / "gated.toml"),
            "--out",
            str(out),
            "--data-root",
            str(fashion_root),
            "--device",
            "cpu",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    gate.touch()
    _, first_err = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr
    [line] = second.stderr.strip().splitlines()
    assert f"is in use by dcbench run PID {first.pid} on host {socket.gethostname()} since " in line
    assert first.returncode == 0, first_err
    starts = {d.name: (d / "log.txt").read_text().count(" start ") for d in (out / "runs").iterdir()}
    assert starts == {f"{m}-fashion-mnist-ipc1-s{s}": 1 for m in ("gate", "random") for s in (0, 1)}

    # kill -9 while holding the lock: the next run is not blocked
    killed, gate = tmp_path / "killed", tmp_path / "gate-2"
    victim = start_gated_run(tmp_path, killed, gate, fashion_root)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    gate.touch()
    register(GateMethod())
    outcome = run(tmp_path / "gated.toml", killed, fashion_root)
    assert outcome.failed == [] and len(pd.read_csv(killed / "runs.csv")["run_id"].unique()) == 4


def test_6_lock_names_the_holder_and_is_released(tmp_path: Path) -> None:
    holder = lock.StoreLock(tmp_path)
    holder.acquire()
    with pytest.raises(DcbenchError, match=rf"in use by dcbench run PID {os.getpid()} on host .* since \d{{4}}-"):
        lock.StoreLock(tmp_path).acquire()
    holder.release()
    with lock.StoreLock(tmp_path):
        pass


def test_6_without_flock_a_pid_file_locks_and_a_dead_holder_is_stale(tmp_path: Path, monkeypatch) -> None:
    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", unsupported)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / lock.PID_FILE).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"})
    )
    with lock.StoreLock(tmp_path):  # the dead run's file is stale: taken over
        assert json.loads((tmp_path / lock.PID_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(DcbenchError, match=f"in use by dcbench run PID {os.getpid()}"):
            lock.StoreLock(tmp_path).acquire()
    assert not (tmp_path / lock.PID_FILE).exists()


# --- 7: damaged finished cells ----------------------------------------------------------------------


def test_7_damaged_cells_are_named_and_rerun(tmp_path: Path, fashion_root: Path, capsys) -> None:
    out = tmp_path / "out"
    spec = spec_file(tmp_path, ["random"], [0, 1, 2])
    run(spec, out, fashion_root)
    reference = pd.read_csv(out / "runs.csv")
    cells = sorted(p.name for p in (out / "runs").iterdir())
    (out / "runs" / cells[0] / "synthetic.pt").write_bytes(os.urandom(2000))
    metrics = json.loads((out / "runs" / cells[1] / "metrics.json").read_text())
    del metrics["evaluations"][0]["test_accs"]
    (out / "runs" / cells[1] / "metrics.json").write_text(json.dumps(metrics))
    # rebuilding the tables names the broken metrics.json instead of a KeyError
    Store(out).rebuild_tables()
    assert pd.read_csv(out / "failures.csv")["reason"].str.contains("test_accs").any()
    capsys.readouterr()
    outcome = run(spec, out, fashion_root)
    err = capsys.readouterr().err
    assert f"cell {cells[0]} is damaged (" in err and "synthetic.pt" in err
    assert f"cell {cells[1]} is damaged (" in err and "'test_accs' is a required property" in err
    assert "3 cells, 1 already done, 2 to run" in err and outcome.failed == []
    assert not (out / "failures.csv").exists()
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "runs.csv").drop(columns=["condense_s", "eval_s", "peak_rss_mb"]),
        reference.drop(columns=["condense_s", "eval_s", "peak_rss_mb"]),
    )


# --- 8: output paths, atomic writes ---------------------------------------------------------------


def test_8_run_refuses_an_unusable_out_before_any_work(tmp_path: Path, fashion_root: Path, monkeypatch, capsys) -> None:
    spec = spec_file(tmp_path, ["random"], [0])
    (tmp_path / "a-file").write_text("x")
    common = ["--data-root", str(fashion_root), "--device", "cpu", "--quiet"]
    monkeypatch.setattr(grid, "plan_cells", lambda *a: pytest.fail("work started"))
    assert main(["run", str(spec), "--out", str(tmp_path / "a-file"), *common]) == 2
    assert main(["run", str(spec), "--out", str(tmp_path / "a-file" / "below"), *common]) == 2
    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(free=3 * 2**20))
    assert main(["run", str(spec), "--out", str(tmp_path / "full"), *common]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("dcbench: error: ") for line in lines)
    assert "is a file" in lines[0] and "not writable" in lines[1] and "only 3 MB free" in lines[2]


def test_8_report_refuses_an_out_that_is_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.csv").write_text("run_id\n")
    (tmp_path / "a-file").write_text("x")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "a-file")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "report directory" in line and "is a file" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_8_condense_into_a_read_only_directory_fails_before_condensing(
    tmp_path: Path, fashion_root: Path, capsys
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert (
            main(
                [
                    "condense",
                    "--method",
                    "random",
                    "--dataset",
                    "fashion-mnist",
                    "--ipc",
                    "1",
                    "--data-root",
                    str(fashion_root),
                    "-o",
                    str(locked / "set"),
                ]
            )
            == 2
        )
    finally:
        locked.chmod(0o700)
    assert "not writable" in capsys.readouterr().err


def test_8_condense_into_an_unwritable_directory_fails_before_loading_data(
    tmp_path: Path, fashion_root: Path, monkeypatch, capsys
) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("dcbench.host.outputs.tempfile.mkstemp", denied)  # a read-only directory, even for root
    monkeypatch.setattr("dcbench.method.condense.condense", lambda *a, **k: pytest.fail("condensed"))
    assert (
        main(
            [
                "condense",
                "--method",
                "random",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--data-root",
                str(fashion_root),
                "-o",
                str(tmp_path / "set"),
            ]
        )
        == 2
    )
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "is not writable (Permission denied)" in line


def test_8_condense_keeps_an_existing_set_unless_overwrite(
    tmp_path: Path, fashion_root: Path, monkeypatch, capsys
) -> None:
    args = [
        "condense",
        "--method",
        "random",
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--preset",
        "smoke",
        "--data-root",
        str(fashion_root),
        "-o",
        str(tmp_path / "set"),
    ]
    assert main(args) == 0
    before = (tmp_path / "set" / "synthetic.pt").read_bytes()
    assert main([*args[:-2], "--seed", "1", *args[-2:]]) == 2
    assert "already holds a synthetic set; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "set" / "synthetic.pt").read_bytes() == before
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert (tmp_path / "set" / "synthetic.pt").read_bytes() != before
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr("dcbench.method.condense.condense", lambda *a, **k: pytest.fail("condensed"))
    assert main([*args[:-1], str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_8_a_failed_write_names_the_path_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("old")

    def full_disk(_f) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    from dcbench.host.files import atomic_write

    with pytest.raises(DcbenchError, match=f"cannot write {path}: No space left on device"):
        atomic_write(path, full_disk)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["runs.csv"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_8_a_report_that_fails_half_way_leaves_the_old_report_whole(
    tmp_path: Path, fashion_root: Path, monkeypatch
) -> None:
    from dcbench import report

    out = tmp_path / "out"
    run(spec_file(tmp_path, ["random", "herding"], [0, 1]), out, fashion_root)
    report.write_report(out, formats=("csv", "md"))
    before = {p.name: p.read_bytes() for p in (out / "report").iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "comparisons.csv")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    with pytest.raises(DcbenchError, match="cannot write .*comparisons.csv: No space left on device"):
        report.write_report(out, formats=("csv", "md"))
    assert {p.name: p.read_bytes() for p in (out / "report").iterdir()} == before


def test_staged_directory_moves_every_file_or_none(tmp_path: Path) -> None:
    with staged_directory(tmp_path / "r") as staging:
        (staging / "a.csv").write_text("a")
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["a.csv"]
    with pytest.raises(RuntimeError):
        with staged_directory(tmp_path / "r") as staging:
            (staging / "a.csv").write_text("half")
            raise RuntimeError
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["a.csv"] and (tmp_path / "r" / "a.csv").read_text() == "a"
