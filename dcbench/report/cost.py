"""What each cell cost, and which methods buy the most accuracy per condensation second.

A method that gets twice the compute of another is expected to score higher; a table of accuracies
alone hides that. This module puts the cost next to the accuracy: per cell (method, dataset, ipc,
eval_arch) the condensation seconds, the evaluation seconds (all evaluation models of the cell)
and the peak memory (the cell's peak resident set on the CPU; its peak allocated GPU memory when
it ran on a GPU), and per task the Pareto front of accuracy against condensation seconds: the
methods no other method beats on both (at most the seconds and at least the mean accuracy).

The front is taken on the means; the plot shows each point's 95% t-intervals (over seeds) so a
reader can see when a method's place on the front is within the noise. A reference line (the whole
training set) is drawn for reference but is not a condensation and is never on the front.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dcbench.report.formatting import markdown_code, markdown_text
from dcbench.stats import t_interval

CELL = ["method", "dataset", "ipc", "eval_arch"]
TASK = ["dataset", "ipc", "eval_arch"]
#: runs.csv column -> cost column (per cell: seconds are means over seeds, memory the maximum)
COSTS = {
    "condense_s": "condense_s",
    "eval_s": "eval_s",
    "peak_rss_mb": "peak_rss_mb",
    "cuda_peak_mb": "cuda_peak_mb",
    "artifact_s": "artifact_s",
}  # artifact_s: one-off build seconds of the shared artifacts a cell used


def present_costs(runs: pd.DataFrame) -> list[str]:
    """The cost columns runs.csv holds values of (one-off artifact seconds only where some cell used one)."""
    return [
        c
        for c in COSTS
        if c in runs.columns
        and runs[c].notna().any()
        and (c != "artifact_s" or bool((pd.to_numeric(runs[c], errors="coerce") > 0).any()))
    ]


def cell_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: mean condensation and evaluation seconds over seeds with the 95%
    t-interval of the condensation seconds, and the peak memory (max over seeds) in MB.
    Columns that runs.csv does not hold (or holds only as blanks) are left out."""
    present = present_costs(runs)
    per_seed = runs.groupby([*CELL, "synth_seed"], sort=True)[present].first().reset_index()
    grouped = per_seed.groupby(CELL, sort=True)
    costs = grouped[[c for c in present if c.endswith("_s")]].mean()
    memory = [c for c in present if c.endswith("_mb")]
    if memory:
        costs = costs.join(grouped[memory].max())
    if "condense_s" in present:
        intervals = grouped["condense_s"].apply(lambda x: t_interval(x.to_numpy(dtype=float)))
        costs["condense_s_ci_low"] = [low for low, _ in intervals]
        costs["condense_s_ci_high"] = [high for _, high in intervals]
    return costs.reset_index()


def _task_costs(runs: pd.DataFrame, lines: dict[str, str]) -> pd.DataFrame:
    """``cell_costs`` on the tasks of the condensation methods; a reference line's cell (the whole
    training set is recorded once per dataset, e.g. at ipc 0) is repeated under every IPC of its
    dataset and architecture, as the results table shows it, and named by its label (``lines``:
    method -> label)."""
    costs = cell_costs(runs)
    shown = [costs[~costs["method"].isin(lines)]]
    for method in lines:
        shown.insert(0, _under_every_ipc(costs[costs["method"] == method], shown[-1]))
    costs = pd.concat(shown, ignore_index=True)
    costs["method"] = costs["method"].replace(lines)
    return costs


def _under_every_ipc(line: pd.DataFrame, compared: pd.DataFrame) -> pd.DataFrame:
    """A reference line's costs under each task of the compared methods: its own IPC first."""
    if line.empty:
        return line
    tasks = compared[TASK].drop_duplicates()
    same_ipc = line.merge(tasks, on=TASK)
    other_ipc = (
        line.drop(columns="ipc").drop_duplicates(["dataset", "eval_arch"]).merge(tasks, on=["dataset", "eval_arch"])
    )
    return pd.concat([same_ipc, other_ipc]).drop_duplicates(TASK)


