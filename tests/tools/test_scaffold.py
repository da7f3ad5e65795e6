"""`dcbench new-method`: the generated plugin installs, is listed, passes its own tests and runs in a grid."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError
from dcbench.tools.scaffold import scaffold_method


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "name, message",
    [
        ("Bad-Name", "must be 1-40 lower-case letters"),
        ("9lives", "starting with a letter"),
        ("class", "not a Python keyword"),
        ("dm", "a method named 'dm' is already installed \\(plugin 'dm'\\)"),
        ("coresets", "a dcbench plugin named 'coresets' is already installed"),
    ],
)
def test_a_bad_or_taken_name_is_refused(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(DcbenchError, match=message):
        scaffold_method(name, tmp_path / "plugin")
    assert not (tmp_path / "plugin").exists()


def test_an_occupied_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(DcbenchError, match="busy already exists and is not an empty directory"):
        scaffold_method("fresh", tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]


def test_the_package_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = scaffold_method("my_method")
    assert path == tmp_path / "dcbench-my_method"
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "dcbench_my_method/__init__.py",
        "dcbench_my_method/method.py",
        "pyproject.toml",
        "tests/test_my_method.py",
    ]
    project = tomllib.loads((path / "pyproject.toml").read_text())
    assert project["project"]["name"] == "dcbench-my_method"
    assert project["project"]["entry-points"]["dcbench"] == {"my_method": "dcbench_my_method"}
    for file in files:
        text = (path / file).read_text()
        assert "$" not in text, f"{file} has an unfilled placeholder"
        if file.endswith(".py"):
            ast.parse(text, filename=file)
    init = ast.parse((path / "dcbench_my_method" / "__init__.py").read_text())
    assert [type(node).__name__ for node in init.body if not isinstance(node, (ast.Expr, ast.ImportFrom))] == [
        "FunctionDef"
    ]  # only the hook implementation
    assert "class MyMethodMethod(Method):" in (path / "dcbench_my_method" / "method.py").read_text()


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A freshly scaffolded plugin, installed editable into this venv for the test only. The name
    carries the process id, so two test sessions on one venv do not uninstall each other's."""
    pytest.importorskip("setuptools", reason="building the editable plugin offline needs setuptools in the venv")
    name = f"scaffoldcheck{os.getpid()}"
    path = scaffold_method(name, tmp_path / f"dcbench-{name}")
    try:
        result = run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "-e", str(path))
        assert result.returncode == 0, f"pip install -e failed:\n{result.stderr[-2000:]}"
        yield name, path
    finally:
        run("-m", "pip", "uninstall", "-y", "-q", f"dcbench-{name}")


@pytest.mark.slow
def test_a_new_method_installs_lists_passes_its_tests_and_runs_in_a_grid(
    installed: tuple[str, Path], tmp_path: Path, fashion_root: Path
) -> None:
    name, path = installed
    listing = run("-m", "dcbench.cli", "list")
    assert listing.returncode == 0 and f"  {name} " in listing.stdout
    assert "mean-feature matching" in listing.stdout

    own_tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=path)
    assert own_tests.returncode == 0, own_tests.stdout[-3000:]
    assert " passed" in own_tests.stdout

    spec = tmp_path / "grid.toml"
    spec.write_text(
        f'name = "grid"\npreset = "smoke"\nmethods = ["{name}", "random"]\n'
        'datasets = ["fashion-mnist"]\nipcs = [1]\nseeds = [0]\n'
    )
    out = tmp_path / "results"
    grid = run(
        "-m",
        "dcbench.cli",
        "run",
        str(spec),
        "--out",
        str(out),
        "--data-root",
        str(fashion_root),
        "--device",
        "cpu",
        "--quiet",
    )
    assert grid.returncode == 0, grid.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs["method"].unique()) == sorted([name, "random"])
    assert runs["test_acc"].between(0, 1).all()
    assert (out / "report" / "report.md").is_file()
