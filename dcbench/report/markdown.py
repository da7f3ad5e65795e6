"""The sections of report.md. Each is a function of the :class:`ReportContext` that returns its
lines; :data:`dcbench.report.SECTIONS` lists them in order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcbench import stats
from dcbench.report import cost
from dcbench.report.analysis import FAMILY_LABELS, Analysis
from dcbench.report.compare import write_comparison
from dcbench.report.context import ReportContext
from dcbench.report.formatting import (
    markdown_code,
    markdown_text,
    number,
    p_clause,
    p_value,
    render_markdown_table,
    span,
    yes_no,
)
from dcbench.report.inputs import COST_COLUMNS, dataset_manifests
from dcbench.report.tables import markdown_results_caption, markdown_results_table

EFFECT_SIZE_LABELS = {stats.HEDGES_G: "Hedges' g", stats.G_AV: "g_av"}


def title_section(context: ReportContext) -> list[str]:
    return [f"# dcbench report: {markdown_text(context.results_dir.resolve().name)}", ""]


def _values(runs: pd.DataFrame, column: str) -> str:
    """The distinct values of a descriptive column, or a note that it was not recorded."""
    if column not in runs.columns or runs[column].isna().all():
        return "not recorded"
    return markdown_text(", ".join(str(value) for value in sorted(runs[column].dropna().unique(), key=str)))


def _has_tracks(runs: pd.DataFrame) -> bool:
    return "track" in runs.columns and bool((runs["track"].astype(str) != "").any())


def protocol_section(context: ReportContext) -> list[str]:
    runs, analysis, alpha = context.runs, context.analysis, context.alpha
    cells = analysis.cells
    n_tasks = len(analysis.compared(cells)[list(stats.TASK_KEYS)].drop_duplicates())
    seeds = ", ".join(map(str, sorted(runs["synth_seed"].unique())))
    evals_per_seed = runs.groupby([*stats.CELL_KEYS, "synth_seed"]).size()
    targets = f" and vs the reference {markdown_code(analysis.reference)}" if analysis.reference else ""
    versions = ""
    if "method_version" in runs.columns:
        versions = (
            " ("
            + ", ".join(
                markdown_text(f"{method} {version}")
                for method, version in runs.groupby("method")["method_version"].first().items()
            )
            + ")"
        )
    return [
        "## Protocol",
        "",
        f"- Grid: {runs['method'].nunique()} methods{versions} on {n_tasks} task(s) "
        f"(dataset × IPC × evaluation architecture{' × track' if _has_tracks(runs) else ''}), "
        f"{len(cells)} cells, {len(runs)} trained "
        "evaluation models.",
        f"- Synthesis seeds: {seeds}; {span(cells['n_seeds'])} per cell. "
        "The synthesis seed is the unit of replication.",
        f"- Evaluation models per seed: {_values(runs, 'eval_models')} (found "
        f"{span(evals_per_seed)}), trained for {_values(runs, 'eval_epochs')} epochs with "
        f"augmentation {_values(runs, 'eval_augmentation')}; "
        f"protocol {_values(runs, 'protocol')}, preset {_values(runs, 'preset')}, "
        f"dcbench {_values(runs, 'dcbench_version')}.",
        "- Per cell: evaluation models are averaged within each seed; mean ± SD (ddof = 1) and "
        "a 95% t-interval over the per-seed means. `cells.csv` also holds the pooled paper-style "
        "mean and SD (ddof = 0) over all evaluation models, for comparison with published tables.",
        f"- Within each task: every pair of methods (the best mean{targets} among them; every "
        "pair because the best is chosen from the data), two-sided t-test on per-seed means with "
        "the 95% CI of the difference: paired t (g_av) where the recorded design pairs the two "
        "methods (same seeds, same initial images, same evaluation networks: decided before any "
        "accuracy is read), Welch t (Hedges' g) otherwise; Holm over all "
        f"{analysis.family_size} comparisons of the report, α = {alpha:g}. Not significant means "
        "not detected at this precision: each comparison states the smallest difference it could "
        "detect with 80% power. No rank tests within cells: with a handful of seeds they cannot "
        "reach significance.",
        "- Across tasks: mean ranks (1 = best) and the Friedman test with an exact or "
        "permutation p (χ² and Iman–Davenport only where N > 10 and k > 5). Pairwise Wilcoxon "
        "signed-rank tests over tasks with Holm, over all pairs or else each method vs the "
        "reference, only when that family's smallest possible adjusted p is below α; otherwise "
        "win/tie/loss counts (tie = not significant after Holm). From "
        f"{stats.NEMENYI_MIN_TASKS} tasks, the Nemenyi post-hoc and its CD diagram.",
        "- Units: accuracy and differences in percent (runs.csv stores fractions).",
        "",
    ]


def datasets_section(context: ReportContext, most: int = 20) -> list[str]:
    """Each dataset's classes, image shape and, for a folder or file dataset, where it was read
    from, taken from the first cell manifest that records them (older results record none)."""
    lines = []
    for dataset, manifest in sorted(dataset_manifests(context.results_dir, context.runs).items()):
        names = [markdown_text(name) for name in manifest["class_names"]]
        shown = ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")
        line = f"- {markdown_code(dataset)}: {len(names)} classes ({shown})"
        if manifest.get("image_shape"):
            line += "; images " + "×".join(str(v) for v in manifest["image_shape"])
        source = manifest.get("dataset_source") or {}
        if source.get("path"):
            line += (
                f"; {markdown_text(source.get('kind', 'read from'))} {markdown_code(source['path'])} (content SHA-256 "
                f"{str(source.get('content_hash', ''))[:12]}, size: {source.get('size_rule', '?')})"
            )
        lines.append(line)
    return ["## Datasets", "", *lines, ""] if lines else []


def results_section(context: ReportContext) -> list[str]:
    table = markdown_results_table(context.analysis, context.runs)
    caption = markdown_results_caption(context.analysis, context.runs, context.alpha)
    return [
        "## Results",
        "",
        caption,
        "",
        table,
        "",
        "Per-cell statistics: `cells.csv`; numeric table: `table_wide.csv`; LaTeX: `table.tex`.",
        "",
    ]


def reference_section(context: ReportContext) -> list[str]:
    """The run held against ``--against`` cell by cell; writes reference_comparison.csv."""
    if context.against is None:
        return []
    lines = write_comparison(context.results_dir, context.against, context.out_dir, context.alpha)
    return ["## Against the reference", "", *lines, ""]


def comparisons_section(context: ReportContext) -> list[str]:
    comparisons = context.analysis.comparisons
    lines = ["## Comparisons within tasks", ""]
    if comparisons.empty:
        return lines + ["No comparisons: every task has a single method.", ""]
    shown = pd.DataFrame(
        {
            "task": comparisons["dataset"] + " IPC " + comparisons["ipc"].astype(str) + " " + comparisons["eval_arch"],
            "A": comparisons["method_a"],
            "B": comparisons["method_b"],
            "kind": comparisons["kind"],
            "test": comparisons["test"],
            "Δ = A − B": comparisons["diff"].map(number),
            "95% CI": [
                f"[{number(low)}, {number(high)}]"
                for low, high in zip(comparisons["diff_ci_low"], comparisons["diff_ci_high"])
            ],
            "t": comparisons["statistic"].map(number),
            "df": comparisons["df"].map(lambda v: number(v, 1)),
            "p": comparisons["p_raw"].map(p_value),
            "p (Holm)": comparisons["p_adj"].map(p_value),
            "effect size": comparisons["effect_size"].map(number),
            "effect kind": comparisons["effect_size_kind"].map(EFFECT_SIZE_LABELS),
            "significant": yes_no(comparisons["significant"], comparisons["p_adj"].isna()),
            "detectable": comparisons["detectable_diff"].map(number),
            "why this test": comparisons["pairing"],
        }
    )
    present = set(comparisons["effect_size_kind"])
    kinds = [kind for kind in stats.EFFECT_SIZE_KINDS if kind in present]
    return lines + [
        render_markdown_table(
            shown.set_index("task"),
            "task",
            text_columns=("A", "B", "kind", "test", "effect kind", "significant", "why this test"),
        ),
        "",
        "Effect sizes (pingouin's definitions): "
        + "; ".join(stats.EFFECT_SIZE_KINDS[kind] for kind in kinds)
        + ". '–': not tested (one seed or no variance). Detectable: the difference (points) the "
        f"row's test finds with 80% power at α / {max(context.analysis.family_size, 1)}, Holm's "
        "first step; a smaller true difference is likely to stay not significant.",
        "",
    ]


def gains_section(context: ReportContext) -> list[str]:
    """Each method's difference from the reference at the same seeds, with its interval."""
    gains, reference = context.analysis.gains, context.analysis.reference
    if reference is None or gains.empty:
        return []
    shown = pd.DataFrame(
        {
            "task": gains["dataset"] + " IPC " + gains["ipc"].astype(str) + " " + gains["eval_arch"],
            "method": gains["method"],
            "gain (points)": gains["gain"].map(number),
            "95% CI": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(gains["ci_low"], gains["ci_high"])],
            "test": gains["test"],
            "significant": yes_no(gains["significant"], gains["ci_low"].isna()),
            "detectable": gains["detectable_diff"].map(number),
        }
    )
    return [
        f"## Gain over {markdown_code(reference)}",
        "",
        f"Each method's accuracy minus {markdown_code(reference)}'s, in points, at the same seeds (paired where "
        f"the design pairs them: a method that starts from {markdown_code(reference)}'s images at a seed is "
        "measured against exactly its own start). The interval is the 95% CI of the test's "
        "difference, not adjusted; significance is Holm's over the whole family.",
        "",
        render_markdown_table(shown.set_index("task"), "task", text_columns=("method", "test", "significant")),
        "",
    ]


