"""The artifact store: identity, reuse, one build under concurrency, kill and resume, damage, removal."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcbench.artifacts import ArtifactStore, artifact_key
from dcbench.artifacts.store import ARTIFACT_FILE
from dcbench.host.errors import DcbenchError
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext, Method
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.testing import tiny_dataset
from dcbench_coresets.method import RandomConfig

IDENTITY = {"recipe": {"epochs": 2, "lr": 0.01}, "data": "abc", "precision": "fp32", "version": "1"}


def two_part_builder(calls: list[str]):
    def build(directory: Path, step_done) -> None:
        calls.append("build")
        for part in ("a", "b"):
            if not (directory / f"{part}.pt").exists():
                torch.save(torch.full((3,), float(ord(part))), directory / f"{part}.pt")
                step_done()

    return build


def test_the_key_is_the_identity_and_nothing_else() -> None:
    key = artifact_key("experts", IDENTITY)
    assert key == artifact_key("experts", json.loads(json.dumps(IDENTITY)))  # order and copies do not matter
    assert len(key) == 20
    changed = {**IDENTITY, "recipe": {"epochs": 3, "lr": 0.01}}
    assert artifact_key("experts", changed) != key
    assert artifact_key("teachers", IDENTITY) != key
    with pytest.raises(DcbenchError, match="plain JSON"):
        artifact_key("experts", {"x": float("nan")})
    with pytest.raises(DcbenchError, match="kind"):
        artifact_key("Experts/..", IDENTITY)


def test_built_once_then_reused_with_its_cost_recorded(tmp_path: Path) -> None:
    store, calls = ArtifactStore(tmp_path), []
    artifact, built = store.get("experts", IDENTITY, two_part_builder(calls))
    assert built and calls == ["build"]
    assert sorted(artifact.files) == ["a.pt", "b.pt"]
    assert artifact.bytes == sum(f["bytes"] for f in artifact.files.values()) > 0
    assert artifact.build_s >= 0 and artifact.identity == IDENTITY
    again, built_again = store.get("experts", IDENTITY, two_part_builder(calls))
    assert not built_again and calls == ["build"]  # not called again
    assert torch.equal(again.load("b.pt"), torch.full((3,), 98.0))
    usage = again.usage(built_again)
    assert usage["key"] == artifact.key and usage["built_here"] is False and usage["build_s"] == artifact.build_s
    assert not list((tmp_path / "experts").glob("*.partial"))


def _slow_build(root: str, log: str) -> None:
    def build(directory: Path, step_done) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        torch.save(torch.zeros(2), directory / "a.pt")

    ArtifactStore(root).get("experts", IDENTITY, build)


def test_two_processes_asking_at_once_build_it_once(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_slow_build, args=(str(tmp_path / "store"), str(log))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert len(log.read_text().split()) == 1  # the second one waited on the lock, then loaded


KILLED_BUILDER = """
import sys, time, torch
from dcbench.artifacts import ArtifactStore
def build(directory, step_done):
    time.sleep(0.5)
    torch.save(torch.ones(4), directory / "a.pt")
    step_done()
    print("part a done", flush=True)
    time.sleep(60)
