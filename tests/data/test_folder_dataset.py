"""Datasets given as a path: image folders and .pt/.npz tensor files, end to end and when broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.io import write_png

from dcbench.cli import main
from dcbench.data import folders
from dcbench.data.paths import DatasetSource
from dcbench.host.errors import DcbenchError
from dcbench.run.plan import plan_cells
from dcbench.run.shared import forget_data
from dcbench.run.shared import registry as shared_registry
from dcbench.run.spec import load_spec

CLASSES = ("cat", "dog", "frog")
# torchvision 0.29 deprecates its image codecs (write_png here, decode_image in the code under test).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


def write_image_folder(
    root: Path, train: int = 20, test: int = 10, size: tuple[int, int] = (24, 24), channels: int = 3, seed: int = 0
) -> Path:
    """Noise PNGs in which class c brightens channel c (greyscale: the brightness is c's), so the
    classes can be learnt from a few images."""
    generator = torch.Generator().manual_seed(seed)
    for split, count in (("train", train), ("test", test)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = torch.randint(0, 80, (channels, *size), generator=generator, dtype=torch.uint8)
                image[c % channels] += 60 * (c + 1)
                write_png(image, str(folder / f"{i:03d}.png"))
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x (20 training, 10 test) RGB PNGs of 24x24."""
    return write_image_folder(tmp_path_factory.mktemp("folders") / "pets")


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcbench: error: "), lines
    return lines[0]


# --- the happy path ------------------------------------------------------------------------------


def test_folder_condensed_with_dm_and_cafe_and_evaluated(tmp_path: Path, image_folder: Path, capsys) -> None:
    for method in ("dm", "cafe"):
        out = tmp_path / method
        assert (
            main(
                [
                    "condense",
                    "--method",
                    method,
                    "--dataset",
                    str(image_folder),
                    "--ipc",
                    "2",
                    "--preset",
                    "smoke",
                    "--device",
                    "cpu",
                    "-o",
                    str(out),
                ]
            )
            == 0
        )
        assert main(["evaluate", str(out), "--preset", "smoke", "--device", "cpu"]) == 0
        captured = capsys.readouterr()
        assert f"{method}: 6 images (2 per class) of pets" in captured.out
        assert "30 test images of pets" in captured.out
        assert len([line for line in captured.out.splitlines() if line.strip().startswith("model ")]) == 2
        assert "mean test accuracy" in captured.out
        assert "3 classes, 60 training and 30 test images, 3x24x24 (the size of every image)" in captured.err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["dataset"] == "pets" and manifest["class_names"] == list(CLASSES)
        assert manifest["image_shape"] == [3, 24, 24]
        source = manifest["dataset_source"]
        assert source["path"] == str(image_folder.resolve()) and source["kind"] == "image folder"
        assert manifest["preprocessing"]["mean"] == source["mean"]


def test_normalisation_matches_an_independent_decoder(image_folder: Path) -> None:
    from PIL import Image

    dataset = DatasetSource.from_entry(str(image_folder)).load()
    pixels = np.stack(
        [np.asarray(Image.open(p), dtype=np.float64) / 255 for p in sorted((image_folder / "train").glob("*/*.png"))]
    )  # (N, H, W, C)
    np.testing.assert_allclose(dataset.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(dataset.std, pixels.std(axis=(0, 1, 2)), atol=1e-6)
    assert dataset.class_names == CLASSES and dataset.num_classes == 3
    assert [len(i) for i in dataset.indices_by_class] == [20, 20, 20]
    assert torch.bincount(dataset.test_labels).tolist() == [10, 10, 10]
    # the normalised training split has mean 0 and SD 1 per channel
    np.testing.assert_allclose(dataset.train_images.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(dataset.train_images.std(dim=(0, 2, 3), correction=0).numpy(), 1, atol=1e-4)


def test_second_load_reads_the_cache_and_any_content_change_decodes_again(tmp_path: Path, monkeypatch) -> None:
    root = write_image_folder(tmp_path / "data", train=3, test=2)
    first = DatasetSource.from_entry(str(root)).load()
    decoded: list[Path] = []
    real_decode = folders.decode
    monkeypatch.setattr(folders, "decode", lambda path: decoded.append(path) or real_decode(path))
    second = DatasetSource.from_entry(str(root)).load()
    assert decoded == [] and second.source["from_cache"]
    assert torch.equal(first.train_images, second.train_images)
    # Same name, same size, same mtime, other bytes: the cache must notice.
    victim = root / "train" / "dog" / "001.png"
    stat = victim.stat()
    write_png(torch.full((3, 24, 24), 7, dtype=torch.uint8), str(victim))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = DatasetSource.from_entry(str(root)).load()
    assert len(decoded) == 15 and not third.source["from_cache"]
    assert third.source["content_hash"] != first.source["content_hash"]
    assert not torch.equal(first.train_images, third.train_images)


def test_most_common_size_is_chosen_and_stated(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "data", train=4, test=2, size=(24, 24))
    for name in ("cat", "dog"):  # two odd-sized images
        write_png(torch.zeros(3, 30, 20, dtype=torch.uint8), str(root / "train" / name / "odd.png"))
    dataset = DatasetSource.from_entry(str(root)).load()
    assert dataset.image_size == (24, 24)
    assert "the most common size, 18 of 20 images" in capsys.readouterr().err
    declared = DatasetSource.from_entry({"path": str(root), "size": [16, 12]}).load()
    assert declared.image_size == (16, 12) and declared.source["size_rule"] == "the declared size"


def test_greyscale_jpeg_and_palette_png_images(tmp_path: Path) -> None:
    from PIL import Image
    from torchvision.io import write_jpeg

    root = write_image_folder(tmp_path / "grey", train=3, test=1, channels=1)
    write_jpeg(torch.full((1, 24, 24), 200, dtype=torch.uint8), str(root / "train" / "cat" / "extra.JPG"))
    dataset = DatasetSource.from_entry(str(root)).load()
    assert dataset.channels == 1 and len(dataset.mean) == 1 and len(dataset.indices_by_class[0]) == 4
    # an indexed-colour PNG among RGB ones is expanded to its RGB colours, not read as indices
    root = write_image_folder(tmp_path / "rgb", train=3, test=1)
    palette_png = root / "train" / "dog" / "000.png"
    expected = np.asarray(Image.open(palette_png).convert("P").convert("RGB"))
    Image.open(palette_png).convert("P").save(palette_png)
    assert folders.decode(palette_png).permute(1, 2, 0).numpy().tolist() == expected.tolist()
    assert DatasetSource.from_entry(str(root)).load().channels == 3


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", train=2, test=1, size=(8, 8))
    first = DatasetSource.from_entry(str(root)).load()
    for data in (Path(os.environ["DCBENCH_CACHE"]) / "folders").glob("*/data.pt"):
        data.write_bytes(b"garbage")
    second = DatasetSource.from_entry(str(root)).load()
    assert not second.source["from_cache"] and torch.equal(first.train_images, second.train_images)
    assert DatasetSource.from_entry(str(root)).load().source["from_cache"]


def test_evaluate_finds_a_moved_folder_only_when_told(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "before", train=2, test=1, size=(8, 8))
    out = tmp_path / "set"
    assert (
        main(
            [
                "condense",
                "--method",
                "random",
                "--dataset",
                str(root),
                "--ipc",
                "1",
                "--image-size",
                "12",
                "--device",
                "cpu",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    moved = root.rename(tmp_path / "after")
    capsys.readouterr()
    line = one_line_error(capsys, ["evaluate", str(out), "--preset", "smoke", "--device", "cpu"])
    assert f"condensed from {root}, which no longer exists; pass --dataset PATH" in line
    assert main(["evaluate", str(out), "--preset", "smoke", "--device", "cpu", "--dataset", str(moved)]) == 0
    captured = capsys.readouterr()
    assert "3x12x12 (the declared size)" in captured.err and "mean test accuracy" in captured.out


# --- bad folders: one line, exit 2, the file and the fix -----------------------------------------


def _break_empty(root: Path) -> Path:
    shutil.rmtree(root)
    root.mkdir()
    return root


def _break_one_class(root: Path) -> Path:
    for split in ("train", "test"):
        for name in ("dog", "frog"):
            shutil.rmtree(root / split / name)
    return root / "train"


def _break_no_test_folder(root: Path) -> Path:
    shutil.rmtree(root / "test" / "frog")
    return root / "test" / "frog"


def _break_empty_test_folder(root: Path) -> Path:
    for path in (root / "test" / "frog").iterdir():
        path.unlink()
    return root / "test" / "frog"


def _break_unreadable(root: Path) -> Path:
    bad = root / "train" / "dog" / "001.png"
    bad.write_bytes(b"this is not a PNG")
    return bad


def _break_truncated(root: Path) -> Path:
    bad = root / "test" / "cat" / "000.png"
    bad.write_bytes(bad.read_bytes()[:60])
    return bad


def _break_mixed_channels(root: Path) -> Path:
    bad = root / "train" / "frog" / "000.png"
    write_png(torch.zeros(1, 24, 24, dtype=torch.uint8), str(bad))
    return bad


def _break_file_as_class(root: Path) -> Path:
    stray = root / "train" / "notes.txt"
    stray.write_text("labels are the folder names")
    return stray


def _break_other_file(root: Path) -> Path:
    stray = root / "train" / "cat" / "readme.txt"
    stray.write_text("hello")
    return stray


def _break_test_only_class(root: Path) -> Path:
    shutil.copytree(root / "test" / "cat", root / "test" / "bird")
    return root / "test" / "bird"


def _break_alpha(root: Path) -> Path:
    from PIL import Image

    bad = root / "train" / "cat" / "000.png"
    Image.new("RGBA", (8, 8)).save(bad)
    return bad


@pytest.mark.parametrize(
    "breaker,message,fix",
    [
        (_break_empty, "is empty", "train/<class>"),
        (_break_one_class, "only one class (cat)", "add a folder"),
        (_break_no_test_folder, "class 'frog' has no test images", "add test images of frog"),
        (_break_empty_test_folder, "class 'frog' has no test images", "add some"),
        (_break_unreadable, "cannot be decoded as a PNG or JPEG image", "replace or delete it"),
        (_break_truncated, "cannot be decoded as a PNG or JPEG image", "replace or delete it"),
        (_break_mixed_channels, "has 1 channel(s) but", "convert all images to RGB"),
        (_break_file_as_class, "is not a directory", "move that file out or delete it"),
        (_break_other_file, "is not a PNG or JPEG file", "convert it or move it out"),
        (_break_test_only_class, "has no training folder", "add training images"),
        (_break_alpha, "has 4 channels", "convert the images to RGB or greyscale"),
    ],
)
def test_bad_folder_is_one_line_naming_the_file_and_fix(
    tmp_path: Path, capsys, breaker, message: str, fix: str
) -> None:
    root = write_image_folder(tmp_path / "data", train=2, test=1, size=(8, 8))
    culprit = breaker(root)
    line = one_line_error(
        capsys,
        [
            "condense",
            "--method",
            "random",
            "--dataset",
            str(root),
            "--ipc",
            "1",
            "--device",
            "cpu",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert message in line and fix in line and str(culprit) in line, line
    assert not (tmp_path / "out").exists()


def test_missing_folder_through_the_real_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dcbench.cli",
            "condense",
            "--method",
            "random",
            "--dataset",
            str(tmp_path / "nowhere"),
            "--ipc",
            "1",
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"dcbench: error: dataset folder {tmp_path / 'nowhere'} not found; pass an image folder or a .pt/.npz file"
    ]


def test_image_size_only_for_path_datasets(capsys) -> None:
    line = one_line_error(
        capsys,
        ["condense", "--method", "random", "--dataset", "fashion-mnist", "--ipc", "1", "--image-size", "32", "-o", "x"],
    )
    assert "--image-size applies to a dataset given as a path" in line


# --- tensor files --------------------------------------------------------------------------------


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8),  # channels-last
        "train_labels": np.repeat(np.arange(3), 4),
        "test_images": rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8),
        "test_labels": np.repeat(np.arange(3), 2),
        "class_names": np.array(CLASSES),
    }


def test_npz_and_pt_files_load_alike(tmp_path: Path) -> None:
    arrays = _arrays()
    np.savez(tmp_path / "shapes.npz", **arrays)
    torch.save(
        {
            k: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous()
            if k.endswith("images")
            else (list(CLASSES) if k == "class_names" else torch.from_numpy(v))
            for k, v in arrays.items()
        },
        tmp_path / "shapes.pt",
    )
    a = DatasetSource.from_entry(str(tmp_path / "shapes.npz")).load()
    b = DatasetSource.from_entry(str(tmp_path / "shapes.pt")).load()
    assert a.name == b.name == "shapes" and a.class_names == b.class_names == CLASSES
    assert a.train_images.shape == (12, 3, 16, 16) and torch.allclose(a.train_images, b.train_images)
    pixels = arrays["train_images"].astype(np.float64) / 255
    np.testing.assert_allclose(a.mean, pixels.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(a.std, pixels.std(axis=(0, 1, 2)), atol=1e-6)
    resized = DatasetSource.from_entry(str(tmp_path / "shapes.npz"), size="8x12").load()
    assert resized.image_size == (8, 12)


def test_tensor_file_condenses(tmp_path: Path, capsys) -> None:
    np.savez(tmp_path / "shapes.npz", **_arrays())
    assert (
        main(
            [
                "condense",
                "--method",
                "random",
                "--dataset",
                str(tmp_path / "shapes.npz"),
                "--ipc",
                "1",
                "--device",
                "cpu",
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["dataset_source"]["kind"] == "tensor file"


class Gadget:  # a pickled object is refused by weights_only loading
    pass


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.update(train_images=a["train_images"].astype(np.float32) / 255 * np.nan), "NaN"),
        (lambda a: a.update(train_images=a["train_images"].astype(np.float32)), "lies in [0, 255]"),
        (lambda a: a.update(test_labels=a["test_labels"] + 3), "a label is 5 but there are 3 class names"),
        (lambda a: a.update(train_labels=a["train_labels"] - 1), "negative label -1"),
        (lambda a: a.update(train_labels=a["train_labels"][:5]), "has shape (5,), the images need (12,)"),
        (lambda a: a.update(test_images=a["test_images"][:, :8]), "both splits need one shape"),
        (lambda a: a.update(train_images=a["train_images"][..., :2]), "expected (N, C, H, W)"),
        (lambda a: a.update(train_labels=a["train_labels"].astype(np.float32)), "labels must be integers"),
        (lambda a: a.pop("test_labels"), "has no 'test_labels'"),
        (lambda a: a.update(train_labels=np.zeros(12, dtype=np.int64)), "class 1 (dog) has no training images"),
        (lambda a: a.update(class_names=np.array([{"x": 1}], dtype=object)), "refused for safety"),
    ],
)
def test_bad_npz_is_one_line(tmp_path: Path, capsys, change, message: str) -> None:
    arrays = _arrays()
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    line = one_line_error(
        capsys, ["condense", "--method", "random", "--dataset", str(path), "--ipc", "1", "-o", str(tmp_path / "o")]
    )
    assert message in line and str(path) in line, line


def test_pt_with_objects_is_refused(tmp_path: Path, capsys) -> None:
    torch.save({"train_images": Gadget()}, tmp_path / "evil.pt")
    line = one_line_error(
        capsys,
        [
            "condense",
            "--method",
            "random",
            "--dataset",
            str(tmp_path / "evil.pt"),
            "--ipc",
            "1",
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert "could run code" in line


# --- in a benchmark spec -------------------------------------------------------------------------


def test_folder_in_a_spec_runs_and_the_report_names_its_classes(tmp_path: Path, image_folder: Path, capsys) -> None:
    shutil.copytree(image_folder, tmp_path / "imgs")
    spec = tmp_path / "grid.toml"
    spec.write_text(
        'name = "mine"\npreset = "smoke"\nmethods = ["random", "dm"]\nipcs = [1]\nseeds = [0, 1]\n'
        'datasets = [{ path = "imgs", name = "mydata", size = 24 }]\n'
    )  # relative to the spec
    out = tmp_path / "results"
    assert main(["run", str(spec), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["dataset"]) == {"mydata"} and len(runs) == 2 * 2 * 2
    assert runs["device"].eq("cpu").all() and runs["device_name"].notna().all()
    report = (out / "report" / "report.md").read_text()
    assert "`mydata`: 3 classes (cat, dog, frog)" in report
    assert str((tmp_path / "imgs").resolve()) in (out / "spec.toml").read_text()
    capsys.readouterr()
    assert main(["run", str(spec), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    assert "4 already done, 0 to run" in capsys.readouterr().err


def test_changed_folder_changes_the_cells_fingerprint(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", train=2, test=1, size=(8, 8))
    spec_path = tmp_path / "s.toml"
    spec_path.write_text('preset = "smoke"\nmethods = ["random"]\nipcs = [1]\nseeds = [0]\ndatasets = ["./imgs"]\n')
    spec = load_spec(spec_path)
    before = plan_cells(spec, shared_registry(), None, "cpu")[0]
    write_png(torch.full((3, 8, 8), 9, dtype=torch.uint8), str(root / "train" / "cat" / "000.png"))
    forget_data()
    after = plan_cells(spec, shared_registry(), None, "cpu")[0]
    assert before.dataset == after.dataset == "imgs"
    assert before.fingerprint["data_fingerprint"] != after.fingerprint["data_fingerprint"]


@pytest.mark.parametrize(
    "datasets,message",
    [
        ('[{ path = "a" }, { path = "b/a" }]', "name 'a' twice"),
        ('[{ path = "a", colour = 3 }]', "no field 'colour'"),
        ('[{ path = "a", size = 0 }]', "must be a positive integer or [height, width]"),
        ('[{ path = "a", name = "my data" }]', "must be letters, digits"),
        ('[{ name = "x" }]', "needs path"),
        ("[3]", "must be a name, a path or a table"),
    ],
)
def test_bad_dataset_entries_in_a_spec(tmp_path: Path, datasets: str, message: str) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(f"datasets = {datasets}\n")
    with pytest.raises(DcbenchError, match=None) as info:
        load_spec(spec)
    assert message in str(info.value)


def test_folder_named_like_a_registered_dataset_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('preset = "smoke"\nmethods = ["random"]\ndatasets = [{ path = "x", name = "mnist" }]\n')
    with pytest.raises(DcbenchError, match="like a registered dataset"):
        plan_cells(load_spec(spec), shared_registry(), None, "cpu")
