"""How numbers and tables are written in the Markdown outputs (report.md, table.md)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd


def number(value: float, digits: int = 2) -> str:
    """A number with ``digits`` decimals; '–' when undefined, '∞' when infinite."""
    if pd.isna(value):
        return "–"
    return "∞" if np.isinf(value) else f"{value:.{digits}f}"


def p_value(value: float) -> str:
    return "–" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def p_clause(value: float) -> str:
    """'p = 0.050' or 'p < 0.001', for prose."""
    text = p_value(value)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def span(counts: pd.Series) -> str:
    """'3' when every count is 3, else '3–5'."""
    low, high = counts.min(), counts.max()
    return f"{low}" if low == high else f"{low}–{high}"


def yes_no(flags: pd.Series, undefined: pd.Series | None = None) -> np.ndarray:
    """'yes' / 'no' per flag, '–' where ``undefined`` is true."""
    text = np.where(flags.to_numpy(dtype=bool), "yes", "no")
    return text if undefined is None else np.where(undefined.to_numpy(dtype=bool), "–", text)


# The one Markdown rule for user text (method, dataset, class names, paths, reasons): characters
# that start markup inline are backslash-escaped (CommonMark escapes any ASCII punctuation), so a
# name renders as written and can open no emphasis (an underscore inside a word opens none), link,
# raw HTML, entity or code span; line breaks become spaces, so a name cannot start a line of its own.
_MARKDOWN_INLINE = re.compile(r"([\\`*{}\[\]<>|~$]|&(?=[A-Za-z#])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def markdown_text(text: object) -> str:
    """User text made inert in Markdown prose and table cells."""
    escaped = _MARKDOWN_INLINE.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))
    return re.sub(r"^#", r"\\#", escaped)  # a heading, were it to start a line


def markdown_code(text: object) -> str:
    """User text as a Markdown code span: fenced by more backticks than any run inside it (a
    backtick cannot close it early), padded when it starts or ends with one."""
    body = _LINE_BREAKS.sub(" ", str(text))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def render_markdown_table(table: pd.DataFrame, index_label: str = "", text_columns: tuple[str, ...] = ()) -> str:
    """A GitHub-flavoured Markdown table of preformatted cells.

    The index and ``text_columns`` are left-aligned, every other column (numbers) right-aligned.
    The header, the index and ``text_columns`` are user text (:func:`markdown_text`); the other
    cells are dcbench's own markup (bold, <ins>), in which only ``|`` is escaped.
    """

    def escape(text: object) -> str:
        return str(text).replace("|", r"\|")

    header = [markdown_text(index_label), *map(markdown_text, table.columns)]
    rule = ["---"] + ["---" if column in text_columns else "---:" for column in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for index, row in table.iterrows():
        cells = [markdown_text(v) if c in text_columns else escape(v) for c, v in zip(table.columns, row)]
        lines.append("| " + " | ".join([markdown_text(index), *cells]) + " |")
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_text(text: object) -> str:
    """Plain text made safe for LaTeX (every special character escaped), for captions."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
