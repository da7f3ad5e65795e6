"""`dcbench import --format dc-repo`: released DC/DSA/DM files become evaluable dcbench sets, safely."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dcbench.cli import main
from dcbench.data import builtin
from dcbench.host.errors import DcbenchError
from dcbench.method.synthetic import load_synthetic
from dcbench.tools.importers import DATASETS, import_synthetic

FILE_NAME = "res_DC_FashionMNIST_ConvNet_2ipc.pt"


def released(ipc: int = 2, experiments: int = 2, seed: int = 0) -> dict[str, Any]:
    """What the reference scripts save: class-major sets and NumPy float accuracies."""
    g = torch.Generator().manual_seed(seed)
    data = [
        [torch.randn(10 * ipc, 1, 28, 28, generator=g), torch.arange(10).repeat_interleave(ipc)]
        for _ in range(experiments)
    ]
    return {"data": data, "accs_all_exps": {"ConvNet": [np.float64(0.5 + i / 100) for i in range(3 * experiments)]}}


def save(tmp_path: Path, payload: Any, name: str = FILE_NAME) -> Path:
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_each_experiment_becomes_a_set_that_evaluates(tmp_path: Path, fashion_root: Path, capsys) -> None:
    payload = released()
    shuffled = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    payload["data"][1] = [payload["data"][1][0][shuffled], payload["data"][1][1][shuffled]]
    file = save(tmp_path, payload)
    out = tmp_path / "imported"
    assert main(["import", str(file), "--format", "dc-repo", "--dataset", "fashion-mnist", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["exp0", "exp1"]
    for i in range(2):
        synthetic = load_synthetic(out / f"exp{i}")
        manifest = synthetic.manifest
        assert (manifest["method"], manifest["dataset"], manifest["ipc"], manifest["seed"]) == (
            "dc",
            "fashion-mnist",
            2,
            i,
        )
        assert manifest["imported_from"] == {
            "file": FILE_NAME,
            "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            "format": "dc-repo",
            "experiment": i,
            "experiments": 2,
            "condensed_with": "ConvNet",
        }
        assert manifest["preprocessing"] == {"normalised": True, "mean": [0.2861], "std": [0.353], "zca": False}
        assert manifest["reported_accs"] == {"ConvNet": [0.5, 0.51, 0.52, 0.53, 0.54, 0.55]}
        assert synthetic.labels.tolist() == [c for c in range(10) for _ in range(2)]  # class-major
        assert (out / f"exp{i}" / "grid.png").stat().st_size > 0
    assert torch.equal(load_synthetic(out / "exp0").images, payload["data"][0][0])
    order = torch.argsort(payload["data"][1][1], stable=True)
    assert torch.equal(load_synthetic(out / "exp1").images, payload["data"][1][0][order])
    capsys.readouterr()
    assert main(["evaluate", str(out / "exp0"), "--preset", "smoke", "--data-root", str(fashion_root)]) == 0
    assert "mean test accuracy" in capsys.readouterr().out


def test_file_written_under_numpy_1_loads(tmp_path: Path) -> None:
    """Old files name NumPy's scalar constructor numpy.core.multiarray.scalar (NumPy 2: numpy._core)."""
    buffer = io.BytesIO()
    torch.save(released(experiments=1), buffer)
    old = tmp_path / FILE_NAME
    with zipfile.ZipFile(buffer) as new, zipfile.ZipFile(old, "w") as rewritten:
        for name in new.namelist():
            content = new.read(name)
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in content
                content = content.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            rewritten.writestr(name, content)
    [written] = import_synthetic(old, "dc-repo", "fashion-mnist", tmp_path / "out")
    assert json.loads((written / "manifest.json").read_text())["reported_accs"]["ConvNet"][0] == 0.5


def test_method_comes_from_the_option_or_the_file_name(tmp_path: Path) -> None:
    file = save(tmp_path, released(experiments=1), "res_DSA_FashionMNIST_ConvNet_2ipc.pt")
    [dsa] = import_synthetic(file, "dc-repo", "fashion-mnist", tmp_path / "a")
    assert json.loads((dsa / "manifest.json").read_text())["method"] == "dsa"
    renamed = save(tmp_path, released(experiments=1), "my_set.pt")
    with pytest.raises(DcbenchError, match="cannot tell the method from the file name"):
        import_synthetic(renamed, "dc-repo", "fashion-mnist", tmp_path / "b")
    [mine] = import_synthetic(renamed, "dc-repo", "fashion-mnist", tmp_path / "b", method="mine")
    assert json.loads((mine / "manifest.json").read_text())["method"] == "mine"


class Payload:
    """An object that is not a tensor: pickling it records a global, which weights_only refuses."""


