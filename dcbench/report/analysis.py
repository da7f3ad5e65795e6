"""The protocol's decisions applied to validated runs: what is compared, and which across-task
analysis the design (methods, tasks, reference) allows. The numbers come from :mod:`dcbench.stats`;
every decision is written to the trail in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dcbench import stats
from dcbench.host.errors import DcbenchError
from dcbench.report.formatting import markdown_code, markdown_text
from dcbench.report.inputs import reference_lines
from dcbench.report.precision import GAIN_COLUMNS, PRECISION_COLUMNS, gains_over_reference, precision_table
from dcbench.report.tracks import TRACK_COLUMNS, fold_tracks, teachers_of, track_differences
from dcbench.results.identity import identity_notes
from dcbench.results.runs_table import ACCURACY

FAMILY_LABELS = {stats.ALL_PAIRS: "all pairs of methods", stats.VS_REFERENCE: "each method vs the reference"}


@dataclass
class Analysis:
    """Everything the report shows, computed once from runs.csv."""

    cells: pd.DataFrame  # per-cell summaries, the reference lines included
    comparisons: pd.DataFrame  # within-task tests, Holm over all of them
    ranks: pd.DataFrame  # per complete task and method: mean and rank (1 = best)
    omnibus: pd.DataFrame  # one row: Friedman (exact / permutation p), Nemenyi CD
    pair_families: list[stats.PairFamily]  # the across-task Wilcoxon families considered
    pair_family: stats.PairFamily | None  # the one run, None when none can reach alpha
    wilcoxon: pd.DataFrame  # pairwise Wilcoxon over tasks (empty when not run)
    nemenyi: pd.DataFrame  # Nemenyi post-hoc on mean ranks (empty when not run)
    win_tie_loss: pd.DataFrame  # per method vs the reference (empty without a reference)
    reference: str | None  # the reference method, None when it is not in runs.csv
    no_cd_diagram: str | None  # why there is no CD diagram / Nemenyi; None when there is
    dependence: str | None  # caveat when tasks share a dataset or synthetic sets
    trail: list[str] = field(default_factory=list)  # the decisions taken, in words
    #: reference lines (methods recorded reference_only, e.g. the whole training set): name -> label
    reference_lines: dict[str, str] = field(default_factory=dict)
    #: table names: method -> label (Method.label), dataset -> label (DatasetSpec.label)
    method_labels: dict[str, str] = field(default_factory=dict)
    dataset_labels: dict[str, str] = field(default_factory=dict)
    #: the compared methods that select real images (Method.coreset): grouped apart in tables
    coresets: frozenset[str] = frozenset()
    #: the evaluation protocol in words, for table captions (preset, networks, epochs, augmentation)
    protocol: str = ""
    #: per method and task: its difference from the reference, with the interval of its test
    gains: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(GAIN_COLUMNS)))
    #: per task: variance between seeds / between networks, what each buys, seeds for 1 point
    precision: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(PRECISION_COLUMNS)))
    #: per method, task and track: its paired difference from the baseline track (several tracks)
    tracks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TRACK_COLUMNS)))
    #: the teachers of teacher tracks: key, track, test accuracy, build seconds
    teachers: pd.DataFrame = field(default_factory=pd.DataFrame)

    def compared(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (cells or runs) of the compared methods, reference lines left out."""
        return frame[~frame["method"].isin(self.reference_lines)]

    @property
    def n_tasks(self) -> int:
        """Complete tasks (a cell for every compared method): the across-task sample size."""
        return int(self.omnibus.at[0, "N"])

    @property
    def n_methods(self) -> int:
        return int(self.omnibus.at[0, "k"])

    @property
    def family_size(self) -> int:
        """How many within-task tests share the Holm correction (0 when nothing was compared)."""
        return int(self.comparisons["family_size"].iloc[0]) if len(self.comparisons) else 0

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """The numeric outputs by file name; across-task tables only when they were computed."""
        tables = {
            "cells.csv": self.cells,
            "comparisons.csv": self.comparisons,
            "ranks.csv": self.ranks,
            "omnibus.csv": self.omnibus,
        }
        if not self.wilcoxon.empty:
            tables["wilcoxon.csv"] = self.wilcoxon
        if not self.nemenyi.empty:
            tables["nemenyi.csv"] = self.nemenyi
        if self.reference is not None:
            tables["win_tie_loss.csv"] = self.win_tie_loss
            tables["gains.csv"] = self.gains
        tables["precision.csv"] = self.precision
        if not self.tracks.empty:
            tables["tracks.csv"] = self.tracks
        if not (self.cells["track"] != "").any():  # one unnamed track: the tables as before tracks
            tables = {name: t.drop(columns="track", errors="ignore") for name, t in tables.items()}
        return tables


