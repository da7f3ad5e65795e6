"""Real datasets: normalised train/test tensors with a per-class index, read by torchvision.

Nothing is ever downloaded. A dataset is looked for under ``--data-root`` / ``$DCBENCH_DATA``
(torchvision's layout, e.g. ``ROOT/FashionMNIST/raw/`` or ``ROOT/cifar-10-batches-py/``) and, for
FashionMNIST, in Debian's ``dataset-fashion-mnist`` directory ``/usr/share/datasets/fashion-mnist``.
Normalisation constants are those of the reference code (CIFAR-100 with its own statistics).
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dcbench.errors import DcbenchError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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
    indices_by_class: list[Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.indices_by_class = [torch.nonzero(self.train_labels == c).flatten()
                                 for c in range(self.num_classes)]
        empty = [c for c, idx in enumerate(self.indices_by_class) if idx.numel() == 0]
        if empty:
            raise DcbenchError(f"dataset {self.name!r} has no training images of class {empty[0]}; "
                               "check that the dataset files are complete")

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

    def to(self, device: torch.device | str) -> RealDataset:
        return RealDataset(self.name, self.train_images.to(device), self.train_labels.to(device),
                           self.test_images.to(device), self.test_labels.to(device),
                           self.mean, self.std, self.class_names)

    def denormalise(self, images: Tensor) -> Tensor:
        """Back to [0, 1] pixel space (clamped), for image grids."""
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


def _normalise(images: np.ndarray | Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 3:  # (N, H, W) grey-scale
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):  # (N, H, W, C) -> (N, C, H, W)
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)  # in place from here: one float copy of the split at the peak
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return x.contiguous().sub_(m).div_(s)


def _data_roots(data_root: Path | None) -> list[Path]:
    roots = [data_root] if data_root else []
    if os.environ.get("DCBENCH_DATA"):
        roots.append(Path(os.environ["DCBENCH_DATA"]))
    return roots


def _cache_dir() -> Path:
    return Path(os.environ.get("DCBENCH_CACHE", Path.home() / ".cache" / "dcbench"))


def _load_mnist_like(name: str, folder: str, tv_class_name: str, mean: float, std: float,
                     data_root: Path | None, extra_dirs: tuple[Path, ...] = ()) -> RealDataset:
    """MNIST-format IDX files, from torchvision's layout or a flat directory of (gzipped) IDX files."""
    import torchvision.datasets as tvd

    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    candidates = []
    for root in _data_roots(data_root):
        candidates += [root / folder / "raw", root / folder.lower(), root]
    candidates += list(extra_dirs)

    def complete(d: Path) -> bool:
        return all((d / f).is_file() or (d / f"{f}.gz").is_file() for f in files)

    found = next((d for d in candidates if complete(d)), None)
    if found is None:
        where = ", ".join(str(d) for d in candidates) or "(no --data-root or $DCBENCH_DATA given)"
        hint = ("install Debian's package with `apt-get install dataset-fashion-mnist`, or pass --data-root"
                if name == "fashion-mnist" else f"put torchvision's {folder}/raw/ files under --data-root")
        raise DcbenchError(f"{name} not found: expected {', '.join(files)} (or .gz) in one of {where}; {hint}")
    # torchvision's reader wants uncompressed files in ROOT/<Folder>/raw: stage them in the cache
    # unless they already are.
    in_place = found.name == "raw" and found.parent.name == folder and all((found / f).is_file() for f in files)
    staged_root = found.parent.parent if in_place else _cache_dir() / name
    raw = staged_root / folder / "raw"
    if not in_place:
        raw.mkdir(parents=True, exist_ok=True)
        for f in files:
            source = found / f if (found / f).is_file() else found / f"{f}.gz"
            if (raw / f).exists() and (raw / f).stat().st_mtime >= source.stat().st_mtime:
                continue
            try:
                opener = gzip.open if source.suffix == ".gz" else open
                with opener(source, "rb") as src, open(raw / f, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as exc:
                (raw / f).unlink(missing_ok=True)
                raise DcbenchError(f"{name}: {source} is corrupt or unreadable ({exc}); "
                                   "reinstall or re-copy the dataset files") from None
    try:
        train = getattr(tvd, tv_class_name)(str(staged_root), train=True, download=False)
        test = getattr(tvd, tv_class_name)(str(staged_root), train=False, download=False)
        train_x, train_y, test_x, test_y = train.data, train.targets, test.data, test.targets
    except Exception as exc:  # torchvision asserts on malformed IDX headers and sizes
        raise DcbenchError(f"{name}: the IDX files in {found} are corrupt or truncated ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); reinstall or re-copy them") from None
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise DcbenchError(f"{name}: image and label files in {found} disagree in length; re-copy the dataset files")
    return RealDataset(name, _normalise(train_x, (mean,), (std,)), train_y.long(),
                       _normalise(test_x, (mean,), (std,)), test_y.long(), (mean,), (std,),
                       tuple(train.classes))


def load_fashion_mnist(data_root: Path | None) -> RealDataset:
    return _load_mnist_like("fashion-mnist", "FashionMNIST", "FashionMNIST", 0.2861, 0.3530, data_root,
                            extra_dirs=(DEBIAN_FASHION_MNIST,))


def load_mnist(data_root: Path | None) -> RealDataset:
    return _load_mnist_like("mnist", "MNIST", "MNIST", 0.1307, 0.3081, data_root)


def _torchvision_split(cls: type, root: Path, **kwargs: object) -> object:
    """Instantiate a torchvision dataset without its MD5 checks, so that re-packed or tiny test
    copies load too; the shape and label checks in :func:`_load_torchvision` follow instead."""

    def load_meta_unchecked(self: object) -> None:  # CIFAR's class names, without the MD5 check
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    unchecked = type(cls.__name__, (cls,), {"_check_integrity": lambda self: True,
                                            "_load_meta": load_meta_unchecked})
    return unchecked(str(root), download=False, **kwargs)


def _load_torchvision(name: str, build: Callable[[Path], tuple], expected: str, data_root: Path | None,
                      mean: tuple[float, ...], std: tuple[float, ...]) -> RealDataset:
    roots = _data_roots(data_root)
    for root in roots:
        if (root / expected).exists():
            try:
                train_x, train_y, test_x, test_y, classes = build(root)
            except Exception as exc:
                raise DcbenchError(f"{name}: files under {root / expected} are corrupt or incomplete "
                                   f"({type(exc).__name__}); re-copy torchvision's {expected}") from None
            train_y, test_y = torch.as_tensor(np.asarray(train_y)).long(), torch.as_tensor(np.asarray(test_y)).long()
            if len(train_x) != len(train_y) or len(test_x) != len(test_y) or len(train_x) == 0:
                raise DcbenchError(f"{name}: images and labels under {root / expected} disagree in length; re-copy them")
            if int(train_y.max()) >= len(classes) or int(train_y.min()) < 0:
                raise DcbenchError(f"{name}: labels under {root / expected} are outside 0..{len(classes) - 1}; re-copy them")
            return RealDataset(name, _normalise(train_x, mean, std), train_y, _normalise(test_x, mean, std),
                               test_y, mean, std, tuple(classes))
    where = ", ".join(str(r) for r in roots) or "(no --data-root or $DCBENCH_DATA given)"
    raise DcbenchError(f"{name} not found: expected torchvision's {expected} under one of {where}; "
                       f"pass --data-root DIR or set DCBENCH_DATA to the directory that holds it")


def _cifar(cls_name: str) -> Callable[[Path], tuple]:
    def build(root: Path) -> tuple:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        train = _torchvision_split(cls, root, train=True)
        test = _torchvision_split(cls, root, train=False)
        return train.data, train.targets, test.data, test.targets, train.classes
    return build


def _svhn(root: Path) -> tuple:
    import torchvision.datasets as tvd

    train = _torchvision_split(tvd.SVHN, root, split="train")
    test = _torchvision_split(tvd.SVHN, root, split="test")
    return train.data, train.labels, test.data, test.labels, tuple(str(i) for i in range(10))


def load_cifar10(data_root: Path | None) -> RealDataset:
    return _load_torchvision("cifar10", _cifar("CIFAR10"), "cifar-10-batches-py", data_root,
                             (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def load_cifar100(data_root: Path | None) -> RealDataset:
    return _load_torchvision("cifar100", _cifar("CIFAR100"), "cifar-100-python", data_root,
                             (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762))


def load_svhn(data_root: Path | None) -> RealDataset:
    return _load_torchvision("svhn", _svhn, "train_32x32.mat", data_root,
                             (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))


BUILTIN_DATASETS = (
    DatasetSpec("fashion-mnist", load_fashion_mnist, "FashionMNIST, 10 classes, 1x28x28 (Debian package or --data-root)"),
    DatasetSpec("mnist", load_mnist, "MNIST, 10 classes, 1x28x28"),
    DatasetSpec("cifar10", load_cifar10, "CIFAR-10, 10 classes, 3x32x32"),
    DatasetSpec("cifar100", load_cifar100, "CIFAR-100, 100 classes, 3x32x32"),
    DatasetSpec("svhn", load_svhn, "SVHN (train/test), 10 classes, 3x32x32"),
)


def is_dataset_path(name: str) -> bool:
    """Whether a dataset name is a path (an image folder or a .pt/.npz file) rather than a registered
    name: it has a path separator, starts with '.' or '~', or ends in .pt/.npz."""
    return "/" in name or os.sep in name or name.startswith((".", "~")) or name.endswith((".pt", ".npz"))


def path_dataset(name: str, size: object = None) -> DatasetSpec:
    """The dispatch hook for a path-like dataset name: read by :mod:`dcbench.folder_dataset`."""
    from dcbench.folder_dataset import DatasetSource

    return DatasetSource.from_entry(name, size=size).spec()
