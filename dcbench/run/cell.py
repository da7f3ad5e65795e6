"""One cell, start to finish: condense into the cell's directory, evaluate, write the record.

:func:`condense_into` is the one condensation pipeline: ``dcbench condense -o DIR`` and every cell of
``dcbench run`` go through it (loss curve, checkpoints, the plugin's version, the synthetic set and
its image grid). :func:`execute_cell` adds what a benchmark cell needs around it: the shared data
(content-checked before and after the method ran), the evaluations, peak memory, observers and the
record (``metrics.json``, written last and atomically).
"""

from __future__ import annotations

import math
import os
import platform
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from dcbench import __version__
from dcbench.data.real import RealDataset
from dcbench.evaluation import Protocol, Teacher, evaluate_synthetic, load_teacher, teacher_recipe
from dcbench.host.devices import device_name, resolve_device
from dcbench.host.errors import DcbenchError, first_line
from dcbench.host.files import open_append
from dcbench.host.runtime import deterministic_algorithms, peak_rss_mb, reset_peak_rss
from dcbench.method.checkpoint import Checkpointer, CheckpointPolicy
from dcbench.method.condense import Condensed, condense
from dcbench.method.contract import CondenseContext, Method
from dcbench.plugins import Registry
from dcbench.report.image_grids import write_set_grid
from dcbench.results.curves import CURVE_FILE, CurveWriter
from dcbench.results.record import CellRecord, EvaluationRecord, now
from dcbench.results.store import Store
from dcbench.run import shared
from dcbench.run.plan import Cell

ProgressObserver = Callable[[int, int, Mapping[str, float]], None]

DATA_MODIFIED = (
    "the method modified the real dataset in place (its content hash changed); methods must not "
    "write to RealDataset tensors (the data is reloaded for the next cell)"
)


@dataclass(frozen=True)
class CondenseRequest:
    """What to condense to: images per class, the seed, the preset and overrides, the precision
    and the device."""

    ipc: int
    seed: int
    preset: str
    overrides: Mapping[str, Any]
    precision: str
    device: torch.device
    data_fingerprint: str = ""  # the real data's content hash, when known (artifact identities)


