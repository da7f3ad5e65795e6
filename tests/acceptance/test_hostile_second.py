"""The hostile-input corpus, second round: one test per kind of finding, each reproducing it.

Kinds: writes that escape the store, markup and formula injection, tiny inputs with huge memory,
crashes and hangs, silent wrong results, unclean errors. Every case ends refused (one line,
``dcbench: error: ...``) or accepted correctly; none in a traceback or a write outside the store.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from cli_refusals import assert_refused, cli

from dcbench.cli import main
from dcbench.host.errors import DcbenchError
from dcbench.results.record import record_problem
from dcbench.results.store import Store

pytestmark = pytest.mark.acceptance

SPEC = """
name = "hostile"
preset = "smoke"
eval_models = 1
methods = ["random"]
ipcs = [1]
seeds = [0]
"""
CELL = "random-fashion-mnist-ipc1-s0"


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one finished smoke cell (runs in a few seconds), copied by each test."""
    from dcbench.run.grid import RunOptions, run_grid
    from dcbench.testing import write_fashion_mnist_idx

    base = tmp_path_factory.mktemp("store")
    write_fashion_mnist_idx(base / "data", per_class=4, test_per_class=2)
    (base / "spec.toml").write_text(SPEC)
    options = RunOptions(
        base / "spec.toml", out=base / "out", data_root=str(base / "data"), device="cpu", show_progress=False
    )
    options = RunOptions(**{**options.__dict__, "write_report": False, "reference": "none"})
    assert run_grid(options).exit_status == 0
    return base


