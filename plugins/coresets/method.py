"""Random, herding and K-Center coresets (selections of real images), and the whole training set.

Herding follows the DC authors' description (DatasetCondensation issue #15): per class, greedily
add the image whose embedding brings the running mean of the selection closest to the class mean.
K-Center follows their issue #21: per class, start from the image nearest the class mean, then
greedily add the image farthest from everything chosen so far (farthest-point selection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from dcbench.api import (
    SHARED_INIT_STREAM,
    CondenseContext,
    ConvNet,
    DcbenchError,
    Method,
    RealDataset,
    SyntheticSet,
    class_major_labels,
    init_synthetic_images,
    make_generator,
)


@dataclass
class RandomConfig:
    """A class-balanced random subset has no knobs; the seed picks the images."""

    PRESETS: ClassVar[dict[str, dict]] = {}


class RandomMethod(Method):
    name = "random"
    label = "Random"
    coreset = True
    version = "1.0.0"
    description = "class-balanced random real images (the baseline every method must beat)"
    config_class = RandomConfig

    def initial_stream(self, config: RandomConfig) -> str:
        return SHARED_INIT_STREAM  # random *is* the shared initial images

    def condense(
        self, real: RealDataset, ipc: int, config: RandomConfig, seed: int, ctx: CondenseContext
    ) -> SyntheticSet:
        images = init_synthetic_images(real, ipc, "real", make_generator(seed, SHARED_INIT_STREAM))
        ctx.metrics["iterations"] = 0
        return SyntheticSet(images, class_major_labels(real.num_classes, ipc))


@dataclass
class HerdingConfig:
    """Herding on the embedding of a randomly initialised ConvNet (which network the DC paper
    used is not documented; a random network keeps the baseline cheap and seed-driven)."""

    net_width: int = 128  # channels per layer of the random ConvNet whose embedding herding works in
    net_depth: int = 3  # its conv blocks
    pool_per_class: int = 0  # candidates per class drawn at random; 0 = every training image
    batch_size: int = 1024  # candidates per embedding pass (memory only: the selection is the same)
    PRESETS: ClassVar[dict[str, dict]] = {
        "smoke": {"net_width": 16, "pool_per_class": 64},
        "quick": {"net_width": 32, "pool_per_class": 1000},
    }

    def validate(self) -> None:
        if self.pool_per_class < 0 or self.net_width < 1 or self.net_depth < 1 or self.batch_size < 1:
            raise DcbenchError("herding: net_width, net_depth and batch_size must be >= 1 and pool_per_class >= 0")


def herding_select(features: Tensor, k: int) -> Tensor:
    """Indices of ``k`` rows of ``features`` chosen greedily so the selection's running mean
    tracks the mean of all rows (no row is chosen twice)."""
    mean = features.mean(0)
    chosen: list[int] = []
    total = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for i in range(min(k, len(features))):
        target = mean * (i + 1) - total
        dist = (features - target).pow(2).sum(1).masked_fill(~available, float("inf"))
        j = int(dist.argmin())
        chosen.append(j)
        available[j] = False
        total += features[j]
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


def kcenter_select(features: Tensor, k: int) -> Tensor:
    """Indices of ``k`` rows of ``features``: the row nearest the mean first, then each time the
    row whose distance to its nearest chosen row is largest (ties: the lowest index)."""
    first = int((features - features.mean(0)).pow(2).sum(1).argmin())
    chosen = [first]
    nearest = (features - features[first]).pow(2).sum(1)
    for _ in range(min(k, len(features)) - 1):
        j = int(nearest.argmax())
        chosen.append(j)
        nearest = torch.minimum(nearest, (features - features[j]).pow(2).sum(1))
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


class _EmbeddingCoreset(Method):
    """A per-class selection in the embedding of a randomly initialised ConvNet drawn from the seed."""

    coreset = True
    config_class = HerdingConfig

    def select(self, features: Tensor, k: int) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def condense(
        self, real: RealDataset, ipc: int, config: HerdingConfig, seed: int, ctx: CondenseContext
    ) -> SyntheticSet:
        net = ctx.build_network(
            "ConvNet", real, make_generator(seed, "net"), width=config.net_width, depth=config.net_depth
        ).eval()
        assert isinstance(net, ConvNet)  # the registered "ConvNet", whose embed() herding selects in
        pool_gen = make_generator(seed, "pool")
        selected = []
        for c in range(real.num_classes):
            idx = real.indices_by_class[c]
            if config.pool_per_class:
                idx = idx[torch.randperm(len(idx), generator=pool_gen)[: config.pool_per_class].to(idx.device)]
            if len(idx) < ipc:
                raise DcbenchError(f"{self.name} needs {ipc} candidates per class, class {c} has {len(idx)}")
            feats = torch.cat(
                [
                    net.embed(real.train_images[idx[s : s + config.batch_size]])
                    for s in range(0, len(idx), config.batch_size)
                ]
            )
            selected.append(real.train_images[idx[self.select(feats, ipc)]])
            ctx.progress(c + 1, real.num_classes)
        ctx.metrics["iterations"] = real.num_classes
        return SyntheticSet(torch.cat(selected), class_major_labels(real.num_classes, ipc))


class HerdingMethod(_EmbeddingCoreset):
    name = "herding"
    label = "Herding"
    version = "1.0.0"
    description = "herding coreset: greedy mean matching in a random ConvNet's embedding"

    def select(self, features: Tensor, k: int) -> Tensor:
        return herding_select(features, k)


class KCenterMethod(_EmbeddingCoreset):
    """K-Center in the same random ConvNet embedding as herding (same settings, same network
    stream), so that the two coresets differ only in their selection rule. The DC paper does not
    say which network it embedded with; a trained one would make the baseline depend on a training
    recipe and cost a network's training."""

    name = "kcenter"
    label = "K-Center"
    version = "1.0.0"
    opt_in = True  # added after the committed default reference: it joins the default grid when that is remade
    description = "K-Center coreset: greedy farthest-point selection in a random ConvNet's embedding"

    def select(self, features: Tensor, k: int) -> Tensor:
        return kcenter_select(features, k)


@dataclass
class WholeConfig:
    PRESETS: ClassVar[dict[str, dict]] = {}


class WholeDatasetMethod(Method):
    """Not a condensation: the full training set, for the "Whole dataset" line of a table.

    It ignores the IPC; the evaluation protocol then trains on every training image, which costs
    as much as ordinary training (so the default benchmark leaves it out; name it in a spec)."""

    name = "whole"
    version = "1.0.0"
    description = "the whole training set (reference line; ignores IPC; expensive)"
    config_class = WholeConfig
    reference_only = True
    label = "Whole dataset"

    def condense(
        self, real: RealDataset, ipc: int, config: WholeConfig, seed: int, ctx: CondenseContext
    ) -> SyntheticSet:
        ctx.metrics["iterations"] = 0
        return SyntheticSet(real.train_images, real.train_labels)