def broken(case: str) -> Any:
    payload = released()
    images, labels = payload["data"][0]
    changes = {
        "not a dict": lambda: [images, labels],
        "no data": lambda: {"accs_all_exps": {}},
        "pair flattened": lambda: {"data": [images, labels]},
        "not tensors": lambda: {"data": [[images.tolist(), labels]]},
        "wrong shape": lambda: {"data": [[torch.zeros(20, 3, 32, 32), labels]]},
        "count mismatch": lambda: {"data": [[images, labels[:-1]]]},
        "nan": lambda: {"data": [[images.index_put((torch.tensor([3]),), torch.tensor(float("nan"))), labels]]},
        "float labels": lambda: {"data": [[images, labels.float()]]},
        "labels out of range": lambda: {"data": [[images, labels + 1]]},
        "unbalanced": lambda: {"data": [[images, torch.cat([labels[:-1], torch.tensor([0])])]]},
        "bad accuracies": lambda: {**payload, "accs_all_exps": {"ConvNet": ["high"]}},
        "code": lambda: {**payload, "extra": Payload()},
    }
    return changes[case]()


@pytest.mark.parametrize(
    "case, message",
    [
        ("not a dict", "expected a dict whose 'data' is a non-empty list"),
        ("no data", "expected a dict whose 'data' is a non-empty list"),
        ("pair flattened", r"data\[0\] must be a pair \[images, labels\]"),
        ("not tensors", r"data\[0\] must hold two tensors, got a list"),
        ("wrong shape", r"shape \(20, 3, 32, 32\), fashion-mnist needs floating-point \(N, 1, 28, 28\)"),
        ("count mismatch", r"labels have shape \(19,\) for 20 images"),
        ("nan", "NaN or infinite"),
        ("float labels", "expected integer class indices"),
        ("labels out of range", r"labels span 1\.\.10, fashion-mnist has classes 0\.\.9"),
        ("unbalanced", "classes have different numbers of images"),
        ("bad accuracies", "must hold finite numbers"),
        ("code", r"refused to load: it needs the Python object [\w.]*Payload, and loading that could run code"),
    ],
)
def test_malformed_file_is_one_clear_line(tmp_path: Path, case: str, message: str) -> None:
    file = save(tmp_path, broken(case))
    with pytest.raises(DcbenchError, match=message) as info:
        import_synthetic(file, "dc-repo", "fashion-mnist", tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_mismatches_with_the_file_name_and_other_refusals(tmp_path: Path) -> None:
    file = save(tmp_path, released())
    cases = [
        (dict(format="kip"), "unknown import format 'kip'; known formats: datm, dc-repo, mtt"),
        (dict(dataset="imagenet"), "cannot import sets of dataset 'imagenet'"),
        (dict(dataset="mnist"), "the file name says dataset FashionMNIST, but --dataset is mnist"),
        (dict(file=tmp_path / "missing.pt"), "no such file"),
        (
            dict(file=save(tmp_path, released(), "res_DC_FashionMNIST_ConvNet_10ipc.pt")),
            r"says 10 images per class, the data has \[2\]",
        ),
        (dict(method="My Method"), "must be lower-case letters"),
    ]
    for change, message in cases:
        args = {
            "file": file,
            "format": "dc-repo",
            "dataset": "fashion-mnist",
            "output": tmp_path / "out",
            "method": None,
            **change,
        }
        with pytest.raises(DcbenchError, match=message):
            import_synthetic(**args)
    (tmp_path / "notes.pt").write_text("not a torch file")
    with pytest.raises(DcbenchError, match="notes.pt: not a"):
        import_synthetic(tmp_path / "notes.pt", "dc-repo", "fashion-mnist", tmp_path / "out", "dc")
    (tmp_path / "taken" / "exp1").mkdir(parents=True)
    (tmp_path / "taken" / "exp1" / "synthetic.pt").write_text("earlier work")
    with pytest.raises(DcbenchError, match="exp1 already exists and is not empty"):
        import_synthetic(file, "dc-repo", "fashion-mnist", tmp_path / "taken")
    assert not (tmp_path / "taken" / "exp0").exists()


def test_cli_error_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    file = save(tmp_path, broken("wrong shape"))
    assert main(["import", str(file), "--format", "dc-repo", "--dataset", "fashion-mnist", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dcbench: error: ")


def test_normalisation_constants_match_the_dataset_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    """importers.DATASETS repeats the constants of dcbench/data/builtin.py; they must not drift apart."""
    used: dict[str, tuple] = {}
    monkeypatch.setattr(
        builtin,
        "_load_mnist_like",
        lambda name, folder, tv_name, mean, std, root, extra_dirs=(): used.setdefault(name, ((mean,), (std,))),
    )
    monkeypatch.setattr(
        builtin, "_load_torchvision", lambda name, build, expected, root, mean, std: used.setdefault(name, (mean, std))
    )
    for spec in builtin.BUILTIN_DATASETS:
        spec.loader(None)
    assert used == {name: (encoding.mean, encoding.std) for name, encoding in DATASETS.items()}


def test_trajectory_releases_import_with_their_labels_lr_and_whitening(
    tmp_path: Path, fashion_root: Path, capsys
) -> None:
    g = torch.Generator().manual_seed(2)
    release = tmp_path / "logged_files" / "run"
    release.mkdir(parents=True)
    images = torch.randn(20, 1, 28, 28, generator=g)
    # mtt-distillation: hard labels, no lr file
    torch.save(images, release / "images_best.pt")
    torch.save(torch.arange(10).repeat_interleave(2), release / "labels_best.pt")
    out = tmp_path / "mtt"
    args = ["import", str(release / "images_best.pt"), "--format", "mtt", "--dataset", "fashion-mnist"]
    assert main([*args, "-o", str(out)]) == 2
    assert "--zca (MTT/DATM's CIFAR runs) or --no-zca" in capsys.readouterr().err
    assert main([*args, "--no-zca", "-o", str(out)]) == 0
    mtt = load_synthetic(out)
    assert mtt.manifest["method"] == "mtt" and mtt.manifest["labels"] == "hard" and mtt.soft_labels is None
    assert mtt.manifest["learned_lr"] is None and mtt.manifest["preprocessing"]["zca"] is False
    assert torch.equal(mtt.images, images)
    # DATM: learned logits and the learned lr beside the images, a whitened set
    logits = torch.randn(20, 10, generator=g)
    torch.save(logits, release / "labels_best.pt")
    torch.save(torch.tensor(0.0123), release / "lr_best.pt")
    assert main([*args[:3], "datm", *args[4:], "--zca", "-o", str(tmp_path / "datm")]) == 0
    datm = load_synthetic(tmp_path / "datm")
    assert datm.manifest["labels"] == "soft" and torch.equal(datm.soft_labels, logits)
    assert datm.manifest["learned_lr"] == pytest.approx(0.0123) and datm.manifest["preprocessing"]["zca"] is True
    assert datm.labels.tolist() == [c for c in range(10) for _ in range(2)]
    capsys.readouterr()
    # a whitened set is judged only on whitened data (one line), and is with --zca
    evaluate = ["evaluate", str(tmp_path / "datm"), "--preset", "smoke", "--data-root", str(fashion_root)]
    assert main(evaluate) == 2
    assert "condensed from ZCA-whitened data" in capsys.readouterr().err
    record = tmp_path / "eval.json"
    assert main([*evaluate, "--zca", "--labels", "set", "--lr", "0.0123", "--json", str(record)]) == 0
    written = json.loads(record.read_text())
    protocol = written["evaluation"]["protocol"]
    assert protocol["zca"] is True and protocol["labels"] == "set" and protocol["lr"] == pytest.approx(0.0123)
    assert written["evaluation"]["labels_used"] == "soft" and len(written["evaluation"]["test_accs"]) == 2
    for bad, message in (
        (torch.randn(19, 10), "soft labels must be finite"),
        (torch.zeros(20, 3, dtype=torch.long), "expected 20 class indices"),
    ):
        torch.save(bad, release / "labels_best.pt")
        with pytest.raises(DcbenchError, match=message):
            import_synthetic(release / "images_best.pt", "datm", "fashion-mnist", tmp_path / "bad", zca=False)
    with pytest.raises(DcbenchError, match="never whiten"):
        import_synthetic(save(tmp_path, released()), "dc-repo", "fashion-mnist", tmp_path / "dc", zca=True)


def test_evaluate_defaults_to_the_protocol_of_dcbench_run(tmp_path: Path, fashion_root: Path, capsys) -> None:
    file = save(tmp_path, released(experiments=1), "res_DSA_FashionMNIST_ConvNet_2ipc.pt")
    out = tmp_path / "imported"
    main(["import", str(file), "--format", "dc-repo", "--dataset", "fashion-mnist", "-o", str(out)])
    capsys.readouterr()
    assert main(["evaluate", str(out / "exp0"), "--preset", "smoke", "--data-root", str(fashion_root)]) == 0
    assert "/none/" in capsys.readouterr().out  # not DSA's native augmentation: the default grid's
    assert main(["evaluate", str(out / "exp0"), "--preset", "smoke", "--data-root", str(fashion_root),
                 "--augmentation", "native"]) == 0  # fmt: skip
    assert "/dsa/" in capsys.readouterr().out  # DSA's own paper's evaluation, when asked for