def copy_store(finished_store: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(spec, store, data root) of a private copy of the finished store."""
    shutil.copytree(finished_store, tmp_path / "s", symlinks=True)
    return tmp_path / "s" / "spec.toml", tmp_path / "s" / "out", tmp_path / "s" / "data"


def run_args(spec: Path, out: Path, data: Path) -> list[Any]:
    return ["run", spec, "--out", out, "--data-root", data, "--device", "cpu", "--quiet", "--reference", "none"]


# --- 1. writes that escape the store -------------------------------------------------------------


def test_a_linked_lock_file_is_refused_and_its_target_untouched(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    lock = out / ".dcbench.results.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "symbolic link")
    assert outside.read_text() == "keep me\n"


def test_a_linked_cell_directory_is_refused_before_any_work(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "elsewhere"
    shutil.move(out / "runs" / CELL, outside)
    (outside / "metrics.json").unlink()  # so the cell would be re-run
    (out / "runs" / CELL).symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "symbolic link", "remove it")
    assert sorted(p.name for p in outside.iterdir()) == before


def test_a_linked_log_is_never_appended_to(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    outside = tmp_path / "outside.log"
    outside.write_text("")
    cell = out / "runs" / CELL
    (cell / "metrics.json").unlink()
    (cell / "log.txt").unlink()
    (cell / "log.txt").symlink_to(outside)
    code, err = cli(capsys, *run_args(spec, out, data))
    assert_refused(code, err, "log.txt is a symbolic link")
    assert outside.read_text() == ""
    # nor a damaged cell's note, nor a cell's own log when the link appears after the check
    with pytest.raises(DcbenchError, match="symbolic link"):
        Store(out).discard(CELL, "test")
    from dcbench.host.files import open_append

    with pytest.raises(DcbenchError, match="symbolic link"):
        open_append(cell / "log.txt")
    assert outside.read_text() == ""


# --- 2. markup and formula injection ---------------------------------------------------------------

HOSTILE = {"random": 0.30, "# Head <b>x `a": 0.45, "=HYPERLINK(1)": 0.47, "$x^$": 0.40}


@pytest.fixture
def hostile_report(tmp_path: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).parents[1] / "report"))
    from report_fixtures import make_results

    from dcbench.report import write_report

    root = make_results(tmp_path / "r", {"d`<i>": (1,)}, methods=tuple(HOSTILE), levels=HOSTILE, seeds=(0, 1))
    runs = pd.read_csv(root / "runs.csv")  # a class-name-like label, and a negative number that must stay one
    runs["method_label"] = runs["method"]
    runs["condense_s"] = -1.5
    runs.to_csv(root / "runs.csv", index=False)
    return write_report(root, formats=("csv", "md", "tex", "png"))


def test_names_are_escaped_in_markdown_and_latex(hostile_report: Path) -> None:
    report = hostile_report.read_text()
    table = (hostile_report.parent / "table.md").read_text()
    for text in (report, table):
        assert not any(line.startswith("# Head") for line in text.splitlines())
        assert "<b>" not in text and "<i>" not in text  # raw HTML would pass through
        assert r"\# Head \<b\>x \`a" in text
    assert r"\$x\textasciicircum \$" in (hostile_report.parent / "table.tex").read_text()


def test_markdown_code_spans_hold_backticks() -> None:
    from dcbench.report.formatting import markdown_code, markdown_text

    assert markdown_code("a`b") == "``a`b``" and markdown_code("`x") == "`` `x ``"
    assert markdown_text("# a\nb_c _d_ *e*") == r"\# a b_c \_d\_ \*e\*"


def test_csv_cells_cannot_be_formulas_and_numbers_stay_numbers(hostile_report: Path) -> None:
    from dcbench.host.files import read_csv

    cells = (hostile_report.parent / "cells.csv").read_text()
    assert "\n=HYPERLINK" not in cells and "\n'=HYPERLINK(1)," in cells
    assert read_csv(hostile_report.parent / "cells.csv")["method"].str.startswith("=").any()  # restored
    pareto = pd.read_csv(hostile_report.parent / "pareto.csv")
    assert (pareto["condense_s"] == -1.5).all()  # a number, not text


def test_runs_csv_round_trips_formula_like_names(tmp_path: Path) -> None:
    from dcbench.host.files import atomic_write_text, csv_text
    from dcbench.results.runs_table import load_runs

    frame = pd.DataFrame(
        {"run_id": ["=a-d-ipc1-s0", "'b"], "method": ["=a", "'b"], "dataset": ["-d", "@e"], "ipc": [1, 1]}
    )
    frame = frame.assign(eval_arch="ConvNet", synth_seed=[0, 1], eval_index=0, test_acc=[0.5, 0.25])
    atomic_write_text(tmp_path / "runs.csv", csv_text(frame))
    assert "\n=" not in (tmp_path / "runs.csv").read_text()
    runs = load_runs(tmp_path)
    assert list(runs["method"]) == ["=a", "'b"] and list(runs["dataset"]) == ["-d", "@e"]
    assert list(runs["test_acc"]) == [0.5, 0.25]


def test_a_dollar_class_name_draws_its_grid_and_report(tmp_path: Path) -> None:
    from dcbench.method.synthetic import SyntheticSet
    from dcbench.report.image_grids import write_set_grid

    images = torch.zeros(2, 1, 8, 8)
    SyntheticSet(images, torch.tensor([0, 1]), {"class_names": ["$x^$", "ok"]}).save(tmp_path / "set")
    assert write_set_grid(tmp_path / "set", "$x^$ method").is_file()


# --- 5. silent wrong results -------------------------------------------------------------------------


def cell_metrics(finished_store: Path) -> dict[str, Any]:
    return json.loads((finished_store / "out" / "runs" / CELL / "metrics.json").read_text())


@pytest.mark.parametrize(
    "change",
    [
        {"train_accs": [-5.0]},
        {"train_accs": [1e308]},
        {"seconds": -1.0},
        {"condense_s": 1e308},
    ],
)
def test_impossible_measures_in_metrics_json_are_damage(finished_store: Path, change: dict) -> None:
    metrics = cell_metrics(finished_store)
    for key, value in change.items():
        if key in metrics:
            metrics[key] = value
        else:
            metrics["evaluations"][0][key] = value
    assert record_problem(metrics, CELL) is not None


def test_a_stray_cell_directory_is_not_a_method(finished_store: Path, tmp_path: Path) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    stray = out / "runs" / "notes"
    stray.mkdir()
    metrics = cell_metrics(finished_store)
    metrics["cell"]["id"] = "notes"
    (stray / "metrics.json").write_text(json.dumps(metrics))
    runs = Store(out).rebuild_tables()
    assert set(runs["method"]) == {"random"} and "notes" not in set(runs["run_id"])


def test_the_report_refuses_runs_that_no_cell_holds(finished_store: Path, tmp_path: Path, capsys) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    runs = pd.read_csv(out / "runs.csv")
    extra = runs.assign(run_id="random-fashion-mnist-ipc1-s9", synth_seed=9)
    pd.concat([runs, extra]).to_csv(out / "runs.csv", index=False)
    code, err = cli(capsys, "report", out)
    assert_refused(code, err, "random-fashion-mnist-ipc1-s9", "no cell")


def test_class_names_are_not_read_from_a_manifest_outside_the_store(
    finished_store: Path, tmp_path: Path, capsys
) -> None:
    spec, out, data = copy_store(finished_store, tmp_path)
    elsewhere = tmp_path / "elsewhere" / "x"
    elsewhere.mkdir(parents=True)
    (elsewhere / "manifest.json").write_text(json.dumps({"class_names": ["SECRET", "B"]}))
    runs = pd.read_csv(out / "runs.csv")
    runs["run_id"] = "../../elsewhere/x"
    runs.to_csv(out / "runs.csv", index=False)
    code, err = cli(capsys, "report", out)
    assert_refused(code, err, "are paths")
    # and a manifest that is a link out of the store is not followed
    runs["run_id"] = CELL
    runs.to_csv(out / "runs.csv", index=False)
    manifest = out / "runs" / CELL / "manifest.json"
    manifest.unlink()
    manifest.symlink_to(elsewhere / "manifest.json")
    from dcbench.report.inputs import dataset_manifests

    assert dataset_manifests(out, runs) == {}


# --- 3/4. images: crashes, hangs, bombs, transparency ---------------------------------------------


def write_folder(root: Path, size: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def condense_args(root: Path, out: Path) -> list[Any]:
    return ["condense", "--method", "random", "--dataset", root, "--ipc", "1", "--device", "cpu", "-o", out]


def png_with_bad_checksum(path: Path) -> None:
    """A PNG whose zlib stream fails its adler-32 check (chunk CRCs intact): torchvision's decoder
    dies of SIGSEGV on it."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 7, dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    body = bytearray(data[start + 8 : start + 8 + length])
    body[-1] ^= 0xFF
    chunk = struct.pack(">I", length) + b"IDAT" + bytes(body) + struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)))
    path.write_bytes(data[:start] + chunk + data[start + 12 + length :])


