"""What every real dataset is: normalised train/test tensors with a per-class index
(:class:`RealDataset`), the registered name and loader of one (:class:`DatasetSpec`), and the
normalisation they all share."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from dcbench.host.errors import DcbenchError

SPLITS = ("train", "test")
#: the four tensors of a dataset, as a tensor file or a cache entry holds them
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
#: a dataset as read from a path: its tensors by TENSOR_KEYS, and what was read (for manifests)
Decoded = tuple[dict[str, Tensor], dict[str, Any]]

_Dataset = TypeVar("_Dataset", bound="RealDataset")


def data_fingerprint(
    train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor, num_classes: int
) -> str:
    """BLAKE2b over the bytes, shapes and dtypes of the train and test tensors (FashionMNIST's
    220 MB hash in a fraction of a second; callers cache it per dataset and process)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"classes={num_classes}".encode())
    for tensor in (train_images, train_labels, test_images, test_labels):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).reshape(-1).numpy().data if t.numel() else b"")
    return h.hexdigest()


@dataclass
class RealDataset:
    """A labelled image dataset in normalised space, with a per-class index of the train split."""

    name: str
    train_images: Tensor  # (N, C, H, W) float32, normalised
    train_labels: Tensor  # (N,) int64
    test_images: Tensor
    test_labels: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    #: the whitening applied after normalisation ("" none; "zca-eps0.1": :mod:`dcbench.data.zca`)
    zca: str = ""
    indices_by_class: list[Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for split, images, labels in (
            ("training", self.train_images, self.train_labels),
            ("test", self.test_images, self.test_labels),
        ):
            if labels.ndim != 1 or len(labels) != len(images):
                raise DcbenchError(
                    f"dataset {self.name!r}: {len(images)} {split} images but labels of shape "
                    f"{tuple(labels.shape)}; check that the dataset files are complete"
                )
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise DcbenchError(
                    f"dataset {self.name!r}: {split} labels are {labels.dtype}; expected integer class indices"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise DcbenchError(
                    f"dataset {self.name!r}: {split} labels span {int(labels.min())}.."
                    f"{int(labels.max())}, but it has {self.num_classes} classes "
                    f"(0..{self.num_classes - 1}); the label data is corrupt or mislabelled"
                )
        self.indices_by_class = [torch.nonzero(self.train_labels == c).flatten() for c in range(self.num_classes)]
        empty = [c for c, idx in enumerate(self.indices_by_class) if idx.numel() == 0]
        if empty:
            raise DcbenchError(
                f"dataset {self.name!r} has no training images of class {empty[0]}; "
                "check that the dataset files are complete"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def device(self) -> torch.device:
        return self.train_images.device

    def sample_class(self, c: int, n: int, generator: torch.Generator) -> Tensor:
        """``n`` distinct random training images of class ``c`` (all of them if the class is smaller)."""
        idx = self.indices_by_class[c]
        pick = torch.randperm(idx.numel(), generator=generator)[:n].to(idx.device)
        return self.train_images.index_select(0, idx[pick])  # ~1000x faster than fancy indexing here

    def sample_per_class(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` random training images of every class, stacked class-major, with their labels."""
        images = [self.sample_class(c, n, generator) for c in range(self.num_classes)]
        labels = torch.cat([torch.full((len(x),), c, dtype=torch.long) for c, x in enumerate(images)])
        return torch.cat(images), labels.to(self.device)

    def content_hash(self) -> str:
        """The content hash of the tensors as they are now (:func:`data_fingerprint`)."""
        return data_fingerprint(
            self.train_images, self.train_labels, self.test_images, self.test_labels, self.num_classes
        )

    def to(self: _Dataset, device: torch.device | str) -> _Dataset:
        """The same dataset (of the same class, with its other fields) with its tensors on ``device``;
        a fresh object even when they are there already, whose per-class index is rebuilt."""
        return dataclasses.replace(
            self,
            train_images=self.train_images.to(device),
            train_labels=self.train_labels.to(device),
            test_images=self.test_images.to(device),
            test_labels=self.test_labels.to(device),
        )

    def denormalise(self, images: Tensor) -> Tensor:
        """Back to [0, 1] pixel space (clamped), for image grids (of whitened images: the
        normalisation undone, not the whitening)."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images * std + mean).clamp(0, 1)


DatasetLoader = Callable[[Path | None], RealDataset]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset a plugin can register: ``loader(data_root) -> RealDataset``."""

    name: str
    loader: DatasetLoader
    description: str = ""
    label: str = ""  # how tables name it ("FashionMNIST"); empty: its name


def normalise(images: np.ndarray | Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """Pixels (uint8 0-255, or floats in [0, 1]; (N, H, W), (N, H, W, C) or (N, C, H, W)) as
    (N, C, H, W) floats standardised per channel with ``mean`` and ``std``."""
    x = torch.as_tensor(images)
    if x.ndim == 3:  # (N, H, W) grey-scale
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # (N, H, W, C) -> (N, C, H, W)
        x = x.permute(0, 3, 1, 2)
    # in place from here: one float copy of the split at the peak (floats are [0, 1] pixels already)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return x.contiguous().sub_(m).div_(s)


def channel_stats(pixels: Tensor, where: Path | str) -> tuple[list[float], list[float]]:
    """Per-channel mean and population SD of the training pixels in [0, 1] (float64, so exact enough
    that the rounded values written to manifests do not depend on the thread count)."""
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3), correction=0)
    for channel, value in enumerate(std.tolist()):
        if value < 1e-6:
            raise DcbenchError(
                f"{where}: channel {channel} has the same value in every training image, "
                "so it cannot be normalised; check that the images are not blank"
            )
    return [round(v, 6) for v in mean.tolist()], [round(v, 6) for v in std.tolist()]
