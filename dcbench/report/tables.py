"""Paper tables: methods x (eval arch, dataset, IPC) of mean ± SD with the best marked, in LaTeX
(table.tex), Markdown (table.md) and numbers (table_wide.csv); the Markdown and numeric twins also
carry each task's cost (:mod:`dcbench.report.cost`).

Marks, explained in the caption of both formats: bold = best mean, underline = second best,
† = not significantly different from the best, ‡ = not tested against the best (one seed or no
variance), so an untested cell never reads as "significantly worse".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dcbench.report import cost
from dcbench.report.analysis import Analysis
from dcbench.report.context import method_order
from dcbench.report.formatting import latex_text, render_markdown_table, span

TABLE_COLUMN_KEYS = ["eval_arch", "dataset", "ipc"]
# Packages table.tex needs beyond a stock article, named in its first comment line.
LATEX_PACKAGES = ("booktabs", "graphicx")


@dataclass(frozen=True)
class Markup:
    """How a paper-table cell is marked up in one output format."""

    plus_minus: str
    bold: str
    second: str
    not_different: str
    not_tested: str
    missing: str

    def cell(self, mean: float, sd: float) -> str:
        """Mean ± SD with one decimal; the mean alone when SD is undefined (one seed)."""
        return f"{mean:.1f}" if np.isnan(sd) else f"{mean:.1f}{self.plus_minus}{sd:.1f}"


LATEX = Markup(
    plus_minus=r"$\pm$",
    bold=r"\textbf{{{}}}",
    second=r"\underline{{{}}}",
    not_different=r"$^{\dagger}$",
    not_tested=r"$^{\ddagger}$",
    missing="--",
)
# GitHub strips <u>; <ins> survives its sanitiser and renders underlined.
MARKDOWN = Markup(
    plus_minus=" ± ", bold="**{}**", second="<ins>{}</ins>", not_different="†", not_tested="‡", missing="–"
)


def _vs_best_outcomes(comparisons: pd.DataFrame) -> tuple[set[tuple], set[tuple]]:
    """(method, eval_arch, dataset, ipc) keys not different from the best / not tested."""
    vs_best = comparisons[comparisons["kind"] == "vs_best"]
    keys = ["method_a", *TABLE_COLUMN_KEYS]
    untested = vs_best["p_adj"].isna()
    not_different = ~untested & ~vs_best["significant"].astype(bool)
    return (
        set(vs_best.loc[not_different, keys].itertuples(index=False, name=None)),
        set(vs_best.loc[untested, keys].itertuples(index=False, name=None)),
    )


def method_groups(analysis: Analysis, methods: list[str] | np.ndarray) -> list[list[str]]:
    """The compared methods in table order, by group: the coresets (the reference first), then
    the methods that synthesise images; empty groups left out."""
    ordered = method_order(methods, analysis.reference)
    groups = [[m for m in ordered if m in analysis.coresets], [m for m in ordered if m not in analysis.coresets]]
    return [group for group in groups if group]


def paper_table(analysis: Analysis, markup: Markup) -> pd.DataFrame:
    """Methods x (eval_arch, dataset, ipc) table of mean ± SD strings with the best marked, rows
    and datasets by their table names (``attrs["group_starts"]``: the position of the first row of
    each group after the first, where LaTeX draws a rule).

    Bold / second-best follow the numeric means (rank 1 / 2 in the column, ties share the rank).
    Reference lines (the whole training set), when present, are shown on top and never marked;
    coresets are grouped apart from the methods that synthesise images.
    """
    cells = analysis.cells
    compared = analysis.compared(cells)
    columns = pd.MultiIndex.from_frame(compared[TABLE_COLUMN_KEYS].drop_duplicates().sort_values(TABLE_COLUMN_KEYS))
    groups = method_groups(analysis, compared["method"].unique())
    rows = [method for group in groups for method in group]
    table = pd.DataFrame(markup.missing, index=rows, columns=columns, dtype=object)

    column_rank = compared.pivot_table(index="method", columns=TABLE_COLUMN_KEYS, values="mean").rank(
        axis=0, ascending=False, method="min"
    )
    not_different, not_tested = _vs_best_outcomes(analysis.comparisons)
    for cell in compared.itertuples(index=False):
        column = (cell.eval_arch, cell.dataset, cell.ipc)
        text = markup.cell(cell.mean, cell.sd)
        rank = column_rank.loc[cell.method, column]
        if rank == 1:
            text = markup.bold.format(text)
        elif rank == 2:
            text = markup.second.format(text)
        if (cell.method, *column) in not_different:
            text += markup.not_different
        elif (cell.method, *column) in not_tested:
            text += markup.not_tested
        table.loc[cell.method, column] = text

    top = []
    for method, label in analysis.reference_lines.items():
        shown = reference_line_cells(cells, method, columns)
        if not shown.empty:
            row = [
                markup.cell(cell["mean"], cell["sd"]) if cell is not None else markup.missing
                for cell in (shown.get(column) for column in columns)
            ]
            top.append(pd.DataFrame([row], index=[label], columns=columns))
    labels = analysis.method_labels
    table = table.rename(index=lambda m: labels.get(m, m))
    sizes = [len(top), *map(len, groups)] if top else list(map(len, groups))
    starts = list(np.cumsum(sizes)[:-1].astype(int))
    table = pd.concat([*top, table]) if top else table
    table.columns = table.columns.set_levels(
        [analysis.dataset_labels.get(d, d) for d in table.columns.levels[1]], level=1, verify_integrity=False
    )
    table.attrs["group_starts"] = starts
    return table


def reference_line_cells(
    cells: pd.DataFrame, method: str, columns: pd.MultiIndex | list[tuple[str, str, int]]
) -> pd.Series:
    """A reference line's cell shown under each table column, keyed by column.

    Training on the full set does not depend on IPC, so a reference cell recorded at another IPC
    (e.g. once per dataset with ipc 0) is shown under every IPC of its dataset and architecture;
    a cell recorded at the column's own IPC takes precedence.
    """
    whole = cells[cells["method"] == method].sort_values("ipc")
    chosen = {}
    for eval_arch, dataset, ipc in columns:
        candidates = whole[(whole["eval_arch"] == eval_arch) & (whole["dataset"] == dataset)]
        if candidates.empty:
            continue
        same_ipc = candidates[candidates["ipc"] == ipc]
        chosen[(eval_arch, dataset, ipc)] = (same_ipc if len(same_ipc) else candidates).iloc[0]
    return pd.Series(chosen, dtype=object)


def _presentation_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Drop the eval_arch level when there is one architecture; name the levels for readers."""
    table = table.copy()
    table.columns = table.columns.set_levels(table.columns.levels[2].astype(str), level=2).set_names(
        ["Eval arch", "Dataset", "IPC"]
    )
    if table.columns.get_level_values(0).nunique() == 1:
        table.columns = table.columns.droplevel(0)
    return table


