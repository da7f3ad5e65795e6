"""The synthetic set artifact: images, labels and a manifest, saved as tensors + JSON.

``synthetic.pt`` holds only tensors (``{"images", "labels"}``, and ``"soft_labels"`` for a set that
carries learned soft labels) and is read with
``torch.load(weights_only=True)``, so a file from elsewhere cannot run code. ``manifest.json`` says
what made the set (method, version, config, dataset, IPC, seed), how its pixels are encoded
(normalisation) and a content hash that ties the two files together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dcbench.data.safe_pickle import load_tensor_file
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write, atomic_write_text, read_record_text
from dcbench.host.schema import Flag, Integer, ListOf, Number, OneOf, Record, Rule, Text, check_fields, describe

TENSOR_FILE = "synthetic.pt"
MANIFEST_FILE = "manifest.json"
GRID_FILE = "grid.png"

# The manifest fields dcbench acts on, and their types (other fields are a record, not read back).
MANIFEST_SCHEMA: dict[str, Rule] = {
    "dataset": Text(),
    "method": Text(),
    "ipc": Integer(minimum=1),
    "seed": Integer(minimum=0),
    "num_classes": Integer(minimum=1),
    "content_hash": Text(),
    "labels": OneOf(("hard", "soft")),
    "native_eval_augmentation": OneOf(("none", "dsa", "dc")),
    "preprocessing": Record(
        {
            "normalised": Flag(),
            "zca": Flag(),
            "mean": ListOf(Number(), distinct=False),
            "std": ListOf(Number(positive=True), distinct=False),
        }
    ),
}


def content_hash(images: Tensor, labels: Tensor, soft_labels: Tensor | None = None) -> str:
    """SHA-256 over the raw bytes, shapes and dtypes of images and labels (and soft labels, when a
    set has them: a set without them hashes as before they existed)."""
    h = hashlib.sha256()
    for t in (images, labels) if soft_labels is None else (images, labels, soft_labels):
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class SyntheticSet:
    """A condensed dataset: ``images`` (N, C, H, W) in the real dataset's normalised space and
    hard ``labels`` (N,), class-major; ``manifest`` is filled in by the host after ``condense``.
    ``soft_labels`` (N, K), optional: logits a method learned for its images (DATM); an evaluation
    whose protocol says ``labels = "set"`` trains on them (softmax at its temperature), every other
    on the hard labels, which decide the class of an image and the IPC budget either way."""

    images: Tensor
    labels: Tensor
    manifest: dict[str, Any] = field(default_factory=dict)
    soft_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or not isinstance(self.labels, Tensor):
            raise DcbenchError(
                f"a synthetic set holds two tensors, got {type(self.images).__name__} images and "
                f"{type(self.labels).__name__} labels"
            )
        if self.labels.is_floating_point() or self.labels.is_complex() or self.labels.dtype == torch.bool:
            raise DcbenchError(
                f"synthetic labels are {self.labels.dtype}; dcbench sets hold hard labels, integer "
                "class indices (soft or float labels are not supported)"
            )
        self.images = self.images.detach().cpu().float().contiguous()
        self.labels = self.labels.detach().cpu().long().contiguous()
        if self.soft_labels is not None:
            if not isinstance(self.soft_labels, Tensor) or not self.soft_labels.is_floating_point():
                raise DcbenchError("soft labels must be a float tensor of logits, one row per image")
            self.soft_labels = self.soft_labels.detach().cpu().float().contiguous()

    @property
    def ipc(self) -> int:
        return int(torch.bincount(self.labels).max()) if self.labels.numel() else 0

    def validate(
        self,
        channels: int | None = None,
        image_size: tuple[int, int] | None = None,
        num_classes: int | None = None,
        source: str = "synthetic set",
    ) -> None:
        """Raise a one-line :class:`DcbenchError` unless the set is well formed (and fits a dataset)."""
        x, y = self.images, self.labels
        if x.ndim != 4:
            raise DcbenchError(f"{source}: images must be (N, C, H, W), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DcbenchError(f"{source}: labels must be (N,) with N={x.shape[0]}, got shape {tuple(y.shape)}")
        if x.shape[0] == 0:
            raise DcbenchError(f"{source}: the set is empty")
        if not torch.isfinite(x).all():
            raise DcbenchError(
                f"{source}: images contain NaN or infinite values; the condensation diverged "
                "(lower the image learning rate) or the file is corrupt"
            )
        if channels is not None and x.shape[1] != channels:
            raise DcbenchError(
                f"{source}: images have {x.shape[1]} channels, the dataset has {channels}; "
                "evaluate it on the dataset it was condensed from"
            )
        if image_size is not None and tuple(x.shape[2:]) != tuple(image_size):
            raise DcbenchError(
                f"{source}: images are {tuple(x.shape[2:])}, the dataset's are {tuple(image_size)}; "
                "evaluate it on the dataset it was condensed from"
            )
        if y.min() < 0:
            raise DcbenchError(f"{source}: labels must be class indices 0, 1, ..., got {int(y.min())}")
        soft = self.soft_labels
        if soft is not None and (
            soft.ndim != 2
            or soft.shape[0] != x.shape[0]
            or not torch.isfinite(soft).all()
            or (num_classes is not None and soft.shape[1] != num_classes)
        ):
            raise DcbenchError(
                f"{source}: soft labels must be finite logits of shape (N, classes) = ({x.shape[0]}, "
                f"{num_classes if num_classes is not None else 'K'}), got {tuple(soft.shape)}"
            )
        if num_classes is not None and y.max() >= num_classes:
            raise DcbenchError(
                f"{source}: labels span {int(y.min())}..{int(y.max())}, but the dataset has "
                f"{num_classes} classes (0..{num_classes - 1}); evaluate it on the dataset it "
                "was condensed from"
            )

    def check_budget(self, ipc: int, num_classes: int, source: str = "synthetic set") -> None:
        """Raise a one-line :class:`DcbenchError` unless every class has exactly ``ipc`` images
        (the IPC budget of a benchmark cell: more images would buy accuracy, fewer lose it)."""
        counts = torch.bincount(self.labels, minlength=num_classes)
        wrong = [(c, int(n)) for c, n in enumerate(counts.tolist()) if n != ipc]
        if wrong:
            shown = ", ".join(f"class {c}: {n}" for c, n in wrong[:3]) + (" ..." if len(wrong) > 3 else "")
            raise DcbenchError(
                f"{source}: returned a set outside the IPC budget ({shown} images; "
                f"expected {ipc} per class for {num_classes} classes); return exactly IPC "
                "images of every class"
            )

    def save(self, directory: Path) -> None:
        """Write ``synthetic.pt`` and ``manifest.json`` atomically (temp file + rename)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.manifest["content_hash"] = content_hash(self.images, self.labels, self.soft_labels)
        self.manifest["labels"] = "hard" if self.soft_labels is None else "soft"
        tensors = {"images": self.images, "labels": self.labels}
        if self.soft_labels is not None:
            tensors["soft_labels"] = self.soft_labels
        atomic_write(directory / TENSOR_FILE, lambda f: torch.save(tensors, f))
        atomic_write_text(directory / MANIFEST_FILE, json.dumps(self.manifest, indent=2, sort_keys=True, default=str))


