"""Test data a plugin's or the host's tests can make in milliseconds, with no download:
:func:`tiny_dataset` (a class-structured random :class:`~dcbench.data.real.RealDataset`) and
:func:`write_fashion_mnist_idx` (tiny FashionMNIST IDX files, for CLI and runner tests)."""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from dcbench.data.real import RealDataset


def tiny_dataset(
    num_classes: int = 3, channels: int = 1, size: int = 28, per_class: int = 10, seed: int = 0, test_per_class: int = 2
) -> RealDataset:
    """A random dataset in normalised space whose classes differ: each class is a blocky random
    prototype (4x4-pixel blocks) plus per-image noise. Train images are shuffled, not class-major."""
    g = torch.Generator().manual_seed(seed)
    blocks = max(1, size // 4)
    prototypes = F.interpolate(torch.randn(num_classes, channels, blocks, blocks, generator=g), size=(size, size))

    def split(n_per_class: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(num_classes).repeat_interleave(n_per_class)
        labels = labels[torch.randperm(len(labels), generator=g)]
        noise = 0.5 * torch.randn(len(labels), channels, size, size, generator=g)
        return prototypes[labels] + noise, labels

    train_x, train_y = split(per_class)
    test_x, test_y = split(test_per_class)
    return RealDataset(
        "tiny",
        train_x,
        train_y,
        test_x,
        test_y,
        (0.5,) * channels,
        (0.25,) * channels,
        tuple(f"class{c}" for c in range(num_classes)),
    )


FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def write_fashion_mnist_idx(root: Path, per_class: int = 12, test_per_class: int = 4, seed: int = 0) -> Path:
    """Write a tiny FashionMNIST (10 classes of 28x28 images, shuffled) in torchvision's layout,
    ``root/FashionMNIST/raw/`` with the four standard IDX file names; return that directory.

    IDX: a big-endian int32 magic (0x00000803 for images, 0x00000801 for labels), the dimensions as
    big-endian int32, then the uint8 data. Classes are blocky random prototypes plus noise, so a
    network can learn something from a handful of images."""
    g = torch.Generator().manual_seed(seed)
    prototypes = F.interpolate(torch.rand(10, 1, 7, 7, generator=g), size=(28, 28)).squeeze(1) * 200
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n_per_class in (("train", per_class), ("test", test_per_class)):
        labels = torch.arange(10).repeat_interleave(n_per_class)
        labels = labels[torch.randperm(len(labels), generator=g)]
        images = (prototypes[labels] + 55 * torch.rand(len(labels), 28, 28, generator=g)).clamp(0, 255).to(torch.uint8)
        image_file, label_file = FASHION_MNIST_FILES[split]
        (raw / image_file).write_bytes(struct.pack(">4i", 0x803, len(labels), 28, 28) + images.numpy().tobytes())
        (raw / label_file).write_bytes(struct.pack(">2i", 0x801, len(labels)) + labels.byte().numpy().tobytes())
    return raw
