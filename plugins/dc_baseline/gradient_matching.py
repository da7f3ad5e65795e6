"""The DC / DSA condensation loop (reference ``main.py``), with explicit random streams.

Per iteration: a freshly initialised network; ``outer_loop`` times, every class's synthetic images
are moved so that the gradient they induce in the network matches the gradient of a real batch of
that class (one image-optimiser step for all classes), and between those steps the network is
trained for ``inner_loop`` epochs on the synthetic set. DSA additionally passes each class's real
and synthetic batch through one shared random augmentation before taking gradients, and augments
the synthetic set (per image) when training the network.

Random streams (all from ``seed``): ``init`` (initial images), ``net``/it (network weights),
``real``/it (real batches, BatchNorm batches), ``dsa``/it (Siamese augmentation),
``shuffle``/it and ``dsa-train``/it (inner-loop order and augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from dcbench.api import (
    CondenseContext,
    RealDataset,
    augment,
    class_major_labels,
    init_synthetic_images,
    make_generator,
    siamese_augment,
)

from .gradients import class_gradients
from .matching import match_loss

#: real images per class forwarded (train mode) to set BatchNorm statistics before matching
BN_IMAGES_PER_CLASS = 16


@dataclass(frozen=True)
class MatchingSettings:
    """Everything the loop needs, resolved from a method config (loops and strategy included)."""

    iterations: int
    outer_loop: int
    inner_loop: int
    batch_real: int
    batch_train: int
    lr_img: float
    momentum_img: float
    lr_net: float
    init: str
    dis_metric: str
    model: str
    net_options: dict[str, Any]
    dsa_strategy: str  # "" = no augmentation (DC)
    class_batching: str  # which per-class gradients go through one vmapped pass: none/synthetic/all


def _has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in net.modules())


def _set_batchnorm_statistics(net: nn.Module, real: RealDataset, generator: torch.Generator) -> None:
    """As the reference: forward a mixed real batch in train mode to update the running
    statistics, then freeze every BatchNorm layer (eval) so the matching step uses them and no
    layer mixes samples across classes."""
    net.train()
    with torch.no_grad():
        net(real.sample_per_class(BN_IMAGES_PER_CLASS, generator)[0])
    for module in net.modules():
        if isinstance(module, _BatchNorm):
            module.eval()


def train_on_synthetic(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    batch_size: int,
    order: torch.Generator,
    dsa_strategy: str,
    augmentation: torch.Generator,
) -> None:
    """The reference ``epoch('train', ...)`` repeated ``epochs`` times: shuffled mini-batches of
    the (detached) synthetic set, per-image DSA when a strategy is given, plain SGD on CE."""
    net.train()
    n = images.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order).to(images.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x = augment(images[idx], dsa_strategy, augmentation) if dsa_strategy else images[idx]
            loss = F.cross_entropy(net(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def condense_by_gradient_matching(
    real: RealDataset, ipc: int, settings: MatchingSettings, seed: int, ctx: CondenseContext
) -> tuple[Tensor, Tensor]:
    """Run DC (or DSA when ``settings.dsa_strategy`` is set); returns (images, labels), class-major."""
    if real.device != ctx.device:
        real = real.to(ctx.device)
    k = real.num_classes
    image_syn = init_synthetic_images(real, ipc, settings.init, make_generator(seed, "init")).to(ctx.device)
    image_syn.requires_grad_(True)
    labels_syn = class_major_labels(k, ipc, ctx.device)
    # Equal class batches let one vectorised pass serve every class; only a class smaller than
    # batch_real (tiny datasets) shrinks it, for all classes alike.
    n_real = min(settings.batch_real, min(len(i) for i in real.indices_by_class))
    labels_real = class_major_labels(k, n_real, ctx.device).view(k, n_real)
    optimizer_img = torch.optim.SGD([image_syn], lr=settings.lr_img, momentum=settings.momentum_img)
    strategy = settings.dsa_strategy
    shape = (real.channels, *real.image_size)
    total = settings.iterations
    start, last_loss = 0, float("nan")
    saved = ctx.resume()
    if saved is not None:  # every random stream is per iteration: images and momentum suffice
        last_loss = saved.restore_images(image_syn, optimizer_img)
        start = saved.iteration
    for it in range(start, total):
        net = ctx.build_network(settings.model, real, make_generator(seed, "net", it), **settings.net_options)
        net.train()
        optimizer_net = torch.optim.SGD(net.parameters(), lr=settings.lr_net)
        real_stream = make_generator(seed, "real", it)
        dsa_stream = make_generator(seed, "dsa", it)
        order_stream = make_generator(seed, "shuffle", it)
        train_aug_stream = make_generator(seed, "dsa-train", it)
        batchnorm = _has_batchnorm(net)
        loss_sum: Tensor | float = 0.0
        for outer in range(settings.outer_loop):
            if batchnorm:
                _set_batchnorm_statistics(net, real, real_stream)
            images_real = real.sample_per_class(n_real, real_stream)[0].view(k, n_real, *shape)
            images_syn = image_syn.view(k, ipc, *shape)
            if strategy:
                pairs = [siamese_augment([images_real[c], images_syn[c]], strategy, dsa_stream) for c in range(k)]
                images_real = torch.stack([p[0] for p in pairs])
                images_syn = torch.stack([p[1] for p in pairs])
            grads_real = class_gradients(
                net, images_real, labels_real, create_graph=False, batched=settings.class_batching == "all"
            )
            grads_syn = class_gradients(
                net, images_syn, labels_syn.view(k, ipc), create_graph=True, batched=settings.class_batching != "none"
            )
            loss = match_loss(grads_syn, grads_real, settings.dis_metric)
            # autograd.grad instead of loss.backward(): only the images need a gradient.
            image_syn.grad = torch.autograd.grad(loss, image_syn)[0]
            optimizer_img.step()
            loss_sum = loss_sum + loss.detach()  # no host sync per matching step
            if outer == settings.outer_loop - 1:
                break  # no network update after the last matching step
            train_on_synthetic(
                net,
                optimizer_net,
                image_syn.detach(),
                labels_syn,
                settings.inner_loop,
                settings.batch_train,
                order_stream,
                strategy,
                train_aug_stream,
            )
        # the reference's logged loss: mean per class and matching step (one host sync per iteration;
        # a diverged step is caught here, before the next iteration builds on it)
        last_loss = float(loss_sum) / (k * settings.outer_loop)
        ctx.check_finite(last_loss, it)
        ctx.progress(it + 1, total, loss=last_loss)
        ctx.checkpoint(
            it + 1,
            total,
            lambda: {"images": image_syn.detach(), "optimizer": optimizer_img.state_dict(), "loss": last_loss},  # noqa: B023 - called inside ctx.checkpoint, in this iteration
        )
    ctx.metrics.update(
        {
            "iterations": total,
            "outer_loop": settings.outer_loop,
            "inner_loop": settings.inner_loop,
            "final_match_loss_per_class": last_loss,
        }
    )
    return image_syn.detach(), labels_syn
