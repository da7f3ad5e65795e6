"""The command line: the happy path, determinism, and one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dcbench.cli import main


def dcbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dcbench.cli", *args], capture_output=True, text=True)


def test_list_shows_methods_datasets_architectures() -> None:
    result = dcbench("list")
    assert result.returncode == 0
    for word in ("random", "herding", "fashion-mnist", "cifar100", "ConvNet", "ResNet18"):
        assert word in result.stdout


def test_condense_then_evaluate_twice_gives_identical_results(tmp_path: Path, fashion_root: Path, capsys) -> None:
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert (
            main(
                [
                    "condense",
                    "--method",
                    "random",
                    "--dataset",
                    "fashion-mnist",
                    "--ipc",
                    "2",
                    "--seed",
                    "0",
                    "--preset",
                    "smoke",
                    "--data-root",
                    str(fashion_root),
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        assert main(["evaluate", str(out), "--preset", "smoke", "--data-root", str(fashion_root)]) == 0
        outputs.append(capsys.readouterr().out)
    a = torch.load(tmp_path / "a" / "synthetic.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "synthetic.pt", weights_only=True)
    assert torch.equal(a["images"], b["images"])
    per_model = [[line for line in o.splitlines() if line.strip().startswith("model ")] for o in outputs]
    assert per_model[0] == per_model[1] and len(per_model[0]) == 2
    assert "40 test images" in outputs[0] and "mean test accuracy" in outputs[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["condense", "--method", "nope", "--dataset", "fashion-mnist", "--ipc", "1", "-o", "x"],
            "unknown method 'nope'",
        ),
        (
            ["condense", "--method", "random", "--dataset", "imagenet", "--ipc", "1", "-o", "x"],
            "unknown dataset 'imagenet'",
        ),
        (
            ["condense", "--method", "random", "--dataset", "fashion-mnist", "--ipc", "0", "-o", "x"],
            "--ipc must be a positive",
        ),
        (
            [
                "condense",
                "--method",
                "herding",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--set",
                "colour=3",
                "-o",
                "x",
            ],
            "no setting 'colour'",
        ),
        (
            [
                "condense",
                "--method",
                "herding",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--set",
                "net_width=wide",
                "-o",
                "x",
            ],
            "expected int",
        ),
        (
            ["condense", "--method", "random", "--dataset", "mnist", "--ipc", "1", "--data-root", "{empty}", "-o", "x"],
            "mnist not found",
        ),
        (
            ["condense", "--method", "random", "--dataset", "fashion-mnist", "--ipc", "1", "-o", "{notes-file}"],
            "is a file, not a directory",
        ),
        (["evaluate", "{empty}"], "no synthetic.pt there"),
        (["evaluate", "{notes}"], "not a dcbench synthetic set"),
        (["evaluate", "{wrong}", "--data-root", "{fashion}"], "3 channels, the dataset has 1"),
        (
            [
                "condense",
                "--method",
                "random",
                "--dataset",
                "fashion-mnist",
                "--ipc",
                "1",
                "--device",
                "tpu",
                "-o",
                "x",
            ],
            "unknown device",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, fashion_root: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "synthetic.pt").write_text("not a tensor file")
    (tmp_path / "wrong").mkdir()
    torch.save({"images": torch.zeros(10, 3, 28, 28), "labels": torch.arange(10)}, tmp_path / "wrong" / "synthetic.pt")
    (tmp_path / "wrong" / "manifest.json").write_text('{"dataset": "fashion-mnist"}')
    subst = {
        "{empty}": str(tmp_path / "empty"),
        "{notes}": str(tmp_path / "notes"),
        "{wrong}": str(tmp_path / "wrong"),
        "{notes-file}": str(tmp_path / "notes" / "synthetic.pt"),
        "{fashion}": str(fashion_root),
    }
    result = dcbench(*[subst.get(a, a) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcbench: error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_idx_file_is_one_line(tmp_path: Path, fashion_root: Path) -> None:
    import shutil

    shutil.copytree(fashion_root / "FashionMNIST", tmp_path / "FashionMNIST")
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01junk")
    result = dcbench(
        "condense",
        "--method",
        "random",
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--data-root",
        str(tmp_path),
        "-o",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2 and "corrupt or truncated" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
