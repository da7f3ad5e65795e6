"""The hostile-input corpus (issue 17): bad and hostile inputs as a new user would try them.

Every case ends in one of two outcomes: it is *refused* (exit status 2, one line on stderr that
names the problem and the fix, nothing run, nothing written) or it is *accepted correctly* (the
right data is used, nothing substituted). No case may end in a traceback, an "internal error", a
silent fallback or code from a data file running. One test (or one parametrised case) per finding.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_refusals import assert_refused, cli
from plugin_sources import GOOD_PLUGIN

from dcbench.cli import main
from dcbench.data import builtin
from dcbench.data import cache as data_cache
from dcbench.data.real import normalise
from dcbench.data.safe_pickle import load_numpy_pickle
from dcbench.host.errors import DcbenchError
from dcbench.method.contract import class_major_labels
from dcbench.method.synthetic import SyntheticSet
from dcbench.results.store import Store
from dcbench.run.ray_probe import check_ray_address
from dcbench.testing import write_fashion_mnist_idx

#: the hostile-input corpus: every bad input a user or a file from elsewhere can hand dcbench
pytestmark = pytest.mark.acceptance

REPO = Path(__file__).parents[2]
IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --- 1. code in dataset files ----------------------------------------------------------------------


class Payload:
    """Pickles to a call of os.system: what a poisoned CIFAR batch looks like."""

    def __init__(self, marker: Path, call: Any = os.system) -> None:
        self.marker, self.call = marker, call

    def __reduce__(self) -> tuple:
        return (self.call, (f"touch {self.marker}",))


def write_cifar(root: Path, kind: str = "cifar10", protocol: int = 4, replace: dict[str, Any] | None = None) -> Path:
    """A tiny CIFAR release (2 images per class per batch) in torchvision's layout; ``replace``
    swaps a file's content (a dict, or raw bytes)."""
    rng = np.random.default_rng(0)
    if kind == "cifar10":
        folder, batches, meta, label_key, names_key, classes = (
            root / "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            "batches.meta",
            "labels",
            "label_names",
            10,
        )
    else:
        folder, batches, meta, label_key, names_key, classes = (
            root / "cifar-100-python",
            ["train", "test"],
            "meta",
            "fine_labels",
            "fine_label_names",
            100,
        )
    folder.mkdir(parents=True, exist_ok=True)
    contents: dict[str, Any] = {meta: {names_key: [f"c{i}" for i in range(classes)]}}
    for name in batches:
        contents[name] = {
            "data": rng.integers(0, 256, (2 * classes, 3072), dtype=np.uint8),
            label_key: list(range(classes)) * 2,
            "batch_label": name,
        }
    contents.update(replace or {})
    for name, content in contents.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else pickle.dumps(content, protocol=protocol))
    return folder


def test_cifar_payload_runs_nothing_exit_2_one_line(tmp_path: Path) -> None:
    """Must show: a batch with a __reduce__ payload; the marker file is never created."""
    marker = tmp_path / "pwned"
    write_cifar(tmp_path / "data", replace={"data_batch_1": {"data": Payload(marker), "labels": [0]}})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcbench.cli",
            "condense",
            "--method",
            "random",
            "--dataset",
            "cifar10",
            "--ipc",
            "1",
            "--data-root",
            str(tmp_path / "data"),
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert not marker.exists()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "refused to read" in lines[0] and "data_batch_1" in lines[0] and "posix.system" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "kind,file,protocol,call",
    [
        ("cifar10", "batches.meta", 2, os.system),  # the metadata file, read first
        ("cifar10", "test_batch", 0, os.system),  # text protocol
        ("cifar10", "data_batch_3", 5, eval),  # builtins.eval
        ("cifar100", "train", 4, subprocess.call),  # CIFAR-100
        ("cifar100", "meta", 4, os.system),
    ],
)
def test_cifar_payload_variants_are_refused(
    tmp_path: Path, capsys, kind: str, file: str, protocol: int, call: Any
) -> None:
    marker = tmp_path / "pwned"
    write_cifar(tmp_path / "data", kind, protocol, replace={file: {"data": [Payload(marker, call)]}})
    code, err = cli(
        capsys,
        "condense",
        "--method",
        "random",
        "--dataset",
        kind,
        "--ipc",
        "1",
        "--data-root",
        tmp_path / "data",
        "-o",
        tmp_path / "o",
    )
    assert not marker.exists()
    assert_refused(code, err, "refused to read", file, "could run code")


