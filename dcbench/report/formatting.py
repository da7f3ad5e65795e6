"""How numbers and tables are written in the Markdown outputs (report.md, table.md)."""

from __future__ import annotations

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


def render_markdown_table(table: pd.DataFrame, index_label: str = "", text_columns: tuple[str, ...] = ()) -> str:
    """A GitHub-flavoured Markdown table of preformatted cells.

    The index and ``text_columns`` are left-aligned, every other column (numbers) right-aligned.
    """

    def escape(text: object) -> str:
        return str(text).replace("|", r"\|")

    header = [index_label, *table.columns]
    rule = ["---"] + ["---" if column in text_columns else "---:" for column in table.columns]
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "|".join(rule) + "|"]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join(escape(value) for value in [index, *row]) + " |")
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
