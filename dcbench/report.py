"""The report of an experiment: statistics tables, paper tables, plots and report.md.

Reads ``runs.csv`` (one row per trained evaluation model, accuracy as a fraction) and, when
present, ``failures.csv`` and ``spec.toml`` from a results directory. All reported accuracies and
differences are in percent (accuracy points). The statistics come from :mod:`dcbench.stats`;
this module validates the input, applies the protocol's decisions (what is compared, which
across-task analysis the number of tasks allows) and renders the outputs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from dcbench import cost, stats
from dcbench.errors import DcbenchError
from dcbench.identity import identity_notes
from dcbench.outputs import staged_directory

WHOLE_DATASET = "whole"
WHOLE_DATASET_LABEL = "Whole dataset"
KNOWN_FORMATS = ("csv", "tex", "md", "png")

ACCURACY = "acc_pct"  # test_acc in percent: the unit of every reported number
STATISTICS_COLUMNS = ("run_id", "method", "dataset", "ipc", "eval_arch", "synth_seed",
                      "eval_index", "test_acc")
COST_COLUMNS = ("condense_s", "eval_s", "peak_rss_mb", "cuda_peak_mb")
TABLE_COLUMN_KEYS = ["eval_arch", "dataset", "ipc"]


# --------------------------------------------------------------------------------------------
# Input


def load_runs(results_dir: Path) -> pd.DataFrame:
    """Read and validate ``results_dir/runs.csv``; add the accuracy in percent.

    Raises DcbenchError with a one-line cause and fix for anything the statistics cannot use.
    """
    path = Path(results_dir) / "runs.csv"
    if not path.is_file():
        raise DcbenchError(f"{path} not found: pass the results directory written by `dcbench run`")
    try:
        runs = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        runs = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DcbenchError(f"{path} is not a CSV table ({type(exc).__name__}); `dcbench run` on the same spec "
                           "and --out rebuilds it from runs/*/metrics.json") from None
    if runs.empty:
        if (path.parent / "failures.csv").is_file():
            raise DcbenchError(f"{path} has no rows, every cell failed: see failures.csv, fix the "
                               "cause and re-run `dcbench run`")
        raise DcbenchError(f"{path} has no rows: run at least one cell with `dcbench run`")
    missing = [column for column in STATISTICS_COLUMNS if column not in runs.columns]
    if missing:
        raise DcbenchError(f"{path} lacks column(s) {', '.join(missing)}: "
                           "regenerate it with the current `dcbench run`")
    for column in ("method", "dataset", "eval_arch", "run_id"):
        runs[column] = runs[column].astype(str)
    for column in ("ipc", "synth_seed", "eval_index", "test_acc"):
        values = pd.to_numeric(runs[column], errors="coerce")
        bad = runs.loc[values.isna(), "run_id"].unique()
        if bad.size:
            raise DcbenchError(f"{path} has a missing or non-numeric {column} in run(s) "
                               f"{_some(bad)}: re-run those cells or delete their rows")
        runs[column] = values if column == "test_acc" else values.astype(int)
    outside = runs.loc[~runs["test_acc"].between(0.0, 1.0), "run_id"].unique()
    if outside.size:
        raise DcbenchError(f"{path} has test_acc outside [0, 1] in run(s) {_some(outside)}: "
                           "runs.csv stores accuracy as a fraction, fix the writer")
    duplicated = runs.duplicated([*stats.CELL_KEYS, "synth_seed", "eval_index"])
    if duplicated.any():
        raise DcbenchError(f"{path} repeats evaluations of run(s) "
                           f"{_some(runs.loc[duplicated, 'run_id'].unique())}: rebuild runs.csv")
    runs[ACCURACY] = 100.0 * runs["test_acc"]
    return runs


def _some(values: np.ndarray, limit: int = 3) -> str:
    """At most ``limit`` values for an error line, and how many more there are."""
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f" (+{values.size - limit} more)" if values.size > limit else "")


def _span(counts: pd.Series) -> str:
    """'3' when every count is 3, else '3–5'."""
    low, high = counts.min(), counts.max()
    return f"{low}" if low == high else f"{low}–{high}"


def _read_optional_csv(path: Path) -> pd.DataFrame:
    """A CSV that may be absent or empty (no failures is the normal case)."""
    if not path.is_file():
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DcbenchError(f"{path} is not a CSV table ({type(exc).__name__}); `dcbench run` on the same spec "
                           "and --out rebuilds it") from None


# --------------------------------------------------------------------------------------------
# Analysis


@dataclass
class Analysis:
    """Everything the report shows, computed once from runs.csv."""

    cells: pd.DataFrame          # per-cell summaries, the whole-dataset reference included
    comparisons: pd.DataFrame    # within-task tests, Holm over all of them
    ranks: pd.DataFrame          # per complete task and method: mean and rank (1 = best)
    omnibus: pd.DataFrame        # one row: Friedman, Iman–Davenport, Nemenyi CD
    across_tasks: pd.DataFrame   # pairwise Wilcoxon (N >= 6) or win/tie/loss vs the reference
    across_tasks_kind: str       # "wilcoxon", "win_tie_loss" or "none"
    reference: str | None        # the reference method, None when it is not in runs.csv
    trail: list[str]             # the decisions taken, in words


def analyse(runs: pd.DataFrame, reference: str = "random", alpha: float = 0.05,
            paired: bool = False) -> Analysis:
    """Apply the statistics protocol to validated runs (see :func:`load_runs`)."""
    trail: list[str] = identity_notes(runs)  # methods shown once per identity where they have several
    cells = stats.summarize_cells(runs, ACCURACY)
    compared_runs = runs[runs["method"] != WHOLE_DATASET]
    if compared_runs.empty:
        raise DcbenchError("runs.csv holds only the whole-dataset reference: "
                           "run at least one condensation method")
    if len(compared_runs) < len(runs):
        trail.append(f"Method `{WHOLE_DATASET}` is the whole-dataset reference line: excluded "
                     "from comparisons, ranks and omnibus tests.")
    single_seed = int((cells["n_seeds"] == 1).sum())
    if single_seed:
        trail.append(f"{single_seed} cell(s) have one synthesis seed: their SD, CI and tests are "
                     "undefined (NaN); run at least 3 seeds per cell.")

    methods = sorted(compared_runs["method"].unique())
    if reference not in methods:
        trail.append(f"Reference `{reference}` is not in runs.csv (methods: {', '.join(methods)}): "
                     "only comparisons with the best method were run.")
    active_reference = reference if reference in methods else None

    comparisons = stats.compare_within_tasks(stats.seed_scores(compared_runs, ACCURACY),
                                             active_reference, alpha, paired)
    trail.append(_within_task_decision(comparisons, alpha, paired))
    untested = int(comparisons["p_raw"].isna().sum())
    if untested:
        trail.append(f"{untested} comparison(s) could not be tested (fewer than 2 seeds or no "
                     "variance): p is NaN and they are outside the Holm family.")

    compared_cells = cells[cells["method"] != WHOLE_DATASET]
    matrix = stats.task_score_matrix(compared_cells)
    complete = matrix.dropna()
    if len(complete) < len(matrix):
        trail.append(f"{len(matrix) - len(complete)} of {len(matrix)} task(s) lack a cell for some "
                     "method: ranks and omnibus tests use the complete tasks only.")
    n_tasks, k = complete.shape
    ranks = _long_ranks(complete)
    omnibus = pd.DataFrame([stats.omnibus_tests(complete, alpha)])
    if k < 3 or n_tasks < 2:
        trail.append(f"Friedman / Iman–Davenport not run: they need >= 3 methods and >= 2 tasks "
                     f"(here k = {k}, N = {n_tasks}).")
    elif np.isnan(omnibus.at[0, "friedman_chi2"]):
        trail.append("Friedman / Iman–Davenport undefined: every task ties all methods.")
    if k < 2 or n_tasks < 2:
        trail.append("No CD diagram: it needs >= 2 methods and >= 2 complete tasks.")

    if n_tasks >= stats.MIN_TASKS_FOR_WILCOXON and k >= 2:
        across_tasks = stats.wilcoxon_across_tasks(complete, alpha)
        across_tasks_kind = "wilcoxon"
        trail.append(f"{n_tasks} tasks >= {stats.MIN_TASKS_FOR_WILCOXON}: pairwise Wilcoxon "
                     f"signed-rank over tasks, Holm over {len(across_tasks)} pair(s).")
    elif active_reference is not None:
        across_tasks = stats.win_tie_loss(comparisons, active_reference)
        across_tasks_kind = "win_tie_loss"
        trail.append(f"{n_tasks} complete task(s) < {stats.MIN_TASKS_FOR_WILCOXON}: pairwise "
                     "Wilcoxon not run (it cannot reach two-sided p < .05), win/tie/loss "
                     f"counts vs `{active_reference}` shown.")
    else:
        across_tasks = pd.DataFrame()
        across_tasks_kind = "none"
        trail.append(f"{n_tasks} complete task(s) < {stats.MIN_TASKS_FOR_WILCOXON} and no "
                     "reference: only mean ranks are shown across tasks.")
    return Analysis(cells, comparisons, ranks, omnibus, across_tasks, across_tasks_kind,
                    active_reference, trail)


def _family_size(comparisons: pd.DataFrame) -> int:
    """How many within-task tests share the Holm correction (0 when nothing was compared)."""
    return int(comparisons["family_size"].iloc[0]) if len(comparisons) else 0


def _within_task_decision(comparisons: pd.DataFrame, alpha: float, paired: bool) -> str:
    """One trail line: which test ran and the Holm family it belongs to."""
    line = (f"Within-task tests: two-sided Welch t on per-seed means; Holm over "
            f"{_family_size(comparisons)} "
            f"comparison(s), α = {alpha:g}.")
    if paired:
        n_paired = int(comparisons["paired"].sum())
        line += (f" Paired t requested: used for {n_paired} of {len(comparisons)} comparison(s); "
                 "the others have different seed lists and keep Welch.")
    return line


def _long_ranks(complete: pd.DataFrame) -> pd.DataFrame:
    """Tidy ranks table: one row per (task, method) with the cell mean and its rank."""
    means = complete.stack().rename("mean")
    ranks = stats.rank_within_tasks(complete).stack().rename("rank")
    return pd.concat([means, ranks], axis=1).reset_index()


# --------------------------------------------------------------------------------------------
# Paper tables


@dataclass(frozen=True)
class Markup:
    """How a paper-table cell is marked up in one output format."""

    plus_minus: str
    bold: str
    underline: str
    dagger: str
    missing: str

    def cell(self, mean: float, sd: float) -> str:
        """Mean ± SD with one decimal; the mean alone when SD is undefined (one seed)."""
        return f"{mean:.1f}" if np.isnan(sd) else f"{mean:.1f}{self.plus_minus}{sd:.1f}"


LATEX = Markup(plus_minus=r"$\pm$", bold=r"\textbf{{{}}}", underline=r"\underline{{{}}}",
               dagger=r"$^{\dagger}$", missing="--")
MARKDOWN = Markup(plus_minus=" ± ", bold="**{}**", underline="<u>{}</u>", dagger="†",
                  missing="–")


def method_order(methods: list[str] | np.ndarray, reference: str | None) -> list[str]:
    """Table and legend order: the reference first, then the other methods alphabetically."""
    others = sorted(m for m in set(methods) if m not in (reference, WHOLE_DATASET))
    return ([reference] if reference in set(methods) else []) + others


def paper_table(analysis: Analysis, markup: Markup) -> pd.DataFrame:
    """Methods x (eval_arch, dataset, ipc) table of mean ± SD strings with the best marked.

    Bold / underline follow the numeric means (rank 1 / 2 in the column, ties share the rank);
    the dagger marks methods whose Holm-adjusted test against the best is not significant.
    The whole-dataset line, when present, is shown on top and never marked.
    """
    cells = analysis.cells
    compared = cells[cells["method"] != WHOLE_DATASET]
    columns = pd.MultiIndex.from_frame(
        compared[TABLE_COLUMN_KEYS].drop_duplicates().sort_values(TABLE_COLUMN_KEYS))
    rows = method_order(compared["method"].unique(), analysis.reference)
    table = pd.DataFrame(markup.missing, index=rows, columns=columns, dtype=object)

    column_rank = (compared.pivot_table(index="method", columns=TABLE_COLUMN_KEYS, values="mean")
                   .rank(axis=0, ascending=False, method="min"))
    vs_best = analysis.comparisons[analysis.comparisons["kind"] == "vs_best"]
    not_significant = vs_best["p_adj"].notna() & ~vs_best["significant"]
    tied_with_best = set(vs_best.loc[not_significant, ["method_a", *TABLE_COLUMN_KEYS]]
                         .itertuples(index=False, name=None))
    for cell in compared.itertuples(index=False):
        column = (cell.eval_arch, cell.dataset, cell.ipc)
        text = markup.cell(cell.mean, cell.sd)
        rank = column_rank.loc[cell.method, column]
        if rank == 1:
            text = markup.bold.format(text)
        elif rank == 2:
            text = markup.underline.format(text)
        if (cell.method, *column) in tied_with_best:
            text += markup.dagger
        table.loc[cell.method, column] = text

    whole = _whole_dataset_cells(cells, columns)
    if not whole.empty:
        whole_row = [markup.cell(cell["mean"], cell["sd"]) if cell is not None else markup.missing
                     for cell in (whole.get(column) for column in columns)]
        table = pd.concat([pd.DataFrame([whole_row], index=[WHOLE_DATASET_LABEL], columns=columns),
                           table])
    return table


def _whole_dataset_cells(cells: pd.DataFrame, columns: pd.MultiIndex) -> pd.Series:
    """The whole-dataset cell shown under each table column, keyed by column.

    Training on the full set does not depend on IPC, so a whole-dataset cell recorded at another
    IPC (e.g. once per dataset with ipc 0) is shown under every IPC of its dataset and
    architecture; a cell recorded at the column's own IPC takes precedence.
    """
    whole = cells[cells["method"] == WHOLE_DATASET].sort_values("ipc")
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
    table.columns = table.columns.set_levels(
        table.columns.levels[2].astype(str), level=2).set_names(["Eval arch", "Dataset", "IPC"])
    if table.columns.get_level_values(0).nunique() == 1:
        table.columns = table.columns.droplevel(0)
    return table


def table_caption(analysis: Analysis, alpha: float, latex: bool) -> str:
    """The rule the marks follow, in the caption of both table formats."""
    seeds = _span(analysis.cells.loc[analysis.cells["method"] != WHOLE_DATASET, "n_seeds"])
    family = _family_size(analysis.comparisons)
    test = "paired or Welch t" if analysis.comparisons["paired"].any() else "Welch t"
    seed_noun = "seed" if seeds == "1" else "seeds"
    percent, pm, dagger, alpha_symbol = (r"\%", r"$\pm$", r"$^{\dagger}$", r"$\alpha$") if latex \
        else ("%", "±", "†", "α")
    return (f"Test accuracy ({percent}), mean{pm}SD over {seeds} synthesis {seed_noun} (evaluation "
            f"models averaged within a seed). Bold: best mean; underline: second best; "
            f"{dagger}: not significantly different from the best ({test}, Holm over {family} "
            f"comparisons, {alpha_symbol}={alpha:g}).")


def render_latex_table(table: pd.DataFrame, caption: str) -> str:
    """Booktabs LaTeX through Styler; labels are escaped, the cells already hold LaTeX."""
    table = _presentation_columns(table)
    styler = table.style.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    return styler.to_latex(hrules=True, multicol_align="c", position_float="centering",
                           column_format="l" + "c" * table.shape[1], caption=caption,
                           label="tab:dcbench")


def render_markdown_table(table: pd.DataFrame, index_label: str = "",
                          text_columns: tuple[str, ...] = ()) -> str:
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


def _markdown_paper_table(table: pd.DataFrame, extra: pd.DataFrame | None = None) -> str:
    table = _presentation_columns(table)
    table.columns = [" ".join(column[:-1]) + f" IPC {column[-1]}" for column in table.columns]
    if extra is not None:  # e.g. the cost columns
        table = table.join(extra).fillna(MARKDOWN.missing)
    return render_markdown_table(table, "Method")


def wide_table(analysis: Analysis) -> pd.DataFrame:
    """Numeric twin of the paper table: mean and SD per (eval_arch, dataset, ipc) column."""
    cells = analysis.cells
    rows = [WHOLE_DATASET] * bool((cells["method"] == WHOLE_DATASET).any()) + method_order(
        cells["method"].unique(), analysis.reference)
    wide = cells.pivot(index="method", columns=TABLE_COLUMN_KEYS, values=["mean", "sd"])
    wide = wide.reorder_levels([1, 2, 3, 0], axis=1).sort_index(axis=1)
    return wide.reindex(rows).rename(index={WHOLE_DATASET: WHOLE_DATASET_LABEL})


# --------------------------------------------------------------------------------------------
# Plots


def _method_colors(methods: list[str]) -> dict[str, tuple[float, ...]]:
    """One colour per method, the same in every plot of the report."""
    palette = colormaps["tab10"].colors
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure).print_png(path)


def _file_part(name: object) -> str:
    """A dataset name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def plot_accuracy_vs_ipc(cells: pd.DataFrame, dataset: str, methods: list[str],
                         colors: dict[str, tuple[float, ...]], path: Path) -> None:
    """Mean accuracy vs IPC with 95% t-interval error bars; one panel per eval architecture."""
    data = cells[cells["dataset"] == dataset]
    archs = sorted(data.loc[data["method"] != WHOLE_DATASET, "eval_arch"].unique())
    figure = Figure(figsize=(2.5 + 4.5 * len(archs), 4.0), layout="constrained")
    axes = figure.subplots(1, len(archs), sharey=True, squeeze=False)[0]
    for ax, arch in zip(axes, archs):
        arch_cells = data[data["eval_arch"] == arch]
        ipcs = sorted(arch_cells.loc[arch_cells["method"] != WHOLE_DATASET, "ipc"].unique())
        shown = [m for m in methods if m in set(arch_cells["method"])]
        for i, method in enumerate(shown):
            cell = arch_cells[arch_cells["method"] == method].sort_values("ipc")
            # Spread the methods slightly along the log axis so error bars do not overlap.
            dodge = 1.0 + 0.04 * (i - (len(shown) - 1) / 2)
            error = np.vstack([cell["mean"] - cell["ci_low"], cell["ci_high"] - cell["mean"]])
            ax.errorbar(cell["ipc"] * dodge, cell["mean"], yerr=np.nan_to_num(error), marker="o",
                        markersize=4, capsize=3, linewidth=1.2, color=colors[method], label=method)
        whole = _whole_dataset_cells(cells, pd.MultiIndex.from_tuples(
            [(arch, dataset, ipc) for ipc in ipcs]))
        if not whole.empty:
            _plot_whole_dataset(ax, whole)
        ax.set_xscale("log")
        ax.set_xlim(min(ipcs) / 1.5, max(ipcs) * 1.5)
        ax.set_xticks(ipcs, labels=[str(ipc) for ipc in ipcs])
        ax.minorticks_off()
        ax.set_xlabel("images per class (IPC)")
        ax.set_title(f"{dataset}, evaluated on {arch}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    legend = {label: handle for ax in axes
              for handle, label in zip(*ax.get_legend_handles_labels())}
    figure.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize="small",
                  title="mean, 95% t-CI\nover seeds", title_fontsize="small")
    _save(figure, path)