def tracks_section(context: ReportContext) -> list[str]:
    """What each method owes to each evaluation track: paired differences from the baseline track."""
    table, teachers = context.analysis.tracks, context.analysis.teachers
    if table.empty:
        return []
    labels = context.analysis.method_labels
    shown = pd.DataFrame(
        {
            "task": table["dataset"] + " IPC " + table["ipc"].astype(str) + " " + table["eval_arch"],
            "method": [labels.get(m, m) for m in table["method"]],
            "track − baseline": table["track"] + " − " + table["baseline"],
            "Δ (points)": table["diff"].map(number),
            "95% CI": [f"[{number(lo)}, {number(hi)}]" for lo, hi in zip(table["ci_low"], table["ci_high"])],
            "seeds": table["n_seeds"].astype(str),
            "p (Holm)": table["p_adj"].map(p_value),
            "significant": yes_no(table["significant"], table["p_adj"].isna()),
        }
    )
    lines = [
        "## Evaluation tracks",
        "",
        "Every set was evaluated under each track, so a method's difference between two tracks is "
        "paired by seed (the same set judged twice): the mean of the per-seed differences in "
        "points, its 95% t-interval, and a paired t-test with Holm over the rows of this table. "
        "How much a method owes to a track's labels or augmentation; compare it with `random`'s "
        "row, the same recipe applied to real images.",
        "",
        render_markdown_table(
            shown.set_index("task"), "task", text_columns=("method", "track − baseline", "seeds", "significant")
        ),
        "",
    ]
    for row in teachers.itertuples(index=False):
        accuracy = f"{100 * float(row.teacher_acc):.2f}%" if pd.notna(row.teacher_acc) else "not recorded"
        cost_text = f", trained once in {float(row.teacher_build_s):.0f} s" if pd.notna(row.teacher_build_s) else ""
        lines.append(
            f"- Track {markdown_code(row.track)}: teacher {markdown_code(row.teacher)} "
            "(an artifact: `dcbench artifacts list`), "
            f"{accuracy} test accuracy{cost_text}, shared by every cell of the track."
        )
    return lines + ([""] if len(teachers) else [])


