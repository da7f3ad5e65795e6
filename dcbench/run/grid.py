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

import dataclasses
import functools
import importlib.util
import math
import os
import platform
import resource
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dcbench import __version__
from dcbench.data.paths import DatasetSource, resolve_dataset_entry
from dcbench.host.devices import device_name, resolve_device
from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.outputs import check_output_dir
from dcbench.host.runtime import check_precision
from dcbench.results.identity import CellIdentity, data_fingerprint, identity_notes, protocol_hash
from dcbench.results.lock import StoreLock
from dcbench.results.store import Store
from dcbench.run.spec import Spec, load_spec


@dataclass(frozen=True)
class Cell:
    """Everything a worker needs to run one cell (plain data, so it pickles to a Ray task)."""

    method: str
    dataset: str
    ipc: int
    seed: int
    preset: str
    overrides: dict[str, Any]
    protocols: list[dict[str, Any]]  # Protocol fields per evaluation architecture
    fingerprint: dict[str, Any]  # the cell's identity (dcbench.results.identity.CellIdentity fields)
    data_root: str | None = None
    device: str = "auto"
    torch_threads: int = field(default_factory=torch.get_num_threads)
    precision: str = "fp32"
    dataset_source: DatasetSource | None = None  # a dataset given by path (image folder, .pt/.npz)
    checkpoint_every: str | int = "10m"  # see dcbench.method.checkpoint.CheckpointPolicy
    tracking: dict[str, str] = field(default_factory=dict)  # for observer plugins, e.g. {"tensorboard": dir}

    @property
    def id(self) -> str:
        return f"{self.method}-{self.dataset}-ipc{self.ipc}-s{self.seed}"

    def identity(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "dataset": self.dataset, "ipc": self.ipc,
                "seed": self.seed, "preset": self.preset}


def plan_cells(spec: Spec, registry: Any, data_root: str | None, device: str,
               tracking: dict[str, str] | None = None) -> list[Cell]:
    """The spec's grid, validated against the installed plugins before any work starts."""
    from dcbench.evaluation import Protocol
    from dcbench.method.condense import config_hash
    from dcbench.method.contract import config_to_dict

    methods = spec.methods or sorted(n for n, m in registry.methods.items() if not getattr(m, "reference_only", False))
    for name in spec.overrides:
        if name not in methods:
            raise DcbenchError(f"spec overrides method {name!r}, which is not in the spec's methods")
    datasets = [resolve_dataset_entry(entry) for entry in spec.datasets]
    for name, source in datasets:
        if source is None:
            registry.dataset(name)
            continue
        if name in registry.datasets:
            raise DcbenchError(f"spec dataset {source.path} is named {name!r}, like a registered dataset; "
                               'give it another name: { path = "...", name = "..." }')
        # Read (decode, check, cache) a folder before any cell runs; its content joins the identity.
        _loaded(name, data_root, source)
    for name in spec.eval_archs:
        registry.architecture(name)
    threads = spec.threads or torch.get_num_threads()
    if not methods:
        raise DcbenchError("the spec runs every installed method, and no method plugin is loaded; install one "
                           "or see `dcbench plugins` for the plugins that failed to load")
    cells = []
    for method_name in methods:
        method = registry.method(method_name)
        plugin = registry.plugins.get(registry.owners.get(("method", method_name), ""))
        overrides = spec.overrides.get(method_name, {})
        config = config_to_dict(method.make_config(spec.preset, overrides))
        for dataset, source in datasets:
            native = method.native_evaluation(dataset) if spec.eval_augmentation == "native" else None
            protocols = []
            for arch in spec.eval_archs:
                extra = {k: v for k, v in (("models", spec.eval_models), ("epochs", spec.eval_epochs)) if v is not None}
                protocols.append(Protocol.for_preset(spec.preset, dataset, spec.eval_augmentation, arch, native=native,
                                                     precision=spec.precision, **extra).to_dict())
            fingerprint = CellIdentity(
                method_name=method_name, method_version=method.version,
                plugin_version=plugin.version if plugin else None,
                config_hash=config_hash(method_name, config, spec.precision), protocol_hash=protocol_hash(protocols),
                data_fingerprint=_data_fingerprint(dataset, data_root, source),
                precision=spec.precision,
            ).to_dict()
            for ipc in spec.ipcs:
                for seed in spec.seeds:
                    cells.append(Cell(method_name, dataset, ipc, seed, spec.preset, overrides, protocols,
                                      fingerprint, data_root, device, threads, spec.precision, source,
                                      checkpoint_every=spec.checkpoint_every, tracking=dict(tracking or {})))
    return cells