def with_cost_columns(wide: pd.DataFrame, runs: pd.DataFrame, lines: dict[str, str]) -> pd.DataFrame:
    """The report's numeric wide table (rows: methods; columns: eval_arch, dataset, ipc, statistic)
    with the statistics condense_s, eval_s and peak memory added next to mean and sd. ``lines``: the
    reference lines, method -> label as the table shows them (e.g. whole -> Whole dataset)."""
    costs = _task_costs(runs, lines)
    names = [c for c in COSTS if c in costs.columns]
    if not names:
        return wide
    extra = costs.pivot(index="method", columns=["eval_arch", "dataset", "ipc"], values=names)
    extra = extra.reorder_levels([1, 2, 3, 0], axis=1)
    extra.columns = extra.columns.set_names(wide.columns.names)
    return wide.join(extra, how="left").sort_index(axis=1, level=[0, 1, 2], sort_remaining=False)


def _seconds(value: float) -> str:
    if pd.isna(value):
        return "–"
    if value < 600:
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min" if value < 3 * 3600 else f"{value / 3600:.1f} h"


def _megabytes(value: float) -> str:
    return "–" if pd.isna(value) else (f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB")


def markdown_cost_columns(runs: pd.DataFrame, lines: dict[str, str]) -> pd.DataFrame:
    """Per task one text column "<dataset> IPC <ipc> cost": condense / evaluation seconds and peak
    memory, for the Markdown results table (rows: methods; reference lines by their label)."""
    costs = _task_costs(runs, lines)
    several_archs = costs["eval_arch"].nunique() > 1
    memory = "cuda_peak_mb" if "cuda_peak_mb" in costs.columns else "peak_rss_mb"
    columns = {}
    for (arch, dataset, ipc), group in costs.groupby(["eval_arch", "dataset", "ipc"], sort=True):
        name = (f"{arch} " if several_archs else "") + f"{dataset} IPC {ipc} cost"
        columns[name] = pd.Series(
            [
                f"{_seconds(r.get('condense_s'))} / {_seconds(r.get('eval_s'))} / {_megabytes(r.get(memory))}"
                + (f" + {_seconds(r.get('artifact_s'))} one-off" if (r.get("artifact_s") or 0) > 0 else "")
                for _, r in group.iterrows()
            ],
            index=group["method"],
        )
    return pd.DataFrame(columns)


COST_CAPTION = (
    "Cost columns: condensation seconds / evaluation seconds (all evaluation models of the "
    "cell), means over seeds / peak memory of a cell (CPU resident set, or GPU memory on a GPU)."
)
ONE_OFF_CAPTION = (
    "+ one-off: the build seconds of shared artifacts (expert trajectories) the cells used, paid once "
    "for every cell and method that shares them."
)


def cost_caption(runs: pd.DataFrame) -> str:
    """The cost columns' caption, with the one-off part where some cell used a shared artifact."""
    return COST_CAPTION + (" " + ONE_OFF_CAPTION if "artifact_s" in present_costs(runs) else "")


def one_off_lines(runs: pd.DataFrame) -> list[str]:
    """One line per distinct set of shared artifacts: its build seconds and the methods that used it."""
    if "artifacts" not in runs.columns or "artifact_s" not in runs.columns:
        return []
    used = runs[runs["artifacts"].fillna("").astype(str) != ""]
    lines = []
    for artifacts, group in used.groupby("artifacts", sort=True):
        methods = markdown_text(", ".join(sorted(group["method"].astype(str).unique())))
        built = _seconds(float(group["artifact_s"].max()))
        lines.append(f"- {markdown_code(artifacts)}: built once in {built}, used by {methods}")
    return lines


def pareto_front(seconds: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Which points no other point dominates (at most the seconds and at least the accuracy, one
    of them strictly)."""
    seconds, accuracy = np.asarray(seconds, dtype=float), np.asarray(accuracy, dtype=float)
    no_worse = (seconds[None, :] <= seconds[:, None]) & (accuracy[None, :] >= accuracy[:, None])
    better = (seconds[None, :] < seconds[:, None]) | (accuracy[None, :] > accuracy[:, None])
    return np.logical_not((no_worse & better).any(axis=1))


def pareto_table(cells: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per task and method: mean accuracy with its 95% CI, mean condensation seconds with its CI,
    and whether the method is on the task's Pareto front. ``cells`` are the report's summaries of
    the compared methods (no reference line)."""
    costs = cell_costs(runs)
    if "condense_s" not in costs.columns:
        return pd.DataFrame()
    points = cells[[*CELL, "mean", "ci_low", "ci_high"]].merge(
        costs[[*CELL, "condense_s", "condense_s_ci_low", "condense_s_ci_high"]], on=CELL
    )
    points["on_front"] = False
    for _, task in points.groupby(TASK, sort=True):
        points.loc[task.index, "on_front"] = pareto_front(task["condense_s"], task["mean"])
    return points.sort_values([*TASK, "condense_s"]).reset_index(drop=True)


def pareto_lines(points: pd.DataFrame) -> list[str]:
    """One Markdown bullet per task naming the front, cheapest first."""
    lines = []
    for (dataset, ipc, arch), task in points.groupby(TASK, sort=True) if len(points) else []:
        front = task[task["on_front"]].sort_values("condense_s")
        named = ", ".join(
            f"{markdown_text(r.method)} ({r.mean:.1f}% in {_seconds(r.condense_s)})" for r in front.itertuples()
        )
        lines.append(f"- {markdown_text(dataset)} IPC {ipc} ({markdown_text(arch)}): {named}")
    return lines


def accuracy_vs_cost_figures(
    points: pd.DataFrame, cells: pd.DataFrame, colors: dict[str, tuple[float, ...]], lines: dict[str, str]
) -> dict[str, Figure]:
    """Per dataset, one panel per (ipc, eval_arch): accuracy against condensation seconds, each
    method a point with 95% intervals on both axes; the Pareto front filled and joined by a step
    line, dominated methods hollow; each reference line's accuracy (``lines``: method -> label) dashed. Keyed by file
    stem ``acc_vs_cost_<dataset>``; the report writes them (PNG and PDF)."""
    figures: dict[str, Figure] = {}
    for dataset, data in points.groupby("dataset", sort=True) if len(points) else []:
        panels = list(data.groupby(["ipc", "eval_arch"], sort=True))
        figure = Figure(figsize=(1.5 + 4.5 * len(panels), 4.2), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, ((ipc, arch), task) in zip(axes, panels):
            for point in task.itertuples():
                color = colors.get(point.method, "0.4")
                ax.errorbar(
                    point.condense_s,
                    point.mean,
                    xerr=np.nan_to_num(
                        [[point.condense_s - point.condense_s_ci_low], [point.condense_s_ci_high - point.condense_s]]
                    ).clip(min=0),
                    yerr=np.nan_to_num([[point.mean - point.ci_low], [point.ci_high - point.mean]]),
                    fmt="o",
                    markersize=7,
                    capsize=3,
                    color=color,
                    markerfacecolor=color if point.on_front else "white",
                    label=point.method,
                )
            front = task[task["on_front"]].sort_values("condense_s")
            ax.step(
                front["condense_s"],
                front["mean"],
                where="post",
                color="0.2",
                linewidth=1,
                linestyle=":",
                label="Pareto front",
            )
            for method, label in lines.items():
                line = cells[(cells["method"] == method) & (cells["dataset"] == dataset) & (cells["eval_arch"] == arch)]
                if len(line):
                    same_ipc = line[line["ipc"] == ipc]
                    ax.axhline(
                        (same_ipc if len(same_ipc) else line)["mean"].iloc[0], color="0.3", linestyle="--", label=label
                    )
            ax.set_xscale("symlog", linthresh=1.0)  # coresets take ~0 s, condensation minutes to hours
            ax.set_xlim(left=-0.4)  # room for the markers of methods at 0 s
            ax.set_xlabel("condensation seconds (mean over seeds)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{dataset}, IPC {ipc}, evaluated on {arch}")
            ax.grid(alpha=0.3)
        legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
        figure.legend(
            legend.values(),
            legend.keys(),
            loc="outside right upper",
            fontsize="small",
            title="filled: on the Pareto front\nbars: 95% t-CI over seeds",
            title_fontsize="small",
        )
        figures[f"acc_vs_cost_{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(dataset))}"] = figure
    return figures
