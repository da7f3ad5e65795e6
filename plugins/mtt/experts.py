"""Expert trajectories: networks trained on the real data, their parameters saved after every epoch.

A transcription of mtt-distillation's ``buffer.py``: each expert is a freshly initialised network
trained with plain SGD (``lr_teacher`` 0.01, momentum 0, weight decay 0, batch 256) for
``train_epochs`` epochs under DSA augmentation, with a snapshot before the first epoch and after
every epoch; the learning rate stays constant (the reference decays it only with ``--decay``).
The trajectories are an artifact (:mod:`dcbench.artifacts`): built once per data, recipe and
seed, shared by every cell that matches them, resumable after a kill at an epoch boundary.

Each expert is one file, ``expert_<i>.pt``: a ``(epochs + 1, P)`` float32 tensor of flat
parameter vectors in ``named_parameters()`` order (the reference's ``ReparamModule`` order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dcbench.api import DcbenchError, RealDataset, atomic_write, augment, make_generator

#: bump when the expert training changes the numbers it produces
EXPERTS_VERSION = "1"
#: mtt-distillation ``buffer.py`` / ``distill.py``: the DSA strategy of expert training
MTT_DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class ExpertRecipe:
    """How the experts are trained; every field is part of the artifact's identity."""

    experts: int = 100  # buffer.py --num_experts
    epochs: int = 50  # buffer.py --train_epochs
    lr: float = 0.01  # buffer.py --lr_teacher
    momentum: float = 0.0  # buffer.py --mom
    weight_decay: float = 0.0  # buffer.py --l2
    batch: int = 256  # buffer.py --batch_train
    dsa_strategy: str = MTT_DSA_STRATEGY  # buffer.py --dsa True, its default strategy
    arch: str = "ConvNet"
    width: int = 128
    depth: int = 3
    per_class: int = 0  # training images per class (a seeded subset); 0 = the whole training set
    seed: int = 0  # the experts' own seed: shared by every cell, whatever the cell's seed

    def validate(self) -> None:
        for name in ("experts", "epochs", "batch", "width", "depth"):
            if getattr(self, name) < 1:
                raise DcbenchError(f"expert setting {name!r} must be at least 1, got {getattr(self, name)}")
        if self.per_class < 0 or self.seed < 0:
            raise DcbenchError("expert settings per_class and seed must be >= 0")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0:
            raise DcbenchError("expert settings: lr must be > 0, momentum and weight_decay >= 0")

    def network_options(self) -> dict[str, Any]:
        return {"width": self.width, "depth": self.depth} if self.arch.startswith("ConvNet") else {}

    def identity(self, data_fingerprint: str, precision: str) -> dict[str, Any]:
        return {"recipe": asdict(self), "data": data_fingerprint, "precision": precision, "version": EXPERTS_VERSION}


def flat_parameters(net: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).cpu().clone()


def expert_file(i: int) -> str:
    return f"expert_{i}.pt"


def training_subset(real: RealDataset, recipe: ExpertRecipe) -> tuple[Tensor, Tensor]:
    """The images the experts train on: every training image, or ``per_class`` of each class drawn
    from the experts' seed."""
    if not recipe.per_class:
        return real.train_images, real.train_labels
    return real.sample_per_class(recipe.per_class, make_generator(recipe.seed, "experts", "subset"))


def train_experts(
    real: RealDataset,
    recipe: ExpertRecipe,
    directory: Path,
    step_done: Callable[[], None],
    build_network: Callable[[torch.Generator], nn.Module],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write ``recipe.experts`` trajectories into ``directory``, skipping the finished ones and
    continuing an unfinished one from its last epoch (``.expert_<i>.partial.pt``)."""
    images, labels = training_subset(real, recipe)
    total = recipe.experts * recipe.epochs
    for i in range(recipe.experts):
        if (directory / expert_file(i)).exists():
            continue
        net = build_network(make_generator(recipe.seed, "experts", i, "init")).train()
        optimizer = torch.optim.SGD(
            net.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
        partial = directory / f".expert_{i}.partial.pt"
        snapshots = [flat_parameters(net)]
        if partial.exists():
            state = torch.load(partial, map_location="cpu", weights_only=True)
            snapshots = list(state["snapshots"])
            net.load_state_dict(state["net"])
            optimizer.load_state_dict(state["optimizer"])
        for epoch in range(len(snapshots) - 1, recipe.epochs):
            train_epoch(
                net, optimizer, images, labels, recipe, make_generator(recipe.seed, "experts", i, "epoch", epoch)
            )
            snapshots.append(flat_parameters(net))
            _save(partial, {"snapshots": snapshots, "net": net.state_dict(), "optimizer": optimizer.state_dict()})
            step_done()
            if progress is not None:
                progress(i * recipe.epochs + epoch + 1, total)
        _save(directory / expert_file(i), torch.stack(snapshots))
        partial.unlink()
        step_done()


def train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    recipe: ExpertRecipe,
    generator: torch.Generator,
) -> None:
    """One epoch of ``utils.epoch("train", ..., aug=True)``: shuffled batches, DSA per batch
    (one family, parameters per image), cross-entropy, an SGD step."""
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images), recipe.batch):
        index = order[start : start + recipe.batch]
        x = augment(images.index_select(0, index), recipe.dsa_strategy, generator)
        loss = F.cross_entropy(net(x), labels.index_select(0, index))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def _save(path: Path, value: Any) -> None:
    atomic_write(path, lambda f: torch.save(value, f))  # a kill leaves the old file or the new one


def check_trajectories(trajectories: list[Any], recipe: ExpertRecipe) -> list[Tensor]:
    """The loaded experts' trajectories, each checked for its shape."""
    for i, trajectory in enumerate(trajectories):
        if not isinstance(trajectory, Tensor) or trajectory.ndim != 2 or len(trajectory) != recipe.epochs + 1:
            raise DcbenchError(
                f"{expert_file(i)}: not a trajectory of {recipe.epochs + 1} snapshots; remove the artifact"
            )
    return trajectories
