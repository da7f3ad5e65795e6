"""Real datasets: normalised train/test tensors with a per-class index.

Nothing is ever downloaded. A dataset is looked for under the data root that was asked for
(``--data-root``, else ``$DCBENCH_DATA``; torchvision's layout, e.g. ``ROOT/FashionMNIST/raw/`` or
``ROOT/cifar-10-batches-py/``) and only there: a root that lacks the dataset is an error, never a
silent fallback. With no root asked for, FashionMNIST comes from Debian's ``dataset-fashion-mnist``
directory ``/usr/share/datasets/fashion-mnist``. Every file is read as data only: IDX files by
torchvision's reader, CIFAR's pickles by a restricted unpickler (:mod:`dcbench.data.safe_pickle`), SVHN's
MATLAB files by scipy; labels are range-checked against the classes. Normalisation constants are
those of the reference code (CIFAR-100 with its own statistics).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcbench.data.cache import decompressed_copies
from dcbench.data.real import DatasetSpec, RealDataset, normalise
from dcbench.data.safe_pickle import load_numpy_pickle
from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import bounded_size

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
#: the most an IDX file (and a .gz of one, compressed or not) may hold: MNIST's largest is 47 MB;
#: torchvision's reader takes a file whole, so a bigger one is refused before it is read
MAX_IDX_BYTES = 256 * 2**20


def data_root_option(text: str | None) -> Path | None:
    """``--data-root`` as given: None when left out; an empty value is a mistake, not "the default"."""
    if text is None:
        return None
    if not text.strip():
        raise DcbenchError(
            "--data-root is empty; pass the directory that holds the dataset, or leave the "
            "option out to use the default location"
        )
    return Path(text)


def requested_root(data_root: Path | None) -> tuple[Path, str] | None:
    """The data root the user asked for, and how: ``data_root`` (--data-root), else ``$DCBENCH_DATA``.
    A root that was asked for is the only place looked at: nothing falls back silently."""
    if data_root is not None:
        return Path(data_root), "--data-root"
    env = os.environ.get("DCBENCH_DATA")
    if env is None:
        return None
    if not env.strip():
        raise DcbenchError(
            "$DCBENCH_DATA is set but empty; point it at the directory that holds the datasets, "
            "or unset it to use the default location"
        )
    return Path(env), "$DCBENCH_DATA"


def _data_roots(data_root: Path | None) -> list[Path]:
    """The roots a loader may look in: the one asked for, or none (then only its default location)."""
    asked = requested_root(data_root)
    return [asked[0]] if asked else []


def _not_there(asked: tuple[Path, str]) -> str:
    root, how = asked
    return f"{how} {root}" + ("" if root.is_dir() else " (no such directory)")


def _checked_labels(name: str, labels: Tensor, num_classes: int, source: Path) -> Tensor:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(((labels < 0) | (labels >= num_classes)).sum())
        raise DcbenchError(
            f"{name}: {source} holds {bad} label(s) outside 0..{num_classes - 1} (it spans "
            f"{int(labels.min())}..{int(labels.max())}); the file is corrupt or from another "
            "dataset: re-copy it"
        )
    return labels


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _load_mnist_like(
    name: str,
    folder: str,
    tv_class_name: str,
    mean: float,
    std: float,
    data_root: Path | None,
    extra_dirs: tuple[Path, ...] = (),
) -> RealDataset:
    """MNIST-format IDX files, from torchvision's layout or a flat directory of (gzipped) IDX files.
    Gzipped files are read through the content-checked cache (:mod:`dcbench.data.cache`)."""
    import torchvision.datasets as tvd
    from torchvision.datasets.mnist import read_image_file, read_label_file

    files = [f for pair in IDX_FILES.values() for f in pair]
    asked = requested_root(data_root)
    candidates = [asked[0] / folder / "raw", asked[0] / folder.lower(), asked[0]] if asked else list(extra_dirs)

    def complete(d: Path) -> bool:
        return all((d / f).is_file() or (d / f"{f}.gz").is_file() for f in files)

    found = next((d for d in candidates if complete(d)), None)
    if found is None:
        expected = f"{', '.join(files)} (or .gz)"
        if asked:
            default = f" or leave it out to use {extra_dirs[0]}" if extra_dirs else ""
            raise DcbenchError(
                f"{name} not found in {_not_there(asked)}: expected {expected} in it, in its "
                f"{folder}/raw/ or in its {folder.lower()}/; fix the path{default}"
            )
        hint = (
            "install Debian's package with `apt-get install dataset-fashion-mnist`, or pass --data-root"
            if extra_dirs
            else f"pass --data-root DIR (or set DCBENCH_DATA) with torchvision's {folder}/raw/ files"
        )
        where = ", ".join(str(d) for d in extra_dirs) or "(no --data-root or $DCBENCH_DATA given)"
        raise DcbenchError(f"{name} not found: expected {expected} in {where}; {hint}")
    sources = {f: found / f if (found / f).is_file() else found / f"{f}.gz" for f in files}
    readable = dict(sources)
    gzipped = {f: path for f, path in sources.items() if path.suffix == ".gz"}
    if gzipped:  # torchvision's IDX reader wants plain files
        readable.update(decompressed_copies(name, gzipped, MAX_IDX_BYTES))

    def read(reader: Callable[[str], Tensor], f: str) -> Tensor:
        bounded_size(readable[f], MAX_IDX_BYTES, f"an IDX file of {name}", "re-copy or reinstall the dataset files")
        try:
            return reader(str(readable[f]))
        except Exception as exc:  # noqa: BLE001 - torchvision asserts on malformed IDX headers and sizes
            text = first_line(exc, "bad header or size")
            raise DcbenchError(
                f"{name}: {sources[f]} is corrupt or truncated ({type(exc).__name__}: {text}); "
                "re-copy or reinstall the dataset files"
            ) from None

    classes = tuple(getattr(tvd, tv_class_name).classes)
    split: dict[str, tuple[Tensor, Tensor]] = {}
    for part, (image_file, label_file) in IDX_FILES.items():
        images, labels = read(read_image_file, image_file), read(read_label_file, label_file)
        if images.shape[0] != labels.shape[0]:
            raise DcbenchError(
                f"{name}: {sources[image_file]} holds {images.shape[0]} images but "
                f"{sources[label_file]} {labels.shape[0]} labels; re-copy the dataset files"
            )
        if tuple(images.shape[1:]) != (28, 28):
            raise DcbenchError(
                f"{name}: {sources[image_file]} holds {tuple(images.shape[1:])} images, "
                f"{name}'s are (28, 28); is it another dataset's file?"
            )
        split[part] = images, _checked_labels(name, labels, len(classes), sources[label_file])
    (train_x, train_y), (test_x, test_y) = split["train"], split["test"]
    return RealDataset(
        name,
        normalise(train_x, (mean,), (std,)),
        train_y.long(),
        normalise(test_x, (mean,), (std,)),
        test_y.long(),
        (mean,),
        (std,),
        classes,
    )


def load_fashion_mnist(data_root: Path | None) -> RealDataset:
    return _load_mnist_like(
        "fashion-mnist", "FashionMNIST", "FashionMNIST", 0.2861, 0.3530, data_root, extra_dirs=(DEBIAN_FASHION_MNIST,)
    )


def load_mnist(data_root: Path | None) -> RealDataset:
    return _load_mnist_like("mnist", "MNIST", "MNIST", 0.1307, 0.3081, data_root)


@dataclass(frozen=True)
class CifarLayout:
    """The files of a CIFAR ``python`` release (as torchvision expects them under the data root)."""

    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarLayout(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "batches.meta",
    "labels",
    "label_names",
    10,
)
CIFAR100 = CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100)


def _read_cifar(name: str, layout: CifarLayout, folder: Path) -> tuple:
    """CIFAR's pickled batches, read with the restricted unpickler: a batch that asks for anything
    but plain data and NumPy arrays is refused before any of it runs."""

    def load(file: str, what: str) -> Any:
        path = folder / file
        if not path.is_file():
            raise DcbenchError(f"{name}: {path} is missing; re-copy the whole {layout.folder}/ directory")
        content = load_numpy_pickle(path, what)
        if not isinstance(content, dict):
            raise DcbenchError(
                f"{name}: {path} is not a {what} (it holds a {type(content).__name__}, not a dict); re-copy it"
            )
        return path, content

    def batch(file: str) -> tuple[np.ndarray, Tensor]:
        path, content = load(file, f"{name} batch")
        data, labels = content.get("data"), content.get(layout.label_key)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DcbenchError(
                f"{name}: {path} is not a {name} batch: its 'data' must be a uint8 array of N x 3072 pixels; re-copy it"
            )
        labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
        if labels is None or labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
            raise DcbenchError(
                f"{name}: {path} is not a {name} batch: its {layout.label_key!r} must be "
                f"{len(data)} integer labels, one per image; re-copy it"
            )
        return data.reshape(-1, 3, 32, 32), _checked_labels(
            name, torch.from_numpy(labels.astype(np.int64)), layout.num_classes, path
        )

    path, meta = load(layout.meta, f"{name} metadata file")
    classes = meta.get(layout.names_key)
    if (
        not isinstance(classes, list)
        or len(classes) != layout.num_classes
        or not all(isinstance(c, str) for c in classes)
    ):
        raise DcbenchError(
            f"{name}: {path} must list {layout.num_classes} class names under {layout.names_key!r}; re-copy it"
        )
    train = [batch(f) for f in layout.train]
    test = [batch(f) for f in layout.test]
    return (
        np.concatenate([x for x, _ in train]),
        torch.cat([y for _, y in train]),
        np.concatenate([x for x, _ in test]),
        torch.cat([y for _, y in test]),
        classes,
    )


def _read_svhn(name: str, folder: Path) -> tuple:
    """SVHN's MATLAB v5 files: scipy's reader returns arrays only (no code), checked here."""
    import scipy.io

    parts = []
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        if not path.is_file():
            raise DcbenchError(f"{name}: {path} is missing; copy both train_32x32.mat and test_32x32.mat")
        try:
            mat = scipy.io.loadmat(path)
        except Exception as exc:  # noqa: BLE001 - a damaged file raises anything from ValueError to TypeError
            raise DcbenchError(
                f"{name}: {path} is corrupt or not a MATLAB v5 file ({type(exc).__name__}: "
                f"{first_line(exc)}); re-copy it"
            ) from None
        images, labels = mat.get("X"), mat.get("y")
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[:3] != (32, 32, 3):
            raise DcbenchError(
                f"{name}: {path} is not an SVHN file: its 'X' must be a uint8 array of "
                "32 x 32 x 3 x N pixels; re-copy it"
            )
        if (
            not isinstance(labels, np.ndarray)
            or labels.dtype.kind not in "iuf"
            or labels.size != images.shape[3]
            or (labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)))
        ):
            raise DcbenchError(
                f"{name}: {path} is not an SVHN file: its 'y' must be {images.shape[3]} whole-number "
                "labels 1..10, one per image; re-copy it"
            )
        labels = torch.from_numpy(labels.reshape(-1).astype(np.int64))
        labels = _checked_labels(name, torch.where(labels == 10, 0, labels), 10, path)  # SVHN writes digit 0 as 10
        parts.append((np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels))
    (train_x, train_y), (test_x, test_y) = parts
    return train_x, train_y, test_x, test_y, tuple(str(i) for i in range(10))


def _load_torchvision(
    name: str,
    read: Callable[[Path], tuple],
    expected: str,
    data_root: Path | None,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> RealDataset:
    """A dataset in torchvision's layout under the data root that was asked for (there is no default)."""
    asked = requested_root(data_root)
    if asked is None:
        raise DcbenchError(
            f"{name} needs a data root: pass --data-root DIR or set DCBENCH_DATA to the directory "
            f"that holds torchvision's {expected}"
        )
    root = asked[0]
    if not (root / expected).exists():
        raise DcbenchError(
            f"{name} not found in {_not_there(asked)}: expected torchvision's {expected} there; fix the path"
        )
    train_x, train_y, test_x, test_y, classes = read(root)
    if len(train_x) == 0 or len(test_x) == 0:
        raise DcbenchError(f"{name}: the files under {root} hold no training or no test images; re-copy them")
    return RealDataset(
        name, normalise(train_x, mean, std), train_y, normalise(test_x, mean, std), test_y, mean, std, tuple(classes)
    )


