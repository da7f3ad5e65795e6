"""The package metadata agrees with the code: Python versions, licence, typing marker, tools."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dcbench.host.compat import tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_licence_file_matches_pyproject() -> None:
    assert PROJECT["project"]["license"] == "MIT"
    assert PROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "dcbench contributors" in text


def test_py_typed_is_shipped() -> None:
    assert (ROOT / "dcbench" / "py.typed").is_file()
    assert "py.typed" in PROJECT["tool"]["setuptools"]["package-data"]["dcbench"]


def test_toml_parser_has_a_fallback_below_the_first_python_with_tomllib() -> None:
    """requires-python says 3.10: nothing may import tomllib (3.11+) except through dcbench.host.compat,
    and tomli must be a dependency exactly where tomllib is missing."""
    assert PROJECT["project"]["requires-python"] == ">=3.10"
    assert "tomli>=2; python_version<'3.11'" in PROJECT["project"]["dependencies"]
    for path in [*ROOT.glob("dcbench/**/*.py"), *ROOT.glob("plugins/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        if path.name == "compat.py":
            continue
        imported = {
            alias.name
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert "tomllib" not in imported, f"{path} imports tomllib: use `from dcbench.host.compat import tomllib`"


def test_lint_and_type_check_are_configured_and_pinned() -> None:
    assert PROJECT["tool"]["ruff"]["target-version"] == "py310"
    assert PROJECT["tool"]["mypy"]["python_version"] == "3.10"
    pins = dict(re.findall(r"^([\w-]+)==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M))
    test_extra = " ".join(PROJECT["project"]["optional-dependencies"]["test"])
    for tool in ("ruff", "mypy"):
        assert tool in pins and tool in test_extra
