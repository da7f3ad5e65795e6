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

import hashlib
import json
import os
import re
import sys
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcbench.datasets import DatasetSpec, RealDataset, is_dataset_path
from dcbench.errors import DcbenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TENSOR_SUFFIXES = (".pt", ".npz")
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = ("train", "test")
CACHE_FORMAT = "dcbench-folder-cache/1"
ENTRY_KEYS = ("path", "name", "size")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PALETTE = 3  # the IHDR colour type of an indexed-colour PNG


@dataclass
class PathDataset(RealDataset):
    """A :class:`RealDataset` read from a path; ``source`` says where from and how, for manifests."""

    source: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> PathDataset:
        return PathDataset(self.name, self.train_images.to(device), self.train_labels.to(device),
                           self.test_images.to(device), self.test_labels.to(device),
                           self.mean, self.std, self.class_names, source=self.source)

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
            raise DcbenchError(f"spec dataset {entry!r} must be a name, a path or a table "
                               '{ path = "...", name = "...", size = 32 }')
        unknown = sorted(set(entry) - set(ENTRY_KEYS))
        if unknown:
            raise DcbenchError(f"dataset entry {dict(entry)} has no field {unknown[0]!r}; "
                               f"fields are {', '.join(ENTRY_KEYS)}")
        raw_path = entry.get("path")
        if not isinstance(raw_path, str) or not raw_path:
            raise DcbenchError(f"dataset entry {dict(entry)} needs path = \"DIR or FILE.pt/.npz\"")
        path = Path(raw_path).expanduser().resolve()
        default_name = path.stem if path.suffix.lower() in TENSOR_SUFFIXES else path.name
        name = entry.get("name") or default_name
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise DcbenchError(f"dataset name {name!r} (for {path}) must be letters, digits and _.+- "
                               'only; give it one with { path = "...", name = "mydata" }')
        return cls(str(path), name, parse_size(entry.get("size"), path))

    def spec(self) -> DatasetSpec:
        kind = "tensor file" if Path(self.path).suffix.lower() in TENSOR_SUFFIXES else "image folder"
        return DatasetSpec(self.name, lambda _data_root: self.load(), f"{kind} {self.path}")

    def load(self) -> PathDataset:
        path = Path(self.path)
        if path.suffix.lower() in TENSOR_SUFFIXES and not path.is_dir():
            dataset = load_tensor_file(path, self.name, self.size)
        else:
            dataset = load_image_folder(path, self.name, self.size)
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
        raise DcbenchError(f"the set was condensed from {recorded['path']}, which no longer exists; "
                           "pass --dataset PATH to say where that data is now")
    return DatasetSource.from_entry({"path": recorded["path"], "name": manifest.get("dataset") or None,
                                     "size": recorded.get("image_size", size)})


# --- image folders -------------------------------------------------------------------------------

def load_image_folder(root: Path, name: str, size: tuple[int, int] | None) -> PathDataset:
    classes, files = scan_image_folder(root)
    content_hash = _folder_hash(root, [path for split in SPLITS for path, _ in files[split]])
    folders = _cache_root() / "folders"
    cache = folders / f"{content_hash[:40]}-{'x'.join(map(str, size)) if size else 'auto'}"
    cached = _read_cache(cache, content_hash)
    if cached is None and size is not None:  # e.g. evaluating at the size the folder was read at
        cached = _read_cache(folders / f"{content_hash[:40]}-auto", content_hash)
        if cached is not None and cached[1].get("image_size") == list(size):
            cached[1]["size_rule"] = "the declared size"
        else:
            cached = None
    if cached is None:
        tensors, info = _decode_folder(root, classes, files, size)
        info.update({"format": CACHE_FORMAT, "kind": "image folder", "content_hash": content_hash,
                     "class_names": classes, "files": sum(len(f) for f in files.values())})
        _write_cache(cache, tensors, info)
        info["from_cache"] = False
    else:
        tensors, info = cached
        info["from_cache"] = True
    info.update({"path": str(root), "name": name})
    return _build(name, tensors, info)


