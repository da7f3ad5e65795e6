"""The evaluation protocol: how a synthetic set is judged, named and versioned.

Every field that changes an evaluation's numbers is a field here, and is in the protocol's name
and hash (:meth:`Protocol.to_dict`). Fields added after protocols were first recorded are left out
of the dict while they hold their default, so that a store written before them keeps its hashes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dcbench.data.zca import zca_name
from dcbench.host.errors import DcbenchError
from dcbench.host.runtime import check_precision
from dcbench.method.contract import AUGMENTATIONS, REFERENCE_EPOCHS, NativeEvaluation
from dcbench.nn.augment import dsa_strategy_for, parse_strategy
from dcbench.nn.compiling import resolve_compile
from dcbench.nn.mixing import MIXINGS
from dcbench.nn.policies import POLICIES

# 2: lr step one epoch later (as the reference), dc augmentation as the reference (zero fill on
#    scaling down, cubic-spline rotation), paper preset's native epochs per method.
PROTOCOL_VERSION = "2"
#: what the networks learn from: the set's class labels, the set's own soft labels, a teacher's
LABEL_SOURCES = ("hard", "set", "teacher")
LABEL_LOSSES = ("soft_ce", "kl")
#: image augmentations at evaluation: the methods' own (none, DSA, DC's) and torchvision's policies
EVAL_AUGMENTATIONS = (*AUGMENTATIONS, *POLICIES)
#: the teacher's training epochs when a protocol does not name them (DD-Ranking trains its
#: ConvNet teachers to convergence; on FashionMNIST 10 epochs reach about 90%)
TEACHER_EPOCHS = 10

#: fields recorded only when they differ from these (older stores keep their protocol hashes)
_OPTIONAL = {
    "test_images": 0,
    "mixing": "none",
    "mix_alpha": 1.0,
    "zca": False,
    "compiled": False,
}
_LABEL_FIELDS = ("labels", "label_loss", "temperature")
_TEACHER_FIELDS = ("teacher_arch", "teacher_epochs")


def lr_drop_epoch(epochs: int) -> int:
    """The first epoch trained at the reduced lr: the reference multiplies it by 0.1 after training
    epoch ``epochs // 2 + 1``, so epochs ``0 .. epochs // 2 + 1`` use the initial lr."""
    return epochs // 2 + 2


