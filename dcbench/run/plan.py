"""A spec expanded into cells: one (method, dataset, IPC, seed) condensation and its evaluations on
every evaluation architecture, validated against the installed plugins before any work starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from dcbench.data.paths import DatasetSource, resolve_dataset_entry
from dcbench.evaluation import Protocol
from dcbench.host.devices import resolve_device
from dcbench.host.errors import DcbenchError
from dcbench.method.checkpoint import checkpoint_identity
from dcbench.method.condense import config_hash
from dcbench.method.contract import Method, config_to_dict
from dcbench.plugins import Registry
from dcbench.results.identity import CellIdentity, protocol_hash
from dcbench.results.record import CellKey, cell_id
from dcbench.run.shared import dataset_fingerprint, loaded_dataset
from dcbench.run.spec import PROTOCOL_FIELDS, Spec


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
    reference_only: bool = False  # the method's flag (Method.reference_only), recorded with the cell
    method_label: str = ""  # the method's table name (Method.label), recorded with the cell
    init_stream: str = ""  # Method.initial_stream(config): what its initial images share ("" none)
    coreset: bool = False  # Method.coreset: a selection of real images, listed apart in tables
    dataset_label: str = ""  # DatasetSpec.label: the dataset's name in tables
    zca: bool = False  # the data is ZCA-whitened (Spec.zca), for condensation and evaluation
    deterministic: bool = False  # torch.use_deterministic_algorithms for the cell's work, recorded with it

    @property
    def id(self) -> str:
        return cell_id(self.method, self.dataset, self.ipc, self.seed)

    def key(self) -> CellKey:
        return CellKey(self.id, self.method, self.dataset, self.ipc, self.seed, self.preset)

    def identity(self) -> dict[str, Any]:
        """The cell as observers and ``metrics.json`` name it."""
        return dataclasses.asdict(self.key())

    def checkpoint_identity(self, method: Method) -> dict[str, Any]:
        """What a checkpoint of this cell must have been written by."""
        return checkpoint_identity(
            method.name, method.version, self.fingerprint["config_hash"], self.dataset, self.ipc, self.seed, self.zca
        )


def default_methods(registry: Registry) -> list[str]:
    """What a spec without a methods list runs: the methods dcbench ships that are not opt-in, which
    are the committed default reference's (results/reference/fashion-mnist-quick). A method from
    another distribution runs only where it is named, so installing it cannot change the default grid."""
    return sorted(
        n for n, m in registry.methods.items() if registry.shipped("method", n) and not (m.reference_only or m.opt_in)
    )


def left_out_of_default(registry: Registry) -> list[str]:
    """The installed methods (not reference lines) a default grid leaves out, each with why."""
    default = set(default_methods(registry))
    why = {
        n: "opt-in" if registry.shipped("method", n) else f"from plugin {registry.owners.get(('method', n))!r}"
        for n in registry.methods
    }
    return [f"{n} ({why[n]})" for n, m in sorted(registry.methods.items()) if n not in default and not m.reference_only]


def plan_cells(
    spec: Spec, registry: Registry, data_root: str | None, device: str, tracking: dict[str, str] | None = None
) -> list[Cell]:
    """The spec's grid, validated against the installed plugins before any work starts."""
    methods = spec.methods or default_methods(registry)
    spec.check_cell_count(len(methods))  # the default methods are known only here
    soft_tracks = [name or "the spec's" for name, v in spec.track_values().items() if v["eval_labels"] != "hard"]
    if soft_tracks and "random" not in methods and "random" in registry.methods:
        raise DcbenchError(
            f"track {soft_tracks[0]} trains on soft labels, so the grid needs `random` under the same recipe "
            '(the baseline soft labels are measured against); add "random" to the spec\'s methods'
        )
    for name in spec.overrides:
        if name not in methods:
            raise DcbenchError(f"spec overrides method {name!r}, which is not in the spec's methods")
    datasets = [resolve_dataset_entry(entry) for entry in spec.datasets]
    for name, source in datasets:
        if source is None:
            registry.dataset(name)
            continue
        if name in registry.datasets:
            raise DcbenchError(
                f"spec dataset {source.path} is named {name!r}, like a registered dataset; "
                'give it another name: { path = "...", name = "..." }'
            )
        # Read (decode, check, cache) a folder before any cell runs; its content joins the identity.
        loaded_dataset(name, data_root, source)
    for name in spec.eval_archs:
        registry.architecture(name)
    threads = spec.threads or torch.get_num_threads()
    device_type = resolve_device(device).type  # where the cells run: whether auto compiles there
    if not methods:
        raise DcbenchError(
            "the spec runs dcbench's default methods, and no method plugin is loaded that has them; name a "
            "method, or see `dcbench plugins` for the plugins that failed to load"
        )
    cells = []
    for method_name in methods:
        method = registry.method(method_name)
        overrides = spec.overrides.get(method_name, {})
        made = method.make_config(spec.preset, overrides)
        config = config_to_dict(made)
        init_stream = method.initial_stream(made)
        for dataset, source in datasets:
            protocols = _protocols(spec, method, dataset, device_type)
            fingerprint = CellIdentity(
                method_name=method_name,
                method_version=method.version,
                plugin_version=registry.plugin_version(method_name),
                config_hash=config_hash(method_name, config, spec.precision),
                protocol_hash=protocol_hash(protocols),
                data_fingerprint=dataset_fingerprint(dataset, data_root, source, spec.zca),
                precision=spec.precision,
            ).to_dict()
            for ipc in spec.ipcs:
                for seed in spec.seeds:
                    cells.append(
                        Cell(
                            method_name,
                            dataset,
                            ipc,
                            seed,
                            spec.preset,
                            overrides,
                            protocols,
                            fingerprint,
                            data_root,
                            device,
                            threads,
                            spec.precision,
                            source,
                            checkpoint_every=spec.checkpoint_every,
                            tracking=dict(tracking or {}),
                            reference_only=method.reference_only,
                            method_label=method.label or method_name,
                            init_stream=init_stream,
                            coreset=method.coreset,
                            dataset_label=_dataset_label(registry, dataset),
                            zca=spec.zca,
                            deterministic=spec.deterministic,
                        )
                    )
    return cells


def _dataset_label(registry: Registry, dataset: str) -> str:
    spec = registry.datasets.get(dataset)
    return (spec.label if spec is not None else "") or dataset


def _protocols(spec: Spec, method: Method, dataset: str, device_type: str) -> list[dict[str, Any]]:
    """The evaluation protocol of each track and evaluation architecture, as plain fields (a
    named track's with its ``track`` name: the report's column); compiled where ``spec.compile``
    says so for its budget on ``device_type``."""
    protocols = []
    for track, values in spec.track_values().items():
        augmentation = values["eval_augmentation"]
        native = method.native_evaluation(dataset) if augmentation == "native" else None
        extra: dict[str, Any] = {
            PROTOCOL_FIELDS[key]: value for key, value in values.items() if key in PROTOCOL_FIELDS and value is not None
        }
        if values["eval_labels"] != "hard":  # the default leaves the fields out, as protocols recorded before them
            extra.update(
                labels=values["eval_labels"],
                label_loss=values["eval_label_loss"],
                temperature=values["eval_temperature"],
            )
        extra.update(mixing=values["eval_mixing"], zca=spec.zca)
        for arch in spec.eval_archs:
            fields = (
                Protocol.for_preset(
                    spec.preset, dataset, augmentation, arch, native=native, precision=spec.precision, **extra
                )
                .with_compile(spec.compile, device_type)
                .to_dict()
            )
            protocols.append({**fields, "track": track} if track else fields)
    return protocols
