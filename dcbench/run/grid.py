"""``dcbench run``: expand a spec into cells, run the unfinished ones, rebuild the tables, report.

A cell is one (method, dataset, IPC, seed) condensation and its evaluations on every evaluation
architecture. Cells are independent, so an executor may run them anywhere: ``local`` runs them
one after another in this process (with a progress line for the running cell), or side by side
in worker processes (``--workers``; by default one single-threaded worker per core on a CPU, see
:func:`plan_workers`); ``ray`` sends each to a Ray task (see :mod:`dcbench.run.executors`). Either way
a cell writes its own directory in the store, so the executors produce the same ``runs.csv`` for
the same seeds and thread counts. Inside a cell, a resumable method checkpoints
(``checkpoint.pt``) and every progress row goes to ``curve.csv``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcbench import __version__
from dcbench.data.builtin import data_root_option
from dcbench.data.paths import resolve_dataset_entry
from dcbench.host.devices import resolve_device
from dcbench.host.errors import DcbenchError, one_line
from dcbench.host.outputs import check_output_dir
from dcbench.host.runtime import check_precision
from dcbench.method.checkpoint import check_compatible
from dcbench.plugins import Registry
from dcbench.report import write_report as write_report_files
from dcbench.report.compare import compare_paths, comparison_text, resolve_reference
from dcbench.results.identity import identity_notes
from dcbench.results.lock import StoreLock
from dcbench.results.store import Store
from dcbench.run import shared
from dcbench.run.cell import execute_cell
from dcbench.run.executors import run_pool, run_ray
from dcbench.run.plan import Cell, left_out_of_default, plan_cells
from dcbench.run.progress import CellProgressBar
from dcbench.run.ray_probe import check_ray_address
from dcbench.run.spec import Spec, load_spec
from dcbench.run.workers import in_process_only, plan_workers


@dataclass(frozen=True)
class RunOptions:
    """How to run a grid: the spec and what the command line sets beside or over it.

    ``checkpoint_every``, ``gpus_per_cell``, ``workers``, ``threads``, ``precision``, ``methods``,
    ``deterministic`` and ``compile`` override the spec's keys when given, ``tracking`` (name ->
    value) is merged over the spec's ``[tracking]`` table and ``tensorboard`` is
    ``tracking["tensorboard"]``; ``max_retries`` is how often a cell whose worker process died is
    rerun (Ray, or the local worker processes); ``reference`` is what the run is compared with at
    the end (see :func:`dcbench.report.compare.resolve_reference`)."""

    spec_path: Path | None = None
    preset: str | None = None
    out: Path | None = None
    executor: str = "local"
    ray_address: str | None = None
    data_root: str | None = None
    device: str = "auto"
    show_progress: bool = True
    write_report: bool = True
    threads: int | None = None
    precision: str | None = None
    reference: str | None = "auto"
    checkpoint_every: str | None = None
    gpus_per_cell: float | None = None
    tracking: Mapping[str, bool | str] | None = None
    tensorboard: bool | str | None = None
    max_retries: int = 3
    workers: int | None = None
    methods: list[str] | None = None  # --methods: run these instead of the spec's (or the default) methods
    deterministic: bool | None = None  # --deterministic
    compile: str | None = None  # --compile auto|on|off

    def spec(self) -> Spec:
        """The spec with the command line's values over it, validated."""
        spec = load_spec(self.spec_path, self.preset)
        for key in (
            "threads",
            "precision",
            "checkpoint_every",
            "gpus_per_cell",
            "workers",
            "methods",
            "deterministic",
            "compile",
        ):
            value = getattr(self, key)
            if value is not None:  # the command line wins over the spec
                setattr(spec, key, value)
        spec.tracking = {**spec.tracking, **(self.tracking or {})}
        if self.tensorboard is not None:
            spec.tracking["tensorboard"] = self.tensorboard
        spec.validate()
        return spec


# --- executors -----------------------------------------------------------------------------------


def run_local(cells: list[Cell], root: Path) -> Generator[dict[str, Any], None, None]:
    for cell in cells:
        yield execute_cell(cell, str(root))


# --- the command ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What ``dcbench run`` did: the store, the grid's cells and those that failed."""

    root: Path
    cells: int
    failed: list[str]
    report_failed: bool = False

    @property
    def exit_status(self) -> int:
        """0 when every cell of the grid is finished (and reported), 1 when any failed (all of
        them included) or the report after them did."""
        return 1 if self.failed or self.report_failed else 0