def _plot_whole_dataset(ax: Axes, whole: pd.Series) -> None:
    """The whole-dataset line and its 95% CI band; across the panel when it does not vary by IPC."""
    means, lows, highs = (np.array([cell[key] for cell in whole], dtype=float)
                          for key in ("mean", "ci_low", "ci_high"))
    style = {"color": "0.3", "linestyle": "--", "label": WHOLE_DATASET_LABEL}
    band = {"color": "0.3", "alpha": 0.15, "linewidth": 0}
    if np.all(means == means[0]):  # one cell shown under every IPC
        ax.axhline(means[0], **style)
        if np.isfinite(lows[0]):
            ax.axhspan(lows[0], highs[0], **band)
    else:
        ipcs = [ipc for _, _, ipc in whole.index]
        ax.plot(ipcs, means, marker="s", markersize=3, **style)
        ax.fill_between(ipcs, lows, highs, **band)


def plot_cd_diagram(mean_ranks: pd.Series, cd: float, n_tasks: int, alpha: float,
                    path: Path) -> None:
    """Demšar-style critical-difference diagram of mean ranks (rank 1 = best, on the left).

    Methods joined by a thick bar differ in mean rank by less than the Nemenyi CD. It is a visual
    summary only; pairwise claims across tasks come from the Wilcoxon tests.
    """
    mean_ranks = mean_ranks.sort_values()
    k = len(mean_ranks)
    left_count = (k + 1) // 2
    rows = max(left_count, k - left_count)
    cliques = _cliques(mean_ranks.to_numpy(), cd)
    line_step, clique_step = 0.5, 0.25
    depth = 0.2 + len(cliques) * clique_step + rows * line_step + 0.1
    figure = Figure(figsize=(7.0, 1.0 + 0.5 * depth), layout="constrained")
    ax = figure.subplots()
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(-depth, 1.3)
    ax.axis("off")
    x_left, x_right = 0.28, 0.72

    def x(rank: float) -> float:
        return x_left + (rank - 1.0) / max(k - 1, 1) * (x_right - x_left)

    ax.plot([x(1), x(k)], [0, 0], color="black", linewidth=1)
    for tick in np.arange(1.0, k + 0.5, 0.5):
        major = tick == int(tick)
        ax.plot([x(tick)] * 2, [0, 0.18 if major else 0.09], color="black", linewidth=1)
        if major:
            ax.text(x(tick), 0.25, f"{int(tick)}", ha="center", va="bottom", fontsize=9)
    ax.plot([x(1), x(1 + cd)], [0.95, 0.95], color="black", linewidth=1.5)
    for end in (1, 1 + cd):
        ax.plot([x(end)] * 2, [0.88, 1.02], color="black", linewidth=1)
    ax.text(x(1 + cd) + 0.01, 0.95, f"CD = {cd:.2f}", ha="left", va="center", fontsize=9)

    for level, (first, last) in enumerate(cliques):
        y = -0.2 - level * clique_step
        ax.plot([x(mean_ranks.iloc[first]) - 0.008, x(mean_ranks.iloc[last]) + 0.008], [y, y],
                color="black", linewidth=3, solid_capstyle="butt")
    top = -0.2 - len(cliques) * clique_step
    for i, (method, rank) in enumerate(mean_ranks.items()):
        on_left = i < left_count
        row = i if on_left else k - 1 - i
        y = top - (row + 0.5) * line_step
        edge = x_left - 0.04 if on_left else x_right + 0.04
        ax.plot([x(rank), x(rank), edge], [0, y, y], color="0.35", linewidth=0.9)
        ax.text(edge - 0.01 if on_left else edge + 0.01, y, f"{method} ({rank:.2f})",
                ha="right" if on_left else "left", va="center", fontsize=9)
    ax.set_title(f"Mean rank over {n_tasks} tasks (1 = best). Bars join methods closer than the\n"
                 f"Nemenyi critical difference (α = {alpha:g}); a visual summary, not a test.",
                 fontsize=9)
    _save(figure, path)