def analyse(runs: pd.DataFrame, reference: str = "random", alpha: float = 0.05, pairing: bool = True) -> Analysis:
    """Apply the statistics protocol to validated runs (see :func:`load_runs`). ``pairing``:
    paired t where the recorded design pairs two methods (False: Welch everywhere)."""
    tracks = track_differences(runs[~runs["method"].isin(reference_lines(runs))], alpha)
    teachers = teachers_of(runs)
    runs = fold_tracks(runs)  # from here a task's evaluation is its architecture and track
    # methods shown once per identity where they have several
    trail: list[str] = [markdown_text(note) for note in identity_notes(runs)]
    cells = stats.summarize_cells(runs, ACCURACY)
    lines = reference_lines(runs)
    compared_runs = runs[~runs["method"].isin(lines)]
    if compared_runs.empty:
        raise DcbenchError(
            f"runs.csv holds only reference lines ({', '.join(sorted(lines))}): run at least one condensation method"
        )
    for method, label in sorted(lines.items()):
        trail.append(
            f"Method {markdown_code(method)} ({markdown_text(label)}) is a reference line (recorded "
            "reference_only): shown on top of the "
            "tables, excluded from comparisons, ranks and omnibus tests."
        )
    single_seed = int((cells["n_seeds"] == 1).sum())
    if single_seed:
        trail.append(
            f"{single_seed} cell(s) have one synthesis seed: their SD, CI and tests are "
            "undefined (NaN; a cell not tested against the best is marked ‡ in the "
            "tables); run at least 3 seeds per cell."
        )

    methods = sorted(compared_runs["method"].unique())
    if reference not in methods:
        trail.append(
            f"Reference {markdown_code(reference)} is not in runs.csv (methods: {markdown_text(', '.join(methods))}): "
            "only comparisons with the best method were run."
        )
    active_reference = reference if reference in methods else None

    designs = seed_designs(compared_runs) if pairing else None
    scores = stats.seed_scores(compared_runs, ACCURACY)
    comparisons = stats.compare_within_tasks(scores, active_reference, alpha, designs)
    trail.append(_within_task_decision(comparisons, alpha, pairing))
    untested = int(comparisons["p_raw"].isna().sum())
    if untested:
        trail.append(
            f"{untested} comparison(s) could not be tested (fewer than 2 seeds or no "
            "variance): p is NaN, they are outside the Holm family and marked ‡."
        )

    matrix = stats.task_score_matrix(cells[~cells["method"].isin(lines)])
    complete = matrix.dropna()
    if len(complete) < len(matrix):
        trail.append(
            f"{len(matrix) - len(complete)} of {len(matrix)} task(s) lack a cell for some "
            "method: ranks and across-task tests use the complete tasks only."
        )
    n_tasks, k = complete.shape
    omnibus = pd.DataFrame([stats.omnibus_tests(complete, alpha)])
    trail.append(_friedman_decision(omnibus.iloc[0]))

    nemenyi = pd.DataFrame(columns=list(stats.NEMENYI_COLUMNS))
    no_cd_diagram = None
    if n_tasks >= stats.NEMENYI_MIN_TASKS and k >= 3:
        nemenyi = stats.nemenyi_posthoc(complete, alpha)
        rejects = bool(omnibus.at[0, "p"] < alpha)
        nemenyi["significant"] = nemenyi["significant"] & rejects
        trail.append(
            f"Nemenyi post-hoc on mean ranks over all {len(nemenyi)} pairs "
            f"(N = {n_tasks} >= {stats.NEMENYI_MIN_TASKS} tasks) and the CD diagram"
            + (
                "."
                if rejects
                else f"; the Friedman test does not reject at α = {alpha:g}, so no Nemenyi pair is read as significant."
            )
        )
    else:
        no_cd_diagram = _no_cd_diagram(n_tasks, k, float(omnibus.at[0, "nemenyi_cd"]))
        trail.append(no_cd_diagram)

    families = (
        stats.candidate_families(list(complete.columns), n_tasks, active_reference, alpha)
        if k >= 2 and n_tasks >= 1
        else []
    )
    family = stats.choose_family(families)
    trail += [_family_reach(candidate, alpha) for candidate in families]
    if family is not None:
        wilcoxon = stats.wilcoxon_across_tasks(complete, family, alpha)
        trail.append(
            f"Pairwise Wilcoxon signed-rank tests over tasks for "
            f"{FAMILY_LABELS[family.name]}, Holm over {len(family.pairs)}; differences "
            f"rounded to {stats.WILCOXON_DECIMALS} decimals (accuracy points) so ties and "
            "zeros are real, zeros dropped."
        )
    else:
        wilcoxon = pd.DataFrame(columns=list(stats.WILCOXON_COLUMNS))
        if families:
            trail.append(
                "No pairwise test across tasks: no family can reach α with these tasks"
                + (
                    f"; win/tie/loss counts vs {markdown_code(active_reference)} shown instead."
                    if active_reference
                    else "; only mean ranks are shown."
                )
            )
    win_tie_loss = (
        stats.win_tie_loss(comparisons, active_reference)
        if active_reference
        else pd.DataFrame(columns=["method", *stats.WIN_TIE_LOSS_COLUMNS])
    )
    dependence = dependence_caveat(runs, complete.index)
    if dependence:
        trail.append(dependence)
    return Analysis(
        cells,
        comparisons,
        _long_ranks(complete),
        omnibus,
        families,
        family,
        wilcoxon,
        nemenyi,
        win_tie_loss,
        active_reference,
        no_cd_diagram,
        dependence,
        trail,
        lines,
        _labels(runs, "method", "method_label"),
        _labels(runs, "dataset", "dataset_label"),
        frozenset(compared_runs.loc[compared_runs["coreset"], "method"]),
        protocol_words(runs),
        gains_over_reference(comparisons, active_reference),
        precision_table(compared_runs, active_reference, int(comparisons["p_raw"].notna().sum()), alpha),
        tracks,
        teachers,
    )


