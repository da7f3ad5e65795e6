"""Executors beyond the sequential one: worker processes on this machine, and Ray.

**Worker processes** (:func:`run_pool`, ``dcbench run --workers N``): N spawned processes, each
running one cell at a time with its own torch thread count. Small networks use a core badly
from a second thread (a ConvNet-32 step at batch 100 is 1.7-1.8x faster on 2 threads, not 2x),
so on a CPU independent cells side by side finish a grid sooner than one cell on every core, and
single-threaded cells have no OpenMP barrier to stall when another process takes a core. A
worker that dies (the OOM killer, ``kill -9``) breaks the pool: the unfinished cells go to a new
pool, up to ``max_retries`` times, and resume from their checkpoints; finished cells are on disk.

**Ray** (:func:`run_ray`): one Ray task per cell, on a local instance or a cluster, surviving lost workers.

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

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import atomic_write
from dcbench.method.checkpoint import CHECKPOINT_FILE
from dcbench.results.record import METRICS_FILE, CellRecord, now
from dcbench.results.store import Store

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
        files = {
            p.name: p.read_bytes()
            for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name != CHECKPOINT_FILE
        }
    return CellResult(metrics, files, shared)


def _copy_back(store: Store, cell_id: str, files: dict[str, bytes]) -> None:
    """Write a cell's returned files into the driver's store, metrics.json last (it marks the cell done)."""
    directory = store.cell_directory(cell_id)
    for name in sorted(files, key=lambda n: n == METRICS_FILE):
        if Path(name).name != name:
            raise DcbenchError(f"a Ray task returned a file named {name!r} for cell {cell_id}; refusing to write it")
        atomic_write(directory / name, lambda f, data=files[name]: f.write(data))


def _lost_cell(
    store: Store, cell: Any, exc: BaseException, max_retries: int, where: str = "Ray task"
) -> dict[str, Any]:
    """Record a cell whose task failed even after its retries, like a cell whose method failed."""
    record = CellRecord(
        cell=cell.key(),
        status="failed",
        reference_only=cell.reference_only,
        method_label=cell.method_label,
        init_stream=cell.init_stream,
        coreset=cell.coreset,
        dataset_label=cell.dataset_label,
        fingerprint=cell.fingerprint,
        precision=cell.precision,
        deterministic=cell.deterministic,
        reason=f"{type(exc).__name__}: {first_line(exc).strip()} ({where} failed, {max_retries} retries)",
        finished=now(),
    )
    store.write_metrics(cell.id, record)
    return record.to_json()


_started: Any = None  # in a worker process: the queue on which it says which cell it starts


def _worker_init(parent: int, started: Any) -> None:
    """Worker start-up: keep the started-cells queue, ignore Ctrl-C and end this worker when the
    driver ends (Linux), so that no orphan keeps writing to a results directory whose lock is gone."""
    global _started
    _started = started
    # Ctrl-C reaches the whole process group: the driver decides (it ends the workers and prints
    # one line); here it would fail the running cell with a traceback. It was held (blocked) since
    # this process started, by _interrupts_held: one that came meanwhile is dropped with the unblock.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the driver died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Block SIGINT while worker processes start: they inherit the mask, so a Ctrl-C while they
    still import torch waits for :func:`_worker_init` (which ignores it) instead of printing a
    traceback per worker; this process gets its own when the block ends. (multiprocessing's
    resource tracker is started the same way.)"""
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop(pool: ProcessPoolExecutor, timeout: float = 10.0) -> None:
    """End the pool's workers now, running cells included: the driver is leaving (Ctrl-C, an
    error). shutdown() alone cancels only the cells not started; the running ones would go on
    writing to a store whose lock is released, and this process would wait for them at exit."""
    processes = list((pool._processes or {}).values())  # the pool has no public handle on them
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout)
        if process.is_alive():  # SIGTERM ignored or stuck in the kernel: SIGKILL
            process.kill()
            process.join(timeout)
    pool.shutdown(wait=True, cancel_futures=True)


def _pool_task(execute: Callable[[Any, str], dict[str, Any]], cell: Any, root: str) -> dict[str, Any]:
    _started.put(cell.id)
    return execute(cell, root)


def _drain(queue: Any) -> set[str]:
    found = set()
    while not queue.empty():
        found.add(queue.get())
    return found


