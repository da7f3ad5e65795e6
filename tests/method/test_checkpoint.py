"""Checkpoints inside a cell: the policy, the file, and kill -9 / resume of dm, dc and cafe."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.method.checkpoint import (
    CHECKPOINT_FILE,
    KILL_ENV,
    Checkpointer,
    CheckpointPolicy,
    check_compatible,
    checkpoint_identity,
    read_checkpoint,
)
from dcbench.method.condense import condense
from dcbench.method.contract import CondenseContext, Method, class_major_labels, init_synthetic_images
from dcbench.method.seeding import make_generator
from dcbench.method.synthetic import SyntheticSet
from dcbench.testing import tiny_dataset

IDENTITY = checkpoint_identity("dm", "0.1.0", "abc123", "tiny", 2, 0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500", CheckpointPolicy(iterations=500)),
        (500, CheckpointPolicy(iterations=500)),
        ("10m", CheckpointPolicy(seconds=600.0)),
        ("30s", CheckpointPolicy(seconds=30.0)),
        ("1.5h", CheckpointPolicy(seconds=5400.0)),
        ("2 min", CheckpointPolicy(seconds=120.0)),
        (None, CheckpointPolicy(seconds=600.0)),
        ("off", None),
        (0, None),
    ],
)
def test_policy_parses_iterations_times_and_off(text: object, expected: CheckpointPolicy | None) -> None:
    assert CheckpointPolicy.parse(text) == expected


@pytest.mark.parametrize("text", ["10x", "-5", "1.5", "0s", "", True, "m"])
def test_a_bad_policy_is_one_line(text: object) -> None:
    with pytest.raises(DcbenchError, match="checkpoint_every") as info:
        CheckpointPolicy.parse(text)
    assert "\n" not in str(info.value)


def test_policy_is_due_every_n_iterations_after_t_seconds_and_at_the_end() -> None:
    every_3 = CheckpointPolicy(iterations=3)
    assert [s for s in range(1, 11) if every_3.due(s, 10, 0.0)] == [3, 6, 9, 10]
    every_minute = CheckpointPolicy(seconds=60.0)
    assert not every_minute.due(5, 10, 59.9) and every_minute.due(5, 10, 60.0) and every_minute.due(10, 10, 0.0)


def sgd_state() -> dict:
    images = torch.arange(6.0).view(2, 3).requires_grad_(True)
    optimizer = torch.optim.SGD([images], lr=0.1, momentum=0.5)
    images.grad = torch.ones_like(images)
    optimizer.step()
    return {"images": images.detach(), "optimizer": optimizer.state_dict(), "counts": {"steps": [3, 1]}, "loss": 1.25}


def test_checkpoint_round_trip_is_atomic_safe_and_owned(tmp_path: Path) -> None:
    log: list[str] = []
    writer = Checkpointer(tmp_path, IDENTITY, CheckpointPolicy(iterations=2), log.append)
    writer.save(1, 4, lambda: pytest.fail("not due: the state must not be built"))
    assert not (tmp_path / CHECKPOINT_FILE).exists()
    state = sgd_state()
    writer.save(2, 4, lambda: state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]  # no temp file left
    assert log == ["checkpoint at iteration 2/4"]
    saved = Checkpointer(tmp_path, IDENTITY, None, log.append).load()
    assert saved is not None and saved.iteration == 2 and saved.seconds >= 0
    assert log[-1].startswith("resumed at iteration 2")
    assert torch.equal(saved.state["images"], state["images"]) and saved.state["counts"] == {"steps": [3, 1]}
    buffer = saved.state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(buffer, state["optimizer"]["state"][0]["momentum_buffer"])
    # a fresh optimizer takes the restored state
    fresh = torch.optim.SGD([torch.zeros(2, 3, requires_grad=True)], lr=0.1, momentum=0.5)
    fresh.load_state_dict(saved.state["optimizer"])
    # only the cell that wrote or accepted a checkpoint deletes it
    Checkpointer(tmp_path, IDENTITY, None).discard()
    assert (tmp_path / CHECKPOINT_FILE).exists()
    writer.discard()
    assert not (tmp_path / CHECKPOINT_FILE).exists()


def test_a_checkpoint_of_another_config_is_refused_in_one_line(tmp_path: Path) -> None:
    Checkpointer(tmp_path, IDENTITY, CheckpointPolicy(iterations=1)).save(1, 3, lambda: {"x": torch.ones(1)})
    other = {**IDENTITY, "config_hash": "def456"}
    for attempt in (lambda: check_compatible(tmp_path, other), lambda: Checkpointer(tmp_path, other, None).load()):
        with pytest.raises(
            DcbenchError, match="written by a different config \\(config_hash 'abc123' vs 'def456'\\); delete it"
        ) as info:
            attempt()
        assert "\n" not in str(info.value)
    check_compatible(tmp_path, IDENTITY)


class Opaque:
    pass


def test_state_other_than_tensors_and_plain_values_is_refused_at_save_and_load(tmp_path: Path) -> None:
    writer = Checkpointer(tmp_path, IDENTITY, CheckpointPolicy(iterations=1))
    with pytest.raises(DcbenchError, match=r"holds a Opaque at state\.counts\[1\]"):
        writer.save(1, 2, lambda: {"counts": [1, Opaque()]})
    torch.save(
        {"format": "dcbench-checkpoint/1", "identity": IDENTITY, "iteration": 1, "state": {"x": Opaque()}},
        tmp_path / CHECKPOINT_FILE,
    )
    with pytest.raises(DcbenchError, match="could run code"):
        read_checkpoint(tmp_path / CHECKPOINT_FILE)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(DcbenchError, match="not a dcbench checkpoint"):
        check_compatible(tmp_path, IDENTITY)
    torch.save({"images": torch.ones(1)}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(DcbenchError, match="not a dcbench-checkpoint/1 file"):
        check_compatible(tmp_path, IDENTITY)


@dataclass
class PlainConfig:
    iterations: int = 3
    PRESETS: ClassVar[dict] = {}


class ThirdPartyMethod(Method):
    """A method that knows nothing of checkpoints (it even calls ctx.checkpoint without declaring
    resumable): the host gives it no store, so nothing is written and a rerun restarts it."""

    name = "plain"
    version = "1"
    description = "no checkpoints"
    config_class = PlainConfig

    def condense(self, real, ipc, config, seed, ctx):
        images = init_synthetic_images(real, ipc, "real", make_generator(seed, "init"))
        assert ctx.resume() is None
        for it in range(config.iterations):
            images = images + 0.01 * torch.randn(images.shape, generator=make_generator(seed, "step", it))
            ctx.checkpoint(it + 1, config.iterations, lambda: {"images": images})  # noqa: B023 - called inside ctx.checkpoint, in this iteration
        ctx.metrics["iterations"] = config.iterations
        return SyntheticSet(images, class_major_labels(real.num_classes, ipc))


def test_a_method_that_implements_nothing_still_runs_and_writes_no_checkpoint(tmp_path: Path) -> None:
    real = tiny_dataset()
    store = Checkpointer(tmp_path, IDENTITY, CheckpointPolicy(iterations=1))
    result = condense(ThirdPartyMethod(), real, 2, 0, "paper", None, CondenseContext(), state_store=store)
    assert result.resumed_at is None and result.synthetic.images.shape == (6, 1, 28, 28)
    assert not (tmp_path / CHECKPOINT_FILE).exists()


# --- kill -9 mid-cell, then the same command -------------------------------------------------------


def condense_command(method: str, out: Path, fashion_root: Path, *extra: str) -> list[str]:
    return [
        "condense",
        "--method",
        method,
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--preset",
        "smoke",
        "--set",
        "iterations=4",
        "--checkpoint-every",
        "1",
        "--data-root",
        str(fashion_root),
        "--device",
        "cpu",
        "-o",
        str(out),
        *extra,
    ]


def run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "dcbench.cli", *args], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.mark.parametrize("method", ["dm", "dc", "cafe"])
def test_kill_minus_nine_after_two_checkpoints_resumes_bitwise(
    method: str, tmp_path: Path, fashion_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the uninterrupted reference, in this process with the subprocesses' thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(condense_command(method, tmp_path / "reference", fashion_root, "--checkpoint-every", "off")) == 0
    finally:
        torch.set_num_threads(threads)
    reference = torch.load(tmp_path / "reference" / "synthetic.pt", weights_only=True)

    out = tmp_path / "killed"
    killed = run_cli(condense_command(method, out, fashion_root), **{KILL_ENV: "2"})
    assert killed.returncode == -9, killed.stderr
    assert "checkpoint at iteration 1/4" in killed.stderr and "checkpoint at iteration 2/4" in killed.stderr
    assert read_checkpoint(out / CHECKPOINT_FILE)["iteration"] == 2
    assert not (out / "synthetic.pt").exists()

    # another config is refused in one line, before any work, and the checkpoint is kept
    assert main(condense_command(method, out, fashion_root, "--set", "lr_img=0.75")) == 2
    assert (out / CHECKPOINT_FILE).exists()

    resumed = run_cli(condense_command(method, out, fashion_root))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at iteration 2" in resumed.stderr and "checkpoint at iteration 1/4" not in resumed.stderr
    assert not (out / CHECKPOINT_FILE).exists()
    again = torch.load(out / "synthetic.pt", weights_only=True)
    assert torch.equal(again["images"], reference["images"]) and torch.equal(again["labels"], reference["labels"])
    steps = [line.split(",")[0] for line in (out / "curve.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]
    assert (out / "curve.csv").read_text() == (tmp_path / "reference" / "curve.csv").read_text()