def protocol_words(runs: pd.DataFrame) -> str:
    """'quick preset; 1 ConvNet evaluation network per seed, 150 epochs, augmentation none'
    (each part only where runs.csv records it; several values joined by '/')."""

    def values(column: str) -> str:
        if column not in runs.columns or runs[column].isna().all():
            return ""
        return "/".join(str(v) for v in sorted(runs[column].dropna().unique(), key=str))

    parts = []
    if values("preset"):
        parts.append(f"{values('preset')} preset (method settings and budgets)")
    networks = values("eval_models")
    if networks:
        noun = "network" if networks == "1" else "networks"
        parts.append(f"{networks} {values('eval_arch')} evaluation {noun} per seed")
    if values("eval_epochs"):
        parts.append(f"{values('eval_epochs')} epochs")
    if values("eval_augmentation"):
        parts.append(f"augmentation {values('eval_augmentation')}")
    return ", ".join(parts)


def _labels(runs: pd.DataFrame, key: str, label: str) -> dict[str, str]:
    """Identifier -> table name, as recorded (the first one where a store holds several). A method
    shown once per identity ("herding#flvedtkb") keeps its identity after the label."""
    first = runs[[key, label]].drop_duplicates(key)
    names = dict(zip(first[key].astype(str), first[label].astype(str)))
    return {k: v + k[k.index("#") :] if "#" in k and "#" not in v else v for k, v in names.items()}


def seed_designs(runs: pd.DataFrame) -> dict[tuple[tuple[object, ...], str], stats.SeedDesign]:
    """The recorded design of every (task, method): what its cells share with other methods' cells
    of the same seed (read from the design columns only, never from an accuracy)."""
    return {
        (tuple(key[:-1]), str(key[-1])): stats.design_of(group)
        for key, group in runs.groupby([*stats.TASK_KEYS, "method"], sort=True)
    }


def _within_task_decision(comparisons: pd.DataFrame, alpha: float, pairing: bool) -> str:
    """One trail line: which tests ran, why, and the Holm family they belong to."""
    family = int(comparisons["family_size"].iloc[0]) if len(comparisons) else 0
    n_paired = int(comparisons["paired"].sum())
    line = (
        f"Within-task tests on per-seed means, two-sided: paired t (effect size g_av) for {n_paired} of "
        f"{len(comparisons)} comparison(s), where the recorded design pairs them (the same seeds, the same "
        "initial images, the same evaluation networks), decided before any accuracy was read; Welch t "
        f"(Hedges' g) for the others; Holm over {family} comparison(s), α = {alpha:g}. Each row of "
        "comparisons.csv says which test ran and why (`pairing`) and the smallest difference it could "
        f"detect with 80% power at α / {max(family, 1)} (`detectable_diff`)."
    )
    if not pairing:
        line += " Pairing switched off (--unpaired): Welch everywhere."
    return line


