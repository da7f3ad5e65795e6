"""The plugin READMEs' settings blocks are generated from the config dataclasses, and checked here,
so that a preset change cannot leave a README behind (``dcbench.tools.plugin_docs``)."""

from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dcbench.api import Method
from dcbench.plugins import Registry, load_plugins
from dcbench.tools import plugin_docs

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m dcbench.tools.plugin_docs"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins()


def _blocks(readme: Path) -> list[str]:
    return [m["method"] for m in plugin_docs.BLOCK.finditer(readme.read_text())]


def _plugin_directory(method: Method) -> Path:
    """Where the package that defines ``method`` lives (dcbench_dm -> plugins/dm_baseline)."""
    package = importlib.import_module(type(method).__module__.split(".")[0])
    assert package.__file__ is not None
    return Path(package.__file__).resolve().parent


# (a) ------------------------------------------------------------------------------------------


def test_every_settings_block_is_what_the_code_generates(registry: Registry) -> None:
    readmes = plugin_docs.plugin_readmes(ROOT)
    assert readmes, "no plugins/*/README.md found"
    for readme in readmes:
        assert plugin_docs.broken_blocks(readme, registry.methods) == []
        stale = plugin_docs.stale_blocks(readme, registry.methods)
        assert stale == [], (
            f"{readme.relative_to(ROOT)}: the settings blocks of {stale} differ from the code; run {REGENERATE}"
        )


# (b) ------------------------------------------------------------------------------------------


def test_every_built_in_method_has_a_block_in_its_plugins_readme(registry: Registry) -> None:
    built_in = {
        name: method
        for name, method in registry.methods.items()
        if registry.plugins[registry.owners[("method", name)]].distribution == "dcbench"
    }
    assert {"dm", "dc", "dsa", "cafe", "cafe_dsa", "random", "herding", "whole"} <= set(built_in)
    missing = []
    for name, method in sorted(built_in.items()):
        readme = _plugin_directory(method) / "README.md"
        if not readme.is_file() or name not in _blocks(readme):
            missing.append(f"{name} (in {readme.relative_to(ROOT)})")
    assert missing == [], (
        f"no settings block for {', '.join(missing)}: add <!-- dcbench:settings NAME --> "
        f"<!-- /dcbench:settings --> and run {REGENERATE}"
    )


# (c) ------------------------------------------------------------------------------------------


def test_every_plugin_directory_has_a_readme() -> None:
    folders = [p for p in (ROOT / "plugins").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    assert {"cafe", "coresets", "dc_baseline", "dm_baseline", "tensorboard"} <= {p.name for p in folders}
    assert [p.name for p in folders if not (p / "README.md").is_file()] == []


# (d) ------------------------------------------------------------------------------------------


def test_a_planted_stale_value_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = ROOT / "plugins" / "dm_baseline" / "README.md"
    original = real.read_text()
    row = "| `iterations` | 20000 | **60** | **2** |"
    assert original.count(row) == 1
    copy = tmp_path / "README.md"
    copy.write_text(original.replace(row, "| `iterations` | 20000 | **50** | **2** |"))

    assert plugin_docs.main(["--check", str(copy)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"{copy}: the settings of 'dm' differ from the code; run {REGENERATE}"]

    # the command line says the same, with exit status 1
    result = subprocess.run(
        [sys.executable, "-m", "dcbench.tools.plugin_docs", "--check", str(copy)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "the settings of 'dm' differ from the code" in result.stderr

    assert plugin_docs.main([str(copy)]) == 0  # the rewrite restores exactly the committed text
    assert copy.read_text() == original
    assert plugin_docs.main(["--check", str(copy)]) == 0
    assert real.read_text() == original  # the real README was never touched


def test_a_block_for_an_unknown_method_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "README.md"
    copy.write_text("# x\n\n<!-- dcbench:settings no_such_method -->\n| old |\n<!-- /dcbench:settings -->\n")
    assert plugin_docs.main(["--check", str(copy)]) == 1
    assert "names method 'no_such_method', which no loaded plugin registers" in capsys.readouterr().err
    assert plugin_docs.main([str(copy)]) == 1  # nothing a rewrite could fix
    assert "| old |" in copy.read_text()


# (e) ------------------------------------------------------------------------------------------


@dataclass
class ToyConfig:
    """A config whose comments take every form the extraction must understand (as ruff formats them)."""

    steps: int = 10  # how many steps
    lr: float = 0.5  # the learning rate,
    # continued on the line below
    width: int = 32  # its own comment, so the line above continues lr's
    depth: int = 3  # conv blocks
    # a block right above a field without a comment of its own
    # explains that field
    heads: int = 4
    plain: str = ""
    #: Sphinx's attribute comment
    mode: str = "a|b"
    milestones: tuple[float, ...] = (0.5, 0.75)  # noqa: E501
    flag: bool = True  # pipes | are escaped,
    # and a continuation may end the fields

    # about the presets, not about a field
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"steps": 3, "flag": False}, "smoke": {"steps": 1}}

    def validate(self) -> None:
        steps = self.steps  # a name in a method is not a field
        assert steps >= 0


@dataclass
class ToySubConfig(ToyConfig):
    width: int = 64
    extra: int = 1  # only in the subclass


class ToyMethod(Method):
    name = "toy"
    config_class = ToySubConfig


def test_meanings_come_from_the_field_comments() -> None:
    assert plugin_docs.field_comments(ToyConfig) == {
        "steps": "how many steps",
        "lr": "the learning rate, continued on the line below",
        "width": "its own comment, so the line above continues lr's",
        "depth": "conv blocks",
        "heads": "a block right above a field without a comment of its own explains that field",
        "mode": "Sphinx's attribute comment",
        "flag": "pipes | are escaped, and a continuation may end the fields",
    }
    # a redeclared default keeps the base class's explanation; a new field brings its own
    sub = plugin_docs.field_comments(ToySubConfig)
    assert sub["width"] == "its own comment, so the line above continues lr's"
    assert sub["extra"] == "only in the subclass"
    assert list(sub) == [f.name for f in dataclasses.fields(ToySubConfig) if f.name in sub]


def test_the_table_formats_values_and_escapes_cells() -> None:
    table = plugin_docs.settings_table(ToyMethod())
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{f.name}`" for f in dataclasses.fields(ToySubConfig)]
    assert "| field | paper (default) | quick | smoke | meaning |" in table
    assert "| `steps` | 10 | **3** | **1** | how many steps |" in rows
    assert '| `plain` | `""` | `""` | `""` |  |' in rows
    assert "| `mode` | `a\\|b` | `a\\|b` | `a\\|b` | Sphinx's attribute comment |" in rows
    assert "| `milestones` | `(0.5, 0.75)` | `(0.5, 0.75)` | `(0.5, 0.75)` |  |" in rows
    assert "| `flag` | true | **false** | true | pipes \\| are escaped, and a continuation may end the fields |" in rows
    assert "| `width` | 64 | 64 | 64 | its own comment, so the line above continues lr's |" in rows
    assert plugin_docs.escape("a|b\nc") == "a\\|b c"
    assert plugin_docs.format_value(None) == "`None`"
    assert plugin_docs.format_value("a`b") == "`` a`b ``"


# the guide ------------------------------------------------------------------------------------


def test_the_guide_imports_dcbench_only_through_its_public_modules() -> None:
    guide = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    used = set(re.findall(r"(?:from|import) (dcbench(?:\.\w+)*)", guide))
    assert used and used <= {"dcbench.api", "dcbench.testing"}, used
