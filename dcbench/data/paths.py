"""Datasets given as a path: an image folder or a ``.pt``/``.npz`` file of tensors.

An image folder is laid out as torchvision's ``ImageFolder`` expects, once per split::

    ROOT/train/<class>/*.png|jpg|jpeg     (sub-folders of a class folder are read too)
    ROOT/test/<class>/*.png|jpg|jpeg

Class names are the folder names, numbered in sorted order as ``ImageFolder`` numbers them (hidden
entries, such as ``.ipynb_checkpoints``, are skipped). Images are decoded by
``torchvision.io.decode_image``, keep their channels (1 or 3; palette PNGs become RGB) and are
resized to one size: the declared one, or else the most common size among the images. The
normalisation is the per-channel mean and standard deviation (population SD) of the training split
in [0, 1] pixel space. The decoded uint8 tensors are cached under ``$DCBENCH_CACHE/folders/``,
keyed on a SHA-256 over every file's relative path and bytes, so a second run reads tensors instead
of decoding, and any edit of the folder (a changed, added, moved or renamed image) decodes again.

A tensor file holds ``train_images``, ``train_labels``, ``test_images``, ``test_labels`` and,
optionally, ``class_names``: images (N, C, H, W), (N, H, W, C) or (N, H, W) as uint8 (0-255) or
floats in [0, 1], labels integers 0..K-1. ``.pt`` files are read with ``weights_only=True`` and
``.npz`` files with ``allow_pickle=False``, so neither can run code.

Every problem with the data is one :class:`DcbenchError` line naming the file and the fix.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from dcbench.data.folders import load_image_folder
from dcbench.data.real import DatasetSpec, RealDataset, normalise
from dcbench.data.tensor_files import TENSOR_SUFFIXES, read_tensor_dataset
from dcbench.host.errors import DcbenchError

ENTRY_KEYS = ("path", "name", "size")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass
class PathDataset(RealDataset):
    """A :class:`RealDataset` read from a path; ``source`` says where from and how, for manifests."""

    source: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Content and size: results computed on other data or at another size must not mix."""
        height, width = self.image_size
        return f"{self.source['content_hash'][:16]}/{height}x{width}"


@dataclass(frozen=True)
class DatasetSource:
    """A dataset named by a path: where it is, its name in results, and the declared image size."""

    path: str  # absolute
    name: str
    size: tuple[int, int] | None = None  # None: the most common size (folders), as stored (files)

    @classmethod
    def from_entry(cls, entry: str | Mapping[str, Any], size: object = None) -> DatasetSource:
        """From ``--dataset PATH`` or a spec entry ``{ path = "...", name = "...", size = 32 }``."""
        if isinstance(entry, str):
            entry = {"path": entry, "size": size}
        if not isinstance(entry, Mapping):
            raise DcbenchError(
                f'spec dataset {entry!r} must be a name, a path or a table {{ path = "...", name = "...", size = 32 }}'
            )
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise DcbenchError(
                f"dataset entry {dict(entry)} has no field {unknown[0]!r}; fields are {', '.join(ENTRY_KEYS)}"
            )
        raw_path = entry.get("path")
        if not isinstance(raw_path, str) or not raw_path:
            raise DcbenchError(f'dataset entry {dict(entry)} needs path = "DIR or FILE.pt/.npz"')
        path = Path(raw_path).expanduser().resolve()
        default_name = path.stem if path.suffix.lower() in TENSOR_SUFFIXES else path.name
        name = entry.get("name") or default_name
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise DcbenchError(
                f"dataset name {name!r} (for {path}) must be letters, digits and _.+- "
                'only; give it one with { path = "...", name = "mydata" }'
            )
        return cls(str(path), name, parse_size(entry.get("size"), path))

    def spec(self) -> DatasetSpec:
        kind = "tensor file" if Path(self.path).suffix.lower() in TENSOR_SUFFIXES else "image folder"
        return DatasetSpec(self.name, lambda _data_root: self.load(), f"{kind} {self.path}")

    def load(self) -> PathDataset:
        path = Path(self.path)
        if path.suffix.lower() in TENSOR_SUFFIXES and not path.is_dir():
            tensors, info = read_tensor_dataset(path, self.name, self.size)
        else:
            tensors, info = load_image_folder(path, self.name, self.size)
        dataset = _build(self.name, tensors, info)
        _log(dataset)
        return dataset