def condense_into(
    directory: Path,
    method: Method,
    real: RealDataset,
    registry: Registry,
    request: CondenseRequest,
    checkpointer: Checkpointer,
    observe: ProgressObserver | None = None,
    before_saving: Callable[[], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Condensed:
    """Condense ``real`` with ``method`` and write the result into ``directory``: ``curve.csv`` (a
    row per progress report), ``checkpoint.pt`` while it runs (resumed from when present),
    ``synthetic.pt`` + ``manifest.json`` and ``grid.png``. ``before_saving`` may refuse the
    result (raise) before anything is saved; the caller discards the checkpoint once the outcome
    is recorded. ``log`` gets a line per artifact build."""
    curve = CurveWriter(directory / CURVE_FILE)

    def on_progress(step: int, total: int, values: Mapping[str, float]) -> None:
        curve.add(step, total, values)
        if observe is not None:
            observe(step, total, values)

    ctx = CondenseContext(
        device=request.device,
        architectures=registry.architectures,
        on_progress=on_progress,
        data_fingerprint=request.data_fingerprint,
        log=log,
    )
    try:
        condensed = condense(
            method,
            real,
            request.ipc,
            request.seed,
            request.preset,
            request.overrides,
            ctx,
            plugin_version=registry.plugin_version(method.name),
            precision=request.precision,
            state_store=checkpointer,
        )
    finally:
        curve.close()
    if before_saving is not None:
        before_saving()
    condensed.synthetic.save(directory)
    write_set_grid(directory, f"{method.name}: {real.name}, IPC {request.ipc}, seed {request.seed}")
    return condensed


def execute_cell(cell: Cell, root: str) -> dict[str, Any]:
    """Condense and evaluate one cell; write its directory; return its record as ``metrics.json``
    holds it (never raises for a failure of the method itself: that is recorded with its reason).
    Runs on the cell's torch thread count (equal counts keep executors' numbers equal), then
    restores the caller's."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cell.torch_threads)
    try:
        return _execute_cell(cell, root)
    finally:
        torch.set_num_threads(previous)


def _execute_cell(cell: Cell, root: str) -> dict[str, Any]:
    store = Store(Path(root))
    directory = store.cell_directory(cell.id)  # never a link out of the store
    run = _CellRun(cell, directory, shared.registry())
    with open_append(directory / "log.txt") as log:
        run.log = log
        run.note(f"start {cell.id} preset={cell.preset} overrides={cell.overrides} device={run.device}")
        try:
            with deterministic_algorithms(cell.deterministic, run.device.type):
                run.condense_and_evaluate()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a plugin too: recorded, the grid goes on
            run.fail(exc)
        run.record.finished = now()
        store.write_metrics(cell.id, run.record)
        if run.checkpointer is not None:
            run.checkpointer.discard()  # the cell finished (done or failed): nothing to resume
    metrics = run.record.to_json()
    try:
        run.registry.manager.hook.dcbench_cell_finished(cell=run.observed, result=metrics)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - an observer's failure does not change the cell's result
        with open_append(directory / "log.txt") as log:
            log.write(f"an observer of dcbench_cell_finished failed: {type(exc).__name__}: {exc}\n")
    return metrics


class _CellRun:
    """One cell being run: its record (filled in as it goes), log, observers and shared data."""

    def __init__(self, cell: Cell, directory: Path, registry: Registry) -> None:
        self.cell, self.directory, self.registry = cell, directory, registry
        self.device = resolve_device(cell.device)
        # observers get the identity plus where the cell writes and the tracking settings
        self.observed = {**cell.identity(), "directory": str(directory.resolve()), "tracking": dict(cell.tracking)}
        self.record = CellRecord(
            cell=cell.key(),
            status="failed",
            reference_only=cell.reference_only,
            method_label=cell.method_label,
            init_stream=cell.init_stream,
            coreset=cell.coreset,
            dataset_label=cell.dataset_label,
            fingerprint=cell.fingerprint,
            device=str(self.device),
            precision=cell.precision,
            threads=cell.torch_threads,
            deterministic=cell.deterministic,
            device_name=device_name(self.device),
            dcbench_version=__version__,
            torch_version=torch.__version__,
            platform=platform.platform(),
            data_root=_data_root_recorded(cell.data_root),
            started=now(),
        )
        self.log: IO[str] | None = None
        self.shared_data: RealDataset | None = None
        self.checkpointer: Checkpointer | None = None

    def note(self, text: str) -> None:
        assert self.log is not None
        self.log.write(f"{now()} {text}\n")
        self.log.flush()

    def observe(self, step: int, total: int, values: Mapping[str, float]) -> None:
        self.registry.manager.hook.dcbench_condense_progress(cell=self.observed, step=step, total=total, metrics=values)
        if step == total or step % max(1, total // 20) == 0:
            self.note(f"step {step}/{total} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def condense_and_evaluate(self) -> None:
        cell, device, registry = self.cell, self.device, self.registry
        registry.manager.hook.dcbench_cell_started(cell=self.observed)
        method = registry.method(cell.method)
        found = shared.dataset_fingerprint(cell.dataset, cell.data_root, cell.dataset_source, cell.zca)
        if found != cell.fingerprint["data_fingerprint"]:
            raise DcbenchError(
                f"the {cell.dataset} data found here differs from the data the grid was "
                "planned with (content hash); give every worker the same --data-root files"
            )
        self.shared_data = shared.dataset_on(cell.dataset, cell.data_root, str(device), cell.dataset_source, cell.zca)
        real = self.shared_data.to(self.shared_data.device)  # a fresh view over the same tensors, checked after use
        per_cell_rss = reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.checkpointer = Checkpointer(
            self.directory, cell.checkpoint_identity(method), CheckpointPolicy.parse(cell.checkpoint_every), self.note
        )
        request = CondenseRequest(
            cell.ipc,
            cell.seed,
            cell.preset,
            cell.overrides,
            cell.precision,
            device,
            cell.fingerprint["data_fingerprint"],
        )
        condensed = condense_into(
            self.directory,
            method,
            real,
            registry,
            request,
            self.checkpointer,
            observe=self.observe,
            before_saving=self._check_data,
            log=self.note,
        )
        assert self.shared_data is not None
        real = self.shared_data.to(self.shared_data.device)  # evaluation gets a fresh view too
        self.note(f"condensed in {condensed.seconds:.1f}s")
        data = cell.fingerprint["data_fingerprint"]
        evaluations = [
            _evaluate(condensed, real, fields, cell.seed, device, registry, self.note, data)
            for fields in cell.protocols
        ]
        record = self.record
        record.status = "done"
        record.method_version, record.plugin_version = method.version, registry.plugin_version(method.name)
        record.condense_s, record.method_metrics = condensed.seconds, condensed.metrics
        record.artifacts = condensed.artifacts
        record.resumed_at_iteration = condensed.resumed_at
        record.peak_rss_mb = round(peak_rss_mb(), 1)
        record.peak_rss_scope = "cell" if per_cell_rss else "process"
        record.cuda_peak_mb = (
            round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None
        )
        record.config = condensed.synthetic.manifest.get("config")
        record.synthetic_hash = condensed.synthetic.manifest.get("content_hash")
        record.evaluations = evaluations

    def _check_data(self) -> None:
        """The method must have left the shared data as it found it (else it is reloaded)."""
        assert self.shared_data is not None
        if not _data_intact(self.shared_data, self.cell.fingerprint["data_fingerprint"]):
            self.shared_data = None
            raise DcbenchError(DATA_MODIFIED)

    def fail(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        expected = self.cell.fingerprint["data_fingerprint"]
        if self.shared_data is not None and not _data_intact(self.shared_data, expected):
            reason += f"; also, {DATA_MODIFIED}"
        self.note(f"FAILED {reason}\n{traceback.format_exc()}")
        self.record.status, self.record.reason = "failed", reason


def _evaluate(
    condensed: Condensed,
    real: RealDataset,
    fields: Mapping[str, Any],
    seed: int,
    device: torch.device,
    registry: Registry,
    note: Callable[[str], None],
    data_fingerprint: str = "",
) -> EvaluationRecord:
    protocol = Protocol.from_dict({k: v for k, v in fields.items() if k != "track"})
    teacher = teacher_for(protocol, real, registry, data_fingerprint, note)
    result = evaluate_synthetic(
        condensed.synthetic, real, protocol, seed, device, registry.architecture(protocol.arch), teacher=teacher
    )
    if not all(math.isfinite(a) for a in result.test_accs):
        raise DcbenchError(f"evaluation on {protocol.arch} gave a non-finite accuracy")
    note(f"evaluated on {protocol.name}: mean test accuracy {100 * result.mean:.2f}% in {result.seconds:.1f}s")
    return EvaluationRecord(
        arch=protocol.arch,
        track=str(fields.get("track", "")),
        teacher=result.teacher,
        protocol=result.protocol,
        seconds=result.seconds,
        train_seconds=result.train_seconds,
        test_seconds=result.test_seconds,
        labels_used=result.labels_used,
        test_accs=result.test_accs,
        train_accs=result.train_accs,
        eval_seeds=result.eval_seeds,
    )


def teacher_for(
    protocol: Protocol,
    real: RealDataset,
    registry: Registry,
    data_fingerprint: str = "",
    note: Callable[[str], None] | None = None,
) -> Teacher | None:
    """The teacher of a teacher track (from the artifact store: trained there the first time),
    None for the other tracks."""
    if protocol.labels != "teacher":
        return None
    recipe = teacher_recipe(protocol)
    teacher = load_teacher(real, recipe, registry.architecture(recipe.arch), data_fingerprint, log=note)
    if note is not None:
        note(f"teacher {teacher.record['key']}: {100 * teacher.record['test_acc']:.2f}% test accuracy")
    return teacher


def _data_root_recorded(data_root: str | None) -> str | None:
    """Where the data was looked for: --data-root, else $DCBENCH_DATA, else None (the defaults)."""
    root = data_root or os.environ.get("DCBENCH_DATA")
    return str(Path(root).resolve()) if root else None


def _data_intact(real: RealDataset, expected: str) -> bool:
    """Whether the shared real dataset still has its planned content; when not, forget it so that
    the next cell reloads it (one method cannot corrupt another's results)."""
    found = shared.fingerprint_of(real)
    if found != expected:
        shared.forget_data()
    return found == expected