def scan_image_folder(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """The class names and each split's (file, label) list, after checking the whole layout."""
    layout = f"lay it out as {root}/train/<class>/*.png and {root}/test/<class>/*.png (PNG or JPEG)"
    if not root.exists():
        raise DcbenchError(f"dataset folder {root} not found; pass an image folder or a .pt/.npz file")
    if not root.is_dir():
        raise DcbenchError(f"dataset {root} is neither a folder nor a .pt/.npz file; {layout}")
    if not _visible(root):
        raise DcbenchError(f"dataset folder {root} is empty; {layout}")
    class_dirs: dict[str, list[str]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DcbenchError(f"dataset folder {root} has no {split}/ folder; {layout}")
        for entry in _visible(split_dir):
            if not entry.is_dir():
                raise DcbenchError(f"{entry} is not a directory; {split_dir} must hold only one folder per "
                                   "class: move that file out or delete it")
        class_dirs[split] = sorted(entry.name for entry in _visible(split_dir))
    classes = class_dirs["train"]
    if not classes:
        raise DcbenchError(f"{root / 'train'} holds no class folders; {layout}")
    if len(classes) == 1:
        raise DcbenchError(f"{root / 'train'} has only one class ({classes[0]}); condensation needs at "
                           "least two: add a folder of images for another class")
    for extra in sorted(set(class_dirs["test"]) - set(classes)):
        raise DcbenchError(f"{root / 'test' / extra} has no training folder {root / 'train' / extra}; "
                           "add training images of that class or remove the test folder")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(classes):
            class_dir = root / split / name
            if not class_dir.is_dir():
                raise DcbenchError(f"class {name!r} has no test images: {class_dir} is missing; "
                                   f"add test images of {name} there")
            images = _images_in(class_dir)
            if not images:
                what = "no test images" if split == "test" else "no training images"
                raise DcbenchError(f"class {name!r} has {what}: {class_dir} holds no PNG or JPEG files; "
                                   f"add some, or remove the class from both train/ and test/")
            files[split] += [(path, label) for path in images]
    return classes, files


def _visible(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _images_in(class_dir: Path) -> list[Path]:
    """Every image under a class folder (recursively, as ImageFolder), refusing other files."""
    found = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(f for f in filenames if not f.startswith(".")):
            path = Path(dirpath) / filename
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DcbenchError(f"{path} is not a PNG or JPEG file; convert it or move it out of "
                                   f"{class_dir.parent.parent}")
            found.append(path)
    return found


def _folder_hash(root: Path, paths: list[Path]) -> str:
    """SHA-256 over each file's path relative to ``root`` and its bytes' own SHA-256."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for path in paths:
        file_digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    file_digest.update(chunk)
        except OSError as exc:
            raise DcbenchError(f"{path} cannot be read ({exc.strerror}); fix its permissions or delete it") from None
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_digest.hexdigest()}\n".encode())
    return digest.hexdigest()


def decode(path: Path) -> Tensor:
    """One image as uint8 (C, H, W) with 1 or 3 channels; a one-line error names a bad file."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    data = path.read_bytes()
    if not data:
        raise DcbenchError(f"{path} is empty (0 bytes); replace or delete it")
    # decode_image keeps a palette PNG's indices in UNCHANGED mode: expand those to RGB instead.
    palette = data[:8] == PNG_SIGNATURE and len(data) > 25 and data[25] == PNG_PALETTE
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs (for TorchCodec)
            warnings.simplefilter("ignore", DeprecationWarning)
            image: Tensor = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                         mode=ImageReadMode.RGB if palette else ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # torchvision prefixes "decode_image, /path/decode_image.cpp:61, "; keep the first sentence
        reason = re.sub(r"^[^,]*, [^,]*:\d+, ", "", text).split(". ")[0].rstrip(".")[:120]
        raise DcbenchError(f"{path} cannot be decoded as a PNG or JPEG image ({reason}); "
                           "replace or delete it") from None
    if image.shape[0] in (2, 4):
        raise DcbenchError(f"{path} has {image.shape[0]} channels (transparency or CMYK); convert the "
                           "images to RGB or greyscale without an alpha channel")
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = to_dtype(image, torch.uint8, scale=True)
    return image


def _decode_folder(root: Path, classes: list[str], files: dict[str, list[tuple[Path, int]]],
                   size: tuple[int, int] | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from torchvision.transforms.v2.functional import resize

    decoded: dict[str, list[Tensor]] = {split: [] for split in SPLITS}
    first: tuple[Path, int] | None = None
    for split in SPLITS:
        for path, _ in files[split]:
            image = decode(path)
            if first is None:
                first = (path, image.shape[0])
            elif image.shape[0] != first[1]:
                raise DcbenchError(f"{path} has {image.shape[0]} channel(s) but {first[0]} has {first[1]}; "
                                   "convert all images to RGB (or all to greyscale)")
            if size is not None and tuple(image.shape[1:]) != size:
                image = resize(image, list(size), antialias=True)
            decoded[split].append(image)
    if size is not None:
        chosen, rule = size, "the declared size"
    else:  # ties go to the larger size, so no image is shrunk below its sibling's resolution
        sizes = Counter((int(x.shape[1]), int(x.shape[2])) for split in SPLITS for x in decoded[split])
        chosen, count = max(sizes.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
        total = sum(sizes.values())
        rule = ("the size of every image" if count == total
                else f"the most common size, {count} of {total} images")
        for split in SPLITS:
            decoded[split] = [x if tuple(x.shape[1:]) == chosen else resize(x, list(chosen), antialias=True)
                              for x in decoded[split]]
    tensors = {}
    for split in SPLITS:
        tensors[f"{split}_images"] = torch.stack(decoded[split])
        tensors[f"{split}_labels"] = torch.tensor([label for _, label in files[split]], dtype=torch.long)
    pixels = tensors["train_images"].double().div_(255.0)
    mean, std = _channel_stats(pixels, root / "train")
    info = {"image_size": list(chosen), "size_rule": rule, "channels": int(tensors["train_images"].shape[1]),
            "mean": mean, "std": std}
    return tensors, info


def _channel_stats(pixels: Tensor, where: Path | str) -> tuple[list[float], list[float]]:
    """Per-channel mean and population SD of the training pixels in [0, 1] (float64, so exact enough
    that the rounded values written to manifests do not depend on the thread count)."""
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3), correction=0)
    for channel, value in enumerate(std.tolist()):
        if value < 1e-6:
            raise DcbenchError(f"{where}: channel {channel} has the same value in every training image, "
                               "so it cannot be normalised; check that the images are not blank")
    return [round(v, 6) for v in mean.tolist()], [round(v, 6) for v in std.tolist()]


def _cache_root() -> Path:
    return Path(os.environ.get("DCBENCH_CACHE", Path.home() / ".cache" / "dcbench"))


def _read_cache(cache: Path, content_hash: str) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The cached tensors of a folder, or None when absent or unusable (then it is decoded again)."""
    try:
        info = json.loads((cache / "manifest.json").read_text())
        tensors = torch.load(cache / "data.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache file raises anything; it is only decoded again
        return None
    if not isinstance(info, dict) or info.get("format") != CACHE_FORMAT or info.get("content_hash") != content_hash:
        return None
    if not isinstance(tensors, dict) or not all(isinstance(tensors.get(k), Tensor) for k in TENSOR_KEYS):
        return None
    return tensors, info


def _write_cache(cache: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    from dcbench.synthetic import atomic_write, atomic_write_text

    try:  # the manifest goes last: its presence means the tensors are complete
        atomic_write(cache / "data.pt", lambda f: torch.save(tensors, f))
        atomic_write_text(cache / "manifest.json", json.dumps(info, indent=2, sort_keys=True))
    except OSError as exc:
        print(f"dcbench: note: cannot cache the decoded images in {cache} ({exc.strerror}); "
              "they will be decoded again next time (set DCBENCH_CACHE to a writable folder)", file=sys.stderr)


# --- tensor files --------------------------------------------------------------------------------

def load_tensor_file(path: Path, name: str, size: tuple[int, int] | None) -> PathDataset:
    if not path.is_file():
        raise DcbenchError(f"dataset file {path} not found; pass an existing .pt/.npz file or an image folder")
    arrays = _read_tensor_file(path)
    missing = [k for k in TENSOR_KEYS if k not in arrays]
    if missing:
        raise DcbenchError(f"{path} has no {missing[0]!r}; it must hold {', '.join(TENSOR_KEYS)} "
                           "(and optionally class_names)")
    images = {split: _as_pixels(arrays[f"{split}_images"], path, f"{split}_images") for split in SPLITS}
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise DcbenchError(f"{path}: train_images are {tuple(images['train'].shape[1:])} (C, H, W) but "
                           f"test_images are {tuple(images['test'].shape[1:])}; both splits need one shape")
    labels = {split: _as_labels(arrays[f"{split}_labels"], len(images[split]), path, f"{split}_labels")
              for split in SPLITS}
    classes = _class_names(arrays.get("class_names"), labels, path)
    counts = torch.bincount(labels["train"], minlength=len(classes))
    if (counts == 0).any():
        empty = int(torch.nonzero(counts == 0)[0])
        raise DcbenchError(f"{path}: class {empty} ({classes[empty]}) has no training images; "
                           "add some, or drop that class and renumber the labels")
    if size is not None and tuple(images["train"].shape[2:]) != size:
        from torchvision.transforms.v2.functional import resize

        images = {split: resize(x, list(size), antialias=True).clamp_(0, 1) for split, x in images.items()}
    mean, std = _channel_stats(images["train"].double(), path)
    height, width = images["train"].shape[2:]
    info = {"kind": "tensor file", "path": str(path), "name": name, "content_hash": _file_hash(path),
            "class_names": classes, "image_size": [int(height), int(width)],
            "size_rule": "the declared size" if size is not None else "the stored size",
            "channels": int(images["train"].shape[1]), "mean": mean, "std": std, "from_cache": False}
    tensors = {**{f"{s}_images": images[s] for s in SPLITS}, **{f"{s}_labels": labels[s] for s in SPLITS}}
    return _build(name, tensors, info)


def _read_tensor_file(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".pt":
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a bad file raises anything from pickle errors to EOFError
            why = ("it holds objects other than tensors, refused for safety; save a dict of tensors"
                   if "weights only" in str(exc).lower() else f"{type(exc).__name__}; re-save it with torch.save")
            raise DcbenchError(f"{path} cannot be loaded: {why}") from None
        if not isinstance(payload, dict):
            raise DcbenchError(f"{path} holds a {type(payload).__name__}, not a dict; save "
                               f"{{{', '.join(repr(k) for k in TENSOR_KEYS)}: tensors}} with torch.save")
        return payload
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DcbenchError(f"{path} holds object arrays, refused for safety (they would unpickle); "
                               "save numeric arrays and a string array of class names") from None
        raise DcbenchError(f"{path} is not a readable .npz file ({exc}); re-save it with numpy.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DcbenchError(f"{path} is not a readable .npz file ({type(exc).__name__}); "
                           "re-save it with numpy.savez") from None


def _as_pixels(value: object, path: Path, key: str) -> Tensor:
    """Images as float (N, C, H, W) in [0, 1], from uint8/integer 0-255 or floats in [0, 1]."""
    x = _as_tensor(value, path, key)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise DcbenchError(f"{path}: {key} has shape {tuple(x.shape)}; expected (N, C, H, W), (N, H, W, C) "
                           "or (N, H, W) with N > 0 and 1 or 3 channels")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise DcbenchError(f"{path}: {key} contains NaN or infinite values; clean the data and re-save it")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise DcbenchError(f"{path}: {key} lies in [{low:.3g}, {high:.3g}]; store floats in [0, 1] "
                               "or uint8 pixels 0-255")
        return x.float().contiguous()
    if x.dtype == torch.bool or x.is_complex():
        raise DcbenchError(f"{path}: {key} has dtype {x.dtype}; store uint8 pixels or floats in [0, 1]")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high > 255:
        raise DcbenchError(f"{path}: {key} are integers in {low}..{high}; store uint8 pixels 0-255 "
                           "or floats in [0, 1]")
    return x.float().div_(255.0).contiguous()


def _as_labels(value: object, count: int, path: Path, key: str) -> Tensor:
    y = _as_tensor(value, path, key)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise DcbenchError(f"{path}: {key} has dtype {y.dtype}; labels must be integers 0..K-1")
    if y.ndim != 1 or y.shape[0] != count:
        raise DcbenchError(f"{path}: {key} has shape {tuple(y.shape)}, the images need ({count},); "
                           "give one integer label per image")
    if int(y.min()) < 0:
        raise DcbenchError(f"{path}: {key} holds the negative label {int(y.min())}; labels must be 0..K-1")
    return y.long()


def _as_tensor(value: object, path: Path, key: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DcbenchError(f"{path}: {key} is a {type(value).__name__} "
                       f"{getattr(value, 'dtype', '')}, not a numeric array; store a tensor or numeric array")


def _class_names(value: object, labels: dict[str, Tensor], path: Path) -> list[str]:
    top = max(int(y.max()) for y in labels.values())
    if value is None:
        names = [str(i) for i in range(top + 1)]
    elif isinstance(value, np.ndarray) and value.dtype.kind in "US" and value.ndim == 1:
        names = [str(v) for v in value.tolist()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise DcbenchError(f"{path}: class_names must be a list (or 1-D string array) of strings")
    if top >= len(names):
        raise DcbenchError(f"{path}: a label is {top} but there are {len(names)} class names; "
                           f"labels must be 0..{len(names) - 1}")
    if len(names) < 2:
        raise DcbenchError(f"{path} has only one class; condensation needs at least two")
    return names


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the dataset ---------------------------------------------------------------------------------

def _build(name: str, tensors: dict[str, Tensor], info: dict[str, Any]) -> PathDataset:
    """Normalise with the training split's statistics; ``info`` becomes the dataset's ``source``."""
    mean, std = tuple(info["mean"]), tuple(info["std"])
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)

    def normalise(x: Tensor) -> Tensor:
        pixels = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        return ((pixels - m) / s).contiguous()

    source = {k: v for k, v in info.items() if k not in ("format", "from_cache")}
    source["train_images"], source["test_images"] = len(tensors["train_labels"]), len(tensors["test_labels"])
    dataset = PathDataset(name, normalise(tensors["train_images"]), tensors["train_labels"].long(),
                          normalise(tensors["test_images"]), tensors["test_labels"].long(), mean, std,
                          tuple(info["class_names"]), source=source)
    dataset.source["from_cache"] = bool(info.get("from_cache"))
    return dataset


def _log(dataset: PathDataset) -> None:
    """One line on stderr saying what was read and how it was sized and normalised."""
    src = dataset.source
    height, width = dataset.image_size
    origin = "cached tensors of" if src.get("from_cache") else "read from"
    print(f"dcbench: dataset {dataset.name}: {dataset.num_classes} classes, {src['train_images']} training and "
          f"{src['test_images']} test images, {dataset.channels}x{height}x{width} ({src['size_rule']}); "
          f"mean {_rounded(dataset.mean)} std {_rounded(dataset.std)} from the training split; "
          f"{origin} {src['path']}", file=sys.stderr)


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def manifest_source(dataset: RealDataset) -> dict[str, Any] | None:
    """What a synthetic set's manifest records about a path dataset (None for registered ones)."""
    if not isinstance(dataset, PathDataset):
        return None
    return {k: v for k, v in dataset.source.items() if k != "from_cache"}
