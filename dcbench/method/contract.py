"""What a condensation method is: a name, a config dataclass with presets, and ``condense``.

A plugin registers an instance of a :class:`Method` subclass through
``dcbench_register_methods(register)``. The algorithm itself stays a plain class or function that
can be tested without pluggy; the method object only adapts it to the host.

Presets only choose values of the config: ``smoke`` (tests, seconds), ``quick`` (a CPU, minutes)
and ``paper`` (the published settings, which are the dataclass defaults).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from dcbench.artifacts import Artifact, ArtifactStore, Builder
from dcbench.data.real import RealDataset
from dcbench.host.errors import DcbenchError
from dcbench.method.synthetic import SyntheticSet
from dcbench.nn.augment import parse_strategy
from dcbench.nn.networks import BUILTIN_ARCHITECTURES, Architecture, build_network

PRESETS = ("smoke", "quick", "paper")
#: what a method name may look like (it becomes a CLI word, a directory name and a package suffix)
METHOD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

AUGMENTATIONS = ("none", "dsa", "dc")
#: evaluation epochs of the reference scripts without / with augmentation (DC, DSA and DM)
REFERENCE_EPOCHS = {False: 300, True: 1000}


@dataclass(frozen=True)
class NativeEvaluation:
    """How a method's own paper evaluates its sets on one dataset (``Method.native_evaluation``).

    ``epochs`` None means the reference scripts' default: 300 without augmentation, 1000 with;
    ``dsa_strategy`` "" means the dataset's reference strategy string.
    """

    augmentation: str = "none"
    epochs: int | None = None
    dsa_strategy: str = ""

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise DcbenchError(
                f"unknown native evaluation augmentation {self.augmentation!r}; "
                f"choose one of {', '.join(AUGMENTATIONS)}"
            )
        if self.epochs is not None and self.epochs < 0:
            raise DcbenchError(f"native evaluation epochs must be >= 0, got {self.epochs}")
        parse_strategy(self.dsa_strategy)

    @property
    def paper_epochs(self) -> int:
        return self.epochs if self.epochs is not None else REFERENCE_EPOCHS[self.augmentation != "none"]


class NonFiniteLossError(DcbenchError):
    """A condensation loss became NaN or infinite: the cell fails with this reason."""


ProgressCallback = Callable[[int, int, Mapping[str, float]], None]


@dataclass(frozen=True)
class SavedState:
    """What an interrupted run of a cell left behind: the number of outer iterations it had
    finished, the method's state after them (tensors on the CPU, numbers, strings, lists and
    dicts) and the condensation seconds spent to get there."""

    iteration: int
    state: Mapping[str, Any]
    seconds: float = 0.0

    def restore_images(self, images: Tensor, optimizer: torch.optim.Optimizer) -> float:
        """Copy the saved ``images`` and image-optimiser state (momentum) back into a run that was
        built afresh; return the saved ``loss``. The common part of the built-in methods' resume:
        their random streams are per iteration, so nothing else is needed to continue."""
        with torch.no_grad():
            images.copy_(self.state["images"])
        optimizer.load_state_dict(self.state["optimizer"])
        return float(self.state["loss"])


class StateStore(Protocol):
    """Where a resumable method's state goes between runs (the host's ``checkpoint.pt``, or memory
    in the conformance kit). The store decides when a checkpoint is due: ``save`` is cheap to call
    every iteration and calls ``make_state`` only when it writes."""

    def load(self) -> SavedState | None: ...

    def save(self, step: int, total: int, make_state: Callable[[], Mapping[str, Any]]) -> None: ...


@dataclass
class CondenseContext:
    """What the host lends a method while it condenses: the device, the registered architectures,
    a progress callback, a dict for method-specific metrics (written to the cell's metrics.json),
    for a method with ``resumable = True`` a store for its checkpoints, and the artifact store
    for what cells share (expert trajectories, trained networks: :meth:`artifact`)."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    architectures: Mapping[str, Architecture] = field(
        default_factory=lambda: {a.name: a for a in BUILTIN_ARCHITECTURES}
    )
    on_progress: ProgressCallback | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    state_store: StateStore | None = None
    #: the state :meth:`resume` handed back (None: the run started at iteration 0)
    resumed: SavedState | None = None
    #: where shared artifacts are kept (None: ``$DCBENCH_ARTIFACTS`` or the dcbench cache)
    artifact_store: ArtifactStore | None = None
    #: the real data's content hash when the host knows it (else computed on first use)
    data_fingerprint: str = ""
    #: the cell's numeric precision ("fp32", "bf16"): part of an artifact's identity
    precision: str = "fp32"
    #: one line of progress for the cell's log (artifact builds)
    log: Callable[[str], None] | None = None
    #: the artifacts this condensation used (recorded with the cell)
    artifacts_used: list[dict[str, Any]] = field(default_factory=list)
    #: seconds spent in the artifact store (building an artifact, or waiting for another process
    #: to finish building it): a one-off cost, excluded from the condensation time
    artifact_store_s: float = 0.0

    def build_network(self, arch: str, real: RealDataset, generator: torch.Generator, **options: Any) -> nn.Module:
        """A freshly initialised ``arch`` for ``real``'s images, drawn from ``generator``, on the device."""
        if arch not in self.architectures:
            raise DcbenchError(f"unknown architecture {arch!r}; `dcbench list` shows the registered ones")
        return build_network(
            self.architectures[arch],
            real.channels,
            real.num_classes,
            real.image_size,
            generator,
            self.device,
            **options,
        )

    def progress(self, step: int, total: int, **metrics: float) -> None:
        """Report progress; call it once per outer iteration (it is cheap)."""
        if self.on_progress is not None:
            self.on_progress(step, total, metrics)

    def resume(self) -> SavedState | None:
        """The state an interrupted run of this cell saved, or None: start at iteration 0.

        Call it once, after building the initial state and before the first iteration; restore
        every tensor, optimiser and counter from ``state`` and continue at ``iteration``. Random
        numbers need no restoring because every stream is drawn per iteration
        (``make_generator(seed, purpose, it)``)."""
        if self.state_store is not None:
            self.resumed = self.state_store.load()
        return self.resumed

    def checkpoint(self, step: int, total: int, make_state: Callable[[], Mapping[str, Any]]) -> None:
        """Offer a checkpoint after outer iteration ``step`` of ``total``; call it once per
        iteration, after :meth:`progress`. ``make_state()`` returns everything needed to continue
        (images, optimiser ``state_dict()``, counters) as tensors, numbers, strings, lists and
        dicts; the host calls it only when a checkpoint is due."""
        if self.state_store is not None:
            self.state_store.save(step, total, make_state)

    def data_identity(self, real: RealDataset) -> str:
        """The content hash of ``real`` (for an artifact's identity)."""
        if not self.data_fingerprint:
            self.data_fingerprint = real.content_hash()
        return self.data_fingerprint

    def artifact(self, kind: str, identity: Mapping[str, Any], build: Builder) -> Artifact:
        """The shared artifact ``identity`` names (include :meth:`data_identity`, the recipe, the
        seed, :attr:`precision` and a version of your builder), built by ``build(directory,
        step_done)`` when no cell has built it yet. The time spent here (a build, or a wait for
        another process's build) is not the cell's: the build is recorded once, with the artifact."""
        store = self.artifact_store if self.artifact_store is not None else ArtifactStore()
        start = time.perf_counter()
        artifact, built = store.get(kind, identity, build, log=self.log)
        self.artifact_store_s += time.perf_counter() - start  # a build here, or a wait for another's
        self.artifacts_used.append(artifact.usage(built))
        return artifact

    def check_finite(self, loss: Tensor | float, step: int) -> None:
        """Stop the cell with a clear reason when the loss diverges, instead of saving garbage.
        Pass a float you already have where you can: a tensor costs a host sync on a GPU."""
        value = float(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss became {value} at iteration {step}; lower the image learning rate or check the data"
            )


