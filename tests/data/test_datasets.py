from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcbench.data.builtin import load_cifar10, load_fashion_mnist, load_mnist, load_svhn
from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.seeding import make_generator


def test_tiny_fashion_mnist_loads_normalised_with_a_class_index(fashion_root: Path) -> None:
    real = load_fashion_mnist(fashion_root)
    assert real.train_images.shape == (120, 1, 28, 28) and real.test_images.shape == (40, 1, 28, 28)
    assert real.num_classes == 10 and real.channels == 1 and real.image_size == (28, 28)
    assert [len(i) for i in real.indices_by_class] == [12] * 10
    raw = (real.train_images * 0.3530 + 0.2861) * 255  # undo the reference normalisation
    assert torch.allclose(raw, raw.round(), atol=1e-3) and raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3


def test_gzipped_flat_directory_is_staged(fashion_root: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in (fashion_root / "FashionMNIST" / "raw").iterdir():
        with open(f, "rb") as src, gzip.open(flat / f"{f.name}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    real = load_fashion_mnist(flat)
    assert real.train_images.shape == (120, 1, 28, 28)


def test_missing_dataset_names_files_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DcbenchError, match="mnist not found in --data-root .*: expected train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(DcbenchError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)


def test_corrupt_idx_file_is_one_clear_error(fashion_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(fashion_root / "FashionMNIST" / "raw", broken)
    data = (broken / "train-images-idx3-ubyte").read_bytes()
    (broken / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DcbenchError, match="corrupt or truncated"):
        load_fashion_mnist(tmp_path)


def test_sampling_is_seeded_and_class_major(fashion_root: Path) -> None:
    real = load_fashion_mnist(fashion_root)
    x1, y1 = real.sample_per_class(3, make_generator(0))
    x2, _ = real.sample_per_class(3, make_generator(0))
    assert torch.equal(x1, x2) and y1.tolist() == [c for c in range(10) for _ in range(3)]


def test_cifar10_and_svhn_from_tiny_files(tmp_path: Path) -> None:
    import pickle

    import scipy.io

    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = list(range(10)) * 2
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    real = load_cifar10(tmp_path)
    assert real.train_images.shape == (100, 3, 32, 32) and real.num_classes == 10
    for split in ("train", "test"):
        scipy.io.savemat(
            tmp_path / f"{split}_32x32.mat",
            {
                "X": rng.integers(0, 256, (32, 32, 3, 20), dtype=np.uint8),
                "y": np.array([[c if c else 10] for c in list(range(10)) * 2], dtype=np.uint8),
            },
        )
    svhn = load_svhn(tmp_path)
    assert svhn.train_images.shape == (20, 3, 32, 32) and svhn.test_labels.max() == 9


def test_a_class_without_images_is_refused() -> None:
    with pytest.raises(DcbenchError, match="no training images of class 1"):
        RealDataset(
            "toy",
            torch.zeros(2, 1, 4, 4),
            torch.tensor([0, 0]),
            torch.zeros(1, 1, 4, 4),
            torch.tensor([0]),
            (0.5,),
            (0.5,),
            ("a", "b"),
        )