@dataclass(frozen=True)
class Protocol:
    """How a synthetic set is judged. Named and versioned; written into every result row."""

    arch: str = "ConvNet"
    arch_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 300
    models: int = 20
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    augmentation: str = "none"  # none | dsa | dc | autoaugment | randaugment
    dsa_strategy: str = ""  # "" = the reference string for the dataset
    test_batch_size: int = 1000
    precision: str = "fp32"  # fp32 | bf16 (torch.autocast for the forward passes)
    version: str = PROTOCOL_VERSION
    #: test on the first this many test images (0: all of them; only ``smoke`` tests on fewer)
    test_images: int = 0
    #: what the networks learn from: "hard" (the set's class labels), "set" (its soft labels,
    #: softmax at ``temperature``, where it has them; a set without them trains on its hard
    #: labels) or "teacher" (a network trained on the whole training set relabels every batch)
    labels: str = "hard"
    label_loss: str = "soft_ce"  # with soft labels: "soft_ce" (DATM's) or "kl" (KL at T, times T^2)
    temperature: float = 1.0
    #: the teacher of ``labels = "teacher"``: its architecture ("" = the evaluation's, with its
    #: options) and training epochs (see dcbench.evaluation.teacher.TeacherRecipe)
    teacher_arch: str = ""
    teacher_epochs: int = TEACHER_EPOCHS
    #: mixup / cutmix of every training batch (images and targets), ratio ~ Beta(alpha, alpha)
    mixing: str = "none"
    mix_alpha: float = 1.0
    #: the data is ZCA-whitened (dcbench.data.zca): the set must have been condensed so too
    zca: bool = False
    #: the training and test passes run compiled (dcbench.nn.compiling): the same recipe, its
    #: numbers equal to the eager ones within float rounding, not bitwise
    compiled: bool = False

    def __post_init__(self) -> None:
        if self.augmentation not in EVAL_AUGMENTATIONS:
            raise DcbenchError(
                f"unknown evaluation augmentation {self.augmentation!r}; choose one of {', '.join(EVAL_AUGMENTATIONS)}"
            )
        if self.labels not in LABEL_SOURCES or self.label_loss not in LABEL_LOSSES:
            raise DcbenchError(
                f"evaluation labels {self.labels!r} with loss {self.label_loss!r}: choose labels from "
                f"{', '.join(LABEL_SOURCES)} and a loss from {', '.join(LABEL_LOSSES)}"
            )
        if self.mixing not in MIXINGS:
            raise DcbenchError(f"unknown evaluation mixing {self.mixing!r}; choose one of {', '.join(MIXINGS)}")
        if self.zca and self.augmentation in POLICIES:
            raise DcbenchError(
                f"{self.augmentation} works on pixels, which whitened (ZCA) images are not; "
                "use dsa, dc or none with zca"
            )
        for name in ("temperature", "lr", "mix_alpha"):
            if not getattr(self, name) > 0:
                raise DcbenchError(f"protocol {name} must be > 0, got {getattr(self, name)}")
        for name in ("momentum", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise DcbenchError(f"protocol {name} must be >= 0, got {getattr(self, name)}")
        if self.test_images < 0:
            raise DcbenchError(f"protocol test_images must be >= 0 (0: every test image), got {self.test_images}")
        for name in ("epochs", "models", "batch_size", "test_batch_size", "teacher_epochs"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise DcbenchError(f"protocol {name} must be positive, got {getattr(self, name)}")
        parse_strategy(self.dsa_strategy)
        check_precision(self.precision)  # the name; the hardware when the device is known

    @property
    def teacher_architecture(self) -> tuple[str, dict[str, Any]]:
        """The teacher's architecture and options (the evaluation's unless ``teacher_arch``)."""
        if self.teacher_arch and self.teacher_arch != self.arch:
            return self.teacher_arch, {}
        return self.arch, dict(self.arch_options)

    @property
    def name(self) -> str:
        width = self.arch_options.get("width")
        arch = f"{self.arch}-W{width}" if width else self.arch
        parts = [arch, f"{self.epochs}ep", self.augmentation]
        if self.mixing != "none":
            parts.append(f"{self.mixing}{self.mix_alpha:g}")
        if self.precision != "fp32":
            parts.append(self.precision)
        if self.test_images:
            parts.append(f"test{self.test_images}")
        if self.labels != "hard":
            teacher = ""
            if self.labels == "teacher":
                teacher_arch = self.teacher_arch if self.teacher_arch and self.teacher_arch != self.arch else ""
                teacher = f"({teacher_arch + ',' if teacher_arch else ''}{self.teacher_epochs}ep)"
            parts.append(f"{self.labels}{teacher}-{self.label_loss}-T{self.temperature:g}")
        if self.zca:
            parts.append(zca_name())
        if self.compiled:
            parts.append("compiled")
        recipe = [
            f"{k}{getattr(self, k):g}"
            for k, default in (("lr", 0.01), ("momentum", 0.9), ("weight_decay", 5e-4))
            if getattr(self, k) != default
        ]
        if self.batch_size != 256:
            recipe.append(f"batch{self.batch_size}")
        if recipe:
            parts.append(",".join(recipe))
        return "/".join(parts) + f"/v{self.version}"

    @classmethod
    def for_preset(
        cls,
        preset: str,
        dataset: str = "",
        augmentation: str = "none",
        arch: str = "ConvNet",
        native: NativeEvaluation | None = None,
        **overrides: Any,
    ) -> Protocol:
        """The protocol of a preset. ``paper``: 20 models, 300 epochs without augmentation and 1000
        with (DC/DSA/DM scripts), full-width networks. ``quick``: the CPU budget of ``dcbench run``.
        ``smoke``: a few epochs of two tiny networks, for tests. ``native`` (a method's own
        evaluation on ``dataset``) replaces ``augmentation`` and gives its DSA strategy and, under
        ``paper``, its epochs (e.g. CAFE's 600); ``quick`` and ``smoke`` keep their epoch budget."""
        if native is not None:
            augmentation = native.augmentation
            overrides = {"dsa_strategy": native.dsa_strategy, **overrides}
        if preset == "paper":
            epochs = native.paper_epochs if native is not None else REFERENCE_EPOCHS[augmentation != "none"]
            values: dict[str, Any] = {"models": 20, "epochs": epochs}
        elif preset == "quick":
            # one network per seed, six seeds (the default spec): seeds buy more precision per
            # CPU-second than networks do (the report's Precision section on the 3 x 2 grid)
            values = {"models": 1, "epochs": 150, "arch_options": {"width": 32}}
        elif preset == "smoke":
            # seconds on every architecture: the test pass over all 10,000 images dominated (a
            # smoke ResNet18 took 586 s on two CPU cores), so smoke tests on the first 500
            values = {"models": 2, "epochs": 2, "arch_options": {"width": 16}, "test_images": 500, "teacher_epochs": 1}
        else:
            raise DcbenchError(f"unknown preset {preset!r}; choose one of smoke, quick, paper")
        if not arch.startswith("ConvNet"):
            values.pop("arch_options", None)  # widths are a ConvNet option
        values.update(overrides)
        strategy = values.pop("dsa_strategy", "") or (dsa_strategy_for(dataset) if augmentation == "dsa" else "")
        return cls(arch=arch, augmentation=augmentation, dsa_strategy=strategy, **values)

    def with_compile(self, mode: str, device_type: str) -> Protocol:
        """This protocol compiled or not as ``--compile mode`` decides for its budget (models x
        epochs) on ``device_type`` (:func:`dcbench.nn.compiling.resolve_compile`)."""
        return replace(self, compiled=resolve_compile(mode, device_type, self.models * (self.epochs + 1)))

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        # fields at their defaults are left out, so that protocols recorded before them keep their hash
        for name, default in _OPTIONAL.items():
            if values[name] == default:
                values.pop(name)
        if self.labels == "hard":
            for name in _LABEL_FIELDS:
                values.pop(name)
        if self.labels != "teacher":
            for name in _TEACHER_FIELDS:
                values.pop(name)
        return {**values, "name": self.name}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Protocol:
        """A protocol from :meth:`to_dict`'s fields (its ``name`` is derived, so ignored)."""
        return cls(**{k: v for k, v in values.items() if k != "name"})
