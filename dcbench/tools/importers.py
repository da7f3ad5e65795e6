"""``dcbench import``: synthetic sets released by other projects, turned into dcbench sets.

Format ``dc-repo``: the scripts of VICO-UoE/DatasetCondensation (DC, DSA, DM) save
``res_<METHOD>_<DATASET>_<MODEL>_<IPC>ipc.pt``, a ``torch.save``d dict
``{"data": [[images, labels], ...one pair per experiment], "accs_all_exps": {model: [accuracies]}}``
whose images are already normalised with the dataset's mean/std. Each experiment becomes a
directory ``OUT/exp<i>/`` (synthetic.pt, manifest.json, grid.png) that ``dcbench evaluate`` reads
like any other; the experiment index is recorded as its seed.

Formats ``mtt`` and ``datm``: the trajectory-matching repositories save, next to each other,
``images_<it>.pt`` (the images, ZCA-whitened when the run used ``--zca``: CIFAR by default),
``labels_<it>.pt`` and, for DATM, ``lr_<it>.pt`` (the learned student lr); ``<it>`` is ``best``
for the set they report. mtt-distillation (``distill.py``, lines 238-243 at 50dccea) stores hard
labels; DATM (``distill/DATM.py``, lines 397-404 at 97ae510) stores its learned soft labels
(logits, class-major) and the lr. The import reads the images file and its siblings into one set
directory, records whether it is whitened (``--zca`` / ``--no-zca``: the files cannot say), its
labels and its learned lr (MTT and DATM evaluate with it: ``dcbench evaluate --lr``).

Files are read with ``torch.load(weights_only=True)``: tensors, containers and numbers only, so an
imported file cannot run code. The reference stores its accuracies as NumPy float scalars, so those
(and only those) are allowed in addition.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dcbench import __version__
from dcbench.data.safe_pickle import load_tensor_file
from dcbench.host.errors import DcbenchError
from dcbench.host.files import file_sha256
from dcbench.method.contract import METHOD_NAME, NativeEvaluation
from dcbench.method.synthetic import SyntheticSet
from dcbench.plugins import load_plugins
from dcbench.report.image_grids import write_set_grid

try:
    from numpy._core.multiarray import scalar as _numpy_scalar  # NumPy 2
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import scalar as _numpy_scalar  # type: ignore[no-redef]  # the same, older path

# What a NumPy float/int scalar needs to unpickle, under the module paths of NumPy 1 (files written
# years ago) and NumPy 2. Rebuilding a scalar from its dtype and bytes runs no user code.
NUMPY_SCALAR_GLOBALS = [
    (_numpy_scalar, "numpy.core.multiarray.scalar"),
    (_numpy_scalar, "numpy._core.multiarray.scalar"),
    np.dtype,
    *(type(np.dtype(kind)) for kind in ("float64", "float32", "int64")),
]


@dataclass(frozen=True)
class PixelEncoding:
    """What an imported set's images must look like for a dataset: shape, classes, normalisation."""

    channels: int
    image_size: tuple[int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    reference_name: str  # the dataset's name in the reference scripts' file names


# The constants of dcbench/datasets.py (those of the reference code), repeated so that an import
# needs no dataset files; tests/test_importers.py checks that the two agree.
DATASETS = {
    "mnist": PixelEncoding(1, (28, 28), 10, (0.1307,), (0.3081,), "MNIST"),
    "fashion-mnist": PixelEncoding(1, (28, 28), 10, (0.2861,), (0.3530,), "FashionMNIST"),
    "svhn": PixelEncoding(3, (32, 32), 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), "SVHN"),
    "cifar10": PixelEncoding(3, (32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "CIFAR10"),
    "cifar100": PixelEncoding(3, (32, 32), 100, (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR100"),
}
#: the most sets one import writes: the reference scripts save a handful of experiments per file
#: (5 by default), while a small file can repeat one stored tensor thousands of times
MAX_IMPORTED_SETS = 100
DC_REPO_FILE_NAME = re.compile(
    r"^res_(?P<method>[A-Za-z0-9]+)_(?P<dataset>[A-Za-z0-9]+)_(?P<model>[A-Za-z0-9]+)_"
    r"(?P<ipc>\d+)ipc\.pt$"
)


def import_synthetic(
    file: Path, format: str, dataset: str, output: Path, method: str | None = None, zca: bool | None = None
) -> list[Path]:
    """Import every synthetic set in ``file`` (of ``format``) for ``dataset`` into ``output``;
    return the directories written. ``zca``: whether the set's images are ZCA-whitened (required
    for the trajectory-matching formats, which do not record it)."""
    if format not in IMPORTERS:
        raise DcbenchError(f"unknown import format {format!r}; known formats: {', '.join(sorted(IMPORTERS))}")
    if dataset not in DATASETS:
        raise DcbenchError(f"cannot import sets of dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    file = Path(file)
    if not file.is_file():
        raise DcbenchError(f"{file}: no such file")
    return IMPORTERS[format](file, dataset, Path(output), method, zca)


def import_dc_repo(file: Path, dataset: str, output: Path, method: str | None, zca: bool | None = None) -> list[Path]:
    """The ``dc-repo`` format (see the module docstring)."""
    if zca:
        raise DcbenchError("the DC/DSA/DM scripts never whiten their sets; drop --zca")
    encoding = DATASETS[dataset]
    named = DC_REPO_FILE_NAME.match(file.name)
    if named and named["dataset"] != encoding.reference_name:
        raise DcbenchError(
            f"{file.name}: the file name says dataset {named['dataset']}, but --dataset is "
            f"{dataset} ({encoding.reference_name}); pass the dataset the set was condensed from"
        )
    method = method or (named["method"].lower() if named else None)
    if not method:
        raise DcbenchError(
            f"{file.name}: cannot tell the method from the file name (expected "
            "res_<METHOD>_<DATASET>_<MODEL>_<IPC>ipc.pt); pass --method"
        )
    if not METHOD_NAME.match(method):
        raise DcbenchError(f"method name {method!r} must be lower-case letters, digits and '_', starting with a letter")

    payload = load_untrusted(file)
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), (list, tuple)) or not payload["data"]:
        raise DcbenchError(
            f"{file.name}: expected a dict whose 'data' is a non-empty list of [images, labels] pairs "
            f"(the DC/DSA/DM scripts' res_*.pt), got {_describe(payload)}"
        )
    count = len(payload["data"])
    if count > MAX_IMPORTED_SETS:  # before any pair is checked or copied, and before anything is written
        raise DcbenchError(
            f"{file.name}: holds {count:,} experiments, more than the {MAX_IMPORTED_SETS} sets one import "
            f"writes; split its 'data' into files of at most {MAX_IMPORTED_SETS} pairs and import each"
        )
    sets = [_experiment(entry, i, dataset, file.name) for i, entry in enumerate(payload["data"])]
    reported = _reported_accs(payload.get("accs_all_exps", {}), file.name)
    if named and any(s.ipc != int(named["ipc"]) for s in sets):
        raise DcbenchError(
            f"{file.name}: the file name says {named['ipc']} images per class, the data has "
            f"{sorted({s.ipc for s in sets})}; the file is mislabelled or corrupt"
        )

    targets = [output / f"exp{i}" for i in range(len(sets))]
    _check_targets(output, targets)
    sha256 = file_sha256(file)
    native = _native_evaluation(method, dataset)
    for i, (synthetic, target) in enumerate(zip(sets, targets)):
        synthetic.manifest.update(
            {
                "format": "dcbench-synthetic/1",
                "method": method,
                "dataset": dataset,
                "ipc": synthetic.ipc,
                "num_classes": encoding.num_classes,
                "image_shape": [encoding.channels, *encoding.image_size],
                "seed": i,
                "labels": "hard",
                "preprocessing": {
                    "normalised": True,
                    "mean": list(encoding.mean),
                    "std": list(encoding.std),
                    "zca": False,
                },
                "native_eval_augmentation": native["augmentation"],
                "native_evaluation": native,
                "imported_from": {
                    "file": file.name,
                    "sha256": sha256,
                    "format": "dc-repo",
                    "experiment": i,
                    "experiments": len(sets),
                    "condensed_with": named["model"] if named else None,
                },
                # as the reference stores them: every evaluation of every experiment in the file, pooled
                "reported_accs": reported,
                "dcbench_version": __version__,
                "torch_version": torch.__version__,
            }
        )
        synthetic.save(target)
        write_set_grid(target, f"{synthetic.manifest.get('method', 'imported')}: {target.name}")
    return targets


def _check_targets(output: Path, targets: list[Path]) -> None:
    if output.exists() and not output.is_dir():
        raise DcbenchError(f"{output} is a file; -o needs a directory")
    for target in targets:
        if target.exists() and any(target.iterdir()):
            raise DcbenchError(f"{target} already exists and is not empty; choose another -o or remove it")


TRAJECTORY_FILE_NAME = re.compile(r"^images_(?P<it>best|\d+)\.pt$")


def import_trajectory_release(
    file: Path, dataset: str, output: Path, method: str | None, zca: bool | None, format: str
) -> list[Path]:
    """The ``mtt`` and ``datm`` formats (see the module docstring): one set into ``output``."""
    named = TRAJECTORY_FILE_NAME.match(file.name)
    if not named:
        raise DcbenchError(f"{file.name}: expected the images file of a release, images_best.pt or images_<it>.pt")
    if zca is None:
        raise DcbenchError(
            f"{file.name}: say whether the images are ZCA-whitened: --zca (MTT/DATM's CIFAR runs) or --no-zca"
        )
    method = method or format
    if not METHOD_NAME.match(method):
        raise DcbenchError(f"method name {method!r} must be lower-case letters, digits and '_', starting with a letter")
    encoding = DATASETS[dataset]
    it = named["it"]
    labels_file, lr_file = file.with_name(f"labels_{it}.pt"), file.with_name(f"lr_{it}.pt")
    if not labels_file.is_file():
        raise DcbenchError(f"{file.name}: its labels file {labels_file.name} is not beside it")
    images, labels = load_untrusted(file), load_untrusted(labels_file)
    where = file.name
    expected = (encoding.channels, *encoding.image_size)
    if not isinstance(images, Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise DcbenchError(
            f"{where}: expected float images (N, {', '.join(map(str, expected))}), got {_describe(images)}"
        )
    if not images.is_floating_point() or not torch.isfinite(images).all():
        raise DcbenchError(f"{where}: the images must be finite floats; the file is corrupt")
    n, classes = len(images), encoding.num_classes
    if n == 0 or n % classes:
        raise DcbenchError(f"{where}: {n} images is not the same number for each of {classes} classes")
    soft = None
    if isinstance(labels, Tensor) and labels.ndim == 2 and labels.is_floating_point():  # DATM: learned logits
        if tuple(labels.shape) != (n, classes) or not torch.isfinite(labels).all():
            raise DcbenchError(f"{labels_file.name}: soft labels must be finite ({n}, {classes}) logits")
        soft = labels.float()
        hard = torch.arange(classes).repeat_interleave(n // classes)  # DATM's sets are class-major
    elif isinstance(labels, Tensor) and labels.ndim == 1 and len(labels) == n and not labels.is_floating_point():
        hard = labels.long()
    else:
        raise DcbenchError(
            f"{labels_file.name}: expected {n} class indices or ({n}, {classes}) logits, got {_describe(labels)}"
        )
    synthetic = _experiment([images.float(), hard], 0, dataset, where)
    if soft is not None:
        order = torch.argsort(hard, stable=True)
        synthetic = SyntheticSet(synthetic.images, synthetic.labels, {}, soft[order])
    learned_lr = None
    if lr_file.is_file():
        lr = load_untrusted(lr_file)
        if not isinstance(lr, Tensor) or lr.numel() != 1 or not math.isfinite(float(lr)) or float(lr) <= 0:
            raise DcbenchError(f"{lr_file.name}: expected the learned lr (one positive number), got {_describe(lr)}")
        learned_lr = float(lr)
    _check_targets(output, [output])
    synthetic.manifest.update(
        {
            "format": "dcbench-synthetic/1",
            "method": method,
            "dataset": dataset,
            "ipc": synthetic.ipc,
            "num_classes": classes,
            "image_shape": list(expected),
            "seed": 0,
            "labels": "soft" if soft is not None else "hard",
            "preprocessing": {"normalised": True, "mean": list(encoding.mean), "std": list(encoding.std), "zca": zca},
            "native_eval_augmentation": "dsa",
            "native_evaluation": dataclasses.asdict(NativeEvaluation("dsa")),
            "learned_lr": learned_lr,
            "imported_from": {
                "file": file.name,
                "sha256": file_sha256(file),
                "labels_file": labels_file.name,
                "lr_file": lr_file.name if learned_lr is not None else None,
                "format": format,
            },
            "dcbench_version": __version__,
            "torch_version": torch.__version__,
        }
    )
    synthetic.save(output)
    write_set_grid(output, f"{method}: {file.name}")
    return [output]


def load_untrusted(file: Path) -> Any:
    """``torch.load`` a file from elsewhere without letting it run code; one-line errors."""
    return load_tensor_file(file, NUMPY_SCALAR_GLOBALS, advice="only files saved by the DC/DSA/DM scripts are imported")


def _experiment(entry: Any, index: int, dataset: str, source: str) -> SyntheticSet:
    """One ``[images, labels]`` pair, checked against the dataset and sorted class-major."""
    encoding = DATASETS[dataset]
    where = f"{source}: data[{index}]"
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise DcbenchError(f"{where} must be a pair [images, labels], got {_describe(entry)}")
    images, labels = entry
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor):
        raise DcbenchError(f"{where} must hold two tensors, got {_describe(images)} and {_describe(labels)}")
    expected = (encoding.channels, *encoding.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or not images.is_floating_point():
        raise DcbenchError(
            f"{where}: images are {images.dtype} of shape {tuple(images.shape)}, {dataset} needs "
            f"floating-point (N, {', '.join(map(str, expected))}); is --dataset right?"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DcbenchError(f"{where}: labels have shape {tuple(labels.shape)} for {len(images)} images")
    if len(images) == 0:
        raise DcbenchError(f"{where}: the set is empty")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DcbenchError(f"{where}: labels are {labels.dtype}; expected integer class indices (hard labels)")
    if not torch.isfinite(images).all():
        raise DcbenchError(f"{where}: images contain NaN or infinite values; the file is corrupt")
    if labels.min() < 0 or labels.max() >= encoding.num_classes:
        raise DcbenchError(
            f"{where}: labels span {int(labels.min())}..{int(labels.max())}, {dataset} has classes "
            f"0..{encoding.num_classes - 1}; is --dataset right?"
        )
    counts = torch.bincount(labels, minlength=encoding.num_classes)
    if (counts != counts[0]).any():
        raise DcbenchError(
            f"{where}: classes have different numbers of images ({counts.tolist()}); "
            "expected the same IPC for every class"
        )
    order = torch.argsort(labels, stable=True)  # class-major, keeping each class's order
    return SyntheticSet(images[order], labels[order])


def _reported_accs(accs: Any, source: str) -> dict[str, list[float]]:
    """``accs_all_exps``: model name -> accuracies (fractions), as plain floats."""
    if not isinstance(accs, dict) or not all(
        isinstance(k, str) and isinstance(v, (list, tuple)) for k, v in accs.items()
    ):
        raise DcbenchError(
            f"{source}: 'accs_all_exps' must map model names to lists of accuracies, got {_describe(accs)}"
        )
    reported = {}
    for model, values in accs.items():
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise DcbenchError(f"{source}: 'accs_all_exps'[{model!r}] must hold finite numbers")
        reported[model] = [float(v) for v in values]
    return reported


def _native_evaluation(method: str, dataset: str) -> dict[str, Any]:
    """How the method's own paper evaluates its sets on ``dataset`` when it is installed; else
    the reference scripts' default (no augmentation)."""
    installed = load_plugins().methods.get(method)
    return dataclasses.asdict(installed.native_evaluation(dataset) if installed else NativeEvaluation())


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:5]}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


IMPORTERS: dict[str, Callable[[Path, str, Path, str | None, bool | None], list[Path]]] = {
    "dc-repo": import_dc_repo,
    "mtt": lambda file, dataset, output, method, zca: import_trajectory_release(
        file, dataset, output, method, zca, "mtt"
    ),
    "datm": lambda file, dataset, output, method, zca: import_trajectory_release(
        file, dataset, output, method, zca, "datm"
    ),
}
