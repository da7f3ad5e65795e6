"""``dcbench run``: expand a spec into cells, run the unfinished ones, rebuild the tables, report.

A cell is one (method, dataset, IPC, seed) condensation and its evaluations on every evaluation
architecture. Cells are independent, so an executor may run them anywhere: ``local`` runs them
one after another in this process; ``ray`` sends each to a Ray task (one GPU each when the cluster
has GPUs). Either way a cell writes its own directory in the store, so the executors produce the
same ``runs.csv`` for the same seeds.
"""
from __future__ import annotations

import functools
import logging
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
from dcbench.errors import DcbenchError
from dcbench.spec import Spec, load_spec
from dcbench.store import Store


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
    fingerprint: dict[str, Any]
    data_root: str | None = None
    device: str = "auto"
    torch_threads: int = field(default_factory=torch.get_num_threads)

    @property
    def id(self) -> str:
        return f"{self.method}-{self.dataset}-ipc{self.ipc}-s{self.seed}"

    def identity(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "dataset": self.dataset, "ipc": self.ipc,
                "seed": self.seed, "preset": self.preset}


def plan_cells(spec: Spec, registry: Any, data_root: str | None, device: str) -> list[Cell]:
    """The spec's grid, validated against the installed plugins before any work starts."""
    from dcbench.condensation import config_hash
    from dcbench.evaluation import Protocol
    from dcbench.methods import config_to_dict

    methods = spec.methods or sorted(n for n, m in registry.methods.items() if not getattr(m, "reference_only", False))
    for name in spec.overrides:
        if name not in methods:
            raise DcbenchError(f"spec overrides method {name!r}, which is not in the spec's methods")
    for name in spec.datasets:
        registry.dataset(name)
    for name in spec.eval_archs:
        registry.architecture(name)
    cells = []
    for method_name in methods:
        method = registry.method(method_name)
        overrides = spec.overrides.get(method_name, {})
        config = config_to_dict(method.make_config(spec.preset, overrides))
        augmentation = method.native_eval_augmentation if spec.eval_augmentation == "native" else spec.eval_augmentation
        for dataset in spec.datasets:
            protocols = []
            for arch in spec.eval_archs:
                extra = {k: v for k, v in (("models", spec.eval_models), ("epochs", spec.eval_epochs)) if v is not None}
                protocols.append(Protocol.for_preset(spec.preset, dataset, augmentation, arch, **extra).to_dict())
            fingerprint = {"config_hash": config_hash(method_name, config),
                           "protocols": sorted(p["name"] for p in protocols)}
            for ipc in spec.ipcs:
                for seed in spec.seeds:
                    cells.append(Cell(method_name, dataset, ipc, seed, spec.preset, overrides, protocols,
                                      fingerprint, data_root, device))
    return cells


# --- running one cell (in this process or in a worker) -------------------------------------------

@functools.lru_cache(maxsize=1)
def _registry() -> Any:
    from dcbench.plugins import load_plugins
    return load_plugins()


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_root: str | None, device: str) -> Any:
    return _registry().dataset(name).loader(Path(data_root) if data_root else None).to(device)


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