def _cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs of consecutive methods whose mean ranks all lie within CD of each other."""
    spans = []
    for first in range(len(sorted_ranks)):
        last = int(np.searchsorted(sorted_ranks, sorted_ranks[first] + cd, side="left")) - 1
        if last > first and not any(last <= previous_last for _, previous_last in spans):
            spans.append((first, last))
    return spans


def plot_synthetic_grids(runs: pd.DataFrame, results_dir: Path, out_dir: Path,
                         methods: list[str]) -> list[Path]:
    """Per (dataset, ipc), each method's grid.png of its lowest-seed cell side by side.

    Cells without a grid image are left out; a figure is written only when some image exists.
    """
    written = []
    first_runs = (runs.sort_values(["synth_seed", "run_id"])
                  .drop_duplicates(["dataset", "ipc", "method"]))
    for (dataset, ipc), group in first_runs.groupby(["dataset", "ipc"], sort=True):
        run_of = group.set_index("method")
        panels = []
        for method in (m for m in methods if m in run_of.index):
            grid = results_dir / "runs" / run_of.at[method, "run_id"] / "grid.png"
            if grid.is_file():
                panels.append((f"{method} (seed {run_of.at[method, 'synth_seed']})", imread(grid)))
        if not panels:
            continue
        # Grids are classes x IPC images: wide strips at IPC 1 stack best in one column.
        aspect = min(max(image.shape[0] / image.shape[1] for _, image in panels), 3.0)
        columns = 1 if aspect < 0.5 else min(len(panels), 4)
        panel_width = 8.0 if columns == 1 else 3.2
        n_rows = -(-len(panels) // columns)
        height = (panel_width * aspect + 0.4) * n_rows + 0.4  # + titles
        figure = Figure(figsize=(panel_width * columns, height), layout="constrained")
        axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
        for ax, (title, image) in zip(axes, panels):
            ax.imshow(image, interpolation="nearest")
            ax.set_title(title, fontsize=10)
        for ax in axes:
            ax.axis("off")
        figure.suptitle(f"Synthetic sets: {dataset}, IPC {ipc} (lowest synthesis seed per method)")
        path = out_dir / f"synthetic_grids_{_file_part(dataset)}_ipc{ipc}.png"
        _save(figure, path)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# report.md


def _number(value: float, digits: int = 2) -> str:
    if pd.isna(value):
        return "–"
    return "∞" if np.isinf(value) else f"{value:.{digits}f}"


def _p_value(value: float) -> str:
    return "–" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _p_clause(value: float) -> str:
    """'p = 0.050' or 'p < 0.001', for prose."""
    text = _p_value(value)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _values(runs: pd.DataFrame, column: str) -> str:
    """The distinct values of a descriptive column, or a note that it was not recorded."""
    if column not in runs.columns or runs[column].isna().all():
        return "not recorded"
    return ", ".join(str(value) for value in sorted(runs[column].dropna().unique(), key=str))


def _protocol_section(runs: pd.DataFrame, analysis: Analysis, alpha: float) -> list[str]:
    cells = analysis.cells
    n_tasks = len(cells.loc[cells["method"] != WHOLE_DATASET, list(stats.TASK_KEYS)]
                  .drop_duplicates())
    seeds = ", ".join(map(str, sorted(runs["synth_seed"].unique())))
    evals_per_seed = runs.groupby([*stats.CELL_KEYS, "synth_seed"]).size()
    family = _family_size(analysis.comparisons)
    targets = f" and vs the reference `{analysis.reference}`" if analysis.reference else ""
    versions = ""
    if "method_version" in runs.columns:
        versions = " (" + ", ".join(
            f"{method} {version}" for method, version
            in runs.groupby("method")["method_version"].first().items()) + ")"
    return [
        "## Protocol", "",
        f"- Grid: {runs['method'].nunique()} methods{versions} on {n_tasks} task(s) "
        f"(dataset × IPC × evaluation architecture), {len(cells)} cells, {len(runs)} trained "
        "evaluation models.",
        f"- Synthesis seeds: {seeds}; {_span(cells['n_seeds'])} per cell. "
        "The synthesis seed is the unit of replication.",
        f"- Evaluation models per seed: {_values(runs, 'eval_models')} (found "
        f"{_span(evals_per_seed)}), trained for {_values(runs, 'eval_epochs')} epochs with "
        f"augmentation {_values(runs, 'eval_augmentation')}; "
        f"protocol {_values(runs, 'protocol')}, preset {_values(runs, 'preset')}, "
        f"dcbench {_values(runs, 'dcbench_version')}.",
        "- Per cell: evaluation models are averaged within each seed; mean ± SD (ddof = 1) and "
        "a 95% t-interval over the per-seed means. `cells.csv` also holds the pooled paper-style "
        "mean and SD (ddof = 0) over all evaluation models, for comparison with published tables.",
        f"- Within each task: every method vs the best mean{targets}, two-sided Welch "
        "t-test with the 95% CI of the difference and "
        f"Hedges' g; Holm over all {family} comparisons of the report, α = {alpha:g}. No rank "
        "tests within cells: with a handful of seeds they cannot reach significance.",
        "- Across tasks: mean ranks (1 = best), Friedman and Iman–Davenport tests, the Nemenyi "
        f"critical difference (CD diagram, visual only); pairwise Wilcoxon signed-rank over tasks "
        f"with Holm when there are at least {stats.MIN_TASKS_FOR_WILCOXON} tasks, else "
        "win/tie/loss counts (tie = not significant after Holm).",
        "- Units: accuracy and differences in percent (runs.csv stores fractions).",
        "",
    ]


def _comparisons_markdown(comparisons: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "task": comparisons["dataset"] + " IPC " + comparisons["ipc"].astype(str) + " "
                + comparisons["eval_arch"],
        "A": comparisons["method_a"],
        "B": comparisons["method_b"],
        "kind": comparisons["kind"],
        "test": comparisons["test"],
        "Δ = A − B": comparisons["diff"].map(lambda v: _number(v, 2)),
        "95% CI": [f"[{_number(low)}, {_number(high)}]" for low, high
                   in zip(comparisons["diff_ci_low"], comparisons["diff_ci_high"])],
        "t": comparisons["statistic"].map(_number),
        "df": comparisons["df"].map(lambda v: _number(v, 1)),
        "p": comparisons["p_raw"].map(_p_value),
        "p (Holm)": comparisons["p_adj"].map(_p_value),
        "g": comparisons["hedges_g"].map(_number),
        "significant": np.where(comparisons["p_adj"].isna(), "–",
                                np.where(comparisons["significant"], "yes", "no")),
    })
    return render_markdown_table(shown.set_index("task"), "task",
                                 text_columns=("A", "B", "kind", "test", "significant"))


def _ranks_section(analysis: Analysis, alpha: float) -> list[str]:
    lines = ["## Ranks across tasks", ""]
    if analysis.ranks.empty:
        return lines + ["No task has a cell for every method: no ranks.", ""]
    mean_ranks = analysis.ranks.groupby("method")["rank"].mean().sort_values()
    table = pd.DataFrame({"mean rank": mean_ranks.map(lambda v: f"{v:.2f}")})
    omnibus = analysis.omnibus.iloc[0]
    lines += [render_markdown_table(table, "method"), "",
              f"k = {int(omnibus['k'])} methods, N = {int(omnibus['N'])} complete tasks. "
              f"Friedman χ² = {_number(omnibus['friedman_chi2'])} ({_p_clause(omnibus['p'])}); "
              f"Iman–Davenport F = {_number(omnibus['iman_davenport_F'])} "
              f"({_p_clause(omnibus['p_F'])}); Nemenyi CD = {_number(omnibus['nemenyi_cd'])} "
              f"at α = {alpha:g}.", ""]
    if analysis.across_tasks_kind == "wilcoxon":
        wilcoxon = analysis.across_tasks
        shown = pd.DataFrame({
            "A": wilcoxon["method_a"], "B": wilcoxon["method_b"], "tasks": wilcoxon["n_tasks"],
            "median Δ": wilcoxon["median_diff"].map(_number),
            "W": wilcoxon["statistic"].map(lambda v: _number(v, 1)),
            "p": wilcoxon["p_raw"].map(_p_value), "p (Holm)": wilcoxon["p_adj"].map(_p_value),
            "significant": wilcoxon["significant"].map({True: "yes", False: "no"}),
        }).set_index("A")
        lines += ["Pairwise Wilcoxon signed-rank tests over tasks (Δ = A − B, accuracy points):",
                  "", render_markdown_table(shown, "A", text_columns=("B", "significant")), ""]
    elif analysis.across_tasks_kind == "win_tie_loss":
        lines += [f"Win/tie/loss vs `{analysis.reference}` over tasks (tie = not significant "
                  "after Holm):", "",
                  render_markdown_table(analysis.across_tasks.set_index("method"), "method"), ""]
    return lines


def _cost_markdown(runs: pd.DataFrame) -> str:
    present = [column for column in COST_COLUMNS
               if column in runs.columns and runs[column].notna().any()]
    if not present:
        return "No cost columns recorded."
    costs = runs.groupby("method")[present].mean()
    return render_markdown_table(costs.map(lambda v: _number(v, 1)), "method")


def _datasets_section(results_dir: Path, runs: pd.DataFrame, most: int = 20) -> list[str]:
    """Each dataset's classes, image shape and, for a folder or file dataset, where it was read
    from, taken from the first cell manifest that records them (older results record none)."""
    import json

    lines = []
    for dataset, run_ids in runs.groupby("dataset")["run_id"]:
        manifest: dict = {}
        for run_id in sorted(set(run_ids)):
            path = results_dir / "runs" / str(run_id) / "manifest.json"
            try:
                manifest = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, ValueError):
                manifest = {}
            if manifest.get("class_names"):
                break
        names = [str(name) for name in manifest.get("class_names") or []]
        if not names:
            continue
        shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
        line = f"- `{dataset}`: {len(names)} classes ({shown})"
        if manifest.get("image_shape"):
            line += "; images " + "×".join(str(v) for v in manifest["image_shape"])
        source = manifest.get("dataset_source") or {}
        if source.get("path"):
            line += (f"; {source.get('kind', 'read from')} `{source['path']}` (content SHA-256 "
                     f"{str(source.get('content_hash', ''))[:12]}, size: {source.get('size_rule', '?')})")
        lines.append(line)
    return ["## Datasets", "", *lines, ""] if lines else []


def _report_markdown(results_dir: Path, runs: pd.DataFrame, analysis: Analysis,
                     paper_markdown: str, caption: str, plots: list[Path],
                     failures: pd.DataFrame, spec: str | None, alpha: float,
                     extra_sections: list[str] = ()) -> str:
    lines = [f"# dcbench report: {results_dir.resolve().name}", ""]
    lines += _protocol_section(runs, analysis, alpha)
    lines += _datasets_section(results_dir, runs)
    lines += ["## Results", "", caption + " " + cost.COST_CAPTION, "", paper_markdown, "",
              "Per-cell statistics: `cells.csv`; numeric table: `table_wide.csv`; "
              "LaTeX: `table.tex`.", ""]
    lines += [*extra_sections, "## Comparisons within tasks", ""]
    if analysis.comparisons.empty:
        lines += ["No comparisons: every task has a single method.", ""]
    else:
        lines += [_comparisons_markdown(analysis.comparisons), ""]
    lines += _ranks_section(analysis, alpha)
    if plots:
        lines += ["## Plots", ""] + [f"![{path.stem}]({path.name})" for path in plots] + [""]
    lines += ["## Cost per method", "",
              "Means over the rows of runs.csv (one row per evaluation model).", "",
              _cost_markdown(runs), "",
              "Pareto front of accuracy against condensation seconds per task (no other method is "
              "both as cheap and as accurate; by the means, see `acc_vs_cost_*.png` for the "
              "intervals and `pareto.csv`):", "", *cost.pareto_lines(cost.pareto_table(analysis.cells, runs)), ""]
    lines += ["## Failures", ""]
    if failures.empty:
        lines += ["None recorded.", ""]
    else:
        lines += [render_markdown_table(failures.set_index(failures.columns[0]),
                                        failures.columns[0], text_columns=tuple(failures.columns)),
                  ""]
    lines += ["## Decision trail", ""] + [f"- {step}" for step in analysis.trail] + [""]
    if spec is not None:
        lines += ["## Experiment spec", "", "```toml", spec.rstrip(), "```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Entry point


def write_report(results_dir: Path, out_dir: Path | None = None, reference: str = "random",
                 alpha: float = 0.05, formats: tuple[str, ...] = KNOWN_FORMATS,
                 paired: bool = False, against: Path | None = None) -> Path:
    """Compute the statistics of an experiment and write tables, plots and report.md.

    ``formats`` selects the outputs: csv (cells, comparisons, ranks, omnibus, across-task and
    wide tables), tex (table.tex), md (table.md), png (plots); report.md is always written.
    Returns the path of report.md (in ``out_dir``, default ``results_dir/report``). ``against``:
    a reference (results directory or published-numbers CSV) to compare with, cell by cell
    (:mod:`dcbench.compare`; ``reference_comparison.csv`` and a report section).
    """
    results_dir = Path(results_dir)
    unknown = sorted(set(formats) - set(KNOWN_FORMATS))
    if unknown:
        raise DcbenchError(f"unknown report format(s) {', '.join(unknown)}: "
                           f"choose from {', '.join(KNOWN_FORMATS)}")
    if not 0.0 < alpha < 1.0:
        raise DcbenchError(f"alpha = {alpha} is not a probability: pass a value such as 0.05")
    runs = load_runs(results_dir)
    analysis = analyse(runs, reference, alpha, paired)
    final_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    with staged_directory(final_dir) as out_dir:  # every file whole, or the old one kept
        _write_outputs(results_dir, out_dir, runs, analysis, alpha, formats, against)
    return final_dir / "report.md"


def _write_outputs(results_dir: Path, out_dir: Path, runs: pd.DataFrame, analysis: Analysis, alpha: float,
                   formats: tuple[str, ...], against: Path | None = None) -> None:
    if "csv" in formats:
        analysis.cells.to_csv(out_dir / "cells.csv", index=False)
        analysis.comparisons.to_csv(out_dir / "comparisons.csv", index=False)
        analysis.ranks.to_csv(out_dir / "ranks.csv", index=False)
        analysis.omnibus.to_csv(out_dir / "omnibus.csv", index=False)
        if analysis.across_tasks_kind != "none":
            analysis.across_tasks.to_csv(out_dir / f"{analysis.across_tasks_kind}.csv", index=False)
        cost.with_cost_columns(wide_table(analysis), runs, {WHOLE_DATASET: WHOLE_DATASET_LABEL}).to_csv(
            out_dir / "table_wide.csv")
        cost.pareto_table(analysis.cells, runs).to_csv(out_dir / "pareto.csv", index=False)
    if "tex" in formats:
        (out_dir / "table.tex").write_text(render_latex_table(
            paper_table(analysis, LATEX), table_caption(analysis, alpha, latex=True)))
    paper_markdown = _markdown_paper_table(paper_table(analysis, MARKDOWN), cost.markdown_cost_columns(
        runs, {WHOLE_DATASET: WHOLE_DATASET_LABEL}))
    if "md" in formats:
        (out_dir / "table.md").write_text(
            paper_markdown + "\n\n" + table_caption(analysis, alpha, latex=False) + " " + cost.COST_CAPTION + "\n")

    plots: list[Path] = []
    if "png" in formats:
        plots = _write_plots(runs, analysis, results_dir, out_dir, alpha)
    failures = _read_optional_csv(results_dir / "failures.csv")
    spec_path = results_dir / "spec.toml"
    spec = spec_path.read_text() if spec_path.is_file() else None
    sections: list[str] = []
    if against is not None:
        from dcbench.compare import write_comparison
        sections = ["## Against the reference", "", *write_comparison(results_dir, against, out_dir, alpha), ""]
    (out_dir / "report.md").write_text(_report_markdown(results_dir, runs, analysis, paper_markdown,
                                                        table_caption(analysis, alpha, latex=False), plots,
                                                        failures, spec, alpha, sections))


def _write_plots(runs: pd.DataFrame, analysis: Analysis, results_dir: Path, out_dir: Path,
                 alpha: float) -> list[Path]:
    """Accuracy-vs-IPC per dataset, the CD diagram when it means something, the image grids."""
    methods = method_order(runs["method"].unique(), analysis.reference)
    colors = _method_colors(methods)
    plots = []
    compared = analysis.cells[analysis.cells["method"] != WHOLE_DATASET]
    for dataset in sorted(compared["dataset"].unique()):
        path = out_dir / f"acc_vs_ipc_{_file_part(dataset)}.png"
        plot_accuracy_vs_ipc(analysis.cells, dataset, methods, colors, path)
        plots.append(path)
    omnibus = analysis.omnibus.iloc[0]
    if omnibus["N"] >= 2 and omnibus["k"] >= 2:
        path = out_dir / "cd_diagram.png"
        plot_cd_diagram(analysis.ranks.groupby("method")["rank"].mean(), omnibus["nemenyi_cd"],
                        int(omnibus["N"]), alpha, path)
        plots.append(path)
    plots += cost.plot_accuracy_vs_cost(cost.pareto_table(analysis.cells, runs), analysis.cells, colors, out_dir)
    plots += plot_synthetic_grids(runs, results_dir, out_dir, methods)
    from dcbench.curves import plot_loss_curves  # per-cell curve.csv files (issue 15)
    plots += plot_loss_curves(results_dir, out_dir)
    return plots