def run_benchmark(spec_path: Path | None = None, **options: Any) -> Path:
    """Run a grid (see :func:`run_grid`; ``options`` are :class:`RunOptions` fields) and return its
    results directory."""
    return run_grid(RunOptions(spec_path, **options)).root


def run_grid(options: RunOptions) -> RunOutcome:
    """Expand the spec, run its unfinished cells with the store locked, rebuild the tables, write
    the report and end with the comparison against the reference. Everything that can be refused
    is refused before the first cell runs."""
    spec = options.spec()
    device_type = _check_options(spec, options)
    root = options.out or Path("results") / "local" / spec.name  # results/local/ is not committed
    dataset_names = [resolve_dataset_entry(entry)[0] for entry in spec.datasets]
    # a missing reference fails now, not after the grid
    against, no_comparison = resolve_reference(options.reference, dataset_names, spec.preset, root, spec.name)
    registry = shared.registry()
    tracking = _tracking(spec, root, registry)  # a missing tracking package is refused before any work
    check_output_dir(root, "results directory")
    cells = plan_cells(spec, registry, options.data_root, options.device, tracking)  # no work yet
    if spec.methods is None:
        left_out = left_out_of_default(registry)
        if left_out:
            print(
                f"note: installed methods left out of the default grid: {', '.join(left_out)} "
                "(name them with --methods or in a spec's methods to run them)",
                file=sys.stderr,
            )
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    with StoreLock(root):
        store.runs.mkdir(parents=True, exist_ok=True)
        todo = _unfinished(store, cells, registry)
        store.record_spec(spec.to_toml(), __version__)
        start = time.perf_counter()
        try:
            _run_cells(todo, len(cells), root, spec, options, registry, device_type)
        except KeyboardInterrupt:  # the cells that finished are on disk: runs.csv lists them too
            store.rebuild_tables()
            raise
        runs = store.rebuild_tables()
        report_failed = False
        print(f"wall time {time.perf_counter() - start:.0f}s", file=sys.stderr)
        for line in identity_notes(runs):
            print(f"note: {line}", file=sys.stderr)
        if not runs.empty:
            print(summary_table(runs))
            if options.write_report:  # the cells are done: a failing report is exit 1, not "before any work"
                try:
                    print(f"report: {write_report_files(root, against=against)}", file=sys.stderr)
                except DcbenchError as exc:
                    print(f"dcbench: the report failed: {one_line(str(exc))}", file=sys.stderr)
                    report_failed = True
            if against is not None:
                print(comparison_text(compare_paths(root, against), against))
            else:
                print(no_comparison, file=sys.stderr)
        failed = [c.id for c in cells if (store.read_metrics(c.id) or {}).get("status") != "done"]
    if failed:
        print(
            f"{len(failed)} of {len(cells)} cells failed (reasons in {root / 'failures.csv'}); fix the cause "
            "and run the same command again to re-run them",
            file=sys.stderr,
        )
    return RunOutcome(root, len(cells), failed, report_failed)


def _check_options(spec: Spec, options: RunOptions) -> str:
    """Refuse a bad device, precision, executor setting, data root or Ray address; return the
    device type the cells will run on."""
    device_type = resolve_device(options.device).type  # fails early on a bad --device
    if options.executor == "local":  # Ray's cells check on the machines they run on
        check_precision(spec.precision, device_type)
    elif spec.workers is not None:
        raise DcbenchError(
            "workers is for the local executor (Ray runs one cell per CPU it has); drop it for --executor ray"
        )
    data_root_option(options.data_root)  # an empty --data-root is a mistake, not "the default"
    if options.executor == "ray" and options.ray_address is not None:
        check_ray_address(options.ray_address)  # seconds, instead of minutes of Ray's retries
    return device_type


def _unfinished(store: Store, cells: list[Cell], registry: Registry) -> list[Cell]:
    """The cells to run: not finished, or damaged (named and discarded). A checkpoint written by
    another config is refused before any work."""
    todo = []
    for cell in cells:
        state = store.cell_state(cell.id, cell.fingerprint)
        if state.damage:
            print(f"cell {cell.id} is damaged ({state.damage}); re-running it", file=sys.stderr)
            store.discard(cell.id, state.damage)
        if not state.done:
            todo.append(cell)
    for cell in todo:
        check_compatible(store.cell_dir(cell.id), cell.checkpoint_identity(registry.method(cell.method)))
    return todo