def _friedman_decision(omnibus: pd.Series) -> str:
    """One trail line: whether the Friedman test ran, which p is read and why."""
    k, n_tasks = int(omnibus["k"]), int(omnibus["N"])
    if k < 3 or n_tasks < 2:
        return f"Friedman test not run: it needs >= 3 methods and >= 2 complete tasks (here k = {k}, N = {n_tasks})."
    if pd.isna(omnibus["friedman_chi2"]):
        return "Friedman test undefined: every task ties all methods."
    if omnibus["p_method"] == "exact":
        how = "exact p, every within-task ordering of the methods enumerated"
    else:
        how = f"permutation p from {int(omnibus['permutations']):,} random within-task orderings (fixed seed)"
    approximations = (
        "χ² and Iman–Davenport p shown too: N > 10 and k > 5, where their approximation holds (Demšar 2006)"
        if omnibus["approximations_hold"]
        else f"χ² and Iman–Davenport p not shown: their approximation needs N > 10 and k > 5 "
        f"(Demšar 2006), here N = {n_tasks}, k = {k}"
    )
    return f"Friedman test: {how}; {approximations}."


def _no_cd_diagram(n_tasks: int, k: int, cd: float) -> str:
    """Why there is no CD diagram and no Nemenyi post-hoc."""
    if k < 3:
        return f"No CD diagram and no Nemenyi post-hoc: they need >= 3 methods (here k = {k})."
    line = (
        f"No CD diagram and no Nemenyi post-hoc: {n_tasks} complete task(s) < "
        f"{stats.NEMENYI_MIN_TASKS}; the normal approximation of mean ranks needs at least "
        f"{stats.NEMENYI_MIN_TASKS} tasks (autorank refuses fewer)"
    )
    if np.isfinite(cd) and cd >= k - 1:
        line += f", and the critical difference ({cd:.2f} ranks) is wider than the whole range of mean ranks (1 to {k})"
    return line + "."


def _family_reach(family: stats.PairFamily, alpha: float) -> str:
    """One trail line: what a Wilcoxon family can reach with the tasks at hand."""
    m, n_tasks = len(family.pairs), family.n_tasks
    verdict = "can reach" if family.reachable else "cannot reach"
    capped = " (capped at 1)" if m * stats.smallest_wilcoxon_p(n_tasks) > 1.0 else ""
    return (
        f"Wilcoxon over {FAMILY_LABELS[family.name]} ({m} test(s)): with N = {n_tasks} tasks "
        f"the smallest Holm-adjusted p is {m} × 2/2^{n_tasks} = "
        f"{family.smallest_adjusted_p:.3g}{capped}, which {verdict} α = {alpha:g}; it needs at "
        f"least {family.tasks_needed} tasks."
    )


def dependence_caveat(runs: pd.DataFrame, tasks: pd.Index) -> str | None:
    """A caveat when the tasks of the across-task tests are not independent replicates.

    Tasks share a dataset when the grid has several IPCs or architectures per dataset; they share
    synthetic sets when one condensation run is evaluated on several architectures.
    """
    if len(tasks) < 2:
        return None
    task_frame = pd.DataFrame(list(tasks), columns=list(stats.TASK_KEYS))
    per_dataset = task_frame.groupby("dataset").size()
    shared = per_dataset[per_dataset > 1]
    task_runs = runs.merge(task_frame, on=list(stats.TASK_KEYS))
    archs_per_run = task_runs.groupby("run_id")["eval_arch"].nunique()
    sharing_runs = task_runs[task_runs["run_id"].isin(archs_per_run[archs_per_run > 1].index)]
    shared_sets = sharing_runs[["dataset", "ipc"]].drop_duplicates()
    reasons = []
    if len(shared):
        reasons.append(
            "they share datasets ("
            + ", ".join(f"{markdown_text(dataset)}: {count} tasks" for dataset, count in shared.items())
            + ")"
        )
    if len(shared_sets):
        reasons.append(
            f"the synthetic sets of {len(shared_sets)} (dataset, IPC) pair(s) are "
            "evaluated on several architectures, so those tasks share them"
        )
    if not reasons:
        return None
    return (
        f"Dependence: the {len(tasks)} tasks are not independent replicates: "
        + "; ".join(reasons)
        + ". Across-task tests treat tasks as independent, so read "
        "them as statements about this grid, not about datasets at large."
    )


def _long_ranks(complete: pd.DataFrame) -> pd.DataFrame:
    """Tidy ranks table: one row per (task, method) with the cell mean and its rank."""
    means = complete.stack().rename("mean")
    ranks = stats.rank_within_tasks(complete).stack().rename("rank")
    return pd.concat([means, ranks], axis=1).reset_index()