def precision_section(context: ReportContext) -> list[str]:
    """Where the spread comes from, what one more seed or network buys, how many seeds 1 point needs."""
    table = context.analysis.precision
    if table.empty:
        return []
    reference = context.analysis.reference or "the reference"
    shown = pd.DataFrame(
        {
            "task": table["dataset"] + " IPC " + table["ipc"].astype(str) + " " + table["eval_arch"],
            "seeds × networks": table["seeds"].astype(str) + " × " + table["networks"].astype(str),
            "SD between seeds": table["between_seeds_sd"].map(number),
            "SD between networks": table["within_seed_sd"].map(number),
            "gain SD between seeds": table["gain_between_seeds_sd"].map(number),
            "gain SD between networks": table["gain_within_seed_sd"].map(number),
            "SD of a seed's gain": table["gain_sd_of_seed_means"].map(number),
            "buys more per CPU-s": table["buys_more"].replace("", "–"),
            "seeds for 1 point": table["seeds_for_1_point"].map(lambda v: "–" if pd.isna(v) else str(int(v))),
        }
    )
    return [
        "## Precision",
        "",
        "Variance of accuracy (points) split by the method of moments into between synthesis "
        "seeds and between the evaluation networks of one seed, averaged over the methods; the "
        f"same for each method's gain over {markdown_code(reference)} at the same seed and network. More seeds "
        "shrink both parts, more networks only the second: 'buys more' compares the variance of a "
        "grid mean each removes per CPU-second it costs (a seed: one condensation and its "
        "networks; a network: one more per seed). 'Seeds for 1 point': how many seeds a paired "
        f"comparison with this spread of gains needs to detect 1 point with 80% power at α / "
        f"{max(context.analysis.family_size, 1)}. Networks-only parts need at least 2 networks "
        "per seed ('–' otherwise).",
        "",
        render_markdown_table(
            shown.set_index("task"), "task", text_columns=("seeds × networks", "buys more per CPU-s")
        ),
        "",
    ]