def _run_cells(
    todo: list[Cell], total: int, root: Path, spec: Spec, options: RunOptions, registry: Registry, device_type: str
) -> None:
    """Run ``todo`` with the chosen executor: worker processes, this process, or Ray."""
    plan = None
    if options.executor == "local":
        plan = plan_workers(
            spec.workers, spec.threads, device_type, spec.preset, len(todo), in_process_only(registry, todo)
        )
        todo = [dataclasses.replace(cell, torch_threads=plan.threads) for cell in todo]
        if plan.capped and todo:
            asked = "--workers" if options.workers is not None else "the spec's workers ="
            print(f"note: {asked} {spec.workers} capped at {plan.workers}: {plan.capped}", file=sys.stderr)
    print(
        f"dcbench run {spec.name}: {total} cells, {total - len(todo)} already done, "
        f"{len(todo)} to run -> {root}" + (f" ({plan.describe()})" if plan and todo else ""),
        file=sys.stderr,
    )
    if not todo:
        return
    if plan is not None and plan.workers > 1:
        # larger sets first (condensing and training on them take longest), so that the last
        # cells to start are short and no worker waits long for another at the end
        ordered = sorted(todo, key=lambda cell: -cell.ipc)
        _show(
            run_pool(ordered, root, execute_cell, plan.workers, options.max_retries), len(todo), options.show_progress
        )
    elif plan is not None:
        _run_local_with_progress(todo, root, registry, options.show_progress)
    else:
        results = run_ray(todo, root, options.ray_address, execute_cell, spec.gpus_per_cell, options.max_retries)
        _show(results, len(todo), options.show_progress)


def _run_local_with_progress(cells: list[Cell], root: Path, registry: Registry, show_progress: bool) -> None:
    """The local executor with a second line for the running cell (iteration, loss, ETA)."""
    bar = CellProgressBar(position=1, disable=not show_progress)
    registry.manager.register(bar, name="dcbench.progress")
    try:
        _show(run_local(cells, root), len(cells), show_progress)
    finally:
        bar.close()
        registry.manager.unregister(bar)


def _tracking(spec: Spec, root: Path, registry: Registry) -> dict[str, str]:
    """Every cell's tracking settings: each request of the spec claimed by the plugin that handles
    it (``dcbench_tracking_setting``), which refuses a missing dependency before any work."""
    settings = {}
    for name, value in sorted(spec.tracking.items()):
        if value is False:
            continue
        setting = registry.manager.hook.dcbench_tracking_setting(name=name, value=value, results_dir=root)
        if setting is None:
            raise DcbenchError(
                f"tracking {name!r} asked for, but no loaded plugin handles it: install its plugin "
                "or check DCBENCH_LOAD_PLUGINS / DCBENCH_DISABLE_PLUGINS"
            )
        settings[name] = str(setting)
    return settings


def _show(results: Generator[dict[str, Any], None, None], total: int, show_progress: bool) -> None:
    from tqdm import tqdm

    # closed on the way out, not when garbage-collected: an executor ends its workers then (Ctrl-C)
    with (
        contextlib.closing(results),
        tqdm(total=total, unit="cell", disable=not show_progress, file=sys.stderr, dynamic_ncols=True) as bar,
    ):
        for metrics in results:
            cell = metrics["cell"]
            if metrics["status"] == "done":
                accs = [a for ev in metrics["evaluations"] for a in ev["test_accs"]]
                status = f"done {100 * sum(accs) / len(accs):.1f}% ({metrics['condense_s']:.0f}s condense)"
                if metrics.get("resumed_at_iteration"):
                    status += f", resumed at iteration {metrics['resumed_at_iteration']}"
            else:
                status = f"FAILED: {metrics['reason']}"
            bar.write(f"{cell['id']}: {status}", file=sys.stderr)
            bar.set_postfix_str(cell["id"])
            bar.update(1)


def summary_table(runs: Any) -> str:
    """Mean ± SD (over seeds) test accuracy in %, methods × (dataset, IPC, arch[, track])."""
    columns = ["dataset", "ipc", "eval_arch"]
    if "track" in runs and runs["track"].fillna("").astype(str).ne("").any():
        runs = runs.assign(track=runs["track"].fillna("").astype(str))
        columns.append("track")
    per_seed = runs.groupby(["method", *columns, "synth_seed"])["test_acc"].mean() * 100
    stats = per_seed.groupby(["method", *columns]).agg(["mean", "std", "count"])
    cells = stats.apply(
        lambda r: (
            f"{r['mean']:.1f} ± {r['std']:.1f} (n={int(r['count'])})" if r["count"] > 1 else f"{r['mean']:.1f} (n=1)"
        ),
        axis=1,
    )
    table = cells.unstack(columns)
    return table.to_string()
