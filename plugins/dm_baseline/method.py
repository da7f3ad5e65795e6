"""DM (Zhao & Bilen, WACV 2023) as a dcbench method: configuration, presets and the condensation loop.

Every iteration draws a fresh, randomly initialised network that is never trained, embeds a real
batch and the synthetic images of every class under one Siamese DSA transform per class, and takes
one SGD step on the synthetic images to bring each class's mean embedding towards the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import Tensor, nn

from dcbench.api import (
    CondenseContext,
    DcbenchError,
    Method,
    NativeEvaluation,
    RealDataset,
    SyntheticSet,
    class_major_labels,
    init_synthetic_images,
    make_generator,
    parse_strategy,
    real_init_stream,
    siamese_augment,
)

from .loss import distribution_matching_loss

INITS = ("real", "noise")
#: ``main_DM.py``'s default strategy, on every dataset: unlike DSA's README commands it keeps
#: ``flip`` on MNIST and SVHN, for condensation and for evaluation alike
DM_DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass
class DMConfig:
    """DM settings; the defaults are the reference ``main_DM.py`` defaults (the ``paper`` preset)."""

    iterations: int = 20000  # image updates, one per freshly drawn network
    lr_img: float = 1.0  # SGD learning rate of the synthetic images
    momentum: float = 0.5  # momentum of the image SGD optimizer (one optimizer for the whole run)
    batch_real: int = 256  # real images per class per iteration
    init: str = "real"  # "real" (random real images of the class) or "noise"
    dsa_strategy: str = ""  # "" = main_DM.py's DM_DSA_STRATEGY (flip kept on every dataset); "none" = off
    arch: str = "ConvNet"  # any registered architecture with an ``embed`` method
    net_width: int = 128  # channels per layer of a ConvNet* (ignored by other architectures)
    net_depth: int = 3  # conv blocks of a ConvNet* (ignored by other architectures)
    # Real images per no-grad forward pass, in whole classes (at least one). A class at a time, as
    # the reference: at paper settings one pass of all classes holds 1.3 GiB per activation, which
    # measured slower on a CPU (page faults, cache) and needs 2.4x the reference's peak memory. The
    # means are exact either way. BatchNorm networks always forward every class at once.
    real_chunk: int = 256

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"iterations": 2, "batch_real": 8, "net_width": 16},
        # about 6 s per cell (the benchmark's equal budget); lr_img chosen on a validation split of
        # the training set: benchmarks/selection/dm-fashion-mnist.md
        "quick": {"iterations": 60, "batch_real": 64, "net_width": 32, "lr_img": 10.0},
        "paper": {},
    }

    def validate(self) -> None:
        for name in ("iterations", "batch_real", "net_width", "net_depth", "real_chunk"):
            if getattr(self, name) < 1:
                raise DcbenchError(f"dm setting {name!r} must be at least 1, got {getattr(self, name)}")
        if not self.lr_img > 0:
            raise DcbenchError(f"dm setting 'lr_img' must be > 0, got {self.lr_img}")
        if not 0 <= self.momentum < 1:
            raise DcbenchError(f"dm setting 'momentum' must lie in [0, 1), got {self.momentum}")
        if self.init not in INITS:
            raise DcbenchError(f"dm setting 'init' must be one of {', '.join(INITS)}, got {self.init!r}")
        parse_strategy(self.dsa_strategy)


def _network_options(config: DMConfig) -> dict[str, Any]:
    return {"width": config.net_width, "depth": config.net_depth} if config.arch.startswith("ConvNet") else {}


def _has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def _frozen_network(real: RealDataset, config: DMConfig, seed: int, it: int, ctx: CondenseContext) -> nn.Module:
    """The iteration's embedding network: freshly drawn, in train mode (as the reference), frozen."""
    net = ctx.build_network(config.arch, real, make_generator(seed, "net", it), **_network_options(config))
    if not callable(getattr(net, "embed", None)):
        raise DcbenchError(f"dm needs a network with an embed() method; {config.arch!r} has none")
    return net.train().requires_grad_(False)


