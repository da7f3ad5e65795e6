"""Datasets as one tensor file: ``.pt`` (read with ``weights_only=True``) or ``.npz`` (with
``allow_pickle=False``) holding ``train_images``, ``train_labels``, ``test_images``, ``test_labels``
and optionally ``class_names`` (see :mod:`dcbench.data.paths` for the accepted layouts)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcbench.data.real import SPLITS, TENSOR_KEYS, Decoded, channel_stats
from dcbench.data.safe_pickle import MAX_TENSOR_FILE_BYTES, load_tensor_file
from dcbench.host.errors import DcbenchError
from dcbench.host.files import bounded_size, file_sha256, format_bytes
from dcbench.host.runtime import available_memory

TENSOR_SUFFIXES = (".pt", ".npz")


def read_tensor_dataset(path: Path, name: str, size: tuple[int, int] | None) -> Decoded:
    """The file's tensors (pixels in [0, 1] or uint8) and what was read (``info``), checked."""
    if not path.is_file():
        raise DcbenchError(f"dataset file {path} not found; pass an existing .pt/.npz file or an image folder")
    arrays = _read_tensor_file(path)
    missing = [k for k in TENSOR_KEYS if k not in arrays]
    if missing:
        raise DcbenchError(
            f"{path} has no {missing[0]!r}; it must hold {', '.join(TENSOR_KEYS)} (and optionally class_names)"
        )
    images = {split: _as_pixels(arrays[f"{split}_images"], path, f"{split}_images") for split in SPLITS}
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise DcbenchError(
            f"{path}: train_images are {tuple(images['train'].shape[1:])} (C, H, W) but "
            f"test_images are {tuple(images['test'].shape[1:])}; both splits need one shape"
        )
    labels = {
        split: _as_labels(arrays[f"{split}_labels"], len(images[split]), path, f"{split}_labels") for split in SPLITS
    }
    classes = _class_names(arrays.get("class_names"), labels, path)
    counts = torch.bincount(labels["train"], minlength=len(classes))
    if (counts == 0).any():
        empty = int(torch.nonzero(counts == 0)[0])
        raise DcbenchError(
            f"{path}: class {empty} ({classes[empty]}) has no training images; "
            "add some, or drop that class and renumber the labels"
        )
    if size is not None and tuple(images["train"].shape[2:]) != size:
        from torchvision.transforms.v2.functional import resize

        images = {split: resize(x, list(size), antialias=True).clamp_(0, 1) for split, x in images.items()}
    mean, std = channel_stats(images["train"].double(), path)
    height, width = images["train"].shape[2:]
    info = {
        "kind": "tensor file",
        "path": str(path),
        "name": name,
        "content_hash": file_sha256(path),
        "class_names": classes,
        "image_size": [int(height), int(width)],
        "size_rule": "the declared size" if size is not None else "the stored size",
        "channels": int(images["train"].shape[1]),
        "mean": mean,
        "std": std,
        "from_cache": False,
    }
    tensors = {**{f"{s}_images": images[s] for s in SPLITS}, **{f"{s}_labels": labels[s] for s in SPLITS}}
    return tensors, info


#: loading a file of tensors needs its bytes and their float32 copy (pixels are converted)
MEMORY_FACTOR = 5


def _check_claimed_size(path: Path) -> None:
    """Refuse, before anything is allocated, a file whose contents would not fit in memory: the
    bytes its archive members claim (a zip records each member's size), and for ``.npz`` the
    bytes each array's header claims against the bytes its member holds (a 4 KB file can claim
    a 3 GB array, which NumPy allocates before it finds the data missing)."""
    import numpy as np

    fix = f"pass a .pt/.npz file of at most {format_bytes(MAX_TENSOR_FILE_BYTES)}, or an image folder"
    size = bounded_size(path, MAX_TENSOR_FILE_BYTES, "a dataset file", fix)
    claimed = size
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                claimed = sum(member.file_size for member in members)
                for member in members if path.suffix.lower() == ".npz" else []:
                    with archive.open(member) as f:
                        version = np.lib.format.read_magic(f)
                        read_header = (
                            np.lib.format.read_array_header_1_0
                            if version == (1, 0)
                            else np.lib.format.read_array_header_2_0
                        )
                        shape, _, dtype = read_header(f)
                    wants = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
                    if wants > member.file_size:
                        raise DcbenchError(
                            f"{path}: {member.filename} claims a {'x'.join(map(str, shape))} array "
                            f"({wants:,} bytes) but holds {member.file_size:,} bytes; re-save it with numpy.savez"
                        )
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DcbenchError(
                f"{path} is not a readable .npz or .pt archive ({type(exc).__name__}); re-save it"
            ) from None
    if claimed > MAX_TENSOR_FILE_BYTES:  # a compressed .npz is small on disk: bound what it expands to
        raise DcbenchError(
            f"{path}: its arrays claim {format_bytes(claimed)}, more than the "
            f"{format_bytes(MAX_TENSOR_FILE_BYTES)} a dataset file may hold; {fix}"
        )
    memory = available_memory()
    if memory is not None and MEMORY_FACTOR * claimed > memory:
        raise DcbenchError(
            f"{path} holds {claimed / 2**30:.1f} GiB of data, more than this machine's "
            f"{memory / 2**30:.1f} GiB of free memory can load and convert; use a smaller dataset or more memory"
        )


