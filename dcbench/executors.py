"""The Ray executor: one Ray task per cell, on a local instance or a cluster, surviving lost workers.

- A task whose worker dies (a crashed or pre-empted node, the OOM killer, ``kill -9``) is rerun up
  to ``max_retries`` times by Ray; the rerun resumes from the cell's ``checkpoint.pt``. Failures
  of the method itself are not retried: the cell records them and returns normally.
- A task that still fails is recorded as a failed cell (``metrics.json`` with the reason) and the
  grid goes on: the driver waits with ``ray.wait`` and guards every ``ray.get``.
- Results reach the driver's store either way: each task checks whether it sees the driver's
  results directory (a token file the driver wrote); where it does not (no shared filesystem)
  it returns the cell's files, the driver writes them and says so once.
- Each task sets torch's thread count to the CPUs Ray gave it (not the driver's count), and takes
  ``gpus_per_cell`` GPUs (a fraction lets several cells share one GPU).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcbench.checkpoint import CHECKPOINT_FILE
from dcbench.errors import DcbenchError
from dcbench.store import METRICS_FILE, Store
from dcbench.synthetic import atomic_write

TOKEN_FILE = ".dcbench-driver-token"


@dataclass
class CellResult:
    """What a task sends back: the cell's metrics and, without a shared filesystem, its files."""

    metrics: dict[str, Any]
    files: dict[str, bytes]
    shared_filesystem: bool


def assigned_cpus() -> float:
    """The CPUs Ray gave the running task."""
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))


def run_cell_task(cell: Any, root: str, execute: Callable[[Any, str], dict[str, Any]], token: str) -> CellResult:
    """The body of one Ray task (module level, so Ray pickles it by reference)."""
    cell = dataclasses.replace(cell, torch_threads=max(1, int(assigned_cpus())))  # not the driver's count
    token_path = Path(root) / TOKEN_FILE
    shared = token_path.is_file() and token_path.read_text() == token
    metrics = execute(cell, root)
    files: dict[str, bytes] = {}
    if not shared:
        directory = Store(Path(root)).cell_dir(cell.id)
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())
                 if p.is_file() and not p.name.startswith(".") and p.name != CHECKPOINT_FILE}
    return CellResult(metrics, files, shared)


def _copy_back(store: Store, cell_id: str, files: dict[str, bytes]) -> None:
    """Write a cell's returned files into the driver's store, metrics.json last (it marks the cell done)."""
    directory = store.cell_dir(cell_id)
    for name in sorted(files, key=lambda n: n == METRICS_FILE):
        if Path(name).name != name:
            raise DcbenchError(f"a Ray task returned a file named {name!r} for cell {cell_id}; refusing to write it")
        atomic_write(directory / name, lambda f, data=files[name]: f.write(data))


def _lost_cell(store: Store, cell: Any, exc: BaseException, max_retries: int) -> dict[str, Any]:
    """Record a cell whose task failed even after its retries, like a cell whose method failed."""
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    metrics = {"cell": cell.identity(), "fingerprint": cell.fingerprint, "status": "failed",
               "reason": f"{type(exc).__name__}: {first} (Ray task failed, {max_retries} retries)",
               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store.write_metrics(cell.id, metrics)
    return metrics


def _gpus(per_cell: float | None, cluster_gpus: float) -> float:
    if per_cell is None:
        return 1.0 if cluster_gpus else 0.0
    if per_cell > 0 and per_cell > cluster_gpus:
        raise DcbenchError(f"gpus_per_cell {per_cell:g} asked for, but the Ray cluster has {cluster_gpus:g} GPUs; "
                           "lower --gpus-per-cell or use 0 for CPU cells")
    return per_cell


def run_ray(cells: list[Any], root: Path, address: str | None, execute: Callable[[Any, str], dict[str, Any]],
            gpus_per_cell: float | None = None, max_retries: int = 3) -> Iterator[dict[str, Any]]:
    """Run ``execute(cell, root)`` for every cell as a Ray task; yield each cell's metrics as it ends."""
    try:
        import ray
    except ImportError:
        raise DcbenchError("the ray executor needs Ray: pip install 'dcbench[ray]'") from None
    if max_retries < 0:
        raise DcbenchError(f"max_retries must be >= 0, got {max_retries}")
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("DCBENCH_")}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise DcbenchError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    try:
        gpus = _gpus(gpus_per_cell, ray.cluster_resources().get("GPU", 0))
        store = Store(Path(root))
        token = uuid.uuid4().hex  # not a results seed: only tells this driver's directory apart
        atomic_write(Path(root) / TOKEN_FILE, lambda f: f.write(token.encode()))
        # Retry lost workers (system failures) and I/O errors; a method's own failure is recorded
        # by execute() and not retried, since it would fail again.
        # ray's stub types retry_exceptions as bool only; its documentation allows a list of exceptions
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=max_retries,  # type: ignore[call-overload]
                          retry_exceptions=[OSError])(run_cell_task)
        cell_of = {task.remote(cell, str(root), execute, token): cell for cell in cells}
        pending = list(cell_of)
        said_not_shared = False
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            cell = cell_of.pop(ready[0])
            try:
                result: CellResult = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                yield _lost_cell(store, cell, exc, max_retries)
                continue
            if not result.shared_filesystem:
                if not said_not_shared:
                    print(f"dcbench: Ray workers do not see {root} (no shared filesystem): finished cells are "
                          "copied back to the driver, but a retried cell resumes only on the node that wrote "
                          "its checkpoint", file=sys.stderr)
                    said_not_shared = True
                _copy_back(store, cell.id, result.files)
            yield result.metrics
    finally:
        if started_here:
            ray.shutdown()
