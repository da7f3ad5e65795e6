"""Hold a run against a reference, cell by cell: ``dcbench compare`` and the end of ``dcbench run``.

A *cell* is (method, dataset, ipc, eval_arch). Each side is summarised by the mean, SD (ddof 1)
and number n of its per-seed mean accuracies (evaluation models are averaged within a seed, as in
the report). A reference is a results directory or a CSV of published numbers (columns method,
dataset, ipc, mean, sd, n; optional eval_arch, default ConvNet), so a rerun can be held against a
committed benchmark or a paper's table.

What the verdict means (difference testing, stated up front):

* Per cell: Welch's t-test from the two summaries (no equal-variance assumption), the difference
  run − reference with its 95% confidence interval, and a two-sided p-value; Holm's step-down
  adjusts the p-values over every tested cell of the comparison, so a faithful rerun is reported
  as fully reproduced with probability at least 1 − α however many cells there are.
* ``differs``: the Holm-adjusted p-value is below α: the data show the run's mean is not the
  reference's.
* ``reproduced``: no such evidence. This is *consistency*, not proven equality: with 3 seeds an
  interval is several points wide, and a difference inside it could go undetected. So each cell
  also shows the largest difference its 95% interval does not exclude (``hidden``), and the
  summary line gives the largest of them. An equivalence test (TOST: "the difference is inside
  ±δ") would be the stronger claim, but at a handful of seeds it could only prove equivalence for
  a δ of several points, and it would call an exact rerun "inconclusive"; the interval width
  states the same thing without choosing δ.
* ``untestable``: a side has fewer than two seeds or no SD: the difference is shown, no verdict.

Published SDs: the DC/DSA/DM/CAFE tables report the SD over all evaluation models of all
condensations (e.g. 5 sets × 20 models) with ddof 0. Give ``n`` as the number of independent
condensations (5 there): that SD overstates the SD of per-set means, so the interval is wider,
i.e. conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import csv_text
from dcbench.results.runs_table import ACCURACY, load_runs  # validated runs.csv, accuracy in percent
from dcbench.stats import holm

KEYS = ["method", "dataset", "ipc", "eval_arch"]
PUBLISHED_COLUMNS = ("method", "dataset", "ipc", "mean", "sd", "n")
DEFAULT_ARCH = "ConvNet"  # every paper table of these methods evaluates on the DC ConvNet
REFERENCE_ROOT = Path("results") / "reference"
VERDICTS = ("reproduced", "differs", "untestable")
COMPARISON_COLUMNS = (
    *KEYS,
    "run_mean",
    "run_sd",
    "run_n",
    "ref_mean",
    "ref_sd",
    "ref_n",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "hidden",
    "statistic",
    "df",
    "p_raw",
    "p_adj",
    "verdict",
    "run_protocol",
    "ref_protocol",
    "same_protocol",
    "same_config",
    "run_preset",
    "ref_preset",
)


# --------------------------------------------------------------------------------------------
# Input: per-cell summaries of a store or of a published table


def load_cells(path: Path) -> pd.DataFrame:
    """Per-cell mean, SD and n (over seeds, accuracy in percent) of a results directory or of a
    CSV of published numbers; also the protocol and config hash of a store's cells."""
    path = Path(path)
    if path.is_dir() or path.name == "runs.csv":
        return _store_cells(path if path.is_dir() else path.parent)
    if path.is_file():
        return _published_cells(path)
    raise DcbenchError(
        f"{path} not found: pass a results directory (with runs.csv) or a CSV of "
        "published numbers (method, dataset, ipc, mean, sd, n)"
    )


