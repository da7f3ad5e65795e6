"""CAFE's dynamic bi-level optimisation (official ``distill.py``), with every random draw seeded.

For each outer iteration ``it``, a fresh ConvNet (SGD, ``lr_net``, no momentum) and, until the
outer rule stops:

1. one image step: fresh real batches of every class (Siamese DSA per class for ``cafe_dsa``),
   the CAFE loss of :mod:`.losses` on the current network, one SGD step on the synthetic images;
2. an accuracy check of the network's own head on ``query_per_class`` random real training
   images per class, fed to the outer rule (stop when the window is stable);
3. unless it stopped: an inner loop of full epochs of cross-entropy SGD on the (detached)
   synthetic set, each followed by an accuracy check fed to the inner rule (stop when the window
   moved, see :mod:`.stopping`).

Not reproduced, because they cannot change the synthetic images: the official ``loss_real`` term
(the network's classification loss on the real batch; its gradients reach only the network's
parameters and are zeroed before any network step) and the per-epoch ``epoch('test')`` pass.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dcbench.api import (
    CondenseContext,
    ConvNet,
    RealDataset,
    SyntheticSet,
    augment,
    class_major_labels,
    init_synthetic_images,
    make_generator,
    siamese_augment,
)

from .config import CafeConfig
from .losses import alignment_loss, class_means, default_map_weights, discrimination_loss
from .stopping import CAP, FROZEN, InnerStop, OuterStop


@dataclass
class LoopCounts:
    """How long each outer iteration's loops ran and why they ended (for ``ctx.metrics``)."""

    image_steps: list[int] = field(default_factory=list)  # per outer iteration
    inner_epochs: list[int] = field(default_factory=list)  # per outer iteration, all inner loops
    seconds: list[float] = field(default_factory=list)  # per outer iteration
    outer_cap_hits: int = 0
    inner_loops: int = 0
    inner_cap_hits: int = 0
    inner_frozen_stops: int = 0

    def as_metrics(self) -> dict[str, Any]:
        n = len(self.image_steps)
        return {
            "image_steps_per_iteration": self.image_steps,
            "inner_epochs_per_iteration": self.inner_epochs,
            "image_steps_total": sum(self.image_steps),
            "inner_epochs_total": sum(self.inner_epochs),
            "image_steps_mean": sum(self.image_steps) / n,
            "image_steps_max": max(self.image_steps),
            "inner_epochs_mean": sum(self.inner_epochs) / n,
            "inner_epochs_max": max(self.inner_epochs),
            "inner_loops_total": self.inner_loops,
            "outer_cap_hits": self.outer_cap_hits,
            "inner_cap_hits": self.inner_cap_hits,
            "inner_frozen_stops": self.inner_frozen_stops,
            "seconds_per_iteration": sum(self.seconds) / n,
        }


def image_lr(config: CafeConfig, it: int) -> float:
    """``lr_img`` halved at every milestone reached (official: ``it >= 1200, 1600, 1800`` of 2000)."""
    reached = sum(it >= round(fraction * config.iterations) for fraction in config.lr_decay_at)
    return config.lr_img * 0.5**reached


@torch.no_grad()
def query_accuracy(
    net: nn.Module, real: RealDataset, per_class: int, generator: torch.Generator, device: torch.device
) -> list[float]:
    """Per-class accuracy of ``net``'s own head on ``per_class`` random training images per class."""
    x, y = real.sample_per_class(per_class, generator)
    x, y = x.to(device), y.to(device)
    correct = (net(x).argmax(1) == y).float()
    hits = torch.zeros(real.num_classes, device=device).index_add_(0, y, correct)
    return (hits / torch.bincount(y, minlength=real.num_classes)).tolist()


#: Real images per no-grad forward pass, in whole classes (at least one). A class at a time keeps
#: the activations of the real pass near 100 MiB at paper settings (the official code forwards all
#: classes at once: 1.3 GiB per map), and measured no slower; the results do not depend on it.
REAL_CHUNK_IMAGES = 256


