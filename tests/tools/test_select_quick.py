"""benchmarks/select_quick.py: hyperparameters chosen on a validation split of the training set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from dcbench.data.builtin import load_fashion_mnist
from dcbench.host.errors import DcbenchError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "select_quick.py"


@pytest.fixture(scope="module")
def select_quick():
    spec = importlib.util.spec_from_file_location("select_quick", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validation_split_never_touches_the_test_set(select_quick, fashion_root: Path) -> None:
    real = load_fashion_mnist(fashion_root)  # 12 training images per class
    split = select_quick.validation_split(real, 60, 30, seed=0)
    assert split.train_labels.bincount().tolist() == [6] * 10 and split.test_labels.bincount().tolist() == [3] * 10

    def rows(images: torch.Tensor) -> set[bytes]:
        return {image.numpy().tobytes() for image in images}

    train, val, test = rows(split.train_images), rows(split.test_images), rows(real.test_images)
    assert val <= rows(real.train_images) and not val & train and not val & test and not train & test
    assert torch.equal(split.test_images, select_quick.validation_split(real, 60, 30, seed=0).test_images)
    with pytest.raises(DcbenchError, match="fewer than"):
        select_quick.validation_split(real, 100, 50, seed=0)


def test_a_tiny_sweep_writes_its_table(select_quick, fashion_root: Path, tmp_path: Path) -> None:
    code = select_quick.main(
        [
            "herding",
            "--preset",
            "smoke",
            "--grid",
            "net_width=8,16",
            "--ipcs",
            "1",
            "--seeds",
            "100",
            "--train",
            "60",
            "--val",
            "30",
            "--epochs",
            "1",
            "--models",
            "1",
            "--data-root",
            str(fashion_root),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    results = pd.read_csv(tmp_path / "herding-fashion-mnist.csv")
    assert results["settings"].tolist() == ["net_width=8", "net_width=16"]
    assert results["val_acc"].between(0, 100).all() and (results["condense_s"] >= 0).all()
    table = (tmp_path / "herding-fashion-mnist.md").read_text()
    assert table.count("**chosen**") == 1 and "the test set is not used" in table
    assert (
        select_quick.main(["herding", "--grid", "colour=1", "--data-root", str(fashion_root), "--out", str(tmp_path)])
        == 2
    )