def across_tasks_section(context: ReportContext) -> list[str]:
    analysis = context.analysis
    lines = ["## Across tasks", ""]
    if analysis.ranks.empty:
        lines += ["No task has a cell for every method: no ranks and no across-task tests.", ""]
    else:
        mean_ranks = analysis.ranks.groupby("method")["rank"].mean().sort_values()
        table = pd.DataFrame({"mean rank": mean_ranks.map(lambda v: f"{v:.2f}")})
        lines += [render_markdown_table(table, "method"), "", _friedman_sentence(analysis), ""]
        if analysis.dependence:
            lines += [f"**{analysis.dependence}**", ""]
        lines += _pairwise_lines(context)
        lines += _nemenyi_lines(context)
    if analysis.reference is not None and not analysis.win_tie_loss.empty:
        lines += [
            f"Win/tie/loss vs {markdown_code(analysis.reference)} over tasks (tie = within-task test not "
            "significant after Holm; untested = one seed or no variance):",
            "",
            render_markdown_table(analysis.win_tie_loss.set_index("method"), "method"),
            "",
        ]
    return lines


def _friedman_sentence(analysis: Analysis) -> str:
    omnibus = analysis.omnibus.iloc[0]
    k, n_tasks = int(omnibus["k"]), int(omnibus["N"])
    head = f"k = {k} methods, N = {n_tasks} complete tasks. "
    if k < 3 or n_tasks < 2:
        return head + "Friedman test not run: it needs at least 3 methods and 2 tasks."
    if pd.isna(omnibus["friedman_chi2"]):
        return head + "Friedman test undefined: every task ties all methods."
    if omnibus["p_method"] == "exact":
        how = "exact: every within-task ordering of the methods enumerated"
    else:
        how = f"permutation: {int(omnibus['permutations']):,} random within-task orderings"
    text = head + f"Friedman χ²_F = {number(omnibus['friedman_chi2'])}, {p_clause(omnibus['p'])} ({how}). "
    if not omnibus["approximations_hold"]:
        return text + (
            "The χ² and Iman–Davenport approximations are not shown: they need "
            "N > 10 and k > 5, and with fewer tasks they can be far from the exact p."
        )
    text += f"Approximations: χ² {p_clause(omnibus['p_chi2'])}; "
    if np.isinf(omnibus["iman_davenport_F"]):
        return text + (
            "Iman–Davenport F = ∞ because every task orders the methods the same way; "
            "its p is undefined there, read the permutation p."
        )
    return text + (f"Iman–Davenport F = {number(omnibus['iman_davenport_F'])} ({p_clause(omnibus['p_F'])}).")


def _pairwise_lines(context: ReportContext) -> list[str]:
    analysis, alpha = context.analysis, context.alpha
    if not analysis.pair_families:
        return []
    lines = [
        f"Pairwise Wilcoxon signed-rank tests over tasks with Holm: with N = "
        f"{analysis.n_tasks} tasks the smallest two-sided p is 2/2^N = "
        f"{stats.smallest_wilcoxon_p(analysis.n_tasks):.3g}, so the smallest Holm-adjusted p "
        "of m tests is m times that:",
        "",
    ]
    for family in analysis.pair_families:
        lines.append(
            f"- {FAMILY_LABELS[family.name]} (m = {len(family.pairs)}): smallest "
            f"adjusted p {family.smallest_adjusted_p:.3g}; below α = {alpha:g} from "
            f"{family.tasks_needed} tasks."
        )
    lines.append("")
    if analysis.pair_family is None:
        fallback = (
            f"the win/tie/loss counts vs {markdown_code(analysis.reference)} below summarise the "
            "within-task tests instead"
            if analysis.reference
            else "only the mean ranks are shown"
        )
        return lines + [
            f"None of these can reach α with {analysis.n_tasks} task(s), so no "
            f"pairwise test is run across tasks; {fallback}.",
            "",
        ]
    wilcoxon = analysis.wilcoxon
    shown = pd.DataFrame(
        {
            "A": wilcoxon["method_a"],
            "B": wilcoxon["method_b"],
            "tasks": wilcoxon["n_tasks"],
            "tested": wilcoxon["n_tested"],
            "median Δ": wilcoxon["median_diff"].map(number),
            "W": wilcoxon["statistic"].map(lambda v: number(v, 1)),
            "p": wilcoxon["p_raw"].map(p_value),
            "p (Holm)": wilcoxon["p_adj"].map(p_value),
            "significant": yes_no(wilcoxon["significant"]),
        }
    ).set_index("A")
    return lines + [
        f"Run over {FAMILY_LABELS[analysis.pair_family.name]} (Δ = A − B, accuracy points; "
        f"differences rounded to {stats.WILCOXON_DECIMALS} decimals, zero differences dropped, "
        "'tested' counts the rest):",
        "",
        render_markdown_table(shown, "A", text_columns=("B", "significant")),
        "",
    ]


