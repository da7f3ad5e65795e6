"""How many cells run at once: worker processes and the torch threads each cell gets.

On a CPU, one single-threaded worker per core (as many as there are cells and memory for) beats one
cell on every core: a ConvNet step does not scale to a second thread, and a busy neighbour slows
one of two workers instead of both threads of one cell."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from dcbench.host.errors import DcbenchError
from dcbench.host.runtime import available_memory
from dcbench.plugins import Registry
from dcbench.run.plan import Cell

#: memory one worker process may need: a DC cell at paper settings peaks near 3.4 GB
WORKER_MEMORY_BYTES = 4 * 2**30
#: the least a worker process takes (torch and a small cell): an explicit count is capped by it
WORKER_FLOOR_BYTES = 640 * 2**20


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerPlan:
    """How many cells run at once (worker processes) and the torch threads each cell gets."""

    workers: int
    threads: int
    capped: str = ""  # why an explicit count was lowered to ``workers`` ("2 usable cores"), if it was

    def describe(self) -> str:
        unit = "thread" if self.threads == 1 else "threads"
        if self.workers == 1:
            return f"in this process, {self.threads} torch {unit}"
        return f"{self.workers} worker processes x {self.threads} torch {unit}"


def plan_workers(
    workers: int | None,
    threads: int | None,
    device_type: str,
    preset: str,
    cells: int,
    in_process_only: list[str],
    cpus: int | None = None,
    memory: int | None = None,
) -> WorkerPlan:
    """``workers`` given: that many, capped at the cores and memory by :func:`cap_workers`.
    ``workers`` None (auto): on a CPU, one worker per ``threads`` cores (1 thread each unless
    given), as many as there are cells and memory for (:data:`WORKER_MEMORY_BYTES` each); one
    process on a GPU, for ``smoke`` grids (starting workers costs more than their cells) and
    when a plugin was registered in this process only (a worker process could not load it).
    A thread count that is not given splits the cores between the workers."""
    cpus = usable_cpus() if cpus is None else cpus
    if workers is not None:  # >= 1: the spec's schema checks it
        count, capped = cap_workers(workers, cpus, available_memory() if memory is None else memory)
        if count > 1 and in_process_only:
            raise DcbenchError(
                f"{', '.join(in_process_only)} was registered in this process, not by an installed "
                "plugin, so worker processes cannot load it; use --workers 1"
            )
        return WorkerPlan(count, threads or max(1, cpus // count), capped)
    if device_type != "cpu" or preset == "smoke" or cells < 2 or in_process_only:
        return WorkerPlan(1, threads or torch.get_num_threads())
    memory = available_memory() if memory is None else memory
    by_memory = max(1, memory // WORKER_MEMORY_BYTES) if memory is not None else cpus
    count = max(1, min(cpus // (threads or 1), cells, by_memory))
    return WorkerPlan(count, threads or max(1, cpus // count))


def cap_workers(workers: int, cpus: int, memory: int | None) -> tuple[int, str]:
    """An explicit worker count, capped at the usable cores and at the workers ``memory`` bytes
    hold (:data:`WORKER_FLOOR_BYTES` each; None: unknown, no cap): more processes than that only
    contend for the cores or end in swapping and the OOM killer. Returns (count, why it was
    capped, or "")."""
    count, why = workers, ""
    if count > cpus:
        count, why = cpus, f"{cpus} usable {'core' if cpus == 1 else 'cores'}"
    if memory is not None:
        by_memory = max(1, memory // WORKER_FLOOR_BYTES)
        if count > by_memory:
            unit = "worker" if by_memory == 1 else "workers"
            count, why = by_memory, f"memory for {by_memory} {unit} at {WORKER_FLOOR_BYTES // 2**20} MiB each"
    return count, why


def in_process_only(registry: Registry, cells: list[Cell]) -> list[str]:
    """The methods, datasets and architectures of ``cells`` that no loaded plugin provides (added
    to this process's registry by hand): a fresh worker process would not know them."""
    loaded = set(registry.plugins)
    wanted = {("method", c.method) for c in cells}
    wanted |= {("dataset", c.dataset) for c in cells if c.dataset_source is None}
    wanted |= {("architecture", p["arch"]) for c in cells for p in c.protocols}
    return sorted(f"{kind} {name!r}" for kind, name in wanted if registry.owners.get((kind, name)) not in loaded)
