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
    """``workers`` None (auto): on a CPU, one worker per ``threads`` cores (1 thread each unless
    given), as many as there are cells and memory for (:data:`WORKER_MEMORY_BYTES` each); one
    process on a GPU, for ``smoke`` grids (starting workers costs more than their cells) and
    when a plugin was registered in this process only (a worker process could not load it).
    A thread count that is not given splits the cores between the workers."""
    cpus = usable_cpus() if cpus is None else cpus
    if workers is not None:  # >= 1: the spec's schema checks it
        if workers > 1 and in_process_only:
            raise DcbenchError(
                f"{', '.join(in_process_only)} was registered in this process, not by an installed "
                "plugin, so worker processes cannot load it; use --workers 1"
            )
        return WorkerPlan(workers, threads or max(1, cpus // workers))
    if device_type != "cpu" or preset == "smoke" or cells < 2 or in_process_only:
        return WorkerPlan(1, threads or torch.get_num_threads())
    memory = available_memory() if memory is None else memory
    by_memory = max(1, memory // WORKER_MEMORY_BYTES) if memory is not None else cpus
    count = max(1, min(cpus // (threads or 1), cells, by_memory))
    return WorkerPlan(count, threads or max(1, cpus // count))


def in_process_only(registry: Registry, cells: list[Cell]) -> list[str]:
    """The methods, datasets and architectures of ``cells`` that no loaded plugin provides (added
    to this process's registry by hand): a fresh worker process would not know them."""
    loaded = set(registry.plugins)
    wanted = {("method", c.method) for c in cells}
    wanted |= {("dataset", c.dataset) for c in cells if c.dataset_source is None}
    wanted |= {("architecture", p["arch"]) for c in cells for p in c.protocols}
    return sorted(f"{kind} {name!r}" for kind, name in wanted if registry.owners.get((kind, name)) not in loaded)