def test_payload_hidden_in_an_object_array_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hidden = np.empty(1, dtype=object)
    hidden[0] = Payload(marker)
    (tmp_path / "batch").write_bytes(pickle.dumps({"data": hidden}))
    with pytest.raises(DcbenchError, match="refused to read"):
        load_numpy_pickle(tmp_path / "batch", "CIFAR-10 batch")
    assert not marker.exists()


def test_codecs_encode_is_admitted_for_latin1_only(tmp_path: Path) -> None:
    (tmp_path / "rot13").write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(DcbenchError, match="corrupt or not a"):
        load_numpy_pickle(tmp_path / "rot13", "CIFAR-10 batch")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_genuine_cifar_loads_under_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    write_cifar(tmp_path, protocol=protocol)
    real = builtin.load_cifar10(tmp_path)
    assert real.train_images.shape == (100, 3, 32, 32) and real.test_images.shape == (20, 3, 32, 32)
    assert real.class_names[:2] == ("c0", "c1")
    write_cifar(tmp_path, "cifar100", protocol)
    assert builtin.load_cifar100(tmp_path).num_classes == 100


def test_safe_readers_give_torchvisions_data(tmp_path: Path) -> None:
    """The reference: torchvision's own readers (plain pickle and loadmat) on benign files."""
    import torchvision.datasets as tvd

    write_cifar(tmp_path)
    write_svhn(tmp_path)
    unchecked = {"_check_integrity": lambda self: True, "_load_meta": lambda self: None}
    cifar = type("Cifar", (tvd.CIFAR10,), unchecked)(str(tmp_path), train=False)
    svhn = type("Svhn", (tvd.SVHN,), unchecked)(str(tmp_path), split="train")
    ours, our_svhn = builtin.load_cifar10(tmp_path), builtin.load_svhn(tmp_path)
    assert torch.equal(ours.test_images, normalise(cifar.data, ours.mean, ours.std))
    assert ours.test_labels.tolist() == cifar.targets
    assert torch.equal(our_svhn.train_images, normalise(svhn.data, our_svhn.mean, our_svhn.std))
    assert our_svhn.train_labels.tolist() == svhn.labels.tolist()


@pytest.mark.parametrize(
    "replace,message",
    [
        ({"data_batch_2": {"data": np.zeros((20, 3072), np.uint8), "labels": [12] * 20}}, "outside 0..9"),
        ({"data_batch_2": {"data": np.zeros((20, 3072), np.float32), "labels": [0] * 20}}, "uint8 array of N x 3072"),
        ({"data_batch_2": {"data": np.zeros((20, 3072), np.uint8), "labels": [0.5] * 20}}, "integer labels"),
        ({"data_batch_2": {"data": np.zeros((20, 3072), np.uint8), "labels": [0] * 19}}, "20 integer labels"),
        ({"data_batch_2": [1, 2, 3]}, "holds a list, not a dict"),
        ({"data_batch_2": b"\x80\x04\x95 truncated"}, "corrupt or not a cifar10 batch"),
        ({"batches.meta": {"label_names": ["only", "three", "names"]}}, "must list 10 class names"),
    ],
)
def test_malformed_cifar_is_refused_naming_the_file(tmp_path: Path, replace: dict, message: str) -> None:
    write_cifar(tmp_path, replace=replace)
    with pytest.raises(DcbenchError, match=message) as info:
        builtin.load_cifar10(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / next(iter(replace))) in str(info.value)


