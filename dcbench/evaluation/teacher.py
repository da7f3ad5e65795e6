"""The teacher of a soft-label evaluation track: a network trained on the whole training set.

As DD-Ranking's soft-label evaluators, the teacher relabels every training batch of the
evaluated networks (its logits, softened at the protocol's temperature, are their targets), so a
set is judged with the same teacher whatever method made it, and ``random`` is trained under the
very same recipe. The teacher is a stored artifact (:mod:`dcbench.artifacts`): trained once per
data, architecture and recipe, shared by every cell, worker and later run, resumed after a kill
at an epoch boundary; its test accuracy and cost are recorded with it and with every evaluation
that used it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dcbench.artifacts import Artifact, ArtifactStore
from dcbench.data.real import RealDataset
from dcbench.evaluation.protocol import Protocol
from dcbench.host.errors import DcbenchError
from dcbench.host.files import atomic_write, atomic_write_text
from dcbench.method.seeding import make_generator
from dcbench.nn.networks import Architecture, build_network

#: bump when the teacher's training changes the network it produces
TEACHER_VERSION = "1"
KIND = "teacher"
WEIGHTS, METRICS, PARTIAL = "teacher.pt", "metrics.json", ".teacher.partial.pt"


@dataclass(frozen=True)
class TeacherRecipe:
    """How the teacher is trained (every field is part of its identity): SGD with momentum and
    weight decay, cross-entropy on the hard labels, no augmentation, the lr divided by 10 for the
    second half; its own seed, shared by every cell."""

    arch: str = "ConvNet"
    arch_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch: int = 256
    seed: int = 0

    def identity(self, data_fingerprint: str) -> dict[str, Any]:
        recipe = asdict(self)
        recipe["arch_options"] = dict(self.arch_options)
        return {"recipe": recipe, "data": data_fingerprint, "version": TEACHER_VERSION}


def teacher_recipe(protocol: Protocol) -> TeacherRecipe:
    """The teacher a protocol names: its architecture (the evaluation's unless it names another)
    and epochs; the rest of the recipe is fixed (and versioned)."""
    arch, options = protocol.teacher_architecture
    return TeacherRecipe(arch=arch, arch_options=tuple(sorted(options.items())), epochs=protocol.teacher_epochs)


@dataclass
class Teacher:
    """A trained teacher in eval mode, and what evaluations record about it."""

    net: nn.Module
    record: dict[str, Any]  # key, arch, epochs, test_acc, build_s, built_here

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """The teacher's logits for a batch of any leading shape (..., C, H, W)."""
        lead = images.shape[:-3]
        return self.net(images.reshape(-1, *images.shape[-3:])).float().reshape(*lead, -1)


def train_teacher(
    real: RealDataset,
    recipe: TeacherRecipe,
    architecture: Architecture,
    directory: Path,
    step_done: Callable[[], None],
) -> None:
    """Train the teacher into ``directory`` (``teacher.pt``, ``metrics.json``), continuing from the
    last finished epoch of a killed build."""
    net = _network(real, recipe, architecture, real.device).train()
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    start_epoch, seconds = 0, 0.0
    partial = directory / PARTIAL
    if partial.exists():
        state = torch.load(partial, map_location=real.device, weights_only=True)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, seconds = int(state["epoch"]), float(state["seconds"])
    for epoch in range(start_epoch, recipe.epochs):
        began = time.perf_counter()
        lr = recipe.lr * (0.1 if epoch >= recipe.epochs // 2 + recipe.epochs % 2 else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = torch.randperm(len(real.train_images), generator=make_generator(recipe.seed, "teacher", epoch))
        order = order.to(real.device)
        for first in range(0, len(order), recipe.batch):
            index = order[first : first + recipe.batch]
            loss = F.cross_entropy(
                net(real.train_images.index_select(0, index)), real.train_labels.index_select(0, index)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - began
        state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "seconds": seconds}
        atomic_write(partial, lambda f, state=state: torch.save(state, f))  # a kill leaves the old or the new
        step_done()
    atomic_write(directory / WEIGHTS, lambda f: torch.save(net.state_dict(), f))
    accuracy = _test_accuracy(net.eval(), real)
    atomic_write_text(directory / METRICS, json.dumps({"test_acc": accuracy, "train_s": round(seconds, 3)}) + "\n")
    partial.unlink(missing_ok=True)


@torch.no_grad()
def _test_accuracy(net: nn.Module, real: RealDataset, batch: int = 1000) -> float:
    correct = 0
    for first in range(0, len(real.test_images), batch):
        logits = net(real.test_images[first : first + batch])
        correct += int((logits.argmax(-1) == real.test_labels[first : first + batch]).sum())
    return correct / len(real.test_images)


def _network(real: RealDataset, recipe: TeacherRecipe, architecture: Architecture, device: torch.device) -> nn.Module:
    return build_network(
        architecture,
        real.channels,
        real.num_classes,
        real.image_size,
        make_generator(recipe.seed, "teacher", "init"),
        device,
        **dict(recipe.arch_options),
    )


def load_teacher(
    real: RealDataset,
    recipe: TeacherRecipe,
    architecture: Architecture,
    data_fingerprint: str = "",
    store: ArtifactStore | None = None,
    log: Callable[[str], None] | None = None,
) -> Teacher:
    """The teacher ``recipe`` makes from ``real`` (trained here the first time it is asked for)."""
    if architecture.name != recipe.arch:
        raise DcbenchError(f"the teacher's architecture is {recipe.arch!r}, but {architecture.name!r} was given")
    store = store if store is not None else ArtifactStore()
    identity = recipe.identity(data_fingerprint or real.content_hash())
    artifact, built = store.get(
        KIND,
        identity,
        lambda directory, step_done: train_teacher(real, recipe, architecture, directory, step_done),
        log,
    )
    net = _network(real, recipe, architecture, real.device)
    try:
        net.load_state_dict(artifact.load(WEIGHTS))
    except RuntimeError as exc:  # the weights of another architecture
        raise DcbenchError(
            f"teacher {artifact.key}: its weights do not fit {recipe.arch} ({str(exc).splitlines()[0]}); "
            f"remove it with `dcbench artifacts remove {artifact.key}`"
        ) from None
    return Teacher(net.eval(), _record(artifact, recipe, built))


def _record(artifact: Artifact, recipe: TeacherRecipe, built: bool) -> dict[str, Any]:
    try:
        metrics = json.loads(artifact.file(METRICS).read_text())
        accuracy = float(metrics["test_acc"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DcbenchError(
            f"teacher {artifact.key}: {METRICS} is damaged ({exc}); "
            f"remove it with `dcbench artifacts remove {artifact.key}`"
        ) from None
    return {
        "key": artifact.key,
        "arch": recipe.arch,
        "arch_options": dict(recipe.arch_options),
        "epochs": recipe.epochs,
        "test_acc": accuracy,
        **artifact.usage(built),
    }
