"""The plugin READMEs' settings tables are the code's: generated from it and checked here."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from dcbench.api import Method
from dcbench.plugins import load_plugins
from dcbench.tools import plugin_docs

ROOT = Path(__file__).resolve().parents[2]


def test_every_plugin_has_a_readme() -> None:
    folders = [p for p in (ROOT / "plugins").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert folders and all((p / "README.md").is_file() for p in folders)


def test_every_settings_table_is_what_the_code_generates() -> None:
    methods = load_plugins().methods
    for readme in plugin_docs.plugin_readmes(ROOT):
        assert plugin_docs.stale_blocks(readme, methods) == [], (
            f"{readme} is stale: run python -m dcbench.tools.plugin_docs"
        )


def test_every_built_in_method_has_a_settings_table() -> None:
    registry = load_plugins()
    documented = {
        m["method"]
        for readme in plugin_docs.plugin_readmes(ROOT)
        for m in plugin_docs.BLOCK.finditer(readme.read_text())
    }
    built_in = {
        name
        for (kind, name), plugin in registry.owners.items()
        if kind == "method" and registry.plugins[plugin].distribution == "dcbench"
    }
    assert built_in and built_in <= documented


def test_a_stale_value_is_named_by_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plugins" / "dm").mkdir(parents=True)
    text = (ROOT / "plugins" / "dm_baseline" / "README.md").read_text()
    assert "| `iterations` | 20000 |" in text
    (tmp_path / "plugins" / "dm" / "README.md").write_text(
        text.replace("| `iterations` | 20000 |", "| `iterations` | 2000 |")
    )
    assert plugin_docs.main(["--check", "--root", str(tmp_path)]) == 1
    assert "the settings of 'dm' differ from the code" in capsys.readouterr().err
    assert plugin_docs.main(["--root", str(tmp_path)]) == 0  # rewrites it
    assert plugin_docs.main(["--check", "--root", str(tmp_path)]) == 0


@dataclass
class _Config:
    steps: int = 10  # how many steps
    # the learning rate,
    # in two lines
    lr: float = 0.5
    name: str = "a|b"
    PRESETS: ClassVar[dict[str, dict[str, object]]] = {"quick": {"steps": 3}, "smoke": {"steps": 1}}


class _Toy(Method):
    name = "toy"
    config_class = _Config


def test_meanings_come_from_the_field_comments() -> None:
    assert plugin_docs.field_comments(_Config) == {"steps": "how many steps", "lr": "the learning rate, in two lines"}
    table = plugin_docs.settings_table(_Toy())
    assert "| `steps` | 10 | **3** | **1** | how many steps |" in table
    assert "| `lr` | 0.5 | 0.5 | 0.5 | the learning rate, in two lines |" in table
    assert "| `name` | `a\\|b` | `a\\|b` | `a\\|b` |  |" in table  # a pipe cannot break the table


def test_the_guides_coreset_example_keeps_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """The selection method shown in docs/writing-a-plugin.md runs and passes the conformance kit."""
    import re

    from dcbench.testing import check_method

    guide = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    source = re.search(r"# dcbench_nearest/method.py\n(.*?)```", guide, re.DOTALL)
    assert source is not None
    import types

    module = types.ModuleType("dcbench_nearest_example")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source.group(1), "writing-a-plugin.md", "exec"), module.__dict__)  # noqa: S102 - our own doc
    method = module.NearestMethod
    assert isinstance(method, type)
    check_method(method())