def load_cifar10(data_root: Path | None) -> RealDataset:
    return _load_torchvision(
        "cifar10",
        lambda root: _read_cifar("cifar10", CIFAR10, root / CIFAR10.folder),
        CIFAR10.folder,
        data_root,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
    )


def load_cifar100(data_root: Path | None) -> RealDataset:
    return _load_torchvision(
        "cifar100",
        lambda root: _read_cifar("cifar100", CIFAR100, root / CIFAR100.folder),
        CIFAR100.folder,
        data_root,
        (0.5071, 0.4866, 0.4409),
        (0.2673, 0.2564, 0.2762),
    )


def load_svhn(data_root: Path | None) -> RealDataset:
    return _load_torchvision(
        "svhn",
        lambda root: _read_svhn("svhn", root),
        "train_32x32.mat",
        data_root,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
    )


BUILTIN_DATASETS = (
    DatasetSpec(
        "fashion-mnist",
        load_fashion_mnist,
        "FashionMNIST, 10 classes, 1x28x28 (Debian package or --data-root)",
        "FashionMNIST",
    ),
    DatasetSpec("mnist", load_mnist, "MNIST, 10 classes, 1x28x28", "MNIST"),
    DatasetSpec("cifar10", load_cifar10, "CIFAR-10, 10 classes, 3x32x32", "CIFAR-10"),
    DatasetSpec("cifar100", load_cifar100, "CIFAR-100, 100 classes, 3x32x32", "CIFAR-100"),
    DatasetSpec("svhn", load_svhn, "SVHN (train/test), 10 classes, 3x32x32", "SVHN"),
)