class Method:
    """Base class of a condensation method plugin.

    Subclasses set ``name``, ``version``, ``description`` and ``config_class`` (a dataclass whose
    defaults are the paper settings and whose ``PRESETS`` class variable maps ``smoke``/``quick``
    to field overrides) and implement :meth:`condense`.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    config_class: ClassVar[type]
    #: augmentation the method's own paper evaluates with: "none", "dsa" or "dc"
    native_eval_augmentation: ClassVar[str] = "none"
    #: True when ``condense`` calls ``ctx.resume()`` and ``ctx.checkpoint(...)``, so that an
    #: interrupted cell continues from its last checkpoint (the conformance kit checks that the
    #: result is then bitwise the uninterrupted one); a method that leaves it False restarts
    resumable: ClassVar[bool] = False
    #: True when the output does not depend on the seed (e.g. a deterministic coreset such as
    #: herding): the conformance kit then skips its seed-sensitivity check
    seed_independent: ClassVar[bool] = False
    #: True for a reference line rather than a condensation (the whole training set): it may return
    #: more than IPC images per class, a grid runs it only when a spec names it, and the report
    #: shows it on top of a table, never ranked or tested
    reference_only: ClassVar[bool] = False
    #: True for a method a grid runs only where a spec names it (``dcbench run`` without a methods
    #: list leaves it out): one whose shared artifacts are too dear for the default grid, or one
    #: added after the committed default reference was made; reference lines are always opt-in
    opt_in: ClassVar[bool] = False
    #: how tables and legends name the method; empty: its ``name`` (e.g. "Whole dataset" for ``whole``)
    label: ClassVar[str] = ""
    #: True for a selection of real images (random, herding, K-Center): tables list coresets
    #: apart from the methods that synthesise images
    coreset: ClassVar[bool] = False

    def initial_stream(self, config: Any) -> str:
        """The seeded stream this method's initial images come from under ``config``, when it
        shares them with other methods: ``"init"`` for a method that starts from
        ``init_synthetic_images(real, ipc, "real", make_generator(seed, "init"))``, the images
        ``random`` selects at that seed. ``""`` (the default) for a method that starts from noise,
        a stream or a selection of its own. Recorded per cell; the report pairs two methods' cells
        of a seed only when they share it (and their evaluation networks)."""
        return ""

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """How the method's own paper evaluates its sets on ``dataset`` (``eval_augmentation =
        "native"``): augmentation, epochs under the ``paper`` preset and DSA strategy. The default
        is ``native_eval_augmentation`` with the reference scripts' epochs (300 without
        augmentation, 1000 with); override it when the paper's script differs by dataset."""
        return NativeEvaluation(self.native_eval_augmentation)

    def make_config(self, preset: str = "paper", overrides: Mapping[str, Any] | None = None) -> Any:
        return make_config(self.config_class, preset, overrides, owner=f"method {self.name!r}")

    def condense(self, real: RealDataset, ipc: int, config: Any, seed: int, ctx: CondenseContext) -> SyntheticSet:
        """Return ``ipc`` synthetic images per class of ``real``, made from ``seed`` only."""
        raise NotImplementedError


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check (and gently convert, e.g. int -> float) a config value against its annotation."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "bool": bool, "str": str}.get(annotation.split(" | ")[0], Any)
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, where)
            except DcbenchError:
                continue
        raise DcbenchError(f"{where}: {value!r} is not a valid value ({annotation})")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise DcbenchError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return origin(_coerce(v, inner, where) for v in value)
    if (
        annotation is float
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not math.isfinite(value)
    ):
        raise DcbenchError(f"{where}: expected a finite number, got {value!r}")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise DcbenchError(f"{where}: expected true or false, got {value!r}")
    if annotation in (int, float, str) and (not isinstance(value, annotation) or isinstance(value, bool)):
        raise DcbenchError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def make_config(
    config_class: type, preset: str = "paper", overrides: Mapping[str, Any] | None = None, owner: str = "config"
) -> Any:
    """Build ``config_class`` from its defaults, a preset and user overrides, validating each value."""
    if preset not in PRESETS:
        raise DcbenchError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(getattr(config_class, "PRESETS", {}).get(preset, {}))
    values.update(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DcbenchError(f"{owner} has no setting {unknown[0]!r}; its settings are {', '.join(sorted(fields))}")
    checked = {k: _coerce(v, hints.get(k, Any), f"{owner} setting {k!r}") for k, v in values.items()}
    config = config_class(**checked)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json_friendly(dataclasses.asdict(config))


def json_friendly(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_friendly(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_friendly(v) for v in value]
    return value


def class_major_labels(num_classes: int, ipc: int, device: torch.device | str = "cpu") -> Tensor:
    """Fixed hard labels [0]*ipc + [1]*ipc + ..., the reference's label layout."""
    return torch.arange(num_classes, device=device).repeat_interleave(ipc)


#: the stream every built-in method draws its real initial images from, the images ``random`` selects
SHARED_INIT_STREAM = "init"


def real_init_stream(init: str) -> str:
    """:meth:`Method.initial_stream` of a method whose ``init`` setting is ``"real"`` or
    ``"noise"`` and that draws from ``make_generator(seed, SHARED_INIT_STREAM)``."""
    return SHARED_INIT_STREAM if init == "real" else ""


def init_synthetic_images(real: RealDataset, ipc: int, init: str, generator: torch.Generator) -> Tensor:
    """Initial synthetic images, class-major: ``noise`` (standard normal) or ``real`` (random real
    images of each class, the reference's ``--init real``)."""
    if init == "real":
        if min(len(i) for i in real.indices_by_class) < ipc:
            raise DcbenchError(f"init 'real' needs {ipc} images per class, a class of {real.name} has fewer")
        images = torch.cat([real.sample_class(c, ipc, generator) for c in range(real.num_classes)])
        return images.detach().clone()
    if init == "noise":
        shape = (real.num_classes * ipc, real.channels, *real.image_size)
        return torch.randn(shape, generator=generator).to(real.device)
    raise DcbenchError(f"unknown init {init!r}; use 'noise' or 'real'")
