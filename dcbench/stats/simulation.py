"""Simulated grids: how often the report's within-task family errs, and what it can find.

A grid is simulated under a simple model of what moves an accuracy (in points):

    acc[m, s, k] = mean[m] + loading[m] · S[s] + E[m, s] + N[m, s, k]

with S[s] ~ N(0, 1) the seed's shared effect (which real images it starts from: every method
drawing from the shared stream sees the same S), ``loading`` how strongly a method keeps it
(``random`` keeps all of it, condensation washes most of it out), E ~ N(0, method_seed_sd²) the
method's own randomness at that seed, and N ~ N(0, network_sd²) the evaluation network. Each grid
then goes through the report's procedure (every pair of methods, paired t or Welch on per-seed
means, Holm over the whole family) — vectorised here, and checked against
:func:`dcbench.stats.compare_within_tasks` by the tests. Grids are drawn from one explicit
``numpy`` generator, so a seed gives the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from dcbench.stats.multiplicity import holm


@dataclass(frozen=True)
class TaskModel:
    """One task of a simulated grid (see the module docstring for the model)."""

    means: Mapping[str, float]  # method -> true mean accuracy, points
    loading: Mapping[str, float]  # method -> SD of the shared seed effect it keeps, points
    method_seed_sd: float  # SD of a method's own seed effect, points
    network_sd: float  # SD between the evaluation networks of one seed, points

    def draw(self, grids: int, seeds: int, networks: int, rng: np.random.Generator) -> np.ndarray:
        """Per-seed means, shape (grids, methods, seeds), methods in sorted order."""
        methods = sorted(self.means)
        mean = np.array([self.means[m] for m in methods])[None, :, None]
        loading = np.array([self.loading[m] for m in methods])[None, :, None]
        shared = rng.standard_normal((grids, 1, seeds))
        own = rng.normal(0.0, self.method_seed_sd, (grids, len(methods), seeds))
        network = rng.normal(0.0, self.network_sd, (grids, len(methods), seeds, networks)).mean(-1)
        return mean + loading * shared + own + network


def family_p_values(seed_means: np.ndarray, paired: bool) -> np.ndarray:
    """Two-sided p of every ordered pair (a, b), shape (grids, methods, methods); NaN on the diagonal."""
    a, b = seed_means[:, :, None, :], seed_means[:, None, :, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        if paired:
            p = sps.ttest_rel(a, b, axis=-1).pvalue
        else:
            p = sps.ttest_ind(a, b, axis=-1, equal_var=False).pvalue
    methods = seed_means.shape[1]
    p[:, np.arange(methods), np.arange(methods)] = np.nan
    return p


def pair_mask(
    seed_means: np.ndarray, best_and_reference_only: bool = False, reference: int | None = None
) -> np.ndarray:
    """(grids, methods, methods): True for the tested pairs, each once (a < b). The report tests
    every pair; ``best_and_reference_only`` gives the family of the vs-best and vs-reference pairs
    alone, whose best is chosen from the data (what the report did before: it errs too often)."""
    grids, methods, _ = seed_means.shape
    if not best_and_reference_only:
        return np.broadcast_to(np.triu(np.ones((methods, methods), dtype=bool), 1), (grids, methods, methods)).copy()
    best = seed_means.mean(-1).argmax(1)  # continuous draws: no ties
    mask = np.zeros((grids, methods, methods), dtype=bool)
    rows = np.arange(grids)
    mask[rows, best, :] = True
    mask[rows, :, best] = True
    if reference is not None:
        mask[:, reference, :] = True
        mask[:, :, reference] = True
    mask[:, np.arange(methods), np.arange(methods)] = False
    return np.triu(mask, 1)


@dataclass(frozen=True)
class SimulatedVerdicts:
    """Per grid and tested pair of every task: whether Holm over the family rejected it."""

    methods: tuple[str, ...]
    significant: list[np.ndarray]  # per task: (grids, methods, methods), only a < b set
    tested: list[np.ndarray]  # per task: the planned mask

    def any_rejection(self) -> float:
        """Share of grids where at least one tested pair was called significant."""
        per_grid = np.zeros(self.significant[0].shape[0], dtype=bool)
        for significant in self.significant:
            per_grid |= significant.any(axis=(1, 2))
        return float(per_grid.mean())

    def rejection_rate(self, task: int, method_a: str, method_b: str) -> float:
        """Share of grids where (A, B) was tested and called significant."""
        i, j = sorted((self.methods.index(method_a), self.methods.index(method_b)))
        return float(self.significant[task][:, i, j].mean())


def simulate_verdicts(
    tasks: Sequence[TaskModel],
    seeds: int,
    networks: int,
    grids: int,
    paired: bool,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    best_and_reference_only: str | None = None,
) -> SimulatedVerdicts:
    """Simulate ``grids`` grids of ``tasks`` and apply the report's family to each (every pair,
    Holm over all of them; ``best_and_reference_only``: the reference's name, for the smaller
    family that tests only vs the best and vs it)."""
    rng = np.random.default_rng(0) if rng is None else rng
    methods = tuple(sorted(tasks[0].means))
    ref = methods.index(best_and_reference_only) if best_and_reference_only in methods else None
    draws = [task.draw(grids, seeds, networks, rng) for task in tasks]
    masks = [pair_mask(d, best_and_reference_only is not None, ref) for d in draws]
    p_values = [family_p_values(d, paired) for d in draws]
    significant = [np.zeros_like(m) for m in masks]
    for g in range(grids):
        flat = np.concatenate([p[g][m[g]] for p, m in zip(p_values, masks)])
        rejected = holm(flat) < alpha
        start = 0
        for t, mask in enumerate(masks):
            count = int(mask[g].sum())
            significant[t][g][mask[g]] = rejected[start : start + count]
            start += count
    return SimulatedVerdicts(methods, significant, masks)


def grid_frame(seed_means: np.ndarray, methods: Sequence[str], task: Mapping[str, object]) -> pd.DataFrame:
    """One simulated grid's per-seed means as :func:`dcbench.stats.seed_scores` gives them."""
    return pd.DataFrame(
        [
            {**task, "method": method, "synth_seed": s, "score": float(seed_means[m, s])}
            for m, method in enumerate(methods)
            for s in range(seed_means.shape[1])
        ]
    )
