"""The package's shape: its layers import only downward, it has no import cycle, plugins use only
``dcbench.api``, and the old flat import paths still answer (with a warning) for one release."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(where: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the ``dcbench`` package found in ``where`` (import-linter puts the
    working directory first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=where,
        timeout=300,
    )


def _layers() -> list[str]:
    from dcbench.host.compat import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (the test extra has it)")
def test_the_import_contracts_are_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (the test extra has it)")
def test_a_planted_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "dcbench", tmp_path / "dcbench", ignore=shutil.ignore_patterns("__pycache__"))
    errors = tmp_path / "dcbench" / "host" / "errors.py"
    planted = "\n\ndef _upward() -> None:\n    from dcbench.run import grid  # noqa: F401\n"
    errors.write_text(errors.read_text() + planted)
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "dcbench layers BROKEN" in result.stdout
    assert "dcbench.host.errors -> dcbench.run.grid" in result.stdout


def test_the_package_has_no_import_cycle() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("dcbench")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []


def test_every_top_level_entry_is_in_a_layer() -> None:
    """A new flat module cannot slip in beside the layers: it has to be placed in one."""
    entries = {
        p.stem
        for p in (ROOT / "dcbench").iterdir()
        if p.name not in ("__init__.py", "py.typed", "__pycache__") and (p.is_dir() or p.suffix == ".py")
    }
    assert entries == set(_layers())
    assert len(entries) <= 16  # 15: artifacts, what cells share; 16: console, the script that imports cli


def _dcbench_imports(source: str) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [m for m in modules if m == "dcbench" or m.startswith("dcbench.")]


def _plugin_sources() -> list[Path]:
    return sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "dcbench" / "tools" / "templates").rglob("*.py.tmpl")])


@pytest.mark.parametrize("path", _plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_and_the_template_import_only_the_api(path: Path) -> None:
    allowed = {"dcbench.api"} | ({"dcbench.testing"} if path.name.startswith("test_") else set())
    source = path.read_text().replace("${class_prefix}", "Name").replace("$package", "package").replace("$name", "name")
    assert set(_dcbench_imports(source)) <= allowed


def test_no_code_of_the_project_uses_an_old_import_path() -> None:
    from dcbench.host.legacy_imports import LEGACY_MODULES

    offenders = []
    for folder in ("dcbench", "plugins", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "test_layout.py":
                continue
            used = [m for m in _dcbench_imports(path.read_text()) if m in LEGACY_MODULES]
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in used]
    assert offenders == []


def test_old_import_paths_answer_with_one_warning() -> None:
    import importlib

    from dcbench.api import Method, RealDataset
    from dcbench.data.builtin import load_fashion_mnist

    for name in ("dcbench.methods", "dcbench.datasets"):
        sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        datasets = importlib.import_module("dcbench.datasets")
        methods = importlib.import_module("dcbench.methods")
        importlib.import_module("dcbench.methods")  # a second import: no second warning
    assert methods.Method is Method and datasets.RealDataset is RealDataset
    assert datasets.load_fashion_mnist is load_fashion_mnist  # split modules answer from each new home
    legacy = [w for w in caught if "dcbench 0.1's import path" in str(w.message)]
    assert sorted(str(w.message).split()[0] for w in legacy) == ["dcbench.datasets", "dcbench.methods"]
    assert all(issubclass(w.category, DeprecationWarning) for w in legacy)
    with pytest.raises(AttributeError, match="now live in dcbench.method.contract"):
        methods.no_such_name  # noqa: B018 - the lookup is the test


def test_every_built_in_plugin_is_packaged_and_held_to_the_api() -> None:
    """A built-in plugin is one entry point plus its place in the four lists of pyproject.toml that
    cannot be derived from it; this names the list a new plugin was left out of."""
    from dcbench.host.compat import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plugins = set(config["project"]["entry-points"]["dcbench"].values())
    setuptools, linter = config["tool"]["setuptools"], config["tool"]["importlinter"]
    [forbidden] = [c for c in linter["contracts"] if c["type"] == "forbidden"]
    lists = {
        "[tool.setuptools] packages": set(setuptools["packages"]) - {"dcbench"},
        "[tool.setuptools.package-dir]": set(setuptools["package-dir"]) - {"dcbench"},
        "[tool.importlinter] root_packages": set(linter["root_packages"]) - {"dcbench"},
        "the forbidden contract's source_modules": set(forbidden["source_modules"]),
    }
    for where, names in lists.items():
        assert names == plugins, f"{where} lists {sorted(names)}, the dcbench entry points {sorted(plugins)}"
    for name, directory in setuptools["package-dir"].items():
        assert (ROOT / directory / "__init__.py").is_file(), f"{name} -> {directory} has no __init__.py"