def execute_cell(cell: Cell, root: str) -> dict[str, Any]:
    """Condense and evaluate one cell; write its directory; return its metrics (never raises for
    a failure of the method itself: that is recorded with its reason)."""
    from dcbench.cli import resolve_device
    from dcbench.condensation import condense
    from dcbench.evaluation import Protocol, evaluate_synthetic
    from dcbench.methods import CondenseContext

    torch.set_num_threads(cell.torch_threads)  # equal thread counts keep executors' numbers equal
    store = Store(Path(root))
    directory = store.cell_dir(cell.id)
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "log.txt"
    registry = _registry()
    device = resolve_device(cell.device)
    metrics: dict[str, Any] = {"cell": cell.identity(), "fingerprint": cell.fingerprint, "device": str(device),
                               "dcbench_version": __version__, "torch_version": torch.__version__,
                               "platform": platform.platform(),
                               "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with open(log_path, "a") as log:
        def note(text: str) -> None:
            log.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {text}\n")
            log.flush()

        def on_progress(step: int, total: int, values: Any) -> None:
            registry.manager.hook.dcbench_condense_progress(cell=cell.identity(), step=step, total=total,
                                                            metrics=values)
            if step == total or step % max(1, total // 20) == 0:
                note(f"step {step}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

        registry.manager.hook.dcbench_cell_started(cell=cell.identity())
        note(f"start {cell.id} preset={cell.preset} overrides={cell.overrides} device={device}")
        try:
            method = registry.method(cell.method)
            real = _dataset(cell.dataset, cell.data_root, str(device))
            per_cell_rss = _reset_peak_rss()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            plugin = registry.plugins.get(registry.owners[("method", method.name)])
            ctx = CondenseContext(device=device, architectures=registry.architectures, on_progress=on_progress)
            condensed = condense(method, real, cell.ipc, cell.seed, cell.preset, cell.overrides, ctx,
                                 plugin_version=plugin.version if plugin else None)
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
                                    "test_accs": result.test_accs, "train_accs": result.train_accs,
                                    "eval_seeds": result.eval_seeds})
                note(f"evaluated on {protocol.name}: mean test accuracy {100 * result.mean:.2f}% "
                     f"in {result.seconds:.1f}s")
            metrics.update({
                "status": "done", "method_version": method.version,
                "plugin_version": plugin.version if plugin else None,
                "condense_s": condensed.seconds, "method_metrics": condensed.metrics,
                "peak_rss_mb": round(_peak_rss_mb(per_cell_rss), 1),
                "peak_rss_scope": "cell" if per_cell_rss else "process",
                "cuda_peak_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                                 if device.type == "cuda" else None),
                "config": condensed.synthetic.manifest.get("config"),
                "evaluations": evaluations,
            })
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded; the grid goes on
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            note(f"FAILED {reason}\n{traceback.format_exc()}")
            metrics.update({"status": "failed", "reason": reason})
        metrics["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        store.write_metrics(cell.id, metrics)
    registry.manager.hook.dcbench_cell_finished(cell=cell.identity(), result=metrics)
    return metrics


# --- executors -----------------------------------------------------------------------------------

def run_local(cells: list[Cell], root: Path) -> Iterator[dict[str, Any]]:
    for cell in cells:
        yield execute_cell(cell, str(root))


def run_ray(cells: list[Cell], root: Path, address: str | None) -> Iterator[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise DcbenchError("the ray executor needs Ray: pip install 'dcbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("DCBENCH_")}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise DcbenchError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=0)(execute_cell)
        pending = [task.remote(cell, str(root)) for cell in cells]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started_here:
            ray.shutdown()


# --- the command ---------------------------------------------------------------------------------

def run_benchmark(spec_path: Path | None = None, preset: str | None = None, out: Path | None = None,
                  executor: str = "local", ray_address: str | None = None, data_root: str | None = None,
                  device: str = "auto", show_progress: bool = True, write_report: bool = True) -> Path:
    from dcbench.cli import resolve_device
    from dcbench.datasets import data_root_option

    spec = load_spec(spec_path, preset)
    resolve_device(device)  # fail early on a bad --device
    data_root_option(data_root)  # an empty --data-root is a mistake, not "the default"
    if executor == "ray" and ray_address is not None:
        from dcbench.ray_probe import check_ray_address
        check_ray_address(ray_address)  # seconds, instead of minutes of Ray's retries
    registry = _registry()
    cells = plan_cells(spec, registry, data_root, device)
    root = out or Path("results") / spec.name
    store = Store(root)
    todo = [c for c in cells if not store.is_done(c.id, c.fingerprint)]
    _load_datasets_first(todo, data_root, device if executor == "local" else "cpu")
    store.runs.mkdir(parents=True, exist_ok=True)
    store.write_spec(spec.to_toml())
    print(f"dcbench run {spec.name}: {len(cells)} cells, {len(cells) - len(todo)} already done, "
          f"{len(todo)} to run -> {root}", file=sys.stderr)
    start = time.perf_counter()
    if todo:
        results = run_local(todo, root) if executor == "local" else run_ray(todo, root, ray_address)
        _show(results, len(todo), show_progress)
    runs = store.rebuild_tables()
    wall = time.perf_counter() - start
    print(f"wall time {wall:.0f}s", file=sys.stderr)
    if not runs.empty:
        print(summary_table(runs))
    if write_report and not runs.empty:
        from dcbench.report import write_report as report
        print(f"report: {report(root)}", file=sys.stderr)
    return root


def _load_datasets_first(cells: list[Cell], data_root: str | None, device: str) -> None:
    """Load every dataset the cells need before any runs: a missing, mistyped or corrupt dataset is
    one error now, not a failure in every cell (the local executor then reuses the loaded copy)."""
    from dcbench.cli import resolve_device

    for name in sorted({c.dataset for c in cells}):
        _dataset(name, data_root, str(resolve_device(device)))


def _show(results: Iterator[dict[str, Any]], total: int, show_progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=total, unit="cell", disable=not show_progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for metrics in results:
            cell = metrics["cell"]
            if metrics["status"] == "done":
                accs = [a for ev in metrics["evaluations"] for a in ev["test_accs"]]
                status = f"done {100 * sum(accs) / len(accs):.1f}% ({metrics['condense_s']:.0f}s condense)"
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

