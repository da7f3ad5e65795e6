"""The settings tables of the plugin READMEs, generated from the code so that they cannot drift.

A README marks each table with ``<!-- dcbench:settings METHOD -->`` ... ``<!-- /dcbench:settings -->``;
the table between the markers has one row per field of the method's config dataclass: its value
under each preset (``paper`` is the dataclass default) and its meaning, taken from the field's
trailing ``# comment`` in the source. ``python -m dcbench.tools.plugin_docs`` rewrites the tables;
``--check`` exits 1 naming each stale one (a test runs it)."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
from pathlib import Path
from typing import Any

from dcbench.method.contract import PRESETS, Method
from dcbench.plugins import load_plugins

BLOCK = re.compile(
    r"(<!-- dcbench:settings (?P<method>[\w-]+) -->\n)(?P<table>.*?)(<!-- /dcbench:settings -->)", re.DOTALL
)
PRESET_ORDER = ("paper", "quick", "smoke")


def field_comments(config_class: type) -> dict[str, str]:
    """Each field's comment in the class source: the comment lines right above it and its trailing one."""
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(config_class)}
    field_rows: dict[int, str] = {}
    comment_rows: dict[int, str] = {}
    comment_only: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        row = token.start[0]
        if (
            token.type == tokenize.NAME
            and token.string in names
            and token.line[: token.start[1]].strip() == ""
            and row not in field_rows
        ):
            field_rows[row] = token.string
        elif token.type == tokenize.COMMENT:
            comment_rows[row] = token.string.lstrip("#").strip()
            if token.line.strip().startswith("#"):
                comment_only.add(row)
    comments = {}
    for row, name in field_rows.items():
        above = row - 1
        while above in comment_only:  # a comment block right above the field belongs to it
            above -= 1
        parts = [comment_rows[r] for r in range(above + 1, row)]
        if row in comment_rows and row not in comment_only:
            parts.append(comment_rows[row])
        if parts:
            comments[name] = " ".join(parts)
    return comments


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "`" + ", ".join(map(str, value)) + "`" if value else "`[]`"
    return f"`{value}`" if value != "" else '`""`'


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table(method: Method) -> str:
    """The Markdown settings table of ``method``: a row per config field, a column per preset."""
    configs = {preset: method.make_config(preset) for preset in PRESET_ORDER if preset in PRESETS}
    comments = field_comments(method.config_class)
    header = f"| `{method.config_class.__name__}` field | paper (default) | quick | smoke | meaning |"
    lines = [header, "|---|---|---|---|---|"]
    for field in dataclasses.fields(method.config_class):
        paper = getattr(configs["paper"], field.name)
        cells = []
        for preset in PRESET_ORDER:
            value = getattr(configs[preset], field.name)
            text = _escape(_value(value))
            cells.append(f"**{text}**" if preset != "paper" and value != paper else text)
        lines.append(f"| `{field.name}` | " + " | ".join(cells) + f" | {_escape(comments.get(field.name, ''))} |")
    if len(lines) == 2:
        lines.append("| (no settings) | | | | |")
    return "\n".join(lines) + "\n"


def render(text: str, methods: dict[str, Method]) -> str:
    """``text`` with every settings block regenerated (an unknown method is an error)."""

    def replace(match: re.Match[str]) -> str:
        name = match["method"]
        if name not in methods:
            raise KeyError(f"the README names method {name!r}, which no loaded plugin registers")
        return match.group(1) + settings_table(methods[name]) + match.group(4)

    return BLOCK.sub(replace, text)


def plugin_readmes(root: Path) -> list[Path]:
    return sorted((root / "plugins").glob("*/README.md"))


def stale_blocks(readme: Path, methods: dict[str, Method]) -> list[str]:
    """The methods whose settings block in ``readme`` differs from the code."""
    text = readme.read_text()
    fresh = render(text, methods)
    old = {m["method"]: m["table"] for m in BLOCK.finditer(text)}
    new = {m["method"]: m["table"] for m in BLOCK.finditer(fresh)}
    return [name for name in old if old[name] != new[name]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate (or check) the settings tables of the plugin READMEs.")
    parser.add_argument("--check", action="store_true", help="exit 1 when a table differs from the code")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="the repository root")
    args = parser.parse_args(argv)
    methods = load_plugins().methods
    status = 0
    for readme in plugin_readmes(Path(args.root)):
        if args.check:
            for name in stale_blocks(readme, methods):
                print(
                    f"{readme}: the settings of {name!r} differ from the code; run python -m dcbench.tools.plugin_docs",
                    file=sys.stderr,
                )
                status = 1
        else:
            text = readme.read_text()
            fresh = render(text, methods)
            if fresh != text:
                readme.write_text(fresh)
                print(f"updated {readme}")
    return status


if __name__ == "__main__":
    sys.exit(main())