def test_a_damaged_png_is_one_line_not_a_segfault(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    png_with_bad_checksum(bad)
    # in a child process: on the old decoder this kills the interpreter
    code = f"from pathlib import Path; from dcbench.data.folders import decode; decode(Path({str(bad)!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr[-500:])
    assert "DcbenchError" in result.stderr and "cannot be decoded as a PNG or JPEG image" in result.stderr


def png_claiming(path: Path, width: int, height: int) -> None:
    """A PNG header claiming ``width`` x ``height`` pixels over a few bytes of data: a bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path, capsys) -> None:
    root = write_folder(tmp_path / "data")
    bomb = root / "train" / "cat" / "0.png"
    png_claiming(bomb, 60000, 60000)
    code, err = cli(capsys, *condense_args(root, tmp_path / "out"))
    assert_refused(code, err, str(bomb), "decompression bomb")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_in_an_image_folder_are_refused_without_reading(tmp_path: Path, capsys, kind: str) -> None:
    root = write_folder(tmp_path / "data")
    special = root / "train" / "cat" / "2.png"
    if kind == "fifo":
        os.mkfifo(special)
    else:
        special.symlink_to("/dev/zero")
    code, err = cli(capsys, *condense_args(root, tmp_path / "out"))  # hung for ever before
    assert_refused(code, err, str(special), "not a regular file")


def test_a_transparent_palette_png_is_refused(tmp_path: Path, capsys) -> None:
    from PIL import Image

    root = write_folder(tmp_path / "data")
    bad = root / "train" / "dog" / "0.png"
    image = Image.new("P", (8, 8))
    image.putpalette([0, 0, 0, 255, 255, 255] * 128)
    image.save(bad, transparency=0)
    code, err = cli(capsys, *condense_args(root, tmp_path / "out"))
    assert_refused(code, err, str(bad), "transparency")


def test_a_failing_cache_write_costs_only_the_cache(tmp_path: Path, monkeypatch, capsys) -> None:
    from dcbench.data import folders

    root = write_folder(tmp_path / "data")

    def full(*args, **kwargs):
        raise DcbenchError("cannot write x: No space left on device; free some space or choose another path")

    monkeypatch.setattr(folders, "atomic_write", full)
    tensors, info = folders.load_image_folder(root, "d", None)
    assert tensors["train_images"].shape == (4, 3, 8, 8)
    assert "cannot cache the decoded images" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["", "  ", "relative-cache"])
def test_the_cache_is_never_the_working_directory(tmp_path: Path, monkeypatch, value: str) -> None:
    from dcbench.data.cache import cache_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DCBENCH_CACHE", value)
    root = cache_root()
    assert root.is_absolute() and (root != tmp_path) and (value.strip() or root != tmp_path / "folders")


# --- 3. tensor files: tiny files, huge claims ----------------------------------------------------


def tensor_refused(capsys, tmp_path: Path, path: Path, *fragments: str) -> None:
    code, err = cli(capsys, *condense_args(path, tmp_path / "out"))
    assert_refused(code, err, str(path), *fragments)


def test_a_stride_0_tensor_claiming_a_million_images_is_refused(tmp_path: Path, capsys) -> None:
    one = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    labels = torch.zeros(1, dtype=torch.long)
    path = tmp_path / "d.pt"
    torch.save(
        {
            "train_images": one.expand(1_000_000, 1, 28, 28),
            "train_labels": labels.expand(1_000_000),
            "test_images": one,
            "test_labels": labels,
        },
        path,
    )
    tensor_refused(capsys, tmp_path, path, "stride-0", ".contiguous()")


def test_an_npz_header_claiming_gigabytes_is_refused_before_allocation(tmp_path: Path, capsys) -> None:
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (3_000_000_000,)})
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train_images.npy", header.getvalue() + bytes(100))
    tensor_refused(capsys, tmp_path, path, "claims", "but holds")


def test_a_label_claiming_a_billion_classes_is_refused(tmp_path: Path, capsys) -> None:
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 4, 4), dtype=np.uint8)
    path = tmp_path / "d.npz"
    np.savez(path, train_images=images, train_labels=[0, 1, 0, 10**9], test_images=images, test_labels=[0, 1, 0, 1])
    tensor_refused(capsys, tmp_path, path, "a label is 1000000000", "only 4 training images")


def test_a_file_too_big_for_memory_is_refused_before_reading(tmp_path: Path, capsys, monkeypatch) -> None:
    from dcbench.data import tensor_files

    path = tmp_path / "d.pt"
    torch.save({"train_images": torch.zeros(8, 1, 4, 4)}, path)
    monkeypatch.setattr(tensor_files, "available_memory", lambda: 1000)
    tensor_refused(capsys, tmp_path, path, "free memory")


def test_a_text_file_named_npz_is_not_called_an_object_array(tmp_path: Path, capsys) -> None:
    path = tmp_path / "d.npz"
    path.write_text("train_images, train_labels\n1, 2\n")
    code, err = cli(capsys, *condense_args(path, tmp_path / "out"))
    assert_refused(code, err, str(path), "no zip archive")
    assert "pickle" not in err[0]


# --- 4/6. hangs and unclean errors -------------------------------------------------------------------


def test_checking_100000_seeds_for_repeats_is_linear(tmp_path: Path, capsys) -> None:
    import time

    from dcbench.host.schema import ListOf
    from dcbench.method.seeding import SEED

    rule = ListOf(SEED)
    seeds = list(range(100_000))
    start = time.perf_counter()
    assert rule.check("spec seeds", seeds) == seeds
    assert time.perf_counter() - start < 5  # minutes before
    with pytest.raises(DcbenchError, match="lists 7 twice"):
        rule.check("spec seeds", [*seeds, 7])


def test_a_file_name_with_a_newline_stays_one_error_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "two\nlines"
    code, err = cli(capsys, *condense_args(missing, tmp_path / "out"))
    assert_refused(code, err, "two\\nlines")


def test_run_exits_1_not_2_when_the_report_fails_after_its_cells(
    finished_store: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from dcbench.run import grid

    spec, out, data = copy_store(finished_store, tmp_path)

    def failing(*args, **kwargs):
        raise DcbenchError("cannot write report: No space left on device")

    monkeypatch.setattr(grid, "write_report_files", failing)
    code = main([str(a) for a in run_args(spec, out, data)])
    err = capsys.readouterr().err
    assert code == 1 and "the report failed: cannot write report" in err, err