def sample_real_batches(real: RealDataset, n: int, generator: torch.Generator) -> list[Tensor]:
    """``n`` random training images of every class (all of a smaller class), drawn exactly as
    ``RealDataset.sample_class`` draws them but gathered with one ``index_select``: on the CPU a
    tensor-indexed gather costs milliseconds per call, ``index_select`` microseconds."""
    picks = [idx[torch.randperm(idx.numel(), generator=generator)[:n].to(idx.device)] for idx in real.indices_by_class]
    images = real.train_images.index_select(0, torch.cat(picks))
    return list(images.split([len(p) for p in picks]))


class DMMethod(Method):
    name = "dm"
    label = "DM"
    version = "0.2.0"  # 0.2: main_DM.py's DSA strategy (with flip) on MNIST and SVHN too
    description = "Distribution matching: match mean embeddings of random networks (Zhao & Bilen, WACV 2023)"
    config_class = DMConfig
    native_eval_augmentation = "dsa"
    resumable = True

    def initial_stream(self, config: Any) -> str:
        return real_init_stream(config.init)

    def native_evaluation(self, dataset: str) -> NativeEvaluation:
        """``main_DM.py``: 1000 epochs with per-sample DSA, its default strategy on every dataset."""
        return NativeEvaluation("dsa", 1000, DM_DSA_STRATEGY)

    def condense(self, real: RealDataset, ipc: int, config: DMConfig, seed: int, ctx: CondenseContext) -> SyntheticSet:
        if ipc < 1:
            raise DcbenchError(f"ipc must be at least 1, got {ipc}")
        num_classes = real.num_classes
        strategy = config.dsa_strategy or DM_DSA_STRATEGY
        images = init_synthetic_images(real, ipc, config.init, make_generator(seed, "init")).to(ctx.device)
        images.requires_grad_(True)
        optimizer = torch.optim.SGD([images], lr=config.lr_img, momentum=config.momentum)
        chunk_classes = max(1, config.real_chunk // config.batch_real)
        start, loss_value = 0, float("nan")
        saved = ctx.resume()
        if saved is not None:  # every random stream is per iteration: images and momentum suffice
            loss_value = saved.restore_images(images, optimizer)
            start = saved.iteration
        for it in range(start, config.iterations):
            net = _frozen_network(real, config, seed, it, ctx)
            # BatchNorm: the reference's BN branch, batch statistics over all classes in one pass
            classes_per_forward = None if _has_batchnorm(net) else chunk_classes
            real_gen, dsa_gen = make_generator(seed, "real", it), make_generator(seed, "dsa", it)
            real_batches, syn_batches = [], []
            for real_c, syn_c in zip(sample_real_batches(real, config.batch_real, real_gen), images.split(ipc)):
                real_c, syn_c = siamese_augment([real_c.to(ctx.device), syn_c], strategy, dsa_gen)
                real_batches.append(real_c)
                syn_batches.append(syn_c)
            embed = cast(Callable[[Tensor], Tensor], net.embed)  # _frozen_network checked it is a method
            loss = distribution_matching_loss(embed, real_batches, syn_batches, classes_per_forward)
            loss_value = float(loss.detach())  # the iteration's one host sync
            ctx.check_finite(loss_value, it)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ctx.progress(it + 1, config.iterations, loss=loss_value)
            ctx.checkpoint(
                it + 1,
                config.iterations,
                lambda: {"images": images.detach(), "optimizer": optimizer.state_dict(), "loss": loss_value},  # noqa: B023 - called inside ctx.checkpoint, in this iteration
            )
        ctx.metrics.update(iterations=config.iterations, final_loss=loss_value, dsa_strategy=strategy)
        return SyntheticSet(images.detach(), class_major_labels(num_classes, ipc))
