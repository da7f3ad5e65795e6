"""TensorBoard tracking plugin: event files per cell, written from the observer hooks.

A worked example of the tracking and observer hooks (see docs/writing-a-plugin.md). It does
nothing unless a run asks for it (``dcbench run --track tensorboard[=DIR]``, its shorthand
``--tensorboard [DIR]``, or ``tensorboard = true | "DIR"`` in the spec's ``[tracking]`` table): it
claims that request before any cell runs (refusing it when TensorBoard is not installed), the
runner puts ``{"tensorboard": DIR}`` in every cell's ``tracking`` settings and this plugin writes
``DIR/<cell-id>/events.out.tfevents.*`` with

- ``condense/<metric>`` per iteration: every number the method reports to ``ctx.progress``;
- ``eval/<arch>/test_acc`` (mean over the evaluation models) and ``cell/condense_s`` at the end,
  and the failure reason as text for a failed cell.

A resumed cell reopens its directory with ``purge_step`` at the first iteration it reports, so the
steps an interrupted run logged after its last checkpoint are hidden. Needs the ``tensorboard``
package (``pip install 'dcbench[tensorboard]'``); imported only when a run asks for it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dcbench.api import DcbenchError, hookimpl

NAME = "tensorboard"

#: open writers, by cell id (a process runs its cells one after another)
_writers: dict[str, Any] = {}


@hookimpl
def dcbench_tracking_setting(name: str, value: bool | str, results_dir: Path) -> str | None:
    """``tensorboard``: the absolute directory of the event files (default ``<results>/tensorboard``)."""
    if name != NAME:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        raise DcbenchError("tensorboard logging needs TensorBoard: pip install 'dcbench[tensorboard]'")
    directory = results_dir / "tensorboard" if value is True else Path(str(value)).expanduser()
    return str(directory.resolve())


def _directory(cell: Mapping[str, Any]) -> str | None:
    return (cell.get("tracking") or {}).get(NAME)


def _writer(cell: Mapping[str, Any], directory: str, first_step: int) -> Any:
    if cell["id"] not in _writers:
        from torch.utils.tensorboard import SummaryWriter

        _writers[cell["id"]] = SummaryWriter(log_dir=str(Path(directory) / cell["id"]), purge_step=first_step)
    return _writers[cell["id"]]


@hookimpl
def dcbench_condense_progress(cell: Mapping[str, Any], step: int, total: int, metrics: Mapping[str, float]) -> None:
    directory = _directory(cell)
    if directory is None:
        return
    writer = _writer(cell, directory, step)
    for name, value in metrics.items():
        writer.add_scalar(f"condense/{name}", value, step)


@hookimpl
def dcbench_cell_finished(cell: Mapping[str, Any], result: Mapping[str, Any]) -> None:
    directory = _directory(cell)
    if directory is None:
        return
    step = int((result.get("method_metrics") or {}).get("iterations") or 0)
    writer = _writer(cell, directory, step)
    try:
        if result.get("status") == "done":
            for evaluation in result.get("evaluations", []):
                accuracies = evaluation["test_accs"]
                writer.add_scalar(f"eval/{evaluation['arch']}/test_acc", sum(accuracies) / len(accuracies), step)
            writer.add_scalar("cell/condense_s", result.get("condense_s", 0.0), step)
        else:
            writer.add_text("cell/failure", str(result.get("reason", "")), step)
    finally:
        _writers.pop(cell["id"]).close()