def run_pool(
    cells: list[Any], root: Path, execute: Callable[[Any, str], dict[str, Any]], workers: int, max_retries: int = 3
) -> Generator[dict[str, Any], None, None]:
    """Run ``execute(cell, root)`` for every cell in ``workers`` spawned processes; yield each
    cell's metrics as it ends. ``execute`` and the cells must pickle (module-level function, plain
    data); each cell carries its own ``torch_threads``.

    When a worker dies, the pool is broken and every running cell stops: each of those counts one
    attempt, and goes to a new pool (resuming from its checkpoint) until it has had
    ``max_retries`` reruns; then it is recorded as failed and the grid goes on."""
    if workers < 1:
        raise DcbenchError(f"workers must be >= 1, got {workers}")
    if max_retries < 0:
        raise DcbenchError(f"max_retries must be >= 0, got {max_retries}")
    store = Store(Path(root))
    # spawn, not fork: forking a process whose OpenMP and allocator threads are running is unsafe
    context = multiprocessing.get_context("spawn")
    started = context.SimpleQueue()  # put() writes through at once: a worker may die right after it
    attempts = {cell.id: 0 for cell in cells}
    todo = list(cells)
    while todo:
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=context,
            initializer=_worker_init,
            initargs=(os.getpid(), started),
        )
        broken: BaseException | None = None
        running: set[str] = set()  # cells this pool started (read as they come: the pipe must not fill up)
        try:
            with _interrupts_held():  # submit() starts the workers
                cell_of = {pool.submit(_pool_task, execute, cell, str(root)): cell for cell in todo}
            pending = set(cell_of)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                running |= _drain(started)
                for future in done:
                    try:
                        metrics = future.result()
                    except BrokenProcessPool as exc:
                        broken = exc
                        continue
                    todo.remove(cell_of[future])
                    yield metrics
        except BaseException:  # Ctrl-C, or the caller closing this generator: no worker outlives it
            _stop(pool)
            raise
        pool.shutdown(wait=True)
        if broken is None:
            break
        running |= _drain(started)
        if not running & {cell.id for cell in todo}:  # nothing to blame: workers die as they start
            raise DcbenchError(
                f"worker processes die before running a cell ({broken}); run with --workers 1 "
                "to see the error in this process"
            )
        for cell in list(todo):
            finished = store.read_metrics(cell.id) if store.cell_state(cell.id, cell.fingerprint).done else None
            if finished is not None:  # finished on disk, but its worker died before it could say so
                todo.remove(cell)
                yield finished
            elif cell.id in running:
                attempts[cell.id] += 1
                if attempts[cell.id] > max_retries:
                    todo.remove(cell)
                    yield _lost_cell(store, cell, broken, max_retries, "worker process")
        if todo:
            print(
                f"dcbench: a worker process died ({broken}); {len(todo)} unfinished cells go to new workers "
                "and resume from their checkpoints",
                file=sys.stderr,
            )


def _gpus(per_cell: float | None, cluster_gpus: float) -> float:
    if per_cell is None:
        return 1.0 if cluster_gpus else 0.0
    if per_cell > 0 and per_cell > cluster_gpus:
        raise DcbenchError(
            f"gpus_per_cell {per_cell:g} asked for, but the Ray cluster has {cluster_gpus:g} GPUs; "
            "lower --gpus-per-cell or use 0 for CPU cells"
        )
    return per_cell


def run_ray(
    cells: list[Any],
    root: Path,
    address: str | None,
    execute: Callable[[Any, str], dict[str, Any]],
    gpus_per_cell: float | None = None,
    max_retries: int = 3,
) -> Generator[dict[str, Any], None, None]:
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
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("DCBENCH_")}},
            )
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
        task = ray.remote(
            num_cpus=1,
            num_gpus=gpus,
            max_retries=max_retries,  # type: ignore[call-overload]
            retry_exceptions=[OSError],
        )(run_cell_task)
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
                    print(
                        f"dcbench: Ray workers do not see {root} (no shared filesystem): finished cells are "
                        "copied back to the driver, but a retried cell resumes only on the node that wrote "
                        "its checkpoint",
                        file=sys.stderr,
                    )
                    said_not_shared = True
                _copy_back(store, cell.id, result.files)
            yield result.metrics
    finally:
        if started_here:
            ray.shutdown()
