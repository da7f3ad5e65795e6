"""The report's plots: accuracy vs IPC per dataset, the critical-difference diagram, accuracy vs
condensation cost (:mod:`dcbench.report.cost`) and the condensation loss curves (:mod:`dcbench.results.curves`).

Every figure is written as PNG (300 dpi) and PDF (vector) siblings, as ``formats`` asks.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import color_sequences
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from dcbench.report import cost, curves
from dcbench.report.context import ReportContext
from dcbench.report.tables import reference_line_cells

DPI = 300


@contextlib.contextmanager
def plain_text() -> Iterator[None]:
    """Draw every text as written: method, dataset and class names are user text, and matplotlib
    would parse a '$' in them as mathtext (``$x^$`` raises at savefig). Covers creation and
    drawing, since tick labels and legends make their Text objects only when drawn."""
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield


def save_figure(figure: Figure, out_dir: Path, stem: str, formats: tuple[str, ...]) -> Path:
    """Write ``stem.png`` (300 dpi) and/or ``stem.pdf``; return the one report.md shows (PNG first).

    The PDF carries no creation date, so an unchanged report rewrites identical files.
    """
    written = []
    for kind in formats:
        path = out_dir / f"{stem}.{kind}"
        figure.savefig(path, dpi=DPI, metadata={"CreationDate": None} if kind == "pdf" else None)
        written.append(path)
    return written[0]


def method_colors(methods: list[str]) -> dict[str, tuple[float, ...]]:
    """One colour per method, the same in every plot of the report."""
    palette = [to_rgb(color) for color in color_sequences["tab10"]]
    return {method: palette[i % len(palette)] for i, method in enumerate(methods)}


def file_part(name: object) -> str:
    """A dataset name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def accuracy_vs_ipc_figures(context: ReportContext) -> list[Path]:
    """One accuracy-vs-IPC figure per dataset."""
    cells = context.analysis.cells
    methods = context.methods
    colors = method_colors(methods)
    written = []
    lines = context.analysis.reference_lines
    for dataset in sorted(context.analysis.compared(cells)["dataset"].unique()):
        figure = plot_accuracy_vs_ipc(cells, dataset, methods, colors, lines)
        written.append(save_figure(figure, context.out_dir, f"acc_vs_ipc_{file_part(dataset)}", context.figure_formats))
    return written


def plot_accuracy_vs_ipc(
    cells: pd.DataFrame,
    dataset: str,
    methods: list[str],
    colors: dict[str, tuple[float, ...]],
    lines: dict[str, str] | None = None,
) -> Figure:
    """Mean accuracy vs IPC with 95% t-interval error bars; one panel per eval architecture;
    each reference line (``lines``: method -> label) dashed with its band."""
    lines = lines or {}
    data = cells[cells["dataset"] == dataset]
    compared = data[~data["method"].isin(lines)]
    archs = sorted(compared["eval_arch"].unique())
    figure = Figure(figsize=(2.0 + 3.5 * len(archs), 3.2), layout="constrained")
    axes = figure.subplots(1, len(archs), sharey=True, squeeze=False)[0]
    for ax, arch in zip(axes, archs):
        arch_cells = data[data["eval_arch"] == arch]
        ipcs = sorted(compared.loc[compared["eval_arch"] == arch, "ipc"].unique())
        shown = [m for m in methods if m in set(arch_cells["method"])]
        for i, method in enumerate(shown):
            cell = arch_cells[arch_cells["method"] == method].sort_values("ipc")
            # Spread the methods slightly along the log axis so error bars do not overlap.
            dodge = 1.0 + 0.04 * (i - (len(shown) - 1) / 2)
            error = np.vstack([cell["mean"] - cell["ci_low"], cell["ci_high"] - cell["mean"]])
            ax.errorbar(
                cell["ipc"] * dodge,
                cell["mean"],
                yerr=np.nan_to_num(error),
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.2,
                color=colors[method],
                label=method,
            )
        for method, label in lines.items():
            shown_cells = reference_line_cells(cells, method, [(arch, dataset, ipc) for ipc in ipcs])
            if not shown_cells.empty:
                _plot_reference_line(ax, shown_cells, label)
        ax.set_xscale("log")
        ax.set_xlim(min(ipcs) / 1.5, max(ipcs) * 1.5)
        ax.set_xticks(ipcs, labels=[str(ipc) for ipc in ipcs])
        ax.minorticks_off()
        ax.set_xlabel("images per class (IPC)")
        ax.set_title(f"{dataset}, evaluated on {arch}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    figure.legend(
        legend.values(),
        legend.keys(),
        loc="outside right upper",
        fontsize="small",
        title="mean, 95% t-CI\nover seeds",
        title_fontsize="small",
    )
    return figure


