"""A benchmark spec: which methods, datasets, IPCs, seeds and evaluation architectures to run.

A spec is a TOML file (or the built-in default). Example::

    name = "my-grid"
    preset = "quick"                  # smoke | quick | paper: chooses every unset knob
    methods = ["random", "dm", "cafe"] # leave out for the default reference's: dcbench's own methods, not
                                       # the opt-in ones (whole, mtt, ...) nor another plugin's
    datasets = ["fashion-mnist"]      # names, or your own data by path (relative to this file):
                                      # "./my_images" or { path = "./my_images", name = "mydata", size = 32 }
    ipcs = [1, 10]
    seeds = [0, 1, 2, 3, 4, 5]         # shared by all methods (the default)
    eval_archs = ["ConvNet"]
    eval_models = 1                    # default: the preset's
    eval_epochs = 150                  # default: the preset's
    eval_augmentation = "none"         # none | dsa | dc | autoaugment | randaugment | native (each
                                       # method's own paper's)
    eval_labels = "hard"               # hard | set (the set's soft labels where it has them) | teacher
                                       # (a network trained on the whole training set relabels batches)
    eval_label_loss = "soft_ce"        # with soft labels: soft_ce | kl
    eval_temperature = 1.0             # with soft labels: the softmax temperature
    eval_teacher_epochs = 10           # with eval_labels = "teacher": its training epochs
    eval_teacher_arch = "ConvNet"      # with eval_labels = "teacher" (default: the evaluation's)
    eval_mixing = "none"               # none | mixup | cutmix (eval_mix_alpha: Beta's alpha, 1.0)
    eval_lr = 0.01                     # and eval_momentum, eval_weight_decay, eval_batch_size,
                                       # eval_dsa_strategy: the protocol's recipe (default: the reference's)
    zca = false                        # ZCA-whiten the data (MTT/DATM's preprocessing, eps 0.1) for
                                       # condensation and evaluation alike
    precision = "fp32"                 # fp32 | bf16: torch.autocast for condensation and evaluation
    deterministic = false              # torch.use_deterministic_algorithms for each cell (recorded)
    compile = "auto"                   # auto | on | off: torch.compile of the evaluation (auto: where it
                                       # pays, a CPU at the paper budget; compiled is its own protocol)
    threads = 2                        # torch CPU threads per cell (default: the cores / workers)
    workers = 2                        # cells at once in worker processes (default: one per core on a
                                       # CPU, 1 on a GPU; see dcbench.run.grid.plan_workers)
    checkpoint_every = "10m"           # checkpoints inside a cell: iterations (500), a time (10m) or "off"
    gpus_per_cell = 0.5                # Ray executor: GPUs per cell (default 1 when the cluster has GPUs)

    [tracking]                         # tracking plugins, each claims its name (see dcbench_tracking_setting)
    tensorboard = true                 # TensorBoard event files per cell: true (<results>/tensorboard) or a dir
                                       # (a top-level `tensorboard = ...` is read as this)

    [overrides.dm]                     # method settings, as `dcbench condense --set`
    iterations = 200

    [tracks.hard]                      # evaluation tracks: every set is evaluated under each (any
    [tracks.teacher]                   # eval_* key; the top-level ones are every track's defaults)
    eval_labels = "teacher"
    eval_label_loss = "kl"
    eval_temperature = 4.0
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dcbench.data.paths import anchor_dataset_entry, resolve_dataset_entry
from dcbench.evaluation import EVAL_AUGMENTATIONS, LABEL_LOSSES, LABEL_SOURCES
from dcbench.host.compat import tomllib
from dcbench.host.errors import DcbenchError
from dcbench.host.files import read_record_text
from dcbench.host.runtime import PRECISIONS
from dcbench.host.schema import Flag, Integer, ListOf, Number, OneOf, Optional, Rule, Table, Text, check_fields
from dcbench.method.checkpoint import CheckpointPolicy
from dcbench.method.contract import PRESETS
from dcbench.method.seeding import SEED
from dcbench.nn.compiling import COMPILE_MODES
from dcbench.nn.mixing import MIXINGS

SPEC_AUGMENTATIONS = (*EVAL_AUGMENTATIONS, "native")
TRACK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
#: the most cells one spec may expand to: beyond it, planning alone takes minutes before the
#: first line of output, and such a grid is meant to be several specs (results directories)
MAX_CELLS = 20_000
SPEC_FIX = "a spec is a few KB of TOML: pass the right file"


# Every spec key and the one shape it accepts (bool is not int, a string is not a list, lists are
# non-empty and without repeats); a new key is one line here plus its field in Spec.
class DatasetEntry(Rule):
    """A dataset name, a path, or a table ``{ path = "...", name = "...", size = 32 }`` (whose keys
    :func:`dcbench.data.paths.resolve_dataset_entry` checks)."""

    expected = 'a name, a path or a table { path = "...", name = "..." }'

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, str) and bool(value.strip())) or isinstance(value, dict)


class TrackingValue(Rule):
    """``true`` (the tracking plugin's default), ``false`` (off) or a non-empty string (a directory,
    a run name: whatever the plugin takes)."""

    expected = "true, false or a non-empty string (a directory)"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool) or (isinstance(value, str) and bool(value.strip()))


SPEC_SCHEMA: dict[str, Rule] = {
    "name": Text(),
    "preset": OneOf(PRESETS),
    "methods": Optional(ListOf(Text(), if_empty="leave the key out to run the default methods")),
    "datasets": ListOf(DatasetEntry()),
    "ipcs": ListOf(Integer(minimum=1)),
    "seeds": ListOf(SEED),
    "eval_archs": ListOf(Text()),
    "eval_models": Optional(Integer(minimum=1)),
    "eval_epochs": Optional(Integer(minimum=0)),
    "eval_augmentation": OneOf(SPEC_AUGMENTATIONS),
    "eval_labels": OneOf(LABEL_SOURCES),
    "eval_label_loss": OneOf(LABEL_LOSSES),
    "eval_temperature": Number(positive=True),
    "eval_teacher_epochs": Optional(Integer(minimum=1)),
    "eval_teacher_arch": Optional(Text()),
    "eval_mixing": OneOf(MIXINGS),
    "eval_mix_alpha": Optional(Number(positive=True)),
    "eval_lr": Optional(Number(positive=True)),
    "eval_momentum": Optional(Number()),
    "eval_weight_decay": Optional(Number()),
    "eval_batch_size": Optional(Integer(minimum=1)),
    "eval_dsa_strategy": Optional(Text()),
    "zca": Flag(),
    "tracks": Table(values=Table()),  # [tracks.NAME] eval_* = value, checked against EVAL_SCHEMA
    "overrides": Table(values=Table()),  # [overrides.METHOD] key = value, checked by the method's config
    "precision": OneOf(PRECISIONS),
    "deterministic": Flag(),
    "compile": OneOf(COMPILE_MODES),
    "threads": Optional(Integer(minimum=1)),
    "workers": Optional(Integer(minimum=1)),
    "tracking": Table(values=TrackingValue()),
}
#: the keys a track may set: the evaluation's (each with the rule it has at the top level)
EVAL_SCHEMA = {k: v for k, v in SPEC_SCHEMA.items() if k.startswith("eval_") and k != "eval_archs"}
#: spec field -> Protocol field, for the recipe keys passed through as they are
PROTOCOL_FIELDS = {
    "eval_models": "models",
    "eval_epochs": "epochs",
    "eval_teacher_epochs": "teacher_epochs",
    "eval_teacher_arch": "teacher_arch",
    "eval_mix_alpha": "mix_alpha",
    "eval_lr": "lr",
    "eval_momentum": "momentum",
    "eval_weight_decay": "weight_decay",
    "eval_batch_size": "batch_size",
    "eval_dsa_strategy": "dsa_strategy",
}


@dataclass
class Spec:
    name: str = "fashion-mnist-quick"
    preset: str = "quick"
    methods: list[str] | None = None  # None: dcbench.run.plan.default_methods
    datasets: list[str | dict[str, Any]] = field(default_factory=lambda: ["fashion-mnist"])
    ipcs: list[int] = field(default_factory=lambda: [1, 10])
    # six seeds: the fewest at which the default grid's paired comparisons at IPC 10 can detect
    # the 3-5 point gains over random after Holm (README, "Statistics")
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])
    eval_archs: list[str] = field(default_factory=lambda: ["ConvNet"])
    eval_models: int | None = None
    eval_epochs: int | None = None
    eval_augmentation: str = "none"
    eval_labels: str = "hard"
    eval_label_loss: str = "soft_ce"
    eval_temperature: float = 1.0
    eval_teacher_epochs: int | None = None
    eval_teacher_arch: str | None = None
    eval_mixing: str = "none"
    eval_mix_alpha: float | None = None
    eval_lr: float | None = None
    eval_momentum: float | None = None
    eval_weight_decay: float | None = None
    eval_batch_size: int | None = None
    eval_dsa_strategy: str | None = None
    zca: bool = False
    #: evaluation tracks by name: each a table of eval_* values over the top-level ones ({}: one track)
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    precision: str = "fp32"
    deterministic: bool = False
    compile: str = "auto"  # dcbench.nn.compiling.resolve_compile, per cell's device and budget
    threads: int | None = None
    workers: int | None = None  # None: dcbench.run.grid.plan_workers decides
    checkpoint_every: str | int = "10m"
    gpus_per_cell: float | None = None  # None: 1 when the Ray cluster has GPUs, else 0
    tracking: dict[str, bool | str] = field(default_factory=dict)  # name -> true or a value, per plugin
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check_cell_count(self, methods: int | None = None) -> None:
        """Refuse a grid of more than :data:`MAX_CELLS` cells from the lengths of its axes alone,
        before any of them is checked or expanded (``methods``: how many the grid runs, when
        the spec leaves them to the default; a value that is no list counts 1: its type error
        comes from :meth:`validate`)."""

        def length(value: Any) -> int:
            return len(value) if isinstance(value, (list, tuple)) else 1

        counts = {
            "methods": length(self.methods) if methods is None else methods,
            "datasets": length(self.datasets),
            "IPCs": length(self.ipcs),
            "seeds": length(self.seeds),
        }
        cells = math.prod(counts.values())
        if cells > MAX_CELLS:
            axes = " x ".join(f"{n:,} {axis}" for axis, n in counts.items())
            raise DcbenchError(
                f"the spec expands to {cells:,} cells ({axes}), more than the {MAX_CELLS:,} one run "
                f"plans; split it into several specs (e.g. by method or seed), each under {MAX_CELLS:,} cells"
            )

    def validate(self) -> None:
        """One-line errors naming the key and the type it expects (see :data:`SPEC_SCHEMA`)."""
        self.check_cell_count()  # first: the checks below take time per listed value
        check_fields(asdict(self), SPEC_SCHEMA, "spec")
        names = [resolve_dataset_entry(entry)[0] for entry in self.datasets]
        for name in names:
            if names.count(name) > 1:
                raise DcbenchError(f'spec datasets name {name!r} twice; give each path its own name = "..."')
        for track, values in self.tracks.items():
            if not TRACK_NAME.match(track):
                raise DcbenchError(
                    f"spec track name {track!r}: use lower-case letters, digits, '-' and '_' (at most 32)"
                )
            unknown = sorted(set(values) - set(EVAL_SCHEMA))
            if unknown:
                raise DcbenchError(
                    f"spec [tracks.{track}] has no key {unknown[0]!r}; a track sets eval_* keys: "
                    f"{', '.join(sorted(EVAL_SCHEMA))}"
                )
            check_fields(values, EVAL_SCHEMA, f"spec [tracks.{track}]")
        CheckpointPolicy.parse(self.checkpoint_every)
        validate_gpus_per_cell(self.gpus_per_cell)
        if "/" in self.name or "\x00" in self.name or self.name.startswith("."):
            raise DcbenchError(f"spec name {self.name!r} must be a plain directory name")

    def track_values(self) -> dict[str, dict[str, Any]]:
        """Each track's eval_* values (the top-level ones, then the track's); one unnamed track
        ("") when the spec names none."""
        base = {key: getattr(self, key) for key in EVAL_SCHEMA}
        if not self.tracks:
            return {"": base}
        return {name: {**base, **values} for name, values in self.tracks.items()}

    def to_toml(self) -> str:
        """The resolved spec as TOML (written to the results directory)."""
        lines = []
        data = asdict(self)
        overrides = data.pop("overrides")
        tracking = data.pop("tracking")
        tracks = data.pop("tracks")
        # settings added later are left out at their defaults, so older resolved specs read the same
        if self.eval_labels == "hard" and not tracks:
            for key in ("eval_labels", "eval_label_loss", "eval_temperature"):
                data.pop(key)
        for key, default in (("eval_mixing", "none"), ("zca", False), ("deterministic", False), ("compile", "auto")):
            if data[key] == default:
                data.pop(key)
        for key, value in data.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        if tracking:
            lines.append("\n[tracking]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sorted(tracking.items())]
        for method, values in sorted(overrides.items()):
            lines.append(f"\n[overrides.{_toml_key(method)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sorted(values.items())]
        for track, values in tracks.items():  # in the spec's order: the report's
            lines.append(f"\n[tracks.{_toml_key(track)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items()]
        return "\n".join(lines) + "\n"


def validate_gpus_per_cell(value: Any) -> None:
    """Ray schedules a fraction of a GPU (0.25: four cells share one) or whole GPUs."""
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value >= 0
        or (value > 1 and value != int(value))
    ):
        raise DcbenchError(f"gpus_per_cell must be a fraction in [0, 1] or a whole number of GPUs, got {value!r}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # a JSON string is a TOML basic string once DEL, which JSON leaves raw, is escaped too
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _toml_key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def load_spec(path: Path | None, preset: str | None = None) -> Spec:
    """Read a TOML spec (or take the default one) and apply a ``--preset`` override."""
    values: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise DcbenchError(f"spec file {path} not found; pass a TOML file or no spec for the default benchmark")
        try:
            values = tomllib.loads(read_record_text(path, follow=True, what="a spec", fix=SPEC_FIX))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DcbenchError(f"spec file {path} is not valid TOML ({exc}); fix the line it names") from None
        except OSError as exc:
            raise DcbenchError(f"spec file {path} cannot be read ({exc.strerror}); check its permissions") from None
        values.setdefault("name", path.stem)
        if isinstance(values.get("datasets"), list):
            values["datasets"] = [anchor_dataset_entry(entry, path.parent) for entry in values["datasets"]]
    if "tensorboard" in values:  # the key from before [tracking]: the same request
        tracking = values.setdefault("tracking", {})
        if isinstance(tracking, dict):
            tracking.setdefault("tensorboard", values.pop("tensorboard"))
    known = set(Spec.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise DcbenchError(f"spec has no field {unknown[0]!r}; fields are {', '.join(sorted(known))}")
    spec = Spec(**values)
    if preset is not None:
        if path is None:
            spec.name = f"fashion-mnist-{preset}"
        spec.preset = preset
    spec.validate()
    return spec
