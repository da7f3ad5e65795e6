"""The settings tables of the plugin READMEs, generated from the code so that they cannot drift.

A README marks each table with ``<!-- dcbench:settings METHOD -->`` ... ``<!-- /dcbench:settings -->``.
Between the markers goes one row per field of the method's config dataclass: its value under each
preset (``paper`` is the dataclass default, ``quick`` and ``smoke`` come from ``make_config``) and
its meaning, read from the field's ``# comment`` in the class source, so the dataclass stays the
one place where a setting is defined and explained.

``python -m dcbench.tools.plugin_docs`` rewrites the blocks of ``plugins/*/README.md``;
``python -m dcbench.tools.plugin_docs --check`` changes nothing and exits 1 with one line per
stale block (the test suite runs the same check).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import sys
import tokenize
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dcbench.host.errors import DcbenchError
from dcbench.method.contract import Method
from dcbench.plugins import load_plugins

#: one settings block; group 1 the opening marker, ``table`` what is generated, group 4 the closing one
BLOCK = re.compile(
    r"(<!-- dcbench:settings (?P<method>[\w-]+) -->\n)(?P<table>.*?)(<!-- /dcbench:settings -->)", re.DOTALL
)
OPENING = re.compile(r"<!-- dcbench:settings\b")
#: the column order of a table: the published settings first, then the cheaper presets
PRESET_ORDER = ("paper", "quick", "smoke")
#: tool directives, not explanations: never shown as a meaning
DIRECTIVE = re.compile(r"^(noqa\b|type:\s*ignore|pragma:|fmt:|ruff:|isort:)")
COMMAND = "python -m dcbench.tools.plugin_docs"
ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class _Comment:
    """A comment of the class source: where it starts and whether it has a line to itself."""

    column: int
    text: str
    alone: bool


def _comment_rows(source: str) -> dict[int, _Comment]:
    """Every comment of ``source`` by line, tool directives (``# noqa``, ...) left out."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").lstrip(":").strip()  # "#: ..." is Sphinx's attribute comment
            if not DIRECTIVE.match(text):
                comments[token.start[0]] = _Comment(token.start[1], text, not token.line[: token.start[1]].strip())
    return comments


def _class_body(config_class: type) -> tuple[list[ast.stmt], dict[int, _Comment]] | None:
    """The statements of ``config_class``'s body and the comments of its source (None: no source)."""
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):  # defined in a REPL or an exec: there is no source to read
        return None
    if source[:1].isspace():  # a nested class: parse it as the body of a block, columns unchanged
        source = "if 1:\n" + source
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    name = config_class.__name__
    node = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name), None)
    return None if node is None else (node.body, _comment_rows(source))


def _own_comments(config_class: type) -> dict[str, str]:
    """The comments of the fields that ``config_class``'s own body declares (not inherited ones).

    A field's comment is its trailing ``# ...`` continued by the comment lines right below it, or
    the comment block right above it, or both. ``ruff format`` moves continuation lines to the
    field's indentation, where they look like the next statement's block; they continue the
    trailing comment unless they lead straight into a statement without a trailing comment of its
    own, which they then explain (lines indented deeper than the field always continue). The
    statements come from ``ast`` and the comments from ``tokenize``: ``ast`` drops comments, and
    ``tokenize`` alone cannot tell a field from a name inside a method."""
    parsed = _class_body(config_class)
    if parsed is None:
        return {}
    body, comments = parsed

    def span(statement: ast.stmt) -> tuple[int, int]:
        first = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", []))])
        return first, statement.end_lineno or statement.lineno

    def trailing(statement: ast.stmt) -> list[int]:
        first, last = span(statement)
        return [r for r in range(first, last + 1) if r in comments and not comments[r].alone]

    starts = {span(statement)[0]: statement for statement in body}
    claimed: dict[int, int] = {}  # comment row -> first row of the statement it continues
    for statement in body:
        if not trailing(statement):
            continue
        row, column = span(statement)[1] + 1, statement.col_offset
        while row in comments and comments[row].alone and comments[row].column > column:
            claimed[row] = statement.lineno  # aligned under the trailing comment: a continuation
            row += 1
        run = []
        while row in comments and comments[row].alone and comments[row].column == column:
            run.append(row)
            row += 1
        after = starts.get(row)
        if run and (after is None or trailing(after)):  # a blank line, the end, or a commented statement
            claimed.update(dict.fromkeys(run, statement.lineno))

    result = {}
    for statement in body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        first, _ = span(statement)
        above: list[int] = []
        row = first - 1
        while (
            row in comments
            and comments[row].alone
            and comments[row].column == statement.col_offset
            and row not in claimed
        ):
            above.insert(0, row)
            row -= 1
        own = above + trailing(statement) + sorted(r for r, owner in claimed.items() if owner == statement.lineno)
        parts = [comments[r].text for r in own if comments[r].text]
        if parts:
            result[statement.target.id] = " ".join(parts)
    return result


def field_comments(config_class: type) -> dict[str, str]:
    """Each dataclass field's meaning from its comment in the source. A field that a subclass
    redeclares without a comment (a new default) keeps the comment of the class that explains it."""
    names = [f.name for f in dataclasses.fields(config_class)]
    comments: dict[str, str] = {}
    for klass in config_class.__mro__:
        if dataclasses.is_dataclass(klass):
            for name, text in _own_comments(klass).items():
                if name in names:
                    comments.setdefault(name, text)
    return {name: comments[name] for name in names if name in comments}