def table_caption(analysis: Analysis, alpha: float, latex: bool) -> str:
    """The rule the marks follow, in the caption of both table formats."""
    seeds = span(analysis.compared(analysis.cells)["n_seeds"])
    test = "paired or Welch t" if analysis.comparisons["paired"].any() else "Welch t"
    seed_noun = "seed" if seeds == "1" else "seeds"
    markup = LATEX if latex else MARKDOWN
    percent, pm, alpha_symbol = (r"\%", r"$\pm$", r"$\alpha$") if latex else ("%", "±", "α")
    protocol = latex_text(analysis.protocol) if latex else analysis.protocol
    caption = (
        f"Test accuracy ({percent}), mean{pm}SD over {seeds} synthesis {seed_noun} "
        f"(evaluation models averaged within a seed)"
        + (f"; {protocol}" if protocol else "")
        + f". Bold: best mean; underline: second best; {markup.not_different}: not significantly "
        f"different from the best ({test} on per-seed means, Holm over all "
        f"{analysis.family_size} pairwise comparisons, {alpha_symbol}={alpha:g}): not detected "
        "at this precision, which is not evidence of equality"
    )
    _, not_tested = _vs_best_outcomes(analysis.comparisons)
    if not_tested:
        caption += (
            f"; {markup.not_tested}: not tested against the best (one synthesis seed or "
            "no variance), so neither different nor equal"
        )
    return caption + "."