def parse_size(value: object, where: Path | str) -> tuple[int, int] | None:
    """A declared size: ``32``, ``[32, 24]`` or (from the command line) ``"32"`` / ``"32x24"``."""
    if value is None:
        return None
    parts: list[object]
    if isinstance(value, str):
        parts = [int(p) if p.strip().isdigit() else p for p in value.lower().split("x")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    if len(parts) == 1:
        parts = parts * 2
    sides = [p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p > 0]
    if len(parts) != 2 or len(sides) != 2:
        raise DcbenchError(f"image size {value!r} for {where} must be a positive integer or [height, width]")
    return sides[0], sides[1]


def resolve_dataset_entry(entry: str | Mapping[str, Any]) -> tuple[str, DatasetSource | None]:
    """A spec ``datasets`` entry as (name in results, source); the source is None for a registered name."""
    if isinstance(entry, str) and not is_dataset_path(entry):
        return entry, None
    source = DatasetSource.from_entry(entry)
    return source.name, source


def anchor_dataset_entry(entry: object, base: Path) -> object:
    """A spec entry with its relative path taken relative to the spec file's folder ``base``."""
    if isinstance(entry, str) and is_dataset_path(entry):
        return str((base / Path(entry).expanduser()).resolve())
    if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
        return {**entry, "path": str((base / Path(entry["path"]).expanduser()).resolve())}
    return entry


def source_for_evaluation(dataset: str | None, manifest: Mapping[str, Any]) -> DatasetSource | None:
    """The path dataset a synthetic set is evaluated on: ``--dataset PATH`` (at the set's image
    size), else the path recorded in its manifest; None for a registered dataset."""
    shape = manifest.get("image_shape")
    size = tuple(shape[1:]) if isinstance(shape, list) and len(shape) == 3 else None
    if dataset is not None:
        return DatasetSource.from_entry(dataset, size=size) if is_dataset_path(dataset) else None
    recorded = manifest.get("dataset_source")
    if not isinstance(recorded, Mapping) or not isinstance(recorded.get("path"), str):
        return None
    if not Path(recorded["path"]).exists():
        raise DcbenchError(
            f"the set was condensed from {recorded['path']}, which no longer exists; "
            "pass --dataset PATH to say where that data is now"
        )
    return DatasetSource.from_entry(
        {"path": recorded["path"], "name": manifest.get("dataset") or None, "size": recorded.get("image_size", size)}
    )


def is_dataset_path(name: str) -> bool:
    """Whether a dataset name is a path (an image folder or a .pt/.npz file) rather than a registered
    name: it has a path separator, starts with '.' or '~', or ends in .pt/.npz."""
    return "/" in name or os.sep in name or name.startswith((".", "~")) or name.endswith((".pt", ".npz"))


def path_dataset(name: str, size: object = None) -> DatasetSpec:
    """The :class:`DatasetSpec` of a path-like dataset name (an image folder or a tensor file): what
    the registry answers for a name no plugin registered."""
    return DatasetSource.from_entry(name, size=size).spec()


# --- the dataset -------------------------------------------------------------------------------


def _build(name: str, tensors: dict[str, Tensor], info: dict[str, Any]) -> PathDataset:
    """Normalise with the training split's statistics; ``info`` becomes the dataset's ``source``."""
    mean, std = tuple(info["mean"]), tuple(info["std"])
    source = {k: v for k, v in info.items() if k not in ("format", "from_cache")}
    source["train_images"], source["test_images"] = len(tensors["train_labels"]), len(tensors["test_labels"])
    dataset = PathDataset(
        name,
        normalise(tensors["train_images"], mean, std),
        tensors["train_labels"].long(),
        normalise(tensors["test_images"], mean, std),
        tensors["test_labels"].long(),
        mean,
        std,
        tuple(info["class_names"]),
        source=source,
    )
    dataset.source["from_cache"] = bool(info.get("from_cache"))
    return dataset


def _log(dataset: PathDataset) -> None:
    """One line on stderr saying what was read and how it was sized and normalised."""
    src = dataset.source
    height, width = dataset.image_size
    origin = "cached tensors of" if src.get("from_cache") else "read from"
    print(
        f"dcbench: dataset {dataset.name}: {dataset.num_classes} classes, {src['train_images']} training and "
        f"{src['test_images']} test images, {dataset.channels}x{height}x{width} ({src['size_rule']}); "
        f"mean {_rounded(dataset.mean)} std {_rounded(dataset.std)} from the training split; "
        f"{origin} {src['path']}",
        file=sys.stderr,
    )


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def manifest_source(dataset: RealDataset) -> dict[str, Any] | None:
    """What a synthetic set's manifest records about a path dataset (None for registered ones)."""
    if not isinstance(dataset, PathDataset):
        return None
    return {k: v for k, v in dataset.source.items() if k != "from_cache"}