def _code(text: str) -> str:
    """``text`` as Markdown inline code, safe even when it holds a backtick."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def format_value(value: Any) -> str:
    """A config value as a table cell: numbers plain, booleans lower-case (as TOML and ``--set``
    write them), strings, sequences and ``None`` as inline code (so ``""`` and ``real`` read as values)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _code(value) if value else '`""`'
    return _code(repr(value))  # tuples and lists as Python writes them: (0.6, 0.8, 0.9)


def escape(text: str) -> str:
    """``text`` safe inside one Markdown table cell: a ``|`` would start a new column, a newline a new row."""
    return text.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def settings_table(method: Method) -> str:
    """What goes between the markers for ``method``: a caption naming the dataclass, then one row
    per field with its value under each preset (bold where it differs from ``paper``)."""
    config_class = method.config_class
    configs = {preset: method.make_config(preset) for preset in PRESET_ORDER}
    where = f"`{config_class.__name__}` in `{config_class.__module__}`"
    fields = dataclasses.fields(config_class)
    if not fields:
        return f"`{method.name}` ({where}) has no settings: every preset runs it the same way.\n"
    comments = field_comments(config_class)
    lines = [
        f"Settings of `{method.name}` ({where}); **bold**: differs from `paper`. "
        f"Generated by `{COMMAND}`: edit the dataclass, not this table.",
        "",
        "| field | paper (default) | quick | smoke | meaning |",
        "|---|---|---|---|---|",
    ]
    for field in fields:
        paper = getattr(configs["paper"], field.name)
        cells = []
        for preset in PRESET_ORDER:
            value = getattr(configs[preset], field.name)
            text = escape(format_value(value))
            cells.append(f"**{text}**" if preset != "paper" and value != paper else text)
        lines.append(f"| `{field.name}` | " + " | ".join(cells) + f" | {escape(comments.get(field.name, ''))} |")
    return "\n".join(lines) + "\n"


def render(text: str, methods: Mapping[str, Method]) -> str:
    """``text`` with every settings block regenerated; a block naming an unregistered method is
    an error (a README must not document a method that does not exist)."""

    def replace(match: re.Match[str]) -> str:
        name = match["method"]
        if name not in methods:
            raise DcbenchError(f"a settings block names method {name!r}, which no loaded plugin registers")
        return match.group(1) + settings_table(methods[name]) + match.group(4)

    return BLOCK.sub(replace, text)


def plugin_readmes(root: Path = ROOT) -> list[Path]:
    """The READMEs of the plugins shipped in ``root``: the files whose blocks this tool owns."""
    return sorted((root / "plugins").glob("*/README.md"))


def stale_blocks(readme: Path, methods: Mapping[str, Method]) -> list[str]:
    """The methods whose settings block in ``readme`` differs from what the code generates, in
    the README's order (a method with two stale blocks is named twice)."""
    text = readme.read_text()
    old = list(BLOCK.finditer(text))
    new = list(BLOCK.finditer(render(text, methods)))  # same blocks, same order: only their tables change
    return [o["method"] for o, n in zip(old, new) if o["table"] != n["table"]]


def broken_blocks(readme: Path, methods: Mapping[str, Method]) -> list[str]:
    """One line per block that no rewrite can fix: an opening marker without a closing one, or a
    block naming a method that no loaded plugin registers."""
    text = readme.read_text()
    lines = []
    unclosed = len(OPENING.findall(text)) - len(BLOCK.findall(text))
    if unclosed:
        lines.append(f"{readme}: {unclosed} settings block(s) without a closing <!-- /dcbench:settings -->")
    for match in BLOCK.finditer(text):
        if match["method"] not in methods:
            lines.append(
                f"{readme}: a settings block names method {match['method']!r}, which no loaded plugin registers"
            )
    return lines


def problems(readme: Path, methods: Mapping[str, Method]) -> list[str]:
    """What ``--check`` reports for ``readme``, one line each: broken blocks, else stale ones."""
    broken = broken_blocks(readme, methods)
    if broken:
        return broken
    return [
        f"{readme}: the settings of {name!r} differ from the code; run {COMMAND}"
        for name in stale_blocks(readme, methods)
    ]


def rewrite(readme: Path, methods: Mapping[str, Method]) -> bool:
    """Regenerate ``readme``'s blocks in place; True when the file changed (an unchanged file is
    not rewritten, so its timestamp says when its settings last changed)."""
    text = readme.read_text()
    fresh = render(text, methods)
    if fresh == text:
        return False
    readme.write_text(fresh)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcbench.tools.plugin_docs [--check] [--root DIR] [README ...]``: 0 when every
    block is (now) current, 1 when ``--check`` found a stale one or a block is broken."""
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Regenerate (or, with --check, verify) the settings blocks of the plugin READMEs."
    )
    parser.add_argument("readmes", nargs="*", type=Path, help="READMEs to process (default: ROOT/plugins/*/README.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each stale block")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository root (default: this checkout)")
    args = parser.parse_args(argv)
    readmes = args.readmes or plugin_readmes(args.root)
    if not readmes:
        print(f"{COMMAND}: no plugins/*/README.md under {args.root}", file=sys.stderr)
        return 1
    methods = load_plugins().methods
    status = 0
    for readme in readmes:
        lines = problems(readme, methods) if args.check else broken_blocks(readme, methods)
        for line in lines:
            print(line, file=sys.stderr)
        status = 1 if lines else status
        if not args.check and not lines and rewrite(readme, methods):
            print(f"updated {readme}")
    return status


if __name__ == "__main__":
    sys.exit(main())
