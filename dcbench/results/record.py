"""A cell's record, ``runs/<cell-id>/metrics.json``: one definition, from which the record is built
(by the cell pipeline), validated (by the store, before a finished cell is trusted) and flattened
(into the rows of ``runs.csv``).

The dataclasses below are that definition. :data:`METRICS_SCHEMA`, the JSON schema a stored record
is checked against, is derived from their fields: a field without a default is required, and its
annotation gives its JSON type. A record also carries fields the schema does not constrain
(environment, timings, the method's own metrics): they are written and read back as they are.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import jsonschema

from dcbench.results.identity import IDENTITY_COLUMN, CellIdentity, identity_of_metrics

METRICS_FILE = "metrics.json"
MAX_MEASURE = 1e9  # the largest seconds or MB a record may hold
STATUSES = ("done", "failed")


def now() -> str:
    """A record's timestamp: UTC, to the second, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cell_id(method: str, dataset: str, ipc: int, seed: int) -> str:
    """The one cell-id format: ``<method>-<dataset>-ipc<ipc>-s<seed>`` (a directory name in the store)."""
    return f"{method}-{dataset}-ipc{ipc}-s{seed}"


@dataclass(frozen=True)
class CellKey:
    """Which cell a record is of (``metrics.json``'s ``cell``)."""

    id: str
    method: str
    dataset: str
    ipc: int
    seed: int
    preset: str


@dataclass(frozen=True)
class EvaluationRecord:
    """One protocol's evaluation of the cell's set: K models' accuracies, their seeds, seconds."""

    arch: str
    protocol: dict[str, Any]
    seconds: float
    test_accs: list[float]
    train_accs: list[float]
    eval_seeds: list[int]
    train_seconds: float | None = None
    test_seconds: float | None = None
    labels_used: str = "hard"  # "soft": the set's own soft labels; "teacher": a teacher's
    track: str = ""  # the spec's name of the evaluation track ("": the only one)
    teacher: dict[str, Any] | None = None  # the teacher that relabelled (key, arch, epochs, test_acc, cost)