def _nemenyi_lines(context: ReportContext) -> list[str]:
    analysis = context.analysis
    if analysis.no_cd_diagram is not None:
        return [analysis.no_cd_diagram, ""]
    nemenyi = analysis.nemenyi
    shown = pd.DataFrame(
        {
            "A": nemenyi["method_a"],
            "B": nemenyi["method_b"],
            "rank A − rank B": nemenyi["rank_diff"].map(number),
            "q": nemenyi["q"].map(number),
            "p (Nemenyi)": nemenyi["p_adj"].map(p_value),
            "significant": yes_no(nemenyi["significant"]),
        }
    ).set_index("A")
    cd = float(analysis.omnibus.at[0, "nemenyi_cd"])
    return [
        f"Nemenyi post-hoc on mean ranks (all pairs, family-wise by construction; "
        f"CD = {cd:.2f} at α = {context.alpha:g}, drawn in `cd_diagram`). A pair's verdict "
        "depends on the other methods in the pool, so the Wilcoxon rows are the pairwise "
        "claims; a pair counts as significant only when the Friedman test rejects.",
        "",
        render_markdown_table(shown, "A", text_columns=("B", "significant")),
        "",
    ]


def figures_section(context: ReportContext) -> list[str]:
    if not context.figures:
        return []
    kinds = {"png": "PNG (300 dpi)", "pdf": "PDF (vector)"}
    lines = [
        "## Figures",
        "",
        "Each figure is written as " + " and ".join(kinds[kind] for kind in context.figure_formats) + ".",
        "",
    ]
    for path in context.figures:
        lines.append(f"![{path.stem}]({path.name})" if path.suffix == ".png" else f"- [{path.stem}]({path.name})")
    return lines + [""]


def cost_section(context: ReportContext) -> list[str]:
    runs = context.runs
    present = [column for column in COST_COLUMNS if column in cost.present_costs(runs)]
    lines = ["## Cost per method", ""]
    if not present:
        return lines + ["No cost columns recorded.", ""]
    costs = runs.groupby("method")[present].mean()
    lines += [
        "Means over the rows of runs.csv (one row per evaluation model).",
        "",
        render_markdown_table(costs.map(lambda v: number(v, 1)), "method"),
        "",
    ]
    one_off = cost.one_off_lines(runs)
    if one_off:
        lines += [
            "One-off costs (`artifact_s`, not in `condense_s`): shared artifacts, each built once for "
            "every cell that uses it (`dcbench artifacts list`):",
            "",
            *one_off,
            "",
        ]
    if context.pareto.empty:
        return lines
    return lines + [
        "Pareto front of accuracy against condensation seconds per task (no other "
        "method is both as cheap and as accurate; by the means, see `acc_vs_cost_*` "
        "for the intervals and `pareto.csv`):",
        "",
        *cost.pareto_lines(context.pareto),
        "",
    ]


def failures_section(context: ReportContext) -> list[str]:
    failures = context.failures
    lines = ["## Failures", ""]
    if failures.empty:
        return lines + ["None recorded.", ""]
    return lines + [
        render_markdown_table(
            failures.set_index(failures.columns[0]), failures.columns[0], text_columns=tuple(failures.columns)
        ),
        "",
    ]


def trail_section(context: ReportContext) -> list[str]:
    steps = context.analysis.trail + context.notes
    # steps quote names as markdown_code/markdown_text; line breaks in a note end no list item
    return ["## Decision trail", ""] + [f"- {' '.join(str(step).splitlines())}" for step in steps] + [""]


def spec_section(context: ReportContext) -> list[str]:
    if context.spec is None:
        return []
    return ["## Experiment spec", "", "```toml", context.spec.rstrip(), "```", ""]
