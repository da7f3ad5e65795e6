"""Figures of the synthetic sets: per (dataset, IPC), every method's set, classes named.

Each method's panel has one row per class (named on the left) and its images in columns, read from
the cell's ``synthetic.pt`` (lowest synthesis seed) and brought back to pixel space with the
manifest's normalisation. Panels are laid out so the figure is close to a page's proportions and
the images fill it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine

from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write
from dcbench.method.synthetic import GRID_FILE, TENSOR_FILE, load_synthetic
from dcbench.report.context import ReportContext
from dcbench.report.figures import file_part, plain_text, save_figure
from dcbench.report.formatting import markdown_text

MAX_PER_CLASS = 10  # images shown per class
PAD = 1  # white pixels between images
MAX_WIDTH_IN = 7.0  # a page's text width
MAX_HEIGHT_IN = 8.5
TARGET_ASPECT = 1.3  # width / height of the image area the layout aims for
LABEL_WIDTH_IN = 0.9  # room for class names left of a panel row
TITLE_HEIGHT_IN = 0.22  # per panel row
SUPTITLE_HEIGHT_IN = 0.35
MIN_SET_GRID_WIDTH_IN = 3.2  # a one-set grid (a cell's grid.png) at IPC 1 is one image wide


@dataclass(frozen=True)
class Panel:
    """One method's synthetic set as a mosaic: rows = classes, columns = images of the class."""

    title: str
    mosaic: np.ndarray  # (rows, columns, channels) in [0, 1]
    class_names: list[str]
    tile_height: int  # pixels per class row, padding included


def synthetic_grid_figures(context: ReportContext) -> list[Path]:
    """One figure per (dataset, IPC) with the lowest-seed synthetic set of every method.

    Cells without a readable synthetic.pt are left out (and named in the trail); a figure is
    written only when some set exists.
    """
    runs = context.analysis.compared(context.runs)
    first_runs = runs.sort_values(["synth_seed", "run_id"]).drop_duplicates(["dataset", "ipc", "method"])
    written = []
    for (dataset, ipc), group in first_runs.groupby(["dataset", "ipc"], sort=True):
        run_of = group.set_index("method")
        seeds = sorted(set(run_of["synth_seed"]))
        panels = []
        for method in (m for m in context.methods if m in run_of.index):
            run_dir = context.results_dir / "runs" / str(run_of.at[method, "run_id"])
            seed = run_of.at[method, "synth_seed"]
            title = method if len(seeds) == 1 else f"{method}\nseed {seed}"
            panel = load_panel(run_dir, title, context.notes)
            if panel is not None:
                panels.append(panel)
        if not panels:
            continue
        shown = min(int(ipc), MAX_PER_CLASS)
        title = (
            f"Synthetic sets: {dataset}, IPC {ipc}"
            + (f" (first {shown} images per class)" if int(ipc) > shown else "")
            + (f", synthesis seed {seeds[0]}" if len(seeds) == 1 else ", lowest synthesis seed per method")
        )
        figure = plot_panels(panels, title)
        written.append(
            save_figure(
                figure, context.out_dir, f"synthetic_grids_{file_part(dataset)}_ipc{ipc}", context.figure_formats
            )
        )
    return written


def write_set_grid(directory: Path, title: str) -> Path | None:
    """``grid.png`` of one saved set: the report's panel (a row per class, named, at most
    MAX_PER_CLASS images each), 150 dpi; None when the set cannot be read."""
    notes: list[str] = []
    panel = load_panel(directory, "", notes)  # the figure's title names the set
    if panel is None:
        return None
    with plain_text():
        figure = plot_panels([panel], title)
        width, height = figure.get_size_inches()
        figure.set_size_inches(max(width, MIN_SET_GRID_WIDTH_IN), height)  # room for class names and title
        path = directory / GRID_FILE
        atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=150))
    return path