@dataclass
class CellRecord:
    """Everything ``metrics.json`` holds. ``status`` is ``done`` (then ``fingerprint``,
    ``method_version``, ``condense_s`` and ``evaluations`` are set) or ``failed`` (then ``reason``)."""

    cell: CellKey
    status: Literal["done", "failed"]
    # what the method is (from its class): a reference line is shown, never ranked or tested
    reference_only: bool = False
    method_label: str | None = None
    # the design it shares with other methods' cells of its seed (Method.initial_stream)
    init_stream: str = ""
    # how tables group and name it (Method.coreset, DatasetSpec.label)
    coreset: bool = False
    dataset_label: str | None = None
    # what the numbers depend on and where they were made
    fingerprint: dict[str, Any] | None = None
    device: str | None = None
    device_name: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    deterministic: bool = False  # torch.use_deterministic_algorithms was on for the cell's work
    dcbench_version: str | None = None
    torch_version: str | None = None
    platform: str | None = None
    data_root: str | None = None
    started: str | None = None
    finished: str | None = None
    # a finished cell
    method_version: str | None = None
    plugin_version: str | None = None
    condense_s: float | None = None
    method_metrics: dict[str, Any] = field(default_factory=dict)
    # shared artifacts the cell used: kind, key, built_here, build_s (one-off), peak_rss_mb, bytes
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    resumed_at_iteration: int | None = None
    peak_rss_mb: float | None = None
    peak_rss_scope: str | None = None
    cuda_peak_mb: float | None = None
    config: dict[str, Any] | None = None
    synthetic_hash: str | None = None
    evaluations: list[EvaluationRecord] = field(default_factory=list)
    # a failed cell
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as ``metrics.json`` holds it (the fields of its status only)."""
        data = dataclasses.asdict(self)
        if self.status == "failed":
            for name in _DONE_ONLY:
                data.pop(name, None)
        else:
            data.pop("reason", None)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRecord:
        """A record from a parsed ``metrics.json`` that passed :func:`record_problem`; unknown keys
        (written by a later dcbench) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["cell"] = CellKey(**{k: data["cell"][k] for k in _names(CellKey)})
        evaluation_fields = _names(EvaluationRecord)
        values["evaluations"] = [
            EvaluationRecord(**{k: ev[k] for k in evaluation_fields if k in ev}) for ev in data.get("evaluations") or []
        ]
        return cls(**values)

    def identity(self) -> CellIdentity:
        """What the cell's numbers depend on (see :func:`dcbench.results.identity.identity_of_metrics`)."""
        return identity_of_metrics(self.to_json())

    def rows(self) -> list[dict[str, Any]]:
        """The ``runs.csv`` rows of a finished cell: one per evaluation model."""
        identity = self.identity()
        shared = {
            **identity.to_dict(),
            IDENTITY_COLUMN: identity.key,
            "run_id": self.cell.id,
            "method": self.cell.method,
            "method_name": self.cell.method,
            "reference_only": self.reference_only,
            "method_label": self.method_label or self.cell.method,
            "init_stream": self.init_stream,
            "coreset": self.coreset,
            "dataset_label": self.dataset_label or self.cell.dataset,
            "dataset": self.cell.dataset,
            "ipc": self.cell.ipc,
            "synth_seed": self.cell.seed,
            "condense_s": self.condense_s,
            "artifact_s": _artifact_seconds(self.artifacts),
            "artifacts": ";".join(f"{a.get('kind')}:{a.get('key')}" for a in self.artifacts),
            "peak_rss_mb": self.peak_rss_mb,
            "cuda_peak_mb": self.cuda_peak_mb,
            "synth_iters": (self.method_metrics or {}).get("iterations"),
            "preset": self.cell.preset,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "deterministic": self.deterministic,
            "dcbench_version": self.dcbench_version,
            "data_root": self.data_root,
        }
        rows = []
        for ev in self.evaluations:
            for k, (test_acc, train_acc, eval_seed) in enumerate(zip(ev.test_accs, ev.train_accs, ev.eval_seeds)):
                rows.append(
                    {
                        **shared,
                        "eval_arch": ev.arch,
                        "eval_seed": eval_seed,
                        "eval_index": k,
                        "test_acc": test_acc,
                        "train_acc": train_acc,
                        "eval_s": ev.seconds,
                        "protocol": ev.protocol["name"],
                        "eval_epochs": ev.protocol["epochs"],
                        "eval_augmentation": ev.protocol["augmentation"],
                        "eval_models": ev.protocol["models"],
                        "eval_compiled": bool(ev.protocol.get("compiled", False)),
                        **_track_columns(ev),
                    }
                )
        return rows


def _track_columns(ev: EvaluationRecord) -> dict[str, Any]:
    """What runs.csv says of an evaluation's track: its name, labels, loss and T, mixing, ZCA and
    the teacher (its artifact key and test accuracy)."""
    protocol, teacher = ev.protocol, ev.teacher or {}
    return {
        "track": ev.track,
        "eval_labels": protocol.get("labels", "hard"),
        "labels_used": ev.labels_used,
        "eval_label_loss": protocol.get("label_loss", ""),
        "eval_temperature": protocol.get("temperature"),
        "eval_mixing": protocol.get("mixing", "none"),
        "zca": bool(protocol.get("zca", False)),
        "teacher": teacher.get("key", ""),
        "teacher_acc": teacher.get("test_acc"),
        "teacher_build_s": teacher.get("build_s"),
    }


def _artifact_seconds(artifacts: list[dict[str, Any]]) -> float:
    """The one-off build seconds of the artifacts a cell used (whoever built them)."""
    return round(sum(float(a.get("build_s") or 0.0) for a in artifacts), 3)


