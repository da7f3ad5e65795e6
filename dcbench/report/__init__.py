"""The report of an experiment: statistics tables, paper tables, figures and report.md.

Reads ``runs.csv`` (one row per trained evaluation model) and, when present, ``failures.csv``,
``spec.toml`` and the cells' synthetic sets from a results directory. The package holds one concept
per module: :mod:`.inputs` (validation), :mod:`.analysis` (the protocol's decisions),
:mod:`.tables` (paper tables), :mod:`.figures` and :mod:`.image_grids` (plots),
:mod:`.markdown` (report.md sections); the numbers come from :mod:`dcbench.stats`, the cost
columns, Pareto front and accuracy-vs-cost figure from :mod:`dcbench.report.cost`, the loss curves from
:mod:`dcbench.results.curves` and the optional comparison with a reference from :mod:`dcbench.report.compare`.
Every file is written into a staging directory and renamed into place at the end
(:func:`dcbench.host.outputs.staged_directory`), so a failed report leaves the old one whole.

Extending the report: write a function of :class:`ReportContext` and add it to
:data:`FIGURE_WRITERS` (writes figures with :func:`save_figure`, returns their paths; report.md
lists them under "Figures") or to :data:`SECTIONS` (returns report.md lines, in list order).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dcbench.host.errors import DcbenchError
from dcbench.host.files import csv_text
from dcbench.host.outputs import staged_directory
from dcbench.report import markdown
from dcbench.report.analysis import Analysis, analyse
from dcbench.report.context import FIGURE_FORMATS, ReportContext, method_order
from dcbench.report.figures import (
    accuracy_vs_cost_figures,
    accuracy_vs_ipc_figures,
    cd_diagram_figures,
    gain_figures,
    loss_curve_figures,
    plain_text,
    save_figure,
)
from dcbench.report.image_grids import synthetic_grid_figures
from dcbench.report.inputs import check_runs_have_cells, read_optional_text, reference_lines
from dcbench.report.tables import (
    LATEX,
    MARKDOWN,
    markdown_results_caption,
    markdown_results_table,
    paper_table,
    render_latex_table,
    table_caption,
    wide_table,
    wide_table_with_costs,
)
from dcbench.results.runs_table import ACCURACY, load_runs, read_optional_csv

KNOWN_FORMATS = ("csv", "tex", "md", *FIGURE_FORMATS)

FigureWriter = Callable[[ReportContext], list[Path]]
Section = Callable[[ReportContext], list[str]]

# Figures, written in this order before report.md.
FIGURE_WRITERS: list[FigureWriter] = [
    accuracy_vs_ipc_figures,
    cd_diagram_figures,
    accuracy_vs_cost_figures,
    gain_figures,
    synthetic_grid_figures,
    loss_curve_figures,
]

# report.md, top to bottom.
SECTIONS: list[Section] = [
    markdown.title_section,
    markdown.protocol_section,
    markdown.datasets_section,
    markdown.results_section,
    markdown.reference_section,
    markdown.comparisons_section,
    markdown.gains_section,
    markdown.tracks_section,
    markdown.precision_section,
    markdown.across_tasks_section,
    markdown.figures_section,
    markdown.cost_section,
    markdown.failures_section,
    markdown.trail_section,
    markdown.spec_section,
]

__all__ = [
    "ACCURACY",
    "Analysis",
    "FIGURE_WRITERS",
    "KNOWN_FORMATS",
    "LATEX",
    "MARKDOWN",
    "ReportContext",
    "SECTIONS",
    "analyse",
    "load_runs",
    "method_order",
    "paper_table",
    "reference_lines",
    "render_latex_table",
    "save_figure",
    "table_caption",
    "wide_table",
    "write_report",
]


def write_report(
    results_dir: Path,
    out_dir: Path | None = None,
    reference: str = "random",
    alpha: float = 0.05,
    formats: tuple[str, ...] = KNOWN_FORMATS,
    pairing: bool = True,
    against: Path | None = None,
) -> Path:
    """Compute the statistics of an experiment and write tables, figures and report.md.

    ``formats`` selects the outputs: csv (cells, comparisons, ranks, omnibus, across-task, wide
    and Pareto tables), tex (table.tex), md (table.md), png and pdf (figures); report.md is always
    written. Returns the path of report.md (in ``out_dir``, default ``results_dir/report``).
    ``against``: a reference (results directory or published-numbers CSV) to compare with, cell
    by cell (:mod:`dcbench.report.compare`; ``reference_comparison.csv`` and a report section).
    """
    results_dir = Path(results_dir)
    unknown = sorted(set(formats) - set(KNOWN_FORMATS))
    if unknown:
        raise DcbenchError(f"unknown report format(s) {', '.join(unknown)}: choose from {', '.join(KNOWN_FORMATS)}")
    if not 0.0 < alpha < 1.0:
        raise DcbenchError(f"alpha = {alpha} is not a probability: pass a value such as 0.05")
    runs = load_runs(results_dir)
    check_runs_have_cells(results_dir, runs)
    analysis = analyse(runs, reference, alpha, pairing)
    final_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    with staged_directory(final_dir) as staging:  # every file whole, or the old one kept
        _write_outputs(
            ReportContext(
                results_dir,
                staging,
                runs,
                analysis,
                alpha,
                tuple(formats),
                read_optional_csv(results_dir / "failures.csv"),
                read_optional_text(results_dir / "spec.toml"),
                Path(against) if against is not None else None,
            )
        )
    return final_dir / "report.md"


def _write_outputs(context: ReportContext) -> None:
    """Every requested file of the report into ``context.out_dir`` (a staging directory)."""
    analysis, out_dir, formats = context.analysis, context.out_dir, context.formats
    if "csv" in formats:
        for name, table in analysis.csv_tables().items():
            (out_dir / name).write_text(csv_text(table))
        (out_dir / "table_wide.csv").write_text(csv_text(wide_table_with_costs(analysis, context.runs), index=True))
        if not context.pareto.empty:
            (out_dir / "pareto.csv").write_text(csv_text(context.pareto))
    if "tex" in formats:
        (out_dir / "table.tex").write_text(
            render_latex_table(paper_table(analysis, LATEX), table_caption(analysis, context.alpha, latex=True))
        )
    if "md" in formats:
        (out_dir / "table.md").write_text(
            markdown_results_table(analysis, context.runs)
            + "\n\n"
            + markdown_results_caption(analysis, context.runs, context.alpha)
            + "\n"
        )
    if context.figure_formats:
        with plain_text():  # names are user text, never mathtext
            for write_figures in FIGURE_WRITERS:
                context.figures += write_figures(context)
    (out_dir / "report.md").write_text("\n".join(line for section in SECTIONS for line in section(context)))