def render_latex_table(table: pd.DataFrame, caption: str) -> str:
    """Booktabs LaTeX through Styler, shrunk to the text width when wider, packages named on top.

    Labels are escaped; the cells already hold LaTeX.
    """
    table = _presentation_columns(table)
    styler = table.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        position_float="centering",
        column_format="l" + "c" * table.shape[1],
        caption=caption,
        label="tab:dcbench",
    )
    # \width is the table's natural width inside \resizebox: shrink only what would overflow.
    latex = latex.replace(
        r"\begin{tabular}",
        "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n\\begin{tabular}",
        1,
    )
    latex = latex.replace(r"\end{tabular}", "\\end{tabular}%\n}", 1)
    latex = latex.replace(
        "\\label{tab:dcbench}\n", "\\label{tab:dcbench}\n\\medskip\n", 1
    )  # caption apart from the rule
    latex = _rules_between_groups(latex, table.attrs.get("group_starts", []))
    packages = ", ".join(rf"\usepackage{{{name}}}" for name in LATEX_PACKAGES)
    return (
        f"% dcbench table. Preamble: {packages}\n"
        "% (booktabs for the rules, graphicx for \\resizebox, which shrinks a table wider than "
        "the text).\n" + latex
    )


def _rules_between_groups(latex: str, starts: list[int]) -> str:
    """A \\midrule before each body row of ``starts`` (row positions; the body lies between the
    header's \\midrule and the \\bottomrule, one row per line)."""
    lines = latex.split("\n")
    body = lines.index("\\midrule") + 1
    for offset, start in enumerate(sorted(starts)):
        lines.insert(body + start + offset, "\\midrule")
    return "\n".join(lines)


def markdown_paper_table(table: pd.DataFrame, extra: pd.DataFrame | None = None) -> str:
    """The Markdown twin of the paper table: one header row, columns named 'arch dataset IPC n';
    ``extra`` text columns (rows keyed by the same method labels) are appended on the right."""
    table = _presentation_columns(table)
    table.columns = [" ".join(column[:-1]) + f" IPC {column[-1]}" for column in table.columns]
    if extra is not None:
        table = table.join(extra).fillna(MARKDOWN.missing)
    return render_markdown_table(table, "Method")


def has_costs(runs: pd.DataFrame) -> bool:
    """Whether runs.csv records any cost column (older or hand-made files may not)."""
    return any(column in runs.columns and runs[column].notna().any() for column in cost.COSTS)


def markdown_results_table(analysis: Analysis, runs: pd.DataFrame) -> str:
    """table.md and report.md's results table: the paper table with, per task, a cost column
    (condensation / evaluation seconds / peak memory, :mod:`dcbench.report.cost`) where runs.csv has costs."""
    extra = cost.markdown_cost_columns(runs, analysis.reference_lines) if has_costs(runs) else None
    if extra is not None:  # by the table names, like the paper table's rows and columns
        extra = extra.rename(index=lambda m: analysis.method_labels.get(m, m))
        for dataset, label in analysis.dataset_labels.items():
            extra.columns = [c.replace(f"{dataset} IPC", f"{label} IPC") for c in extra.columns]
    return markdown_paper_table(paper_table(analysis, MARKDOWN), extra)


def markdown_results_caption(analysis: Analysis, runs: pd.DataFrame, alpha: float) -> str:
    """The Markdown table caption: the marks' rule, and the cost columns' units where shown."""
    caption = table_caption(analysis, alpha, latex=False)
    return caption + " " + cost.cost_caption(runs) if has_costs(runs) else caption


def wide_table_with_costs(analysis: Analysis, runs: pd.DataFrame) -> pd.DataFrame:
    """table_wide.csv: :func:`wide_table` with condense_s, eval_s and peak memory per column."""
    return cost.with_cost_columns(wide_table(analysis), runs, analysis.reference_lines)


def wide_table(analysis: Analysis) -> pd.DataFrame:
    """Numeric twin of the paper table: mean and SD per (eval_arch, dataset, ipc) column."""
    cells = analysis.cells
    lines = analysis.reference_lines
    present = set(cells["method"])
    rows = [m for m in lines if m in present] + method_order(
        analysis.compared(cells)["method"].unique(), analysis.reference
    )
    wide = cells.pivot(index="method", columns=TABLE_COLUMN_KEYS, values=["mean", "sd"])
    wide = wide.reorder_levels([1, 2, 3, 0], axis=1).sort_index(axis=1)
    return wide.reindex(rows).rename(index=lines)