def _plot_reference_line(ax: Axes, whole: pd.Series, label: str) -> None:
    """A reference line and its 95% CI band; across the panel when it does not vary by IPC."""
    means, lows, highs = (np.array([cell[key] for cell in whole], dtype=float) for key in ("mean", "ci_low", "ci_high"))
    style: dict[str, Any] = {"color": "0.3", "linestyle": "--", "label": label}
    band: dict[str, Any] = {"color": "0.3", "alpha": 0.15, "linewidth": 0}
    if np.all(means == means[0]):  # one cell shown under every IPC
        ax.axhline(means[0], **style)
        if np.isfinite(lows[0]):
            ax.axhspan(lows[0], highs[0], **band)
    else:
        ipcs = [ipc for _, _, ipc in whole.index]
        ax.plot(ipcs, means, marker="s", markersize=3, **style)
        ax.fill_between(ipcs, lows, highs, **band)


def cd_diagram_figures(context: ReportContext) -> list[Path]:
    """The CD diagram, only where the analysis allows it (N >= 5 tasks, k >= 3 methods)."""
    analysis = context.analysis
    if analysis.no_cd_diagram is not None:
        return []
    omnibus = analysis.omnibus.iloc[0]
    figure = plot_cd_diagram(
        analysis.ranks.groupby("method")["rank"].mean(), float(omnibus["nemenyi_cd"]), analysis.n_tasks, context.alpha
    )
    return [save_figure(figure, context.out_dir, "cd_diagram", context.figure_formats)]


def plot_cd_diagram(mean_ranks: pd.Series, cd: float, n_tasks: int, alpha: float) -> Figure:
    """Demšar-style critical-difference diagram of mean ranks (rank 1 = best, on the left).

    Methods joined by a thick bar differ in mean rank by less than the Nemenyi CD.
    """
    mean_ranks = mean_ranks.sort_values()
    k = len(mean_ranks)
    left_count = (k + 1) // 2
    rows = max(left_count, k - left_count)
    cliques = _cliques(mean_ranks.to_numpy(), cd)
    line_step, clique_step = 0.5, 0.25
    depth = 0.2 + len(cliques) * clique_step + rows * line_step + 0.1
    figure = Figure(figsize=(6.5, 1.0 + 0.5 * depth), layout="constrained")
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
    cd_end = min(1 + cd, k)  # never past the axis (the analysis only draws CD < k - 1 anyway)
    ax.plot([x(1), x(cd_end)], [0.95, 0.95], color="black", linewidth=1.5)
    for end in (1, cd_end):
        ax.plot([x(end)] * 2, [0.88, 1.02], color="black", linewidth=1)
    ax.text(x(cd_end) + 0.01, 0.95, f"CD = {cd:.2f}", ha="left", va="center", fontsize=9)

    for level, (first, last) in enumerate(cliques):
        y = -0.2 - level * clique_step
        ax.plot(
            [x(mean_ranks.iloc[first]) - 0.008, x(mean_ranks.iloc[last]) + 0.008],
            [y, y],
            color="black",
            linewidth=3,
            solid_capstyle="butt",
        )
    top = -0.2 - len(cliques) * clique_step
    for i, (method, rank) in enumerate(mean_ranks.items()):
        on_left = i < left_count
        row = i if on_left else k - 1 - i
        y = top - (row + 0.5) * line_step
        edge = x_left - 0.04 if on_left else x_right + 0.04
        ax.plot([x(rank), x(rank), edge], [0, y, y], color="0.35", linewidth=0.9)
        ax.text(
            edge - 0.01 if on_left else edge + 0.01,
            y,
            f"{method} ({rank:.2f})",
            ha="right" if on_left else "left",
            va="center",
            fontsize=9,
        )
    ax.set_title(
        f"Mean rank over {n_tasks} tasks (1 = best). Bars join methods closer than the\n"
        f"Nemenyi critical difference (α = {alpha:g}).",
        fontsize=9,
    )
    return figure