def _read_tensor_file(path: Path) -> dict[str, Any]:
    _check_claimed_size(path)
    if path.suffix.lower() == ".pt":
        payload = load_tensor_file(
            path, what="a readable torch.save file", advice="save a dict of tensors with torch.save"
        )
        if not isinstance(payload, dict):
            raise DcbenchError(
                f"{path} holds a {type(payload).__name__}, not a dict; save "
                f"{{{', '.join(repr(k) for k in TENSOR_KEYS)}: tensors}} with torch.save"
            )
        return payload
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"PK\x05\x06"):  # npz is a zip archive
        kind = "a single .npy array" if head.startswith(b"\x93NUMPY") else "no zip archive at all"
        raise DcbenchError(
            f"{path} is not a readable .npz file ({kind}); save the arrays with numpy.savez(path, train_images=...)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DcbenchError(
                f"{path} holds object arrays, refused for safety (they would unpickle); "
                "save numeric arrays and a string array of class names"
            ) from None
        raise DcbenchError(f"{path} is not a readable .npz file ({exc}); re-save it with numpy.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DcbenchError(
            f"{path} is not a readable .npz file ({type(exc).__name__}); re-save it with numpy.savez"
        ) from None


def _as_pixels(value: object, path: Path, key: str) -> Tensor:
    """Images as float (N, C, H, W) in [0, 1], from uint8/integer 0-255 or floats in [0, 1]."""
    x = _as_tensor(value, path, key)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[3] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise DcbenchError(
            f"{path}: {key} has shape {tuple(x.shape)}; expected (N, C, H, W), (N, H, W, C) "
            "or (N, H, W) with N > 0 and 1 or 3 channels"
        )
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise DcbenchError(f"{path}: {key} contains NaN or infinite values; clean the data and re-save it")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise DcbenchError(
                f"{path}: {key} lies in [{low:.3g}, {high:.3g}]; store floats in [0, 1] or uint8 pixels 0-255"
            )
        return x.float().contiguous()
    if x.dtype == torch.bool or x.is_complex():
        raise DcbenchError(f"{path}: {key} has dtype {x.dtype}; store uint8 pixels or floats in [0, 1]")
    low, high = int(x.min()), int(x.max())
    if low < 0 or high > 255:
        raise DcbenchError(f"{path}: {key} are integers in {low}..{high}; store uint8 pixels 0-255 or floats in [0, 1]")
    return x.float().div_(255.0).contiguous()


def _as_labels(value: object, count: int, path: Path, key: str) -> Tensor:
    y = _as_tensor(value, path, key)
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise DcbenchError(f"{path}: {key} has dtype {y.dtype}; labels must be integers 0..K-1")
    if y.ndim != 1 or y.shape[0] != count:
        raise DcbenchError(
            f"{path}: {key} has shape {tuple(y.shape)}, the images need ({count},); give one integer label per image"
        )
    if int(y.min()) < 0:
        raise DcbenchError(f"{path}: {key} holds the negative label {int(y.min())}; labels must be 0..K-1")
    return y.long()


def _as_tensor(value: object, path: Path, key: str) -> Tensor:
    if isinstance(value, Tensor):
        stored = value.untyped_storage().nbytes()
        if value.numel() * value.element_size() > stored:  # stride 0: a million images from one
            raise DcbenchError(
                f"{path}: {key} claims {tuple(value.shape)} ({value.numel() * value.element_size():,} bytes) "
                f"from {stored:,} stored bytes (an expanded or stride-0 tensor); save it with .contiguous()"
            )
        return value.detach().cpu()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.ascontiguousarray(value))
    raise DcbenchError(
        f"{path}: {key} is a {type(value).__name__} "
        f"{getattr(value, 'dtype', '')}, not a numeric array; store a tensor or numeric array"
    )


def _class_names(value: object, labels: dict[str, Tensor], path: Path) -> list[str]:
    top = max(int(y.max()) for y in labels.values())
    if top >= len(labels["train"]):  # every class needs a training image: before K names are made
        raise DcbenchError(
            f"{path}: a label is {top} but there are only {len(labels['train'])} training images, so "
            "some class has none; labels must be 0..K-1 with every class present"
        )
    if value is None:
        names = [str(i) for i in range(top + 1)]
    elif isinstance(value, np.ndarray) and value.dtype.kind in "US" and value.ndim == 1:
        names = [str(v) for v in value.tolist()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = list(value)
    else:
        raise DcbenchError(f"{path}: class_names must be a list (or 1-D string array) of strings")
    if top >= len(names):
        raise DcbenchError(
            f"{path}: a label is {top} but there are {len(names)} class names; labels must be 0..{len(names) - 1}"
        )
    if len(names) < 2:
        raise DcbenchError(f"{path} has only one class; condensation needs at least two")
    return names