def load_synthetic(path: Path) -> SyntheticSet:
    """Read a synthetic set from a directory (or its ``synthetic.pt``), safely and with checks."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    tensor_file = directory / TENSOR_FILE if path.is_dir() else path
    if not tensor_file.is_file():
        raise DcbenchError(
            f"{path}: no {TENSOR_FILE} there; pass a directory written by `dcbench condense` or `dcbench import`"
        )
    payload = load_tensor_file(
        tensor_file, what="a dcbench synthetic set", advice="use `dcbench import` for files from other projects"
    )
    if (
        not isinstance(payload, dict)
        or not {"images", "labels"} <= set(payload)
        or not all(isinstance(payload[k], Tensor) for k in ("images", "labels"))
    ):
        raise DcbenchError(
            f"{tensor_file}: expected a dict with tensors 'images' and 'labels'; "
            "use `dcbench import` for files from other projects"
        )
    manifest: dict[str, Any] = {}
    manifest_file = directory / MANIFEST_FILE
    if manifest_file.is_file():
        try:
            text = read_record_text(
                manifest_file, follow=True, what="a manifest", fix="restore it or re-run the condensation"
            )
            manifest = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise DcbenchError(
                f"{manifest_file}: not valid JSON ({why}); restore it or re-run the condensation"
            ) from None
        if not isinstance(manifest, dict):
            raise DcbenchError(
                f"{manifest_file}: must be a JSON object, got {describe(manifest)}; "
                "restore it or re-run the condensation"
            )
        try:
            check_fields(manifest, MANIFEST_SCHEMA, "")
        except DcbenchError as exc:
            raise DcbenchError(f"{manifest_file}: {exc}; restore it or re-run the condensation") from None
    try:
        soft = payload.get("soft_labels")
        synthetic = SyntheticSet(payload["images"], payload["labels"], manifest, soft)
    except DcbenchError as exc:
        raise DcbenchError(f"{tensor_file}: {exc}") from None
    synthetic.validate(source=str(tensor_file))
    expected = manifest.get("content_hash")
    if expected and expected != content_hash(synthetic.images, synthetic.labels, synthetic.soft_labels):
        raise DcbenchError(
            f"{tensor_file}: content does not match the hash in {MANIFEST_FILE}; the files were modified or mixed up"
        )
    return synthetic
