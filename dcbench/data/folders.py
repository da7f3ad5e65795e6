"""Image folders laid out as torchvision's ``ImageFolder`` (``ROOT/train/<class>/*``,
``ROOT/test/<class>/*``): checked, decoded, resized to one size, their uint8 tensors cached in the
data cache under a hash of the files (see :mod:`dcbench.data.paths` for the whole rule)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dcbench.data.cache import cache_root
from dcbench.data.real import SPLITS, TENSOR_KEYS, Decoded, channel_stats
from dcbench.data.safe_pickle import load_tensor_file
from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import atomic_write, atomic_write_text, read_record_text, regular_file_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CACHE_FORMAT = "dcbench-folder-cache/1"
#: the largest image file and image a folder may hold (a dataset image is far smaller)
MAX_IMAGE_BYTES = 64 * 2**20
MAX_IMAGE_PIXELS = 2**25  # 32 M pixels, e.g. 5792 x 5792


def load_image_folder(root: Path, name: str, size: tuple[int, int] | None) -> Decoded:
    """The folder's uint8 tensors and what was read (``info``: path, content hash, size rule,
    training statistics), from the data cache when the files are unchanged."""
    classes, files = scan_image_folder(root)
    content_hash = _folder_hash(root, [path for split in SPLITS for path, _ in files[split]])
    folders = cache_root() / "folders"
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
        info.update(
            {
                "format": CACHE_FORMAT,
                "kind": "image folder",
                "content_hash": content_hash,
                "class_names": classes,
                "files": sum(len(f) for f in files.values()),
            }
        )
        _write_cache(cache, tensors, info)
        info["from_cache"] = False
    else:
        tensors, info = cached
        info["from_cache"] = True
    info.update({"path": str(root), "name": name})
    return tensors, info


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
                raise DcbenchError(
                    f"{entry} is not a directory; {split_dir} must hold only one folder per "
                    "class: move that file out or delete it"
                )
        class_dirs[split] = sorted(entry.name for entry in _visible(split_dir))
    classes = class_dirs["train"]
    if not classes:
        raise DcbenchError(f"{root / 'train'} holds no class folders; {layout}")
    if len(classes) == 1:
        raise DcbenchError(
            f"{root / 'train'} has only one class ({classes[0]}); condensation needs at "
            "least two: add a folder of images for another class"
        )
    for extra in sorted(set(class_dirs["test"]) - set(classes)):
        raise DcbenchError(
            f"{root / 'test' / extra} has no training folder {root / 'train' / extra}; "
            "add training images of that class or remove the test folder"
        )
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(classes):
            class_dir = root / split / name
            if not class_dir.is_dir():
                raise DcbenchError(
                    f"class {name!r} has no test images: {class_dir} is missing; add test images of {name} there"
                )
            images = _images_in(class_dir)
            if not images:
                what = "no test images" if split == "test" else "no training images"
                raise DcbenchError(
                    f"class {name!r} has {what}: {class_dir} holds no PNG or JPEG files; "
                    f"add some, or remove the class from both train/ and test/"
                )
            files[split] += [(path, label) for path in images]
    return classes, files


def _visible(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _images_in(class_dir: Path) -> list[Path]:
    """Every image under a class folder (recursively, as ImageFolder), refusing other files."""
    found = []
    seen: set[tuple[int, int]] = set()  # linked folders are followed, a loop of links only once
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        info = os.stat(dirpath)
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(f for f in filenames if not f.startswith(".")):
            path = Path(dirpath) / filename
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DcbenchError(
                    f"{path} is not a PNG or JPEG file; convert it or move it out of {class_dir.parent.parent}"
                )
            # a FIFO or a link to /dev/zero would hang the hashing: refused by its metadata
            regular_file_size(path, what="an image folder holds PNG or JPEG files only: remove it")
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
    """One image as uint8 (C, H, W) with 1 or 3 channels; a one-line error names a bad file.

    Decoded by Pillow, which raises on damage where torchvision's libpng decoder can take the
    process down (SIGSEGV on a PNG whose zlib checksum is wrong). The file is checked before it
    is opened (a regular file, at most MAX_IMAGE_BYTES) and its header before pixels are
    allocated (at most MAX_IMAGE_PIXELS: an 854 KB PNG can claim gigabytes)."""
    import numpy as np
    from PIL import Image

    size = regular_file_size(path, what="an image folder holds PNG or JPEG files only: remove it")
    if size == 0:
        raise DcbenchError(f"{path} is empty (0 bytes); replace or delete it")
    if size > MAX_IMAGE_BYTES:
        raise DcbenchError(
            f"{path} is {size / 2**20:.0f} MiB, more than the {MAX_IMAGE_BYTES // 2**20} MiB an image may "
            "have; shrink it or delete it"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as image:  # reads the header only
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise DcbenchError(
                        f"{path} claims {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} an "
                        "image may have (a decompression bomb?); resize it or delete it"
                    )
                _check_opaque(path, image)
                image.load()
                array = _as_array(image)
    except DcbenchError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own header check
        raise DcbenchError(
            f"{path} claims more than the {MAX_IMAGE_PIXELS:,} pixels an image may have (a decompression "
            "bomb?); resize it or delete it"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file raises anything from OSError to SyntaxError
        reason = first_line(exc, type(exc).__name__).split(". ")[0].rstrip(".")[:120]
        raise DcbenchError(
            f"{path} cannot be decoded as a PNG or JPEG image ({reason}); replace or delete it"
        ) from None
    tensor = torch.from_numpy(np.array(array, copy=True))  # writable: Pillow's buffer is read-only
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def _check_opaque(path: Path, image: Any) -> None:
    """Transparency (an alpha channel, or a palette or colour key with a tRNS chunk) and CMYK are
    refused: their pixels would be read as something they are not."""
    channels = {"LA": 2, "La": 2, "PA": 2, "RGBA": 4, "RGBa": 4, "CMYK": 4}.get(image.mode)
    if channels is not None:
        raise DcbenchError(
            f"{path} has {channels} channels (transparency or CMYK); convert the images to RGB or "
            "greyscale without an alpha channel"
        )
    if "transparency" in image.info:
        raise DcbenchError(
            f"{path} has transparency (a tRNS chunk: a transparent palette entry or colour); convert "
            "the images to RGB or greyscale without transparency"
        )


def _as_array(image: Any) -> Any:
    """uint8 (H, W) or (H, W, 3): palette images expanded to RGB, 16-bit greyscale scaled to 8 bits."""
    import numpy as np

    if image.mode == "P":
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    array = np.asarray(image)
    if array.dtype != np.uint8:  # 16-bit greyscale ("I;16", "I"): keep the high byte
        array = (array.astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] != 3:
        raise ValueError(f"unsupported image mode {image.mode}")
    return array


def _decode_folder(
    root: Path, classes: list[str], files: dict[str, list[tuple[Path, int]]], size: tuple[int, int] | None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    from torchvision.transforms.v2.functional import resize

    decoded: dict[str, list[Tensor]] = {split: [] for split in SPLITS}
    first: tuple[Path, int] | None = None
    for split in SPLITS:
        for path, _ in files[split]:
            image = decode(path)
            if first is None:
                first = (path, image.shape[0])
            elif image.shape[0] != first[1]:
                raise DcbenchError(
                    f"{path} has {image.shape[0]} channel(s) but {first[0]} has {first[1]}; "
                    "convert all images to RGB (or all to greyscale)"
                )
            if size is not None and tuple(image.shape[1:]) != size:
                image = resize(image, list(size), antialias=True)
            decoded[split].append(image)
    if size is not None:
        chosen, rule = size, "the declared size"
    else:  # ties go to the larger size, so no image is shrunk below its sibling's resolution
        sizes = Counter((int(x.shape[1]), int(x.shape[2])) for split in SPLITS for x in decoded[split])
        chosen, count = max(sizes.items(), key=lambda item: (item[1], item[0][0] * item[0][1], item[0]))
        total = sum(sizes.values())
        rule = "the size of every image" if count == total else f"the most common size, {count} of {total} images"
        for split in SPLITS:
            decoded[split] = [
                x if tuple(x.shape[1:]) == chosen else resize(x, list(chosen), antialias=True) for x in decoded[split]
            ]
    tensors = {}
    for split in SPLITS:
        tensors[f"{split}_images"] = torch.stack(decoded[split])
        tensors[f"{split}_labels"] = torch.tensor([label for _, label in files[split]], dtype=torch.long)
    pixels = tensors["train_images"].double().div_(255.0)
    mean, std = channel_stats(pixels, root / "train")
    info = {
        "image_size": list(chosen),
        "size_rule": rule,
        "channels": int(tensors["train_images"].shape[1]),
        "mean": mean,
        "std": std,
    }
    return tensors, info


def _read_cache(cache: Path, content_hash: str) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The cached tensors of a folder, or None when absent or unusable (then it is decoded again)."""
    try:
        info = json.loads(read_record_text(cache / "manifest.json", follow=True))
        tensors = load_tensor_file(cache / "data.pt", what="a dcbench cache entry")
    except (OSError, ValueError, DcbenchError):  # a damaged entry is only decoded again
        return None
    if not isinstance(info, dict) or info.get("format") != CACHE_FORMAT or info.get("content_hash") != content_hash:
        return None
    if not isinstance(tensors, dict) or not all(isinstance(tensors.get(k), Tensor) for k in TENSOR_KEYS):
        return None
    return tensors, info


def _write_cache(cache: Path, tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    try:  # the manifest goes last: its presence means the tensors are complete
        atomic_write(cache / "data.pt", lambda f: torch.save(tensors, f))
        atomic_write_text(cache / "manifest.json", json.dumps(info, indent=2, sort_keys=True))
    except (OSError, DcbenchError) as exc:  # the cache is optional: its failure costs a decode, not the command
        print(
            f"dcbench: note: cannot cache the decoded images in {cache} ({getattr(exc, 'strerror', None) or exc}); "
            "they will be decoded again next time (set DCBENCH_CACHE to a writable folder)",
            file=sys.stderr,
        )