def write_svhn(root: Path, x: Any = None, y: Any = None) -> None:
    import scipy.io

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        scipy.io.savemat(
            root / f"{split}_32x32.mat",
            {
                "X": rng.integers(0, 256, (32, 32, 3, 20), dtype=np.uint8) if x is None else x,
                "y": np.array([[c if c else 10] for c in list(range(10)) * 2], dtype=np.uint8) if y is None else y,
            },
        )


@pytest.mark.parametrize(
    "x,y,message",
    [
        (None, np.full((20, 1), 11, np.uint8), "outside 0..9"),
        (None, np.full((20, 1), 2.5), "whole-number labels"),
        (np.zeros((32, 32, 3, 20), np.float64), None, "uint8 array"),
        (np.array([["a cell"], ["array"]], dtype=object), None, "uint8 array"),  # MATLAB cells: data, never code
    ],
)
def test_svhn_mat_files_are_data_only_and_checked(tmp_path: Path, x: Any, y: Any, message: str) -> None:
    write_svhn(tmp_path, x, y)
    with pytest.raises(DcbenchError, match=message) as info:
        builtin.load_svhn(tmp_path)
    assert "train_32x32.mat" in str(info.value)


def test_svhn_garbage_mat_names_the_file(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    assert builtin.load_svhn(tmp_path).test_labels.tolist()[:3] == [0, 1, 2]  # digit 0 stored as 10
    (tmp_path / "test_32x32.mat").write_bytes(os.urandom(512))
    with pytest.raises(DcbenchError, match=r"test_32x32.mat is corrupt or not a MATLAB v5 file"):
        builtin.load_svhn(tmp_path)


UNSAFE_LOADERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("yaml", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("dill", "load"),
    ("joblib", "load"),
}


def test_source_audit_every_deserialisation_is_data_only() -> None:
    """torch.load with weights_only=True, np.load with allow_pickle=False, no bare pickle outside
    the restricted unpickler, in dcbench and every built-in plugin (and in modules added later)."""
    problems = []
    for path in sorted([*REPO.glob("dcbench/**/*.py"), *REPO.glob("plugins/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Call, ast.Attribute)):
                continue
            func = node.func if isinstance(node, ast.Call) else node
            if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
                continue
            owner, name = func.value.id, func.attr
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords} if isinstance(node, ast.Call) else None
            if keywords is not None and (owner, name) == ("torch", "load"):
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if keywords is not None and (owner, name) in (("np", "load"), ("numpy", "load")):
                value = keywords.get("allow_pickle")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where}: np.load without allow_pickle=False")
            if (owner, name) in UNSAFE_LOADERS and path.name != "safe_pickle.py":
                problems.append(f"{where}: {owner}.{name} (use dcbench.data.safe_pickle)")
    assert not problems, problems


# --- 2. the dataset cache ----------------------------------------------------------------------------


def gzipped_fashion(root: Path, per_class: int = 12, test_per_class: int = 4, seed: int = 0) -> Path:
    """A tiny FashionMNIST as Debian ships it: a flat directory of gzipped IDX files."""
    raw = write_fashion_mnist_idx(root / "plain", per_class, test_per_class, seed)
    root.mkdir(parents=True, exist_ok=True)
    for f in IDX:
        with open(raw / f, "rb") as src, gzip.open(root / f"{f}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    shutil.rmtree(root / "plain")
    return root


def set_mtime(directory: Path, when: float) -> None:
    for f in directory.iterdir():
        os.utime(f, (when, when))


@pytest.fixture
def system_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /usr/share/datasets/fashion-mnist (40 test images) and a private cache."""
    system = gzipped_fashion(tmp_path / "usr-share-fashion-mnist", test_per_class=4, seed=0)
    set_mtime(system, time.time() - 86400)
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST", system)
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    return system


def test_a_data_root_run_does_not_change_what_a_later_default_run_loads(tmp_path: Path, system_fashion: Path) -> None:
    """Must show: a subset passed with --data-root (older, then newer than the cache) is used when
    asked for and never afterwards."""
    before = builtin.load_fashion_mnist(None)
    subset = gzipped_fashion(tmp_path / "subset", test_per_class=2, seed=1)
    for when in (time.time() - 10 * 86400, time.time() + 86400):  # older than the cache, then newer
        set_mtime(subset, when)
        assert len(builtin.load_fashion_mnist(subset).test_labels) == 20  # what was asked for
        after = builtin.load_fashion_mnist(None)
        assert torch.equal(after.test_images, before.test_images) and len(after.test_labels) == 40


def test_a_truncated_copy_elsewhere_never_makes_the_system_copy_look_corrupt(
    tmp_path: Path, system_fashion: Path, capsys
) -> None:
    """Must show: the error names the truncated copy; the system copy keeps loading."""
    copy = tmp_path / "copy"
    shutil.copytree(system_fashion, copy)
    data = (copy / "train-images-idx3-ubyte.gz").read_bytes()
    (copy / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    set_mtime(copy, time.time() + 86400)
    code, err = cli(
        capsys,
        "condense",
        "--method",
        "random",
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--data-root",
        copy,
        "-o",
        tmp_path / "o",
    )
    assert_refused(code, err, f"{copy / 'train-images-idx3-ubyte.gz'} is corrupt or truncated")
    assert str(system_fashion) not in err[0]
    assert len(builtin.load_fashion_mnist(None).test_labels) == 40
    code, err = cli(
        capsys,
        "condense",
        "--method",
        "random",
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "-o",
        tmp_path / "o",
    )
    assert code == 0 and not any("corrupt" in line for line in err)


def test_changed_source_with_an_old_date_rebuilds_the_entry(tmp_path: Path, system_fashion: Path) -> None:
    first = builtin.load_fashion_mnist(None)
    stamp = (system_fashion / "t10k-images-idx3-ubyte.gz").stat().st_mtime
    other = gzipped_fashion(tmp_path / "other", test_per_class=4, seed=7)  # same sizes, other pixels
    for f in other.iterdir():
        shutil.copyfile(f, system_fashion / f.name)
    set_mtime(system_fashion, stamp)  # e.g. restored with `cp -p` from an older backup
    second = builtin.load_fashion_mnist(None)
    assert not torch.equal(first.test_images, second.test_images)
    assert torch.equal(second.test_images, builtin.load_fashion_mnist(other).test_images)


def test_entry_records_the_source_hashes_and_a_damaged_entry_is_rebuilt(tmp_path: Path, system_fashion: Path) -> None:
    reference = builtin.load_fashion_mnist(None)
    (entry,) = (tmp_path / "cache" / "fashion-mnist").iterdir()
    record = json.loads((entry / data_cache.ENTRY_FILE).read_text())
    for name, source in record["sources"].items():
        assert source["sha256"] == hashlib.sha256((system_fashion / f"{name}.gz").read_bytes()).hexdigest()
    staged = entry / "train-images-idx3-ubyte"
    staged.write_bytes(staged.read_bytes()[:1000])  # a damaged cache is the cache's problem, not the data's
    assert torch.equal(builtin.load_fashion_mnist(None).train_images, reference.train_images)


def test_two_data_roots_never_share_an_entry(tmp_path: Path, system_fashion: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(system_fashion, twin)  # the very same bytes elsewhere
    builtin.load_fashion_mnist(None)
    builtin.load_fashion_mnist(twin)
    assert len(list((tmp_path / "cache" / "fashion-mnist").iterdir())) == 2


# --- 3. no silent substitution ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "how,value,message",
    [
        ("option", "", "--data-root is empty"),
        ("option", "{tmp}/no-such-dir", "not found in --data-root {tmp}/no-such-dir (no such directory)"),
        ("option", "{tmp}", "not found in --data-root {tmp}: expected train-images-idx3-ubyte"),
        ("env", "", "$DCBENCH_DATA is set but empty"),
        ("env", "{tmp}/typo", "not found in $DCBENCH_DATA {tmp}/typo (no such directory)"),
    ],
)
def test_a_data_root_asked_for_without_the_dataset_is_an_error(
    tmp_path: Path, system_fashion: Path, capsys, monkeypatch: pytest.MonkeyPatch, how: str, value: str, message: str
) -> None:
    value, message = value.replace("{tmp}", str(tmp_path)), message.replace("{tmp}", str(tmp_path))
    args = ["condense", "--method", "random", "--dataset", "fashion-mnist", "--ipc", "1", "-o", tmp_path / "o"]
    if how == "option":
        args += ["--data-root", value]
    else:
        monkeypatch.setenv("DCBENCH_DATA", value)
    code, err = cli(capsys, *args)
    assert_refused(code, err, message)


def test_an_empty_data_root_is_refused_by_run_before_any_cell(tmp_path: Path, capsys) -> None:
    code, err = cli(capsys, "run", "--preset", "smoke", "--data-root", "", "--out", tmp_path / "r", "--quiet")
    assert_refused(code, err, "--data-root is empty")
    assert not (tmp_path / "r").exists()


def test_run_with_a_data_root_lacking_the_dataset_stops_before_any_cell(tmp_path: Path, capsys) -> None:
    code, err = cli(
        capsys, "run", "--preset", "smoke", "--data-root", tmp_path / "typo", "--out", tmp_path / "r", "--quiet"
    )
    assert_refused(code, err, f"fashion-mnist not found in --data-root {tmp_path / 'typo'} (no such directory)")
    assert not (tmp_path / "r").exists()  # no results directory full of failed cells


def test_datasets_without_a_default_location_say_so(capsys, tmp_path: Path) -> None:
    code, err = cli(capsys, "condense", "--method", "random", "--dataset", "svhn", "--ipc", "1", "-o", tmp_path)
    assert_refused(code, err, "svhn needs a data root: pass --data-root DIR or set DCBENCH_DATA")


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x800 | array.ndim  # uint8 data
    path.write_bytes(struct.pack(f">{1 + array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(
    "file,array,message",
    [
        # 72 of the 100 test labels impossible: refused, never an accuracy over impossible labels
        ("t10k-labels-idx1-ubyte", np.r_[np.arange(28) % 10, np.full(72, 13)], "72 label(s) outside 0..9"),
        ("train-labels-idx1-ubyte", np.full(120, 255), "outside 0..9"),
        ("t10k-images-idx3-ubyte", np.zeros((100, 32, 32)), "(32, 32) images"),
        ("t10k-images-idx3-ubyte", np.zeros((99, 28, 28)), "99 images but"),
    ],
)
def test_impossible_idx_content_is_refused_naming_the_file(
    tmp_path: Path, file: str, array: np.ndarray, message: str
) -> None:
    raw = write_fashion_mnist_idx(tmp_path, per_class=12, test_per_class=10)
    write_idx(raw / file, array)
    with pytest.raises(DcbenchError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        builtin.load_fashion_mnist(tmp_path)
    assert file in str(info.value)


def test_truncated_idx_names_the_file(tmp_path: Path, capsys) -> None:
    raw = write_fashion_mnist_idx(tmp_path)
    (raw / "t10k-images-idx3-ubyte").write_bytes((raw / "t10k-images-idx3-ubyte").read_bytes()[:500])
    code, err = cli(
        capsys,
        "condense",
        "--method",
        "random",
        "--dataset",
        "fashion-mnist",
        "--ipc",
        "1",
        "--data-root",
        tmp_path,
        "-o",
        tmp_path / "o",
    )
    assert_refused(code, err, f"{raw / 't10k-images-idx3-ubyte'} is corrupt or truncated")


# --- synthetic sets and their manifests -------------------------------------------------------------


def synthetic_dir(
    tmp_path: Path, labels: torch.Tensor | None = None, manifest: Any = None, raw_manifest: bytes | None = None
) -> Path:
    directory = tmp_path / "set"
    directory.mkdir(exist_ok=True)
    torch.save(
        {"images": torch.zeros(10, 1, 28, 28), "labels": class_major_labels(10, 1) if labels is None else labels},
        directory / "synthetic.pt",
    )
    text = (
        raw_manifest
        if raw_manifest is not None
        else json.dumps({"dataset": "fashion-mnist"} if manifest is None else manifest).encode()
    )
    (directory / "manifest.json").write_bytes(text)
    return directory


@pytest.mark.parametrize(
    "labels,manifest,raw,message",
    [
        (torch.arange(10) + 0.5, None, None, "labels are torch.float32; dcbench sets hold hard labels"),
        (torch.arange(10) + 5, None, None, "labels span 5..14, but the dataset has 10 classes (0..9)"),
        (torch.arange(10) - 1, None, None, "labels must be class indices 0, 1, ..., got -1"),
        (None, [1, 2], None, "must be a JSON object, got the list [1, 2]"),
        (
            None,
            {"dataset": "fashion-mnist", "preprocessing": "mean/std"},
            None,
            "preprocessing must be a table, got the string 'mean/std'",
        ),
        (
            None,
            {"dataset": "fashion-mnist", "preprocessing": {"mean": "0.5"}},
            None,
            "preprocessing mean must be a list",
        ),
        (
            None,
            {"dataset": "fashion-mnist", "preprocessing": {"std": [0.0]}},
            None,
            "preprocessing std[0] must be a positive finite number",
        ),
        (
            None,
            {"dataset": "fashion-mnist", "native_eval_augmentation": "fancy"},
            None,
            "native_eval_augmentation must be one of none, dsa, dc",
        ),
        (None, {"dataset": 7}, None, "dataset must be a non-empty string, got 7 (an int)"),
        (None, None, bytes(range(256)), "not valid JSON (not UTF-8 text)"),
    ],
)
def test_bad_synthetic_sets_are_refused(
    tmp_path: Path, fashion_root: Path, capsys, labels: Any, manifest: Any, raw: bytes | None, message: str
) -> None:
    directory = synthetic_dir(tmp_path, labels, manifest, raw)
    code, err = cli(capsys, "evaluate", directory, "--preset", "smoke", "--data-root", fashion_root, "--device", "cpu")
    assert_refused(code, err, message)


@pytest.mark.parametrize(
    "content,message",
    [
        (os.urandom(4096), "no torch.save file at all"),  # not "objects other than tensors"
        (None, "damaged or truncated torch.save file"),
    ],
)
def test_unreadable_tensor_files_say_what_they_are(tmp_path: Path, capsys, content: bytes | None, message: str) -> None:
    directory = synthetic_dir(tmp_path)
    data = (directory / "synthetic.pt").read_bytes()
    (directory / "synthetic.pt").write_bytes(content if content is not None else data[: len(data) // 2])
    code, err = cli(capsys, "evaluate", directory)
    assert_refused(code, err, message)


def test_tensor_file_payload_runs_nothing(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    directory = synthetic_dir(tmp_path)
    torch.save({"images": Payload(marker), "labels": torch.arange(10)}, directory / "synthetic.pt")
    code, err = cli(capsys, "evaluate", directory)
    assert_refused(code, err, "refused to load: it needs the Python object posix.system")
    assert not marker.exists()


def test_a_method_returning_float_labels_is_refused() -> None:
    with pytest.raises(DcbenchError, match="hard labels, integer class indices"):
        SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0.0, 1.0]))


# --- strict types: spec, --set -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml,message",
    [
        ("eval_models = true", "spec eval_models must be an integer >= 1, got true (a boolean)"),
        ("methods = []", "spec methods is an empty list; leave the key out to run the default methods"),
        (
            'methods = "random"',
            """spec methods must be a list, each item a non-empty string, got the string 'random'; """
            """write methods = ["random"]""",
        ),
        ('methods = ["random", "random"]', "spec methods lists 'random' twice"),
        ("ipcs = [1, 1]", "spec ipcs lists 1 twice"),
        ("ipcs = 1", "spec ipcs must be a list, each item an integer >= 1, got 1 (an int); write ipcs = [1]"),
        ("ipcs = [1.0]", "spec ipcs[0] must be an integer >= 1, got 1.0 (a float)"),
        ("ipcs = [true]", "spec ipcs[0] must be an integer >= 1, got true (a boolean)"),
        ("seeds = [-1]", "spec seeds[0] must be an integer >= 0, got -1"),
        ("seeds = [0, 0]", "spec seeds lists 0 twice"),
        ("eval_epochs = 1.5", "spec eval_epochs must be an integer >= 0, got 1.5 (a float)"),
        ("preset = 1", "spec preset must be one of smoke, quick, paper, got 1 (an int)"),
        (
            'eval_augmentation = "fancy"',
            "spec eval_augmentation must be one of none, dsa, dc, autoaugment, randaugment, native",
        ),
        ('datasets = "fashion-mnist"', "spec datasets must be a list"),
        ("eval_archs = []", "spec eval_archs is an empty list"),
        ('name = "../elsewhere"', "must be a plain directory name"),
        ("overrides = 3", "spec overrides must be a table, got 3 (an int)"),
        ("[overrides]\ndm = 3", "spec overrides.dm must be a table, got 3 (an int)"),
        ('methods = ["dm"]\n[overrides.dm]\niterations = true', "setting 'iterations': expected int, got True"),
        ('methods = ["dm"]\n[overrides.dm]\nlr_img = nan', "setting 'lr_img': expected a finite number"),
        ("colour = 3", "spec has no field 'colour'"),
        ("\x00\x01binary", "is not valid TOML"),
    ],
)
def test_bad_spec_values_are_refused_before_any_work(tmp_path: Path, capsys, toml: str, message: str) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(f'preset = "smoke"\n{toml}\n' if not toml.startswith(("preset", "\x00")) else toml)
    code, err = cli(capsys, "run", spec, "--out", tmp_path / "results", "--quiet")
    assert_refused(code, err, message)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),  # the spec's policy
        (["--set", "iterations=5", "--set", "iterations=6"], "--set iterations is given twice"),
        (["--set", "iterations=true"], "expected int, got True"),
        (["--set", "lr_img=inf"], "expected a finite number"),
    ],
)
def test_bad_condense_options_are_refused(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    code, err = cli(
        capsys, "condense", "--method", "dm", "--dataset", "fashion-mnist", "--ipc", "1", "-o", tmp_path / "o", *extra
    )
    assert_refused(code, err, message)


def test_evaluate_seed_follows_the_same_policy(tmp_path: Path, capsys) -> None:
    code, err = cli(capsys, "evaluate", synthetic_dir(tmp_path), "--seed", "-3")
    assert_refused(code, err, "--seed must be an integer >= 0, got -3")


# --- 4. results files --------------------------------------------------------------------------------


def test_binary_runs_csv_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs.csv").write_bytes(os.urandom(2048))
    code, err = cli(capsys, "report", tmp_path)
    assert_refused(code, err, "runs.csv is not a CSV table", "rebuilds it")


@pytest.mark.parametrize("metrics", [{"status": "done"}, {"status": "done", "fingerprint": "garbage"}])
def test_damaged_metrics_json_is_called_damaged_not_a_different_config(tmp_path: Path, metrics: dict) -> None:
    store = Store(tmp_path)
    store.cell_dir("c").mkdir(parents=True)
    (store.cell_dir("c") / "metrics.json").write_text(json.dumps(metrics))
    state = store.cell_state("c", {"method_name": "dm", "config_hash": "abc"})
    assert not state.done and state.damage and "metrics.json" in state.damage  # named, then re-run
    assert "different config" not in state.damage


@pytest.mark.parametrize("content", [b"[1, 2]", bytes(range(256))])
def test_metrics_json_that_is_no_object_counts_as_unfinished(tmp_path: Path, content: bytes) -> None:
    store = Store(tmp_path)
    store.cell_dir("c").mkdir(parents=True)
    (store.cell_dir("c") / "metrics.json").write_bytes(content)
    state = store.cell_state("c", {"method_name": "dm", "config_hash": "abc"})
    assert not state.done and state.damage


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_files_are_written_with_the_process_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        SyntheticSet(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])).save(tmp_path / "set")
        Store(tmp_path / "results").record_spec("name = 'x'\n", "0")
        reference = tmp_path / "plain.txt"
        reference.write_text("x")  # what open() gives
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert reference.stat().st_mode & 0o777 == expected
    for path in (
        tmp_path / "set" / "synthetic.pt",
        tmp_path / "set" / "manifest.json",
        tmp_path / "results" / "spec.toml",
    ):
        assert path.stat().st_mode & 0o777 == expected, path


# --- 5. Ray ------------------------------------------------------------------------------------------


def test_unreachable_ray_address_is_one_line_within_seconds(tmp_path: Path, capsys) -> None:
    start = time.monotonic()
    code, err = cli(
        capsys,
        "run",
        "--preset",
        "smoke",
        "--executor",
        "ray",
        "--ray-address",
        "127.0.0.1:1",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert time.monotonic() - start < 20  # was: 23 lines of warnings and still retrying after 300 s
    assert_refused(code, err, "cannot reach the Ray cluster at 127.0.0.1:1", "ray start --head")


@pytest.mark.parametrize(
    "address,message",
    [
        ("not-an-address", "is not host:port"),
        ("", "is not host:port"),  # empty: not "start a local cluster instead"
        ("host:99999", "is not host:port"),
        ("silent", "no answer within"),  # something accepts the connection and says nothing
        ("talker", "not a Ray cluster"),  # something answers, but not gRPC
    ],
)
def test_ray_address_probe(address: str, message: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        if address in ("silent", "talker"):
            if address == "talker":
                import threading

                def banner() -> None:
                    conn, _ = server.accept()
                    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                    time.sleep(1)
                    conn.close()

                threading.Thread(target=banner, daemon=True).start()
            address = f"127.0.0.1:{port}"
        with pytest.raises(DcbenchError, match=message):
            check_ray_address(address, timeout=0.5)


def test_ray_address_needs_the_ray_executor(tmp_path: Path, capsys) -> None:
    code, err = cli(capsys, "run", "--preset", "smoke", "--ray-address", "127.0.0.1:6379", "--out", tmp_path)
    assert_refused(code, err, "--ray-address is only used by the ray executor")


# --- 6. broken third-party plugins -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,source,message",
    [
        ("crashes", "raise RuntimeError('plugin import exploded')", "RuntimeError: plugin import exploded"),
        (
            "typo",
            "from dcbench import hookimpl\n@hookimpl\ndef dcbench_register_method(register): pass\n",
            "unknown hook 'dcbench_register_method'",
        ),
        ("unmarked", "def dcbench_register_methods(register): pass\n", "implements no dcbench hook"),
        ("dm", GOOD_PLUGIN.replace("{name}", "zero"), "two installed plugins are named 'dm'"),
    ],
)
def test_broken_plugin_is_skipped_in_one_line_and_the_rest_works(
    extra_plugins,
    capsys,
    name: str,  # noqa: F811
    source: str,
    message: str,
) -> None:
    extra_plugins(name, source)
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dcbench: skipping broken plugin '{name}'") and message in err[0], err
    assert "random" in captured.out and "dm " in captured.out  # the built-ins still load, the real dm among them


@pytest.mark.parametrize(
    "source,message",
    [
        (GOOD_PLUGIN.replace("{name}", "random"), "method 'random' is registered by both"),
        (
            "from dcbench import hookimpl\nfrom dcbench.data.real import DatasetSpec\n@hookimpl\n"
            "def dcbench_register_datasets(register):\n    register(DatasetSpec('fashion-mnist', lambda root: None))\n",
            "dataset 'fashion-mnist' is registered by both 'dcbench.plugins.core' and 'clash'",
        ),
    ],
)
def test_plugin_clashing_with_a_builtin_name_is_refused(
    extra_plugins,
    capsys,
    source: str,  # noqa: F811
    message: str,
) -> None:
    extra_plugins("clash", source)
    code, err = cli(capsys, "list")
    assert_refused(code, err, message, "DCBENCH_DISABLE_PLUGINS=clash")
