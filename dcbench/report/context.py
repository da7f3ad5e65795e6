"""What every section and figure writer of the report receives.

Sections (:data:`dcbench.report.SECTIONS`) turn a :class:`ReportContext` into report.md lines;
figure writers (:data:`dcbench.report.FIGURE_WRITERS`) write figures into ``out_dir`` and return
their paths. A new part of the report is a function of this context added to one of those lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from dcbench.report import cost
from dcbench.report.analysis import Analysis

FIGURE_FORMATS = ("png", "pdf")


@dataclass
class ReportContext:
    """The inputs, the analysis and the options of one report, plus what the writers produced."""

    results_dir: Path
    out_dir: Path
    runs: pd.DataFrame  # validated runs.csv (see load_runs), accuracy in percent
    analysis: Analysis
    alpha: float
    formats: tuple[str, ...]  # requested outputs: csv, tex, md, png, pdf
    failures: pd.DataFrame  # failures.csv, empty when absent
    spec: str | None  # spec.toml text, None when absent
    against: Path | None = None  # a reference to compare with, cell by cell (dcbench.report.compare)
    figures: list[Path] = field(default_factory=list)  # written figures, listed in report.md
    notes: list[str] = field(default_factory=list)  # what a writer left out and why (trail)

    @property
    def figure_formats(self) -> tuple[str, ...]:
        return tuple(kind for kind in FIGURE_FORMATS if kind in self.formats)

    @cached_property
    def pareto(self) -> pd.DataFrame:
        """Per task and method: accuracy against condensation seconds and the Pareto front
        (:func:`dcbench.report.cost.pareto_table`; empty when runs.csv records no condensation seconds)."""
        return cost.pareto_table(self.analysis.compared(self.analysis.cells), self.runs)

    @property
    def methods(self) -> list[str]:
        """Every compared method in table and legend order (reference lines left out)."""
        return method_order(self.analysis.compared(self.runs)["method"].unique(), self.analysis.reference)


def method_order(methods: list[str] | np.ndarray, reference: str | None) -> list[str]:
    """Table and legend order: the reference first, then the other methods alphabetically."""
    others = sorted(m for m in set(methods) if m != reference)
    return ([reference] if reference is not None and reference in set(methods) else []) + others