def real_class_statistics(
    net: ConvNet, real_batches: Sequence[Tensor], chunk_images: int = REAL_CHUNK_IMAGES
) -> tuple[list[Tensor], Tensor]:
    """Class means of every feature map and the flattened embeddings of the real batches, forwarded
    a few whole classes at a time (the network treats every image on its own, so chunking at class
    boundaries changes nothing)."""
    per_forward = max(1, chunk_images // max(1, max(len(b) for b in real_batches)))
    means: list[list[Tensor]] = []
    embeddings = []
    for start in range(0, len(real_batches), per_forward):
        group = real_batches[start : start + per_forward]
        maps = net.features(torch.cat(list(group)))
        means.append([class_means(m, [len(b) for b in group]) for m in maps])
        embeddings.append(maps[-1].flatten(1).float())
    return [torch.cat(per_map) for per_map in zip(*means)], torch.cat(embeddings)


def cafe_loss(
    net: ConvNet,
    real_batches: Sequence[Tensor],
    syn_batches: Sequence[Tensor],
    map_weights: Sequence[float],
    embed_weight: float,
    inner_weight: float,
) -> Tensor:
    """The image objective on class batches ``real_batches[c]`` / ``syn_batches[c]``.

    Each side is one forward pass over all classes; the real pass runs without autograd (no
    gradient of the images flows through it) and only its class means and embeddings are kept.
    """
    real_counts = [len(b) for b in real_batches]
    real_labels = torch.arange(len(real_batches), device=real_batches[0].device).repeat_interleave(
        torch.tensor(real_counts, device=real_batches[0].device)
    )
    with torch.no_grad():
        real_means, real_embeddings = real_class_statistics(net, real_batches)
    syn_maps = net.features(torch.cat(list(syn_batches)))
    syn_means = [class_means(m, [len(b) for b in syn_batches]) for m in syn_maps]
    alignment = alignment_loss(real_means, syn_means, map_weights, embed_weight)
    discrimination = discrimination_loss(real_embeddings, real_labels, syn_means[-1].flatten(1))
    return alignment + inner_weight * discrimination


def train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    order: torch.Generator,
    transform: Callable[[Tensor], Tensor],
) -> None:
    """One shuffled pass of cross-entropy SGD over the synthetic set (the official ``epoch('train')``)."""
    perm = torch.randperm(images.shape[0], generator=order).to(images.device)
    for start in range(0, images.shape[0], batch_size):
        idx = perm[start : start + batch_size]
        loss = F.cross_entropy(net(transform(images[idx])), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def class_batches(
    real: RealDataset,
    images: Tensor,
    ipc: int,
    batch_real: int,
    real_gen: torch.Generator,
    dsa_strategy: str,
    dsa_gen: torch.Generator,
    device: torch.device,
) -> tuple[list[Tensor], list[Tensor]]:
    """Fresh real images and the synthetic images of every class, under one Siamese DSA draw per
    class (no augmentation for an empty strategy)."""
    real_batches, syn_batches = [], []
    for c, syn_c in enumerate(images.split(ipc)):
        real_c = real.sample_class(c, batch_real, real_gen).to(device)
        real_c, syn_c = siamese_augment([real_c, syn_c], dsa_strategy, dsa_gen)
        real_batches.append(real_c)
        syn_batches.append(syn_c)
    return real_batches, syn_batches


def condense_cafe(
    real: RealDataset, ipc: int, config: CafeConfig, seed: int, ctx: CondenseContext, dsa_strategy: str = ""
) -> SyntheticSet:
    """Run CAFE (with Siamese DSA when ``dsa_strategy`` is not empty) and return the synthetic set."""
    num_classes, device = real.num_classes, ctx.device
    map_weights = (
        tuple(config.layer_weights) if config.layer_weights is not None else default_map_weights(config.net_depth)
    )
    images = init_synthetic_images(real, ipc, config.init, make_generator(seed, "init")).to(device)
    images.requires_grad_(True)
    labels = class_major_labels(num_classes, ipc, device)
    image_optimizer = torch.optim.SGD([images], lr=config.lr_img, momentum=config.momentum_img)
    running_sum = config.faithful
    plateau = 0.0 if config.faithful else config.inner_plateau
    counts = LoopCounts()
    start, loss_value = 0, 0.0
    saved = ctx.resume()
    if saved is not None:  # every random stream is per iteration: images, momentum and counts suffice
        loss_value = saved.restore_images(images, image_optimizer)
        counts = LoopCounts(**saved.state["counts"])
        start = saved.iteration
    for it in range(start, config.iterations):
        started = time.perf_counter()
        for group in image_optimizer.param_groups:
            group["lr"] = image_lr(config, it)
        net = ctx.build_network(
            "ConvNet", real, make_generator(seed, "net", it), width=config.net_width, depth=config.net_depth
        ).train()
        assert isinstance(net, ConvNet)  # the registered "ConvNet": CAFE reads its per-layer features
        net_optimizer = torch.optim.SGD(net.parameters(), lr=config.lr_net)
        real_gen, query_gen = make_generator(seed, "real", it), make_generator(seed, "query", it)
        order_gen, dsa_gen = make_generator(seed, "order", it), make_generator(seed, "dsa", it)
        inner_dsa_gen = make_generator(seed, "inner-dsa", it)
        check = functools.partial(query_accuracy, net, real, config.query_per_class, query_gen, device)
        inner_transform = functools.partial(augment, strategy=dsa_strategy, generator=inner_dsa_gen)

        outer = OuterStop(num_classes, config.window, running_sum, config.max_image_steps, config.lambda_1)
        inner_epochs = 0
        while True:
            real_batches, syn_batches = class_batches(
                real, images, ipc, config.batch_real, real_gen, dsa_strategy, dsa_gen, device
            )
            loss = cafe_loss(net, real_batches, syn_batches, map_weights, config.embed_weight, config.inner_weight)
            loss_value = loss.item()  # the stopping rule syncs every step anyway (its accuracy query)
            ctx.check_finite(loss_value, it)
            image_optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=[images])  # the network's gradients are never used: skip them
            image_optimizer.step()
            outer_end = outer.update(check())
            if outer_end is not None:
                counts.outer_cap_hits += outer_end == CAP
                break
            # the inner loop trains on a detached copy, as the official DataLoader over image_syn
            inner = InnerStop(
                num_classes, config.window, running_sum, config.max_inner_epochs, config.lambda_2, plateau
            )
            synthetic_copy = images.detach().clone()
            inner_end = None
            while inner_end is None:
                train_epoch(net, net_optimizer, synthetic_copy, labels, config.batch_train, order_gen, inner_transform)
                inner_end = inner.update(check())
            inner_epochs += inner.checks
            counts.inner_loops += 1
            counts.inner_cap_hits += inner_end == CAP
            counts.inner_frozen_stops += inner_end == FROZEN
        counts.image_steps.append(outer.checks)
        counts.inner_epochs.append(inner_epochs)
        counts.seconds.append(time.perf_counter() - started)
        ctx.progress(it + 1, config.iterations, loss=loss_value, image_steps=outer.checks, inner_epochs=inner_epochs)
        ctx.checkpoint(
            it + 1,
            config.iterations,
            lambda: {
                "images": images.detach(),
                "optimizer": image_optimizer.state_dict(),
                "counts": dataclasses.asdict(counts),
                "loss": loss_value,  # noqa: B023 - called inside ctx.checkpoint, in this iteration
            },
        )
    ctx.metrics.update(
        iterations=config.iterations,
        final_loss=loss_value,
        map_weights=list(map_weights),
        dsa_strategy=dsa_strategy or "none",
        **counts.as_metrics(),
    )
    return SyntheticSet(images.detach(), labels)