ArtifactStore(sys.argv[1]).get("experts", {IDENTITY}, build)
"""


def test_a_killed_build_resumes_where_it_stopped(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    script = KILLED_BUILDER.replace("{IDENTITY}", repr(IDENTITY))
    proc = subprocess.Popen([sys.executable, "-c", script, str(store_root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "part a done"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    store = ArtifactStore(store_root)
    assert [entry[2] for entry in store.entries()] == ["unfinished build"]
    assert store.find("experts", IDENTITY) is None
    calls: list[str] = []
    built_parts = []

    def build(directory: Path, step_done) -> None:  # the lock died with its holder: no wait
        calls.append("build")
        assert (directory / "a.pt").exists()  # the killed run's part is kept
        built_parts.append("b")
        torch.save(torch.zeros(1), directory / "b.pt")
        step_done()

    artifact, built = store.get("experts", IDENTITY, build)
    assert built and calls == ["build"] and built_parts == ["b"]
    assert sorted(artifact.files) == ["a.pt", "b.pt"]
    assert artifact.build_s >= 0.5  # includes the killed run's half second
    assert not any(p.name.startswith(".") for p in artifact.path.iterdir())  # no bookkeeping left in it


@pytest.mark.parametrize(
    "damage, message",
    [
        ("flip", "a.pt is damaged"),
        ("delete", "a.pt is missing"),
        ("record", "artifact.json is damaged"),
        ("identity", "another recipe"),
    ],
)
def test_damage_is_refused_in_one_line_naming_the_fix(tmp_path: Path, damage: str, message: str) -> None:
    store = ArtifactStore(tmp_path)
    artifact, _ = store.get("experts", IDENTITY, two_part_builder([]))
    if damage == "flip":
        data = bytearray((artifact.path / "a.pt").read_bytes())
        data[-5] ^= 0xFF
        (artifact.path / "a.pt").write_bytes(bytes(data))
    elif damage == "delete":
        (artifact.path / "a.pt").unlink()
    elif damage == "record":
        (artifact.path / ARTIFACT_FILE).write_text("{not json")
    else:
        record = json.loads((artifact.path / ARTIFACT_FILE).read_text())
        record["identity"]["recipe"]["epochs"] = 99
        (artifact.path / ARTIFACT_FILE).write_text(json.dumps(record))
    with pytest.raises(DcbenchError, match=message) as err:
        store.get("experts", IDENTITY, two_part_builder([]))
    assert "\n" not in str(err.value) and f"dcbench artifacts remove {artifact.key}" in str(err.value)


def test_loading_refuses_pickled_code(tmp_path: Path) -> None:
    def build(directory: Path, step_done) -> None:
        torch.save({"f": Path("x")}, directory / "bad.pt")  # not a plain tensor container

    artifact, _ = ArtifactStore(tmp_path).get("experts", IDENTITY, build)
    with pytest.raises(DcbenchError, match="cannot read bad.pt"):
        artifact.load("bad.pt")


def test_remove_and_list(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    artifact, _ = store.get("experts", IDENTITY, two_part_builder([]))
    ((kind, key, found),) = store.entries()
    assert (kind, key) == ("experts", artifact.key) and found.bytes == artifact.bytes
    assert store.remove(artifact.key) == [artifact.path]
    assert store.entries() == [] and store.find("experts", IDENTITY) is None
    with pytest.raises(DcbenchError, match="no artifact"):
        store.remove(artifact.key)
    with pytest.raises(DcbenchError, match="not an artifact key"):
        store.remove("../../etc")


def test_a_symlinked_store_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "experts").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DcbenchError, match="symbolic link"):
        ArtifactStore(tmp_path / "store").get("experts", IDENTITY, two_part_builder([]))
    assert not any((tmp_path / "elsewhere").iterdir())


class _UsesAnArtifact(Method):
    name = "uses_artifact"
    config_class = RandomConfig

    def condense(self, real, ipc, config, seed, ctx):
        def build(directory: Path, step_done) -> None:
            time.sleep(1.0)  # a build, or a wait for another process's: not the cell's time
            torch.save(torch.zeros(1), directory / "a.pt")

        ctx.artifact("slow", {"data": ctx.data_identity(real)}, build)
        return SyntheticSet(*real.sample_per_class(ipc, make_generator(seed, "init")))


def test_time_in_the_store_is_not_the_cells_and_the_cell_records_what_it_used(tmp_path: Path) -> None:
    real = tiny_dataset()
    ctx = CondenseContext(artifact_store=ArtifactStore(tmp_path))
    first = condense(_UsesAnArtifact(), real, 1, 0, "paper", None, ctx)
    assert first.seconds < 0.5 and ctx.artifact_store_s >= 1.0
    (used,) = first.artifacts
    assert used["kind"] == "slow" and used["built_here"] and used["build_s"] >= 1.0
    assert first.synthetic.manifest["artifacts"] == [used]
    again = condense(_UsesAnArtifact(), real, 1, 1, "paper", None, ctx)  # the same context, reused
    (reused,) = again.artifacts
    assert not reused["built_here"] and reused["key"] == used["key"] and again.seconds < 0.5
