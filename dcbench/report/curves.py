"""The report's loss-curve figures: per dataset and IPC one panel per method, a line per seed,
drawn from each cell's ``curve.csv`` (:mod:`dcbench.results.curves`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from dcbench.results.curves import read_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def loss_curve_figures(store_root: Path, metric: str = "loss") -> dict[str, Figure]:
    """Per task (dataset, IPC) one figure keyed by file stem ``<metric>_curves_<dataset>_ipc<ipc>``:
    one panel per method (losses of different methods are on different scales), one line per
    seed; log scale when every value is positive. Empty when no cell has a curve."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = read_curves(store_root, metric)
    figures: dict[str, Figure] = {}
    for (dataset, ipc), task in curves.groupby(["dataset", "ipc"], sort=True):
        methods = sorted(task["method"].unique())
        columns = min(len(methods), 3)
        rows = -(-len(methods) // columns)
        figure = Figure(figsize=(4.0 * columns, 3.0 * rows + 0.5), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, method in zip(axes, methods):
            lines = task[task["method"] == method]
            for seed, line in lines.groupby("seed", sort=True):
                line = line.sort_values("step")
                ax.plot(line["step"], line["value"], linewidth=1.0, label=f"seed {seed}")
            if (lines["value"] > 0).all():
                ax.set_yscale("log")
            ax.set_title(method, fontsize=10)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("iteration")
            ax.set_ylabel(metric)
            ax.legend(fontsize=7)
        for ax in axes[len(methods) :]:
            ax.axis("off")
        figure.suptitle(f"Condensation {metric}: {dataset}, IPC {ipc}")
        figures[f"{metric}_curves_{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(dataset))}_ipc{ipc}"] = figure
    return figures


def plot_loss_curves(store_root: Path, out_dir: Path, metric: str = "loss") -> list[Path]:
    """:func:`loss_curve_figures` written as PNG files into ``out_dir``; returns their paths (none
    when no cell has a curve). The report writes the same figures as PNG and PDF itself."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    written = []
    for stem, figure in loss_curve_figures(store_root, metric).items():
        path = Path(out_dir) / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        FigureCanvasAgg(figure).print_png(path)
        written.append(path)
    return written