_DONE_ONLY = (
    "method_version",
    "plugin_version",
    "condense_s",
    "method_metrics",
    "artifacts",
    "resumed_at_iteration",
    "peak_rss_mb",
    "peak_rss_scope",
    "cuda_peak_mb",
    "config",
    "synthetic_hash",
    "evaluations",
)
#: required when the status is "done": what the tables and the identity check read
_REQUIRED_WHEN_DONE = ("fingerprint", "method_version", "condense_s", "evaluations")


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# --- the schema, derived from the dataclasses ----------------------------------------------------


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema of one annotated field (the annotation as the dataclass declares it)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [_json_type(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        if type(None) in args:
            return {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _json_type(args[0]) if args else {}}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(annotation):
        return _object_schema(annotation)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return {"type": simple[annotation]} if annotation in simple else {}


def _object_schema(cls: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    return {"type": "object", "required": required, "properties": {f.name: _json_type(hints[f.name]) for f in fields}}


def _metrics_schema() -> dict[str, Any]:
    schema = _object_schema(CellRecord)
    properties = schema["properties"]
    # values a record of a finished cell must hold, beyond their types
    properties["cell"]["properties"]["id"]["minLength"] = 1
    for key in ("ipc", "seed"):
        properties["cell"]["properties"][key]["minimum"] = 0
    evaluation = properties["evaluations"]["items"]
    for key in ("test_accs", "train_accs", "eval_seeds"):
        evaluation["properties"][key]["minItems"] = 1
    for key in ("test_accs", "train_accs"):  # fractions: -5 or 1e308 is damage, never a result
        evaluation["properties"][key]["items"].update(minimum=0, maximum=1)
    # seconds and memory: non-negative and below a bound no run reaches (~30 years, 1 PB)
    for schema_of in (
        evaluation["properties"]["seconds"],
        evaluation["properties"]["train_seconds"]["anyOf"][0],
        evaluation["properties"]["test_seconds"]["anyOf"][0],
        *(properties[key]["anyOf"][0] for key in ("condense_s", "peak_rss_mb", "cuda_peak_mb")),
    ):
        schema_of.update(minimum=0, maximum=MAX_MEASURE)
    evaluation["properties"]["protocol"]["required"] = ["name", "epochs", "augmentation", "models"]
    # the status decides which part of the record is required
    done = {
        "required": list(_REQUIRED_WHEN_DONE),
        "properties": {"fingerprint": {"type": "object"}, "evaluations": {"minItems": 1}},
    }
    failed = {"required": ["reason"], "properties": {"reason": {"type": "string"}}}
    return {**schema, "if": {"properties": {"status": {"const": "done"}}}, "then": done, "else": failed}


#: what a stored metrics.json is checked against before its cell counts as finished
METRICS_SCHEMA = _metrics_schema()
_VALIDATOR = jsonschema.Draft202012Validator(METRICS_SCHEMA)


def record_problem(data: Any, directory_id: str) -> str | None:
    """Why a parsed ``metrics.json`` cannot be used (None when it can): schema, then consistency."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(data))
    if error is not None:
        return f"{METRICS_FILE} {error.json_path}: {error.message}"
    if data["cell"]["id"] != directory_id:
        return f"{METRICS_FILE} belongs to cell {data['cell']['id']!r}, not to its directory {directory_id!r}"
    cell = data["cell"]
    named = cell_id(cell["method"], cell["dataset"], cell["ipc"], cell["seed"])
    if cell["id"] != named:  # a hand-made or stray directory would become a method of its own
        return f"{METRICS_FILE} names cell {cell['id']!r}, but its method, dataset, IPC and seed make {named!r}"
    for ev in data.get("evaluations", []) if data["status"] == "done" else []:
        if not len(ev["test_accs"]) == len(ev["train_accs"]) == len(ev["eval_seeds"]):
            return f"{METRICS_FILE}: evaluation on {ev['arch']} has lists of different lengths"
        if not all(math.isfinite(a) for a in ev["test_accs"]):
            return f"{METRICS_FILE}: evaluation on {ev['arch']} has a non-finite accuracy"
    return None