def _store_cells(root: Path) -> pd.DataFrame:

    runs = load_runs(root)
    per_seed = runs.groupby([*KEYS, "synth_seed"], sort=True)[ACCURACY].mean().reset_index()
    cells = (
        per_seed.groupby(KEYS, sort=True)[ACCURACY]
        .agg(mean="mean", sd=lambda x: x.std(ddof=1) if len(x) > 1 else np.nan, n="count")
        .reset_index()
    )
    for column in ("protocol", "config_hash", "preset"):
        if column in runs.columns:
            labels = runs.groupby(KEYS, sort=True)[column].agg(lambda x: ", ".join(sorted(set(map(str, x)))))
            cells = cells.merge(labels.rename(column).reset_index(), on=KEYS, how="left")
        else:
            cells[column] = None
    return cells


def _published_cells(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DcbenchError(
            f"{path} is not a readable CSV ({first_line(exc)}); give columns {', '.join(PUBLISHED_COLUMNS)}"
        ) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in PUBLISHED_COLUMNS if c not in table.columns]
    if missing:
        raise DcbenchError(
            f"{path} lacks column(s) {', '.join(missing)}: a published-numbers CSV "
            f"has {', '.join(PUBLISHED_COLUMNS)} (optional eval_arch), accuracy in percent"
        )
    if table.empty:
        raise DcbenchError(f"{path} has no rows: add one row per published cell")
    if "eval_arch" not in table.columns:
        table["eval_arch"] = DEFAULT_ARCH
    for column in ("method", "dataset", "eval_arch"):
        table[column] = table[column].astype(str).str.strip()
    for column in ("ipc", "mean", "sd", "n"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() & (table[column].notna() if column == "sd" else True)
        if bad.any():
            raise DcbenchError(
                f"{path} line {int(np.flatnonzero(bad)[0]) + 2}: {column} "
                f"{table[column][bad].iloc[0]!r} is not a number"
            )
        table[column] = values
    for column, ok, rule in (
        ("ipc", table["ipc"].gt(0) & (table["ipc"] % 1 == 0), "a positive integer"),
        ("n", table["n"].ge(1) & (table["n"] % 1 == 0), "a positive integer"),
        ("mean", table["mean"].between(0, 100), "in [0, 100] (percent)"),
        ("sd", table["sd"].isna() | table["sd"].ge(0), "non-negative"),
    ):
        if not ok.all():
            line = int(np.flatnonzero(~ok.to_numpy())[0]) + 2
            raise DcbenchError(f"{path} line {line}: {column} must be {rule}, got {table[column][~ok].iloc[0]}")
    if table["mean"].max() <= 1.0:
        raise DcbenchError(f"{path}: every mean is at most 1, which looks like fractions; give accuracy in percent")
    table[["ipc", "n"]] = table[["ipc", "n"]].astype(int)
    duplicated = table.duplicated(KEYS)
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise DcbenchError(
            f"{path} lists {row['method']} {row['dataset']} IPC {row['ipc']} "
            f"{row['eval_arch']} twice; keep one row per cell"
        )
    table["protocol"] = None
    table["config_hash"] = None
    table["preset"] = "paper"  # published numbers come from the papers' own settings
    return table[[*KEYS, "mean", "sd", "n", "protocol", "config_hash", "preset"]]


# --------------------------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class WelchFromStats:
    """Welch's t-test of mean1 − mean2 from two summaries; NaN where it is undefined."""

    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    df: float
    p: float


def welch_from_stats(
    mean1: float, sd1: float, n1: int, mean2: float, sd2: float, n2: int, confidence: float = 0.95
) -> WelchFromStats:
    """Welch's unequal-variance t-test and the CI of the difference from means, SDs (ddof 1) and
    sizes. Two constant samples give a zero-width interval: p = 1 if the means agree, else 0."""
    diff = float(mean1 - mean2)
    if n1 < 2 or n2 < 2 or not (np.isfinite(sd1) and np.isfinite(sd2)):
        return WelchFromStats(diff, *[math.nan] * 5)
    v1, v2 = sd1**2 / n1, sd2**2 / n2
    if v1 + v2 == 0.0:
        return WelchFromStats(diff, diff, diff, math.nan, math.nan, 1.0 if diff == 0.0 else 0.0)
    result = sps.ttest_ind_from_stats(mean1, sd1, n1, mean2, sd2, n2, equal_var=False)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))  # Welch–Satterthwaite
    half = float(sps.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(v1 + v2)
    return WelchFromStats(diff, diff - half, diff + half, float(result.statistic), float(df), float(result.pvalue))


def compare_cells(run: pd.DataFrame, reference: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """One row per cell present on both sides (columns COMPARISON_COLUMNS); Holm over the tested
    cells. ``run`` and ``reference`` come from :func:`load_cells`."""
    if not 0.0 < alpha < 1.0:
        raise DcbenchError(f"alpha = {alpha} is not a probability: pass a value such as 0.05")
    both = run.merge(reference, on=KEYS, suffixes=("_run", "_ref"))
    rows = []
    for cell in both.itertuples(index=False):
        test = welch_from_stats(cell.mean_run, cell.sd_run, cell.n_run, cell.mean_ref, cell.sd_ref, cell.n_ref)
        rows.append(
            {
                **{key: getattr(cell, key) for key in KEYS},
                "run_mean": cell.mean_run,
                "run_sd": cell.sd_run,
                "run_n": cell.n_run,
                "ref_mean": cell.mean_ref,
                "ref_sd": cell.sd_ref,
                "ref_n": cell.n_ref,
                "diff": test.diff,
                "diff_ci_low": test.ci_low,
                "diff_ci_high": test.ci_high,
                "hidden": max(abs(test.ci_low), abs(test.ci_high)),
                "statistic": test.statistic,
                "df": test.df,
                "p_raw": test.p,
                "run_protocol": cell.protocol_run,
                "ref_protocol": cell.protocol_ref,
                "same_protocol": _same(cell.protocol_run, cell.protocol_ref),
                "same_config": _same(cell.config_hash_run, cell.config_hash_ref),
                "run_preset": cell.preset_run,
                "ref_preset": cell.preset_ref,
            }
        )
    table = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_adj", "verdict")])
    # the cells that could not be compared, by side, so that a reader sees what was skipped
    table.attrs["only_run"] = _unmatched(run, reference)
    table.attrs["only_reference"] = _unmatched(reference, run)
    table["p_adj"] = holm(table["p_raw"].to_numpy(dtype=float)) if len(table) else []
    table["verdict"] = np.where(
        table["p_adj"].isna(), "untestable", np.where(table["p_adj"] < alpha, "differs", "reproduced")
    )
    compared = table[list(COMPARISON_COLUMNS)]
    compared.attrs = dict(table.attrs)
    return compared


def _unmatched(side: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """The cells of ``side`` that ``other`` does not hold, named as the table names cells."""
    merged = side[KEYS].merge(other[KEYS].drop_duplicates(), on=KEYS, how="left", indicator=True)
    return sorted(_cell_name(row) for _, row in merged[merged["_merge"] == "left_only"].iterrows())


def skipped_lines(table: pd.DataFrame) -> list[str]:
    """What was not compared: the reference's cells without a run cell, and the reverse."""
    lines = []
    for key, where in (
        ("only_reference", "of the reference have no counterpart in the run"),
        ("only_run", "of the run have no counterpart in the reference"),
    ):
        cells = table.attrs.get(key) or []
        if cells:
            lines.append(f"not compared: {len(cells)} cell(s) {where}: {', '.join(cells)}")
    return lines


def _same(a: object, b: object) -> bool | None:
    """Whether both sides recorded the same label; None when a side did not record one."""
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return None
    return a == b


# --------------------------------------------------------------------------------------------
# Words


def _cell_name(row: pd.Series) -> str:
    arch = "" if row["eval_arch"] == DEFAULT_ARCH else f" {row['eval_arch']}"
    return f"{row['method']} {row['dataset']} IPC {row['ipc']}{arch}"


def summary_line(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """One line: "N of N cells reproduced ..." or which cells differ."""
    if table.empty:
        return "no cell of the run has a reference cell: nothing compared"
    counts = table["verdict"].value_counts()
    reproduced, tested = int(counts.get("reproduced", 0)), int(table["p_adj"].notna().sum())
    line = f"{reproduced} of {len(table)} cells reproduced"
    differ = table[table["verdict"] == "differs"]
    if len(differ):
        line += "; differ: " + ", ".join(f"{_cell_name(r)} ({r['diff']:+.1f} points)" for _, r in differ.iterrows())
    untestable = table[table["verdict"] == "untestable"]
    if len(untestable):
        line += f"; {len(untestable)} untestable (fewer than 2 seeds or no SD)"
    hidden = table.loc[table["verdict"] == "reproduced", "hidden"]
    line += f" (Welch t, Holm over {tested} cells, α = {alpha:g}"
    if len(hidden) and np.isfinite(hidden.max()):
        line += f"; differences up to {hidden.max():.1f} points could go undetected"
    return line + ")"


def warnings(table: pd.DataFrame) -> list[str]:
    """Mismatches that make a difference uninterpretable as "the method changed"."""
    lines = []
    protocol = table[table["same_protocol"] == False]  # noqa: E712 - None means "not recorded"
    if len(protocol):
        pairs = sorted({(r.run_protocol, r.ref_protocol) for r in protocol.itertuples()})
        lines.append(
            f"{len(protocol)} cell(s) were evaluated under another protocol than the reference "
            f"({'; '.join(f'run {a} vs reference {b}' for a, b in pairs)}): a difference may come "
            "from the protocol, not the method"
        )
    presets = table[[_same(a, b) is False for a, b in zip(table["run_preset"], table["ref_preset"])]]
    if len(presets):
        pairs = sorted({(r.run_preset, r.ref_preset) for r in presets.itertuples()})
        lines.append(
            f"{len(presets)} cell(s) ran another preset than the reference "
            f"({'; '.join(f'run {a} vs reference {b}' for a, b in pairs)}): the settings differ"
        )
    config = table[table["same_config"] == False]  # noqa: E712
    if len(config):
        lines.append(
            f"{len(config)} cell(s) ran a method config other than the reference's "
            f"({', '.join(sorted({r.method for r in config.itertuples()}))}): compare like with like"
        )
    return lines


def _number(value: float, digits: int = 1) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def _side(mean: float, sd: float, n: int) -> str:
    return f"{mean:.1f} ± {_number(sd)} (n={n})"


def _p(value: float) -> str:
    return "–" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def markdown_table(table: pd.DataFrame) -> str:
    """The per-cell comparison as a GitHub Markdown table."""
    header = ["cell", "run", "reference", "Δ = run − ref", "95% CI", "hidden", "p (Holm)", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for _, row in table.iterrows():
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell_name(row),
                    _side(row["run_mean"], row["run_sd"], row["run_n"]),
                    _side(row["ref_mean"], row["ref_sd"], row["ref_n"]),
                    f"{row['diff']:+.1f}",
                    f"[{_number(row['diff_ci_low'])}, {_number(row['diff_ci_high'])}]",
                    _number(row["hidden"]),
                    _p(row["p_adj"]),
                    row["verdict"],
                ]
            )
            + " |"
        )
    return "\n".join(lines)


RULE = (
    "Mean ± SD over seeds (per-seed means of the evaluation models), accuracy in %. Δ with its "
    "95% Welch interval; hidden: the largest |Δ| the interval does not exclude. Verdict: "
    "`differs` when the Holm-adjusted Welch p (over the tested cells) is below α, else "
    "`reproduced`, meaning consistent with the reference at this precision, not proven equal."
)


def comparison_markdown(table: pd.DataFrame, reference: Path, alpha: float = 0.05, emphasis: str = "**") -> list[str]:
    """Lines of the report section: source, warnings and skipped cells (first, so that they are read
    before the numbers), table, rule and (last) the summary line."""
    lines = [f"Against `{reference}`.", ""]
    cautions = [f"- Warning: {w}." for w in warnings(table)] + [f"- {line}." for line in skipped_lines(table)]
    lines += cautions + [""] * bool(cautions)
    if not table.empty:
        lines += [markdown_table(table), "", RULE, ""]
    return lines + [f"{emphasis}{summary_line(table, alpha)}{emphasis}"]


# --------------------------------------------------------------------------------------------
# Entry points


def compare_paths(run: Path, reference: Path, alpha: float = 0.05, require_overlap: bool = False) -> pd.DataFrame:
    """Compare two results directories (or a run with a published-numbers CSV). With
    ``require_overlap``, no common cell is an error that says what each side holds."""
    run_cells, reference_cells = load_cells(run), load_cells(reference)
    table = compare_cells(run_cells, reference_cells, alpha)
    if table.empty and require_overlap:
        raise DcbenchError(
            f"no cell of {run} ({_holds(run_cells)}) is in {reference} ({_holds(reference_cells)}); "
            "compare results of the same methods, datasets, IPCs and architectures"
        )
    return table


def _holds(cells: pd.DataFrame) -> str:
    """What a side holds, in a few words, for an error line."""
    parts = [f"{key}s " + ", ".join(map(str, sorted(cells[key].unique())[:6])) for key in KEYS]
    return "; ".join(parts)


def find_reference(
    datasets: list[str], preset: str, root: Path = REFERENCE_ROOT, name: str | None = None
) -> Path | None:
    """The committed reference made with the same preset on (at least) these datasets; the one
    called ``name`` when several match. None when there is none."""
    matches = []
    for spec_path in sorted(Path(root).glob("*/spec.toml")):
        try:
            spec = tomllib.loads(spec_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            continue  # not a reference we can read; an explicit --reference still reports why
        # spec.toml is a history of [[runs]] (dcbench.results.store.record_spec); older stores hold one spec
        recorded = (
            [r.get("spec", {}) for r in spec["runs"] if isinstance(r, dict)]
            if isinstance(spec.get("runs"), list)
            else [spec]
        )
        if (
            any(s.get("preset") == preset and set(datasets) <= set(s.get("datasets", [])) for s in recorded)
            and (spec_path.parent / "runs.csv").is_file()
        ):
            matches.append(spec_path.parent)
    named = [m for m in matches if m.name == name]
    candidates = named or matches
    return candidates[0] if candidates else None


def resolve_reference(
    option: str | None, datasets: list[str], preset: str, run_root: Path, name: str | None = None
) -> tuple[Path | None, str]:
    """What ``dcbench run --reference`` names, and why nothing when it is nothing: ``auto``
    (default) finds the committed reference by dataset and preset, ``none`` compares with nothing,
    anything else is a results directory or a published-numbers CSV, read now so that a bad one
    fails before any work. A reference that is the run's own directory (regenerating the
    reference) is not compared."""
    if option is None or option == "none":
        return None, "no reference comparison (--reference none)"
    if option == "auto":
        found = find_reference(datasets, preset, name=name)
        if found is None:
            return None, (
                f"no committed reference of {', '.join(datasets)} at preset {preset} under "
                f"{REFERENCE_ROOT}/: nothing compared (--reference DIR|CSV names one)"
            )
    else:
        found = Path(option)
    if found.resolve() == Path(run_root).resolve():
        return None, f"{run_root} is the reference itself: nothing compared"
    load_cells(found)  # unreadable: say so now, not after the run
    return found, ""


def write_comparison(run: Path, reference: Path, out_dir: Path, alpha: float = 0.05) -> list[str]:
    """Write ``reference_comparison.csv`` to ``out_dir``; return the report section's lines."""
    table = compare_paths(run, reference, alpha)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reference_comparison.csv").write_text(csv_text(table))
    return comparison_markdown(table, reference, alpha)


def comparison_text(table: pd.DataFrame, reference: Path, alpha: float = 0.05) -> str:
    """What ``dcbench compare`` and the end of ``dcbench run`` print; the last line is the summary."""
    return "\n".join(comparison_markdown(table, reference, alpha, emphasis=""))
