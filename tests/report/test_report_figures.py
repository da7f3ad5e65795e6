"""The report's figures: image grids that fill the page with class names, PNG + PDF output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from report_fixtures import CLASS_NAMES, make_results, png_dpi, write_synthetic_set

from dcbench.report import write_report
from dcbench.report.image_grids import Panel, load_panel, plot_panels

pytestmark = pytest.mark.filterwarnings("error")


def _panels(count: int, classes: int, per_class: int, tile: int = 28) -> list[Panel]:
    mosaic = np.random.default_rng(0).random((classes * (tile + 1) - 1, per_class * (tile + 1) - 1, 1))
    names = [f"class name {c}" for c in range(classes)]
    return [Panel(f"method{i}", mosaic, names, tile + 1) for i in range(count)]


def _image_fraction(panels: list[Panel]) -> tuple[float, list]:
    """Share of the figure covered by the images, and the visible axes, after layout."""
    figure = plot_panels(panels, "title")
    FigureCanvasAgg(figure).draw()
    axes = [ax for ax in figure.axes if ax.get_visible()]
    covered = sum(ax.get_position(original=False).width * ax.get_position(original=False).height for ax in axes)
    return covered, axes


@pytest.mark.parametrize(
    "count, classes, per_class, shape",
    [
        (7, 10, 1, (1, 7)),  # IPC 1: one column of classes per method, side by side
        (7, 10, 10, (2, 4)),  # IPC 10: square panels, two rows
        (3, 100, 10, (1, 3)),  # CIFAR-100 at IPC 10: tall panels
    ],
)
def test_image_grids_fill_the_figure_and_name_the_classes(count, classes, per_class, shape):
    panels = _panels(count, classes, per_class)
    covered, axes = _image_fraction(panels)
    assert covered > 0.55  # the old IPC-1 layout covered about a third
    rows, columns = shape
    assert len(axes) == count and axes[0].get_gridspec().get_geometry() == (rows, columns)
    for index, ax in enumerate(axes):
        labels = [label.get_text() for label in ax.get_yticklabels()]
        assert labels == (panels[0].class_names if index % columns == 0 else [])
        assert ax.get_title() == f"method{index}"


def test_load_panel_brings_images_back_to_pixels_with_class_names(tmp_path: Path):
    rng = np.random.default_rng(0)
    write_synthetic_set(tmp_path / "run", ipc=2, rng=rng)
    notes: list[str] = []
    panel = load_panel(tmp_path / "run", "dc", notes)
    assert panel is not None and not notes
    assert panel.class_names == list(CLASS_NAMES)
    assert panel.mosaic.shape == (3 * 9 - 1, 2 * 9 - 1, 1)  # 8-pixel images, 1-pixel gaps
    assert panel.mosaic.min() >= 0.0 and panel.mosaic.max() <= 1.0
    assert (panel.mosaic[8, :, 0] == 1.0).all()  # the white gap between class rows


def test_unreadable_synthetic_set_is_left_out_and_named(tmp_path: Path):
    write_synthetic_set(tmp_path / "run", ipc=1, rng=np.random.default_rng(0))
    (tmp_path / "run" / "synthetic.pt").write_bytes(b"not a tensor file")
    notes: list[str] = []
    assert load_panel(tmp_path / "run", "dc", notes) is None
    assert len(notes) == 1 and "Image grid: run left out" in notes[0]


def test_figures_only_in_the_requested_formats(tmp_path: Path):
    root = make_results(tmp_path, {"MNIST": (1,)}, grids=True)
    report = write_report(root, formats=("pdf",))
    assert sorted(path.name for path in report.parent.glob("*.p*")) == [
        "acc_vs_cost_MNIST.pdf",
        "acc_vs_ipc_MNIST.pdf",
        "gain_over_random_MNIST.pdf",
        "synthetic_grids_MNIST_ipc1.pdf",
    ]
    assert "- [acc_vs_ipc_MNIST](acc_vs_ipc_MNIST.pdf)" in report.read_text()
    png_report = write_report(root, formats=("png",), out_dir=tmp_path / "png")
    for stem in ("synthetic_grids_MNIST_ipc1", "acc_vs_cost_MNIST"):
        assert png_dpi(png_report.parent / f"{stem}.png") == pytest.approx(300, abs=0.5)
    assert not list(png_report.parent.glob("*.pdf"))


def test_condensation_records_the_class_names_the_grids_show():
    import torch

    from dcbench.data.real import RealDataset
    from dcbench.method.condense import condense
    from dcbench_coresets.method import RandomMethod

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(12, 1, 8, 8, generator=generator)
    labels = torch.arange(3).repeat_interleave(4)
    real = RealDataset("toy", images, labels, images, labels, (0.5,), (0.25,), CLASS_NAMES)
    condensed = condense(RandomMethod(), real, ipc=2, seed=0, preset="smoke")
    assert condensed.synthetic.manifest["class_names"] == list(CLASS_NAMES)