# --- how many cells at once ---------------------------------------------------------------------

#: memory one worker process may need: a DC cell at paper settings peaks near 3.4 GB
WORKER_MEMORY_BYTES = 4 * 2**30


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes the kernel could give new processes without swapping (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class WorkerPlan:
    """How many cells run at once (worker processes) and the torch threads each cell gets."""

    workers: int
    threads: int

    def describe(self) -> str:
        unit = "thread" if self.threads == 1 else "threads"
        if self.workers == 1:
            return f"in this process, {self.threads} torch {unit}"
        return f"{self.workers} worker processes x {self.threads} torch {unit}"


def plan_workers(workers: int | None, threads: int | None, device_type: str, preset: str, cells: int,
                 in_process_only: list[str], cpus: int | None = None, memory: int | None = None) -> WorkerPlan:
    """``workers`` None (auto): on a CPU, one worker per ``threads`` cores (1 thread each unless
    given), as many as there are cells and memory for (:data:`WORKER_MEMORY_BYTES` each); one
    process on a GPU, for ``smoke`` grids (starting workers costs more than their cells) and
    when a plugin was registered in this process only (a worker process could not load it).
    A thread count that is not given splits the cores between the workers."""
    cpus = usable_cpus() if cpus is None else cpus
    if workers is not None:  # >= 1: the spec's schema checks it
        if workers > 1 and in_process_only:
            raise DcbenchError(f"{', '.join(in_process_only)} was registered in this process, not by an installed "
                               "plugin, so worker processes cannot load it; use --workers 1")
        return WorkerPlan(workers, threads or max(1, cpus // workers))
    if device_type != "cpu" or preset == "smoke" or cells < 2 or in_process_only:
        return WorkerPlan(1, threads or torch.get_num_threads())
    memory = available_memory() if memory is None else memory
    by_memory = max(1, memory // WORKER_MEMORY_BYTES) if memory is not None else cpus
    count = max(1, min(cpus // (threads or 1), cells, by_memory))
    return WorkerPlan(count, threads or max(1, cpus // count))


def in_process_only(registry: Any, cells: list[Cell]) -> list[str]:
    """The methods, datasets and architectures of ``cells`` that no loaded plugin provides (added
    to this process's registry by hand): a fresh worker process would not know them."""
    loaded = set(registry.plugins)
    wanted = {("method", c.method) for c in cells}
    wanted |= {("dataset", c.dataset) for c in cells if c.dataset_source is None}
    wanted |= {("architecture", p["arch"]) for c in cells for p in c.protocols}
    return sorted(f"{kind} {name!r}" for kind, name in wanted if registry.owners.get((kind, name)) not in loaded)


# --- running one cell (in this process or in a worker) -------------------------------------------

@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    from dcbench.plugins import load_plugins
    return load_plugins()


@functools.lru_cache(maxsize=2)
def _loaded(name: str, data_root: str | None, source: DatasetSource | None = None) -> Any:
    if source is not None:  # a dataset given by path (image folder, .pt/.npz)
        return source.load()
    return _registry().dataset(name).loader(Path(data_root) if data_root else None)


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_root: str | None, device: str, source: DatasetSource | None = None) -> Any:
    return _loaded(name, data_root, source).to(device)


@functools.lru_cache(maxsize=16)
def _data_fingerprint(name: str, data_root: str | None, source: DatasetSource | None = None) -> str:
    """The content hash of a dataset, once per dataset and process."""
    real = _loaded(name, data_root, source)
    return data_fingerprint(real.train_images, real.train_labels, real.test_images, real.test_labels,
                            real.num_classes)


def _forget_data() -> None:
    """Drop every cached dataset (one was modified in place): the next cell reloads it."""
    for cache in (_loaded, _dataset, _data_fingerprint):
        cache.cache_clear()


def _data_root_recorded(data_root: str | None) -> str | None:
    """Where the data was looked for: --data-root, else $DCBENCH_DATA, else None (the defaults)."""
    root = data_root or os.environ.get("DCBENCH_DATA")
    return str(Path(root).resolve()) if root else None


DATA_MODIFIED = ("the method modified the real dataset in place (its content hash changed); methods must not "
                 "write to RealDataset tensors (the data is reloaded for the next cell)")


def _data_intact(real: Any, expected: str) -> bool:
    """Whether the shared real dataset still has its planned content; when not, forget it so that
    the next cell reloads it (one method cannot corrupt another's results)."""
    found = data_fingerprint(real.train_images, real.train_labels, real.test_images, real.test_labels,
                             real.num_classes)
    if found != expected:
        _forget_data()
    return found == expected


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux: write 5 to clear_refs) so it measures one cell."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(per_cell: bool) -> float:
    if per_cell:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


def checkpoint_identity_of(cell: Cell, method: Any) -> dict[str, Any]:
    from dcbench.method.checkpoint import checkpoint_identity
    return checkpoint_identity(method.name, method.version, cell.fingerprint["config_hash"], cell.dataset,
                               cell.ipc, cell.seed)


def execute_cell(cell: Cell, root: str) -> dict[str, Any]:
    """Condense and evaluate one cell; write its directory; return its metrics (never raises for
    a failure of the method itself: that is recorded with its reason). A resumable method
    continues from the cell's ``checkpoint.pt``; progress rows go to ``curve.csv``. Runs on the
    cell's torch thread count (equal counts keep executors' numbers equal), then restores the
    caller's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cell.torch_threads)
    try:
        return _execute_cell(cell, root)
    finally:
        torch.set_num_threads(previous)


def _execute_cell(cell: Cell, root: str) -> dict[str, Any]:
    from dcbench.evaluation import Protocol, evaluate_synthetic
    from dcbench.method.checkpoint import Checkpointer, CheckpointPolicy
    from dcbench.method.condense import condense
    from dcbench.method.contract import CondenseContext
    from dcbench.results.curves import CURVE_FILE, CurveWriter

    store = Store(Path(root))
    directory = store.cell_dir(cell.id)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "log.txt"
    registry = _registry()
    # observers get the identity plus where the cell writes and the tracking settings
    observed = {**cell.identity(), "directory": str(directory.resolve()), "tracking": dict(cell.tracking)}
    curve = CurveWriter(directory / CURVE_FILE)
    checkpointer = None
    device = resolve_device(cell.device)
    metrics: dict[str, Any] = {"cell": cell.identity(), "fingerprint": cell.fingerprint, "device": str(device),
                               "precision": cell.precision, "threads": cell.torch_threads,
                               "device_name": device_name(device),
                               "dcbench_version": __version__, "torch_version": torch.__version__,
                               "platform": platform.platform(), "data_root": _data_root_recorded(cell.data_root),
                               "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with open(log_path, "a") as log:
        def note(text: str) -> None:
            log.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {text}\n")
            log.flush()

        def on_progress(step: int, total: int, values: Any) -> None:
            curve.add(step, total, values)
            registry.manager.hook.dcbench_condense_progress(cell=observed, step=step, total=total, metrics=values)
            if step == total or step % max(1, total // 20) == 0:
                note(f"step {step}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

        note(f"start {cell.id} preset={cell.preset} overrides={cell.overrides} device={device}")
        shared = None
        try:
            registry.manager.hook.dcbench_cell_started(cell=observed)
            method = registry.method(cell.method)
            found = _data_fingerprint(cell.dataset, cell.data_root, cell.dataset_source)
            if found != cell.fingerprint["data_fingerprint"]:
                raise DcbenchError(f"the {cell.dataset} data found here differs from the data the grid was "
                                   "planned with (content hash); give every worker the same --data-root files")
            shared = _dataset(cell.dataset, cell.data_root, str(device), cell.dataset_source)
            real = shared.to(shared.device)  # a fresh RealDataset over the same tensors, checked after use
            per_cell_rss = _reset_peak_rss()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            plugin = registry.plugins.get(registry.owners[("method", method.name)])
            ctx = CondenseContext(device=device, architectures=registry.architectures, on_progress=on_progress)
            checkpointer = Checkpointer(directory, checkpoint_identity_of(cell, method),
                                        CheckpointPolicy.parse(cell.checkpoint_every), note)
            condensed = condense(method, real, cell.ipc, cell.seed, cell.preset, cell.overrides, ctx,
                                 plugin_version=plugin.version if plugin else None, precision=cell.precision,
                                 state_store=checkpointer)
            if not _data_intact(shared, cell.fingerprint["data_fingerprint"]):
                shared = None
                raise DcbenchError(DATA_MODIFIED)
            real = shared.to(shared.device)  # evaluation gets a fresh view too
            condensed.synthetic.save(directory)
            condensed.synthetic.save_grid(directory / "grid.png", real.mean, real.std)
            note(f"condensed in {condensed.seconds:.1f}s")
            evaluations = []
            for fields in cell.protocols:
                protocol = Protocol(**{k: v for k, v in fields.items() if k != "name"})
                result = evaluate_synthetic(condensed.synthetic, real, protocol, cell.seed, device,
                                            registry.architecture(protocol.arch))
                if not all(math.isfinite(a) for a in result.test_accs):
                    raise DcbenchError(f"evaluation on {protocol.arch} gave a non-finite accuracy")
                evaluations.append({"arch": protocol.arch, "protocol": result.protocol, "seconds": result.seconds,
                                    "train_seconds": result.train_seconds, "test_seconds": result.test_seconds,
                                    "test_accs": result.test_accs, "train_accs": result.train_accs,
                                    "eval_seeds": result.eval_seeds})
                note(f"evaluated on {protocol.name}: mean test accuracy {100 * result.mean:.2f}% "
                     f"in {result.seconds:.1f}s")
            metrics.update({
                "status": "done", "method_version": method.version,
                "plugin_version": plugin.version if plugin else None,
                "condense_s": condensed.seconds, "method_metrics": condensed.metrics,
                "resumed_at_iteration": condensed.resumed_at,
                "peak_rss_mb": round(_peak_rss_mb(per_cell_rss), 1),
                "peak_rss_scope": "cell" if per_cell_rss else "process",
                "cuda_peak_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                                 if device.type == "cuda" else None),
                "config": condensed.synthetic.manifest.get("config"),
                "synthetic_hash": condensed.synthetic.manifest.get("content_hash"),
                "evaluations": evaluations,
            })
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin too: recorded, the grid goes on
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            if shared is not None and not _data_intact(shared, cell.fingerprint["data_fingerprint"]):
                reason += f"; also, {DATA_MODIFIED}"
            note(f"FAILED {reason}\n{traceback.format_exc()}")
            metrics.update({"status": "failed", "reason": reason})
        metrics["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        curve.close()
        store.write_metrics(cell.id, metrics)
        if checkpointer is not None:
            checkpointer.discard()  # the cell finished (done or failed): nothing to resume
    try:
        registry.manager.hook.dcbench_cell_finished(cell=observed, result=metrics)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - an observer's failure does not change the cell's result
        with open(log_path, "a") as log:
            log.write(f"an observer of dcbench_cell_finished failed: {type(exc).__name__}: {exc}\n")
    return metrics


# --- executors -----------------------------------------------------------------------------------

def run_local(cells: list[Cell], root: Path) -> Iterator[dict[str, Any]]:
    for cell in cells:
        yield execute_cell(cell, str(root))


# --- the command ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunOutcome:
    """What ``dcbench run`` did: the store, the grid's cells and those that failed."""

    root: Path
    cells: int
    failed: list[str]

    @property
    def exit_status(self) -> int:
        """0 when every cell of the grid is finished, 1 when any failed (all of them included)."""
        return 1 if self.failed else 0


def run_benchmark(spec_path: Path | None = None, preset: str | None = None, out: Path | None = None,
                  executor: str = "local", ray_address: str | None = None, data_root: str | None = None,
                  device: str = "auto", show_progress: bool = True, write_report: bool = True,
                  threads: int | None = None, precision: str | None = None, reference: str | None = "auto",
                  checkpoint_every: str | None = None,
                  gpus_per_cell: float | None = None, tensorboard: bool | str | None = None,
                  max_retries: int = 3, workers: int | None = None) -> Path:
    """Run a grid (see :func:`run_grid`) and return its results directory."""
    return run_grid(spec_path, preset, out, executor, ray_address, data_root, device, show_progress,
                    write_report, threads, precision, reference, checkpoint_every, gpus_per_cell,
                    tensorboard, max_retries, workers).root


def run_grid(spec_path: Path | None = None, preset: str | None = None, out: Path | None = None,
             executor: str = "local", ray_address: str | None = None, data_root: str | None = None,
             device: str = "auto", show_progress: bool = True, write_report: bool = True,
             threads: int | None = None, precision: str | None = None,
             reference: str | None = "auto", checkpoint_every: str | None = None,
             gpus_per_cell: float | None = None, tensorboard: bool | str | None = None,
             max_retries: int = 3, workers: int | None = None) -> RunOutcome:
    """Expand the spec, run its unfinished cells with the store locked, rebuild the tables, write
    the report and end with the comparison against ``reference`` (see
    :func:`dcbench.report.compare.resolve_reference`). ``checkpoint_every``, ``gpus_per_cell``,
    ``tensorboard`` and ``workers`` (local executor: cells at once, see :func:`plan_workers`)
    override the spec's keys; ``max_retries`` is how often a cell whose worker process died is
    rerun (Ray, or the local worker processes)."""
    from dcbench.data.builtin import data_root_option
    from dcbench.method.checkpoint import check_compatible
    from dcbench.report.compare import compare_paths, comparison_text, resolve_reference

    spec = load_spec(spec_path, preset)
    if threads is not None:  # the command line wins over the spec
        spec.threads = threads
    if precision is not None:
        spec.precision = precision
    for key, value in (("checkpoint_every", checkpoint_every), ("gpus_per_cell", gpus_per_cell),
                       ("tensorboard", tensorboard), ("workers", workers)):
        if value is not None:
            setattr(spec, key, value)
    spec.validate()
    device_type = resolve_device(device).type  # fails early on a bad --device
    if executor == "local":  # Ray's cells check on the machines they run on
        check_precision(spec.precision, device_type)
    if executor != "local" and spec.workers is not None:
        raise DcbenchError("workers is for the local executor (Ray runs one cell per CPU it has); drop it for "
                           "--executor ray")
    data_root_option(data_root)  # an empty --data-root is a mistake, not "the default"
    if executor == "ray" and ray_address is not None:
        from dcbench.run.ray_probe import check_ray_address
        check_ray_address(ray_address)  # seconds, instead of minutes of Ray's retries
    root = out or Path("results") / "local" / spec.name  # results/local/ is not committed
    dataset_names = [resolve_dataset_entry(entry)[0] for entry in spec.datasets]
    against, no_comparison = resolve_reference(reference, dataset_names, spec.preset, root, spec.name)  # fails now
    registry = _registry()
    tracking = _tracking(spec, root, registry)  # a missing tracking package is refused before any work
    check_output_dir(root, "results directory")
    cells = plan_cells(spec, registry, data_root, device, tracking)  # configs and data checked: no work yet
    root.mkdir(parents=True, exist_ok=True)
    store = Store(root)
    with StoreLock(root):
        store.runs.mkdir(parents=True, exist_ok=True)
        todo = []
        for cell in cells:
            state = store.cell_state(cell.id, cell.fingerprint)
            if state.damage:
                print(f"cell {cell.id} is damaged ({state.damage}); re-running it", file=sys.stderr)
                store.discard(cell.id, state.damage)
            if not state.done:
                todo.append(cell)
        for cell in todo:  # refuse a checkpoint of another config before any work
            check_compatible(store.cell_dir(cell.id), checkpoint_identity_of(cell, registry.method(cell.method)))
        store.record_spec(spec.to_toml(), __version__)
        plan = None
        if executor == "local":
            plan = plan_workers(spec.workers, spec.threads, device_type, spec.preset, len(todo),
                                in_process_only(registry, todo))
            todo = [dataclasses.replace(cell, torch_threads=plan.threads) for cell in todo]
        print(f"dcbench run {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already done, "
              f"{len(todo)} to run -> {root}" + (f" ({plan.describe()})" if plan and todo else ""), file=sys.stderr)
        start = time.perf_counter()
        if todo:
            if plan is not None and plan.workers > 1:
                from dcbench.run.executors import run_pool
                # larger sets first (condensing and training on them take longest), so that the
                # last cells to start are short and no worker waits long for another at the end
                ordered = sorted(todo, key=lambda cell: -cell.ipc)
                _show(run_pool(ordered, root, execute_cell, plan.workers, max_retries), len(todo), show_progress)
            elif executor == "local":
                _run_local_with_progress(todo, root, registry, show_progress)
            else:
                from dcbench.run.executors import run_ray
                results = run_ray(todo, root, ray_address, execute_cell, spec.gpus_per_cell, max_retries)
                _show(results, len(todo), show_progress)
        runs = store.rebuild_tables()
        wall = time.perf_counter() - start
        print(f"wall time {wall:.0f}s", file=sys.stderr)
        for line in identity_notes(runs):
            print(f"note: {line}", file=sys.stderr)
        if not runs.empty:
            print(summary_table(runs))
        if write_report and not runs.empty:
            from dcbench.report import write_report as report
            print(f"report: {report(root, against=against)}", file=sys.stderr)
        if against is not None and not runs.empty:
            print(comparison_text(compare_paths(root, against), against))
        elif not runs.empty:
            print(no_comparison, file=sys.stderr)
        failed = [c.id for c in cells if (store.read_metrics(c.id) or {}).get("status") != "done"]
    if failed:
        print(f"{len(failed)} of {len(cells)} cells failed (reasons in {root / 'failures.csv'}); fix the cause "
              "and run the same command again to re-run them", file=sys.stderr)
    return RunOutcome(root, len(cells), failed)


def _run_local_with_progress(cells: list[Cell], root: Path, registry: Any, show_progress: bool) -> None:
    """The local executor with a second line for the running cell (iteration, loss, ETA)."""
    from dcbench.run.progress import CellProgressBar

    bar = CellProgressBar(position=1, disable=not show_progress)
    registry.manager.register(bar, name="dcbench.run.progress")
    try:
        _show(run_local(cells, root), len(cells), show_progress)
    finally:
        bar.close()
        registry.manager.unregister(bar)


def _tracking(spec: Spec, root: Path, registry: Any) -> dict[str, str]:
    """Settings of the tracking plugins for every cell; refuses a missing dependency up front."""
    if spec.tensorboard is False:
        return {}
    if importlib.util.find_spec("tensorboard") is None:
        raise DcbenchError("tensorboard logging needs TensorBoard: pip install 'dcbench[tensorboard]'")
    if "tensorboard" not in registry.plugins:
        raise DcbenchError("tensorboard logging asked for, but the 'tensorboard' plugin is not loaded "
                           "(check DCBENCH_LOAD_PLUGINS / DCBENCH_DISABLE_PLUGINS)")
    directory = root / "tensorboard" if spec.tensorboard is True else Path(str(spec.tensorboard))
    return {"tensorboard": str(directory.resolve())}


def _show(results: Iterator[dict[str, Any]], total: int, show_progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=total, unit="cell", disable=not show_progress, file=sys.stderr, dynamic_ncols=True) as bar:
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
    """Mean ± SD (over seeds) test accuracy in %, methods × (dataset, IPC, arch)."""
    per_seed = runs.groupby(["method", "dataset", "ipc", "eval_arch", "synth_seed"])["test_acc"].mean() * 100
    stats = per_seed.groupby(["method", "dataset", "ipc", "eval_arch"]).agg(["mean", "std", "count"])
    cells = stats.apply(lambda r: f"{r['mean']:.1f} ± {r['std']:.1f} (n={int(r['count'])})"
                        if r["count"] > 1 else f"{r['mean']:.1f} (n=1)", axis=1)
    table = cells.unstack(["dataset", "ipc", "eval_arch"])
    return table.to_string()