def load_panel(run_dir: Path, title: str, notes: list[str]) -> Panel | None:
    """The mosaic of one cell's synthetic set, or None (with a note) when it cannot be read."""
    if not (run_dir / TENSOR_FILE).is_file():
        return None
    try:
        synthetic = load_synthetic(run_dir)
    except DcbenchError as error:
        notes.append(markdown_text(f"Image grid: {run_dir.name} left out ({error})."))
        return None
    images, labels = synthetic.images, synthetic.labels
    preprocessing = synthetic.manifest.get("preprocessing", {})
    if preprocessing.get("normalised"):
        mean = torch.tensor(preprocessing["mean"], dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(preprocessing["std"], dtype=torch.float32).view(1, -1, 1, 1)
        images = images * std + mean
    images = images.clamp(0.0, 1.0)
    classes = torch.unique(labels).tolist()
    names = synthetic.manifest.get("class_names") or []  # older manifests lack them
    class_names = [str(names[c]) if c < len(names) else f"class {c}" for c in classes]
    per_class = [images[labels == c][:MAX_PER_CLASS] for c in classes]
    columns = max(len(group) for group in per_class)
    _, channels, height, width = images.shape
    tiles = np.ones((len(classes), columns, height + PAD, width + PAD, channels))
    for row, group in enumerate(per_class):
        tiles[row, : len(group), :height, :width] = group.permute(0, 2, 3, 1).numpy()
    mosaic = tiles.transpose(0, 2, 1, 3, 4).reshape(len(classes) * (height + PAD), columns * (width + PAD), channels)[
        :-PAD, :-PAD
    ]
    return Panel(title, mosaic, class_names, height + PAD)


def _layout(panels: list[Panel]) -> tuple[int, int]:
    """(rows, columns) of panels whose image area is closest to TARGET_ASPECT, few empty slots."""
    height = max(panel.mosaic.shape[0] for panel in panels)
    width = max(panel.mosaic.shape[1] for panel in panels)

    def badness(columns: int) -> float:
        rows = math.ceil(len(panels) / columns)
        aspect = columns * width / (rows * height)
        empty = rows * columns - len(panels)
        return abs(math.log(aspect / TARGET_ASPECT)) + 2.0 * empty / len(panels)

    columns = min(range(1, len(panels) + 1), key=badness)
    return math.ceil(len(panels) / columns), columns


def plot_panels(panels: list[Panel], title: str) -> Figure:
    """The panels in a grid sized so the images fill it; class names left of each panel row."""
    rows, columns = _layout(panels)
    height = max(panel.mosaic.shape[0] for panel in panels)
    width = max(panel.mosaic.shape[1] for panel in panels)
    area_width = MAX_WIDTH_IN - LABEL_WIDTH_IN
    area_height = area_width * rows * height / (columns * width)
    chrome = rows * TITLE_HEIGHT_IN + SUPTITLE_HEIGHT_IN
    if area_height + chrome > MAX_HEIGHT_IN:  # too tall for a page: narrow it instead
        area_height = MAX_HEIGHT_IN - chrome
        area_width = area_height * columns * width / (rows * height)
    figure = Figure(
        figsize=(area_width + LABEL_WIDTH_IN, area_height + chrome),
        layout=ConstrainedLayoutEngine(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01),
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    class_rows = len(panels[0].class_names)
    row_points = 72.0 * area_height / (rows * class_rows)
    label_size = float(np.clip(0.7 * row_points, 3.0, 8.0))
    title_size = float(np.clip(72.0 * area_width / columns / 9.0, 5.0, 8.0))  # ~9 characters wide
    for index, ax in enumerate(axes.ravel()):
        if index >= len(panels):
            ax.set_visible(False)
            continue
        panel = panels[index]
        image = panel.mosaic[..., 0] if panel.mosaic.shape[2] == 1 else panel.mosaic
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(panel.title, fontsize=title_size, pad=2)
        ax.set_xticks([])
        centres = (np.arange(len(panel.class_names)) + 0.5) * panel.tile_height - 0.5 * PAD - 0.5
        if index % columns == 0:
            ax.set_yticks(centres, labels=panel.class_names, fontsize=label_size)
        else:
            ax.set_yticks([])
        ax.tick_params(length=0, pad=2)
        for spine in ax.spines.values():
            spine.set_visible(False)
    figure.suptitle(title, fontsize=9)
    return figure