def _cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs of consecutive methods whose mean ranks all lie within CD of each other."""
    spans: list[tuple[int, int]] = []
    for first in range(len(sorted_ranks)):
        last = int(np.searchsorted(sorted_ranks, sorted_ranks[first] + cd, side="left")) - 1
        if last > first and not any(last <= previous_last for _, previous_last in spans):
            spans.append((first, last))
    return spans


def accuracy_vs_cost_figures(context: ReportContext) -> list[Path]:
    """Per dataset, accuracy against condensation seconds with the Pareto front (none when
    runs.csv records no condensation seconds)."""
    analysis = context.analysis
    figures = cost.accuracy_vs_cost_figures(
        context.pareto, analysis.cells, method_colors(context.methods), analysis.reference_lines
    )
    return [save_figure(figure, context.out_dir, stem, context.figure_formats) for stem, figure in figures.items()]


def loss_curve_figures(context: ReportContext) -> list[Path]:
    """Per (dataset, IPC), the condensation loss of each finished cell that kept a ``curve.csv``."""
    return [
        save_figure(figure, context.out_dir, stem, context.figure_formats)
        for stem, figure in curves.loss_curve_figures(context.results_dir).items()
    ]


def gain_figures(context: ReportContext) -> list[Path]:
    """Per dataset: each method's gain over the reference with its 95% CI, one panel per IPC and
    architecture (filled: significant after Holm)."""
    gains, reference = context.analysis.gains, context.analysis.reference
    if reference is None or gains.empty:
        return []
    colors = method_colors(context.methods)
    written = []
    for dataset, frame in gains.groupby("dataset", sort=True):
        figure = plot_gains(frame, reference, colors)
        written.append(
            save_figure(
                figure,
                context.out_dir,
                f"gain_over_{file_part(reference)}_{file_part(dataset)}",
                context.figure_formats,
            )
        )
    return written


def plot_gains(gains: pd.DataFrame, reference: str, colors: dict[str, tuple[float, ...]]) -> Figure:
    panels = list(gains.groupby(["ipc", "eval_arch"], sort=True))
    methods = sorted(gains["method"].unique())
    figure = Figure(figsize=(1.5 + 3.0 * len(panels), 0.8 + 0.35 * len(methods)), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, ((ipc, arch), frame) in zip(axes, panels):
        frame = frame.set_index("method").reindex(methods)
        y = np.arange(len(methods))
        ax.axvline(0.0, color="0.5", linewidth=0.8)
        for i, method in enumerate(methods):
            row = frame.loc[method]
            if pd.isna(row["gain"]):
                continue
            color = colors.get(method, (0.3, 0.3, 0.3))
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"], row["ci_high"]], [y[i], y[i]], color=color, linewidth=1.5)
            ax.plot(row["gain"], y[i], "o", color=color, markerfacecolor=color if row["significant"] else "white")
        ax.set_yticks(y, methods)
        ax.set_title(f"IPC {ipc}, {arch}", fontsize=9)
        ax.set_xlabel(f"gain over {reference} (points)")
    figure.suptitle(f"{gains['dataset'].iloc[0]}: 95% CI; filled = significant after Holm", fontsize=9)
    return figure
