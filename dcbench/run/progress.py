"""A progress line for the running cell: iteration, loss and ETA of its condensation.

:class:`CellProgressBar` is an observer plugin: ``dcbench run`` registers it on the plugin manager
for the local executor, where it draws a line under the grid's "cells" bar from the
``dcbench_condense_progress`` hook; ``dcbench condense`` drives it directly as its only bar.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm

from dcbench import hookimpl


class CellProgressBar:
    """One tqdm line per cell, at ``position`` (1 under the grid's bar, 0 on its own)."""

    def __init__(self, position: int = 1, disable: bool | None = None) -> None:
        self.position = position
        self.disable = disable
        self._bar: tqdm | None = None
        self._label = ""

    @hookimpl
    def dcbench_cell_started(self, cell: Mapping[str, Any]) -> None:
        self.close()
        self._label = str(cell.get("id", ""))

    @hookimpl
    def dcbench_condense_progress(
        self, cell: Mapping[str, Any], step: int, total: int, metrics: Mapping[str, float]
    ) -> None:
        if self._bar is None or self._bar.total != total:
            self.close()
            # initial=step - 1: a resumed run starts mid-way and its ETA counts only what is left
            self._bar = tqdm(
                total=total,
                initial=max(0, step - 1),
                desc=self._label or str(cell.get("id", "")),
                unit="it",
                position=self.position,
                leave=self.position == 0,
                file=sys.stderr,
                dynamic_ncols=True,
                disable=self.disable,
            )
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
        self._bar.update(step - self._bar.n)

    @hookimpl
    def dcbench_cell_finished(self, cell: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
